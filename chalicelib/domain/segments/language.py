"""The segment definition language: documents (YAML or JSON) parsed into condition trees.

A definition names a segment and says who belongs to it:

    id: coffee-lovers
    name: Coffee lovers
    conditions:
      - event: Product Viewed
        where: ['properties.category == "coffee"']
        at_least: 3
        within: 30 days

Parsing checks the whole document and reports every problem at once, each as
`path: problem` (`conditions.all[2].within: "30 dayz" is not a duration ...`), so a marketer
fixes a definition in one round. A parsed definition also says what it reads (which events,
traits and other facts can change its result) so that only the segments an update can
affect are evaluated, and which filtered event counters it needs kept on each contact.
"""
from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from typing import Iterable, Iterator

from chalicelib.domain.definition_errors import DefinitionError, Reference
from chalicelib.domain.durations import looks_relative, parse_duration, parse_relative_time
from chalicelib.domain.segments.filters import EventMatcher, FilterError, PropertyFilter, parse_filter

SEGMENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_EVENT_NAME = 200

# The messaging capability records what happens to a message as these internal events,
# with properties campaign_id, journey_id, template_id and link_id.
MESSAGE_EVENTS = {
    "received": "Message Sent",
    "opened": "Email Opened",
    "clicked": "Email Link Clicked",
    "bounced": "Email Bounced",
    "unsubscribed": "Email Unsubscribed",
    "complained": "Email Complained",
}
MESSAGE_PROPERTIES = {"campaign": "campaign_id", "journey": "journey_id", "template": "template_id",
                      "link": "link_id"}
CAMPAIGN_GROUPS = ("1", "2", "3", "4", "5", "6", "converted")
REACHABLE_CHANNELS = {"email": "email:", "sms": "phone:"}

TRAIT_OPS = ("equals", "not_equals", "in", "not_in", "contains", "exists", "gt", "gte", "lt", "lte",
             "before", "after", "within_last", "more_than_ago", "anniversary")
DATE_OPS = ("before", "after", "within_last", "more_than_ago", "anniversary")
COUNT_FIELDS = ("at_least", "at_most", "exactly", "performed")
EVENT_FIELDS = ("event", "where", *COUNT_FIELDS, "within", "first", "last")
SCORE_OPS = ("gt", "gte", "lt", "lte")
FIELDS: dict[str, tuple[str, ...]] = {
    "all": ("all",),
    "any": ("any",),
    "not": ("not",),
    "trait": ("trait", *TRAIT_OPS),
    "event": EVENT_FIELDS,
    "message": ("message", *MESSAGE_PROPERTIES, "where", *COUNT_FIELDS, "within", "first", "last"),
    "segment": ("segment",),
    "score": ("score",),
    "stage": ("stage",),
    "tag": ("tag",),
    "consent": ("consent",),
    "reachable": ("reachable",),
    "rfm": ("rfm",),
    "persona": ("persona",),
    "campaign_group": ("campaign_group",),
}
KINDS = tuple(FIELDS)
MAX_DEPTH = 24  # all/any/not nested deeper than this is refused, not a stack overflow
DOCUMENT_FIELDS = ("id", "name", "description", "conditions", "kind")


# --- time references -----------------------------------------------------------------------

@dataclass(frozen=True)
class TimeBound:
    """A moment to compare with: relative to now, an absolute instant, or a calendar day.

    A calendar day is read in the contact's time zone: `before: 2026-01-01` means before the
    contact's new year, `after: 2026-01-01` from the start of 2 January.
    """

    text: str
    offset: timedelta | None = None
    instant: datetime | None = None
    day: date | None = None

    @property
    def relative(self) -> bool:
        return self.offset is not None


def parse_time_bound(value: object) -> TimeBound:
    """An ISO date, an ISO date and time, or `now` / `30 days ago` / `in 2 weeks`."""
    if isinstance(value, datetime):
        instant = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return TimeBound(text=instant.isoformat(), instant=instant)
    if isinstance(value, date):
        return TimeBound(text=value.isoformat(), day=value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if looks_relative(text):
            return TimeBound(text=text, offset=parse_relative_time(text))
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            try:
                return TimeBound(text=text, day=date.fromisoformat(text))
            except ValueError:
                pass
        else:
            try:
                instant = datetime.fromisoformat(text)
                instant = instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)
                return TimeBound(text=text, instant=instant)
            except ValueError:
                pass
    raise ValueError(f"{_show(value)} is not a date (2026-01-31), a date and time (2026-01-31T09:00:00Z) "
                     f'or a relative time ("30 days ago", "in 2 weeks", "now")')


@dataclass(frozen=True)
class TimeRange:
    """`first: {after: ..., before: ...}`: bounds on the first or last occurrence of an event."""

    after: TimeBound | None = None
    before: TimeBound | None = None

    @property
    def relative(self) -> bool:
        return any(b is not None and b.relative for b in (self.after, self.before))


# --- conditions ----------------------------------------------------------------------------

class Condition:
    """A node of a condition tree. Subclasses are frozen dataclasses."""

    def children(self) -> tuple["Condition", ...]:
        return ()

    def own_reads(self) -> Iterable[tuple]:
        return ()

    def own_matchers(self) -> Iterable[EventMatcher]:
        return ()

    @property
    def own_time_dependent(self) -> bool:
        return False

    def walk(self) -> Iterator["Condition"]:
        yield self
        for child in self.children():
            yield from child.walk()


@dataclass(frozen=True)
class AllOf(Condition):
    conditions: tuple[Condition, ...]

    def children(self):
        return self.conditions


@dataclass(frozen=True)
class AnyOf(Condition):
    conditions: tuple[Condition, ...]

    def children(self):
        return self.conditions


@dataclass(frozen=True)
class Not(Condition):
    condition: Condition

    def children(self):
        return (self.condition,)


@dataclass(frozen=True)
class TraitCondition(Condition):
    """`trait: <name>` and one comparison. `value` is a TimeBound for before/after, a timedelta
    for within_last/more_than_ago, a tuple for in/not_in and "today" for anniversary."""

    trait: str
    op: str
    value: object = None

    def own_reads(self):
        yield ("trait", self.trait)
        top = self.trait.split(".", 1)[0]
        if top != self.trait:
            yield ("trait", top)  # traits are written whole: address.city changes with address
        if self.op in DATE_OPS:
            yield ("trait", "timezone")  # dates without a time are read in the contact's zone

    @property
    def own_time_dependent(self) -> bool:
        if self.op in ("within_last", "more_than_ago", "anniversary"):
            return True
        return self.op in ("before", "after") and self.value.relative


@dataclass(frozen=True)
class EventCondition(Condition):
    """How often (and when first/last) the contact performed an event matching `matcher`.

    The count must lie in [at_least, at_most] (at_most None: no upper bound), counted over the
    last `within` (None: all time).
    """

    matcher: EventMatcher
    at_least: int = 1
    at_most: int | None = None
    within: timedelta | None = None
    first: TimeRange | None = None
    last: TimeRange | None = None

    def own_reads(self):
        yield ("event", self.matcher.event)
        if any(b is not None and b.day is not None
               for r in (self.first, self.last) if r is not None for b in (r.after, r.before)):
            yield ("trait", "timezone")  # a calendar day bound is read in the contact's zone

    def own_matchers(self):
        if self.matcher.filters:
            yield self.matcher

    @property
    def own_time_dependent(self) -> bool:
        return self.within is not None or any(r is not None and r.relative for r in (self.first, self.last))

    @property
    def exact_times_needed(self) -> int:
        """How many of the latest exact occurrence times this condition needs kept to be
        decided exactly: a count "at least N within W" is settled by the N latest times, "at
        most M within W" by the M+1 latest. The latest occurrence itself (`last`) is always
        kept, so a need of 1 costs nothing; an all-time count reads the total."""
        if self.within is None:
            return 0
        need = max(self.at_least, self.at_most + 1 if self.at_most is not None else 0)
        return need if need > 1 else 0


@dataclass(frozen=True)
class SegmentCondition(Condition):
    segment_id: str
    at: str = field(default="", compare=False)  # where in the document, for catalog errors

    def own_reads(self):
        yield ("segment", self.segment_id)


@dataclass(frozen=True)
class ScoreCondition(Condition):
    bounds: tuple[tuple[str, float], ...]  # ("gte", 50.0), ...

    def own_reads(self):
        yield ("score",)

    @property
    def own_time_dependent(self) -> bool:
        return True  # the score decays


@dataclass(frozen=True)
class StageCondition(Condition):
    stages: tuple[str, ...]

    def own_reads(self):
        yield ("stage",)


@dataclass(frozen=True)
class TagCondition(Condition):
    tag: str

    def own_reads(self):
        yield ("tag",)


@dataclass(frozen=True)
class ConsentCondition(Condition):
    channel: str

    def own_reads(self):
        yield ("consent", self.channel)


@dataclass(frozen=True)
class ReachableCondition(Condition):
    channel: str  # email | sms

    def own_reads(self):
        yield ("consent", self.channel)
        yield ("trait", "email" if self.channel == "email" else "phone")
        yield ("identifiers",)


@dataclass(frozen=True)
class RfmCondition(Condition):
    classes: tuple[str, ...]

    def own_reads(self):
        yield ("rfm",)


@dataclass(frozen=True)
class PersonaCondition(Condition):
    personas: tuple[str, ...]

    def own_reads(self):
        yield ("persona",)


@dataclass(frozen=True)
class CampaignGroupCondition(Condition):
    campaign: str
    groups: tuple[str, ...]

    def own_reads(self):
        yield ("campaign", self.campaign)


# --- the definition --------------------------------------------------------------------------

@dataclass(frozen=True)
class SegmentDefinition:
    id: str
    name: str
    description: str
    condition: Condition
    source_doc: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @cached_property
    def _reads(self) -> frozenset[tuple]:
        return frozenset(r for node in self.condition.walk() for r in node.own_reads())

    def reads(self) -> frozenset[tuple]:
        """What can change the result: ("event", name), ("trait", name), ("segment", id), ("score",),
        ("stage",), ("tag",), ("consent", channel), ("rfm",), ("persona",), ("campaign", id),
        ("identifiers",)."""
        return self._reads

    def matchers(self) -> tuple[EventMatcher, ...]:
        """The filtered event matchers whose counters (contact.filtered[matcher.key]) this
        definition reads. Conditions without filters read contact.counters[event]."""
        seen: dict[str, EventMatcher] = {}
        for node in self.condition.walk():
            for m in node.own_matchers():
                seen.setdefault(m.key, m)
        return tuple(seen.values())

    def exact_times(self) -> dict[tuple[str, str], int]:
        """Per counter this definition reads with a window (("counter", event name) or
        ("filtered", matcher key)), the exact occurrence times it needs kept (see
        EventCondition.exact_times_needed)."""
        needs: dict[tuple[str, str], int] = {}
        for node in self.condition.walk():
            if isinstance(node, EventCondition) and node.within is not None:
                key = ("filtered", node.matcher.key) if node.matcher.filters else ("counter", node.matcher.event)
                needs[key] = max(needs.get(key, 0), node.exact_times_needed)
        return needs

    def segment_references(self) -> tuple[SegmentCondition, ...]:
        return tuple(n for n in self.condition.walk() if isinstance(n, SegmentCondition))

    @cached_property
    def time_dependent(self) -> bool:
        """Whether time alone (a window sliding, a date passing, a score decaying) can change it."""
        return any(node.own_time_dependent for node in self.condition.walk())


def parse_segment(doc: object) -> SegmentDefinition:
    """Validate a definition document and build it; raises DefinitionError listing every problem."""
    return read_segment(doc)[0]


def read_segment(doc: object) -> tuple[SegmentDefinition, tuple[Reference, ...]]:
    """The definition and what it names that other definitions provide (segments, campaigns,
    personas, RFM classes, stages), each with its place in the document. A DefinitionError
    carries the references found as well, so they are checked with the other problems."""
    parser = _Parser()
    definition = parser.document(doc)
    if parser.problems or definition is None:
        raise DefinitionError(parser.problems or ["the definition is empty"], tuple(parser.references))
    return definition, tuple(parser.references)


def validate_segment(doc: object) -> list[str]:
    """Every problem of a definition document (empty when it is valid)."""
    try:
        parse_segment(doc)
    except DefinitionError as exc:
        return exc.problems
    return []


def validate_catalog(definitions: Iterable[SegmentDefinition]) -> list[str]:
    """Problems between definitions: duplicate ids, references to unknown segments, cycles."""
    problems: list[str] = []
    by_id: dict[str, SegmentDefinition] = {}
    for d in definitions:
        if d.id in by_id:
            problems.append(f"{d.id}: id: two definitions have the id {_show(d.id)}")
        by_id[d.id] = d
    refs: dict[str, list[SegmentCondition]] = {}
    for d in by_id.values():
        refs[d.id] = []
        for ref in d.segment_references():
            if ref.segment_id in by_id:
                refs[d.id].append(ref)
            else:
                close = difflib.get_close_matches(ref.segment_id, list(by_id), n=1, cutoff=0.6)
                hint = f" (did you mean {_show(close[0])}?)" if close else ""
                problems.append(f"{d.id}: {ref.at or 'conditions'}: unknown segment {_show(ref.segment_id)}{hint}")
    problems.extend(_cycles(refs))
    return problems


def _cycles(refs: dict[str, list[SegmentCondition]]) -> list[str]:
    """Each cycle once, as `a: <path of the reference>: segments form a cycle: a → b → a`."""
    return [f"{node}: {ref.at or 'conditions'}: segments form a cycle: {' → '.join(loop)}"
            for node, ref, loop in find_cycles(refs)]


def find_cycles(refs: dict[str, list[SegmentCondition]]) -> list[tuple[str, SegmentCondition, list[str]]]:
    """Each cycle once: the segment whose reference closes it, that reference, and the loop
    of ids (first and last the same)."""
    # Depth-first without recursion: a chain of thousands of segments is a valid catalog.
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[tuple[str, SegmentCondition, list[str]]] = []
    reported: set[frozenset[str]] = set()
    for root in sorted(refs):
        if root in state:
            continue
        state[root] = 1
        path, pending = [root], [iter(refs.get(root, []))]
        while pending:
            node = path[-1]
            for ref in pending[-1]:
                target = ref.segment_id
                if state.get(target) == 1:
                    loop = path[path.index(target):] + [target]
                    if frozenset(loop) not in reported:
                        reported.add(frozenset(loop))
                        found.append((node, ref, loop))
                elif state.get(target) is None:
                    state[target] = 1
                    path.append(target)
                    pending.append(iter(refs.get(target, [])))
                    break
            else:
                pending.pop()
                state[path.pop()] = 2
    return found


# --- parsing -------------------------------------------------------------------------------

def _show(value: object) -> str:
    if isinstance(value, (date, datetime)):
        return json.dumps(value.isoformat())
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {_show(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (date, datetime)):
        return f"the date {value.isoformat()}"
    return type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value: object) -> bool:
    return isinstance(value, (str, int, float, bool, date))


def _scalar(value: object) -> object:
    """YAML turns 2026-01-31 into a date; traits hold text, so compare with the text."""
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def _name(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if _is_number(value):
        return str(value)
    return None


class _Parser:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.references: list[Reference] = []
        self.depth = 0

    def fail(self, path: str, problem: str) -> None:
        self.problems.append(f"{path}: {problem}")

    def unknown_fields(self, node: dict, allowed: tuple[str, ...], path: str) -> None:
        for key in node:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(allowed)}"
                self.fail(path, f"unknown field '{key}' ({hint})")

    # document

    def document(self, doc: object) -> SegmentDefinition | None:
        if not isinstance(doc, dict):
            self.fail("definition", f"expected a mapping with id, name and conditions, got {_type_name(doc)}")
            return None
        self.unknown_fields(doc, DOCUMENT_FIELDS, "definition")
        segment_id = doc.get("id")
        if segment_id is None:
            self.fail("id", "required (lowercase letters, digits and hyphens, e.g. coffee-lovers)")
        elif not isinstance(segment_id, str) or not SEGMENT_ID.fullmatch(segment_id):
            self.fail("id", f"{_show(segment_id)} is not a segment id: use 1 to 64 lowercase letters, digits and "
                            f"hyphens, starting with a letter or digit")
        name = doc.get("name")
        if name is None:
            self.fail("name", "required (what marketers see, e.g. Coffee lovers)")
        elif not isinstance(name, str) or not name.strip():
            self.fail("name", f"expected text, got {_type_name(name)}")
        description = doc.get("description")
        if description is not None and not isinstance(description, str):
            self.fail("description", f"expected text, got {_type_name(description)}")
        if "kind" in doc and doc["kind"] != "segment":
            self.fail("kind", f"expected segment, got {_show(doc['kind'])}")
        condition = None
        if "conditions" not in doc:
            self.fail("conditions", "required: one condition, or a list of conditions that must all hold")
        else:
            raw = doc["conditions"]
            if isinstance(raw, list):
                condition = self.conjunction(raw, "conditions", AllOf, collapse=True)
            else:
                condition = self.condition(raw, "conditions")
        if self.problems or condition is None:
            return None
        return SegmentDefinition(id=segment_id, name=name.strip(), description=(description or "").strip(),
                                 condition=condition, source_doc=copy.deepcopy(doc))

    # conditions

    def conjunction(self, items: object, path: str, cls: type, collapse: bool = False) -> Condition | None:
        """A list of conditions under all:/any: (or the top-level list, where one item stands alone)."""
        if not isinstance(items, list) or not items:
            what = _type_name(items) if not isinstance(items, list) else "an empty list"
            self.fail(path, f"expected a non-empty list of conditions, got {what}")
            return None
        parts = [self.condition(item, f"{path}[{i}]") for i, item in enumerate(items)]
        if any(p is None for p in parts):
            return None
        return parts[0] if collapse and len(parts) == 1 else cls(tuple(parts))

    def condition(self, node: object, path: str) -> Condition | None:
        if self.depth >= MAX_DEPTH:
            self.fail(path, f"conditions nest at most {MAX_DEPTH} levels deep")
            return None
        self.depth += 1
        try:
            return self._condition(node, path)
        finally:
            self.depth -= 1

    def _condition(self, node: object, path: str) -> Condition | None:
        if not isinstance(node, dict):
            self.fail(path, f"expected a condition (a mapping such as `trait: country` with `equals: FR`), "
                            f"got {_type_name(node)}")
            return None
        kinds = [k for k in node if k in FIELDS]
        if len(kinds) > 1:
            self.fail(path, f"one condition per mapping, found {' and '.join(kinds)}: "
                            f"list them under all: or any:")
            return None
        if not kinds:
            if not node:
                self.fail(path, f"empty condition: expected one of {', '.join(KINDS)}")
            for key in node:
                close = difflib.get_close_matches(str(key), KINDS, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"a condition starts with one of: {', '.join(KINDS)}"
                self.fail(path, f"unknown field '{key}' ({hint})")
            return None
        kind = kinds[0]
        before = len(self.problems)
        self.unknown_fields(node, FIELDS[kind], path)
        built = getattr(self, f"_{kind}")(node, path)
        return built if len(self.problems) == before else None

    def _all(self, node: dict, path: str) -> Condition | None:
        return self.conjunction(node["all"], f"{path}.all", AllOf)

    def _any(self, node: dict, path: str) -> Condition | None:
        return self.conjunction(node["any"], f"{path}.any", AnyOf)

    def _not(self, node: dict, path: str) -> Condition | None:
        inner = node["not"]
        if isinstance(inner, list):
            self.fail(f"{path}.not", "not takes one condition; to negate several, put them under all: or any:")
            return None
        built = self.condition(inner, f"{path}.not")
        return Not(built) if built is not None else None

    def _trait(self, node: dict, path: str) -> Condition | None:
        name = node["trait"]
        if not isinstance(name, str) or not name.strip():
            self.fail(f"{path}.trait", f"expected a trait name, got {_type_name(name)}")
            return None
        ops = [k for k in node if k in TRAIT_OPS]
        if not ops and any(k not in FIELDS["trait"] for k in node):
            return None  # the misspelt comparison is already reported, with a suggestion
        if len(ops) != 1:
            found = f"found {', '.join(ops)}" if ops else "none given"
            self.fail(path, f"a trait condition takes exactly one of {', '.join(TRAIT_OPS)} ({found})")
            return None
        op = ops[0]
        value = node[op]
        where = f"{path}.{op}"
        name = name.strip()
        if op in ("equals", "not_equals"):
            if not _is_scalar(value):
                extra = "; use in: for several values" if isinstance(value, list) else (
                    "; use exists: false for a missing trait" if value is None else "")
                self.fail(where, f"expected one value (text, number or true/false), got {_type_name(value)}{extra}")
                return None
            return TraitCondition(name, op, _scalar(value))
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                got = "an empty list" if isinstance(value, list) else _type_name(value)
                self.fail(where, f"expected a non-empty list of values, got {got}")
                return None
            bad = [i for i, v in enumerate(value) if not _is_scalar(v)]
            for i in bad:
                self.fail(f"{where}[{i}]", f"expected a value (text, number or true/false), got {_type_name(value[i])}")
            return None if bad else TraitCondition(name, op, tuple(_scalar(v) for v in value))
        if op == "contains":
            if not _is_scalar(value):
                self.fail(where, f"expected one value, got {_type_name(value)}")
                return None
            return TraitCondition(name, op, _scalar(value))
        if op == "exists":
            if not isinstance(value, bool):
                self.fail(where, f"expected true or false, got {_type_name(value)}")
                return None
            return TraitCondition(name, op, value)
        if op in ("gt", "gte", "lt", "lte"):
            if not _is_number(value):
                hint = "; use before: or after: for dates" if isinstance(value, (date, str)) else ""
                self.fail(where, f"expected a number, got {_type_name(value)}{hint}")
                return None
            return TraitCondition(name, op, value)
        if op in ("before", "after"):
            bound = self.time_bound(value, where)
            return TraitCondition(name, op, bound) if bound else None
        if op in ("within_last", "more_than_ago"):
            span = self.duration(value, where)
            return TraitCondition(name, op, span) if span else None
        # anniversary
        if not (isinstance(value, str) and value.strip().lower() == "today"):
            self.fail(where, f"expected today, got {_show(value)}")
            return None
        return TraitCondition(name, op, "today")

    def time_bound(self, value: object, where: str) -> TimeBound | None:
        try:
            return parse_time_bound(value)
        except ValueError as exc:
            self.fail(where, str(exc))
            return None

    def duration(self, value: object, where: str) -> timedelta | None:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(where, str(exc))
            return None

    def _event(self, node: dict, path: str) -> Condition | None:
        name = node["event"]
        if not isinstance(name, str) or not name.strip():
            self.fail(f"{path}.event", f"expected an event name, got {_type_name(name)}")
            return None
        if len(name) > MAX_EVENT_NAME:
            self.fail(f"{path}.event", f"an event name has at most {MAX_EVENT_NAME} characters")
            return None
        filters = self.filters(node.get("where"), f"{path}.where")
        return self.occurrences(node, path, EventMatcher(name, filters))

    def _message(self, node: dict, path: str) -> Condition | None:
        what = node["message"]
        if not isinstance(what, str) or what not in MESSAGE_EVENTS:
            close = difflib.get_close_matches(str(what), list(MESSAGE_EVENTS), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.fail(f"{path}.message", f"{_show(what)} is not one of {', '.join(MESSAGE_EVENTS)}{hint}")
            return None
        filters: list[PropertyFilter] = []
        for key, prop in MESSAGE_PROPERTIES.items():
            if key not in node:
                continue
            if key == "link" and what != "clicked":
                self.fail(f"{path}.link", "only a clicked message has a link (message: clicked)")
                continue
            value = _name(node[key])
            if value is None:
                self.fail(f"{path}.{key}", f"expected an id, got {_type_name(node[key])}")
                continue
            filters.append(PropertyFilter(f"properties.{prop}", "==", value))
        filters.extend(self.filters(node.get("where"), f"{path}.where"))
        return self.occurrences(node, path, EventMatcher(MESSAGE_EVENTS[what], tuple(filters)))

    def filters(self, items: object, where: str) -> tuple[PropertyFilter, ...]:
        if items is None:
            return ()
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not items:
            self.fail(where, f'expected a list of comparisons such as properties.category == "coffee", '
                             f"got {_type_name(items) if not isinstance(items, list) else 'an empty list'}")
            return ()
        parsed = []
        for i, item in enumerate(items):
            try:
                parsed.append(parse_filter(item, f"{where}[{i}]"))
            except FilterError as exc:
                self.problems.append(str(exc))
        return tuple(parsed)

    def occurrences(self, node: dict, path: str, matcher: EventMatcher) -> Condition | None:
        counts = [k for k in COUNT_FIELDS if k in node]
        at_least, at_most = 1, None
        if len(counts) > 1:
            self.fail(path, f"give one of {', '.join(COUNT_FIELDS)} (found {', '.join(counts)})")
        elif counts:
            key = counts[0]
            value = node[key]
            if key == "performed":
                if not isinstance(value, bool):
                    self.fail(f"{path}.performed", f"expected true or false, got {_type_name(value)}")
                elif not value:
                    at_least, at_most = 0, 0
            elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
                self.fail(f"{path}.{key}", f"expected a whole number ≥ 0, got {_type_name(value)}")
            elif key == "at_least":
                at_least = value
            elif key == "at_most":
                at_least, at_most = 0, value
            else:
                at_least = at_most = value
        within = self.duration(node["within"], f"{path}.within") if "within" in node else None
        first = self.time_range(node["first"], f"{path}.first") if "first" in node else None
        last = self.time_range(node["last"], f"{path}.last") if "last" in node else None
        return EventCondition(matcher, at_least, at_most, within, first, last)

    def time_range(self, node: object, path: str) -> TimeRange | None:
        if not isinstance(node, dict) or not node:
            self.fail(path, f"expected before: and/or after: (e.g. {{before: 60 days ago}}), got {_type_name(node)}")
            return None
        self.unknown_fields(node, ("before", "after"), path)
        after = self.time_bound(node["after"], f"{path}.after") if "after" in node else None
        before = self.time_bound(node["before"], f"{path}.before") if "before" in node else None
        if after is None and before is None:
            return None  # a non-empty mapping without before/after: its fields are reported above
        return TimeRange(after=after, before=before)

    def _segment(self, node: dict, path: str) -> Condition | None:
        target = node["segment"]
        if not isinstance(target, str) or not SEGMENT_ID.fullmatch(target):
            self.fail(f"{path}.segment", f"{_show(target)} is not a segment id")
            return None
        self.references.append(Reference("segment", target, f"{path}.segment"))
        return SegmentCondition(target, at=f"{path}.segment")

    def _score(self, node: dict, path: str) -> Condition | None:
        spec = node["score"]
        where = f"{path}.score"
        if not isinstance(spec, dict) or not spec:
            self.fail(where, f"expected a comparison such as {{gte: 50}}, got {_type_name(spec)}")
            return None
        self.unknown_fields(spec, SCORE_OPS, where)
        bounds = []
        for op in SCORE_OPS:
            if op in spec:
                if _is_number(spec[op]):
                    bounds.append((op, float(spec[op])))
                else:
                    self.fail(f"{where}.{op}", f"expected a number, got {_type_name(spec[op])}")
        return ScoreCondition(tuple(bounds)) if bounds else None

    def one_or_in(self, value: object, where: str, what: str, article: str = "a",
                  provided_as: str | None = None) -> tuple[str, ...] | None:
        """`stage: lead` or `stage: {in: [lead, mql]}`; each name is a reference to what
        another definition provides (`provided_as`)."""
        single = _name(value)
        if single is not None:
            if provided_as:
                self.references.append(Reference(provided_as, single.lower(), where))
            return (single.lower(),)
        if isinstance(value, dict):
            self.unknown_fields(value, ("in",), where)
            items = value.get("in")
            if not isinstance(items, list) or not items:
                self.fail(f"{where}.in", f"expected a non-empty list of {what}s")
                return None
            names = [_name(v) for v in items]
            for i, n in enumerate(names):
                if n is None:
                    self.fail(f"{where}.in[{i}]", f"expected {article} {what}, got {_type_name(items[i])}")
                elif provided_as:
                    self.references.append(Reference(provided_as, n.lower(), f"{where}.in[{i}]"))
            return None if None in names else tuple(n.lower() for n in names)
        self.fail(where, f"expected {article} {what} or {{in: [...]}}, got {_type_name(value)}")
        return None

    def _stage(self, node: dict, path: str) -> Condition | None:
        stages = self.one_or_in(node["stage"], f"{path}.stage", "stage", provided_as="stage")
        return StageCondition(stages) if stages else None

    def _rfm(self, node: dict, path: str) -> Condition | None:
        classes = self.one_or_in(node["rfm"], f"{path}.rfm", "RFM class", "an", provided_as="rfm class")
        return RfmCondition(classes) if classes else None

    def _persona(self, node: dict, path: str) -> Condition | None:
        personas = self.one_or_in(node["persona"], f"{path}.persona", "persona", provided_as="persona")
        return PersonaCondition(personas) if personas else None

    def _tag(self, node: dict, path: str) -> Condition | None:
        tag = _name(node["tag"])
        if tag is None:
            self.fail(f"{path}.tag", f"expected a tag, got {_type_name(node['tag'])}")
            return None
        return TagCondition(tag.lower())

    def _consent(self, node: dict, path: str) -> Condition | None:
        channel = node["consent"]
        if not isinstance(channel, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", channel.strip().lower()):
            self.fail(f"{path}.consent", f"expected a channel such as email or sms, got {_type_name(channel)}")
            return None
        return ConsentCondition(channel.strip().lower())

    def _reachable(self, node: dict, path: str) -> Condition | None:
        channel = node["reachable"]
        if not isinstance(channel, str) or channel not in REACHABLE_CHANNELS:
            self.fail(f"{path}.reachable", f"expected email or sms, got {_show(channel)}")
            return None
        return ReachableCondition(channel)

    def _campaign_group(self, node: dict, path: str) -> Condition | None:
        spec = node["campaign_group"]
        where = f"{path}.campaign_group"
        if not isinstance(spec, dict):
            self.fail(where, f"expected {{campaign: <id>, group: 1..6 | converted}}, got {_type_name(spec)}")
            return None
        self.unknown_fields(spec, ("campaign", "group"), where)
        campaign = _name(spec.get("campaign"))
        if campaign is None:
            self.fail(f"{where}.campaign", "required: the campaign id" if "campaign" not in spec
                      else f"expected a campaign id, got {_type_name(spec['campaign'])}")
        else:
            self.references.append(Reference("campaign", campaign, f"{where}.campaign"))
        raw = spec.get("group")
        groups: list[str] = []
        if raw is None:
            self.fail(f"{where}.group", "required: 1 to 6, converted, or a list of them")
        else:
            items = raw if isinstance(raw, list) else [raw]
            if not items:
                self.fail(f"{where}.group", "expected a non-empty list of groups")
            for i, item in enumerate(items):
                text = str(item).strip().lower() if _is_number(item) or isinstance(item, str) else None
                if text not in CAMPAIGN_GROUPS:
                    at = f"{where}.group[{i}]" if isinstance(raw, list) else f"{where}.group"
                    self.fail(at, f"{_show(item)} is not a group: use 1 to 6 or converted")
                else:
                    groups.append(text)
        if campaign is None or not groups:
            return None
        return CampaignGroupCondition(campaign, tuple(dict.fromkeys(groups)))


def read_condition(node: object, path: str) -> tuple[Condition | None, list[str], tuple[Reference, ...]]:
    """One condition in the segment language, embedded in another document (a journey's
    branch): a mapping, or a list of conditions that must all hold. Returns the condition
    (None when it has problems), every problem as `path: problem`, and the references it
    makes (segments, campaigns, stages...), placed under `path`."""
    parser = _Parser()
    if isinstance(node, list):
        condition = parser.conjunction(node, path, AllOf, collapse=True)
    else:
        condition = parser.condition(node, path)
    return (condition if not parser.problems else None), parser.problems, tuple(parser.references)
