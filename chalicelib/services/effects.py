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

    def publish(self, contact: Contact, now: datetime) -> int:
        if not contact.outbox:
            return 0
        internal = []
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
        if internal:
            ttl = int((now + timedelta(days=self.ttl_days)).timestamp())
            self.events.append([StoredEvent(partition=f"contact:{e['contactId']}",
                                            sort=f"{e['originalTimestamp']}#{e['messageId']}", body=e, ttl=ttl)
                                for e in internal])
            seen = snapshot(contact, self.score_of(contact, now))
            for event in internal:
                typed = from_internal_event(event, seen)
                if typed is not None:
                    self.bus.handle(typed)
        published = len(contact.outbox)
        contact.outbox.clear()  # persisted empty with the contact's next write
        return published
