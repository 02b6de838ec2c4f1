"""What happened to a contact, as typed domain events (past tense, frozen).

Profile rules record these facts as internal events on the contact's outbox (the events
table keeps them on the contact's timeline); once published, each becomes one of the
dataclasses below and goes through the message bus, whose handlers decide what the
outside world hears about it (a CRM webhook today; email, SMS and journeys next).

Every event carries:
- `cause`: the messageId of the internal event that recorded it. It is derived from the
  tracking event that caused it, so publishing the same outbox twice gives the same
  cause, and effects keyed by it happen once.
- `at`: when it happened (ISO-8601, UTC).
- `contact`: the contact as it was right after the write that recorded it, with the score
  as the admin API shows it (decayed to `at`, a number, never null).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from chalicelib.domain.messaging.push_devices import PUSH_TOKEN_SEEN

SEGMENT_ENTERED = "Segment Entered"
SEGMENT_EXITED = "Segment Exited"
SCORE_CHANGED = "Score Changed"
STAGE_CHANGED = "Stage Changed"
TAG_ADDED = "Tag Added"
CONTACTS_MERGED = "Contacts Merged"
MESSAGE_TRIGGERED = "Message Triggered"
MESSAGE_CONVERTED = "Message Converted"
CONFIRMATION_REQUESTED = "Confirmation Requested"  # a double opt-in's confirmation message is due


@dataclass(frozen=True)
class ContactSnapshot:
    id: str
    traits: dict = field(default_factory=dict)
    identifiers: tuple[str, ...] = ()
    stage: str | None = None
    score: float = 0.0
    tags: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()

    def as_payload(self) -> dict:
        return {"id": self.id, "traits": dict(self.traits), "identifiers": list(self.identifiers),
                "stage": self.stage, "score": float(self.score), "tags": list(self.tags),
                "segments": list(self.segments)}


def snapshot(contact, score: float) -> ContactSnapshot:
    """The part of a contact a receiver sees. `score` is the decayed score at that moment."""
    return ContactSnapshot(id=contact.id, traits=dict(contact.traits), identifiers=tuple(contact.identifiers),
                           stage=contact.stage, score=float(score or 0.0), tags=tuple(contact.tags),
                           segments=tuple(sorted(contact.segments)))


@dataclass(frozen=True)
class ContactEvent:
    cause: str
    at: str
    contact: ContactSnapshot

    # What a receiver sees in the payload's "type" (`segment.entered`…).
    kind = "contact.event"

    def details(self) -> dict:
        """The event's own fields, for the payload."""
        return {}


@dataclass(frozen=True)
class SegmentEntered(ContactEvent):
    segment_id: str = ""
    segment_name: str = ""
    kind = "segment.entered"

    def details(self) -> dict:
        return {"segment_id": self.segment_id, "segment_name": self.segment_name}


@dataclass(frozen=True)
class SegmentExited(ContactEvent):
    segment_id: str = ""
    segment_name: str = ""
    kind = "segment.exited"

    def details(self) -> dict:
        return {"segment_id": self.segment_id, "segment_name": self.segment_name}


@dataclass(frozen=True)
class ScoreChanged(ContactEvent):
    points: float = 0.0
    delta: float = 0.0
    rule: str | None = None
    kind = "score.changed"

    def details(self) -> dict:
        return {"points": self.points, "delta": self.delta, "rule": self.rule}


@dataclass(frozen=True)
class StageChanged(ContactEvent):
    previous: str | None = None
    stage: str | None = None
    kind = "stage.changed"

    def details(self) -> dict:
        return {"from": self.previous, "to": self.stage}


@dataclass(frozen=True)
class TagAdded(ContactEvent):
    tag: str = ""
    kind = "tag.added"

    def details(self) -> dict:
        return {"tag": self.tag}


@dataclass(frozen=True)
class ContactsMerged(ContactEvent):
    merged: tuple[str, ...] = ()
    kind = "contacts.merged"

    def details(self) -> dict:
        return {"merged": list(self.merged)}


@dataclass(frozen=True)
class MessageTriggered(ContactEvent):
    """A trigger definition heard an event of this contact: a message is to be requested
    (services/handlers.py); `message_cause` names it, so publishing twice requests it once."""

    trigger_id: str = ""
    template: str = ""
    channel: str = "email"
    message_cause: str = ""
    campaign: str | None = None
    data: dict = field(default_factory=dict)
    kind = "message.triggered"

    def details(self) -> dict:
        return {"trigger_id": self.trigger_id, "template": self.template, "channel": self.channel}


@dataclass(frozen=True)
class MessageConverted(ContactEvent):
    """A purchase was attributed to the visit of a click in a message (domain/engagement.py):
    the message is converted, with the order's value as its revenue."""

    message_id: str = ""
    campaign_id: str = ""
    click_id: str = ""
    revenue: float | None = None
    order_id: str | None = None
    kind = "message.converted"

    def details(self) -> dict:
        return {"message_id": self.message_id, "campaign_id": self.campaign_id, "revenue": self.revenue}


@dataclass(frozen=True)
class PushTokenSeen(ContactEvent):
    """An event came from a device whose push token the contact has no endpoint for yet: the
    endpoint is to be registered (by a queue consumer, never the stream handler)."""

    platform: str = ""
    token: str = ""
    kind = "push.token_seen"

    def details(self) -> dict:
        return {"platform": self.platform}


@dataclass(frozen=True)
class ConfirmationRequested(ContactEvent):
    """A double opt-in awaits confirmation: its confirmation message (first or a resend,
    `send_number`) is to be requested."""

    channel: str = "email"
    topic: str | None = None
    token_id: str = ""
    send_number: int = 1
    expires_at: str = ""
    kind = "consent.confirmation_requested"

    def details(self) -> dict:
        return {"channel": self.channel, "topic": self.topic, "send_number": self.send_number}


# Next: MessageRequested (a journey or broadcast asks for a send) and EnrollmentDue (a
# journey's wait is over) join this list, each with its handlers in services/handlers.py.

KINDS = {cls.kind: cls for cls in (SegmentEntered, SegmentExited, ScoreChanged, StageChanged, TagAdded,
                                   ContactsMerged)}


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


_FROM_INTERNAL: dict[str, Callable[[dict, dict], dict]] = {
    SEGMENT_ENTERED: lambda p, e: {"segment_id": _text(p.get("segment_id")),
                                   "segment_name": _text(p.get("segment_name")) or _text(p.get("segment_id"))},
    SEGMENT_EXITED: lambda p, e: {"segment_id": _text(p.get("segment_id")),
                                  "segment_name": _text(p.get("segment_name")) or _text(p.get("segment_id"))},
    SCORE_CHANGED: lambda p, e: {"points": _number(p.get("points")), "delta": _number(p.get("delta")),
                                 "rule": p.get("rule") if isinstance(p.get("rule"), str) else None},
    STAGE_CHANGED: lambda p, e: {"previous": p.get("from"), "stage": p.get("to")},
    TAG_ADDED: lambda p, e: {"tag": _text(p.get("tag"))},
    CONTACTS_MERGED: lambda p, e: {"merged": tuple(m for m in p.get("merged") or () if isinstance(m, str))},
    MESSAGE_CONVERTED: lambda p, e: {"message_id": _text(p.get("message_id")),
                                     "campaign_id": _text(p.get("campaign_id")), "click_id": _text(p.get("click_id")),
                                     "revenue": _number(p.get("revenue")) if p.get("revenue") is not None else None,
                                     "order_id": p.get("order_id") if isinstance(p.get("order_id"), str) else None},
    MESSAGE_TRIGGERED: lambda p, e: {"trigger_id": _text(p.get("trigger_id")), "template": _text(p.get("template")),
                                     "channel": _text(p.get("channel")) or "email",
                                     "message_cause": _text(p.get("message_cause")) or e["messageId"],
                                     "campaign": p.get("campaign") if isinstance(p.get("campaign"), str) else None,
                                     "data": dict(p.get("data")) if isinstance(p.get("data"), dict) else {}},
    PUSH_TOKEN_SEEN: lambda p, e: {"platform": _text(p.get("platform")), "token": _text(p.get("token"))},
    CONFIRMATION_REQUESTED: lambda p, e: {"channel": _text(p.get("channel")) or "email",
                                          "topic": p.get("topic") if isinstance(p.get("topic"), str) else None,
                                          "token_id": _text(p.get("token_id")),
                                          "send_number": int(_number(p.get("send_number")) or 1),
                                          "expires_at": _text(p.get("expires_at"))},
}
_CLASSES = {SEGMENT_ENTERED: SegmentEntered, SEGMENT_EXITED: SegmentExited, SCORE_CHANGED: ScoreChanged,
            STAGE_CHANGED: StageChanged, TAG_ADDED: TagAdded, CONTACTS_MERGED: ContactsMerged,
            MESSAGE_TRIGGERED: MessageTriggered, MESSAGE_CONVERTED: MessageConverted, PUSH_TOKEN_SEEN: PushTokenSeen,
            CONFIRMATION_REQUESTED: ConfirmationRequested}


def from_internal_event(event: dict, contact: ContactSnapshot) -> ContactEvent | None:
    """The typed event for an internal event Mercurio recorded (None for the ones no
    handler reacts to, such as Tag Removed or Consent Updated)."""
    name = event.get("event")
    if name not in _CLASSES:
        return None
    fields = _FROM_INTERNAL[name](event.get("properties") or {}, event)
    return _CLASSES[name](cause=event["messageId"], at=event["timestamp"], contact=contact, **fields)
