"""Consent: what a person agreed to, on which channel and topic, when, where, and with what proof.

This module owns:
- communication consent per channel (email, sms, push, webhook, onsite) and topic, each record
  with status, time, source and proof (what was shown, where, IP and user agent);
- double opt-in (pending -> granted) with an idempotent second submission, resendable
  confirmations and an expiry;
- data-collection consent as Segment carries it (`context.consent.categoryPreferences` on every
  event, and the `Segment Consent Preference Updated` event);
- the merge of two contacts' consent when they turn out to be one person;
- which source may change consent: the public write key cannot grant more than the site's own
  consent form (registered through the admin API) records;
- suppression entries (hard bounce, complaint, unsubscribe, erasure) keyed by a salted hash of
  the address, so an opt-out survives the erasure of everything else.

Stored form: `ConsentState.to_document()` is the contact's `consent` map. Keys are `email`
(the whole channel), `email/newsletter` (one topic) and `data/Advertising` (a Segment
category); each value holds at least `status`, `at` (ISO-8601 UTC) and `source`, the shape the
segment evaluator and the contact merge already read.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Mapping

from chalicelib.domain.events import iso, parse_timestamp
from chalicelib.domain.identity import InvalidIdentifier, normalise_email, normalise_phone

CHANNELS = ("email", "sms", "push", "webhook", "onsite")
ALL_TOPICS = "*"  # a record for the whole channel
GRANTED, DENIED, PENDING = "granted", "denied", "pending"
DATA_COLLECTION = "data"  # key prefix of Segment's data-collection categories

# The two lanes of a message. The lane comes from the template's front matter, never from
# the caller's wish, so the transactional lane cannot be used to send marketing.
MARKETING, TRANSACTIONAL = "marketing", "transactional"
LANES = (MARKETING, TRANSACTIONAL)

SEGMENT_CONSENT_EVENT = "Segment Consent Preference Updated"

# Where a consent change comes from. Each source has its own powers (see `accept_change`).
WRITE_KEY = "write_key"  # the public tracking API: the snippet and the SDKs; anyone can call it
PREFERENCE_CENTRE = "preference_centre"  # a signed link sent to the address itself
DOUBLE_OPT_IN = "double_opt_in"  # the confirmation link of a double opt-in
ADMIN_API = "admin_api"  # a server holding the admin token (CRM sync, back office)
IMPORT = "import"  # a marketer's CSV import, which must state its proof
FEEDBACK = "feedback"  # SES complaints and unsubscribes, SMS STOP replies: withdrawals only
SOURCES = (WRITE_KEY, PREFERENCE_CENTRE, DOUBLE_OPT_IN, ADMIN_API, IMPORT, FEEDBACK)

CONFIRMATION_TTL = timedelta(days=7)
RESEND_INTERVAL = timedelta(minutes=5)
# A double opt-in can be abused to mail-bomb somebody else's address: resends are limited.
MAX_CONFIRMATIONS = 5
# A client clock is not trusted to date a change in the future: a forged far-future time would
# otherwise win every later latest-timestamp comparison.
MAX_CLOCK_SKEW = timedelta(minutes=5)

BOUNCED_HARD, COMPLAINED, UNSUBSCRIBED, ERASED = "bounced_hard", "complained", "unsubscribed", "erased"
SUPPRESSION_REASONS = (BOUNCED_HARD, COMPLAINED, UNSUBSCRIBED, ERASED)
MIN_SALT_BYTES = 16


class ConsentError(ValueError):
    """A consent value that cannot be recorded; the message says why, for a marketer."""


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ConsentError("a consent time must carry a time zone")
    return moment.astimezone(timezone.utc)


def _check_channel(channel: object) -> str:
    if channel not in CHANNELS:
        raise ConsentError(f"unknown channel {channel!r}: expected one of {', '.join(CHANNELS)}")
    return channel  # type: ignore[return-value]


def _check_topic(topic: object) -> str:
    if topic is None:
        return ALL_TOPICS
    if not isinstance(topic, str) or not topic.strip() or "/" in topic or len(topic) > 64:
        raise ConsentError(f"a topic is a short name without '/', got {topic!r}")
    return topic.strip().lower()


def consent_key(channel: str, topic: str | None = None) -> str:
    topic = _check_topic(topic)
    return _check_channel(channel) if topic == ALL_TOPICS else f"{channel}/{topic}"


@dataclass(frozen=True)
class ConsentProof:
    """What the person saw and where they were when they decided: the evidence a regulator asks for."""

    shown: str  # the wording displayed next to the checkbox, or the form's id and version
    where: str  # the page URL, form id, or channel ("reply STOP to +1…")
    ip: str | None = None
    user_agent: str | None = None

    def to_document(self) -> dict:
        return {"shown": self.shown, "where": self.where, "ip": self.ip, "user_agent": self.user_agent}

    @classmethod
    def from_document(cls, doc: object) -> "ConsentProof | None":
        if not isinstance(doc, dict):
            return None
        return cls(shown=str(doc.get("shown") or ""), where=str(doc.get("where") or ""),
                   ip=doc.get("ip"), user_agent=doc.get("user_agent"))


@dataclass(frozen=True)
class Confirmation:
    """The bookkeeping of one double opt-in request."""

    token_id: str  # carried by the signed confirmation link; resends reuse it, so any copy works
    requested_at: datetime
    expires_at: datetime
    sent: tuple[datetime, ...] = ()  # each confirmation message sent: the first and the resends
    confirmed_at: datetime | None = None
    confirmed_ip: str | None = None
    confirmed_user_agent: str | None = None

    def to_document(self) -> dict:
        return {
            "token_id": self.token_id, "requested_at": iso(self.requested_at), "expires_at": iso(self.expires_at),
            "sent": [iso(t) for t in self.sent],
            "confirmed_at": iso(self.confirmed_at) if self.confirmed_at else None,
            "confirmed_ip": self.confirmed_ip, "confirmed_user_agent": self.confirmed_user_agent,
        }

    @classmethod
    def from_document(cls, doc: object) -> "Confirmation | None":
        if not isinstance(doc, dict) or not doc.get("token_id"):
            return None
        return cls(
            token_id=str(doc["token_id"]), requested_at=parse_timestamp(doc["requested_at"]),
            expires_at=parse_timestamp(doc["expires_at"]),
            sent=tuple(parse_timestamp(t) for t in doc.get("sent") or ()),
            confirmed_at=parse_timestamp(doc["confirmed_at"]) if doc.get("confirmed_at") else None,
            confirmed_ip=doc.get("confirmed_ip"), confirmed_user_agent=doc.get("confirmed_user_agent"),
        )


@dataclass(frozen=True)
class ConsentRecord:
    """One decision (or one pending request) for a channel, or for one topic on a channel."""

    channel: str
    topic: str
    status: str
    at: datetime
    source: str
    proof: ConsentProof | None = None
    confirmation: Confirmation | None = None

    def __post_init__(self) -> None:
        _check_channel(self.channel)
        object.__setattr__(self, "topic", _check_topic(self.topic))
        if self.status not in (GRANTED, DENIED, PENDING):
            raise ConsentError(f"a consent status is granted, denied or pending, got {self.status!r}")
        object.__setattr__(self, "at", _utc(self.at))

    @property
    def key(self) -> str:
        return consent_key(self.channel, self.topic)

    def to_document(self) -> dict:
        doc = {"status": self.status, "at": iso(self.at), "source": self.source}
        if self.proof:
            doc["proof"] = self.proof.to_document()
        if self.confirmation:
            doc["confirmation"] = self.confirmation.to_document()
        return doc


@dataclass(frozen=True)
class CategoryPreference:
    """Data-collection consent for one of Segment's categories (Advertising, Analytics…)."""

    category: str
    granted: bool
    at: datetime
    source: str

    def to_document(self) -> dict:
        return {"status": GRANTED if self.granted else DENIED, "at": iso(self.at), "source": self.source}


@dataclass(frozen=True)
class EffectiveConsent:
    """The answer to "may we send marketing on this channel and topic?", with the record behind it."""

    status: str | None  # granted, denied, pending or None (never asked)
    record: ConsentRecord | None

    @property
    def granted(self) -> bool:
        return self.status == GRANTED


@dataclass(frozen=True)
class ConsentState:
    records: Mapping[str, ConsentRecord] = field(default_factory=dict)
    categories: Mapping[str, CategoryPreference] = field(default_factory=dict)

    def record(self, channel: str, topic: str | None = None) -> ConsentRecord | None:
        return self.records.get(consent_key(channel, topic))

    def effective(self, channel: str, topic: str | None = None) -> EffectiveConsent:
        """Combine the topic's record with the channel's.

        - A topic denied stays denied until that topic itself is granted again: a broader
          grant (a generic signup form) never re-opens a topic the person turned off.
        - A topic granted yields to a channel-wide denial made later ("unsubscribe from all"),
          and beats an older channel-wide denial (a later, explicit opt-in to that topic).
        - Without a topic record, the channel's record decides.
        A pending record is a request awaiting confirmation: it is not a grant.
        """
        channel_record = self.record(channel)
        topic = _check_topic(topic)
        topic_record = self.record(channel, topic) if topic != ALL_TOPICS else None
        if topic_record is None:
            return EffectiveConsent(channel_record.status if channel_record else None, channel_record)
        if topic_record.status == GRANTED and channel_record is not None and channel_record.status == DENIED \
                and channel_record.at > topic_record.at:
            return EffectiveConsent(DENIED, channel_record)
        return EffectiveConsent(topic_record.status, topic_record)

    def category(self, name: str) -> bool | None:
        pref = self.categories.get(name)
        return pref.granted if pref else None

    def with_record(self, record: ConsentRecord) -> "ConsentState":
        return replace(self, records={**self.records, record.key: record})

    def with_category(self, pref: CategoryPreference) -> "ConsentState":
        return replace(self, categories={**self.categories, pref.category: pref})

    def to_document(self) -> dict:
        doc = {key: rec.to_document() for key, rec in self.records.items()}
        doc.update({f"{DATA_COLLECTION}/{name}": pref.to_document() for name, pref in self.categories.items()})
        return doc

    @classmethod
    def from_document(cls, doc: object) -> "ConsentState":
        """Read the contact's `consent` map; entries that cannot be read are left out, not guessed."""
        records: dict[str, ConsentRecord] = {}
        categories: dict[str, CategoryPreference] = {}
        for key, value in (doc or {}).items() if isinstance(doc, dict) else ():
            if not isinstance(key, str) or not isinstance(value, dict):
                continue
            head, _, rest = key.partition("/")
            try:
                at = parse_timestamp(value.get("at"))
                if head == DATA_COLLECTION and rest:
                    if value.get("status") in (GRANTED, DENIED):
                        categories[rest] = CategoryPreference(rest, value["status"] == GRANTED, at,
                                                              str(value.get("source") or ""))
                    continue
                rec = ConsentRecord(channel=head, topic=rest or ALL_TOPICS, status=value.get("status"), at=at,
                                    source=str(value.get("source") or ""),
                                    proof=ConsentProof.from_document(value.get("proof")),
                                    confirmation=Confirmation.from_document(value.get("confirmation")))
            except (ValueError, KeyError):
                continue
            records[rec.key] = rec
        return cls(records, categories)


# -- merging two contacts ----------------------------------------------------------------------


def _prefer(ours: ConsentRecord, theirs: ConsentRecord) -> ConsentRecord:
    """Latest timestamp wins, with two exceptions that protect the person's decisions:
    a pending request never replaces a decision made earlier in favour of a grant (the person
    already confirmed), and on equal times a denial wins (when unsure, do not send)."""
    if ours.status == GRANTED and theirs.status == PENDING:
        return ours
    if theirs.status == GRANTED and ours.status == PENDING:
        return theirs
    if theirs.at != ours.at:
        return theirs if theirs.at > ours.at else ours
    return theirs if theirs.status == DENIED and ours.status != DENIED else ours


def merge_consent(ours: ConsentState, theirs: ConsentState) -> ConsentState:
    """The consent of one person known as two contacts: per key, the latest decision wins."""
    records = dict(ours.records)
    for key, rec in theirs.records.items():
        records[key] = _prefer(records[key], rec) if key in records else rec
    categories = dict(ours.categories)
    for name, pref in theirs.categories.items():
        mine = categories.get(name)
        if mine is None or pref.at > mine.at or (pref.at == mine.at and not pref.granted):
            categories[name] = pref
    return ConsentState(records, categories)


# -- who may change consent --------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentForm:
    """A consent form the site shows, registered through the admin API (a trusted caller).

    The snippet's consent call names the form; the form, not the browser, says what was shown
    and which channels and topics it collects.
    """

    id: str
    shown: str
    collects: frozenset  # of (channel, topic) pairs; topic ALL_TOPICS covers the whole channel

    def covers(self, channel: str, topic: str) -> bool:
        return (channel, topic) in self.collects or (channel, ALL_TOPICS) in self.collects


@dataclass(frozen=True)
class SiteConsentPolicy:
    forms: Mapping[str, ConsentForm] = field(default_factory=dict)
    # Grants through the public key on these channels wait for the person to confirm (double opt-in).
    confirm_channels: frozenset = frozenset({"email"})


@dataclass(frozen=True)
class ConsentChange:
    """An incoming request to record a decision, before it is judged."""

    channel: str
    topic: str | None
    status: str  # granted or denied
    at: datetime
    source: str
    proof: ConsentProof | None = None
    form_id: str | None = None


@dataclass(frozen=True)
class Acceptance:
    accepted: bool
    code: str
    reason: str
    record: ConsentRecord | None = None  # what to record when accepted (a grant may become pending)


def _refuse(code: str, reason: str) -> Acceptance:
    return Acceptance(False, code, reason)


def accept_change(change: ConsentChange, site: SiteConsentPolicy, now: datetime) -> Acceptance:
    """Decide whether a consent change from this source is accepted, and what it records.

    - A denial is accepted from every source: withdrawing must be as easy as giving (GDPR 7(3)).
      A forged withdrawal through the public key can cost a message, never send one: when
      unsure, Mercurio errs on the side of silence.
    - The public write key can only grant what a registered consent form collects; the form's
      wording replaces whatever the browser claims was shown, and on channels that need
      confirmation (email by default) the grant is recorded as pending until the person clicks
      the confirmation link. Its time is capped at the time of receipt.
    - The preference centre (a signed link received at the address) grants directly.
    - The admin API and imports grant only with proof (what was shown and where).
    - Double opt-in grants go through `confirm_opt_in`; feedback (complaints, STOP) only withdraws.
    """
    try:
        channel = _check_channel(change.channel)
        topic = _check_topic(change.topic)
    except ConsentError as exc:
        return _refuse("invalid", str(exc))
    if change.status not in (GRANTED, DENIED):
        return _refuse("invalid", f"a consent change is granted or denied, got {change.status!r}")
    if change.source not in SOURCES:
        return _refuse("unknown_source", f"consent from an unknown source {change.source!r} is not recorded")
    now = _utc(now)
    at = min(_utc(change.at), now) if change.source == WRITE_KEY else _utc(change.at)
    if at > now + MAX_CLOCK_SKEW:
        return _refuse("future", "a consent change dated in the future is not recorded")

    def accepted(status: str, proof: ConsentProof | None) -> Acceptance:
        record = ConsentRecord(channel, topic, status, at, change.source, proof)
        what = f"{channel}" + ("" if topic == ALL_TOPICS else f" ({topic})")
        text = {GRANTED: f"Consent to {what} recorded.", DENIED: f"Opt-out from {what} recorded.",
                PENDING: f"Consent to {what} awaits confirmation by the person."}[status]
        return Acceptance(True, status, text, record)

    if change.status == DENIED:
        return accepted(DENIED, change.proof)
    if change.source == FEEDBACK:
        return _refuse("withdraw_only", "feedback from a mail or SMS provider can only withdraw consent")
    if change.source == DOUBLE_OPT_IN:
        return _refuse("confirm_only", "a double opt-in is granted only by its confirmation link")
    if change.source == WRITE_KEY:
        form = site.forms.get(change.form_id or "")
        if form is None:
            return _refuse("no_form", "the public write key can grant consent only through a registered consent form"
                           + (f"; {change.form_id!r} is not one" if change.form_id else ""))
        if not form.covers(channel, topic):
            return _refuse("beyond_form", f"the consent form {form.id!r} does not collect consent to {channel}"
                           + ("" if topic == ALL_TOPICS else f" ({topic})"))
        claimed = change.proof or ConsentProof("", "")
        proof = ConsentProof(shown=form.shown, where=claimed.where or f"form:{form.id}", ip=claimed.ip,
                             user_agent=claimed.user_agent)
        return accepted(PENDING if channel in site.confirm_channels else GRANTED, proof)
    if change.source in (ADMIN_API, IMPORT):
        if change.proof is None or not change.proof.shown.strip() or not change.proof.where.strip():
            return _refuse("no_proof", "a grant from the admin API or an import needs proof: what was shown and where")
    return accepted(GRANTED, change.proof)


def apply_change(state: ConsentState, acceptance: Acceptance, token_id: str | None = None,
                 now: datetime | None = None, ttl: timedelta = CONFIRMATION_TTL) -> "OptInOutcome":
    """Record an accepted change. A pending grant starts (or repeats, idempotently) a double
    opt-in, timed from `now`, the moment it was received: the confirmation's expiry must not
    depend on a client's clock."""
    record = acceptance.record
    if not acceptance.accepted or record is None:
        return OptInOutcome(state, acceptance.code, False, acceptance.reason)
    if record.status == PENDING:
        if not token_id or now is None:
            raise ConsentError("a pending grant needs a confirmation token id and the time it was received")
        return request_opt_in(state, record, token_id, now, ttl)
    current = state.record(record.channel, record.topic)
    if current is not None and current.at > record.at:
        return OptInOutcome(state, "stale", False, "A newer decision is already recorded; this older one is ignored.")
    return OptInOutcome(state.with_record(record), record.status, False, acceptance.reason)


# -- double opt-in -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OptInOutcome:
    state: ConsentState
    code: str
    send_confirmation: bool  # the caller sends (or resends) the confirmation message
    reason: str


def request_opt_in(state: ConsentState, pending: ConsentRecord, token_id: str, now: datetime,
                   ttl: timedelta = CONFIRMATION_TTL) -> OptInOutcome:
    """A subscription awaiting confirmation. Submitting the same form twice changes nothing and
    sends nothing more (the person can ask for a resend); a confirmed subscription stays confirmed."""
    now = _utc(now)
    current = state.record(pending.channel, pending.topic)
    if current is not None and current.status == GRANTED:
        return OptInOutcome(state, "already_confirmed", False, "Already subscribed and confirmed.")
    if current is not None and current.status == PENDING and current.confirmation \
            and now < current.confirmation.expires_at:
        return OptInOutcome(state, "already_pending", False,
                            "A confirmation was already sent; it can be resent if it did not arrive.")
    confirmation = Confirmation(token_id=token_id, requested_at=now, expires_at=now + ttl, sent=(now,))
    record = replace(pending, status=PENDING, at=now, confirmation=confirmation)
    return OptInOutcome(state.with_record(record), "confirmation_sent", True,
                        "Subscription recorded; it starts once the person confirms by the link sent to them.")


def resend_confirmation(state: ConsentState, channel: str, topic: str | None, now: datetime,
                        min_interval: timedelta = RESEND_INTERVAL,
                        max_sends: int = MAX_CONFIRMATIONS) -> OptInOutcome:
    now = _utc(now)
    current = state.record(channel, topic)
    if current is not None and current.status == GRANTED:
        return OptInOutcome(state, "already_confirmed", False, "Already confirmed: nothing to resend.")
    if current is None or current.status != PENDING or current.confirmation is None:
        return OptInOutcome(state, "not_pending", False, "No subscription awaits confirmation.")
    conf = current.confirmation
    if now >= conf.expires_at:
        return OptInOutcome(state, "expired", False, "The request has expired: subscribe again.")
    if len(conf.sent) >= max_sends:
        return OptInOutcome(state, "resend_limit",
                            False, f"The confirmation was already sent {len(conf.sent)} times, the most allowed.")
    if conf.sent and now - conf.sent[-1] < min_interval:
        return OptInOutcome(state, "resend_too_soon", False,
                            "The confirmation was sent moments ago; wait a few minutes before asking again.")
    record = replace(current, confirmation=replace(conf, sent=conf.sent + (now,)))
    return OptInOutcome(state.with_record(record), "resent", True, "The confirmation was sent again.")


def confirm_opt_in(state: ConsentState, channel: str, topic: str | None, token_id: str, now: datetime,
                   ip: str | None = None, user_agent: str | None = None) -> OptInOutcome:
    """The person clicked the confirmation link (whose signature the caller has checked)."""
    now = _utc(now)
    current = state.record(channel, topic)
    if current is not None and current.status == GRANTED:
        return OptInOutcome(state, "already_confirmed", False, "Already confirmed.")
    if current is None or current.status != PENDING or current.confirmation is None:
        return OptInOutcome(state, "not_pending", False, "No subscription awaits confirmation for this link.")
    conf = current.confirmation
    if not hmac.compare_digest(conf.token_id.encode(), token_id.encode()):
        return OptInOutcome(state, "wrong_token", False, "This confirmation link belongs to an older request.")
    if now >= conf.expires_at:
        return OptInOutcome(state, "expired", False, "This confirmation link has expired: subscribe again.")
    record = replace(current, status=GRANTED, at=now, source=DOUBLE_OPT_IN,
                     confirmation=replace(conf, confirmed_at=now, confirmed_ip=ip, confirmed_user_agent=user_agent))
    return OptInOutcome(state.with_record(record), "confirmed", False, "Subscription confirmed.")


# -- Segment's data-collection consent ---------------------------------------------------------


def categories_from_event(event: dict) -> tuple[dict[str, bool], list[str]]:
    """Segment's `context.consent.categoryPreferences`: category -> granted. Problems are listed,
    and an unreadable category is left out rather than guessed."""
    context = event.get("context") if isinstance(event, dict) else None
    consent = context.get("consent") if isinstance(context, dict) else None
    if consent is None:
        if isinstance(event, dict) and event.get("event") == SEGMENT_CONSENT_EVENT:
            return {}, [f"{SEGMENT_CONSENT_EVENT!r} carries no context.consent.categoryPreferences: nothing changed"]
        return {}, []
    prefs = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    if not isinstance(prefs, dict):
        return {}, ["context.consent.categoryPreferences must be an object of category: true/false"]
    found: dict[str, bool] = {}
    problems: list[str] = []
    for name, value in prefs.items():
        if not isinstance(name, str) or not name.strip() or len(name) > 100 or "/" in name:
            problems.append(f"category name {name!r} is not a short name")
        elif not isinstance(value, bool):
            problems.append(f"category {name!r} must be true or false, got {value!r}")
        else:
            found[name.strip()] = value
    return found, problems


def apply_segment_consent(state: ConsentState, event: dict,
                          source: str = WRITE_KEY) -> tuple[ConsentState, list[str], list[str]]:
    """Apply the consent object an event carries (every event carries the current preferences,
    and `Segment Consent Preference Updated` announces a change). Older preferences than the
    recorded ones are ignored, so out-of-order delivery cannot undo a newer choice.
    Returns (state, changed categories, problems)."""
    found, problems = categories_from_event(event)
    if not found:
        return state, [], problems
    try:
        at = parse_timestamp(event.get("timestamp"))
    except ValueError as exc:
        return state, [], problems + [f"timestamp {exc}"]
    changed = []
    for name, granted in sorted(found.items()):
        current = state.categories.get(name)
        if current is not None and (current.at > at or current.granted == granted):
            continue
        state = state.with_category(CategoryPreference(name, granted, at, source))
        changed.append(name)
    return state, changed, problems


# -- suppression ------------------------------------------------------------------------------


def normalise_address(channel: str, address: str) -> str:
    """The form of an address that is hashed: the same person always gives the same hash."""
    _check_channel(channel)
    try:
        if channel == "email":
            return normalise_email(address)
        if channel == "sms":
            return normalise_phone(address)
    except InvalidIdentifier as exc:
        raise ConsentError(f"cannot suppress {channel} address: {exc}") from None
    if not isinstance(address, str) or not address.strip():
        raise ConsentError(f"a {channel} address must be a non-empty string")
    return address.strip()


def suppression_key(channel: str, address: str, salt: bytes) -> str:
    """HMAC-SHA256 of the normalised address, keyed by the installation's salt.

    The salt keeps the list from being reversed with a dictionary of common addresses computed
    elsewhere; HMAC rather than a bare hash of salt+address avoids ambiguity between the two parts.
    """
    if not isinstance(salt, (bytes, bytearray)) or len(salt) < MIN_SALT_BYTES:
        raise ConsentError(f"the suppression salt must be at least {MIN_SALT_BYTES} random bytes")
    message = f"{channel}:{normalise_address(channel, address)}".encode()
    return "hmac-sha256:" + hmac.new(bytes(salt), message, hashlib.sha256).hexdigest()


_SUPPRESSION_TEXT = {
    BOUNCED_HARD: "the address does not exist (hard bounce)",
    COMPLAINED: "the person marked a message as spam",
    UNSUBSCRIBED: "the person unsubscribed from all marketing",
    ERASED: "the person asked to be erased",
}


@dataclass(frozen=True)
class SuppressionEntry:
    """A blocked address. It holds no address, only its hash, so it may outlive an erasure."""

    channel: str
    address_hash: str
    reason: str
    at: datetime
    detail: str = ""  # e.g. the bounce's diagnostic code; never the address

    def __post_init__(self) -> None:
        _check_channel(self.channel)
        if self.reason not in SUPPRESSION_REASONS:
            raise ConsentError(f"a suppression reason is one of {', '.join(SUPPRESSION_REASONS)}, got {self.reason!r}")
        object.__setattr__(self, "at", _utc(self.at))

    def blocks(self, lane: str) -> bool:
        """A hard bounce blocks every lane: the address is dead, and mailing it again hurts the
        sender's reputation whatever the message. A complaint, an unsubscribe or an erasure block
        marketing; a person who comes back after an erasure can still receive a password reset or
        the confirmation of a new subscription (transactional)."""
        return self.reason == BOUNCED_HARD or lane == MARKETING

    def lifted_by(self, consent: EffectiveConsent) -> bool:
        """A new, explicit, confirmed opt-in after an unsubscribe, complaint or erasure lifts the
        entry (the person came back). Nothing but an operator lifts a hard bounce."""
        record = consent.record
        return (self.reason != BOUNCED_HARD and record is not None and record.status == GRANTED
                and record.at > self.at and record.source in (DOUBLE_OPT_IN, PREFERENCE_CENTRE))

    def sentence(self) -> str:
        when = self.at.strftime("%Y-%m-%d %H:%M UTC")
        return f"This {self.channel} address is suppressed since {when}: {_SUPPRESSION_TEXT[self.reason]}."

    def to_document(self) -> dict:
        return {"channel": self.channel, "address_hash": self.address_hash, "reason": self.reason,
                "at": iso(self.at), "detail": self.detail}

    @classmethod
    def from_document(cls, doc: dict) -> "SuppressionEntry":
        return cls(doc["channel"], doc["address_hash"], doc["reason"], parse_timestamp(doc["at"]),
                   str(doc.get("detail") or ""))


def suppress(channel: str, address: str, reason: str, at: datetime, salt: bytes, detail: str = "") -> SuppressionEntry:
    return SuppressionEntry(channel, suppression_key(channel, address, salt), reason, at, detail)
