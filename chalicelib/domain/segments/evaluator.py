"""Whether a contact belongs to a segment now, and the next moment that could change on its own.

Evaluation reads only the contact document (traits, counters, stage, consent...) plus a few
injected facts the evaluator does not own: memberships of other segments, the decayed score
and campaign groups. Besides the answer it returns `next_change`: the earliest future moment
at which the answer could change with no new event (a window sliding past an occurrence, a
relative date passing, a local midnight for anniversaries, a score decaying across a
threshold). It may be early, never late: a scheduler re-evaluates the contact then.

Event windows are exact over the latest occurrences each counter keeps (`recent`, plus
`last`): as many as the catalog's windowed counts on that event need (a condition "at least
N within W" needs the N latest; `SegmentIndex.retention`), so every condition of the catalog
is decided exactly. When a window's answer depends on older occurrences than those (a count
raised by a new definition before its back-fill recounted them), the count falls back to
the daily buckets (UTC days), which count the whole first day of the window. Daily buckets are kept for a limited history
(90 days by default); a longer window counts what is kept, unless every occurrence the
contact ever had falls inside it.

Time conventions: a window of `30 days` is 30 × 24 hours; an occurrence counts while it is
strictly younger than the window. A trait date without a time (`1990-05-17`) is midnight in
the contact's time zone (`traits.timezone`, else `last_context.timezone`, else UTC).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.domain.contact import Contact
from chalicelib.domain.segments.filters import PropertyFilter, lookup_path
from chalicelib.domain.segments.language import (
    REACHABLE_CHANNELS,
    AllOf,
    AnyOf,
    CampaignGroupCondition,
    Condition,
    ConsentCondition,
    EventCondition,
    Not,
    PersonaCondition,
    ReachableCondition,
    RfmCondition,
    ScoreCondition,
    SegmentCondition,
    SegmentDefinition,
    StageCondition,
    TagCondition,
    TimeBound,
    TimeRange,
    TraitCondition,
)

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH_DAY = re.compile(r"^(?:\d{4}-|--)?(\d{2})-(\d{2})(?:[T ].*)?$")
_FILTER_OPS = {"equals": "==", "not_equals": "!=", "in": "in", "contains": "contains",
               "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass(frozen=True)
class EvaluationContext:
    """Facts owned by other capabilities, injected so the evaluator stays pure."""

    is_member: Callable[[str], bool]  # current membership of the contact in another segment
    score_now: Callable[[Contact, datetime], float]  # the decayed score at `now`
    # When the decaying score will cross `threshold` (None: never, with no new event).
    score_crossing: Callable[[Contact, float, datetime], datetime | None]
    campaign_group: Callable[[Contact, str], str | None]  # "1".."6", "converted" or None


@dataclass(frozen=True)
class Evaluation:
    member: bool
    next_change: datetime | None = None  # earliest future moment time alone could change `member`


def evaluate(definition: SegmentDefinition, contact: Contact, now: datetime,
             ctx: EvaluationContext) -> Evaluation:
    return evaluate_condition(definition.condition, contact, now, ctx)


def evaluate_condition(condition: Condition, contact: Contact, now: datetime,
                       ctx: EvaluationContext) -> Evaluation:
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone (e.g. datetime.now(timezone.utc))")
    return _Run(contact, now, ctx).evaluate(condition)


def contact_timezone(contact: Contact) -> tzinfo:
    """The contact's IANA time zone: traits.timezone, else the last context's, else UTC."""
    for candidate in ((contact.traits or {}).get("timezone"), (contact.last_context or {}).get("timezone")):
        if isinstance(candidate, str) and candidate.strip():
            try:
                return ZoneInfo(candidate.strip())
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return timezone.utc


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The first instant of `day` in `tz` (as UTC). Where midnight is skipped by a DST change
    the day starts at the end of the gap, which is what a wall-clock midnight without fold gives."""
    try:
        return datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc)
    except OverflowError:  # the calendar's first or last day in a zone that takes it past UTC's range
        return (datetime.min if day.year == 1 else datetime.max).replace(tzinfo=timezone.utc)


def _earliest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return min(present) if present else None


def _all(parts: list[Evaluation]) -> Evaluation:
    """True while every part is; the result can flip when any part does (if true), or once
    every false part has flipped (if false: no earlier than the latest of their changes)."""
    if all(p.member for p in parts):
        return Evaluation(True, _earliest(*(p.next_change for p in parts)))
    falses = [p.next_change for p in parts if not p.member]
    if any(m is None for m in falses):
        return Evaluation(False, None)
    return Evaluation(False, max(falses))


def _any(parts: list[Evaluation]) -> Evaluation:
    negated = _all([Evaluation(not p.member, p.next_change) for p in parts])
    return Evaluation(not negated.member, negated.next_change)


def _trait_value(traits: dict, name: str) -> tuple[bool, object]:
    if name in traits:
        return True, traits[name]
    return lookup_path(traits, name)


def _parse_instant(value: object, tz: tzinfo) -> datetime | None:
    """A trait or counter time as an aware instant: ISO text, a date (local midnight) or epoch."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) > 1e11 else value  # epoch milliseconds
        try:
            return datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            return local_midnight(date.fromisoformat(text), tz)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _month_day(value: object) -> tuple[int, int] | None:
    """Month and day of a date as written (a birthday stored at midnight UTC stays that day)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        instant = _parse_instant(value, timezone.utc)
        return (instant.month, instant.day) if instant else None
    if not isinstance(value, str):
        return None
    match = _MONTH_DAY.match(value.strip())
    if not match:
        return None
    month, day = int(match.group(1)), int(match.group(2))
    try:
        date(2000, month, day)  # a leap year, so 29 February is a valid birthday
    except ValueError:
        return None
    return month, day


def _anniversary_in(month_day: tuple[int, int], year: int) -> date:
    month, day = month_day
    try:
        return date(year, month, day)
    except ValueError:  # 29 February in a common year is celebrated on the 28th
        return date(year, month, day - 1)


def _epoch(iso: object) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


def _at(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, timezone.utc)


def _constant_over(low: int, high: int, lo: int, hi: int | None) -> bool:
    """Whether `lo <= c <= hi` has the same answer for every count c in [low, high]."""
    top = float("inf") if hi is None else hi
    inside = lo <= low and high <= top
    outside = high < lo or low > top
    return inside or outside


class _Run:
    """One evaluation of one contact at one moment."""

    def __init__(self, contact: Contact, now: datetime, ctx: EvaluationContext):
        self.contact = contact
        self.now = now.astimezone(timezone.utc)
        self.ctx = ctx
        self._tz: tzinfo | None = None

    @property
    def tz(self) -> tzinfo:
        if self._tz is None:
            self._tz = contact_timezone(self.contact)
        return self._tz

    def evaluate(self, condition: Condition) -> Evaluation:
        handler = _HANDLERS.get(type(condition))
        if handler is None:
            raise TypeError(f"no evaluation for {type(condition).__name__}")
        result = handler(self, condition)
        if result.next_change is not None and result.next_change <= self.now:
            return Evaluation(result.member, None)
        return result

    # combinators

    def all_of(self, c: AllOf) -> Evaluation:
        return _all([self.evaluate(child) for child in c.conditions])

    def any_of(self, c: AnyOf) -> Evaluation:
        return _any([self.evaluate(child) for child in c.conditions])

    def negation(self, c: Not) -> Evaluation:
        inner = self.evaluate(c.condition)
        return Evaluation(not inner.member, inner.next_change)

    # traits

    def trait(self, c: TraitCondition) -> Evaluation:
        found, value = _trait_value(self.contact.traits or {}, c.trait)
        op = c.op
        if op == "exists":
            present = found and value is not None and value != ""
            return Evaluation(present == c.value)
        if op == "not_in":
            return Evaluation(not PropertyFilter("value", "in", list(c.value)).matches({"value": value}) if found
                              else True)
        if op in _FILTER_OPS:
            expected = list(c.value) if op == "in" else c.value
            probe = {"value": value} if found else {}
            return Evaluation(PropertyFilter("value", _FILTER_OPS[op], expected).matches(probe))
        if op == "anniversary":
            return self.anniversary(value if found else None)
        instant = _parse_instant(value, self.tz) if found else None
        if instant is None:
            return Evaluation(False)
        if op == "within_last":
            return self.compare(instant, "after", TimeBound(text="", offset=-c.value))
        if op == "more_than_ago":
            return self.compare(instant, "before", TimeBound(text="", offset=-c.value))
        return self.compare(instant, op, c.value)

    def compare(self, instant: datetime, op: str, bound: TimeBound) -> Evaluation:
        """`instant` before/after `bound`. Relative bounds move with time: before `30 days ago`
        holds from instant + 30 days on; after `30 days ago` holds until then."""
        if bound.offset is not None:
            moving = self.now + bound.offset
            member = instant <= moving if op == "before" else instant > moving
            try:
                change = instant - bound.offset
            except OverflowError:  # a trait dated at the end of the calendar: no change in time
                change = None
            return Evaluation(member, change if change is not None and change > self.now else None)
        if bound.day is not None:
            if op == "before":
                return Evaluation(instant < local_midnight(bound.day, self.tz))
            if bound.day == date.max:
                return Evaluation(False)  # nothing is after the calendar's last day
            return Evaluation(instant >= local_midnight(bound.day + timedelta(days=1), self.tz))
        return Evaluation(instant < bound.instant if op == "before" else instant > bound.instant)

    def anniversary(self, value: object) -> Evaluation:
        month_day = _month_day(value)
        if month_day is None:
            return Evaluation(False)
        today = self.now.astimezone(self.tz).date()
        if _anniversary_in(month_day, today.year) == today:
            return Evaluation(True, local_midnight(today + timedelta(days=1), self.tz))
        upcoming = _anniversary_in(month_day, today.year)
        if upcoming < today:
            upcoming = _anniversary_in(month_day, today.year + 1)
        return Evaluation(False, local_midnight(upcoming, self.tz))

    # events

    def event(self, c: EventCondition) -> Evaluation:
        if c.matcher.filters:
            entry = (self.contact.filtered or {}).get(c.matcher.key)
        else:
            entry = (self.contact.counters or {}).get(c.matcher.event)
        parts = [self.count(entry, c)]
        for stamp, bounds in (("first", c.first), ("last", c.last)):
            if bounds is not None:
                parts.append(self.occurrence_time(entry, stamp, bounds))
        return _all(parts)

    def occurrence_time(self, entry: dict | None, stamp: str, bounds: TimeRange) -> Evaluation:
        # An entry with no occurrence (a counter started empty) has no first or last one.
        instant = _parse_instant(entry.get(stamp), timezone.utc) if entry and entry.get("total") else None
        if instant is None:
            return Evaluation(False)
        parts = [self.compare(instant, op, b) for op, b in (("after", bounds.after), ("before", bounds.before))
                 if b is not None]
        return _all(parts)

    def count(self, entry: dict | None, c: EventCondition) -> Evaluation:
        lo, hi = c.at_least, c.at_most

        def ok(n: int) -> bool:
            return n >= lo and (hi is None or n <= hi)

        total = int(entry.get("total", 0)) if entry else 0
        if c.within is None or total == 0:
            return Evaluation(ok(total))
        span = c.within.total_seconds()
        cutoff = self.now.timestamp() - span
        recent = sorted(entry.get("recent") or [])
        latest = _epoch(entry.get("last"))
        if latest is not None and (not recent or recent[-1] < int(latest)):
            # The latest occurrence is always known exactly, with or without exact times kept.
            recent.append(int(latest))
        known = [t for t in recent if t > cutoff]  # exact times inside the window, oldest first
        first = _epoch(entry.get("first"))

        def expiries(member: bool, count: int) -> Evaluation:
            """The known occurrences leave the window oldest first (those at one instant together)."""
            for k, t in enumerate(known, 1):
                if k < len(known) and known[k] == t:
                    continue
                if ok(count - k) != member:
                    return Evaluation(member, _at(t + span))
            return Evaluation(member, None)

        if len(recent) >= total or (recent and recent[0] <= cutoff):
            # Every occurrence inside the window is among the exact times.
            return expiries(ok(len(known)), len(known))
        older = total - len(recent)  # occurrences older than the exact times
        if first is not None and first > cutoff:
            # Every occurrence the contact ever had is inside the window.
            member = ok(total)
            if not _constant_over(total - older, total, lo, hi):
                return Evaluation(member, _at(first + span))
            return expiries(member, len(known))
        if _constant_over(len(known), total, lo, hi):
            # Decided whatever the older occurrences: the exact times alone settle it.
            return expiries(ok(len(known)), len(known))
        return self.count_by_day(entry, c, ok, known, cutoff, span)

    def count_by_day(self, entry: dict, c: EventCondition, ok: Callable[[int], bool], known: list,
                     cutoff: float, span: float) -> Evaluation:
        cutoff_day = _at(cutoff).date()
        first_day = cutoff_day.isoformat()
        by_day = sum(n for d, n in (entry.get("days") or {}).items() if d >= first_day)
        estimate = min(max(by_day, len(known)), int(entry.get("total", 0)))
        # The window's first day leaves it at the next UTC midnight after the cut-off.
        next_day = datetime.combine(cutoff_day + timedelta(days=1), time(0), tzinfo=timezone.utc)
        moments = [next_day + timedelta(seconds=span)] + ([_at(known[0] + span)] if known else [])
        return Evaluation(ok(estimate), min(moments))

    # facts owned by other capabilities

    def segment(self, c: SegmentCondition) -> Evaluation:
        return Evaluation(bool(self.ctx.is_member(c.segment_id)))

    def score(self, c: ScoreCondition) -> Evaluation:
        value = float(self.ctx.score_now(self.contact, self.now))
        checks = {"gt": value.__gt__, "gte": value.__ge__, "lt": value.__lt__, "lte": value.__le__}
        member = all(checks[op](threshold) for op, threshold in c.bounds)
        crossings = []
        for _, threshold in c.bounds:
            moment = self.ctx.score_crossing(self.contact, threshold, self.now)
            if moment is not None:
                crossings.append(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
        return Evaluation(member, _earliest(*(m for m in crossings if m > self.now)))

    def campaign_group(self, c: CampaignGroupCondition) -> Evaluation:
        group = self.ctx.campaign_group(self.contact, c.campaign)
        return Evaluation(group is not None and str(group).strip().lower() in c.groups)

    # facts on the contact

    def stage(self, c: StageCondition) -> Evaluation:
        return Evaluation(isinstance(self.contact.stage, str) and self.contact.stage.lower() in c.stages)

    def tag(self, c: TagCondition) -> Evaluation:
        return Evaluation(any(isinstance(t, str) and t.lower() == c.tag for t in self.contact.tags or []))

    def consent_status(self, channel: str) -> str | None:
        status = ((self.contact.consent or {}).get(channel) or {}).get("status")
        return status.lower() if isinstance(status, str) else None

    def consent(self, c: ConsentCondition) -> Evaluation:
        return Evaluation(self.consent_status(c.channel) == "granted")

    def reachable(self, c: ReachableCondition) -> Evaluation:
        prefix = REACHABLE_CHANNELS[c.channel]
        has_address = any(isinstance(i, str) and i.startswith(prefix) for i in self.contact.identifiers or [])
        return Evaluation(has_address and self.consent_status(c.channel) != "denied")

    def rfm(self, c: RfmCondition) -> Evaluation:
        rfm_class = (self.contact.rfm or {}).get("class")
        return Evaluation(isinstance(rfm_class, str) and rfm_class.lower() in c.classes)

    def persona(self, c: PersonaCondition) -> Evaluation:
        return Evaluation(isinstance(self.contact.persona, str) and self.contact.persona.lower() in c.personas)


_HANDLERS: dict[type, Callable[[_Run, Condition], Evaluation]] = {
    AllOf: _Run.all_of,
    AnyOf: _Run.any_of,
    Not: _Run.negation,
    TraitCondition: _Run.trait,
    EventCondition: _Run.event,
    SegmentCondition: _Run.segment,
    ScoreCondition: _Run.score,
    CampaignGroupCondition: _Run.campaign_group,
    StageCondition: _Run.stage,
    TagCondition: _Run.tag,
    ConsentCondition: _Run.consent,
    ReachableCondition: _Run.reachable,
    RfmCondition: _Run.rfm,
    PersonaCondition: _Run.persona,
}
