"""The catalog: every current definition parsed once and indexed for the stream handler.

Definitions come in kinds: many `segment`s and `campaign`s, and one each of `scoring`,
`rfm` and `personas` (id `default`). Parsing happens when a definition is stored (to reject
a bad one) and when a Lambda container (re)loads the catalog.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from chalicelib.domain import engagement, personas, rfm, scoring
from chalicelib.domain.destinations import parse_destination
from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.segments.filters import EventMatcher
from chalicelib.domain.segments.index import SegmentIndex
from chalicelib.domain.segments.language import parse_segment, validate_catalog

KINDS = ("segment", "campaign", "destination", "scoring", "rfm", "personas")
SINGLETONS = ("scoring", "rfm", "personas")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def parse_document(kind: str, document: object):
    if kind == "segment":
        return parse_segment(document)
    if kind == "campaign":
        return engagement.parse_campaign(document)
    if kind == "destination":
        return parse_destination(document)
    if kind == "scoring":
        return scoring.parse_scoring(document)
    if kind == "rfm":
        return rfm.parse_rfm(document)
    if kind == "personas":
        return personas.parse_personas(document)
    raise DefinitionError([f"kind: unknown definition kind {kind!r} (use one of {', '.join(KINDS)})"])


def check_id(kind: str, definition_id: str) -> None:
    if kind in SINGLETONS:
        if definition_id != "default":
            raise DefinitionError([f"id: {kind} has one definition, with id 'default'"])
    elif not _ID.match(definition_id or ""):
        raise DefinitionError([f"id: {definition_id!r} must be lower-case letters, digits and dashes (max 64)"])


@dataclass
class Catalog:
    segments: dict = field(default_factory=dict)  # id -> SegmentDefinition
    campaigns: dict = field(default_factory=dict)  # id -> Campaign
    destinations: dict = field(default_factory=dict)  # id -> Destination
    scoring: object | None = None
    rfm: object | None = None
    personas: object | None = None
    rfm_thresholds: object | None = None
    versions: dict = field(default_factory=dict)  # (kind, id) -> version

    def __post_init__(self):
        self.index = SegmentIndex(list(self.segments.values()))
        self._scoring_matchers: dict[str, list[EventMatcher]] = {}
        if self.scoring is not None:
            for matcher in self.scoring.matchers():
                self._scoring_matchers.setdefault(matcher.event, []).append(matcher)

    def matchers_for(self, event_name: str) -> list[EventMatcher]:
        """Filtered matchers whose counters this event may move (segments and scoring)."""
        found = {m.key: m for m in self.index.matchers_for(event_name) if m.filters}
        found.update({m.key: m for m in self._scoring_matchers.get(event_name, []) if m.filters})
        return list(found.values())


def build_catalog(rows: list[dict], rfm_thresholds: dict | None = None) -> Catalog:
    """Rows as the definition store returns them. A row that no longer parses (a newer
    release tightened validation) is left out rather than stopping all processing."""
    parsed: dict = {kind: {} for kind in KINDS}
    versions = {}
    for row in rows:
        try:
            parsed[row["kind"]][row["id"]] = parse_document(row["kind"], row["document"])
            versions[(row["kind"], row["id"])] = row["version"]
        except (DefinitionError, KeyError):
            continue
    catalog = Catalog(
        segments=parsed["segment"],
        campaigns=parsed["campaign"],
        destinations=parsed["destination"],
        scoring=parsed["scoring"].get("default"),
        rfm=parsed["rfm"].get("default"),
        personas=parsed["personas"].get("default"),
        versions=versions,
    )
    if rfm_thresholds and catalog.rfm is not None:
        catalog.rfm_thresholds = rfm.Thresholds.from_dict(rfm_thresholds)
    return catalog


def validate_segments(existing: dict, candidate) -> None:
    """Catalog-level checks for a new or edited segment: references exist, no cycles."""
    segments = {**existing, candidate.id: candidate}
    problems = validate_catalog(list(segments.values()))
    if problems:
        raise DefinitionError(problems)
