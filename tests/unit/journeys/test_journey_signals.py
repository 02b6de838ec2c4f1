"""How the stream tells journeys: an event a live journey listens to becomes a signal on the
contact's outbox, published to the journey-events queue after the contact is saved (never sent
from the stream); a segment change a journey listens to becomes one through the message bus; a
journey's update node comes back as an internal event the profile rules apply."""
from __future__ import annotations

from datetime import datetime, timezone

from chalicelib.domain.contact import Contact
from chalicelib.domain.contact_events import ContactSnapshot, SegmentEntered, SegmentExited
from chalicelib.domain.journeys.interest import JOURNEY_PROFILE_UPDATED
from chalicelib.domain.journeys.language import parse_journey
from chalicelib.domain.scoring import parse_scoring
from chalicelib.services.catalog import Catalog
from chalicelib.services.effects import EffectsPublisher
from chalicelib.services.handlers import EVENT_HANDLERS, enqueue_journey_segment_signal
from chalicelib.services.messagebus import MessageBus
from chalicelib.services.segmentation import ProfileRules, internal_event
from tests.unit.fakes import FakeEventStore, FakeMembershipStore, FakeRecheckSchedule
from tests.unit.journey_fakes import FakeJourneyQueue
from tests.unit.journeys.test_journey_runtime import CART, LEAVE

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
SCORING = {"half_life": "30 days", "rules": [{"id": "pricing", "event": "Pricing Viewed", "points": 10}],
           "stages": [{"stage": "lead", "min": 0}, {"stage": "mql", "min": 50}]}


def track(name: str, message_id: str = "m-1", **properties) -> dict:
    return {"type": "track", "event": name, "properties": properties, "messageId": message_id,
            "timestamp": "2026-03-02T10:00:00.000Z", "receivedAt": "2026-03-02T10:00:00.000Z"}


def rules(**catalog) -> ProfileRules:
    return ProfileRules(lambda: Catalog.of(**catalog))


def contact() -> Contact:
    return Contact(id="c1", created_at="2026-03-01T00:00:00.000Z")


def test_an_event_a_live_journey_listens_to_goes_on_the_outbox_as_a_signal():
    shopper = contact()
    rules(journeys={"abandoned-cart": parse_journey(CART)}).on_event(shopper, track("Product Added", cart_id="k1"), NOW)
    signals = [e["signal"] for e in shopper.outbox if e["kind"] == "journey"]
    assert signals == [{"kind": "event", "id": "m-1", "contact_id": "c1",
                        "event": {"type": "track", "event": "Product Added", "properties": {"cart_id": "k1"},
                                  "timestamp": "2026-03-02T10:00:00.000Z", "messageId": "m-1"}}]


def test_an_event_no_journey_listens_to_stays_off_the_queue():
    shopper = contact()
    rules(journeys={"abandoned-cart": parse_journey(CART)}).on_event(shopper, track("Page Viewed"), NOW)
    assert not [e for e in shopper.outbox if e["kind"] == "journey"]
    alone = contact()
    rules().on_event(alone, track("Product Added", cart_id="k1"), NOW)  # no journey at all
    assert not [e for e in alone.outbox if e["kind"] == "journey"]


def test_publishing_the_outbox_sends_the_signals_to_the_journey_queue():
    queue = FakeJourneyQueue()
    publisher = EffectsPublisher(FakeMembershipStore(), FakeEventStore(), FakeRecheckSchedule(), MessageBus({}),
                                 lambda c, now: 0.0, journeys=queue)
    shopper = contact()
    rules(journeys={"abandoned-cart": parse_journey(CART)}).on_event(shopper, track("Product Added", cart_id="k1"), NOW)
    publisher.publish(shopper, NOW)
    assert [s["id"] for s in queue.sent] == ["m-1"] and shopper.outbox == []


def test_a_segment_change_a_journey_listens_to_becomes_a_signal():
    assert enqueue_journey_segment_signal in EVENT_HANDLERS[SegmentEntered]
    assert enqueue_journey_segment_signal in EVENT_HANDLERS[SegmentExited]
    queue = FakeJourneyQueue()
    snap = ContactSnapshot(id="c1")
    heard = lambda: {"vip"}  # noqa: E731
    assert enqueue_journey_segment_signal(SegmentExited(cause="x1", at="2026-03-02T10:00:00.000Z", contact=snap,
                                                        segment_id="vip"), segments=heard, queue=queue)
    assert not enqueue_journey_segment_signal(SegmentEntered(cause="x2", at="2026-03-02T10:00:00.000Z", contact=snap,
                                                             segment_id="other"), segments=heard, queue=queue)
    assert queue.sent == [{"kind": "segment", "id": "x1", "contact_id": "c1", "segment_id": "vip", "entered": False,
                           "at": "2026-03-02T10:00:00.000Z"}]
    assert Catalog.of(journeys={"vip-care": parse_journey(LEAVE)}).journey_interest()[1] == {"vip"}


def test_a_journey_update_sets_traits_tags_and_points_through_the_profile_rules():
    person = contact()
    person.tags = ["trial"]
    update = internal_event("c1", JOURNEY_PROFILE_UPDATED, {
        "traits": {"plan": "pro"}, "add_tags": ["vip"], "remove_tags": ["trial"], "score": 55,
        "journey_id": "nurture", "node": "promote"}, NOW, "e1:promote:0")
    rules(scoring=parse_scoring(SCORING)).on_event(person, update, NOW)
    assert person.traits["plan"] == "pro"
    assert person.tags == ["vip"]
    assert person.score["points"] == 55 and person.stage == "mql"
    emitted = [e["event"]["event"] for e in person.outbox if e["kind"] == "event"]
    assert "Tag Added" in emitted and "Score Changed" in emitted and "Stage Changed" in emitted
    assert not [e for e in person.outbox if e["kind"] == "journey"]  # its own update never signals back


def test_a_merge_while_journeys_are_live_becomes_a_signal():
    from chalicelib.domain.contact_events import ContactsMerged
    from chalicelib.services.handlers import enqueue_journey_merge_signal

    assert enqueue_journey_merge_signal in EVENT_HANDLERS[ContactsMerged]
    queue = FakeJourneyQueue()
    merged = ContactsMerged(cause="x", at="2026-03-02T10:00:00.000Z", contact=ContactSnapshot(id="c1"),
                            merged=("anon",))
    assert not enqueue_journey_merge_signal(merged, journeys_live=lambda: False, queue=queue)
    assert enqueue_journey_merge_signal(merged, journeys_live=lambda: True, queue=queue)
    assert queue.sent == [{"kind": "merged", "id": "x", "contact_id": "c1", "merged": ["anon"]}]
