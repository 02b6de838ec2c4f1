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
    ConfirmationRequested,
    ContactEvent,
    ContactsMerged,
    MessageTriggered,
    PushTokenSeen,
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
from chalicelib.domain.events import parse_timestamp
from chalicelib.domain.messaging.messages import message_id
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


# The effects queue carries destination deliveries; a push registration rides it under this
# reserved destination id (no destination id can start with "~"), see services/push_devices.py.
PUSH_REGISTRATION = "~push-registration"
CONFIRMATION_TEMPLATE = "confirm-subscription"  # templates/confirm-subscription.html.j2 (transactional)


def enqueue_push_registration(event: PushTokenSeen, *, queue: EffectsQueue, now: Callable[[], str]) -> None:
    """Only enqueue: the effects queue's consumer creates the SNS endpoint (idempotent)."""
    if not event.token or not event.platform:
        return
    queue.send([DeliveryMessage(delivery_id=delivery_id(event.cause, PUSH_REGISTRATION),
                                destination_id=PUSH_REGISTRATION,
                                payload={"contact_id": event.contact.id, "platform": event.platform,
                                         "token": event.token},
                                enqueued_at=now())])


def request_confirmation(event: ConfirmationRequested, *, request: Callable,
                         confirm_url: Callable[[str, object], str]) -> None:
    """The confirmation email of a double opt-in (first send or a resend: one message each).
    Its signed link is bound to this message's id, known before the request (deterministic),
    and expires with the request; the message's data says which consent it confirms."""
    cause = f"opt-in:{event.token_id}:{event.send_number}"
    mid = message_id(cause, event.contact.id, CONFIRMATION_TEMPLATE, event.channel)
    url = confirm_url(mid, parse_timestamp(event.expires_at))
    request(event.contact.id, CONFIRMATION_TEMPLATE, "email", cause,
            data={"confirm_url": url, "channel": event.channel, "topic": event.topic, "token_id": event.token_id})


def enqueue_journey_segment_signal(event: ContactEvent, *, segments: Callable[[], set], queue) -> bool:
    """A segment change a live journey listens to (its trigger, an exit, its goal) becomes a
    signal on the journey-events queue; the journeys' consumer enrolls and ends enrollments."""
    segment_id = getattr(event, "segment_id", "")
    if not segment_id or segment_id not in segments():
        return False
    queue.send([{"kind": "segment", "id": event.cause, "contact_id": event.contact.id, "segment_id": segment_id,
                 "entered": isinstance(event, SegmentEntered), "at": event.at}])
    return True


def enqueue_journey_merge_signal(event: ContactsMerged, *, journeys_live: Callable[[], bool], queue) -> bool:
    """Contacts merged while journeys are live: the merged contacts' enrollments are moved to
    the survivor (by the journeys' consumer), so its events reach them."""
    if not event.merged or not journeys_live():
        return False
    queue.send([{"kind": "merged", "id": event.cause, "contact_id": event.contact.id, "merged": list(event.merged)}])
    return True


EVENT_HANDLERS: dict[type, list[Callable]] = {
    MessageTriggered: [request_triggered_messages],
    MessageConverted: [record_conversion],
    SegmentEntered: [enqueue_destination_deliveries, request_triggered_messages, enqueue_journey_segment_signal],
    SegmentExited: [enqueue_destination_deliveries, enqueue_journey_segment_signal],
    ScoreChanged: [enqueue_destination_deliveries],
    StageChanged: [enqueue_destination_deliveries],
    TagAdded: [enqueue_destination_deliveries],
    ContactsMerged: [enqueue_destination_deliveries, enqueue_journey_merge_signal],
    PushTokenSeen: [enqueue_push_registration],
    ConfirmationRequested: [request_confirmation],
}
