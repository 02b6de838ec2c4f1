"""The policy gate: one decision before every send, on every channel, for broadcasts and journeys.

`decide(request, contact, history, settings, now)` returns a `Decision`, a value: `send`,
`defer(until, reason)` or `skip(reason)`. Nothing raises for an expected outcome, and every
reason carries a machine code and a sentence a marketer understands, to be recorded on the
contact's timeline.

The checks, in this order (the first that stops the message decides):

1. the request itself: a known channel and lane;
2. suppression, never bypassed: a hard bounce blocks even a transactional message; a complaint,
   a global unsubscribe or an erasure block marketing (unless the person has since opted in
   again, explicitly and confirmed);
3. consent for the channel and topic. Marketing needs a grant (`ConsentState.effective`).
   The transactional lane follows what the law allows: a receipt, a password reset or the
   confirmation of a subscription needs no marketing consent (GDPR art. 6(1)(b) performance of
   a contract; ePrivacy art. 13 and CAN-SPAM regulate commercial messages, exempting
   transactional ones). Two exceptions are kept on purpose: a channel-wide denial of SMS (a STOP
   reply, which carriers treat as an opt-out of every message from the sender) and of push (the
   operating system's permission is the consent) block transactional messages too;
4. the circuit breaker (marketing only): paused while the channel's recent bounce or complaint
   rate is at SES's review thresholds; the message is deferred by `breaker_recheck`;
5. the frequency caps across all channels (marketing only) and
6. quiet hours in the contact's own time zone (marketing only): both give the earliest moment
   the message may go; it is deferred to that moment;
7. the send rate of the channel (both lanes): a token bucket that keeps a reserve for the
   transactional lane, so a receipt never queues behind a bulk send.

A deferral is bounded by a horizon counted from the moment the send was first requested (and
by the message's own `not_after`): a message that would have to wait past it is skipped with
the reason of the wait, never silently dropped. A deferred message comes back to `decide` at
its `until`: decisions are not reservations, so two messages woken at the same moment are
judged one after the other against the history that includes the first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from fractions import Fraction
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.domain.contact import Contact
from chalicelib.domain.messaging.consent import (
    ALL_TOPICS,
    CHANNELS,
    DENIED,
    LANES,
    MARKETING,
    PENDING,
    ConsentState,
    SuppressionEntry,
)

SEND, DEFER, SKIP = "send", "defer", "skip"
DISRUPTIVE_CHANNELS = ("email", "sms", "push")  # channels that reach the person unasked
TRANSACTIONAL_HONOURS_DENIAL = ("sms", "push")


@dataclass(frozen=True)
class Reason:
    code: str  # stable, for metrics and filters
    text: str  # for the marketer, on the contact's timeline


@dataclass(frozen=True)
class Decision:
    outcome: str
    reason: Reason | None = None
    until: datetime | None = None

    def to_record(self) -> dict:
        """What is written on the contact's timeline and in the message's status."""
        return {"outcome": self.outcome, "code": self.reason.code if self.reason else None,
                "reason": self.reason.text if self.reason else None,
                "until": self.until.astimezone(timezone.utc).isoformat() if self.until else None}


def send() -> Decision:
    return Decision(SEND)


def defer(until: datetime, reason: Reason) -> Decision:
    return Decision(DEFER, reason, until)


def skip(reason: Reason) -> Decision:
    return Decision(SKIP, reason)


# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    message_id: str
    channel: str
    lane: str  # from the template's front matter
    topic: str | None  # the subscription topic; None for the channel as a whole
    requested_at: datetime  # when the send was first asked for: the horizon counts from here
    not_after: datetime | None = None  # pointless after this moment (a sale that ends)


@dataclass(frozen=True)
class ContactSendState:
    consent: ConsentState
    suppressions: tuple[SuppressionEntry, ...] = ()  # the entries found for the recipient's address hash
    time_zone: str | None = None  # IANA name from the contact's profile


    @classmethod
    def of(cls, contact: Contact, suppressions: tuple[SuppressionEntry, ...] = ()) -> "ContactSendState":
        """What the gate reads from a stored contact: its consent map and time zone
        (`traits.timezone`, else the last context's, as segments read it)."""
        zone = None
        for candidate in ((contact.traits or {}).get("timezone"), (contact.last_context or {}).get("timezone")):
            if isinstance(candidate, str) and candidate.strip():
                zone = candidate.strip()
                break
        return cls(ConsentState.from_document(contact.consent), tuple(suppressions), zone)


@dataclass(frozen=True)
class PastSend:
    at: datetime
    channel: str
    lane: str


@dataclass(frozen=True)
class SendCounters:
    """A channel's recent outcome counts (e.g. the last 24 hours of marketing sends)."""

    sent: int
    bounced: int  # permanent bounces
    complained: int
    window: timedelta


@dataclass(frozen=True)
class BreakerThresholds:
    # SES puts an account under review at a 5 % bounce rate or a 0.1 % complaint rate.
    bounce_rate: Fraction = Fraction(5, 100)
    complaint_rate: Fraction = Fraction(1, 1000)
    # Below this volume a rate says little (one bounce in ten sends is not a list problem).
    min_volume: int = 500


@dataclass(frozen=True)
class BreakerState:
    open: bool
    reason: Reason | None
    bounce_rate: Fraction
    complaint_rate: Fraction
    volume: int

    @classmethod
    def from_counters(cls, counters: SendCounters, channel: str = "email",
                      thresholds: BreakerThresholds = BreakerThresholds()) -> "BreakerState":
        sent = max(counters.sent, 0)
        bounce = Fraction(counters.bounced, sent) if sent else Fraction(0)
        complaint = Fraction(counters.complained, sent) if sent else Fraction(0)
        if sent < thresholds.min_volume:
            return cls(False, None, bounce, complaint, sent)
        hours = _duration_words(counters.window)
        tripped = []
        if complaint >= thresholds.complaint_rate:
            tripped.append(("breaker_complaint_rate",
                            f"{_percent(complaint)} of them drew a spam complaint (limit {_percent(thresholds.complaint_rate)})"))
        if bounce >= thresholds.bounce_rate:
            tripped.append(("breaker_bounce_rate",
                            f"{_percent(bounce)} of them bounced (limit {_percent(thresholds.bounce_rate)})"))
        if not tripped:
            return cls(False, None, bounce, complaint, sent)
        text = (f"Marketing {channel} is paused: of the {sent:,} sent in the last {hours}, "
                + " and ".join(t for _, t in tripped)
                + ". Clean the audience or fix the content before resuming.")
        return cls(True, Reason(tripped[0][0], text), bounce, complaint, sent)


def _percent(value: Fraction) -> str:
    pct = float(value * 100)
    return f"{pct:.2f}".rstrip("0").rstrip(".") + " %"


def _duration_words(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} days"
    return f"{hours:g} hours" if hours != 1 else "hour"


@dataclass(frozen=True)
class RateBudget:
    """A channel's send quota: SES's MaxSendRate from GetAccount, or the SMS throughput."""

    per_second: float
    burst: int = 1  # sends allowed back to back
    transactional_reserve: int = 0  # of the burst, kept for the transactional lane

    def __post_init__(self) -> None:
        if not self.per_second > 0 or self.burst < 1 or not 0 <= self.transactional_reserve < self.burst:
            raise ValueError("a send rate is positive, with a burst of at least one send and a transactional "
                             "reserve smaller than the burst")

    def interval_us(self) -> int:
        # Rounded up: the budget never allows more than the quota.
        return -(-1_000_000 * Fraction(self.per_second).denominator // Fraction(self.per_second).numerator)


@dataclass(frozen=True)
class RateState:
    """The token bucket in its GCRA form: one timestamp (the theoretical arrival time) per
    channel, which a store can update with a single conditional write. With emission interval T
    and burst b, the tokens available at t are min(b, (t - (tat - b*T)) / T): exactly a token
    bucket refilled at 1/T per second, without floating point."""

    tat: datetime | None = None


def tokens_available(budget: RateBudget, state: RateState, now: datetime) -> int:
    if state.tat is None:
        return budget.burst
    interval = budget.interval_us()
    elapsed_us = _us(now - state.tat) + budget.burst * interval
    return max(0, min(budget.burst, elapsed_us // interval))


def rate_ready_at(budget: RateBudget, state: RateState, lane: str, now: datetime) -> datetime:
    """The earliest moment a send in this lane fits the budget: marketing must leave the
    transactional reserve untouched."""
    if state.tat is None:
        return now
    interval = timedelta(microseconds=budget.interval_us())
    reserve = 0 if lane != MARKETING else min(budget.transactional_reserve, budget.burst - 1)
    ready = state.tat - (budget.burst - 1 - reserve) * interval
    return max(now, ready)


def take_send(budget: RateBudget, state: RateState, lane: str, now: datetime) -> tuple[bool, RateState]:
    """Spend one send of the budget if it fits now; returns (taken, new state)."""
    if rate_ready_at(budget, state, lane, now) > now:
        return False, state
    base = now if state.tat is None or state.tat < now else state.tat
    return True, RateState(base + timedelta(microseconds=budget.interval_us()))


def _us(span: timedelta) -> int:
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds


@dataclass(frozen=True)
class SendHistory:
    sends: tuple[PastSend, ...] = ()  # this contact's recent sends, all channels
    breakers: Mapping[str, BreakerState] = field(default_factory=dict)  # per channel
    rates: Mapping[str, RateState] = field(default_factory=dict)  # per channel


@dataclass(frozen=True)
class FrequencyCap:
    max_messages: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.max_messages < 1 or self.period <= timedelta(0):
            raise ValueError("a frequency cap allows at least one message in a positive period")

    def words(self) -> str:
        return f"{self.max_messages} marketing message{'s' if self.max_messages != 1 else ''} per {_duration_words(self.period)}"


@dataclass(frozen=True)
class QuietHours:
    """Local wall-clock hours when marketing waits, e.g. 21:00-08:00 (crossing midnight)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours need different start and end times")

    def contains(self, wall: time) -> bool:
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end

    def words(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class PolicySettings:
    caps: tuple[FrequencyCap, ...] = (FrequencyCap(3, timedelta(days=7)),)
    quiet_hours: QuietHours | None = QuietHours(time(21, 0), time(8, 0))
    default_time_zone: str = "UTC"
    defer_horizon: timedelta = timedelta(days=7)
    breaker_recheck: timedelta = timedelta(hours=1)
    rates: Mapping[str, RateBudget] = field(default_factory=dict)
    # Caps and quiet hours protect the person from interruptions; a webhook to a CRM or the
    # content of a page the person is reading does not interrupt.
    paced_channels: tuple[str, ...] = DISRUPTIVE_CHANNELS


# -- time zones -----------------------------------------------------------------------------


def zone_of(name: str | None, default: str) -> ZoneInfo:
    for candidate in (name, default):
        if isinstance(candidate, str) and candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def first_instant_at_or_after(day, wall_time: time, zone: ZoneInfo, not_before: datetime) -> datetime:
    """The first instant, not before `not_before`, at which the local clock reads `wall_time`
    on `day` or later that day. In the spring-forward gap the wall time never appears: the first
    instant after it is the moment the clock jumps. In the fall-back overlap it appears twice: the
    earlier one not before `not_before` is taken."""
    naive = datetime.combine(day, wall_time)
    candidates = []
    for fold in (0, 1):
        aware = naive.replace(tzinfo=zone, fold=fold)
        if _wall(aware.astimezone(timezone.utc), zone) == naive:  # the wall time exists with this offset
            candidates.append(aware.astimezone(timezone.utc))
    if not candidates:
        # A gap: between the two interpretations lies the jump; find its first instant.
        # Transitions fall on whole seconds: search whole seconds.
        ends = sorted(naive.replace(tzinfo=zone, fold=f).astimezone(timezone.utc) for f in (0, 1))
        low = ends[0].replace(microsecond=0)
        high = ends[1].replace(microsecond=0) + timedelta(seconds=1)
        while (high - low).total_seconds() > 1:  # invariant: wall(low) < naive <= wall(high)
            mid = low + timedelta(seconds=int((high - low).total_seconds()) // 2)
            if _wall(mid, zone) >= naive:
                high = mid
            else:
                low = mid
        candidates.append(high)
    later = sorted(c for c in candidates if c >= not_before)
    return later[0] if later else max(candidates)


def quiet_until(quiet: QuietHours, zone: ZoneInfo, at: datetime) -> datetime | None:
    """When the quiet window containing `at` ends, or None if `at` is outside quiet hours."""
    local = at.astimezone(zone)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return None
    day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        day = day + timedelta(days=1)  # evening part of a window crossing midnight: it ends tomorrow
    end = first_instant_at_or_after(day, quiet.end, zone, at)
    if end < at:  # the end wall time fell before `at` (overlap): the next day's end
        end = first_instant_at_or_after(day + timedelta(days=1), quiet.end, zone, at)
    return end


# -- frequency caps -------------------------------------------------------------------------


def cap_ready_at(caps: tuple[FrequencyCap, ...], sends: list[datetime], now: datetime) -> tuple[datetime, FrequencyCap | None]:
    """The earliest moment every cap allows one more message. A send at s counts while
    s > t - period; the cap allows a message at t when fewer than `max_messages` count, so a
    full window frees up when its oldest needed send leaves it, at s + period. Freeing only ever
    happens as time passes, so raising t to each cap's moment in turn reaches the answer."""
    sends = sorted(s for s in sends if s <= now)
    t, binding = now, None
    moved = True
    while moved:
        moved = False
        for cap in caps:
            counted = [s for s in sends if s > t - cap.period]
            if len(counted) >= cap.max_messages:
                t = counted[len(counted) - cap.max_messages] + cap.period
                binding, moved = cap, True
    return t, binding


# -- the gate -------------------------------------------------------------------------------


def _when(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {zone.key}"


def decide(request: SendRequest, contact: ContactSendState, history: SendHistory, settings: PolicySettings,
           now: datetime) -> Decision:
    if now.tzinfo is None or request.requested_at.tzinfo is None:
        raise ValueError("now and requested_at must carry a time zone")
    # 1. the request
    if request.channel not in CHANNELS:
        return skip(Reason("invalid_request", f"There is no channel called {request.channel!r}."))
    if request.lane not in LANES:
        return skip(Reason("invalid_request", f"A message is marketing or transactional, not {request.lane!r}."))
    marketing = request.lane == MARKETING
    zone = zone_of(contact.time_zone, settings.default_time_zone)
    deadline = request.requested_at + settings.defer_horizon
    if request.not_after is not None:
        deadline = min(deadline, request.not_after)

    def wait(until: datetime, reason: Reason) -> Decision:
        if until > deadline:
            return skip(Reason(reason.code, f"{reason.text} That is past this message's limit of "
                                             f"{_when(deadline, zone)}, so it is skipped."))
        return defer(until, reason)

    # 2. suppression
    effective = contact.consent.effective(request.channel, request.topic)
    channel_wide = contact.consent.effective(request.channel, ALL_TOPICS)
    for entry in sorted(contact.suppressions, key=lambda e: e.at):
        if entry.channel == request.channel and entry.blocks(request.lane) and not entry.lifted_by(effective):
            return skip(Reason(f"suppressed_{entry.reason}", entry.sentence()))

    # 3. consent
    topic_words = request.channel + ("" if request.topic in (None, ALL_TOPICS) else f" about {request.topic}")
    if marketing and not effective.granted:
        if effective.status == DENIED:
            return skip(Reason("consent_denied", f"The contact opted out of {topic_words}."))
        if effective.status == PENDING:
            return skip(Reason("consent_pending", f"The contact has not yet confirmed the subscription to {topic_words}."))
        return skip(Reason("no_consent", f"The contact never agreed to receive marketing by {topic_words}."))
    if not marketing and request.channel in TRANSACTIONAL_HONOURS_DENIAL and channel_wide.status == DENIED:
        return skip(Reason("consent_denied", f"The contact turned off {request.channel} entirely, "
                                             "transactional messages included."))

    # 4. circuit breaker
    breaker = history.breakers.get(request.channel)
    if marketing and breaker is not None and breaker.open and breaker.reason is not None:
        return wait(now + settings.breaker_recheck, breaker.reason)

    # 5-6. frequency caps, then quiet hours
    if marketing and request.channel in settings.paced_channels:
        past = [s.at for s in history.sends if s.lane == MARKETING]
        ready, cap = cap_ready_at(settings.caps, past, now)
        quiet_end = quiet_until(settings.quiet_hours, zone, ready) if settings.quiet_hours else None
        until = quiet_end or ready
        if cap is not None:
            after = f", then after quiet hours ({settings.quiet_hours.words()})" if quiet_end else ""
            return wait(until, Reason("frequency_cap",
                                      f"The contact already reached the limit of {cap.words()}; "
                                      f"this message waits until {_when(until, zone)}{after}."))
        if quiet_end is not None:
            return wait(until, Reason("quiet_hours",
                                      f"It is quiet hours ({settings.quiet_hours.words()}) in the contact's time zone; "
                                      f"this message waits until {_when(until, zone)}."))

    # 7. send rate
    budget = settings.rates.get(request.channel)
    if budget is not None:
        ready = rate_ready_at(budget, history.rates.get(request.channel, RateState()), request.lane, now)
        if ready > now:
            return wait(ready, Reason("send_rate", f"The {request.channel} sending rate "
                                                   f"({budget.per_second:g} per second) is in use; "
                                                   "this message goes out in a moment."))
    return send()
