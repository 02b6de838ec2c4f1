"""What a person does with a message after it was sent: clicks, opens, unsubscribes, the
preference centre and a double opt-in's confirmation, reached through signed links without
logging in.

Every interaction is recorded twice: as a status change on the message (its timeline), and
as an event on the contact, appended to the event store under `contact:{id}` like the events
Mercurio emits itself, so the stream processor counts it, shows it on the contact's
timeline and lets segments read it. The contact item is written only by the stream
processor: a consent decision made here is a `Consent Updated` event with its source and
proof, which the processor applies (services/segmentation.py, ProfileRules._consent).

Unsubscribing (RFC 8058): the one-click POST withdraws consent to the message's topic on its
channel (the list the message was sent for); a message without a topic withdraws the whole
channel's marketing, and so does "unsubscribe from everything" on the page. A channel-wide
withdrawal also adds a suppression entry (reason unsubscribed, the address hashed), so the
send gate refuses the address even before the processor has applied the event.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from chalicelib.domain.events import iso
from chalicelib.domain.messaging.consent import (
    ALL_TOPICS,
    CHANNELS,
    DENIED,
    FEEDBACK,
    GRANTED,
    MIN_SALT_BYTES,
    PREFERENCE_CENTRE,
    UNSUBSCRIBED,
    ConsentError,
    ConsentProof,
    ConsentRecord,
    ConsentState,
    consent_key,
    suppress,
)
from chalicelib.domain.messaging.links import (
    CONFIRM,
    PREFERENCES,
    UNSUBSCRIBE,
    InteractionFacts,
    LinkTracker,
    classify_interaction,
)
from chalicelib.domain.messaging.messages import (
    CLICKED,
    DELIVERED,
    OPENED,
    SENT,
    UNSUBSCRIBED as MESSAGE_UNSUBSCRIBED,
    Message,
    StatusChange,
)
from chalicelib.services.message_ports import MessageLog, SuppressionStore
from chalicelib.services.ports import Clock, ContactRepository, EventStore, StoredEvent
from chalicelib.services.message_events import append_contact_event, click_id_of, message_event_properties, with_click_id
from chalicelib.services.segmentation import CONSENT_EVENT

LINK_CLICKED = "Email Link Clicked"  # Segment's Email Events spec
EMAIL_OPENED = "Email Opened"
UNSUBSCRIBED_EVENT = "Email Unsubscribed"  # Segment's Email Events spec; other channels: "Unsubscribed"
# Channels a person can choose on the preference centre (webhooks and on-site content are
# not messages sent to them).
PREFERENCE_CHANNELS = ("email", "sms", "push")


def checked_salt(salt: bytes) -> bytes:
    """The suppression salt, refused at once when missing or short: without it no address
    could be suppressed, and a bounce or an unsubscribe must never be dropped quietly."""
    if not isinstance(salt, (bytes, bytearray)) or len(salt) < MIN_SALT_BYTES:
        raise ConsentError(f"MERCURIO_SUPPRESSION_SALT must be set to at least {MIN_SALT_BYTES} bytes")
    return bytes(salt)


def consent_event_properties(channel: str, topic: str | None, status: str, source: str, proof: ConsentProof,
                             message_id: str | None) -> dict:
    props = {"channel": channel, "status": status, "source": source, "proof": proof.to_document()}
    if topic and topic != ALL_TOPICS:
        props["topic"] = topic
    if message_id:
        props["message_id"] = message_id
    return props


@dataclass(frozen=True)
class RequestFacts:
    """What the HTTP request tells about who is asking."""

    ip: str | None = None
    user_agent: str | None = None
    method: str = "GET"


@dataclass(frozen=True)
class ClickResult:
    destination: str | None
    reason: str | None = None  # why the safe page is shown instead
    not_recorded: str | None = None  # the recording failed (the person is redirected all the same)


@dataclass(frozen=True)
class PageResult:
    """The state of an unsubscribe or preference page: `reason` set when the link is not usable."""

    reason: str | None
    message: Message | None = None
    consent: ConsentState | None = None
    done: bool = False  # the unsubscribe was recorded (or had been already)
    changed: tuple[str, ...] = ()  # consent keys changed by this request
    scope: str | None = None  # what the unsubscribe covers, in words
    choices: list = field(default_factory=list)  # preference centre rows: (key, label, status)


class BadPreferences(ValueError):
    """A preference form that cannot be read; the message says why."""


class Interactions:
    def __init__(self, messages: Callable[[], MessageLog], suppressions: Callable[[], SuppressionStore],
                 events: EventStore, contacts: ContactRepository, tracker: LinkTracker, clock: Clock, salt: bytes,
                 ttl_days: int = 395):
        # The message ports are reached only once a token's signature is good: a forged or
        # damaged link is answered without touching a store.
        self._messages = messages
        self._suppressions = suppressions
        self.events = events
        self.contacts = contacts
        self.tracker = tracker
        self.clock = clock
        self.salt = checked_salt(salt)
        self.ttl_days = ttl_days

    @property
    def messages(self) -> MessageLog:
        return self._messages()

    @property
    def suppressions(self) -> SuppressionStore:
        return self._suppressions()

    # -- clicks and opens ----------------------------------------------------------------

    def click(self, token: object, request: RequestFacts) -> ClickResult:
        now = self.clock.now()
        found: dict[str, Message] = {}

        def stored_links(message_id: str):
            message = self.messages.get(message_id)
            if message is None:
                return None
            found["message"] = message
            return message.links

        outcome = self.tracker.resolve(token, stored_links, now)
        if outcome.safe_page:
            return ClickResult(None, outcome.reason)
        click_id = click_id_of(found["message"].id, outcome.link_index, now)
        landing = with_click_id(outcome.destination, click_id)
        try:
            self._record_click(found["message"], outcome, request, now, click_id)
        except Exception as exc:  # noqa: BLE001 - a store failure must not cost the person their link
            return ClickResult(landing, not_recorded=f"{type(exc).__name__}: {exc}")
        return ClickResult(landing)

    def _record_click(self, message: Message, outcome, request: RequestFacts, now: datetime, click_id: str) -> None:
        earlier = tuple((c.at, c.detail.get("link_index")) for c in message.timeline
                        if c.status == CLICKED and isinstance(c.detail.get("link_index"), int))
        verdict = classify_interaction(InteractionFacts(
            kind="click", at=now, user_agent=request.user_agent, method=request.method,
            delivered_at=_delivered_at(message), link_index=outcome.link_index, earlier_clicks=earlier,
            link_count=len(message.links)))
        detail = {"link_index": outcome.link_index, "suspected_bot": verdict.suspected_bot}
        if verdict.reasons:
            detail["bot_reason"] = "; ".join(verdict.reasons)
        self.messages.advance(message.id, StatusChange(CLICKED, now, detail))
        props = {**self._message_properties(message), "link_index": outcome.link_index,
                 "link_id": str(outcome.link_index), "click_id": click_id,
                 "url": outcome.destination, "suspected_bot": verdict.suspected_bot,
                 "bot_reason": "; ".join(verdict.reasons) or None}
        append_contact_event(self.events, message.contact_id, LINK_CLICKED, props, now,
                             f"click:{message.id}:{outcome.link_index}:{iso(now)}", self.ttl_days)

    def open(self, token: object, request: RequestFacts) -> bool:
        """Record an open; False when the pixel's token is not one to trust (the pixel is
        served anyway)."""
        now = self.clock.now()
        outcome = self.tracker.read_open(token, now)
        if not outcome.valid:
            return False
        message = self.messages.get(outcome.message_id)
        if message is None:
            return False
        verdict = classify_interaction(InteractionFacts(
            kind="open", at=now, user_agent=request.user_agent, method=request.method,
            delivered_at=_delivered_at(message)))
        detail = {"suspected_bot": verdict.suspected_bot}
        if verdict.reasons:
            detail["bot_reason"] = "; ".join(verdict.reasons)
        self.messages.advance(message.id, StatusChange(OPENED, now, detail))
        props = {**self._message_properties(message), "suspected_bot": verdict.suspected_bot,
                 "bot_reason": "; ".join(verdict.reasons) or None}
        append_contact_event(self.events, message.contact_id, EMAIL_OPENED, props, now,
                             f"open:{message.id}:{iso(now)}", self.ttl_days)
        return True

    # -- unsubscribe (RFC 8058) -----------------------------------------------------------

    def unsubscribe_page(self, token: object) -> PageResult:
        """What the page behind the List-Unsubscribe link shows; reading it changes nothing."""
        message, reason = self._page_message(token, UNSUBSCRIBE)
        if reason:
            return PageResult(reason)
        return PageResult(None, message, scope=_scope_words(message.channel, message.topic))

    def unsubscribe(self, token: object, request: RequestFacts, everything: bool = False,
                    one_click: bool = True) -> PageResult:
        """Withdraw consent at once. Idempotent: a second POST records nothing new."""
        message, reason = self._page_message(token, UNSUBSCRIBE)
        if reason:
            return PageResult(reason)
        topic = None if everything else message.topic
        shown = ("one-click unsubscribe (List-Unsubscribe-Post)" if one_click
                 else "unsubscribe page: " + _scope_words(message.channel, topic))
        proof = ConsentProof(shown=shown, where=f"message:{message.id}", ip=request.ip,
                             user_agent=request.user_agent)
        source = FEEDBACK if one_click else PREFERENCE_CENTRE
        changed = self._withdraw(message, topic, source, proof)
        return PageResult(None, message, done=True, changed=changed, scope=_scope_words(message.channel, topic))

    def _withdraw(self, message: Message, topic: str | None, source: str, proof: ConsentProof) -> tuple[str, ...]:
        now = self.clock.now()
        key = consent_key(message.channel, topic)
        if any(c.status == MESSAGE_UNSUBSCRIBED and c.detail.get("scope") == key for c in message.timeline):
            return ()  # already recorded from this message
        if topic is None and message.address:
            try:
                self.suppressions.add(suppress(message.channel, message.address, UNSUBSCRIBED, now, self.salt,
                                               detail=f"message {message.id}"))
            except ConsentError:
                pass  # an address that cannot be normalised cannot be hashed; consent still records it
        append_contact_event(self.events, message.contact_id, CONSENT_EVENT,
                             consent_event_properties(message.channel, topic, DENIED, source, proof, message.id),
                             now, f"unsubscribe:{message.id}:{key}", self.ttl_days)
        append_contact_event(self.events, message.contact_id,
                             UNSUBSCRIBED_EVENT if message.channel == "email" else "Unsubscribed",
                             {**self._message_properties(message), "channel": message.channel,
                              "topic": topic, "source": source}, now, f"unsubscribed:{message.id}:{key}",
                             self.ttl_days)
        self.messages.advance(message.id, StatusChange(MESSAGE_UNSUBSCRIBED, now, {"scope": key, "source": source}))
        return (key,)

    # -- preference centre ---------------------------------------------------------------

    def preferences(self, token: object) -> PageResult:
        message, reason = self._page_message(token, PREFERENCES)
        if reason:
            return PageResult(reason)
        state = self._consent_of(message.contact_id)
        return PageResult(None, message, consent=state, choices=self._choices(message, state))

    def save_preferences(self, token: object, form: dict, request: RequestFacts) -> PageResult:
        """`form` maps consent keys (`email`, `email/newsletter`) to `granted` or `denied`;
        only the keys whose effective status changes are recorded."""
        message, reason = self._page_message(token, PREFERENCES)
        if reason:
            return PageResult(reason)
        state = self._consent_of(message.contact_id)
        wanted = _read_form(form)
        now = self.clock.now()
        changed = []
        for key, status in sorted(wanted.items()):
            channel, _, topic = key.partition("/")
            if state.effective(channel, topic or None).status == status:
                continue
            proof = ConsentProof(shown=f"preference centre: {_scope_words(channel, topic or None)}",
                                 where=f"message:{message.id}", ip=request.ip, user_agent=request.user_agent)
            append_contact_event(self.events, message.contact_id, CONSENT_EVENT,
                                 consent_event_properties(channel, topic or None, status, PREFERENCE_CENTRE, proof,
                                                          message.id),
                                 now, f"preferences:{message.id}:{key}:{status}:{iso(now)}", self.ttl_days)
            if status == DENIED and not topic and channel == message.channel and message.address:
                try:
                    self.suppressions.add(suppress(channel, message.address, UNSUBSCRIBED, now, self.salt,
                                                   detail=f"preference centre, message {message.id}"))
                except ConsentError:
                    pass
            changed.append(key)
        if any(k.partition("/")[0] == message.channel and wanted[k] == DENIED for k in changed):
            self.messages.advance(message.id, StatusChange(MESSAGE_UNSUBSCRIBED, now,
                                                           {"scope": ",".join(changed), "source": PREFERENCE_CENTRE}))
        # What the page shows next: the recorded choices over the stored ones (the processor
        # applies the events moments later).
        for key in changed:
            channel, _, topic = key.partition("/")
            state = state.with_record(ConsentRecord(channel, topic or ALL_TOPICS, wanted[key], now,
                                                    PREFERENCE_CENTRE))
        return PageResult(None, message, consent=state, done=True, changed=tuple(changed),
                          choices=self._choices(message, state))

    # -- double opt-in confirmation ------------------------------------------------------

    def confirm_page(self, token: object) -> PageResult:
        """What the confirmation link shows before anything is recorded: a GET (a mail scanner
        following links, a link preview) never confirms a subscription; the page's button does."""
        message, reason = self._page_message(token, CONFIRM)
        if reason:
            return PageResult("expired" if reason == "expired" else reason)
        data = message.data or {}
        if data.get("channel") not in CHANNELS or not isinstance(data.get("token_id"), str):
            return PageResult("not a confirmation message")
        return PageResult(None, message, scope=_scope_words(data["channel"], data.get("topic"))
                          .replace("all marketing ", ""))

    def confirm(self, token: object, request: RequestFacts) -> PageResult:
        """The confirmation link of a double opt-in: grants the pending consent with source
        double_opt_in and its proof (IP, user agent, time), as a `Consent Updated` event the
        processor applies. A second click finds it confirmed and records nothing new."""
        from chalicelib.domain.messaging.consent import DOUBLE_OPT_IN, confirm_opt_in

        message, reason = self._page_message(token, CONFIRM)
        if reason:
            return PageResult("expired" if reason == "expired" else reason)
        data = message.data or {}
        channel, topic, token_id = data.get("channel"), data.get("topic"), data.get("token_id")
        if channel not in CHANNELS or not isinstance(token_id, str):
            return PageResult("not a confirmation message")
        state = self._consent_of(message.contact_id)
        now = self.clock.now()
        outcome = confirm_opt_in(state, channel, topic, token_id, now, ip=request.ip, user_agent=request.user_agent)
        scope = _scope_words(channel, topic).replace("all marketing ", "")
        if outcome.code == "already_confirmed":
            return PageResult(None, message, consent=state, done=True, scope=scope)
        if outcome.code != "confirmed":
            return PageResult(outcome.code, message, scope=scope)
        record = outcome.state.record(channel, topic)
        earlier = record.proof or ConsentProof("", "")
        proof = ConsentProof(shown=earlier.shown or "double opt-in confirmation email",
                             where=f"confirmation link, message:{message.id}", ip=request.ip,
                             user_agent=request.user_agent)
        props = consent_event_properties(channel, topic, GRANTED, DOUBLE_OPT_IN, proof, message.id)
        props["confirmation"] = record.confirmation.to_document()
        append_contact_event(self.events, message.contact_id, CONSENT_EVENT, props, now,
                             f"confirm:{message.id}", self.ttl_days)
        return PageResult(None, message, consent=outcome.state, done=True, changed=(record.key,), scope=scope)

    # -- shared --------------------------------------------------------------------------

    def _page_message(self, token: object, kind: str) -> tuple[Message | None, str | None]:
        outcome = self.tracker.read_page(token, kind, self.clock.now())
        if not outcome.valid:
            return None, outcome.reason
        message = self.messages.get(outcome.message_id)
        if message is None:
            return None, "unknown message"
        return message, None

    def _consent_of(self, contact_id: str) -> ConsentState:
        contact = self.contacts.survivor(contact_id)
        return ConsentState.from_document(contact.consent if contact is not None else {})

    def _choices(self, message: Message, state: ConsentState) -> list:
        """(key, label, effective status) for each channel and each topic known to this person
        or named by the message."""
        topics: dict[str, set] = {channel: set() for channel in PREFERENCE_CHANNELS}
        for record in state.records.values():
            if record.channel in topics and record.topic != ALL_TOPICS:
                topics[record.channel].add(record.topic)
        if message.topic and message.channel in topics:
            topics[message.channel].add(message.topic)
        rows = []
        for channel in PREFERENCE_CHANNELS:
            rows.append((channel, f"All {channel} messages", state.effective(channel).status))
            for topic in sorted(topics[channel]):
                rows.append((f"{channel}/{topic}", f"{channel}: {topic}", state.effective(channel, topic).status))
        return rows

    @staticmethod
    def _message_properties(message: Message) -> dict:
        return message_event_properties(message)


def _delivered_at(message: Message) -> datetime | None:
    """When the message reached the person (or left, when delivery is not known yet)."""
    delivered = [c.at for c in message.timeline if c.status == DELIVERED]
    sent = [c.at for c in message.timeline if c.status == SENT]
    return min(delivered) if delivered else (min(sent) if sent else None)


def _scope_words(channel: str, topic: str | None) -> str:
    if topic and topic != ALL_TOPICS:
        return f"{channel} messages about {topic}"
    return f"all marketing {channel} messages"


MAX_FORM_KEYS = 50


def _read_form(form: dict) -> dict[str, str]:
    if not isinstance(form, dict):
        raise BadPreferences("the preferences must be a form of choices")
    if len(form) > MAX_FORM_KEYS:
        raise BadPreferences(f"at most {MAX_FORM_KEYS} choices can be saved at once")
    wanted: dict[str, str] = {}
    for key, value in form.items():
        if key in ("action", "submit"):
            continue
        channel, _, topic = str(key).partition("/")
        if channel not in CHANNELS or channel not in PREFERENCE_CHANNELS:
            raise BadPreferences(f"{key!r} is not a channel you can choose here")
        if value not in (GRANTED, DENIED):
            raise BadPreferences(f"the choice for {key!r} must be granted or denied")
        try:
            normalised = consent_key(channel, topic or None)
        except ConsentError as exc:
            raise BadPreferences(str(exc)) from None
        wanted[normalised] = value
    if not wanted:
        raise BadPreferences("no choice was sent")
    return wanted
