"""Property filters: `properties.category == "coffee"`, `properties.revenue > 50`.

Shared by segment event conditions, scoring rules and persona rules. A filter is one
comparison between a dotted path into the event and a JSON literal; a list of filters
means all of them.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass

from chalicelib.domain.nesting import TooDeeplyNested, load_json

OPERATORS = ("==", "!=", ">=", "<=", ">", "<", "in", "not in", "contains", "starts_with", "exists")
_PATH = re.compile(r"^(properties|traits|context)(\.[A-Za-z0-9_$\-]+)+$|^(event|name|type)$")
_HEAD = re.compile(r"^\s*(?P<path>[A-Za-z0-9_.$\-]+)\s*(?P<rest>.*)$", re.S)
_SYMBOLS = re.compile(r"^[=<>!~]+")
_WORDS = re.compile(r"^(?:not|is)\s+[A-Za-z_]+|^[A-Za-z_]+")
# What marketers type from other languages, and the operator it means here: an operator
# is read whole, so `===` or `<>` is refused with the right name instead of being read as
# `==` against a value starting with `=` (a filter that silently never matches).
_MEANT = {"=": "==", "===": "==", "!==": "!=", "<>": "!=", "=>": ">=", "=<": "<=", "=!": "!=", "!": "!=",
          "is": "==", "eq": "==", "equals": "==", "is not": "!=", "ne": "!=", "not equals": "!=",
          "gt": ">", "gte": ">=", "ge": ">=", "lt": "<", "lte": "<=", "le": "<=",
          "not_in": "not in", "notin": "not in", "is in": "in", "is not in": "not in",
          "contain": "contains", "includes": "contains", "has": "contains", "like": "contains",
          "startswith": "starts_with", "starts": "starts_with", "begins_with": "starts_with",
          "exist": "exists", "is set": "exists"}
_KNOWN = ", ".join(OPERATORS)


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class PropertyFilter:
    path: str
    op: str
    value: object = None

    @property
    def text(self) -> str:
        if self.op == "exists":
            return f"{self.path} exists"
        return f"{self.path} {self.op} {json.dumps(self.value, sort_keys=True)}"

    def matches(self, event: dict) -> bool:
        found, actual = lookup_path(event, self.path)
        if self.op == "exists":
            return found and actual is not None
        if not found:
            return self.op == "!="
        if self.op == "==":
            return _equal(actual, self.value)
        if self.op == "!=":
            return not _equal(actual, self.value)
        if self.op in ("in", "not in"):
            hit = any(_equal(actual, v) for v in self.value)
            return hit if self.op == "in" else not hit
        if self.op == "contains":
            if isinstance(actual, str):
                return isinstance(self.value, str) and self.value.lower() in actual.lower()
            if isinstance(actual, list):
                return any(_equal(item, self.value) for item in actual)
            return False
        if self.op == "starts_with":
            return isinstance(actual, str) and actual.lower().startswith(str(self.value).lower())
        number = _number(actual)
        if number is None:
            return False
        bound = float(self.value)
        return {">": number > bound, ">=": number >= bound, "<": number < bound, "<=": number <= bound}[self.op]


def lookup_path(event: dict, path: str) -> tuple[bool, object]:
    """(found, value) at a dotted path into nested mappings."""
    node: object = event
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _equal(actual: object, expected: object) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.strip().lower() == expected.strip().lower()
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None and not isinstance(actual, str) and not isinstance(expected, str):
        return a == b
    return actual == expected


def _operator(rest: str) -> tuple[str, str]:
    """The operator at the start of `rest`, read whole, and what follows it."""
    symbols = _SYMBOLS.match(rest)
    if symbols:
        return symbols.group(), rest[symbols.end():]
    words = _WORDS.match(rest)
    if not words:
        token = rest.split(None, 1)[0] if rest.strip() else ""
        return token, rest[len(token):]
    op = " ".join(words.group().split())
    if op.startswith(("not ", "is ")) and op not in OPERATORS and op not in _MEANT:
        # `not` or `is` followed by a value (`is "tea"`): the operator is the first word.
        first = words.group().split()[0]
        return first, rest[len(first):]
    return op, rest[words.end():]


def _unknown_operator(op: str, where: str, text: str) -> FilterError:
    meant = _MEANT.get(op.lower()) or (op.lower() if op.lower() in OPERATORS else None)
    if meant is None:
        close = difflib.get_close_matches(op.lower(), OPERATORS, n=1, cutoff=0.6)
        meant = close[0] if close else None
    hint = f' (did you mean "{meant}"?)' if meant else ""
    return FilterError(f"{where}: {json.dumps(op, ensure_ascii=False)} in {json.dumps(text, ensure_ascii=False)} "
                       f"is not an operator{hint}; use one of {_KNOWN}")


def parse_filter(text: object, where: str) -> PropertyFilter:
    """Parse one filter; `where` names it in error messages (e.g. `conditions[1].where[0]`)."""
    if not isinstance(text, str) or not text.strip():
        raise FilterError(f'{where}: expected a comparison such as properties.category == "coffee"')
    head = _HEAD.match(text)
    if not head:
        raise FilterError(f"{where}: {json.dumps(text, ensure_ascii=False)} is not a comparison: it starts with "
                          f'a property path, e.g. properties.category == "coffee"')
    path, rest = head.group("path"), head.group("rest")
    if not rest.strip():
        raise FilterError(f"{where}: {json.dumps(text, ensure_ascii=False)} has no operator after {path} "
                          f"(use one of {_KNOWN})")
    op, raw = _operator(rest)
    if op not in OPERATORS:
        raise _unknown_operator(op, where, text)
    if op[0].isalpha() and raw and not raw[0].isspace() and raw[0] not in "[\"'":
        raise _unknown_operator(op + raw.split(None, 1)[0], where, text)
    raw = raw.strip()
    if not path.startswith(("properties.", "traits.", "context.")) and path not in ("event", "name", "type"):
        path = "properties." + path  # `revenue > 50` reads the event's properties
    if not _PATH.match(path):
        raise FilterError(f"{where}: {path!r} is not a property path")
    if op == "exists":
        if raw:
            raise FilterError(f"{where}: exists takes no value")
        return PropertyFilter(path, op)
    if not raw:
        raise FilterError(f"{where}: {op} needs a value")
    try:
        value = load_json(raw, what="the value")
    except TooDeeplyNested as exc:
        raise FilterError(f"{where}: {exc}") from None
    except ValueError:
        if raw[0] in "[{":
            raise FilterError(f"{where}: {raw!r} is not a JSON value") from None
        if raw[0] in "=<>!~":
            raise _unknown_operator(op + raw.split(None, 1)[0].rstrip("\"'"), where, text) from None
        value = raw.strip("'\"")
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"{where}: {raw} is not a finite number")
    if op in ("in", "not in") and not isinstance(value, list):
        raise FilterError(f"{where}: {op} needs a list, e.g. [\"coffee\", \"tea\"]")
    if op in (">", ">=", "<", "<=") and (_number(value) is None or not math.isfinite(_number(value))):
        raise FilterError(f"{where}: {op} needs a number, got {raw}")
    return PropertyFilter(path, op, value)


def parse_filters(items: object, where: str) -> tuple[PropertyFilter, ...]:
    if items is None:
        return ()
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list):
        raise FilterError(f"{where}: expected a list of comparisons")
    return tuple(parse_filter(item, f"{where}[{i}]") for i, item in enumerate(items))


@dataclass(frozen=True)
class EventMatcher:
    """An event name plus filters. Contacts keep a counter per matcher that segments use."""

    event: str
    filters: tuple[PropertyFilter, ...] = ()

    @property
    def key(self) -> str:
        """Stable across definitions and deploys: the same matcher shares one counter."""
        if not self.filters:
            return self.event
        canonical = json.dumps([self.event, sorted(f.text for f in self.filters)], ensure_ascii=False)
        return "m:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def matches(self, event_name: str, event: dict) -> bool:
        return event_name == self.event and all(f.matches(event) for f in self.filters)
