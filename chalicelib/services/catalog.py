"""The catalog: every current definition parsed once and indexed for the stream handler.

What each kind parses lands where its module says (definition_kinds): `catalog.segments`,
`.campaigns`, `.destinations` (id → parsed), `.scoring`, `.rfm`, `.personas` (one each, or
None), plus the segment `index` and the filtered event matchers of every kind. Parsing
happens when a definition is stored (to reject a bad one) and when a Lambda container
(re)loads the catalog. A stored row that no longer parses (a newer release tightened
validation) is kept out of the catalog and listed in `unreadable`, with its problems.
"""
from __future__ import annotations

from chalicelib.domain import rfm
from chalicelib.domain.definition_kinds import REGISTRY, KindRegistry
from chalicelib.domain.segments.filters import EventMatcher


class Catalog:
    def __init__(self, versions: dict | None = None, unreadable: list[dict] | None = None,
                 kinds: KindRegistry = REGISTRY):
        self.versions: dict = versions or {}  # (kind, id) -> version
        self.unreadable: list[dict] = unreadable or []  # {kind, id, version, problems}
        self.rfm_thresholds: rfm.Thresholds | None = None
        self._kinds = kinds
        self._matchers: dict[str, dict[str, EventMatcher]] = {}
        for kind in kinds:
            kind.catalogue(self, {})

    @classmethod
    def of(cls, kinds: KindRegistry = REGISTRY, **parsed) -> "Catalog":
        """A catalog of already parsed definitions, named by the kind's catalog attribute:
        `Catalog.of(segments={"id": definition}, scoring=config)` (previews and tests)."""
        catalog = cls(kinds=kinds)
        by_attribute = {kind.catalog_attribute: kind for kind in kinds}
        for attribute, value in parsed.items():
            kind = by_attribute.get(attribute)
            if kind is None:
                raise TypeError(f"no kind of definition is catalogued as {attribute!r}")
            catalog.add(kind, {"default": value} if kind.singleton else value)
        return catalog

    def add(self, kind, values: dict) -> None:
        """Land one kind's parsed definitions (id → value) in the catalog."""
        kind.catalogue(self, values)
        for value in values.values():
            for matcher in kind.matchers(value):
                if matcher.filters:
                    self._matchers.setdefault(matcher.event, {})[matcher.key] = matcher

    def matchers_for(self, event_name: str) -> list[EventMatcher]:
        """Filtered matchers whose counters this event may move (segments and scoring)."""
        return list(self._matchers.get(event_name, {}).values())

    def journey_interest(self) -> tuple[set[str], set[str]]:
        """The event names and segment ids the live journeys listen to (computed once)."""
        cached = self.__dict__.get("_journey_interest")
        if cached is None:
            from chalicelib.domain.journeys.interest import events_heard, segments_heard

            journeys = list((getattr(self, "journeys", None) or {}).values())
            cached = (events_heard(journeys), segments_heard(journeys))
            self.__dict__["_journey_interest"] = cached
        return cached

    def unreadable_ids(self, kind: str) -> set[str]:
        """Stored definitions of this kind that no longer parse: their state on contacts
        (a segment's memberships) is kept, not dropped as if they had been deleted."""
        return {row["id"] for row in self.unreadable if row["kind"] == kind}


def build_catalog(rows: list[dict], rfm_thresholds: dict | None = None, kinds: KindRegistry = REGISTRY) -> Catalog:
    """Rows as the definition store returns them."""
    parsed: dict[str, dict] = {kind.name: {} for kind in kinds}
    versions, unreadable = {}, []
    for row in rows:
        reading = kinds.read_row(row)
        if reading.ok:
            parsed[row["kind"]][row["id"]] = reading.value
            versions[(row["kind"], row["id"])] = row["version"]
        else:
            unreadable.append({"kind": row.get("kind"), "id": row.get("id"), "version": row.get("version"),
                               "problems": reading.problems})
    catalog = Catalog(versions, unreadable, kinds)
    for kind in kinds:
        catalog.add(kind, parsed[kind.name])
    if rfm_thresholds and catalog.rfm is not None:
        catalog.rfm_thresholds = rfm.Thresholds.from_dict(rfm_thresholds)
    return catalog
