"""Publishing a saved contact's outbox: membership rows, internal events, the recheck
schedule, and the typed domain events the message bus hands to its handlers (which enqueue
deliveries to destinations on the effects queue; nothing here calls the outside world).

Every effect is idempotent, so an outbox published twice (the process stopped between the
contact write and the end of publishing, and the stream retried) changes nothing twice:
memberships and internal events are keyed, deliveries carry their idempotency key.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from chalicelib.domain.contact import Contact
from chalicelib.domain.contact_events import from_internal_event, snapshot
from chalicelib.domain.events import parse_timestamp
from chalicelib.services.messagebus import MessageBus
from chalicelib.services.ports import EventStore, MembershipStore, RecheckSchedule, StoredEvent


@dataclass
class EffectsPublisher:
    """Publishes a saved contact's outbox. Every effect is idempotent."""

    memberships: MembershipStore
    events: EventStore
    schedule: RecheckSchedule
    bus: MessageBus
    score_of: Callable[[Contact, datetime], float]  # the decayed score, as the admin API shows it
    ttl_days: int = 395
    journeys: object = None  # JourneyQueue: the signals live journeys listen to (services/journey_runtime.py)

    def publish(self, contact: Contact, now: datetime) -> int:
        """Publish the outbox: memberships and recheck entries, then the typed events to the
        bus, and the internal events into the event store last, so that an outbox whose
        events are all stored was published whole (`publish_stored` relies on it)."""
        if not contact.outbox:
            return 0
        internal, signals = [], []
        for effect in contact.outbox:
            kind = effect["kind"]
            member = effect.get("contact_id", contact.id)
            if kind == "enter":
                self.memberships.enter(effect["segment_id"], member, effect["since"])
            elif kind == "leave":
                self.memberships.leave(effect["segment_id"], member)
            elif kind == "schedule":
                self.schedule.schedule(contact.id, parse_timestamp(effect["at"]))
            elif kind == "event":
                internal.append(effect["event"])
            elif kind == "journey" and self.journeys is not None:
                signals.append(effect["signal"])
        if signals:  # deduplicated by signal id: publishing twice enrolls and resumes once
            self.journeys.send(signals)
        if internal:
            seen = snapshot(contact, self.score_of(contact, now))
            for event in internal:
                typed = from_internal_event(event, seen)
                if typed is not None:
                    self.bus.handle(typed)
            ttl = int((now + timedelta(days=self.ttl_days)).timestamp())
            self.events.append([StoredEvent(partition=internal_partition(e), sort=internal_sort(e), body=e, ttl=ttl)
                                for e in internal])
        published = len(contact.outbox)
        contact.outbox.clear()  # persisted empty with the contact's next write
        return published

    def publish_stored(self, contact: Contact, now: datetime) -> int:
        """Publish an outbox read back with its contact, unless its write's own publishing
        finished: then every internal event of the outbox is in the event store (they are
        stored last), and the outbox is only emptied in memory. That costs one read of
        those event keys instead of a second membership write and event write per effect.
        An outbox with no internal event, or with one not found (not stored yet, or not
        visible yet to an eventually consistent read), is published again: every effect is
        idempotent."""
        keys = [(internal_partition(e["event"]), internal_sort(e["event"]))
                for e in contact.outbox if e["kind"] == "event"]
        if keys and self.events.stored(keys) >= set(keys):
            contact.outbox.clear()
            return 0
        return self.publish(contact, now)


def internal_partition(event: dict) -> str:
    return f"contact:{event['contactId']}"


def internal_sort(event: dict) -> str:
    return f"{event['originalTimestamp']}#{event['messageId']}"
