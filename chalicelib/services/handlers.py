"""Handlers of the domain events. Each takes the event first and its dependencies as keyword
arguments, which bootstrap binds; EVENT_HANDLERS at the end says who reacts to what. A new
reaction is one handler here and one line in that dict.

Handlers run inside the stream handler (publishing a contact's outbox), so they never call
the outside world themselves: they enqueue work for the queue consumers.
"""
from __future__ import annotations

from typing import Callable

from chalicelib.domain.contact_events import (
    MessageConverted,
    ContactEvent,
    ContactsMerged,
    MessageTriggered,
    ScoreChanged,
    SegmentEntered,
    SegmentExited,
    StageChanged,
    TagAdded,
)
from chalicelib.domain.events import parse_timestamp
from chalicelib.domain.messaging.messages import CONVERTED, StatusChange
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


def request_triggered_messages(event: ContactEvent, *, triggers: Callable[[], list], request: Callable) -> int:
    """Ask for the messages trigger definitions attach to this event (a Message Triggered
    recorded by the profile rules, or a segment entry). Only requests: the message is created
    (once per cause) and enqueued; the messages queue's consumer sends it."""
    if isinstance(event, MessageTriggered):
        if not event.template:
            return 0
        request(event.contact.id, event.template, event.channel, event.message_cause, campaign=event.campaign,
                data=event.data)
        return 1
    requested = 0
    for trigger in triggers():
        if isinstance(event, SegmentEntered) and trigger.hears_segment(event.segment_id):
            request(event.contact.id, trigger.template, trigger.channel, trigger.cause(event.cause),
                    campaign=trigger.campaign, data={"segment_id": event.segment_id})
            requested += 1
    return requested


def record_conversion(event: MessageConverted, *, messages) -> bool:
    """The message whose click led to the purchase is converted, with the order's value (once:
    a replayed batch finds it converted already). Mercurio's own message log, not the outside
    world."""
    message = messages.get(event.message_id) if event.message_id else None
    if message is None or any(change.status == CONVERTED for change in message.timeline):
        return False
    detail = {k: v for k, v in (("revenue", event.revenue), ("order_id", event.order_id),
                                ("click_id", event.click_id)) if v is not None}
    messages.advance(message.id, StatusChange(CONVERTED, parse_timestamp(event.at), detail))
    return True


EVENT_HANDLERS: dict[type, list[Callable]] = {
    MessageTriggered: [request_triggered_messages],
    MessageConverted: [record_conversion],
    SegmentEntered: [enqueue_destination_deliveries, request_triggered_messages],
    SegmentExited: [enqueue_destination_deliveries],
    ScoreChanged: [enqueue_destination_deliveries],
    StageChanged: [enqueue_destination_deliveries],
    TagAdded: [enqueue_destination_deliveries],
    ContactsMerged: [enqueue_destination_deliveries],
}
