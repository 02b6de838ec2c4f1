"""How a definition document (scoring, RFM, personas) reports what is wrong with it.

Validation collects every problem before raising, so a marketer fixes a document in one
pass. Each problem names its place in the document and the fault, e.g.
`rules[2].points: "ten" is not a number`.
"""
from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from datetime import timedelta

import yaml


class DocumentLoader(yaml.SafeLoader):
    """YAML as marketers write it: `2026-01-31` stays the text it was (dates are parsed by
    the definitions themselves, in the contact's time zone), so a document always has a
    JSON form to be stored and returned.

    Aliases (`*name`) are refused: a few hundred bytes of nested aliases unfold into
    billions of nodes for whatever walks the document next (the "billion laughs"), and a
    definition has no need of them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"aliases (*{event.anchor}) are not accepted in definitions; "
                                              "write the value out", event.start_mark)
        return super().compose_node(parent, index)


DocumentLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str | bytes) -> object:
    return yaml.load(text, Loader=DocumentLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class Reference:
    """A definition naming something another definition provides: a segment naming another
    segment (`kind` "segment") or a campaign, a persona, an RFM class or a lifecycle stage.
    `at` is the place in the referring document, for messages."""

    kind: str
    name: str
    at: str


class DefinitionError(ValueError):
    """A definition document that cannot be used; `problems` lists every fault found.

    `references` are the names the document uses that other definitions must provide, as
    far as the document could be read: they are checked with the other problems, so every
    problem of a document is named at once."""

    def __init__(self, problems: list[str], references: tuple[Reference, ...] = ()):
        self.problems = list(problems)
        self.references = tuple(references)
        super().__init__("; ".join(self.problems) if self.problems else "invalid definition")


def load_document(doc: object) -> object:
    """A document as parsed data: a mapping passes through, YAML or JSON text is loaded."""
    if isinstance(doc, (str, bytes)):
        try:
            return load_yaml(doc)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            place = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise DefinitionError([f"document: {place}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    return doc


def show(value: object) -> str:
    """A value as the marketer wrote it: strings quoted, everything else as JSON would."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def unknown_fields(mapping: dict, allowed: tuple[str, ...], where: str, problems: list[str]) -> None:
    """One problem per field the document does not define, with the nearest known name."""
    for key in mapping:
        if key in allowed:
            continue
        label = f"{where}.{key}" if where else str(key)
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f' (did you mean "{close[0]}"?)' if close else f" (known fields: {', '.join(allowed)})"
        problems.append(f"{label}: unknown field{hint}")


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def expect_mapping(value: object, where: str, problems: list[str]) -> dict | None:
    if isinstance(value, dict):
        return value
    problems.append(f"{where or 'document'}: expected a mapping, got {show(value)}")
    return None


def expect_list(value: object, where: str, problems: list[str]) -> list | None:
    if isinstance(value, list):
        return value
    problems.append(f"{where}: expected a list, got {show(value)}")
    return None


def expect_name(value: object, where: str, problems: list[str]) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if value is None:
        problems.append(f"{where}: is required")
    else:
        problems.append(f"{where}: {show(value)} is not a name")
    return None


def expect_duration(value: object, where: str, problems: list[str]) -> timedelta | None:
    """A positive duration such as `30 days`, or a problem saying why not."""
    from chalicelib.domain.durations import parse_duration

    try:
        period = parse_duration(value)
    except (ValueError, TypeError) as exc:
        problems.append(f"{where}: {exc}")  # says why, e.g. months differ in length
        return None
    if period <= timedelta(0):
        problems.append(f"{where}: {show(value)} must be longer than zero")
        return None
    return period
