"""The journey runtime on fakes: signals enroll and react, the machine's Advance runs the nodes,
waits go through a state machine that behaves as the ASL does, on a virtual clock.

What must hold: a retried Advance never sends twice, a redelivered signal never enrolls twice,
an awaited event that comes before the wait's token still resumes it, an enrollment finishes
on the version it started, exits and goals act at once, and every wait costs three states.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.domain.contact_state import iso_ms
from chalicelib.domain.journeys.interest import JOURNEY_PROFILE_UPDATED, events_heard, segments_heard, signal_of
from chalicelib.domain.journeys.language import parse_journey
from chalicelib.domain.journeys.simulator import Scripted, simulate
from chalicelib.domain.messaging.messages import CONVERTED, QUEUED, Message, StatusChange, message_id
from chalicelib.services.definitions import DefinitionService
from chalicelib.services.journey_ports import TokenGone
from chalicelib.services.journey_runtime import JourneyRuntime, journey_campaign
from tests.unit.fakes import FakeClock, FakeContactRepository, FakeDefinitionStore, FakeEventStore
from tests.unit.journey_fakes import FakeEnrollmentStore, FakeJourneyQueue, FakeMachine, RecordingEffects, \
    RecordingMessaging, machine_time
from tests.unit.messaging_fakes import FakeMessageLog

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
SMS_CONSENT = {"sms": {"status": "granted", "at": "2026-01-01T00:00:00Z"}}

CART = {
    "id": "abandoned-cart", "name": "Abandoned cart",
    "trigger": {"event": "Product Added", "key": "properties.cart_id"},
    "entry": {"re_entry": "always", "max_concurrent": 5},
    "goal": {"event": "Order Completed", "match_key": True, "within": "7 days"},
    "start": "wait-for-purchase",
    "nodes": {
        "wait-for-purchase": {"wait_for": {"event": "Order Completed", "match_key": True}, "timeout": "1 hour",
                              "on_event": "bought", "on_timeout": "email-reminder"},
        "email-reminder": {"send": {"template": "cart-reminder", "channel": "email"}, "next": "wait-more"},
        "wait-more": {"wait_for": {"event": "Order Completed", "match_key": True}, "timeout": "24 hours",
                      "on_event": "bought", "on_timeout": "sms-consent"},
        "sms-consent": {"branch": [{"when": {"consent": "sms"}, "next": "sms-reminder"}], "otherwise": "no-sms"},
        "sms-reminder": {"send": {"template": "cart-reminder-sms", "channel": "sms"}},
        "no-sms": {"exit": "no SMS consent"},
        "bought": {"exit": "the cart was bought"},
    },
}

PROFILE = {  # an awaited event that is not the goal: it resumes the wait
    "id": "complete-profile", "name": "Complete your profile",
    "trigger": {"event": "Signed Up"},
    "start": "wait-profile",
    "nodes": {
        "wait-profile": {"wait_for": {"event": "Profile Completed"}, "timeout": "1 day",
                         "on_event": "thanks", "on_timeout": "nudge"},
        "thanks": {"send": {"template": "thanks", "channel": "email"}, "next": "tag"},
        "tag": {"update": {"tags": {"add": ["complete"]}, "traits": {"profile": "complete"}, "score": 5},
                "next": "tell-crm"},
        "tell-crm": {"notify": {"destination": "crm"}},
        "nudge": {"send": {"template": "nudge", "channel": "email"}},
    },
}

LEAVE = {
    "id": "vip-care", "name": "VIP care",
    "trigger": {"segment_entered": "vip"},
    "exit": [{"segment_exited": "vip"}],
    "start": "pause",
    "nodes": {"pause": {"wait": "3 days", "next": "gift"},
              "gift": {"send": {"template": "vip-gift", "channel": "email"}}},
}


class World:
    def __init__(self, *docs, scale: float = 1.0):
        self.clock = FakeClock(NOW)
        self.definitions = DefinitionService(FakeDefinitionStore(), self.clock, cache_seconds=0)
        self.definitions.put("segment", "vip", {"id": "vip", "name": "VIP",
                                                "conditions": {"trait": "vip", "equals": True}})
        self.definitions.put("destination", "crm", {
            "id": "crm", "name": "CRM", "url": "https://crm.example.com/hook",
            "secret_parameter": "/mercurio/test/destinations/crm", "segments": ["vip"]})
        for doc in docs:
            self.definitions.put("journey", doc["id"], doc)
        self.contacts = FakeContactRepository()
        self.store = FakeEnrollmentStore()
        self.machine = FakeMachine(self.clock)
        self.messaging = RecordingMessaging()
        self.log = FakeMessageLog()
        self.effects = RecordingEffects()
        self.events = FakeEventStore()
        self.queue = FakeJourneyQueue()
        self.numbers = itertools.count(1)
        self.runtime = JourneyRuntime(definitions=self.definitions, store=self.store, runner=self.machine,
                                      queue=self.queue, contacts=self.contacts, messaging=self.messaging,
                                      message_log=self.log, effects_queue=self.effects, events=self.events,
                                      clock=self.clock, time_scale=scale)

    def contact(self, contact_id: str = "c1", **fields) -> Contact:
        contact = Contact(id=contact_id, created_at="2026-01-01T00:00:00Z", **fields)
        self.contacts.create(contact)
        return contact

    def signal(self, contact_id: str, event_name: str, message_id: str | None = None, **properties) -> dict:
        event = {"type": "track", "event": event_name, "properties": properties,
                 "messageId": message_id or f"m{next(self.numbers)}", "timestamp": iso_ms(self.clock.now())}
        return signal_of(contact_id, event)

    def event(self, contact_id: str, event_name: str, **properties):
        outcome = self.runtime.on_signal(self.signal(contact_id, event_name, **properties))
        self.machine.drain(self.runtime)
        return outcome

    def run(self, **delta) -> None:
        self.machine.run(self.runtime, self.clock.now() + timedelta(**delta))

    def only(self):
        (record,) = self.store.records.values()
        return record

    def decisions(self, record=None):
        record = record or self.only()
        return [(t.node, t.decision) for t in record.enrollment.trace]


# -- the abandoned cart ---------------------------------------------------------------------------

def test_an_abandoned_cart_gets_the_email_after_the_hour_and_the_sms_a_day_later():
    world = World(CART)
    world.contact(consent=SMS_CONSENT)
    world.event("c1", "Product Added", cart_id="k1", name="Grinder")
    world.run(minutes=59)
    assert world.messaging.sent() == []
    world.run(minutes=2)
    assert world.messaging.sent() == [("c1", "email", "cart-reminder")]
    world.run(hours=23, minutes=58)
    assert len(world.messaging.sent()) == 1
    world.run(minutes=3)
    assert world.messaging.sent() == [("c1", "email", "cart-reminder"), ("c1", "sms", "cart-reminder-sms")]
    record = world.only()
    assert record.enrollment.status == "completed"
    assert world.decisions(record) == [
        ("wait-for-purchase", "waiting"), ("wait-for-purchase", "resumed"), ("email-reminder", "sent"),
        ("wait-more", "waiting"), ("wait-more", "resumed"), ("sms-consent", "branched"), ("sms-reminder", "sent"),
        ("sms-reminder", "completed")]
    # two waits: 3 states each, plus Advance at the start and Route + Done at the end
    assert world.machine.history(record.id) == ["Advance", "Route", "WaitForEvent", "Advance", "Route",
                                                "WaitForEvent", "Advance", "Route", "Done"]
    assert world.machine.executions[record.id]["status"] == "SUCCEEDED"
    email = world.messaging.requests[message_id(f"{record.id}:email-reminder:0", "c1", "cart-reminder", "email")]
    assert email["campaign"] == journey_campaign("abandoned-cart", "email-reminder")
    assert email["data"]["items"] == [{"cart_id": "k1", "name": "Grinder"}]
    assert email["data"]["journey"] == {"id": "abandoned-cart", "node": "email-reminder", "enrollment": record.id}


def test_without_sms_consent_the_journey_exits_after_the_email():
    world = World(CART)
    world.contact()
    world.event("c1", "Product Added", cart_id="k1")
    world.run(days=3)
    assert world.messaging.sent() == [("c1", "email", "cart-reminder")]
    assert world.only().enrollment.status == "exited"
    assert world.decisions()[-1] == ("no-sms", "exited")


def test_a_cart_bought_within_the_hour_gets_nothing_and_counts_as_converted():
    world = World(CART)
    world.contact(consent=SMS_CONSENT)
    world.event("c1", "Product Added", cart_id="k1")
    world.run(minutes=30)
    outcome = world.event("c1", "Order Completed", cart_id="k1")
    assert outcome.ended == 1
    world.run(days=3)
    assert world.messaging.sent() == []
    record = world.only()
    assert record.enrollment.status == "exited" and record.enrollment.converted_at is not None
    assert ("wait-for-purchase", "goal") in world.decisions()
    assert world.machine.executions[record.id]["status"] == "SUCCEEDED"  # the token answered: Advance said done
    counts = world.store.counts("abandoned-cart")
    assert counts["entered"] == 1 and counts["converted"] == 1 and counts["converted:wait-for-purchase"] == 1
    assert counts["waiting_now:wait-for-purchase"] == 0 and counts["exited"] == 1


def test_a_second_cart_runs_its_own_enrollment_and_buying_one_leaves_the_other():
    world = World(CART)
    world.contact()
    world.event("c1", "Product Added", cart_id="k1")
    world.event("c1", "Product Added", cart_id="k2")
    world.event("c1", "Product Added", cart_id="k2", name="Filter")  # same cart: joins its items
    world.run(minutes=10)
    world.event("c1", "Order Completed", cart_id="k1")
    world.run(hours=2)
    records = {r.enrollment.key: r for r in world.store.records.values()}
    assert set(records) == {"k1", "k2"}
    assert records["k1"].enrollment.status == "exited"
    assert records["k2"].enrollment.node == "wait-more"
    assert len(records["k2"].data["items"]) == 2
    (only,) = world.messaging.requests.values()
    assert only["template"] == "cart-reminder" and [i.get("name") for i in only["data"]["items"]] == [None, "Filter"]


def test_the_goal_converts_the_last_message_sent():
    world = World(CART)
    world.contact()
    world.event("c1", "Product Added", cart_id="k1")
    world.run(hours=2)
    (mid,) = world.messaging.requests
    world.log.create(Message(id=mid, contact_id="c1", channel="email", template="cart-reminder", lane="marketing",
                             topic=None, cause="x", requested_at=NOW, timeline=(StatusChange(QUEUED, NOW),)))
    world.event("c1", "Order Completed", cart_id="k1")
    assert world.log.get(mid).status == CONVERTED
    assert world.only().enrollment.status == "exited"


# -- idempotency ----------------------------------------------------------------------------------

def test_a_redelivered_signal_enrolls_once():
    world = World(CART)
    world.contact()
    signal = world.signal("c1", "Product Added", cart_id="k1")
    world.runtime.on_signal(signal)
    world.runtime.on_signal(copy.deepcopy(signal))
    world.machine.drain(world.runtime)
    assert len(world.store.records) == 1 and len(world.machine.executions) == 1
    assert world.store.counts("abandoned-cart")["entered"] == 1


def test_a_redelivered_product_of_a_running_cart_joins_its_items_once():
    """The outbox of a contact read back unpublished is published again (services/effects.py):
    the same signal comes back, after the FIFO queue's deduplication window on AWS, at any
    time on the emulator. The cart's enrollment takes its product once."""
    world = World(CART)
    world.contact()
    world.event("c1", "Product Added", cart_id="k1", name="Roma")
    second = world.signal("c1", "Product Added", cart_id="k1", name="Grinder")
    world.runtime.on_signal(second)
    world.runtime.on_signal(copy.deepcopy(second))
    world.machine.drain(world.runtime)
    assert [i["name"] for i in world.only().data["items"]] == ["Roma", "Grinder"]


def test_a_start_lost_after_the_enrollment_was_stored_happens_on_redelivery():
    world = World(CART)
    world.contact()
    signal = world.signal("c1", "Product Added", cart_id="k1")
    starts = world.machine.start
    world.machine.start = lambda *a: (_ for _ in ()).throw(ConnectionError("network"))
    with pytest.raises(ConnectionError):
        world.runtime.on_signal(signal)
    world.machine.start = starts
    world.runtime.on_signal(signal)
    assert len(world.machine.executions) == 1


def test_a_retried_advance_sends_once_and_answers_the_same():
    world = World(CART)
    world.contact()
    world.event("c1", "Product Added", cart_id="k1")
    world.clock.advance(hours=1, seconds=1)
    world.machine.tick()
    (message,) = world.machine.advance_queue
    world.machine.advance_queue.clear()
    answer = world.machine.answer
    world.machine.answer = lambda token, output: (_ for _ in ()).throw(ConnectionError("lost"))
    with pytest.raises(ConnectionError):
        world.runtime.on_advance(message)  # sent, stored, then the answer was lost
    world.machine.answer = answer
    world.runtime.on_advance(copy.deepcopy(message))  # the queue delivers it again
    world.machine.drain(world.runtime)
    assert world.messaging.sent() == [("c1", "email", "cart-reminder")]
    assert world.messaging.calls == 2  # asked twice, one message: the request is idempotent
    assert world.only().enrollment.node == "wait-more"
    assert world.store.counts("abandoned-cart")["sent:email-reminder"] == 1


def test_two_rounds_that_end_alike_are_two_rounds_not_a_retry():
    """Two waits of the same length that both time out hand Advance the same outcome; the
    round the machine carries back keeps the second from being taken for a retry of the first."""
    doc = {"id": "nag", "name": "Nag", "trigger": {"event": "Signed Up"}, "start": "first",
           "nodes": {"first": {"wait_for": {"event": "Paid"}, "timeout": "1 hour", "on_event": "done",
                               "on_timeout": "second"},
                     "second": {"wait_for": {"event": "Paid"}, "timeout": "1 hour", "on_event": "done",
                                "on_timeout": "nag"},
                     "nag": {"send": {"template": "nag", "channel": "email"}},
                     "done": {"exit": "paid"}}}
    world = World(doc)
    world.contact()
    world.event("c1", "Signed Up")
    world.run(hours=3)
    assert world.messaging.sent() == [("c1", "email", "nag")]
    assert world.only().enrollment.status == "completed"


def test_an_advance_for_an_unknown_enrollment_fails_its_execution():
    world = World(CART)
    world.machine.executions["ghost"] = {"arn": "x", "name": "ghost", "status": "RUNNING", "history": [],
                                         "state": "Advance", "input": {"enrollment_id": "ghost"}, "wait": {}}
    world.machine.tokens["t"] = ("ghost", "Advance")
    world.runtime.on_advance({"enrollment_id": "ghost", "execution_arn": "x", "task_token": "t",
                              "after": {"kind": "start"}})
    assert world.machine.executions["ghost"]["status"] == "FAILED"
    assert world.machine.executions["ghost"]["error"] == "Mercurio.UnknownEnrollment"


# -- waiting for an event -------------------------------------------------------------------------

def test_the_awaited_event_resumes_the_wait_and_the_nodes_after_it_run():
    world = World(PROFILE)
    world.contact()
    world.event("c1", "Signed Up")
    world.run(hours=2)
    world.event("c1", "Profile Completed")
    record = world.only()
    assert world.messaging.sent() == [("c1", "email", "thanks")]
    assert record.enrollment.status == "completed"
    assert world.decisions(record)[:3] == [("wait-profile", "waiting"), ("wait-profile", "resumed"),
                                           ("thanks", "sent")]
    update = [e.body for e in world.events.items.values() if e.body["event"] == JOURNEY_PROFILE_UPDATED]
    assert len(update) == 1 and update[0]["contactId"] == "c1"
    assert update[0]["properties"]["add_tags"] == ["complete"] and update[0]["properties"]["score"] == 5
    (notification,) = world.effects.sent
    assert notification.destination_id == "crm" and notification.payload["type"] == "journey.notify"
    assert notification.payload["contact"]["id"] == "c1"


def test_an_event_that_comes_before_the_wait_registered_its_token_still_resumes_it():
    world = World(PROFILE)
    world.contact()
    world.runtime.on_signal(world.signal("c1", "Signed Up"))
    world.runtime.on_advance(world.machine.advance_queue.pop(0))  # answers "event": the wait task is queued
    assert len(world.machine.wait_queue) == 1 and world.only().task_token is None
    world.runtime.on_signal(world.signal("c1", "Profile Completed"))  # before the token registered
    world.runtime.on_signal(world.signal("c1", "Profile Completed"))  # a second one resumes nothing more
    world.machine.drain(world.runtime)
    assert world.messaging.sent() == [("c1", "email", "thanks")]
    assert world.only().enrollment.status == "completed"


def test_no_event_within_the_timeout_takes_the_timeout_branch_and_a_late_event_changes_nothing():
    world = World(PROFILE)
    world.contact()
    world.event("c1", "Signed Up")
    world.run(days=1, seconds=1)
    world.event("c1", "Profile Completed")
    assert world.messaging.sent() == [("c1", "email", "nudge")]
    assert ("wait-profile", "resumed") in world.decisions()


# -- exits, pausing, stopping, versions, time scale -----------------------------------------------

def test_leaving_the_exit_segment_ends_the_enrollment_at_once_and_stops_its_wait():
    world = World(LEAVE)
    world.contact()
    world.runtime.on_signal({"kind": "segment", "id": "s1", "contact_id": "c1", "segment_id": "vip",
                             "entered": True, "at": iso_ms(NOW)})
    world.machine.drain(world.runtime)
    world.run(days=1)
    world.runtime.on_signal({"kind": "segment", "id": "s2", "contact_id": "c1", "segment_id": "vip",
                             "entered": False, "at": iso_ms(world.clock.now())})
    record = world.only()
    assert record.enrollment.status == "exited"
    assert world.machine.executions[record.id]["status"] == "ABORTED"
    world.run(days=5)
    assert world.messaging.sent() == []


def test_a_paused_journey_takes_nobody_new_and_holds_its_enrollments_until_resumed():
    world = World(CART)
    world.contact()
    world.event("c1", "Product Added", cart_id="k1")
    world.store.set_control("abandoned-cart", "paused", iso_ms(NOW), "checking the copy")
    world.event("c1", "Product Added", cart_id="k2")
    assert len(world.store.records) == 1
    world.run(hours=3)
    assert world.messaging.sent() == []
    assert ("wait-for-purchase", "held") in world.decisions()
    world.store.set_control("abandoned-cart", "live", iso_ms(world.clock.now()), "resumed")
    world.run(hours=1, minutes=1)
    assert world.messaging.sent() == [("c1", "email", "cart-reminder")]
    assert world.store.counts("abandoned-cart")["refused:paused"] == 1


def test_stopping_an_enrollment_ends_its_execution_cleanly():
    world = World(CART)
    world.contact()
    world.event("c1", "Product Added", cart_id="k1")
    record = world.only()
    world.runtime.on_signal({"kind": "stop", "id": "stop-1", "enrollment_id": record.id,
                             "reason": "the journey was stopped"})
    world.run(days=2)
    assert world.messaging.sent() == []
    assert world.only().enrollment.status == "stopped"
    assert world.machine.executions[record.id]["status"] == "ABORTED"


def test_running_enrollments_finish_on_their_version_and_new_ones_take_the_new():
    world = World(CART)
    world.contact()
    world.event("c1", "Product Added", cart_id="k1")
    changed = copy.deepcopy(CART)
    changed["nodes"]["email-reminder"]["send"]["template"] = "cart-reminder-v2"
    world.definitions.put("journey", "abandoned-cart", changed)
    world.event("c1", "Product Added", cart_id="k2")
    world.run(hours=2)
    by_key = {r.enrollment.key: r for r in world.store.records.values()}
    assert (by_key["k1"].journey_version, by_key["k2"].journey_version) == (1, 2)
    assert sorted(r["template"] for r in world.messaging.requests.values()) == ["cart-reminder", "cart-reminder-v2"]


def test_the_time_scale_shortens_the_machine_waits_only():
    world = World(CART, scale=3600)
    world.contact()
    world.runtime.on_signal(world.signal("c1", "Product Added", cart_id="k1"))
    world.runtime.on_advance(world.machine.advance_queue.pop(0))
    record = world.only()
    assert world.machine.executions[record.id]["wait"] == {"kind": "event", "timeout_seconds": 1, "round": 1}
    assert record.enrollment.waiting.deadline == NOW + timedelta(hours=1)  # the journey's time is unchanged
    world.run(seconds=2)
    assert world.messaging.sent() == [("c1", "email", "cart-reminder")]


def test_a_wait_longer_than_the_machine_allows_runs_in_pieces():
    doc = {"id": "long", "name": "Long", "trigger": {"event": "Signed Up"}, "start": "pause",
           "nodes": {"pause": {"wait": "500 days", "next": "hello"},
                     "hello": {"send": {"template": "hello", "channel": "email"}}}}
    world = World(doc)
    world.contact()
    world.event("c1", "Signed Up")
    record = world.only()
    first = machine_time(world.machine.executions[record.id]["wait"]["at"])
    assert first <= NOW + timedelta(days=364, seconds=1)
    world.run(days=400)
    assert world.messaging.sent() == []
    world.run(days=101)
    assert world.messaging.sent() == [("c1", "email", "hello")]


def test_an_erased_contact_ends_its_enrollment_at_the_next_advance():
    world = World(CART)
    world.contact()
    world.event("c1", "Product Added", cart_id="k1")
    del world.contacts.contacts["c1"]
    world.run(hours=2)
    assert world.messaging.sent() == []
    assert world.decisions()[-1] == ("wait-for-purchase", "exited")


# -- the simulator says what the runtime does -----------------------------------------------------

@pytest.mark.parametrize("timeline, consent", [
    ([(0, "Product Added", {"cart_id": "k1"})], SMS_CONSENT),
    ([(0, "Product Added", {"cart_id": "k1"})], {}),
    ([(0, "Product Added", {"cart_id": "k1"}), (1800, "Order Completed", {"cart_id": "k1"})], {}),
    ([(0, "Product Added", {"cart_id": "k1"}), (7200, "Order Completed", {"cart_id": "k1"})], {}),
    ([(0, "Product Added", {"cart_id": "k1"}), (60, "Product Added", {"cart_id": "k2"}),
      (7200, "Order Completed", {"cart_id": "k2"})], SMS_CONSENT),
])
def test_the_simulator_trace_matches_what_the_runtime_did(timeline, consent):
    world = World(CART)
    world.contact(consent=copy.deepcopy(consent))
    for after, name, properties in timeline:
        world.machine.run(world.runtime, NOW + timedelta(seconds=after))
        world.event("c1", name, **properties)
    world.run(days=3)
    contact = Contact(id="c1", created_at="2026-01-01T00:00:00Z", consent=copy.deepcopy(consent))
    simulated = simulate(parse_journey(CART), contact,
                         [Scripted(timedelta(seconds=a), {"event": n, "properties": p}) for a, n, p in timeline],
                         NOW, until=timedelta(days=3) + timedelta(seconds=timeline[-1][0]))
    real = sorted(([(t.node, t.decision) for t in r.enrollment.trace], r.enrollment.key)
                  for r in world.store.records.values())
    expected = sorted(([(t.node, t.decision) for t in e.trace], e.key) for e in simulated.enrollments)
    assert real == expected
    assert sorted((c, t) for _, c, t in world.messaging.sent()) == sorted((c, t) for _, c, t in simulated.sends())


def test_the_interest_of_journeys_names_their_events_and_segments():
    journeys = [parse_journey(CART), parse_journey(PROFILE), parse_journey(LEAVE)]
    assert events_heard(journeys) == {"Product Added", "Order Completed", "Signed Up", "Profile Completed"}
    assert segments_heard(journeys) == {"vip"}


def test_after_a_merge_the_survivors_events_reach_the_merged_contacts_enrollments():
    world = World(CART)
    world.contact("anon")
    world.contact("known")
    world.event("anon", "Product Added", cart_id="k1")  # an anonymous visitor's cart
    world.runtime.on_signal({"kind": "merged", "id": "merge-1", "contact_id": "known", "merged": ["anon"]})
    world.runtime.on_signal({"kind": "merged", "id": "merge-1", "contact_id": "known", "merged": ["anon"]})  # again
    world.event("known", "Order Completed", cart_id="k1")  # bought once identified
    world.run(days=2)
    assert world.messaging.sent() == []
    assert world.only().enrollment.status == "exited"
    assert [e["key"] for e in world.store.entries("known")["abandoned-cart"]["entries"]] == ["k1"]
    assert world.store.entries("anon") == {}


def test_an_event_that_ends_a_wait_during_a_pause_is_acted_on_after_the_resume():
    world = World(PROFILE)
    world.contact()
    world.event("c1", "Signed Up")
    world.store.set_control("complete-profile", "paused", iso_ms(NOW), "checking")
    world.event("c1", "Profile Completed")  # answers the wait: the Advance holds, keeping the outcome
    world.run(hours=30)  # paused for longer than the wait's timeout
    assert world.messaging.sent() == []
    assert [d for d in world.decisions() if d[1] == "held"] == [("wait-profile", "held")]
    world.store.set_control("complete-profile", "live", iso_ms(world.clock.now()), "resumed")
    world.run(hours=2)
    assert world.messaging.sent() == [("c1", "email", "thanks")]  # the event's branch, not the timeout's


def test_a_cart_keeps_its_newest_items_within_a_bounded_size():
    world = World(CART)
    world.contact()
    world.event("c1", "Product Added", cart_id="k1", description="x" * 20_000)
    for n in range(60):
        world.event("c1", "Product Added", cart_id="k1", n=n)
    items = world.only().data["items"]
    assert len(items) == 50 and items[-1] == {"cart_id": "k1", "n": 59}
    assert all("description" not in i for i in items)


class Pool:
    """CouponPools.claim: one code per claim id, None once the pool is empty."""

    def __init__(self, *codes):
        self.free, self.claims = list(codes), {}

    def claim(self, pool, claim_id):
        if claim_id not in self.claims and self.free:
            self.claims[claim_id] = self.free.pop(0)
        return self.claims.get(claim_id)


GIFT = {"id": "gift", "name": "Gift", "trigger": {"event": "Signed Up"}, "start": "give",
        "nodes": {"give": {"send": {"template": "gift", "channel": "email", "coupon": "welcome"}}}}


def test_a_send_with_a_coupon_hands_one_code_per_enrollment_and_skips_when_the_pool_is_empty():
    world = World(GIFT)
    world.runtime.coupons = Pool("CODE-1")
    world.contact("c1")
    world.contact("c2")
    world.event("c1", "Signed Up")
    world.event("c2", "Signed Up")
    (request,) = world.messaging.requests.values()
    assert request["contact_id"] == "c1" and request["data"]["coupon"] == "CODE-1"
    assert world.store.counts("gift")["no_coupon:give"] == 1
