"""Operating journeys (services/journey_admin.py) on fakes, with the runtime and a machine that
plays the ASL: the definition view's state and waits, a contact's enrollments with traces and
message statuses, stats per node and per experiment arm, pause/resume/stop (the stop job's
signals end the executions through the journey-events consumer), the API and schedule
triggers, and the preview of a new version."""
from __future__ import annotations

import copy
import itertools
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.contact_state import iso_ms
from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.events import iso
from chalicelib.domain.journeys.engine import SCHEDULE_NODE
from chalicelib.domain.journeys.records import enrollment_id
from chalicelib.domain.messaging.messages import DEFERRED, QUEUED, SENT, SKIPPED, Message, StatusChange
from chalicelib.services import journey_admin
from chalicelib.services.broadcast_ports import CampaignStats
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.jobs import JobError, JobRunner
from chalicelib.services.journey_admin import JourneyAdmin, JourneyConflict
from chalicelib.services.journey_runtime import journey_campaign
from tests.unit.fakes import FakeMembershipStore
from tests.unit.journeys.test_journey_runtime import CART, NOW, SMS_CONSENT, World

UTC = timezone.utc

WELCOME = {  # entered through the API; an A/B test on the first email; the goal is a purchase
    "id": "vip-welcome", "name": "VIP welcome", "trigger": {"api": True},
    "entry": {"re_entry": "always", "max_concurrent": 3},
    "goal": {"event": "Order Completed"},
    "start": "subject-test",
    "nodes": {
        "subject-test": {"experiment": "subject", "arms": {"A": 50, "B": 50}, "next": {"A": "send-a", "B": "send-b"}},
        "send-a": {"send": {"template": "welcome-a", "channel": "email"}, "next": "pause"},
        "send-b": {"send": {"template": "welcome-b", "channel": "email"}, "next": "pause"},
        "pause": {"wait": "2 days", "next": "done"},
        "done": {"exit": "the welcome is over"},
    },
}

DAILY = {
    "id": "daily-tip", "name": "Daily tip", "trigger": {"schedule": {"at": "09:00", "weekdays": ["tue"]}},
    "entry": {"segment": "vip", "re_entry": "always"}, "start": "tip",
    "nodes": {"tip": {"send": {"template": "tip", "channel": "email"}}},
}


class FakeCampaignStats(CampaignStats):
    def __init__(self):
        self.rows: dict[tuple[str, str, str | None], dict[str, int]] = {}

    def add(self, campaign, template, variant, counts):
        row = self.rows.setdefault((campaign, template, variant), {})
        for key, value in counts.items():
            row[key] = row.get(key, 0) + value

    def read(self, campaign):
        return [{"template": t, "variant": v, "counts": dict(c)} for (cid, t, v), c in self.rows.items()
                if cid == campaign]


class Ticks:
    """A monotonic clock that moves one second per reading: a job's budget counts slices."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 1.0
        return self.t


class Admin(World):
    def __init__(self, *docs, **kwargs):
        super().__init__(*docs, **kwargs)
        self.stats = FakeCampaignStats()
        self.memberships = FakeMembershipStore()
        jobs, signals = itertools.count(1), itertools.count(1)
        self.jobs = JobRunner(self.definitions.store, None, self.clock, new_id=lambda: f"j{next(jobs)}",
                              monotonic=Ticks())
        self.admin = JourneyAdmin(self.definitions, self.store, self.queue, self.contacts, self.log, self.stats,
                                  self.memberships, self.clock, jobs=self.jobs, new_id=lambda: f"s{next(signals)}")
        self.jobs.journeys = self.admin
        self.definitions.views = {"journey": self.admin.definition_view}  # as bootstrap wires it

    def deliver(self) -> int:
        """The journey-events consumer: every queued signal to the runtime, then the machine's tasks."""
        delivered = 0
        while self.queue.sent:
            self.runtime.on_signal(self.queue.sent.pop(0))
            delivered += 1
        self.machine.drain(self.runtime)
        return delivered

    def carts(self, *carts: str, contact: str = "c1"):
        for cart in carts:
            self.event(contact, "Product Added", cart_id=cart)


# -- the definition view ----------------------------------------------------------------------

def test_the_journey_view_shows_its_state_and_who_waits_at_each_node():
    world = Admin(CART)
    world.contact()
    world.contact("c2")
    world.carts("k1", "k2")
    world.carts("k3", contact="c2")
    view = world.definitions.view("journey", "abandoned-cart")
    assert view["version"] == 1 and view["state"] == {"state": "live", "at": None, "reason": None}
    assert view["waiting_now"]["wait-for-purchase"] == 3 and view["waiting_now"]["wait-more"] == 0
    assert set(view["waiting_now"]) == set(CART["nodes"]) and view["waiting_total"] == 3
    world.run(hours=1, minutes=1)
    view = world.definitions.view("journey", "abandoned-cart")
    assert (view["waiting_now"]["wait-for-purchase"], view["waiting_now"]["wait-more"]) == (0, 3)
    world.run(days=2)  # without SMS consent each one exits after the email: nobody waits any more
    view = world.definitions.view("journey", "abandoned-cart")
    assert view["waiting_total"] == 0 and all(n == 0 for n in view["waiting_now"].values())
    world.admin.pause("abandoned-cart", {"reason": "checking the copy"})
    assert world.definitions.view("journey", "abandoned-cart")["state"] == {
        "state": "paused", "at": iso(world.clock.now()), "reason": "checking the copy"}


# -- a contact's enrollments ----------------------------------------------------------------------

def test_a_contacts_enrollments_show_trace_and_each_message_with_its_status_and_reason():
    world = Admin(CART)
    world.contact(consent=SMS_CONSENT)
    world.carts("k1")
    world.run(hours=1, minutes=1)
    (record,) = world.store.records.values()
    (mid,) = record.messages
    at = world.clock.now()
    world.log.create(Message(id=mid, contact_id="c1", channel="email", template="cart-reminder", lane="marketing",
                             topic=None, cause=f"{record.id}:email-reminder:0", requested_at=at, status=SKIPPED,
                             campaign=journey_campaign("abandoned-cart", "email-reminder"),
                             timeline=(StatusChange(QUEUED, at), StatusChange(SKIPPED, at, {
                                 "outcome": "skip", "code": "frequency_cap",
                                 "reason": "3 marketing messages in 7 days already"}))))
    answer = world.admin.enrollments("abandoned-cart", "c1")
    assert answer["contact"] == "c1" and "merged" not in answer
    (shown,) = answer["enrollments"]
    assert (shown["id"], shown["status"], shown["node"], shown["key"], shown["version"]) == (
        record.id, "active", "wait-more", "k1", 1)
    assert shown["waiting"]["kind"] == "event" and shown["waiting"]["event"] == "Order Completed"
    assert shown["entered_at"] == iso_ms(NOW) and shown["converted_at"] is None
    assert [(t["node"], t["decision"]) for t in shown["trace"]] == [
        ("wait-for-purchase", "waiting"), ("wait-for-purchase", "resumed"), ("email-reminder", "sent"),
        ("wait-more", "waiting")]
    assert "timed out" in shown["trace"][1]["reason"]
    assert shown["messages"] == [{"id": mid, "node": "email-reminder", "channel": "email",
                                  "template": "cart-reminder", "status": SKIPPED, "requested_at": iso_ms(at),
                                  "variant": None, "code": "frequency_cap",
                                  "reason": "3 marketing messages in 7 days already"}]


def test_deferred_and_unknown_messages_say_why_and_the_newest_enrollment_comes_first():
    world = Admin(CART)
    world.contact()
    world.carts("k1")
    world.clock.advance(minutes=5)
    world.carts("k2")
    world.run(hours=1, minutes=1)
    records = sorted(world.store.records.values(), key=lambda r: r.enrollment.key)
    first_mid, second_mid = records[0].messages[0], records[1].messages[0]
    at = world.clock.now()
    world.log.create(Message(id=first_mid, contact_id="c1", channel="email", template="cart-reminder",
                             lane="marketing", topic=None, cause=f"{records[0].id}:email-reminder:0",
                             requested_at=at, status=DEFERRED, timeline=(
                                 StatusChange(QUEUED, at),
                                 StatusChange(DEFERRED, at, {"code": "quiet_hours", "reason": "Quiet hours until 08:00.",
                                                             "until": "2026-03-03T07:00:00+00:00"}))))
    answer = world.admin.enrollments("abandoned-cart", "c1")
    assert [e["key"] for e in answer["enrollments"]] == ["k2", "k1"]
    (deferred,) = answer["enrollments"][1]["messages"]
    assert (deferred["status"], deferred["code"], deferred["until"]) == (
        DEFERRED, "quiet_hours", "2026-03-03T07:00:00+00:00")
    (missing,) = answer["enrollments"][0]["messages"]
    assert missing["id"] == second_mid and missing["status"] is None and "not in the message log" in missing["reason"]


def test_a_merged_contact_is_followed_to_the_one_it_lives_on_and_its_old_entries_are_read():
    world = Admin(CART)
    old = world.contact("old")
    world.carts("k1", contact="old")
    survivor = world.contact("new")
    survivor.merged_from = ["old"]
    world.contacts.merge(survivor, [old])
    answer = world.admin.enrollments("abandoned-cart", "old")
    assert answer["contact"] == "new" and answer["merged"] == "old was merged into new"
    assert [e["key"] for e in answer["enrollments"]] == ["k1"]


def test_the_enrollments_route_refuses_unknown_journeys_and_contacts_and_a_missing_contact():
    world = Admin(CART)
    world.contact()
    with pytest.raises(NotFound, match="no journey 'nowhere'"):
        world.admin.enrollments("nowhere", "c1")
    with pytest.raises(BadQuery, match="contact is required"):
        world.admin.enrollments("abandoned-cart", None)
    with pytest.raises(NotFound, match="no contact 'ghost'"):
        world.admin.enrollments("abandoned-cart", "ghost")
    with pytest.raises(BadQuery, match="at most 256 characters"):
        world.admin.enrollments("abandoned-cart", "x" * 3000)
    with pytest.raises(NotFound, match="a journey id is"):
        world.admin.enrollments("Not A Journey" * 300, "c1")
    assert world.admin.enrollments("abandoned-cart", "c1")["enrollments"] == []


def test_a_deleted_journeys_enrollments_can_still_be_seen_and_stopped():
    world = Admin(CART)
    world.contact()
    world.carts("k1")
    world.definitions.delete("journey", "abandoned-cart")
    assert len(world.admin.enrollments("abandoned-cart", "c1")["enrollments"]) == 1
    world.admin.stop("abandoned-cart", None)
    world.deliver()
    assert world.only().enrollment.status == "stopped"
    with pytest.raises(NotFound, match="was deleted"):
        world.admin.enroll("abandoned-cart", {"contact_id": "c1"})


# -- statistics ---------------------------------------------------------------------------------------

def test_stats_per_node_paths_funnels_conversions_and_refusals():
    world = Admin(CART)
    world.contact(consent=SMS_CONSENT)
    world.contact("c2")
    world.carts("k1", "k2")
    world.carts("k3", contact="c2")
    world.run(minutes=30)
    world.event("c1", "Order Completed", cart_id="k2")  # converted within the hour
    world.run(days=2)
    world.admin.pause("abandoned-cart", None)
    world.carts("k4", contact="c2")  # refused while paused
    campaign = journey_campaign("abandoned-cart", "email-reminder")
    world.stats.add(campaign, "cart-reminder", None, {"requested": 2, "sent": 1, "skipped": 1,
                                                      "skipped:frequency_cap": 1})
    stats = world.admin.stats("abandoned-cart")
    assert stats["state"]["state"] == "paused" and stats["version"] == 1
    assert stats["totals"] == {"entered": 3, "refused": 1, "completed": 1, "exited": 2, "stopped": 0,
                               "converted": 1, "refused_while": {"paused": 1, "stopped": 0}}
    nodes = {n["node"]: n for n in stats["nodes"]}
    assert list(nodes) == list(CART["nodes"])
    assert nodes["wait-for-purchase"]["entered"] == 3 and nodes["wait-for-purchase"]["converted"] == 1
    assert nodes["wait-for-purchase"]["decisions"] == {"resumed": 2, "waiting": 3}
    assert nodes["email-reminder"]["entered"] == 2 and nodes["wait-more"]["waiting_now"] == 0
    assert nodes["sms-consent"]["paths"] == [{"to": "sms-reminder", "outcomes": ["when[0]"], "count": 1},
                                             {"to": "no-sms", "outcomes": ["otherwise"], "count": 1}]
    assert nodes["no-sms"]["entered"] == 1 and "exited_here" not in nodes["no-sms"]
    funnel = nodes["email-reminder"]["messages"]
    assert funnel["totals"]["sent"] == 1 and funnel["totals"]["skipped:frequency_cap"] == 1
    assert nodes["sms-reminder"]["messages"]["totals"]["sent"] == 0
    assert stats["other_nodes"] == [] and stats["experiments"] == []


def test_experiment_arms_are_counted_and_judged_by_the_sequential_test_and_a_winner_stays():
    world = Admin(WELCOME)
    for n in range(6):
        world.contact(f"p{n}")
        world.admin.enroll("vip-welcome", {"contact_id": f"p{n}"})
    world.deliver()
    arms = {r.enrollment.contact_id: r.enrollment.arms["subject"] for r in world.store.records.values()}
    world.event("p0", "Order Completed")
    counts = world.store.counts("vip-welcome")
    for arm in ("A", "B"):
        assert counts.get(f"arm:subject-test:{arm}", 0) == sum(1 for a in arms.values() if a == arm)
    assert counts[f"converted_arm:subject:{arms['p0']}"] == 1
    stats = world.admin.stats("vip-welcome")
    (experiment,) = stats["experiments"]
    assert experiment["metric"].startswith("the journey's goal")
    shown = {a["arm"]: a for a in experiment["arms"]}
    assert shown[arms["p0"]]["converted"] == 1 and shown["A"]["to"] == "send-a"
    assert experiment["verdict"]["code"] == "too_few"
    # Many more enrollments (counters as the runtime adds them): A converts far better than B.
    world.store.add_counts("vip-welcome", 0, {"arm:subject-test:A": 400, "arm:subject-test:B": 400,
                                              "converted_arm:subject:A": 120, "converted_arm:subject:B": 20})
    verdict = world.admin.stats("vip-welcome")["experiments"][0]["verdict"]
    assert verdict["winner"] == "A" and verdict["code"] == "winner"
    # Later looks where the difference shrank: the declared winner stays.
    world.store.add_counts("vip-welcome", 0, {"arm:subject-test:B": 400, "converted_arm:subject:B": 200})
    assert world.admin.stats("vip-welcome")["experiments"][0]["verdict"]["winner"] == "A"
    # The journey has one experiment: each arm's messages are its variant's funnel across the sends.
    world.stats.add(journey_campaign("vip-welcome", "send-a"), "welcome-a", "A", {"sent": 3})
    world.stats.add(journey_campaign("vip-welcome", "send-b"), "welcome-b", "B", {"sent": 2, "converted": 1})
    shown = {a["arm"]: a for a in world.admin.stats("vip-welcome")["experiments"][0]["arms"]}
    assert (shown["A"]["messages"]["sent"], shown["B"]["messages"]["converted"]) == (3, 1)


def test_stats_of_an_unknown_journey_is_404():
    with pytest.raises(NotFound):
        Admin(CART).admin.stats("nowhere")


# -- pause, resume, stop ------------------------------------------------------------------------------

def test_pause_and_resume_set_the_control_item_and_say_what_changed():
    world = Admin(CART)
    paused = world.admin.pause("abandoned-cart", {"reason": "  new copy  "})
    assert paused["changed"] and paused["state"]["state"] == "paused" and paused["state"]["reason"] == "new copy"
    assert world.admin.pause("abandoned-cart", None)["changed"] is False
    resumed = world.admin.resume("abandoned-cart", {})
    assert resumed["changed"] and resumed["was"] == "paused" and resumed["state"]["state"] == "live"
    assert world.admin.resume("abandoned-cart", None)["changed"] is False


@pytest.mark.parametrize("body, reason", [
    ({"reason": ""}, "reason: expected text"),
    ({"reason": 3}, "reason: expected text"),
    ({"reason": "x" * 501}, "reason: expected text"),
    ({"why": "because"}, "why: unknown field"),
])
def test_a_bad_control_body_is_refused_with_the_reason(body, reason):
    world = Admin(CART)
    for action in (world.admin.pause, world.admin.resume, world.admin.stop):
        with pytest.raises(BadQuery, match=reason):
            action("abandoned-cart", body)
    assert world.store.control("abandoned-cart") is None


def test_controls_of_an_unknown_journey_are_404():
    world = Admin(CART)
    for action in (world.admin.pause, world.admin.resume, world.admin.stop):
        with pytest.raises(NotFound):
            action("nowhere", None)


def test_stop_refuses_entries_and_its_job_signals_every_running_enrollment_whose_execution_ends(monkeypatch):
    monkeypatch.setattr(journey_admin, "STOP_PAGE", 2)  # several slices
    world = Admin(CART)
    world.contact()
    world.contact("c2")
    world.carts("k1", "k2", "k3")
    world.carts("k4", contact="c2")
    answer = world.admin.stop("abandoned-cart", {"reason": "wrong coupon"}, budget_seconds=0)
    job = answer["job"]
    assert answer["state"]["state"] == "stopped" and not answer["already_stopped"]
    assert job["kind"] == "journey-stop" and job["status"] == "running" and job["progress"] == {
        "pages": 1, "signalled": 2}
    world.jobs.resume(budget_seconds=100)
    done = world.jobs.get(job["id"])
    assert done["status"] == "done" and done["result"] == {"journey": "abandoned-cart", "pages": 2, "signalled": 4}
    assert {s["kind"] for s in world.queue.sent} == {"stop"}
    assert all(s["reason"] == "wrong coupon" and s["id"] == f"stop:{s['enrollment_id']}" for s in world.queue.sent)
    assert world.deliver() == 4
    assert {r.enrollment.status for r in world.store.records.values()} == {"stopped"}
    assert {e["status"] for e in world.machine.executions.values()} == {"ABORTED"}
    assert world.store.counts("abandoned-cart")["waiting_now:wait-for-purchase"] == 0
    world.carts("k5")
    assert len(world.store.records) == 4 and world.store.counts("abandoned-cart")["refused:stopped"] == 1
    world.run(days=3)
    assert world.messaging.sent() == []


def test_stop_is_idempotent_a_running_sweep_is_answered_and_a_finished_one_sweeps_again():
    world = Admin(CART)
    world.contact()
    world.carts("k1")
    first = world.admin.stop("abandoned-cart", None, budget_seconds=0)
    assert first["job"]["status"] == "done"  # one page: done in the request
    again = world.admin.stop("abandoned-cart", {"reason": "again"})
    assert again["already_stopped"] and again["state"]["reason"] == "stopped from the admin API"
    assert again["job"]["id"] != first["job"]["id"] and again["job"]["status"] == "done"
    assert world.deliver() == 2  # the same enrollment signalled twice, stopped once
    record = world.only()
    assert record.enrollment.status == "stopped"
    assert [t.decision for t in record.enrollment.trace].count("stopped") == 1
    assert world.store.counts("abandoned-cart")["stopped"] == 1


def test_a_second_stop_while_the_sweep_runs_answers_that_sweep(monkeypatch):
    monkeypatch.setattr(journey_admin, "STOP_PAGE", 1)
    world = Admin(CART)
    world.contact()
    world.carts("k1", "k2")
    first = world.admin.stop("abandoned-cart", None, budget_seconds=0)
    assert first["job"]["status"] == "running"
    second = world.admin.stop("abandoned-cart", None, budget_seconds=0)
    assert second["job"]["id"] == first["job"]["id"] and second["already_stopped"]


def test_a_resumed_stopped_journey_takes_new_entries_and_its_stopped_enrollments_stay_stopped():
    world = Admin(CART)
    world.contact()
    world.carts("k1")
    world.admin.stop("abandoned-cart", None)
    world.deliver()
    with pytest.raises(JourneyConflict, match="is stopped: resume it"):
        world.admin.pause("abandoned-cart", None)
    resumed = world.admin.resume("abandoned-cart", None)
    assert resumed["was"] == "stopped" and resumed["state"]["state"] == "live"
    world.carts("k2")
    world.run(hours=2)
    by_key = {r.enrollment.key: r.enrollment for r in world.store.records.values()}
    assert by_key["k1"].status == "stopped" and by_key["k2"].node == "wait-more"
    assert world.messaging.sent() == [("c1", "email", "cart-reminder")]


def test_a_sweep_resumed_in_between_stops_signalling(monkeypatch):
    monkeypatch.setattr(journey_admin, "STOP_PAGE", 1)
    world = Admin(CART)
    world.contact()
    world.carts("k1", "k2")
    job = world.admin.stop("abandoned-cart", None, budget_seconds=0)["job"]
    world.admin.resume("abandoned-cart", None)
    world.jobs.resume()
    done = world.jobs.get(job["id"])
    assert done["status"] == "done" and "resumed" in done["result"]["interrupted"]
    assert len(world.queue.sent) == 1


def test_an_enrollment_the_sweep_missed_ends_at_its_next_advance():
    world = Admin(CART)
    world.contact()
    world.carts("k1")
    world.store.set_control("abandoned-cart", "stopped", iso_ms(NOW), "stopped")  # no sweep: as if missed
    world.run(hours=2)
    record = world.only()
    assert record.enrollment.status == "stopped" and world.messaging.sent() == []
    assert world.decisions()[-1] == ("wait-for-purchase", "stopped")
    assert world.machine.executions[record.id]["status"] == "SUCCEEDED"
    counts = world.store.counts("abandoned-cart")
    assert counts["stopped"] == 1 and counts["waiting_now:wait-for-purchase"] == 0


# -- the API trigger ------------------------------------------------------------------------------------

def test_the_api_trigger_enqueues_an_enroll_signal_and_names_the_enrollment_it_becomes():
    world = Admin(WELCOME)
    world.contact("c1")
    world.contacts.claim("user:ada", "c1")
    world.contacts.claim("email:ada@example.com", "c1")
    answer = world.admin.enroll("vip-welcome", {"user_id": "ada", "key": "  gold  ", "data": {"tier": "gold"},
                                                "id": "crm-42"})
    assert answer["status"] == "queued" and answer["contact_id"] == "c1" and answer["key"] == "gold"
    assert answer["enrollment_id"] == enrollment_id("vip-welcome", "c1", "gold", "crm-42")
    (signal,) = world.queue.sent
    assert signal == {"kind": "enroll", "id": "crm-42", "journey_id": "vip-welcome", "contact_id": "c1",
                      "key": "gold", "data": {"tier": "gold"}, "at": iso(NOW)}
    world.deliver()
    record = world.store.get(answer["enrollment_id"])
    assert record is not None and record.data == {"tier": "gold"} and record.enrollment.node == "pause"
    # The same request again (its id): the same enrollment, no second one.
    world.admin.enroll("vip-welcome", {"email": "ADA@example.com", "key": "gold", "id": "crm-42"})
    world.deliver()
    assert len(world.store.records) == 1
    # Without an id, each request is a new entry (the entry rules decide).
    other = world.admin.enroll("vip-welcome", {"contact_id": "c1"})
    assert other["signal"] == "s1" and other["enrollment_id"] == enrollment_id("vip-welcome", "c1", None, "s1")


@pytest.mark.parametrize("body, problem", [
    ({}, "give exactly one of contact_id, user_id, email (none given)"),
    ({"contact_id": "c1", "email": "a@b.co"}, "give exactly one of contact_id, user_id, email (found contact_id, email)"),
    ({"contact_id": "c1", "colour": "red"}, "colour: unknown field"),
    ({"contact_id": "c1", "key": 5}, "key: expected text"),
    ({"contact_id": "c1", "data": [1]}, "data: expected a JSON object"),
    ({"contact_id": "c1", "data": {"x": "y" * 20000}}, "data: larger than 16 KB"),
    ({"contact_id": "c1", "id": "has space"}, "id: expected 1 to 128"),
    ({"contact_id": "x" * 300}, "contact_id: expected a contact id"),
])
def test_a_bad_api_entry_is_refused_with_every_problem(body, problem):
    world = Admin(WELCOME)
    world.contact("c1")
    with pytest.raises(DefinitionError) as caught:
        world.admin.enroll("vip-welcome", body)
    assert any(problem in p for p in caught.value.problems), caught.value.problems
    assert world.queue.sent == []


def test_the_api_trigger_refuses_unknown_contacts_other_triggers_and_a_paused_journey():
    world = Admin(WELCOME, CART)
    world.contact("c1")
    with pytest.raises(NotFound, match="no contact 'ghost'"):
        world.admin.enroll("vip-welcome", {"contact_id": "ghost"})
    with pytest.raises(NotFound, match="no contact is known by email:nobody@example.com"):
        world.admin.enroll("vip-welcome", {"email": "nobody@example.com"})
    with pytest.raises(BadQuery, match="email: 'not-an-address' is not an email address"):
        world.admin.enroll("vip-welcome", {"email": "not-an-address"})
    with pytest.raises(JourneyConflict, match="entered by its event trigger"):
        world.admin.enroll("abandoned-cart", {"contact_id": "c1"})
    with pytest.raises(NotFound, match="no journey 'nowhere'"):
        world.admin.enroll("nowhere", {"contact_id": "c1"})
    world.admin.pause("vip-welcome", None)
    with pytest.raises(JourneyConflict, match="is paused"):
        world.admin.enroll("vip-welcome", {"contact_id": "c1"})
    assert world.queue.sent == []


# -- the schedule trigger -------------------------------------------------------------------------------

def schedule_world(**clock) -> Admin:
    world = Admin(DAILY)
    world.clock.current = datetime(2026, 3, 2, 0, 5, tzinfo=UTC) + timedelta(**clock)  # Monday 00:05 UTC
    for n in range(3):
        contact = world.contact(f"v{n}", traits={"timezone": "Europe/Paris", "vip": True},
                                segments={"vip": {"since": "2026-01-01T00:00:00Z"}})
        world.memberships.enter("vip", contact.id, "2026-01-01T00:00:00Z")
    world.memberships.enter("vip", "gone", "2026-01-01T00:00:00Z")  # erased since: nothing happens
    return world


def test_the_schedule_runs_once_a_day_and_each_member_waits_for_nine_in_their_zone(monkeypatch):
    monkeypatch.setattr(journey_admin, "SCHEDULE_PAGE", 2)
    world = schedule_world()
    report = world.admin.run_schedules(budget_seconds=100)
    (started,) = report["started"]
    assert started["status"] == "done" and started["progress"] == {"pages": 2, "signalled": 4}
    assert {s["id"] for s in world.queue.sent} == {"schedule:daily-tip:2026-03-02"}
    assert sorted(s["contact_id"] for s in world.queue.sent) == ["gone", "v0", "v1", "v2"]
    assert world.admin.run_schedules() == {"started": [], "not_today": [], "not_live": []}  # once a day
    world.deliver()
    tuesday_nine_paris = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    assert len(world.store.records) == 3
    assert all(r.enrollment.node == SCHEDULE_NODE and r.enrollment.waiting.until == tuesday_nine_paris
               for r in world.store.records.values())
    assert world.definitions.view("journey", "daily-tip")["waiting_now"][SCHEDULE_NODE] == 3
    stats_nodes = [n["node"] for n in world.admin.stats("daily-tip")["nodes"]]
    assert stats_nodes == [SCHEDULE_NODE, "tip"]
    world.machine.run(world.runtime, tuesday_nine_paris - timedelta(seconds=1))
    assert world.messaging.sent() == []
    world.machine.run(world.runtime, tuesday_nine_paris + timedelta(seconds=1))
    assert sorted(world.messaging.sent()) == [(f"v{n}", "email", "tip") for n in range(3)]
    # Tuesday's run: each contact enters again and waits for next Tuesday.
    world.clock.current = datetime(2026, 3, 3, 0, 5, tzinfo=UTC) + timedelta(hours=9)
    world.queue.sent.clear()
    assert len(world.admin.run_schedules()["started"]) == 1
    world.deliver()
    assert len(world.store.records) == 6


def test_the_schedule_skips_days_without_an_allowed_weekday_near_and_journeys_not_live():
    world = schedule_world(days=2)  # Wednesday: neither it nor Thursday is a Tuesday
    assert world.admin.run_schedules() == {"started": [], "not_today": ["daily-tip"], "not_live": []}
    world.clock.current = datetime(2026, 3, 9, 0, 5, tzinfo=UTC)  # Monday
    world.admin.pause("daily-tip", None)
    assert world.admin.run_schedules()["not_live"] == ["daily-tip"]
    assert world.queue.sent == []


def test_the_journey_jobs_check_their_parameters():
    world = Admin(CART)
    with pytest.raises(JobError, match="journey-stop needs the journey id"):
        world.jobs.start("journey-stop", {})
    with pytest.raises(JobError, match="needs the day"):
        world.jobs.start("journey-schedule", {"journey": "daily-tip", "day": "monday"})
    job = world.jobs.start("journey-schedule", {"journey": "abandoned-cart", "day": "2026-03-02"})
    assert job["status"] == "failed" and "not a live schedule journey" in job["error"]


# -- before a new version goes live ---------------------------------------------------------------------

def test_preview_counts_running_enrollments_per_node_against_the_new_version():
    world = Admin(CART)
    world.contact()
    world.carts("k1", "k2")
    world.run(hours=1, minutes=1)
    world.carts("k3")
    changed = copy.deepcopy(CART)
    del changed["nodes"]["wait-more"]
    changed["nodes"]["email-reminder"] = {"send": {"template": "cart-reminder-v2", "channel": "email"},
                                          "next": "sms-consent"}
    changed["nodes"]["bought"] = {"send": {"template": "thanks", "channel": "email"}}
    answer = world.admin.preview("abandoned-cart", changed)
    assert answer["valid"] and answer["current_version"] == 1 and answer["changed"] is True
    assert answer["running"] == {"counted": 3, "complete": True}
    assert answer["nodes"] == [
        {"node": "wait-more", "running": 2, "in_new_version": False, "kind_now": "wait_for"},
        {"node": "wait-for-purchase", "running": 1, "in_new_version": True, "kind_now": "wait_for",
         "kind_new": "wait_for"}]
    assert answer["changes"] == {"added": [], "removed": ["wait-more"], "changed": ["bought", "email-reminder"],
                                 "trigger_changed": False}
    assert "finish on the version they started on" in answer["versions"]
    assert world.definitions.get("journey", "abandoned-cart")["version"] == 1  # nothing stored


def test_preview_is_bounded_and_says_so(monkeypatch):
    monkeypatch.setattr(journey_admin, "PREVIEW_LIMIT", 2)
    world = Admin(CART)
    world.contact()
    world.carts("k1", "k2", "k3")
    answer = world.admin.preview("abandoned-cart", CART)
    assert answer["running"]["counted"] == 2 and answer["running"]["complete"] is False
    assert "more than 2 enrollments are running" in answer["running"]["note"]
    assert answer["changed"] is False


def test_preview_refuses_what_put_refuses_with_every_problem():
    world = Admin(CART)
    broken = copy.deepcopy(CART)
    broken["nodes"]["email-reminder"]["next"] = "wait-mroe"
    broken["entry"]["segment"] = "nobody"
    with pytest.raises(DefinitionError) as caught:
        world.admin.preview("abandoned-cart", broken)
    places = {p.split(":", 1)[0] for p in caught.value.problems}
    assert {"nodes.email-reminder.next", "entry.segment"} <= places, caught.value.problems
    with pytest.raises(DefinitionError, match="the document says 'other'"):
        world.admin.preview("abandoned-cart", {**CART, "id": "other"})


def test_preview_of_a_first_version_has_nobody_running():
    world = Admin()
    answer = world.admin.preview("abandoned-cart", CART)
    assert answer["current_version"] is None and answer["nodes"] == [] and answer["running"]["counted"] == 0
    assert answer["changes"]["added"] == sorted(CART["nodes"])


def test_a_document_without_an_id_is_validated_and_previewed_under_the_paths_id():
    world = Admin(CART)
    without_id = {k: v for k, v in CART.items() if k != "id"}
    assert world.definitions.validate("journey", without_id, "abandoned-cart")["valid"]
    assert world.definitions.validate("journey", without_id)["id"] is None  # a draft, read as one
    assert world.admin.preview("abandoned-cart", without_id)["changed"] is False
