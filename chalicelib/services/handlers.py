"""Handlers of the domain events. Each takes the event first and its dependencies as keyword
arguments, which bootstrap binds; EVENT_HANDLERS at the end says who reacts to what. A new
reaction is one handler here and one line in that dict.

Handlers run inside the stream handler (publishing a contact's outbox), so they never call
the outside world themselves: they enqueue work for the queue consumers.
"""
from __future__ import annotations

from typing import Callable

from chalicelib.domain.contact_events import (
    ContactEvent,
    ContactsMerged,
    ScoreChanged,
    SegmentEntered,
    SegmentExited,
    StageChanged,
    TagAdded,
)
from chalicelib.domain.deliveries import DeliveryMessage, delivery_id
from chalicelib.domain.destinations import Destination
from chalicelib.services.effect_ports import EffectsQueue


def delivery_payload(event: ContactEvent) -> dict:
    """What a destination receives: the event's type and fields, when it happened, and the
    contact as it was then (score decayed to that moment, as the admin API shows it)."""
    return {"type": event.kind, **event.details(), "at": event.at, "contact": event.contact.as_payload()}


def enqueue_destination_deliveries(event: ContactEvent, *, destinations: Callable[[], list[Destination]],
                                   queue: EffectsQueue, now: Callable[[], str]) -> list[DeliveryMessage]:
    """One delivery per destination that hears this event, enqueued in one batch call."""
    segment_id = getattr(event, "segment_id", None)
    messages = [DeliveryMessage(delivery_id=delivery_id(event.cause, d.id), destination_id=d.id,
                                payload=delivery_payload(event), enqueued_at=now())
                for d in destinations() if d.hears(event.kind, segment_id)]
    if messages:
        queue.send(messages)
    return messages


EVENT_HANDLERS: dict[type, list[Callable]] = {
    SegmentEntered: [enqueue_destination_deliveries],
    SegmentExited: [enqueue_destination_deliveries],
    ScoreChanged: [enqueue_destination_deliveries],
    StageChanged: [enqueue_destination_deliveries],
    TagAdded: [enqueue_destination_deliveries],
    ContactsMerged: [enqueue_destination_deliveries],
}
