"""Messages: what one send is, how it is named, and the status timeline it goes through.

A message is asked for by a cause (a trigger firing on an event, a broadcast's launch, a
journey's send node, an operator's test send) for one contact, one template and one channel.
Its id is derived from those, so the same cause asked twice (a redelivered stream record, a
retried broadcast slice, a retried journey step) is the same message, and the conditional
write that creates it is the once-only guard before the provider is called.

Statuses, in the order a message usually goes through them:
queued → deferred (waiting for the gate: quiet hours, caps, rate) → sending (claimed by one
worker) → sent (the provider accepted it) → delivered → opened → clicked → converted;
or ends as skipped (the gate refused it, with the reason), failed (the provider refused it),
bounced, complained or unsubscribed. Every change is appended to the timeline with its time
and detail; `status` is the furthest one reached, so a late "delivered" after "clicked" does
not move the message backwards.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime

from chalicelib.domain.events import iso, parse_timestamp

QUEUED, DEFERRED, SENDING, SENT = "queued", "deferred", "sending", "sent"
DELIVERED, OPENED, CLICKED, CONVERTED = "delivered", "opened", "clicked", "converted"
SKIPPED, FAILED, BOUNCED, COMPLAINED, UNSUBSCRIBED = "skipped", "failed", "bounced", "complained", "unsubscribed"
DELAYED = "delivery_delayed"  # SES retries on its side; informational

# How far along the funnel a status is: `status` only moves forward. Terminal refusals rank
# above the funnel so they are never hidden by a later open (a scanner opening a bounced mail).
_RANK = {QUEUED: 0, DEFERRED: 1, SENDING: 2, SENT: 3, DELAYED: 3, DELIVERED: 4, OPENED: 5, CLICKED: 6,
         CONVERTED: 7, UNSUBSCRIBED: 8, FAILED: 9, SKIPPED: 9, BOUNCED: 10, COMPLAINED: 11}
STATUSES = tuple(_RANK)
# A message in one of these has not left yet: the sender may (re)claim it.
UNSENT = (QUEUED, DEFERRED)
MAX_TIMELINE = 50  # a message opened a thousand times keeps its first entries and a count


def message_id(cause: str, contact_id: str, template: str, channel: str) -> str:
    """Deterministic: the same cause for the same contact, template and channel is one message."""
    digest = hashlib.sha256(f"{cause}\x1f{contact_id}\x1f{template}\x1f{channel}".encode()).hexdigest()
    return "msg_" + digest[:32]


def rank(status: str) -> int:
    return _RANK[status]


@dataclass(frozen=True)
class StatusChange:
    status: str
    at: datetime
    detail: dict = field(default_factory=dict)  # e.g. the gate's reason, the provider id, a bounce type

    def to_document(self) -> dict:
        return {"status": self.status, "at": iso(self.at), **({"detail": self.detail} if self.detail else {})}

    @classmethod
    def from_document(cls, doc: dict) -> "StatusChange":
        return cls(doc["status"], parse_timestamp(doc["at"]), dict(doc.get("detail") or {}))


@dataclass(frozen=True)
class Message:
    """One message to one contact. `address` is where it went (email, phone, device endpoint):
    kept so feedback and unsubscribe links find the address without the contact; erased with it."""

    id: str
    contact_id: str
    channel: str
    template: str
    lane: str
    topic: str | None
    cause: str
    requested_at: datetime
    status: str = QUEUED
    campaign: str | None = None
    variant: str | None = None
    address: str | None = None
    data: dict = field(default_factory=dict)  # the triggering event's properties, for the template
    not_after: datetime | None = None
    links: tuple[str, ...] = ()  # tracked destinations, by index, as stored at send time
    provider_id: str | None = None
    subject: str | None = None
    timeline: tuple[StatusChange, ...] = ()

    def advanced(self, change: StatusChange) -> "Message":
        """This message with one more status change: appended to the timeline, and the status
        moved forward only."""
        timeline = self.timeline + (change,) if len(self.timeline) < MAX_TIMELINE else self.timeline
        status = change.status if rank(change.status) >= rank(self.status) else self.status
        return replace(self, status=status, timeline=timeline)

    def to_document(self) -> dict:
        doc = {"id": self.id, "contact_id": self.contact_id, "channel": self.channel, "template": self.template,
               "lane": self.lane, "topic": self.topic, "cause": self.cause, "requested_at": iso(self.requested_at),
               "status": self.status, "campaign": self.campaign, "variant": self.variant, "address": self.address,
               "data": self.data, "not_after": iso(self.not_after) if self.not_after else None,
               "links": list(self.links), "provider_id": self.provider_id, "subject": self.subject,
               "timeline": [c.to_document() for c in self.timeline]}
        return {k: v for k, v in doc.items() if v not in (None, [], {})}

    @classmethod
    def from_document(cls, doc: dict) -> "Message":
        return cls(id=doc["id"], contact_id=doc["contact_id"], channel=doc["channel"], template=doc["template"],
                   lane=doc["lane"], topic=doc.get("topic"), cause=doc["cause"],
                   requested_at=parse_timestamp(doc["requested_at"]), status=doc.get("status", QUEUED),
                   campaign=doc.get("campaign"), variant=doc.get("variant"), address=doc.get("address"),
                   data=dict(doc.get("data") or {}),
                   not_after=parse_timestamp(doc["not_after"]) if doc.get("not_after") else None,
                   links=tuple(doc.get("links") or ()), provider_id=doc.get("provider_id"),
                   subject=doc.get("subject"),
                   timeline=tuple(StatusChange.from_document(c) for c in doc.get("timeline") or ()))
