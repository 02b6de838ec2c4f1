"""Sending a message: the request (a queued message with a deterministic id, on its lane's
queue) and the queue consumer's unit of work (`send`), which takes one message through the
policy gate to a provider, recording every outcome on the message and so on the contact.

`request(contact_id, template, channel, cause, ...)` creates the message (its id derives from
the cause, contact, template and channel: the same cause asked twice is one message, and the
second request writes nothing) and enqueues it on the marketing or the transactional queue,
by the template's own `kind` (never the caller's wish).

`send(message_id)`, for each queue message:
1. a message already past `sending` (sent, skipped, failed…) is done: the queue message goes;
   a `deferred` one woken before its moment goes back to sleep without a write;
2. claim: one conditional write moves it to `sending` with a lease, for this worker only;
3. read the contact, the suppressions of its address (salted hash), its recent sends, the
   channel's breaker counters; `policy.decide`; on `send`, one token of the channel's rate;
4. defer → the message goes back to `deferred` (reason and `until` on its timeline) and the
   queue message comes back at `until`; skip → `skipped` with the reason;
5. send → the template variant for the contact's locale, rendered in the sandbox, links
   tracked, MIME built, the provider called; accepted → `sent` with the provider id and the
   stored links; retry → back to `deferred` and tried again with back-off, `failed` (parked)
   once the retry horizon is over; rejected → `failed` with the reason.

Exactly-once, precisely: the claim is a conditional write made before the provider is called,
so two workers (a redelivered queue message, a replayed stream batch requesting the same id)
never both call the provider. If the worker dies after the claim and before recording the
outcome, the message stays `sending`; when its lease has run out, the next look finds it so
and records it `failed` with the reason `outcome_unknown` instead of sending again: it may or
may not have gone (SES cannot be asked), and Mercurio prefers at most once. An operator sees
it in the contact's messages and in the MessagesFailed metric (reason outcome_unknown). The
same holds when the provider call itself raises (a timeout: did SES get it?) or the `sent`
record cannot be written: `send` raises OutcomeUnknown and never calls the provider again
for that message. A failure before the provider call (a read that timed out) gives the
message back as `deferred`, retried with back-off like a provider retry.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from chalicelib.domain.contact import Contact
from chalicelib.domain.deliveries import Park, RetryPolicy, after_failure
from chalicelib.domain.events import iso, parse_timestamp
from chalicelib.domain.messaging import links as link_rules
from chalicelib.domain.messaging.consent import MARKETING, TRANSACTIONAL, ConsentError, suppression_key
from chalicelib.domain.messaging.messages import (
    DEFERRED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    SKIPPED,
    UNSENT,
    Message,
    StatusChange,
    message_id,
)
from chalicelib.domain.messaging.mime import EmailContent, InvalidEmail, build_email
from chalicelib.domain.messaging.policy import (
    DEFER,
    SKIP,
    BreakerState,
    ContactSendState,
    Decision,
    PolicySettings,
    Reason,
    SendHistory,
    SendRequest,
    decide,
    defer,
    skip,
)
from chalicelib.domain.messaging.sms import DEFAULT_MAX_SEGMENTS, check_segments
from chalicelib.domain.messaging.templates import (
    CompiledTemplate,
    TemplateEngine,
    TemplateInvalid,
    TemplateRenderError,
    choose_variant,
    coupon_variable,
    normalise_locale,
    parse_filename,
)
from chalicelib.services.channel_ports import ACCEPTED, RETRY, ChannelResult, EmailSender, PushSender, SmsSender
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.message_ports import ChannelStats, MessageLog, MessageQueue, SendRate, SuppressionStore
from chalicelib.services.message_events import (  # noqa: F401 - TEST_CONTACT_PREFIX is re-exported
    MESSAGE_SENT,
    MESSAGE_TAG,
    TEST_CONTACT_PREFIX,
    append_contact_event,
    message_event_properties,
)
from chalicelib.services.template_store import TemplateLibrary
from chalicelib.services.ports import Clock, ContactRepository, EventStore

logger = logging.getLogger(__name__)

FORMAT_OF_CHANNEL = {"email": "html", "sms": "sms", "push": "push"}
SENDABLE_CHANNELS = tuple(FORMAT_OF_CHANNEL)
LEASE_SECONDS = 300.0  # longer than one send (render + provider call), shorter than the queue's visibility
LINK_TTL = timedelta(days=180)  # tracked links and unsubscribe pages of a message keep working this long
BREAKER_WINDOW_HOURS = 24
MAX_DATA_CHARS = 32 * 1024  # the triggering event's properties kept with the message
PROVIDER_RETRY, INTERNAL_RETRY = "provider_retry", "internal_retry"
SCHEDULED = "scheduled"  # a deferral chosen by the requester (not_before), not by the gate


class UnknownChannel(BadQuery):
    pass


class OutcomeUnknown(Exception):
    """Raised after the provider was called when its answer could not be recorded (or the call
    itself failed midway): the message stays `sending` and is never sent again; once its lease
    runs out it is recorded `failed` (outcome_unknown)."""


@dataclass(frozen=True)
class SendOutcome:
    """What the queue does with the message: `done` removes it; otherwise it comes back after
    `retry_in` seconds."""

    status: str  # sent | deferred | skipped | failed | busy | done
    done: bool
    retry_in: float = 0.0
    code: str | None = None
    reason: str = ""


@dataclass
class MessagingService:
    log: MessageLog
    suppressions: SuppressionStore
    stats: ChannelStats
    rate: SendRate
    templates: TemplateLibrary  # the accepted templates, compiled once per version
    contacts: ContactRepository
    queue: MessageQueue
    clock: Clock
    email: EmailSender
    tracker: Callable[[], link_rules.LinkTracker]  # built lazily: its secret comes from SSM
    salt: Callable[[], bytes]  # the suppression salt, lazily too
    policy: PolicySettings = field(default_factory=PolicySettings)
    sms: SmsSender | None = None
    push: PushSender | None = None
    # Provider retries: about 16 attempts over 6 hours, so the whole story (two timeline entries
    # per attempt) fits the message's timeline (MAX_TIMELINE) with the final reason in it.
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(first_retry=60.0, max_delay=1800.0,
                                                                   horizon=6 * 3600.0))
    from_address: str = "Mercurio <hello@mercurio.example>"
    sms_max_segments: int = DEFAULT_MAX_SEGMENTS
    lease_seconds: float = LEASE_SECONDS
    count: Callable[[str, str | None], None] = lambda outcome, code: None  # metrics: (outcome, reason code)
    # Where "Message Sent" lands on the contact (segments' `message: received`, the six groups).
    events: EventStore | None = None
    event_ttl_days: int = 395
    # Push endpoint cleanup: (contact id, endpoint, message id) of an endpoint a send found
    # disabled or gone; it reports the removal to the contact (services/push_devices.py).
    push_endpoint_gone: Callable[[str, str, str], None] | None = None

    # -- requesting ------------------------------------------------------------------------

    def request(self, contact_id: str, template: str, channel: str, cause: str, *, campaign: str | None = None,
                data: dict | None = None, not_after: datetime | None = None, variant: str | None = None,
                not_before: datetime | None = None) -> Message:
        """A queued message for this cause (or the one already requested for it). Enqueued when
        it is new, or still waiting to be claimed (a request whose enqueue failed is enqueued by
        its retry). With `not_before` in the future (a broadcast at the contact's local time) the
        message starts `deferred` with the reason code `scheduled` and sleeps on its queue until
        then; the gate decides at that moment, its horizon counted from it. `variant` records
        the A/B arm."""
        if channel not in SENDABLE_CHANNELS:
            raise UnknownChannel(f"channel must be one of {', '.join(SENDABLE_CHANNELS)}, got {channel!r}")
        now = self.clock.now()
        mid = message_id(cause, contact_id, template, channel)
        compiled, problem = self._default_variant(template, channel)
        lane = (compiled.kind if compiled is not None else None) or MARKETING
        timeline = (StatusChange(QUEUED, now),)
        delay = (not_before - now).total_seconds() if not_before is not None and compiled is not None else 0.0
        if delay > 0:
            timeline += (StatusChange(DEFERRED, now, {"outcome": DEFER, "code": SCHEDULED, "until": iso(not_before),
                                                      "reason": f"Scheduled for {iso(not_before)}."}),)
        message = Message(id=mid, contact_id=contact_id, channel=channel, template=template, lane=lane,
                          topic=compiled.topic if compiled is not None else None, cause=cause, requested_at=now,
                          status=timeline[-1].status, campaign=campaign, variant=variant, data=_bounded(data or {}),
                          not_after=not_after, timeline=timeline)
        if not self.log.create(message):
            existing = self.log.get(mid)
            if existing is not None and existing.status in UNSENT and not any(c.status == SENDING
                                                                               for c in existing.timeline):
                wake = _deferred_until(existing)
                self.queue.enqueue(mid, existing.lane, max(0.0, (wake - now).total_seconds()) if wake else 0)
            return existing or message
        if compiled is None:
            # Nothing to send: visible on the contact at once, never queued.
            failed = self.log.advance(mid, StatusChange(FAILED, now, {"code": "template_missing", "reason": problem}))
            self.count(FAILED, "template_missing")
            return failed or message
        self.queue.enqueue(mid, lane, delay)
        self.count(QUEUED, None)
        if delay > 0:
            self.count(DEFERRED, SCHEDULED)
        return message

    # -- the queue consumer's unit of work --------------------------------------------------

    def send(self, mid: str) -> SendOutcome:
        now = self.clock.now()
        message = self.log.get(mid)
        if message is None:
            return SendOutcome("done", True, code="unknown_message", reason=f"no message {mid}")
        if message.status == SENDING:
            lease = _lease_of(message)
            if lease is not None and lease > now:
                return SendOutcome("busy", False, max(1.0, (lease - now).total_seconds()), reason="another worker")
            self.log.advance(mid, StatusChange(FAILED, now, {
                "code": "outcome_unknown",
                "reason": "The sender stopped after claiming this message and before recording the provider's "
                          "answer: it may or may not have been sent, so it is not sent again."}))
            self.count(FAILED, "outcome_unknown")
            return SendOutcome(FAILED, True, code="outcome_unknown")
        if message.status not in UNSENT:
            return SendOutcome("done", True, code="already_" + message.status)
        wake = _deferred_until(message)
        if message.status == DEFERRED and wake is not None and wake > now:
            return SendOutcome(DEFERRED, False, (wake - now).total_seconds(), reason="not due yet")
        lease = now + timedelta(seconds=self.lease_seconds)
        claimed = self.log.claim(mid, StatusChange(SENDING, now, {"lease_until": iso(lease)}), lease)
        if claimed is None:
            return SendOutcome("busy", False, self.lease_seconds, reason="claimed by another worker")
        try:
            return self._send_claimed(claimed, now)
        except OutcomeUnknown:
            raise
        except Exception as exc:  # noqa: BLE001 - before the provider call: safe to try again
            return self._retry(claimed, now, INTERNAL_RETRY, f"{type(exc).__name__}: {exc}", None)

    def _send_claimed(self, message: Message, now: datetime) -> SendOutcome:
        if is_test_send(message):
            return self._send_test(message, now)
        contact = self._contact(message.contact_id)
        if contact is None:
            return self._skip(message, now, Reason("contact_missing", "The contact no longer exists (erased)."))
        entered = (message.data or {}).get(ENTERED_SEGMENT)
        if isinstance(entered, str) and entered not in (contact.segments or {}):
            # Sent because the contact entered a segment, which it has left since (a cart
            # abandoned, then bought): the message no longer fits.
            return self._skip(message, now, Reason("left_segment", f"The contact has left the segment {entered!r} "
                                                                   "whose entry asked for this message."))
        compiled = self._variant(message.template, message.channel, _locale_of(contact))
        if compiled is None:
            return self._fail(message, now, "template_missing",
                              f"No {message.channel} template called {message.template!r}.")
        addresses = _addresses(contact, message.channel)
        if not addresses:
            return self._skip(message, now, Reason("no_address", f"The contact has no {_ADDRESS_WORDS[message.channel]}."))
        try:
            hashed = suppression_key(message.channel, addresses[0], self.salt())
        except ConsentError as exc:
            return self._skip(message, now, Reason("invalid_address", str(exc)))
        suppressions = self.suppressions.find(message.channel, hashed)
        state = ContactSendState.of(contact, suppressions)
        # A scheduled message's horizon counts from its moment, not from its (earlier) request.
        request = SendRequest(message.id, message.channel, message.lane, message.topic,
                              max(message.requested_at, _scheduled_for(message) or message.requested_at),
                              message.not_after)
        decision = decide(request, state, self._history(message, now), self.policy, now)
        if decision.outcome == SKIP:
            return self._skip(message, now, decision.reason)
        if decision.outcome == DEFER:
            return self._defer(message, now, decision)
        budget = self.policy.rates.get(message.channel)
        if budget is not None:
            ready = self.rate.take(message.channel, message.lane, budget, now)
            if ready is not None:
                return self._defer(message, now, defer(ready, Reason(
                    "send_rate", f"The {message.channel} sending rate ({budget.per_second:g} per second) is in use; "
                                 "this message goes out in a moment.")))
        if message.channel == "email":
            return self._send_email(message, contact, compiled, addresses[0], now)
        if message.channel == "sms":
            return self._send_sms(message, contact, compiled, addresses[0], now)
        return self._send_push(message, contact, compiled, addresses, now)

    # -- channels ---------------------------------------------------------------------------

    def _render(self, message: Message, contact: Contact, compiled: CompiledTemplate, address: str, now: datetime,
                links: dict):
        data = message.data if not is_test_send(message) else message.data[TEST_SEND].get("data") or {}
        return render_for_contact(compiled, contact, message_id=message.id, campaign=message.campaign, data=data,
                                  links=links, now=now)

    def _send_email(self, message: Message, contact: Contact, compiled: CompiledTemplate, address: str,
                    now: datetime) -> SendOutcome:
        tracker = self.tracker()
        expires = now + LINK_TTL
        unsubscribe = tracker.page_url(link_rules.UNSUBSCRIBE, message.id, expires)
        preferences = tracker.page_url(link_rules.PREFERENCES, message.id, expires)
        try:
            rendered = self._render(message, contact, compiled, address, now,
                                    {"unsubscribe": unsubscribe, "preferences": preferences})
            tracked = tracker.track(rendered.html, message.id, expires, keep=(unsubscribe, preferences))
            sender = rendered.from_address or self.from_address
            subject = f"{TEST_SUBJECT_PREFIX}{rendered.subject}" if is_test_send(message) else rendered.subject
            raw = build_email(EmailContent(
                message_id=message.id, sender=sender, to=address, subject=subject, html=tracked.html,
                text=rendered.text, sent_at=now, kind=message.lane,
                unsubscribe_url=unsubscribe if message.lane == MARKETING else None, reply_to=rendered.reply_to))
        except TemplateRenderError as exc:
            return self._fail(message, now, "template_error", f"The template {compiled.filename} failed: {exc}")
        except (InvalidEmail, link_rules.UnsafeLink) as exc:
            return self._fail(message, now, "invalid_email", str(exc))
        tags = {MESSAGE_TAG: message.id, "template": message.template, "lane": message.lane}
        if message.campaign:
            tags["campaign"] = message.campaign
        return self._called(message, now, lambda: self.email.send_raw(raw, _bare(sender), address, tags),
                            address=address, subject=subject, links=tracked.links)

    def _send_sms(self, message: Message, contact: Contact, compiled: CompiledTemplate, phone: str,
                  now: datetime) -> SendOutcome:
        if self.sms is None:
            return self._fail(message, now, "channel_unavailable", "No SMS provider is configured.")
        try:
            rendered = self._render(message, contact, compiled, phone, now, {})
        except TemplateRenderError as exc:
            return self._fail(message, now, "template_error", f"The template {compiled.filename} failed: {exc}")
        verdict = check_segments(rendered.text, self.sms_max_segments)
        if not verdict.ok:
            return self._fail(message, now, verdict.code, verdict.reason)
        return self._called(message, now,
                            lambda: self.sms.send(phone, rendered.text, message.lane == TRANSACTIONAL, message.id),
                            address=phone)

    def _send_push(self, message: Message, contact: Contact, compiled: CompiledTemplate, endpoints: list[str],
                   now: datetime) -> SendOutcome:
        if self.push is None:
            return self._fail(message, now, "channel_unavailable", "No push provider is configured.")
        try:
            rendered = self._render(message, contact, compiled, endpoints[0], now, {})
        except TemplateRenderError as exc:
            return self._fail(message, now, "template_error", f"The template {compiled.filename} failed: {exc}")
        reached: list[str] = []

        def send_to_every_device() -> ChannelResult:
            results = [(e, self.push.send(e, rendered.title or "", rendered.text, {"message_id": message.id},
                                          message.id)) for e in endpoints]
            self._forget_gone_endpoints(message, results)
            accepted = [(e, r) for e, r in results if r.accepted]
            if accepted:
                reached.append(accepted[0][0])
                return accepted[0][1]
            retrying = [r for _, r in results if r.status == RETRY]
            return retrying[0] if retrying else results[0][1]

        return self._called(message, now, send_to_every_device, address=lambda: reached[0] if reached else None)

    def _forget_gone_endpoints(self, message: Message, results: list[tuple[str, ChannelResult]]) -> None:
        """Endpoints SNS says are disabled or gone leave the contact (the provider call is
        over: a failure to report it only means the next send finds it again)."""
        if self.push_endpoint_gone is None:
            return
        for endpoint, result in results:
            if result.code in GONE_ENDPOINT_CODES:
                try:
                    self.push_endpoint_gone(message.contact_id, endpoint, message.id)
                except Exception:  # noqa: BLE001 - reported again by the next send to it
                    pass

    # -- test sends (services/template_trials.py) -------------------------------------------

    def _send_test(self, message: Message, now: datetime) -> SendOutcome:
        """One email or SMS to the address the operator gave, never to a contact: rendered for
        a real contact (its variables, as a real send builds them) or a sample; no consent,
        cap or quiet hours (nobody's marketing), but a suppressed address is still refused."""
        test = message.data[TEST_SEND]
        to = test.get("to") or ""
        try:
            hashed = suppression_key(message.channel, to, self.salt())
        except ConsentError as exc:
            return self._skip(message, now, Reason("invalid_address", str(exc)))
        blocking = [e for e in self.suppressions.find(message.channel, hashed) if e.blocks(message.lane)]
        if blocking:
            return self._skip(message, now, Reason("suppressed", blocking[0].sentence()))
        compiled = self.templates.compiled(test.get("file") or "")
        if compiled is None:
            return self._fail(message, now, "template_missing", f"No template {test.get('file')!r}.")
        if test.get("contact_id"):
            contact = self._contact(test["contact_id"])
            if contact is None:
                return self._skip(message, now, Reason("contact_missing", "The contact no longer exists (erased)."))
        else:
            contact = sample_contact(self.templates.engine, test.get("sample"))
        if message.channel == "email":
            return self._send_email(message, contact, compiled, to, now)
        return self._send_sms(message, contact, compiled, to, now)

    # -- outcomes ---------------------------------------------------------------------------

    def _called(self, message: Message, now: datetime, call: Callable[[], ChannelResult], **fields) -> SendOutcome:
        """The provider call and the record of its answer: from here on nothing is retried (a
        second call could send twice), see OutcomeUnknown."""
        try:
            result = call()
            fields = {k: (v() if callable(v) else v) for k, v in fields.items()}
            return self._outcome(message, now, result, **fields)
        except Exception as exc:
            raise OutcomeUnknown(f"message {message.id}: {type(exc).__name__}: {exc}") from exc

    def _sent_event(self, message: Message, now: datetime) -> None:
        """"Message Sent" on the contact. The message has gone and is recorded: a failure here
        must not turn it into an unknown outcome, so it is logged and counted instead."""
        if self.events is None:
            return
        try:
            append_contact_event(self.events, message.contact_id, MESSAGE_SENT, message_event_properties(message),
                                 now, f"sent:{message.id}", self.event_ttl_days)
        except Exception as exc:  # noqa: BLE001 - see above
            logger.error("Message Sent not recorded", extra={"message_id": message.id, "error": repr(exc)})
            self.count("event_not_recorded", "message_sent")

    def _outcome(self, message: Message, now: datetime, result: ChannelResult, **fields) -> SendOutcome:
        if result.status == ACCEPTED:
            # The provider's id is the message's own field (not repeated in the timeline entry:
            # the item stays small, and every later write of it costs by its size).
            self.log.advance(message.id, StatusChange(SENT, now), provider_id=result.provider_id, **fields)
            self.stats.add(message.channel, now, sent=1)
            self.count(SENT, None)
            self._sent_event(message, now)
            return SendOutcome(SENT, True)
        if result.status == RETRY:
            return self._retry(message, now, PROVIDER_RETRY, result.reason or result.code, result.retry_after)
        return self._fail(message, now, "provider_rejected", result.reason or result.code or "refused")

    def _retry(self, message: Message, now: datetime, code: str, reason: str, retry_after: float | None
               ) -> SendOutcome:
        attempts = 1 + sum(1 for c in message.timeline if c.detail.get("code") in (PROVIDER_RETRY, INTERNAL_RETRY))
        first = next((c.at for c in message.timeline if c.status == SENDING), now)
        decision = after_failure(self.retry, attempts, iso(first), now, reason, retry_after)
        if isinstance(decision, Park):
            return self._fail(message, now, "gave_up", decision.reason)
        self.log.release(message.id, StatusChange(DEFERRED, now, {
            "code": code, "reason": reason, "until": iso(decision.at), "attempt": attempts}))
        self.count("retrying", code)
        return SendOutcome("retrying", False, decision.delay, code, reason)

    def _defer(self, message: Message, now: datetime, decision: Decision) -> SendOutcome:
        self.log.release(message.id, StatusChange(DEFERRED, now, _detail(decision)))
        self.count(DEFERRED, decision.reason.code)
        return SendOutcome(DEFERRED, False, max(1.0, (decision.until - now).total_seconds()), decision.reason.code,
                           decision.reason.text)

    def _skip(self, message: Message, now: datetime, reason: Reason) -> SendOutcome:
        self.log.advance(message.id, StatusChange(SKIPPED, now, _detail(skip(reason))))
        self.count(SKIPPED, reason.code)
        return SendOutcome(SKIPPED, True, code=reason.code, reason=reason.text)

    def _fail(self, message: Message, now: datetime, code: str, reason: str) -> SendOutcome:
        self.log.advance(message.id, StatusChange(FAILED, now, {"code": code, "reason": reason}))
        self.count(FAILED, code)
        return SendOutcome(FAILED, True, code=code, reason=reason)

    # -- reading ----------------------------------------------------------------------------

    def _contact(self, contact_id: str) -> Contact | None:
        return self.contacts.survivor(contact_id)

    def _history(self, message: Message, now: datetime) -> SendHistory:
        longest = max((cap.period for cap in self.policy.caps), default=timedelta(days=7))
        sends = [send for mid, send in self.log.sends_of(message.contact_id,
                                                         now - longest - self.policy.defer_horizon, 200)
                 if mid != message.id]
        breakers = {}
        if message.lane == MARKETING:
            counters = self.stats.window(message.channel, now, BREAKER_WINDOW_HOURS)
            breakers[message.channel] = BreakerState.from_counters(counters, message.channel)
        return SendHistory(sends=tuple(sends), breakers=breakers)

    def _variant(self, template: str, channel: str, locale: str | None) -> CompiledTemplate | None:
        return self.templates.find(template, FORMAT_OF_CHANNEL[channel], locale)

    def _default_variant(self, template: str, channel: str) -> tuple[CompiledTemplate | None, str]:
        """The template without a locale: it says the message's lane (kind) and topic."""
        fmt = FORMAT_OF_CHANNEL[channel]
        compiled = self.templates.find(template, fmt, None)
        if compiled is not None:
            return compiled, ""
        broken = self.templates.broken.get(f"{template}.{fmt}.j2")
        if broken:
            return None, f"The template {template}.{fmt}.j2 does not compile: {broken}"
        return None, f"No {channel} template called {template!r} (expected {template}.{fmt}.j2)."

    # -- the contact's view -----------------------------------------------------------------

    def messages_of(self, contact_id: str, limit: int = 50, cursor: str | None = None) -> dict:
        """A contact's messages newest first, with every skip and deferral and its reason."""
        if not isinstance(limit, int) or not 1 <= limit <= 200:
            raise BadQuery("limit must be a whole number from 1 to 200")
        if self.contacts.get(contact_id) is None:
            raise NotFound(f"no contact {contact_id!r}")
        try:
            rows, next_cursor = self.log.for_contact(contact_id, limit=limit, cursor=cursor)
        except ValueError as exc:
            raise BadQuery(str(exc)) from None
        page = {"contact_id": contact_id, "messages": [_view(m) for m in rows]}
        if next_cursor:
            page["next_cursor"] = next_cursor
        return page


# -- the variables a template sees (one builder: sends, previews and test sends) ---------------


def template_variables(contact: Contact, *, message_id: str, campaign: str | None, data: dict, links: dict) -> dict:
    return {
        "contact": {"id": contact.id, "email": contact.traits.get("email"), "phone": contact.traits.get("phone"),
                    "locale": _locale_of(contact), "timezone": ContactSendState.of(contact).time_zone,
                    "segments": sorted(contact.segments), "stage": contact.stage,
                    "score": (contact.score or {}).get("points", 0)},
        "traits": dict(contact.traits), "links": links,
        "message": {"id": message_id, "campaign": campaign}, "data": dict(data), **coupon_variable(data)}


def render_for_contact(compiled: CompiledTemplate, contact: Contact, *, message_id: str, campaign: str | None,
                       data: dict, links: dict, now: datetime):
    """The template rendered for this contact, in its locale and time zone."""
    return compiled.render(template_variables(contact, message_id=message_id, campaign=campaign, data=data,
                                              links=links),
                           locale=_locale_of(contact), timezone=ContactSendState.of(contact).time_zone, now=now)


# -- test sends -------------------------------------------------------------------------------

ENTERED_SEGMENT = "segment_id"  # a message asked for by a segment entry (services/handlers.py)
TEST_SEND = "_test"  # the message's data key holding a test send's recipient and what to render
TEST_SUBJECT_PREFIX = "[Test] "


def is_test_send(message: Message) -> bool:
    """Both marks: the test's own contact id (which no event, trigger or journey can produce)
    and its instructions in the data."""
    return message.contact_id.startswith(TEST_CONTACT_PREFIX) and isinstance(message.data.get(TEST_SEND), dict)


def sample_contact(engine: TemplateEngine, name: str | None) -> Contact:
    """A sample contact of the template engine (the first without a name) as a Contact."""
    sample = next((s for s in engine.samples if s.name == name), None) or engine.samples[0]
    traits = dict(sample.variables.get("traits") or {})
    if sample.locale:
        traits.setdefault("locale", sample.locale)
    if sample.timezone:
        traits.setdefault("timezone", sample.timezone)
    variables = sample.variables.get("contact") or {}
    return Contact(id=str(variables.get("id") or "c-sample"), created_at="2026-01-01T00:00:00.000Z", traits=traits,
                   segments={s: {"since": "2026-01-01T00:00:00.000Z"} for s in variables.get("segments") or ()})


# -- helpers ----------------------------------------------------------------------------------

GONE_ENDPOINT_CODES = ("EndpointDisabled", "EndpointDisabledException", "NotFound", "NotFoundException")

_ADDRESS_WORDS = {"email": "email address", "sms": "phone number", "push": "registered device (push endpoint)"}


def _view(message: Message) -> dict:
    doc = message.to_document()
    doc.pop("address", None)  # the contact's own profile shows the address
    doc.pop("data", None)
    last = message.timeline[-1] if message.timeline else None
    if last is not None and last.detail.get("reason"):
        doc["reason"] = {"code": last.detail.get("code"), "text": last.detail.get("reason"),
                         "until": last.detail.get("until")}
    return doc


def _detail(decision: Decision) -> dict:
    record = decision.to_record()
    return {k: v for k, v in record.items() if v is not None}


def _lease_of(message: Message) -> datetime | None:
    for change in reversed(message.timeline):
        if change.status == SENDING:
            value = change.detail.get("lease_until")
            return parse_timestamp(value) if value else None
    return None


def _deferred_until(message: Message) -> datetime | None:
    last = message.timeline[-1] if message.timeline else None
    if last is None or last.status != DEFERRED or not last.detail.get("until"):
        return None
    return parse_timestamp(last.detail["until"])


def _scheduled_for(message: Message) -> datetime | None:
    """The moment a scheduled request (`not_before`) set, if it was one."""
    for change in message.timeline:
        if change.status == DEFERRED and change.detail.get("code") == SCHEDULED and change.detail.get("until"):
            return parse_timestamp(change.detail["until"])
    return None


def _locale_of(contact: Contact) -> str | None:
    for candidate in ((contact.traits or {}).get("locale"), (contact.last_context or {}).get("locale")):
        if normalise_locale(candidate):
            return normalise_locale(candidate)
    return None


def _addresses(contact: Contact, channel: str) -> list[str]:
    traits = contact.traits or {}
    if channel == "email":
        value = traits.get("email")
    elif channel == "sms":
        value = traits.get("phone")
    else:
        endpoints = traits.get("push_endpoints")
        return [e for e in endpoints if isinstance(e, str) and e] if isinstance(endpoints, list) else []
    return [value.strip()] if isinstance(value, str) and value.strip() else []


def _bare(sender: str) -> str:
    match = re.search(r"<([^<>]+)>", sender or "")
    return match.group(1) if match else (sender or "").strip()


def _bounded(data: dict) -> dict:
    text = json.dumps(data, default=str)
    return data if len(text) <= MAX_DATA_CHARS else {"_truncated": True}
