"""Lead scoring: points earned from events, a grade from traits, lifecycle stages and tags.

The score is stored as `{"points", "at"}`: its value at one moment. It decays on read,
`points(now) = points * 0.5 ** ((now - at) / half_life)`, so nothing rewrites scores at
night; the next event folds the decay in and moves `at` forward. Because decay is
exponential, an event that arrives late adds its points already decayed to `at`, and the
result does not depend on the order events are processed in.

Scores are kept to 0.01 point and thresholds compare that value, so 10 + 40 points earned
a minute apart reach a threshold of 50 even though the first 10 have decayed a little.

Caps limit what one rule adds per period. Periods are calendar buckets in UTC, aligned on
Monday 1970-01-05 00:00: `1 day` is the UTC day, `1 week` the ISO week (Monday to Sunday),
`1 hour` the clock hour. An event older than the period on record counts against that
period, so a backlog replayed late can never exceed the cap.

Lifecycle stages only move forward, in the order the document lists them: a score that
decays below a threshold never demotes a contact. Only an event-driven stage marked
`allow_backward: true` may move a contact back (pair it with a negative scoring rule on
the same event, or the next event will promote the contact again if the score still
qualifies).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from chalicelib.domain.contact import Contact, counter_name
from chalicelib.domain.definition_errors import (
    expect_duration,
    DefinitionError,
    expect_list,
    expect_mapping,
    expect_name,
    is_number,
    load_document,
    show,
    unknown_fields,
)
from chalicelib.domain.personas import parse_profile_filters, profile_view
from chalicelib.domain.segments.filters import EventMatcher, FilterError, PropertyFilter, parse_filters

SCORE_CHANGED = "Score Changed"
STAGE_CHANGED = "Stage Changed"
TAG_ADDED = "Tag Added"
TAG_REMOVED = "Tag Removed"
GRADES = ("A", "B", "C", "D")
PRECISION = 2  # a score is shown and compared to 0.01 point
STORED_PRECISION = 6
PERIOD_ANCHOR = datetime(1970, 1, 5, tzinfo=timezone.utc)  # a Monday: weeks are ISO weeks
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")

DOCUMENT_FIELDS = ("half_life", "rules", "grading", "stages", "tags", "description")
RULE_FIELDS = ("id", "event", "where", "points", "cap", "description")
CAP_FIELDS = ("points", "per")
GRADE_FIELDS = ("id", "where", "grade", "description")
STAGE_FIELDS = ("stage", "min", "on_event", "where", "allow_backward", "description")
TAG_FIELDS = ("tag", "add_on", "remove_on", "description")
TRIGGER_FIELDS = ("event", "where")


@dataclass(frozen=True)
class Cap:
    points: float
    per: timedelta

    def period(self, moment: datetime) -> str:
        """The start of the calendar bucket holding `moment`, as an ISO timestamp."""
        size = self.per.total_seconds()
        index = math.floor((moment - PERIOD_ANCHOR).total_seconds() / size)
        return _iso(PERIOD_ANCHOR + timedelta(seconds=index * size))


@dataclass(frozen=True)
class ScoringRule:
    id: str
    matcher: EventMatcher
    points: float
    cap: Cap | None = None


@dataclass(frozen=True)
class GradeRule:
    id: str
    where: tuple[PropertyFilter, ...]
    grade: str


@dataclass(frozen=True)
class Stage:
    name: str
    min: float | None = None  # reached when the score is at least this
    on: EventMatcher | None = None  # reached when this event happens
    allow_backward: bool = False


@dataclass(frozen=True)
class TagRule:
    tag: str
    add_on: tuple[EventMatcher, ...]
    remove_on: tuple[EventMatcher, ...] = ()


@dataclass(frozen=True)
class ScoringConfig:
    half_life: timedelta | None
    rules: tuple[ScoringRule, ...] = ()
    grading: tuple[GradeRule, ...] = ()
    stages: tuple[Stage, ...] = ()
    tags: tuple[TagRule, ...] = ()

    def matchers(self) -> tuple[EventMatcher, ...]:
        """Counters scoring needs kept on the contact: none, its state lives in `contact.score`."""
        return ()

    def event_names(self) -> frozenset[str]:
        """Events that can change a score, a stage or a tag; others need only the grade checked."""
        names = {r.matcher.event for r in self.rules}
        names |= {s.on.event for s in self.stages if s.on}
        names |= {m.event for t in self.tags for m in t.add_on + t.remove_on}
        return frozenset(names)

    def rank(self, stage: str | None) -> int:
        """Position in the lifecycle; an unknown or missing stage comes before all."""
        for i, s in enumerate(self.stages):
            if s.name == stage:
                return i
        return -1


# -- parsing ---------------------------------------------------------------------------


def parse_scoring(doc: object) -> ScoringConfig:
    """Validate a scoring document (mapping or YAML text); every problem is reported at once."""
    problems: list[str] = []
    data = expect_mapping(load_document(doc), "", problems)
    if data is None:
        raise DefinitionError(problems)
    unknown_fields(data, DOCUMENT_FIELDS, "", problems)
    half_life = expect_duration(data["half_life"], "half_life", problems) if data.get("half_life") is not None else None
    rules = _each(data, "rules", problems, _rule)
    grading = _each(data, "grading", problems, _grade_rule)
    stages = _each(data, "stages", problems, _stage)
    tags = _each(data, "tags", problems, _tag_rule)
    _unique([r.id for r in rules], "rules", "id", problems)
    _unique([g.id for g in grading], "grading", "id", problems)
    _unique([s.name for s in stages], "stages", "stage", problems)
    _unique([t.tag for t in tags], "tags", "tag", problems)
    _check_thresholds(stages, problems)
    if problems:
        raise DefinitionError(problems)
    return ScoringConfig(half_life, tuple(rules), tuple(grading), tuple(stages), tuple(tags))


def _each(data: dict, key: str, problems: list[str], parse_one) -> list:
    if data.get(key) is None:
        return []
    items = expect_list(data[key], key, problems) or []
    parsed = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        entry = expect_mapping(item, where, problems)
        if entry is None:
            continue
        before = len(problems)
        result = parse_one(entry, where, problems)
        if result is not None and len(problems) == before:
            parsed.append(result)
    return parsed


def _rule(entry: dict, where: str, problems: list[str]) -> ScoringRule | None:
    unknown_fields(entry, RULE_FIELDS, where, problems)
    rule_id = _id(entry.get("id"), f"{where}.id", problems)
    matcher = _matcher(entry.get("event"), entry.get("where"), where, problems)
    if matcher is not None and matcher.event == SCORE_CHANGED:
        problems.append(f"{where}.event: a rule on {SCORE_CHANGED!r} would feed on its own points")
    points = entry.get("points")
    if points is None:
        problems.append(f"{where}.points: is required")
    elif not is_number(points):
        problems.append(f"{where}.points: {show(points)} is not a number")
    elif points == 0:
        problems.append(f"{where}.points: 0 points changes nothing")
    cap = _cap(entry["cap"], f"{where}.cap", problems) if entry.get("cap") is not None else None
    if rule_id is None or matcher is None or not is_number(points):
        return None
    return ScoringRule(rule_id, matcher, float(points), cap)


def _cap(value: object, where: str, problems: list[str]) -> Cap | None:
    entry = expect_mapping(value, where, problems)
    if entry is None:
        return None
    unknown_fields(entry, CAP_FIELDS, where, problems)
    points, per = entry.get("points"), entry.get("per")
    if points is None:
        problems.append(f"{where}.points: is required")
    elif not is_number(points) or points <= 0:
        problems.append(f"{where}.points: {show(points)} is not a positive number")
        points = None
    period = expect_duration(per, f"{where}.per", problems) if per is not None else None
    if per is None:
        problems.append(f"{where}.per: is required (e.g. 1 day, 1 week)")
    if points is None or period is None:
        return None
    return Cap(float(points), period)


def _grade_rule(entry: dict, where: str, problems: list[str]) -> GradeRule | None:
    unknown_fields(entry, GRADE_FIELDS, where, problems)
    rule_id = _id(entry.get("id"), f"{where}.id", problems)
    filters = parse_profile_filters(entry.get("where"), f"{where}.where", problems)
    grade = entry.get("grade")
    if grade is None:
        problems.append(f"{where}.grade: is required (one of {', '.join(GRADES)})")
    elif grade not in GRADES:
        problems.append(f"{where}.grade: {show(grade)} is not one of {', '.join(GRADES)}")
    if rule_id is None or grade not in GRADES:
        return None
    return GradeRule(rule_id, filters, grade)


def _stage(entry: dict, where: str, problems: list[str]) -> Stage | None:
    unknown_fields(entry, STAGE_FIELDS, where, problems)
    name = _id(entry.get("stage"), f"{where}.stage", problems)
    minimum = entry.get("min")
    if minimum is not None and not is_number(minimum):
        problems.append(f"{where}.min: {show(minimum)} is not a number")
    on = None
    if entry.get("on_event") is not None:
        on = _matcher(entry["on_event"], entry.get("where"), where, problems, event_key="on_event")
    elif entry.get("where") is not None:
        problems.append(f"{where}.where: only applies with on_event")
    if minimum is None and entry.get("on_event") is None:
        problems.append(f"{where}: needs min (a score) or on_event (an event name), or both")
    backward = entry.get("allow_backward", False)
    if not isinstance(backward, bool):
        problems.append(f"{where}.allow_backward: {show(backward)} is not true or false")
    elif backward and entry.get("on_event") is None:
        problems.append(f"{where}.allow_backward: only an on_event stage may move a contact back")
    if name is None:
        return None
    return Stage(name, float(minimum) if is_number(minimum) else None, on, backward is True)


def _tag_rule(entry: dict, where: str, problems: list[str]) -> TagRule | None:
    unknown_fields(entry, TAG_FIELDS, where, problems)
    tag = expect_name(entry.get("tag"), f"{where}.tag", problems)
    if entry.get("add_on") is None:
        problems.append(f"{where}.add_on: is required ({{event: <name>, where: [...]}})")
    add_on = _triggers(entry.get("add_on"), f"{where}.add_on", problems)
    remove_on = _triggers(entry.get("remove_on"), f"{where}.remove_on", problems)
    if tag is None:
        return None
    return TagRule(tag, add_on, remove_on)


def _triggers(value: object, where: str, problems: list[str]) -> tuple[EventMatcher, ...]:
    """`Order Completed`, `{event, where}`, or a list of either."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    found = []
    for i, item in enumerate(items):
        place = f"{where}[{i}]" if isinstance(value, list) else where
        if isinstance(item, str):
            item = {"event": item}
        entry = expect_mapping(item, place, problems)
        if entry is None:
            continue
        unknown_fields(entry, TRIGGER_FIELDS, place, problems)
        matcher = _matcher(entry.get("event"), entry.get("where"), place, problems)
        if matcher is not None:
            found.append(matcher)
    return tuple(found)


def _matcher(event: object, where_clause: object, where: str, problems: list[str],
             event_key: str = "event") -> EventMatcher | None:
    name = expect_name(event, f"{where}.{event_key}", problems)
    try:
        filters = parse_filters(where_clause, f"{where}.where")
    except FilterError as exc:
        problems.append(str(exc))
        return None
    return EventMatcher(name, filters) if name is not None else None


def _id(value: object, where: str, problems: list[str]) -> str | None:
    name = expect_name(value, where, problems)
    if name is not None and not ID.match(name):
        problems.append(f"{where}: {show(name)} must be letters, digits, - or _")
        return None
    return name


def _unique(names: list[str], key: str, field: str, problems: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(f"{key}: {field} {name!r} is defined twice")
        seen.add(name)


def _check_thresholds(stages: list[Stage], problems: list[str]) -> None:
    """Stages only move forward, so their thresholds must rise in document order."""
    previous: Stage | None = None
    for stage in stages:
        if stage.min is None:
            continue
        if previous is not None and stage.min <= previous.min:
            problems.append(f"stages: {stage.name!r} (min {stage.min:g}) comes after {previous.name!r} "
                            f"(min {previous.min:g}); thresholds must rise in lifecycle order")
        previous = stage


# -- reading a score -------------------------------------------------------------------


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _decay(config: ScoringConfig, points: float, start: datetime, end: datetime) -> float:
    if config.half_life is None or end <= start or points == 0:
        return points
    return points * 0.5 ** ((end - start) / config.half_life)


def _raw_score(config: ScoringConfig, score: dict, now: datetime) -> float:
    points = score.get("points") or 0
    if not points or not score.get("at"):
        return float(points)
    return _decay(config, float(points), _parse_time(score["at"]), now)


def score_now(config: ScoringConfig, contact: Contact, now: datetime) -> float:
    """The decayed score at `now`, to 0.01 point."""
    return round(_raw_score(config, contact.score or {}, now), PRECISION)


def score_crossing(config: ScoringConfig, contact: Contact, threshold: float, now: datetime) -> datetime | None:
    """The first millisecond at which the decaying score is below `threshold`.

    None when the score is already below, or never will be (no decay, a score that is not
    positive, a threshold of zero or less).
    """
    score = contact.score or {}
    if score_now(config, contact, now) < threshold:
        return None
    points = float(score.get("points") or 0)
    if config.half_life is None or points <= 0 or threshold <= 0 or not score.get("at"):
        return None
    at = _parse_time(score["at"])
    # A moment surely below once rounded, then the first such millisecond by bisection.
    target = threshold - 0.006 if threshold > 0.006 else 0.001
    late = at + config.half_life * math.log2(points / target)
    lo, hi = 0, max(1, math.ceil((late - now) / timedelta(milliseconds=1)))  # lo is not below, hi is
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if round(_raw_score(config, score, now + timedelta(milliseconds=mid)), PRECISION) < threshold:
            hi = mid
        else:
            lo = mid
    return now + timedelta(milliseconds=hi)


def grade(config: ScoringConfig, contact: Contact) -> str | None:
    """The grade of the first grading rule the profile fits, or None."""
    profile = profile_view(contact)
    for rule in config.grading:
        if all(condition.matches(profile) for condition in rule.where):
            return rule.grade
    return None


# -- applying an event -----------------------------------------------------------------


def apply_event(config: ScoringConfig, contact: Contact, event: dict, now: datetime) -> list[dict]:
    """Score, grade, stage and tags after one event; returns the internal events to emit.

    Call it once per event (after `contact.apply_event` accepted it, which filters
    redelivered messages): points are not idempotent.
    """
    name = counter_name(event)
    moment = min(_parse_time(event["timestamp"]), now) if event.get("timestamp") else now
    emitted: list[dict] = []
    score = contact.score if contact.score is not None else {}
    for rule in config.rules:
        if name is None or not rule.matcher.matches(name, event):
            continue
        delta = _within_cap(rule, score, moment) if rule.cap else rule.points
        if delta == 0:
            continue
        _add_points(config, score, delta, moment)
        emitted.append({"event": SCORE_CHANGED, "properties": {
            "points": round(_raw_score(config, score, now), PRECISION), "delta": delta, "rule": rule.id}})
    caps = score.get("caps")
    if caps:
        known = {r.id for r in config.rules}
        for rule_id in [r for r in caps if r not in known]:
            del caps[rule_id]
    if config.grading:
        graded = grade(config, contact)
        if graded is None:
            score.pop("grade", None)
        else:
            score["grade"] = graded
    contact.score = score
    emitted.extend(_move_stage(config, contact, name, event, now))
    emitted.extend(_update_tags(config, contact, name, event))
    return emitted


def add_points(config: ScoringConfig, contact: Contact, delta: float, now: datetime, reason: str) -> list[dict]:
    """Points given by hand (a journey's update node): added to the decayed score, then the
    stages move as they would after an event. Returns the internal events to emit."""
    score = contact.score if contact.score is not None else {}
    _add_points(config, score, delta, now)
    contact.score = score
    emitted = [{"event": SCORE_CHANGED, "properties": {
        "points": round(_raw_score(config, score, now), PRECISION), "delta": delta, "rule": reason}}]
    emitted.extend(_move_stage(config, contact, None, {}, now))
    return emitted


def _within_cap(rule: ScoringRule, score: dict, moment: datetime) -> float:
    """What the rule may still add in this period: all of it, part of it, or nothing."""
    caps = score.setdefault("caps", {})
    period = rule.cap.period(moment)
    used = caps.get(rule.id)
    if used is None or used["period"] < period:
        used = {"period": period, "points": 0}
    room = max(rule.cap.points - used["points"], 0.0)
    granted = math.copysign(min(abs(rule.points), room), rule.points) if room else 0.0
    used["points"] = round(used["points"] + abs(granted), STORED_PRECISION)
    caps[rule.id] = used
    return granted


def _add_points(config: ScoringConfig, score: dict, delta: float, moment: datetime) -> None:
    points = float(score.get("points") or 0)
    at = _parse_time(score["at"]) if score.get("at") else moment
    if moment >= at:
        points = _decay(config, points, at, moment) + delta
        at = moment
    else:
        points += _decay(config, delta, moment, at)  # a late event, decayed to the time on record
    score["points"] = round(points, STORED_PRECISION)
    score["at"] = _iso(at)


def _move_stage(config: ScoringConfig, contact: Contact, name: str | None, event: dict,
                now: datetime) -> list[dict]:
    if not config.stages:
        return []
    happened = [s for s in config.stages if s.on is not None and name is not None and s.on.matches(name, event)]
    back = [s for s in happened if s.allow_backward]
    if back:
        target = back[-1].name
    else:
        points = score_now(config, contact, now)
        candidates = [s for s in config.stages if s.min is not None and points >= s.min] + happened
        target = contact.stage
        for stage in candidates:
            if config.rank(stage.name) > config.rank(target):
                target = stage.name
    if target == contact.stage:
        return []
    before, contact.stage = contact.stage, target
    return [{"event": STAGE_CHANGED, "properties": {"from": before, "to": target}}]


def _update_tags(config: ScoringConfig, contact: Contact, name: str | None, event: dict) -> list[dict]:
    if name is None or not config.tags:
        return []
    tags = set(contact.tags or [])
    emitted = []
    for rule in config.tags:
        add = any(m.matches(name, event) for m in rule.add_on)
        remove = any(m.matches(name, event) for m in rule.remove_on)
        if add and rule.tag not in tags:  # an event matching both adds: the last word is "add"
            tags.add(rule.tag)
            emitted.append({"event": TAG_ADDED, "properties": {"tag": rule.tag}})
        elif remove and not add and rule.tag in tags:
            tags.discard(rule.tag)
            emitted.append({"event": TAG_REMOVED, "properties": {"tag": rule.tag}})
    if emitted:
        contact.tags = sorted(tags)
    return emitted
