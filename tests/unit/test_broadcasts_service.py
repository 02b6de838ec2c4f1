"""Broadcasts with in-memory ports: launch as a job that snapshots and fans out, the consumer
that requests each contact's message at its moment, the holdout recorded, a crash or a
redelivery that sends nobody twice and skips nobody, the A/B verdict and the rest, and the
campaign funnel counted once per message and status."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.messaging.messages import CLICKED, DELIVERED, OPENED, SENT, SKIPPED, StatusChange
from chalicelib.services.broadcast_ports import CampaignStats, CountOnce, FanOutQueue
from chalicelib.services.broadcasts import AlreadyLaunched, Broadcasts
from chalicelib.services.campaign_stats import CountingMessageLog
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.jobs import JobRunner
from chalicelib.services.messaging import MessagingService
from chalicelib.domain.messaging.links import LinkTracker
from chalicelib.domain.messaging.templates import TemplateEngine
from chalicelib.services.template_store import TemplateLibrary
from tests.unit.fakes import FakeClock, FakeContactRepository, FakeDefinitionStore, FakeMembershipStore
from tests.unit.messaging_fakes import (
    FakeChannelStats,
    FakeEmailSender,
    FakeMessageLog,
    FakeMessageQueue,
    FakeSendRate,
    FakeSuppressionStore,
    FakeTemplateStore,
)
from tests.unit.test_messaging_service import TEMPLATES, contact

NOON = datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc)
TEMPLATES = {**TEMPLATES, "welcome-bold.html.j2": TEMPLATES["welcome.html.j2"].replace("Hi!", "HI!")}


class CountingFakeLog(FakeMessageLog, CountOnce):
    def __init__(self):
        super().__init__()
        self.marks: set[tuple[str, str]] = set()

    def first_time(self, message_id, key):
        if message_id not in self.messages or (message_id, key) in self.marks:
            return False
        self.marks.add((message_id, key))
        return True


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


class FakeFanOutQueue(FanOutQueue):
    def __init__(self):
        self.batches: list[dict] = []
        self.fail_on: set[int] = set()  # call numbers that raise (a crash mid-launch)
        self.calls = 0

    def send(self, batches):
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("the Lambda died here")
        self.batches.extend(batches)


class World:
    def __init__(self, members: int = 0, start=NOON):
        self.clock = FakeClock(start)
        self.store, self.memberships = FakeDefinitionStore(), FakeMembershipStore()
        self.contacts = FakeContactRepository()
        self.raw_log, self.stats = CountingFakeLog(), FakeCampaignStats()
        self.log = CountingMessageLog(self.raw_log, self.raw_log, self.stats)
        self.queue, self.email, self.fanout = FakeMessageQueue(), FakeEmailSender(), FakeFanOutQueue()
        self.messaging = MessagingService(
            log=self.log, suppressions=FakeSuppressionStore(), stats=FakeChannelStats(), rate=FakeSendRate(),
            templates=TemplateLibrary(FakeTemplateStore(TEMPLATES), TemplateEngine(), max_age=0),
            contacts=self.contacts, queue=self.queue, clock=self.clock, email=self.email,
            tracker=lambda: LinkTracker([b"link-secret-for-tests-0123"], "https://t.shop.example"),
            salt=lambda: b"salt-for-tests-0123456789")
        self.jobs = JobRunner(self.store, None, self.clock, new_id=iter(f"j{i}" for i in range(100)).__next__,
                              monotonic=lambda: 0.0)
        self.broadcasts = Broadcasts(self.store, self.memberships, self.contacts, self.messaging, self.log,
                                     self.fanout, self.stats, self.clock, start_job=self.jobs.start,
                                     latest_job=self.jobs.latest)
        self.jobs.broadcasts = self.broadcasts
        self.broadcasts.page_size = 40
        self.store.put("segment", "coffee-lovers", {"name": "Coffee lovers", "rule": "true"}, "2026-12-01T00:00:00Z")
        for i in range(members):
            self.member(f"c{i:03d}", tz="Europe/Rome" if i % 2 else "Europe/London")

    def member(self, cid, **kw):
        self.contacts.create(contact(cid, email=f"{cid}@example.com", **kw))
        self.memberships.enter("coffee-lovers", cid, "2026-12-01T00:00:00Z")

    def define(self, **document):
        doc = {"name": "December", "segment": "coffee-lovers", "channel": "email", "template": "welcome",
               "send_at": "2026-12-10T09:00:00Z", **document}
        self.store.put("broadcast", "december", {k: v for k, v in doc.items() if v is not None},
                       "2026-12-01T00:00:00Z")

    def deliver_fanout(self, times: int = 1):
        for _ in range(times):
            for batch in list(self.fanout.batches):
                self.broadcasts.fan_out(batch)

    def send_all(self):
        """The messages queue's consumer: every queue message (duplicates included) is handled."""
        for mid, _, _ in list(self.queue.enqueued):
            self.messaging.send(mid)

    def messages(self):
        return list(self.raw_log.messages.values())


def test_a_launch_snapshots_fans_out_and_everyone_gets_one_email():
    world = World(members=95)
    world.define()
    answer = world.broadcasts.launch("december")
    assert answer["job"]["kind"] == "broadcast-launch"
    world.jobs.resume()
    state = world.broadcasts.state("december")
    assert state["status"] == "launched" and state["members"] == 95 and state["pages"] == 3
    assert all(len(b["contacts"]) <= 100 for b in world.fanout.batches)
    world.deliver_fanout()
    world.send_all()
    assert sorted(m["to"] for m in world.email.sent) == sorted(f"c{i:03d}@example.com" for i in range(95))
    assert {m.campaign for m in world.messages()} == {"december"}
    funnel = world.broadcasts.view("december")["funnel"]["totals"]
    assert funnel["requested"] == 95 and funnel["sent"] == 95


def test_a_crash_between_slices_and_redelivered_batches_send_nobody_twice_and_skip_nobody():
    world = World(members=130)
    world.define()
    world.fanout.fail_on = {2}  # the second slice dies after its page was read
    with pytest.raises(RuntimeError):
        world.broadcasts.launch("december")
        world.jobs.resume()
    world.jobs.resume()  # the scheduled jobs Lambda continues from the saved cursor
    assert world.broadcasts.state("december")["status"] == "launched"
    world.deliver_fanout(times=2)  # every fan-out batch delivered twice
    world.send_all()
    world.deliver_fanout()  # and once more after the sends
    world.send_all()
    per_contact = {}
    for message in world.messages():
        per_contact.setdefault(message.contact_id, []).append(message.id)
    assert sorted(per_contact) == [f"c{i:03d}" for i in range(130)]
    assert all(len(ids) == 1 for ids in per_contact.values())
    sent_to = [m["to"] for m in world.email.sent]
    assert len(sent_to) == 130 and len(set(sent_to)) == 130
    assert world.broadcasts.view("december")["funnel"]["totals"]["sent"] == 130


def test_local_time_defers_each_message_to_the_contacts_morning_as_scheduled():
    world = World(start=datetime(2026, 12, 9, 20, 0, tzinfo=timezone.utc))
    world.member("rome", tz="Europe/Rome")
    world.member("ny", tz="America/New_York")
    world.define(send_at=None, local_time={"date": "2026-12-10", "time": "09:00"})
    world.broadcasts.launch("december")
    world.deliver_fanout()
    by_contact = {m.contact_id: m for m in world.messages()}
    assert by_contact["rome"].status == "deferred"
    assert by_contact["rome"].timeline[-1].detail["code"] == "scheduled"
    assert by_contact["rome"].timeline[-1].detail["until"].startswith("2026-12-10T08:00:00")
    assert by_contact["ny"].timeline[-1].detail["until"].startswith("2026-12-10T14:00:00")
    world.send_all()
    assert world.email.sent == []  # woken early: back to sleep
    world.clock.current = datetime(2026, 12, 10, 8, 0, 1, tzinfo=timezone.utc)
    world.send_all()
    assert [m["to"] for m in world.email.sent] == ["rome@example.com"]
    world.clock.current = datetime(2026, 12, 10, 14, 0, 1, tzinfo=timezone.utc)
    world.send_all()
    assert sorted(m["to"] for m in world.email.sent) == ["ny@example.com", "rome@example.com"]
    assert world.broadcasts.view("december")["funnel"]["totals"]["deferred"] == 2


def test_a_scheduled_request_lost_before_its_enqueue_is_enqueued_again_by_the_retry():
    world = World()
    world.member("c1")
    later = NOON + timedelta(hours=3)
    first = world.messaging.request("c1", "welcome", "email", "broadcast:x", not_before=later)
    world.queue.enqueued.clear()  # the enqueue was lost
    again = world.messaging.request("c1", "welcome", "email", "broadcast:x", not_before=later)
    assert again.id == first.id and [e[0] for e in world.queue.enqueued] == [first.id]
    assert world.queue.enqueued[0][2] == pytest.approx(3 * 3600)


AB = {"template": None, "experiment": {"arms": {"a": {"percent": 45, "template": "welcome"},
                                                "b": {"percent": 45, "template": "welcome-bold"},
                                                "holdout": 10}, "metric": "clicked"}}


def test_the_holdout_is_recorded_and_counted_and_sent_nothing():
    world = World(members=200)
    world.define(**AB)
    world.broadcasts.launch("december")
    world.jobs.resume()
    world.deliver_fanout(times=2)
    world.send_all()
    holdout = [m for m in world.messages() if m.variant == "holdout"]
    assert holdout and all(m.status == SKIPPED and m.timeline[-1].detail["code"] == "holdout" for m in holdout)
    assert len(world.email.sent) == 200 - len(holdout)
    assert {m.variant for m in world.messages()} == {"a", "b", "holdout"}
    arms = {a["arm"]: a for a in world.broadcasts.view("december")["experiment"]["arms"]}
    assert arms["holdout"]["exposed"] == len(holdout)
    assert arms["a"]["exposed"] + arms["b"]["exposed"] == 200 - len(holdout)


def _click(world, messages, share):
    for i, message in enumerate(messages):
        if i % 100 < share:
            world.log.advance(message.id, StatusChange(CLICKED, world.clock.now()))


def test_the_rest_receives_the_declared_winner_and_the_verdict_is_the_sequential_tests():
    world = World(members=0)
    world.broadcasts.page_size = 500
    for i in range(1500):
        world.member(f"c{i:04d}")
    world.define(**{**AB, "experiment": {**AB["experiment"], "test_percent": 30, "decide_by": "2 days",
                                         "fallback": "a"}})
    world.broadcasts.launch("december")
    world.jobs.resume()
    world.deliver_fanout()
    world.send_all()
    sent = [m for m in world.messages() if m.status == SENT]
    assert {m.variant for m in sent} == {"a", "b"}
    assert world.broadcasts.run_due()["rest"] == []  # nothing clicked: no winner, decide_by not reached
    assert world.broadcasts.view("december")["experiment"]["verdict"]["code"] in ("too_few", "no_winner_yet")
    _click(world, [m for m in sent if m.variant == "a"], 2)
    _click(world, [m for m in sent if m.variant == "b"], 40)
    report = world.broadcasts.run_due()
    state = world.broadcasts.state("december")
    assert state["verdict"]["winner"] == "b" and state["rest"]["arm"] == "b"
    assert state["rest"]["reason"].startswith("winner")
    assert report["rest"] == ["december"]
    world.jobs.resume()
    world.deliver_fanout()
    world.send_all()
    rest = [m for m in world.messages() if m.variant == "rest"]
    assert rest and {m.template for m in rest} == {state["rest"]["template"]}
    assert len({m["to"] for m in world.email.sent}) == len(world.email.sent)  # nobody twice
    assert world.broadcasts.state("december")["rest"]["status"] == "sent"
    assert world.broadcasts.run_due()["rest"] == []  # the rest is sent once


def test_without_a_winner_the_rest_gets_the_fallback_at_decide_by_with_the_reason():
    world = World(members=60)
    world.define(**{**AB, "experiment": {**AB["experiment"], "test_percent": 50, "decide_by": "1 day",
                                         "fallback": "b"}})
    world.broadcasts.launch("december")
    world.jobs.resume()
    world.deliver_fanout()
    world.send_all()
    world.clock.current += timedelta(hours=23)
    assert world.broadcasts.run_due()["rest"] == []
    world.clock.current += timedelta(hours=1)
    assert world.broadcasts.run_due()["rest"] == ["december"]
    rest = world.broadcasts.state("december")["rest"]
    assert rest["arm"] == "b" and "no winner 1 day" in rest["reason"] and "fallback arm 'b'" in rest["reason"]


def test_the_schedule_launches_a_due_broadcast_once_and_not_one_still_to_come():
    world = World(members=3)
    world.define(send_at="2026-12-11T09:00:00Z")
    assert world.broadcasts.run_due()["launched"] == []
    world.clock.current = datetime(2026, 12, 11, 9, 0, tzinfo=timezone.utc)
    assert world.broadcasts.run_due()["launched"] == ["december"]
    assert world.broadcasts.run_due()["launched"] == []
    assert world.broadcasts.state("december")["launched_by"] == "schedule"


def test_launch_refusals_are_clear():
    world = World(members=1)
    with pytest.raises(NotFound):
        world.broadcasts.launch("nothing")
    world.define(template="no-such-template")
    with pytest.raises(BadQuery, match="no email template no-such-template.html.j2"):
        world.broadcasts.launch("december")
    world.define()
    world.broadcasts.launch("december")
    with pytest.raises(AlreadyLaunched, match="launches once"):
        world.broadcasts.launch("december")


def test_the_funnel_counts_each_status_once_per_message():
    world = World(members=2)
    world.define()
    world.broadcasts.launch("december")
    world.deliver_fanout()
    world.send_all()
    mid = next(m.id for m in world.messages() if m.contact_id == "c000")
    for _ in range(3):  # redelivered SES notifications, repeated opens and clicks
        world.log.advance(mid, StatusChange(DELIVERED, world.clock.now()))
        world.log.advance(mid, StatusChange(CLICKED, world.clock.now()))
        world.log.advance(mid, StatusChange(OPENED, world.clock.now()))
    stats = world.broadcasts.campaign_stats("december")
    totals = stats["funnel"]["totals"]
    assert (totals["requested"], totals["sent"], totals["delivered"], totals["clicked"], totals["opened"]) == \
        (2, 2, 1, 1, 1)
    assert stats["funnel"]["by_template_and_variant"][0]["template"] == "welcome"
    with pytest.raises(NotFound):
        world.broadcasts.campaign_stats("unknown")
