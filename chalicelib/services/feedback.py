"""SES feedback: what happened to an email after SES accepted it, as SES reports it through
SNS (delivered, bounced, complained, rejected, delayed), applied to the message log, the
suppression list, the channel's outcome counts and the contact.

Two record shapes arrive, both SNS notifications carried by SQS (raw or wrapped in SNS's
envelope): the configuration set's event destination (`eventType`: Send, Delivery, Bounce,
Complaint, Reject, DeliveryDelay, Open, Click, Rendering Failure, Subscription) and the
older identity notifications (`notificationType`: Delivery, Bounce, Complaint).

- permanent bounce → every bounced address suppressed at once (hashed, reason bounced_hard),
  the message `bounced`, one bounce counted for the circuit breaker;
- transient or undetermined bounce → recorded on the message's timeline only (SES has
  given up on this message, the address may work tomorrow);
- complaint → the address suppressed (complained), all marketing email consent withdrawn
  on the contact (a `Consent Updated` event, source feedback, with the complaint as proof),
  the message `complained`, one complaint counted;
- delivery → `delivered` on the message (no event on the contact: see _ENGAGEMENT_EVENTS);
  reject and rendering failure → `failed`; delay → `delivery_delayed`;
- Send, Open, Click and Subscription are acknowledged and ignored: the sender records the
  send, and opens and clicks come from Mercurio's own pixel and redirect.

The message is found by its `mercurio_message` tag (the SES message tag the sender sets),
else by SES's MessageId. A record seen again (SQS delivers at least once) changes nothing
twice: the timeline keeps the feedback id, suppressions and events are idempotent.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from chalicelib.domain.events import parse_timestamp
from chalicelib.domain.messaging.consent import (
    BOUNCED_HARD,
    COMPLAINED as SUPPRESSED_COMPLAINT,
    DENIED,
    FEEDBACK,
    ConsentError,
    ConsentProof,
    suppress,
)
from chalicelib.domain.messaging.messages import (
    BOUNCED,
    COMPLAINED,
    DELAYED,
    DELIVERED,
    FAILED,
    Message,
    StatusChange,
)
from chalicelib.services.interactions import checked_salt, consent_event_properties
from chalicelib.services.message_events import MESSAGE_TAG, append_contact_event, message_event_properties
from chalicelib.services.message_ports import ChannelStats, MessageLog, SuppressionStore
from chalicelib.services.ports import Clock, EventStore
from chalicelib.services.segmentation import CONSENT_EVENT

MESSAGE_TAGS = (MESSAGE_TAG, "mercurio-message")
IGNORED_TYPES = ("Send", "Open", "Click", "Subscription")
HANDLED_TYPES = ("Delivery", "Bounce", "Complaint", "Reject", "DeliveryDelay", "Rendering Failure")
MAX_RECORD_BYTES = 256 * 1024  # SNS's own message limit


class UnreadableFeedback(ValueError):
    """A record that is not SES feedback Mercurio can read: logged, counted, not retried."""


@dataclass(frozen=True)
class SesRecord:
    kind: str  # Delivery, Bounce, Complaint, Reject, DeliveryDelay, Rendering Failure, or an ignored type
    ses_message_id: str | None
    tags: dict
    body: dict  # the type's own object (bounce, complaint, delivery…)
    at: datetime | None


@dataclass
class FeedbackOutcome:
    status: str  # applied, duplicate, ignored, unknown_message
    message_id: str | None = None
    suppressed: int = 0
    detail: dict = field(default_factory=dict)


def parse_sqs_body(body: str) -> SesRecord:
    """The SES record inside an SQS message body: SNS's envelope (`Type: Notification`,
    `Message`: the record as a string) or the record itself (raw message delivery)."""
    if not isinstance(body, str) or len(body) > MAX_RECORD_BYTES:
        raise UnreadableFeedback("the message body is not text of a readable size")
    try:
        outer = json.loads(body)
    except ValueError:
        raise UnreadableFeedback("the message body is not JSON") from None
    if isinstance(outer, dict) and outer.get("Type") in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        raise UnreadableFeedback(f"an SNS {outer['Type']}, not feedback")
    if isinstance(outer, dict) and outer.get("Type") == "Notification" and "Message" in outer:
        inner = outer["Message"]
        if isinstance(inner, str):
            try:
                inner = json.loads(inner)
            except ValueError:
                raise UnreadableFeedback("the SNS notification's Message is not JSON") from None
        outer = inner
    return parse_record(outer)


def parse_record(record: object) -> SesRecord:
    if not isinstance(record, dict):
        raise UnreadableFeedback("an SES record is a JSON object")
    kind = record.get("eventType") or record.get("notificationType")
    if kind not in HANDLED_TYPES + IGNORED_TYPES:
        # moto's identity notifications carry the placeholder "Bounce, Complaint, or Delivery.":
        # the object present says which it is.
        present = [k for k, key in (("Bounce", "bounce"), ("Complaint", "complaint"), ("Delivery", "delivery"))
                   if isinstance(record.get(key), dict)]
        if len(present) != 1:
            raise UnreadableFeedback(f"unknown SES event type {str(kind)[:60]!r}")
        kind = present[0]
    mail = record.get("mail")
    if not isinstance(mail, dict):
        raise UnreadableFeedback(f"a {kind} record without its mail object")
    key = {"Delivery": "delivery", "Bounce": "bounce", "Complaint": "complaint", "Reject": "reject",
           "DeliveryDelay": "deliveryDelay", "Rendering Failure": "failure", "Send": "send", "Open": "open",
           "Click": "click", "Subscription": "subscription"}[kind]
    body = record.get(key) if isinstance(record.get(key), dict) else {}
    if kind in ("Bounce", "Complaint") and not body:
        raise UnreadableFeedback(f"a {kind} record without its {key} object")
    tags = mail.get("tags") if isinstance(mail.get("tags"), dict) else {}
    at = None
    for candidate in (body.get("timestamp"), mail.get("timestamp")):
        try:
            at = parse_timestamp(candidate)
            break
        except (ValueError, TypeError):
            continue
    ses_id = mail.get("messageId") if isinstance(mail.get("messageId"), str) else None
    return SesRecord(kind, ses_id, tags, body, at)


def _event_key(record: SesRecord) -> str:
    """The dedup key of a record without SES's own feedbackId (deliveries, rejects, delays):
    short, as it is kept on the message's timeline and every later write of the message costs
    by its size."""
    cause = f"{record.kind}\x1f{record.ses_message_id}\x1f{record.body.get('timestamp')}"
    return "ses:" + hashlib.sha256(cause.encode()).hexdigest()[:20]


def _recipients(body: dict, key: str) -> list[str]:
    """The addresses a bounce or complaint names; of a bounce, only those whose delivery
    failed (a recipient listed as `delayed` may still receive it)."""
    found = []
    for item in body.get(key) or ():
        if not isinstance(item, dict) or item.get("action") not in (None, "failed"):
            continue
        address = item.get("emailAddress")
        if isinstance(address, str) and address.strip():
            found.append(address)
    return found


# The Segment Email Events a message's feedback becomes on its contact (domain/engagement.py).
# A delivery is not one of them: nothing reads "Email Delivered" on a contact (segments'
# `message:` conditions and the six groups read sends, opens, clicks, bounces, complaints and
# unsubscribes), and appending it cost an event write and a contact read and write in the
# stream for every email. The delivery stays on the message (status, timeline) and in the
# campaign's `delivered` counter.
_ENGAGEMENT_EVENTS = {"bounce": "Email Bounced", COMPLAINED: "Email Complained"}

class SesFeedback:
    def __init__(self, messages: MessageLog, suppressions: SuppressionStore, stats: ChannelStats,
                 events: EventStore, clock: Clock, salt: bytes, ttl_days: int = 395):
        self.messages = messages
        self.suppressions = suppressions
        self.stats = stats
        self.events = events
        self.clock = clock
        self.salt = checked_salt(salt)
        self.ttl_days = ttl_days

    def find_message(self, record: SesRecord) -> Message | None:
        for tag in MESSAGE_TAGS:
            values = record.tags.get(tag)
            value = values[0] if isinstance(values, list) and values else values
            if isinstance(value, str) and value:
                message = self.messages.get(value)
                if message is not None:
                    return message
        return self.messages.by_provider_id(record.ses_message_id) if record.ses_message_id else None

    def _tagged_id(self, record: SesRecord) -> str | None:
        for tag in MESSAGE_TAGS:
            values = record.tags.get(tag)
            value = values[0] if isinstance(values, list) and values else values
            if isinstance(value, str) and value:
                return value
        return None

    def _delivery(self, record: SesRecord) -> FeedbackOutcome | None:
        """A delivery (one per email) named by its tag: one conditional write, no read (the
        same record again finds its entry on the timeline). None when the tag names no message."""
        mid = self._tagged_id(record)
        if mid is None or record.at is None:
            return None
        status, detail = self._status(record)
        detail["feedback_id"] = _event_key(record)
        outcome, _ = self.messages.record_once(mid, StatusChange(status, record.at, detail))
        if outcome == "unknown":
            return None
        return FeedbackOutcome(outcome, mid, 0, {"status": status} if outcome == "applied" else {})

    def handle(self, record: SesRecord) -> FeedbackOutcome:
        if record.kind in IGNORED_TYPES:
            return FeedbackOutcome("ignored", detail={"type": record.kind})
        if record.kind == "Delivery" and not (isinstance(record.body.get("feedbackId"), str)):
            done = self._delivery(record)
            if done is not None:
                return done
        now = self.clock.now()
        at = record.at or now
        message = self.find_message(record)
        feedback_id = record.body.get("feedbackId") if isinstance(record.body.get("feedbackId"), str) else None
        dedup = feedback_id or _event_key(record)
        suppressed = 0
        if record.kind == "Bounce" and record.body.get("bounceType") == "Permanent":
            for address in _recipients(record.body, "bouncedRecipients"):
                suppressed += self._suppress(address, BOUNCED_HARD, at, record.body)
        elif record.kind == "Complaint":
            for address in _recipients(record.body, "complainedRecipients"):
                suppressed += self._suppress(address, SUPPRESSED_COMPLAINT, at, record.body)
        if message is None:
            return FeedbackOutcome("unknown_message", None, suppressed, {"type": record.kind,
                                                                        "ses_message_id": record.ses_message_id})
        status, detail = self._status(record)
        detail["feedback_id"] = dedup
        if any(c.status == status and c.detail.get("feedback_id") == dedup for c in message.timeline):
            return FeedbackOutcome("duplicate", message.id, suppressed)
        if record.kind == "Complaint":
            proof = ConsentProof(shown=f"complaint reported by the mailbox provider "
                                       f"({record.body.get('complaintFeedbackType') or 'unspecified'})",
                                 where=f"message:{message.id}", user_agent=record.body.get("userAgent"))
            append_contact_event(self.events, message.contact_id, CONSENT_EVENT,
                                 consent_event_properties("email", None, DENIED, FEEDBACK, proof, message.id),
                                 at, f"complaint:{message.id}:{dedup}", self.ttl_days)
        if status == BOUNCED:
            self.stats.add("email", at, bounced=1)
        elif status == COMPLAINED:
            self.stats.add("email", at, complained=1)
        self.messages.advance(message.id, StatusChange(status, at, detail))
        engagement = _ENGAGEMENT_EVENTS.get(status if record.kind != "Bounce" else "bounce")
        if engagement is not None:  # on the contact too: segments and the six groups read it
            props = message_event_properties(message)
            if record.kind == "Bounce":
                props["bounce_type"] = "hard" if record.body.get("bounceType") == "Permanent" else "soft"
            append_contact_event(self.events, message.contact_id, engagement, props, at,
                                 f"{engagement}:{message.id}:{dedup}", self.ttl_days)
        return FeedbackOutcome("applied", message.id, suppressed, {"status": status})

    def _suppress(self, address: str, reason: str, at: datetime, body: dict) -> int:
        diagnostic = ""
        for item in body.get("bouncedRecipients") or ():
            if isinstance(item, dict) and item.get("emailAddress") == address:
                diagnostic = str(item.get("diagnosticCode") or item.get("status") or "")[:200]
        try:
            entry = suppress("email", address, reason, at, self.salt, detail=diagnostic)
        except ConsentError:
            return 0  # not an address (a provider's oddity): nothing to hash
        self.suppressions.add(entry)
        return 1

    @staticmethod
    def _status(record: SesRecord) -> tuple[str, dict]:
        body = record.body
        if record.kind == "Delivery":
            return DELIVERED, {k: body[k] for k in ("smtpResponse", "processingTimeMillis") if k in body}
        if record.kind == "Bounce":
            detail = {"bounce_type": body.get("bounceType"), "bounce_subtype": body.get("bounceSubType")}
            if body.get("bounceType") == "Permanent":
                return BOUNCED, detail
            # Transient or undetermined: recorded, not a bounce that ends the address.
            return DELAYED, {**detail, "event": "Bounce"}
        if record.kind == "Complaint":
            return COMPLAINED, {"feedback_type": body.get("complaintFeedbackType")}
        if record.kind == "Reject":
            return FAILED, {"reason": str(body.get("reason") or "rejected by SES")[:200]}
        if record.kind == "Rendering Failure":
            return FAILED, {"reason": str(body.get("errorMessage") or "rendering failure")[:200]}
        return DELAYED, {"delay_type": body.get("delayType"), "expiration": body.get("expirationTime")}
