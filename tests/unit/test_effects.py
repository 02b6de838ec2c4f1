"""Typed contact events, the message bus and its handlers, and publishing a contact's
outbox: effects leave through the queue, each once per cause, none dropped."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.domain.contact_events import (
    ContactSnapshot,
    ScoreChanged,
    SegmentEntered,
    SegmentExited,
    StageChanged,
    TagAdded,
    from_internal_event,
    snapshot,
)
from chalicelib.domain.destinations import Destination
from chalicelib.services.catalog import build_catalog
from chalicelib.services.effects import EffectsPublisher
from chalicelib.services.handlers import EVENT_HANDLERS, delivery_payload, enqueue_destination_deliveries
from chalicelib.services.messagebus import MessageBus
from chalicelib.services.segmentation import ProfileRules, internal_event
from tests.unit.effects_fakes import FakeEffectsQueue
from tests.unit.fakes import FakeEventStore, FakeMembershipStore, FakeRecheckSchedule

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
PERSON = ContactSnapshot(id="c1", traits={"email": "ada@example.com"}, identifiers=("email:ada@example.com",),
                         stage="lead", score=12.5, tags=("vip",), segments=("mql",))


def crm(**overrides) -> Destination:
    fields = {"id": "crm", "name": "CRM", "url": "https://crm.example.com/hooks",
              "secret_parameter": "/mercurio/test/destinations/crm", "segments": ("mql",)}
    fields.update(overrides)
    return Destination(**fields)


# -- typed events ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, properties, expected", [
    ("Segment Entered", {"segment_id": "mql", "segment_name": "MQL"}, SegmentEntered),
    ("Segment Exited", {"segment_id": "mql", "segment_name": "MQL"}, SegmentExited),
    ("Score Changed", {"points": 55.0, "delta": 10, "rule": "pricing"}, ScoreChanged),
    ("Stage Changed", {"from": "lead", "to": "mql"}, StageChanged),
    ("Tag Added", {"tag": "vip"}, TagAdded),
])
def test_internal_events_become_typed_events(name, properties, expected):
    event = internal_event("c1", name, properties, NOW, cause="m-1")
    typed = from_internal_event(event, PERSON)
    assert type(typed) is expected
    assert typed.cause == event["messageId"] and typed.at == event["timestamp"] and typed.contact is PERSON
    with pytest.raises(AttributeError):
        typed.cause = "other"  # frozen: what happened does not change


def test_events_no_handler_reacts_to_are_not_typed():
    assert from_internal_event(internal_event("c1", "Tag Removed", {"tag": "vip"}, NOW, "m"), PERSON) is None
    assert from_internal_event(internal_event("c1", "Consent Updated", {}, NOW, "m"), PERSON) is None


def test_the_snapshot_score_is_a_number_even_without_points():
    contact = Contact(id="c1", created_at="2026-11-01T00:00:00.000Z")
    assert contact.score == {}
    assert snapshot(contact, 0.0).as_payload()["score"] == 0.0
    assert snapshot(contact, None).as_payload()["score"] == 0.0


# -- the bus ---------------------------------------------------------------------------------

def test_the_bus_sends_an_event_to_the_handlers_of_its_type_only():
    seen = []
    bus = MessageBus({SegmentEntered: [seen.append, lambda e: seen.append(("second", e.segment_id))],
                      SegmentExited: [lambda e: seen.append("exited")]})
    entered = SegmentEntered(cause="m-1", at="2026-11-22T12:00:00.000Z", contact=PERSON, segment_id="mql")
    assert bus.handle(entered) == 2
    assert seen == [entered, ("second", "mql")]
    assert bus.handle(TagAdded(cause="m-2", at="2026-11-22T12:00:00.000Z", contact=PERSON, tag="x")) == 0


def test_a_failing_handler_stops_publishing_so_the_outbox_is_published_again():
    def broken(event):
        raise RuntimeError("queue unavailable")

    bus = MessageBus({SegmentEntered: [broken]})
    with pytest.raises(RuntimeError):
        bus.handle(SegmentEntered(cause="m", at="t", contact=PERSON, segment_id="mql"))


def test_every_typed_event_has_a_handler():
    from chalicelib.domain.contact_events import (
        KINDS,
        ConfirmationRequested,
        MessageConverted,
        MessageTriggered,
        PushTokenSeen,
    )

    # Destinations hear the KINDS; the others are Mercurio's own reactions: a message to
    # request, a purchase attributed to a message, a device to register, an opt-in to confirm.
    assert set(EVENT_HANDLERS) == set(KINDS.values()) | {MessageTriggered, MessageConverted, PushTokenSeen,
                                                         ConfirmationRequested}


# -- the destinations handler ------------------------------------------------------------------

def test_one_delivery_per_interested_destination_keyed_by_cause_and_destination():
    queue = FakeEffectsQueue()
    destinations = [crm(), crm(id="sales", segments=("mql", "vip")), crm(id="other", segments=("vip",)),
                    crm(id="exits", events=("segment.exited",))]
    event = SegmentEntered(cause="mercurio-abc", at="2026-11-22T12:00:00.000Z", contact=PERSON,
                           segment_id="mql", segment_name="MQL")
    sent = enqueue_destination_deliveries(event, destinations=lambda: destinations, queue=queue,
                                          now=lambda: "2026-11-22T12:00:01.000Z")
    assert queue.calls == 1  # one batch call
    assert [(m.destination_id, m.delivery_id) for m in sent] == [
        ("crm", "mercurio-abc:crm"), ("sales", "mercurio-abc:sales")]
    assert sent[0].payload == {"type": "segment.entered", "segment_id": "mql", "segment_name": "MQL",
                               "at": "2026-11-22T12:00:00.000Z", "contact": PERSON.as_payload()}
    assert sent[0].payload["contact"]["score"] == 12.5


def test_no_destination_no_call_and_other_event_kinds_only_when_listed():
    queue = FakeEffectsQueue()
    stage = StageChanged(cause="m-9", at="2026-11-22T12:00:00.000Z", contact=PERSON, previous="lead", stage="mql")
    assert enqueue_destination_deliveries(stage, destinations=lambda: [crm()], queue=queue, now=lambda: "t") == []
    assert queue.calls == 0
    listening = crm(events=("stage.changed",), segments=())
    sent = enqueue_destination_deliveries(stage, destinations=lambda: [listening], queue=queue, now=lambda: "t")
    assert [m.payload["type"] for m in sent] == ["stage.changed"]
    assert delivery_payload(stage)["from"] == "lead" and delivery_payload(stage)["to"] == "mql"


# -- publishing the outbox ---------------------------------------------------------------------

def _publisher(queue: FakeEffectsQueue, destinations: list[Destination], score: float = 0.0):
    bus = MessageBus({SegmentEntered: [lambda e: enqueue_destination_deliveries(
        e, destinations=lambda: destinations, queue=queue, now=lambda: "2026-11-22T12:00:00.000Z")]})
    memberships, events = FakeMembershipStore(), FakeEventStore()
    publisher = EffectsPublisher(memberships, events, FakeRecheckSchedule(), bus, lambda contact, now: score)
    return publisher, memberships, events


def _rules_with_segments(count: int) -> ProfileRules:
    rows = [{"kind": "segment", "id": f"s{i:03d}", "version": 1,
             "document": {"id": f"s{i:03d}", "name": f"Segment {i}", "conditions": {"trait": "plan", "equals": "pro"}}}
            for i in range(count)]
    catalog = build_catalog(rows)
    return ProfileRules(lambda: catalog)


def test_an_outbox_of_many_effects_is_published_whole():
    """A contact entering 250 segments at once: every Segment Entered reaches the bus and
    every membership is written (the outbox used to keep only its last 200 effects)."""
    rules = _rules_with_segments(250)
    contact = Contact(id="c1", created_at="2026-11-01T00:00:00.000Z", traits={"plan": "pro"})
    event = {"type": "identify", "messageId": "m-1", "traits": {"plan": "pro"}, "timestamp": "2026-11-22T12:00:00.000Z",
             "receivedAt": "2026-11-22T12:00:00.000Z"}
    rules.on_event(contact, event, NOW)
    queue = FakeEffectsQueue()
    publisher, memberships, events = _publisher(queue, [crm(segments=tuple(f"s{i:03d}" for i in range(250)))])
    publisher.publish(contact, NOW)
    assert len(contact.segments) == 250
    assert sum(memberships.size(f"s{i:03d}") for i in range(250)) == 250
    assert len([e for e in events.inserted if e.body["event"] == "Segment Entered"]) == 250
    assert len({m.delivery_id for m in queue.sent}) == 250


def test_publishing_twice_enqueues_the_same_deliveries_and_stores_the_events_once():
    """A crash after the contact write: the outbox is published again, with the same keys."""
    rules = _rules_with_segments(1)
    contact = Contact(id="c1", created_at="2026-11-01T00:00:00.000Z", traits={"plan": "pro"})
    rules.on_event(contact, {"type": "identify", "messageId": "m-1", "traits": {"plan": "pro"},
                             "timestamp": "2026-11-22T12:00:00.000Z", "receivedAt": "2026-11-22T12:00:00.000Z"}, NOW)
    queue = FakeEffectsQueue()
    publisher, _, events = _publisher(queue, [crm(segments=("s000",))], score=7.25)
    outbox = list(contact.outbox)
    publisher.publish(contact, NOW)
    contact.outbox.extend(outbox)
    publisher.publish(contact, NOW)
    assert len(events.inserted) == 1
    assert len(queue.sent) == 2 and queue.sent[0].delivery_id == queue.sent[1].delivery_id
    assert queue.sent[0].payload["contact"]["score"] == 7.25


def test_an_enqueue_failure_keeps_the_outbox_for_the_next_publishing():
    rules = _rules_with_segments(1)
    contact = Contact(id="c1", created_at="2026-11-01T00:00:00.000Z", traits={"plan": "pro"})
    rules.on_event(contact, {"type": "identify", "messageId": "m-1", "traits": {"plan": "pro"},
                             "timestamp": "2026-11-22T12:00:00.000Z", "receivedAt": "2026-11-22T12:00:00.000Z"}, NOW)
    queue = FakeEffectsQueue(fail=RuntimeError("SQS throttled"))
    publisher, _, _ = _publisher(queue, [crm(segments=("s000",))])
    with pytest.raises(RuntimeError):
        publisher.publish(contact, NOW)
    assert contact.outbox  # not cleared: the stream retries and publishes it again
