"""Export and erasure of a contact (services/privacy.py) on fakes: the stream processor builds
the contact from events, then everything about it is exported, then erased."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from chalicelib.services.privacy_ports import ExportErasure

from chalicelib.domain.messaging.consent import suppression_key
from chalicelib.domain.messaging.messages import SENT, Message, StatusChange
from chalicelib.domain.segments.language import parse_segment
from chalicelib.services.catalog import Catalog
from chalicelib.services.contacts import NotFound
from chalicelib.services.effects import EffectsPublisher
from chalicelib.services.messagebus import MessageBus
from chalicelib.services.privacy import STEPS, Privacy
from chalicelib.services.process_events import EventProcessor
from chalicelib.services.segmentation import ProfileRules
from tests.unit.fakes import FakeClock, FakeDefinitionStore, FakeMembershipStore, FakeRecheckSchedule
from tests.unit.messaging_fakes import (
    ErasableContactRepository,
    ErasableEventStore,
    FakeMessageLog,
    FakeSuppressionStore,
)

SALT = b"privacy-salt-0123456789"


def ev(messageId, etype="track", **fields):
    ts = "2026-11-20T10:00:00.000Z"
    return {"type": etype, "messageId": messageId, "timestamp": ts, "originalTimestamp": ts, "receivedAt": ts,
            "context": {}, "source": "default", **fields}


class FakeExports(ExportErasure):
    def __init__(self, keys):
        self.keys = set(keys)

    def exports_of(self, segment_id):
        return sorted(k for k in self.keys if k.startswith(f"exports/{segment_id}/"))

    def delete(self, keys):
        self.keys -= set(keys)
        return len(keys)


class World:
    def __init__(self):
        self.clock = FakeClock()
        self.events, self.contacts = ErasableEventStore(), ErasableContactRepository()
        self.memberships, self.state = FakeMembershipStore(), FakeDefinitionStore()
        self.messages, self.suppressions = FakeMessageLog(), FakeSuppressionStore()
        segment = parse_segment({"id": "buyers", "name": "Buyers", "conditions": {"event": "Order Completed"}})
        catalog = Catalog.of(segments={"buyers": segment})
        publisher = EffectsPublisher(self.memberships, self.events, FakeRecheckSchedule(), MessageBus({}),
                                     lambda c, now: 0.0)
        self.processor = EventProcessor(self.contacts, self.clock, sleep=lambda s: None,
                                        rules=ProfileRules(lambda: catalog), publisher=publisher)
        self.exports = FakeExports({"exports/buyers/buyers-csv-1.csv", "exports/buyers/.parts/j1/000001.csv",
                                    "exports/others/others-csv-1.csv"})
        self.privacy = Privacy(self.contacts, self.events, self.memberships, self.state, self.clock, SALT,
                               messages=lambda: self.messages, suppressions=lambda: self.suppressions,
                               new_id=lambda: "e1", exports=self.exports)

    def store_and_process(self, event):
        from chalicelib.domain.events import event_key
        from chalicelib.services.ports import StoredEvent

        pk, sk = event_key(event)
        self.events.append([StoredEvent(pk, sk, event, 0)])
        self.processor.process(event)

    def build(self):
        self.store_and_process(ev("m1", "page", anonymousId="anon-1", properties={}))
        self.store_and_process(ev("m2", "identify", anonymousId="anon-1", userId="ada",
                                  traits={"email": "Ada@Example.com", "phone": "+393331234567"}))
        self.store_and_process(ev("m3", event="Order Completed", userId="ada", properties={"total": 10}))
        # Someone else, who must survive.
        self.store_and_process(ev("m4", event="Order Completed", userId="bob", properties={}))
        ada = self.contacts.lookup(["user:ada"])["user:ada"]
        sent = datetime(2026, 11, 21, tzinfo=timezone.utc)
        self.messages.create(Message(id="msg_1", contact_id=ada, channel="email", template="t", lane="marketing",
                                     topic=None, cause="x", requested_at=sent, status=SENT,
                                     address="ada.old@example.com", timeline=(StatusChange(SENT, sent),)))
        return ada


@pytest.fixture
def world():
    return World()


def test_the_export_holds_profile_identifiers_events_messages_and_consents(world):
    ada = world.build()
    doc = world.privacy.export(ada)
    assert doc["contact_id"] == ada
    assert set(doc["identifiers"]) >= {"user:ada", "anon:anon-1", "email:ada@example.com"}
    assert {e["messageId"] for e in doc["events"]} >= {"m1", "m2", "m3"}
    assert "m4" not in {e["messageId"] for e in doc["events"]}
    assert any(e.get("event") == "Segment Entered" for e in doc["events"])  # what Mercurio recorded, too
    assert [m["id"] for m in doc["messages"]] == ["msg_1"]
    assert "consents" in doc and doc["profile"]["traits"]["email"] == "ada@example.com"
    assert doc["events_truncated"] is False


def test_an_unknown_contact_cannot_be_exported_or_erased(world):
    with pytest.raises(NotFound):
        world.privacy.export("nobody")
    with pytest.raises(NotFound):
        world.privacy.start_erasure("nobody")


def test_erasure_removes_everything_but_hashed_suppressions(world):
    ada = world.build()
    assert world.memberships.size("buyers") == 2
    job = world.privacy.start_erasure(ada)
    assert job["status"] == "done" and job["done_steps"] == list(STEPS)
    assert world.contacts.get(ada) is None
    assert not any(i in world.contacts.identities for i in ("user:ada", "anon:anon-1", "email:ada@example.com"))
    assert not [k for k in world.events.items if k[0] in ("user:ada", "anon:anon-1", f"contact:{ada}")]
    assert world.messages.get("msg_1") is None
    assert world.memberships.size("buyers") == 1
    # The export files of the segments Ada was in held her: they go; the others stay.
    assert world.exports.keys == {"exports/others/others-csv-1.csv"} and job["counts"]["export_files"] == 2
    reasons = {(e.channel, e.address_hash): e.reason for e in world.suppressions.entries.values()}
    assert reasons == {("email", suppression_key("email", "ada@example.com", SALT)): "erased",
                       ("email", suppression_key("email", "ada.old@example.com", SALT)): "erased",
                       ("sms", suppression_key("sms", "+393331234567", SALT)): "erased"}
    # Bob is untouched.
    assert world.contacts.get(world.contacts.lookup(["user:bob"])["user:bob"]) is not None
    assert [k for k in world.events.items if k[0] == "user:bob"]
    # The finished job keeps no identifier.
    shown = world.privacy.erasure(job["id"])
    assert shown["counts"]["contacts"] == 1 and "ada" not in repr(world.state.get_state(f"erasure:{job['id']}"))


def test_an_erasure_out_of_time_continues_where_it_stopped(world):
    ada = world.build()
    job = world.privacy.start_erasure(ada, budget=lambda: False)  # one step, then out of time
    assert job["status"] == "running" and job["done_steps"] == ["suppress"]
    assert world.privacy.erasure(job["id"])["step"] == "memberships"
    [report] = world.privacy.resume()
    assert report["status"] == "done"
    assert world.privacy.resume() == []
    assert world.contacts.get(ada) is None


def _enrolled(world, contact_id: str, key: str, status: str = "active"):
    """An enrollment of the contact in a journey, as the runtime stores it."""
    from chalicelib.domain.journeys.engine import Enrollment, WaitUntil
    from chalicelib.domain.journeys.records import EnrollmentRecord

    at = datetime(2026, 11, 21, tzinfo=timezone.utc)
    enrollment = Enrollment(id=f"cart-{contact_id}-{key}", journey_id="cart", contact_id=contact_id, entered_at=at,
                            node="wait", key=key, status=status,
                            waiting=WaitUntil(at) if status == "active" else None)
    entries = world.enrollments.entries(contact_id).get("cart")
    world.enrollments.create(EnrollmentRecord(enrollment, journey_version=1), entries["version"] if entries else None)
    return enrollment.id


@pytest.fixture
def journeys_world(world):
    from tests.unit.journey_fakes import FakeEnrollmentStore, FakeJourneyQueue

    world.enrollments, world.journey_queue = FakeEnrollmentStore(), FakeJourneyQueue()
    world.privacy.enrollments, world.privacy.journey_queue = world.enrollments, world.journey_queue
    return world


def test_erasure_stops_the_contacts_running_journeys_before_deleting_their_enrollments(journeys_world):
    world = journeys_world
    ada = world.build()
    bob = world.contacts.lookup(["user:bob"])["user:bob"]
    running, finished = _enrolled(world, ada, "k1"), _enrolled(world, ada, "k2", status="completed")
    bobs = _enrolled(world, bob, "k9")
    job = world.privacy.start_erasure(ada)
    # The running enrollment was sent a stop signal; the step waits for the queue's consumer.
    assert job["status"] == "running" and job["step"] == "journeys" and job["counts"]["journeys_stopped"] == 1
    assert world.journey_queue.sent == [{"kind": "stop", "id": f"erase:{running}", "enrollment_id": running,
                                         "reason": "the contact was erased"}]
    assert world.contacts.get(ada) is None  # the contact went first: nothing can enroll it again
    assert world.privacy.resume()[0]["step"] == "journeys"  # still running: looked at again, no new signal
    assert len(world.journey_queue.sent) == 1
    # The consumer stops it (the runtime's _stop_one); the next run deletes everything of Ada's.
    record = world.enrollments.get(running)
    world.enrollments.save(record.with_enrollment(replace(record.enrollment, status="stopped", waiting=None)))
    [report] = world.privacy.resume()
    assert report["status"] == "done" and report["done_steps"] == list(STEPS)
    assert report["counts"]["enrollments"] == 3  # the entries item and both enrollments
    assert world.enrollments.get(running) is None and world.enrollments.get(finished) is None
    assert world.enrollments.entries(ada) == {}
    assert world.enrollments.get(bobs) is not None  # Bob's stay


def test_erasure_deletes_enrollments_whose_stop_was_not_handled_within_the_grace(journeys_world):
    from chalicelib.services.privacy import JOURNEY_STOP_GRACE

    world = journeys_world
    ada = world.build()
    running = _enrolled(world, ada, "k1")
    job = world.privacy.start_erasure(ada)
    assert job["step"] == "journeys"
    world.clock.advance(seconds=JOURNEY_STOP_GRACE.total_seconds() - 1)
    assert world.privacy.resume()[0]["status"] == "running"
    world.clock.advance(seconds=2)
    [report] = world.privacy.resume()
    assert report["status"] == "done" and report["counts"]["journeys_not_stopped"] == 1
    assert world.enrollments.get(running) is None


def test_erasure_without_running_journeys_deletes_the_finished_ones_at_once(journeys_world):
    world = journeys_world
    ada = world.build()
    finished = _enrolled(world, ada, "k1", status="exited")
    job = world.privacy.start_erasure(ada)
    assert job["status"] == "done" and job["counts"]["enrollments"] == 2
    assert world.enrollments.get(finished) is None and world.journey_queue.sent == []
