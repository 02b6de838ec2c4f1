"""The journey language: a marketer's automation as a document (YAML or JSON), parsed and checked.

    id: abandoned-cart
    name: Abandoned cart
    trigger:
      event: Product Added
      key: properties.cart_id          # one enrollment per cart
    entry: {re_entry: always, max_concurrent: 3}
    exit:
      - event: Account Deleted
    goal:
      event: Order Completed
      match_key: true                  # the purchase of THAT cart
      within: 7 days                   # the conversion window, from entry
    start: wait-for-purchase
    nodes:
      wait-for-purchase:
        wait_for: {event: Order Completed, match_key: true}
        timeout: 1 hour
        on_event: bought
        on_timeout: reminder
      reminder:
        send: {template: cart-reminder, channel: email}
        next: ...

A send may name a coupon pool (`send: {template: birthday, channel: email, coupon: birthday}`):
the runtime claims one code of that pool for the send and hands it to the template as
`coupon`. Pools are not definitions (services/coupons.py keeps them), so the pool's name is
checked here only for its form; a pool with no code left skips the send.

Node kinds: wait (a duration), wait_until (a time of day in the contact's zone, on allowed
weekdays), wait_until_date (a date trait, e.g. a birthday, at a local time with an offset),
wait_for (an event, optionally with the enrollment's key, with a timeout and a branch for
each outcome), branch (segment-language conditions, first match wins, then `otherwise`),
split (random percentages, fixed per enrollment), experiment (sticky arms per contact, with
an optional holdout), send, update (traits, tags, score), notify (a webhook destination)
and exit. A node without `next` ends the journey there.

Parsing reports every problem at once with its place (`nodes.reminder.timeout: ...`):
unknown fields and node names, unreachable nodes, loops that never wait (they would spin
for ever within one Advance), wait_for without a timeout branch, bad durations and times.
Segments, templates and destinations are returned as references for the registry to check.
"""
from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Iterator, Mapping

from chalicelib.domain.definition_errors import DefinitionError, Reference, expect_duration, is_number, \
    load_document, show, unknown_fields
from chalicelib.domain.durations import parse_duration
from chalicelib.domain.messaging.experiments import Experiment, ExperimentError, parse_experiment
from chalicelib.domain.segments.filters import FilterError, PropertyFilter, parse_filters
from chalicelib.domain.segments.language import SEGMENT_ID, Condition, read_condition

JOURNEY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
NODE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # templates, destinations and coupon pools
KEY_PATH = re.compile(r"^(properties|context)(\.[A-Za-z0-9_$\-]+)+$")
TIME_OF_DAY = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
CHANNELS = ("email", "sms", "push")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

DOCUMENT_FIELDS = ("id", "name", "description", "kind", "trigger", "entry", "exit", "goal", "start", "nodes")
TRIGGER_FIELDS = ("event", "where", "key", "segment_entered", "segment_exited", "schedule", "api")
TRIGGER_KINDS = ("event", "segment_entered", "segment_exited", "schedule", "api")
ENTRY_FIELDS = ("re_entry", "max_concurrent", "segment")
EXIT_FIELDS = ("event", "where", "match_key", "segment_exited")
GOAL_FIELDS = ("event", "where", "match_key", "segment", "within", "exit")
NODE_KINDS = ("wait", "wait_until", "wait_until_date", "wait_for", "branch", "split", "experiment", "send",
              "update", "notify", "exit")
NODE_FIELDS: dict[str, tuple[str, ...]] = {
    "wait": ("wait", "next", "description"),
    "wait_until": ("wait_until", "next", "description"),
    "wait_until_date": ("wait_until_date", "next", "description"),
    "wait_for": ("wait_for", "timeout", "on_event", "on_timeout", "description"),
    "branch": ("branch", "otherwise", "description"),
    "split": ("split", "description"),
    "experiment": ("experiment", "arms", "next", "description"),
    "send": ("send", "next", "description"),
    "update": ("update", "next", "description"),
    "notify": ("notify", "next", "description"),
    "exit": ("exit", "description"),
}
WAITING_KINDS = frozenset({"wait", "wait_until", "wait_until_date", "wait_for"})


# --- the parsed journey ----------------------------------------------------------------------

@dataclass(frozen=True)
class EventMatch:
    """An event name, property filters, and whether its key must equal the enrollment's."""

    event: str
    where: tuple[PropertyFilter, ...] = ()
    match_key: bool = False


@dataclass(frozen=True)
class Trigger:
    kind: str  # event | segment_entered | segment_exited | schedule | api
    event: str | None = None
    where: tuple[PropertyFilter, ...] = ()
    key: str | None = None  # a path into the event, e.g. properties.cart_id
    segment: str | None = None
    at: time | None = None  # schedule: the local time of day
    weekdays: tuple[int, ...] = ()  # schedule: allowed days, Monday 0 (empty: every day)


@dataclass(frozen=True)
class EntryRules:
    re_entry: str = "never"  # never | always | after
    re_entry_after: timedelta | None = None
    max_concurrent: int = 1
    segment: str | None = None


@dataclass(frozen=True)
class ExitCriterion:
    match: EventMatch | None = None
    segment_exited: str | None = None


@dataclass(frozen=True)
class Goal:
    match: EventMatch | None = None
    segment: str | None = None
    within: timedelta | None = None  # the conversion window from entry; None: while enrolled
    exit: bool = True


@dataclass(frozen=True)
class Node:
    id: str
    kind: str

    @property
    def waits(self) -> bool:
        return self.kind in WAITING_KINDS

    def successors(self) -> tuple[tuple[str, str], ...]:
        """(outcome, node id) for every way out of the node."""
        return ()


@dataclass(frozen=True)
class LinearNode(Node):
    next: str | None = None

    def successors(self):
        return (("next", self.next),) if self.next else ()


@dataclass(frozen=True)
class WaitNode(LinearNode):
    duration: timedelta = timedelta(0)


@dataclass(frozen=True)
class WaitUntilNode(LinearNode):
    at: time = time(9)
    weekdays: tuple[int, ...] = ()  # Monday 0; empty: every day


@dataclass(frozen=True)
class WaitUntilDateNode(LinearNode):
    trait: str = ""
    at: time = time(9)
    offset: timedelta = timedelta(0)  # negative: before the date
    yearly: bool = False  # the date's next anniversary (a birthday) rather than the date itself


@dataclass(frozen=True)
class WaitForNode(Node):
    match: EventMatch = EventMatch("")
    timeout: timedelta = timedelta(0)
    on_event: str = ""
    on_timeout: str = ""

    def successors(self):
        return (("event", self.on_event), ("timeout", self.on_timeout))


@dataclass(frozen=True)
class BranchPath:
    condition: Condition
    next: str
    text: str  # the condition as written, for traces


@dataclass(frozen=True)
class BranchNode(Node):
    paths: tuple[BranchPath, ...] = ()
    otherwise: str = ""

    def successors(self):
        return tuple((f"when[{i}]", p.next) for i, p in enumerate(self.paths)) + (("otherwise", self.otherwise),)


@dataclass(frozen=True)
class SplitNode(Node):
    shares: tuple[tuple[Decimal, str], ...] = ()  # (percent, node id)

    def successors(self):
        return tuple((f"{percent.normalize():f}%", target) for percent, target in self.shares)


@dataclass(frozen=True)
class ExperimentNode(Node):
    experiment: Experiment | None = None
    next_by_arm: tuple[tuple[str, str], ...] = ()  # (arm, node id)

    def successors(self):
        return tuple((f"arm {arm}", target) for arm, target in self.next_by_arm)


@dataclass(frozen=True)
class SendNode(LinearNode):
    template: str = ""
    channel: str = "email"
    coupon: str | None = None  # the coupon pool a personal code is claimed from for this send


@dataclass(frozen=True)
class UpdateNode(LinearNode):
    traits: Mapping[str, object] = field(default_factory=dict)
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    score: float | None = None


@dataclass(frozen=True)
class NotifyNode(LinearNode):
    destination: str = ""


@dataclass(frozen=True)
class ExitNode(Node):
    reason: str = "the journey's end"


@dataclass(frozen=True)
class Journey:
    id: str
    name: str
    description: str
    trigger: Trigger
    entry: EntryRules
    exits: tuple[ExitCriterion, ...]
    goal: Goal | None
    start: str
    nodes: Mapping[str, Node]
    source_doc: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def templates(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.template for n in self.nodes.values() if isinstance(n, SendNode)))


# --- parsing ---------------------------------------------------------------------------------

def parse_journey(doc: object) -> Journey:
    """Validate a journey document and build it; raises DefinitionError listing every problem."""
    return read_journey(doc)[0]


def read_journey(doc: object) -> tuple[Journey, tuple[Reference, ...]]:
    """The journey and what it names that other definitions provide (segments, templates,
    destinations), each with its place. A DefinitionError carries the references too."""
    parser = _Parser()
    journey = parser.document(load_document(doc))
    if parser.problems or journey is None:
        raise DefinitionError(parser.problems or ["the journey is empty"], tuple(parser.references))
    return journey, tuple(parser.references)


def validate_journey(doc: object) -> list[str]:
    """Every problem of a journey document (empty when it is valid)."""
    try:
        parse_journey(doc)
    except DefinitionError as exc:
        return exc.problems
    return []


def parse_time_of_day(value: object) -> time:
    """`09:00` or `9:30` as a wall-clock time; raises ValueError saying what is expected."""
    match = TIME_OF_DAY.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f'{show(value)} is not a time of day: write hours and minutes such as "09:00"')
    return time(int(match.group(1)), int(match.group(2)))


def parse_offset(value: object) -> timedelta:
    """A signed duration: `-1 day` (before), `2 hours` or `+2 hours` (after)."""
    if not isinstance(value, str):
        raise ValueError(f'{show(value)} is not an offset: write e.g. "-1 day" or "2 hours"')
    text = value.strip()
    sign = -1 if text.startswith("-") else 1
    return sign * parse_duration(text.lstrip("+-").strip())


class _Parser:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.references: list[Reference] = []

    def fail(self, where: str, problem: str) -> None:
        self.problems.append(f"{where}: {problem}")

    def mapping(self, value: object, where: str, example: str) -> dict | None:
        if isinstance(value, dict):
            return value
        self.fail(where, f"expected a mapping ({example}), got {show(value)}")
        return None

    def name(self, value: object, where: str, pattern: re.Pattern, what: str) -> str | None:
        if isinstance(value, str) and pattern.fullmatch(value.strip()):
            return value.strip()
        if value is None:
            self.fail(where, f"is required ({what})")
        else:
            self.fail(where, f"{show(value)} is not {what}")
        return None

    def segment(self, value: object, where: str) -> str | None:
        segment = self.name(value, where, SEGMENT_ID, "a segment id (lowercase letters, digits and hyphens)")
        if segment:
            self.references.append(Reference("segment", segment, where))
        return segment

    def duration(self, value: object, where: str) -> timedelta | None:
        return expect_duration(value, where, self.problems)

    def flag(self, mapping: dict, key: str, where: str, default: bool) -> bool:
        value = mapping.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{where}.{key}", f"true or false, got {show(value)}")
            return default
        return value

    def filters(self, value: object, where: str) -> tuple[PropertyFilter, ...]:
        try:
            return parse_filters(value, where)
        except FilterError as exc:
            self.problems.append(str(exc))
            return ()

    def event_name(self, value: object, where: str) -> str | None:
        if isinstance(value, str) and value.strip() and len(value) <= 200:
            return value.strip()
        self.fail(where, f"expected an event name such as \"Order Completed\", got {show(value)}")
        return None

    # document

    def document(self, doc: object) -> Journey | None:
        if not isinstance(doc, dict):
            self.fail("document", f"expected a mapping with id, name, trigger, start and nodes, got {show(doc)}")
            return None
        unknown_fields(doc, DOCUMENT_FIELDS, "", self.problems)
        journey_id = self.name(doc.get("id"), "id", JOURNEY_ID,
                               "a journey id (1 to 64 lowercase letters, digits and hyphens, e.g. abandoned-cart)")
        name = doc.get("name", journey_id or "")
        if "name" in doc and (not isinstance(name, str) or not name.strip()):
            self.fail("name", f"expected text, got {show(name)}")
        description = doc.get("description") or ""
        if not isinstance(description, str):
            self.fail("description", f"expected text, got {show(description)}")
        if "kind" in doc and doc["kind"] != "journey":
            self.fail("kind", f"expected journey, got {show(doc['kind'])}")
        entry = self.entry(doc.get("entry"))
        trigger = self.trigger(doc.get("trigger"), entry)
        keyed = trigger is not None and trigger.key is not None
        exits = self.exits(doc.get("exit"), keyed)
        goal = self.goal(doc.get("goal"), keyed) if doc.get("goal") is not None else None
        nodes = self.nodes(doc.get("nodes"), keyed)
        specs = doc.get("nodes") if isinstance(doc.get("nodes"), dict) else {}
        start = doc.get("start")
        if start is None:
            self.fail("start", "is required: the id of the first node")
        elif nodes is not None and start not in specs:
            self.fail("start", self.unknown_node(start, specs))
        if nodes is not None and start in specs:
            self.graph(specs, start)
        if self.problems:
            return None
        return Journey(id=journey_id, name=name.strip(), description=description.strip(), trigger=trigger,
                       entry=entry, exits=exits, goal=goal, start=start, nodes=nodes, source_doc=copy.deepcopy(doc))

    def unknown_node(self, target: object, nodes: Mapping[str, object]) -> str:
        close = difflib.get_close_matches(str(target), list(nodes), n=1, cutoff=0.6)
        hint = f' (did you mean "{close[0]}"?)' if close else f" (nodes: {', '.join(nodes)})"
        return f"unknown node {show(target)}{hint}"

    # trigger and rules

    def trigger(self, value: object, entry: EntryRules | None) -> Trigger | None:
        where = "trigger"
        node = self.mapping(value, where, "event: Product Added, or segment_entered: <segment>")
        if node is None:
            return None
        unknown_fields(node, TRIGGER_FIELDS, where, self.problems)
        kinds = [k for k in TRIGGER_KINDS if k in node]
        if len(kinds) != 1:
            found = f"found {', '.join(kinds)}" if kinds else "none given"
            self.fail(where, f"give exactly one of {', '.join(TRIGGER_KINDS)} ({found})")
            return None
        kind = kinds[0]
        if kind != "event":
            for key in ("where", "key"):
                if key in node:
                    self.fail(f"{where}.{key}", "applies to an event trigger only")
        if kind == "event":
            event = self.event_name(node["event"], f"{where}.event")
            filters = self.filters(node.get("where"), f"{where}.where")
            key = None
            if "key" in node:
                key = node["key"].strip() if isinstance(node["key"], str) else node["key"]
                if not isinstance(key, str) or not KEY_PATH.fullmatch(key):
                    self.fail(f"{where}.key", f"{show(node['key'])} is not a property path such as "
                                              f"properties.cart_id")
                    key = None
            return Trigger("event", event=event, where=filters, key=key)
        if kind in ("segment_entered", "segment_exited"):
            return Trigger(kind, segment=self.segment(node[kind], f"{where}.{kind}"))
        if kind == "schedule":
            spec = self.mapping(node["schedule"], f"{where}.schedule", 'at: "09:00", weekdays: [mon, fri]')
            if spec is None:
                return None
            unknown_fields(spec, ("at", "weekdays"), f"{where}.schedule", self.problems)
            at = self.time_of_day(spec.get("at"), f"{where}.schedule.at")
            weekdays = self.weekdays(spec.get("weekdays"), f"{where}.schedule.weekdays")
            if entry is not None and entry.segment is None:
                self.fail(f"{where}.schedule", "a schedule enrolls the contacts of a segment: name it in "
                                               "entry.segment")
            return Trigger("schedule", at=at, weekdays=weekdays)
        if node["api"] is not True:
            self.fail(f"{where}.api", f"write api: true, got {show(node['api'])}")
        return Trigger("api")

    def entry(self, value: object) -> EntryRules | None:
        if value is None:
            return EntryRules()
        where = "entry"
        node = self.mapping(value, where, "re_entry: never, max_concurrent: 1")
        if node is None:
            return None
        unknown_fields(node, ENTRY_FIELDS, where, self.problems)
        re_entry, after = "never", None
        raw = node.get("re_entry", "never")
        if raw in ("never", "always"):
            re_entry = raw
        elif isinstance(raw, str) and raw.strip().lower().startswith("after "):
            re_entry = "after"
            after = self.duration(raw.strip()[6:], f"{where}.re_entry")
        else:
            self.fail(f"{where}.re_entry", f'expected never, always or "after <duration>" (e.g. "after 30 days"), '
                                           f"got {show(raw)}")
        limit = node.get("max_concurrent", 1)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            self.fail(f"{where}.max_concurrent", f"expected a whole number of at least 1, got {show(limit)}")
            limit = 1
        segment = self.segment(node["segment"], f"{where}.segment") if "segment" in node else None
        return EntryRules(re_entry=re_entry, re_entry_after=after, max_concurrent=limit, segment=segment)

    def event_match(self, node: dict, where: str, keyed: bool) -> EventMatch | None:
        event = self.event_name(node.get("event"), f"{where}.event")
        filters = self.filters(node.get("where"), f"{where}.where")
        match_key = self.flag(node, "match_key", where, False)
        if match_key and not keyed:
            self.fail(f"{where}.match_key", "the trigger has no key: give the trigger a key (e.g. "
                                            "key: properties.cart_id) to match it")
        return EventMatch(event, filters, match_key) if event else None

    def exits(self, value: object, keyed: bool) -> tuple[ExitCriterion, ...]:
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        criteria = []
        for i, item in enumerate(items):
            where = f"exit[{i}]"
            node = self.mapping(item, where, "event: Account Deleted, or segment_exited: <segment>")
            if node is None:
                continue
            unknown_fields(node, EXIT_FIELDS, where, self.problems)
            if ("event" in node) == ("segment_exited" in node):
                self.fail(where, "name either an event or a segment_exited, not both or neither")
            elif "event" in node:
                match = self.event_match(node, where, keyed)
                if match:
                    criteria.append(ExitCriterion(match=match))
            else:
                segment = self.segment(node["segment_exited"], f"{where}.segment_exited")
                if segment:
                    criteria.append(ExitCriterion(segment_exited=segment))
        return tuple(criteria)

    def goal(self, value: object, keyed: bool) -> Goal | None:
        where = "goal"
        node = self.mapping(value, where, "event: Order Completed, within: 7 days")
        if node is None:
            return None
        unknown_fields(node, GOAL_FIELDS, where, self.problems)
        match, segment = None, None
        if ("event" in node) == ("segment" in node):
            self.fail(where, "name either an event or a segment, not both or neither")
        elif "event" in node:
            match = self.event_match(node, where, keyed)
        else:
            for key in ("where", "match_key"):
                if key in node:
                    self.fail(f"{where}.{key}", "applies to an event goal only")
            segment = self.segment(node["segment"], f"{where}.segment")
        within = self.duration(node["within"], f"{where}.within") if "within" in node else None
        return Goal(match=match, segment=segment, within=within, exit=self.flag(node, "exit", where, True))

    def time_of_day(self, value: object, where: str, default: time | None = None) -> time | None:
        if value is None and default is not None:
            return default
        try:
            return parse_time_of_day(value)
        except ValueError as exc:
            self.fail(where, str(exc))
            return None

    def weekdays(self, value: object, where: str) -> tuple[int, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not value:
            self.fail(where, f"expected a non-empty list of days such as [mon, tue], got {show(value)}")
            return ()
        days = []
        for i, day in enumerate(value):
            text = day.strip().lower()[:3] if isinstance(day, str) else None
            if text not in WEEKDAYS:
                self.fail(f"{where}[{i}]", f"{show(day)} is not a day: use {', '.join(WEEKDAYS)}")
            else:
                days.append(WEEKDAYS.index(text))
        return tuple(sorted(set(days)))

    # nodes

    def nodes(self, value: object, keyed: bool) -> dict[str, Node] | None:
        if not isinstance(value, dict) or not value:
            self.fail("nodes", f"expected a mapping of node id to node, got {show(value)}")
            return None
        nodes: dict[str, Node] = {}
        for node_id, spec in value.items():
            where = f"nodes.{node_id}"
            if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
                self.fail(where, f"{show(node_id)} is not a node id (lowercase letters, digits, _ and -)")
                continue
            node = self.node(node_id, spec, where, keyed)
            if node is not None:
                nodes[node_id] = node
        ids = set(value)
        for node_id, spec in value.items():  # references to nodes, checked once all ids are known
            if not isinstance(spec, dict):
                continue
            for label, target in self.targets(spec):
                if target is not None and target not in ids:
                    self.fail(f"nodes.{node_id}.{label}", self.unknown_node(target, value))
        return nodes

    def targets(self, spec: dict) -> Iterator[tuple[str, object]]:
        """(place, node id) of every node a node's document names, as written."""
        for key in ("next", "on_event", "on_timeout", "otherwise"):
            if isinstance(spec.get(key), dict):
                for arm, target in spec[key].items():
                    yield f"{key}.{arm}", target
            elif key in spec:
                yield key, spec[key]
        for key in ("branch", "split"):
            if isinstance(spec.get(key), list):
                for i, path in enumerate(spec[key]):
                    if isinstance(path, dict) and "next" in path:
                        yield f"{key}[{i}].next", path["next"]

    def node(self, node_id: str, spec: object, where: str, keyed: bool) -> Node | None:
        if not isinstance(spec, dict):
            self.fail(where, f"expected a node (a mapping such as wait: 1 hour, next: reminder), got {show(spec)}")
            return None
        kinds = [k for k in NODE_KINDS if k in spec]
        if len(kinds) != 1:
            found = f"found {', '.join(kinds)}" if kinds else "none given"
            self.fail(where, f"a node is exactly one of {', '.join(NODE_KINDS)} ({found})")
            return None
        kind = kinds[0]
        before = len(self.problems)
        unknown_fields(spec, NODE_FIELDS[kind], where, self.problems)
        for key in ("next", "otherwise", "on_event", "on_timeout"):
            if key in spec and not (isinstance(spec[key], str) or (key == "next" and kind == "experiment")):
                self.fail(f"{where}.{key}", f"expected a node id, got {show(spec[key])}")
        built = getattr(self, f"_{kind}")(node_id, spec, where, keyed)
        return built if len(self.problems) == before else None

    @staticmethod
    def _next(spec: dict) -> str | None:
        value = spec.get("next")
        return value if isinstance(value, str) else None

    def _wait(self, node_id, spec, where, keyed):
        duration = self.duration(spec["wait"], f"{where}.wait")
        return WaitNode(node_id, "wait", next=self._next(spec), duration=duration or timedelta(0))

    def _wait_until(self, node_id, spec, where, keyed):
        inner = self.mapping(spec["wait_until"], f"{where}.wait_until", 'time: "09:00", weekdays: [mon, tue]')
        if inner is None:
            return None
        unknown_fields(inner, ("time", "weekdays"), f"{where}.wait_until", self.problems)
        at = self.time_of_day(inner.get("time"), f"{where}.wait_until.time")
        weekdays = self.weekdays(inner.get("weekdays"), f"{where}.wait_until.weekdays")
        return WaitUntilNode(node_id, "wait_until", next=self._next(spec), at=at or time(0), weekdays=weekdays)

    def _wait_until_date(self, node_id, spec, where, keyed):
        at_path = f"{where}.wait_until_date"
        inner = self.mapping(spec["wait_until_date"], at_path, 'trait: birthday, time: "09:00", yearly: true')
        if inner is None:
            return None
        unknown_fields(inner, ("trait", "time", "offset", "yearly"), at_path, self.problems)
        trait = inner.get("trait")
        if not isinstance(trait, str) or not trait.strip():
            self.fail(f"{at_path}.trait", f"expected the name of a date trait such as birthday, got {show(trait)}")
        at = self.time_of_day(inner.get("time"), f"{at_path}.time", default=time(9))
        offset = timedelta(0)
        if "offset" in inner:
            try:
                offset = parse_offset(inner["offset"])
            except ValueError as exc:
                self.fail(f"{at_path}.offset", str(exc))
        yearly = self.flag(inner, "yearly", at_path, False)
        return WaitUntilDateNode(node_id, "wait_until_date", next=self._next(spec),
                                 trait=trait.strip() if isinstance(trait, str) else "", at=at or time(9),
                                 offset=offset, yearly=yearly)

    def _wait_for(self, node_id, spec, where, keyed):
        inner = self.mapping(spec["wait_for"], f"{where}.wait_for", "event: Order Completed, match_key: true")
        match = None
        if inner is not None:
            unknown_fields(inner, ("event", "where", "match_key"), f"{where}.wait_for", self.problems)
            match = self.event_match(inner, f"{where}.wait_for", keyed)
        timeout = None
        if "timeout" not in spec:
            self.fail(f"{where}.timeout", "is required: how long to wait for the event (e.g. 1 hour)")
        else:
            timeout = self.duration(spec["timeout"], f"{where}.timeout")
        for outcome, meaning in (("on_event", "the event arrives"), ("on_timeout", "the timeout passes")):
            if outcome not in spec:
                self.fail(f"{where}.{outcome}", f"is required: the node to go to when {meaning}")
        if match is None or timeout is None:
            return None
        return WaitForNode(node_id, "wait_for", match=match, timeout=timeout, on_event=spec.get("on_event"),
                           on_timeout=spec.get("on_timeout"))

    def _branch(self, node_id, spec, where, keyed):
        items = spec["branch"]
        if not isinstance(items, list) or not items:
            self.fail(f"{where}.branch", f"expected a list of {{when: <condition>, next: <node>}}, got {show(items)}")
            return None
        paths = []
        for i, item in enumerate(items):
            at = f"{where}.branch[{i}]"
            path = self.mapping(item, at, "when: {consent: sms}, next: sms-reminder")
            if path is None:
                continue
            unknown_fields(path, ("when", "next"), at, self.problems)
            if "when" not in path:
                self.fail(f"{at}.when", "is required: a condition in the segment language")
                continue
            if not isinstance(path.get("next"), str):
                self.fail(f"{at}.next", f"expected a node id, got {show(path.get('next'))}")
                continue
            condition, problems, references = read_condition(path["when"], f"{at}.when")
            self.problems.extend(problems)
            self.references.extend(references)
            if condition is not None:
                paths.append(BranchPath(condition, path["next"], show(path["when"])))
        if "otherwise" not in spec:
            self.fail(f"{where}.otherwise", "is required: the node to go to when no condition holds")
        return BranchNode(node_id, "branch", paths=tuple(paths), otherwise=spec.get("otherwise"))

    def _split(self, node_id, spec, where, keyed):
        items = spec["split"]
        if not isinstance(items, list) or len(items) < 2:
            self.fail(f"{where}.split", f"expected at least two {{percent: 50, next: <node>}}, got {show(items)}")
            return None
        shares, total = [], Decimal(0)
        for i, item in enumerate(items):
            at = f"{where}.split[{i}]"
            share = self.mapping(item, at, "percent: 50, next: variant-a")
            if share is None:
                continue
            unknown_fields(share, ("percent", "next"), at, self.problems)
            raw = share.get("percent")
            try:
                percent = Decimal(str(raw)) if is_number(raw) else None
            except InvalidOperation:
                percent = None
            if percent is None or percent <= 0 or percent != percent.quantize(Decimal("0.01")):
                self.fail(f"{at}.percent", f"expected a percentage above 0 with at most two decimals, got {show(raw)}")
                continue
            if not isinstance(share.get("next"), str):
                self.fail(f"{at}.next", f"expected a node id, got {show(share.get('next'))}")
                continue
            shares.append((percent, share["next"]))
            total += percent
        if len(shares) == len(items) and total != 100:
            self.fail(f"{where}.split", f"the percentages must sum to 100, they sum to {total.normalize():f}")
        return SplitNode(node_id, "split", shares=tuple(shares))

    def _experiment(self, node_id, spec, where, keyed):
        experiment_id = spec["experiment"]
        if not isinstance(experiment_id, str) or not NAME.fullmatch(experiment_id):
            self.fail(f"{where}.experiment", f"expected an experiment id such as subject-test, got {show(experiment_id)}")
            return None
        experiment = None
        try:
            experiment = parse_experiment(experiment_id, spec.get("arms"))
        except ExperimentError as exc:
            self.fail(f"{where}.arms", str(exc))
        targets = spec.get("next")
        if not isinstance(targets, dict):
            self.fail(f"{where}.next", f"expected the node of each arm (A: send-a, B: send-b), got {show(targets)}")
            return None
        if experiment is None:
            return None
        arms = [arm.name for arm in experiment.arms]
        for arm in arms:
            if arm not in targets:
                self.fail(f"{where}.next.{arm}", "is required: the node this arm goes to")
        for arm in targets:
            if arm not in arms:
                self.fail(f"{where}.next.{arm}", f"no arm {show(arm)} in arms ({', '.join(arms)})")
        return ExperimentNode(node_id, "experiment", experiment=experiment,
                              next_by_arm=tuple((arm, targets.get(arm)) for arm in arms))

    def _send(self, node_id, spec, where, keyed):
        inner = self.mapping(spec["send"], f"{where}.send", "template: cart-reminder, channel: email")
        if inner is None:
            return None
        unknown_fields(inner, ("template", "channel", "coupon"), f"{where}.send", self.problems)
        template = self.name(inner.get("template"), f"{where}.send.template", NAME,
                             "a template name (welcome, cart-reminder...)")
        if template:
            self.references.append(Reference("template", template, f"{where}.send.template"))
        channel = inner.get("channel", "email")
        if channel not in CHANNELS:
            self.fail(f"{where}.send.channel", f"{show(channel)} is not one of {', '.join(CHANNELS)}")
        coupon = None
        if "coupon" in inner:  # a pool, not a definition: no reference for the registry to check
            coupon = self.name(inner["coupon"], f"{where}.send.coupon", NAME,
                               "a coupon pool name (1 to 64 lowercase letters, digits, _ and -, e.g. birthday)")
        return SendNode(node_id, "send", next=self._next(spec), template=template or "", channel=channel,
                        coupon=coupon)

    def _update(self, node_id, spec, where, keyed):
        at = f"{where}.update"
        inner = self.mapping(spec["update"], at, "traits: {plan: pro}, tags: {add: [vip]}, score: 10")
        if inner is None:
            return None
        unknown_fields(inner, ("traits", "tags", "score"), at, self.problems)
        if not inner:
            self.fail(at, "give traits, tags or score to change")
        traits = inner.get("traits", {})
        if not isinstance(traits, dict) or any(not isinstance(k, str) or not k for k in traits):
            self.fail(f"{at}.traits", f"expected a mapping of trait name to value, got {show(traits)}")
            traits = {}
        add, remove = (), ()
        if "tags" in inner:
            tags = self.mapping(inner["tags"], f"{at}.tags", "add: [vip], remove: [trial]")
            if tags is not None:
                unknown_fields(tags, ("add", "remove"), f"{at}.tags", self.problems)
                add, remove = (self.tag_list(tags.get(k), f"{at}.tags.{k}") for k in ("add", "remove"))
        score = inner.get("score")
        if score is not None and not is_number(score):
            self.fail(f"{at}.score", f"expected the points to add (a number, negative to remove), got {show(score)}")
        return UpdateNode(node_id, "update", next=self._next(spec), traits=dict(traits), add_tags=add,
                          remove_tags=remove, score=float(score) if is_number(score) else None)

    def tag_list(self, value: object, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or any(not isinstance(t, str) or not t.strip() for t in value):
            self.fail(where, f"expected a list of tags, got {show(value)}")
            return ()
        return tuple(t.strip().lower() for t in value)

    def _notify(self, node_id, spec, where, keyed):
        inner = spec["notify"]
        destination = inner.get("destination") if isinstance(inner, dict) else None
        if isinstance(inner, dict):
            unknown_fields(inner, ("destination",), f"{where}.notify", self.problems)
        else:
            self.fail(f"{where}.notify", f"expected destination: <webhook destination id>, got {show(inner)}")
            return None
        destination = self.name(destination, f"{where}.notify.destination", NAME, "a destination id")
        if destination:
            self.references.append(Reference("destination", destination, f"{where}.notify.destination"))
        return NotifyNode(node_id, "notify", next=self._next(spec), destination=destination or "")

    def _exit(self, node_id, spec, where, keyed):
        reason = spec["exit"]
        if reason is True:
            return ExitNode(node_id, "exit")
        if not isinstance(reason, str) or not reason.strip():
            self.fail(f"{where}.exit", f"expected true or the reason to record, got {show(reason)}")
            return None
        return ExitNode(node_id, "exit", reason=reason.strip())

    # the graph

    def graph(self, specs: dict, start: str) -> None:
        """Unreachable nodes, and loops in which no node waits. Read from the documents as
        written, so a node with its own problems still counts in the graph."""
        ids = {k for k in specs if isinstance(k, str)}
        edges = {n: [t for _, t in self.targets(spec) if isinstance(t, str) and t in ids]
                 for n, spec in specs.items() if n in ids and isinstance(spec, dict)}
        reached, pending = {start}, [start]
        while pending:
            for target in edges.get(pending.pop(), []):
                if target not in reached:
                    reached.add(target)
                    pending.append(target)
        for node_id in edges:
            if node_id not in reached:
                self.fail(f"nodes.{node_id}", f"unreachable: no path leads here from the start ({start})")

        def waits(node_id: str) -> bool:
            return any(k in WAITING_KINDS for k in specs[node_id])

        # Within one Advance only non-waiting nodes run back to back: a cycle among them never ends.
        quick = {n: [t for t in targets if not waits(t)] for n, targets in edges.items() if not waits(n)}
        for loop in _cycles(quick):
            self.fail(f"nodes.{loop[0]}", f"loops without a wait: {' → '.join(loop)} (add a wait in the loop)")


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Each cycle once, as the list of its nodes with the first repeated at the end."""
    state: dict[str, int] = {}
    found: list[list[str]] = []
    reported: set[frozenset[str]] = set()
    for root in edges:
        if root in state:
            continue
        state[root] = 1
        path, pending = [root], [iter(edges[root])]
        while pending:
            for target in pending[-1]:
                if state.get(target) == 1:
                    loop = path[path.index(target):] + [target]
                    if frozenset(loop) not in reported:
                        reported.add(frozenset(loop))
                        found.append(loop)
                elif state.get(target) is None:
                    state[target] = 1
                    path.append(target)
                    pending.append(iter(edges.get(target, [])))
                    break
            else:
                pending.pop()
                state[path.pop()] = 2
    return found
