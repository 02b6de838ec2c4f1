"""Which segments an update can change, so processing an event costs the same with 10 or 10,000 segments.

Every definition declares what it reads (events, traits, other segments, score, stage...).
The index inverts that once, into dictionaries: an event, a trait change or a new score
looks up its segments directly and never scans the catalog. It also orders evaluation
(a segment after the segments it reads) and lists the filtered event counters to keep.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Iterator

from chalicelib.domain.segments.filters import EventMatcher
from chalicelib.domain.segments.language import SegmentDefinition, validate_catalog

_NONE: frozenset[str] = frozenset()


class SegmentIndex:
    """Lookups over a catalog of segment definitions.

    The index is built whatever the catalog holds, so one stale definition never stops
    event processing: catalog problems (duplicate ids: the last wins; references to unknown
    segments: never members; cycles: ordered as if the closing reference were absent) are
    listed in `problems`. Definitions are checked with validate_catalog before being stored.
    """

    def __init__(self, definitions: Iterable[SegmentDefinition]):
        catalog = list(definitions)
        self.problems: list[str] = validate_catalog(catalog)
        self._definitions: dict[str, SegmentDefinition] = {d.id: d for d in catalog}
        readers: dict[tuple, set[str]] = defaultdict(set)  # ("event", "Order Completed") -> ids
        by_kind: dict[str, set[str]] = defaultdict(set)  # "consent" -> ids reading any channel
        matchers: dict[str, dict[str, EventMatcher]] = defaultdict(dict)
        exact: dict[tuple[str, str], int] = {}
        for d in self._definitions.values():
            for key, need in d.exact_times().items():
                exact[key] = max(exact.get(key, 0), need)
            for read in d.reads():
                readers[read].add(d.id)
                by_kind[read[0]].add(d.id)
            for m in d.matchers():
                matchers[m.event].setdefault(m.key, m)
        self._readers = {k: frozenset(v) for k, v in readers.items()}
        self._by_kind = {k: frozenset(v) for k, v in by_kind.items()}
        self._matchers = {event: tuple(by_key.values()) for event, by_key in matchers.items()}
        # What each counter keeps (see `retention`): exact times only as many as a windowed
        # count needs, and day buckets only beside them (their fallback).
        self._exact_times = exact
        self._depth = _depths({d.id: sorted({r.segment_id for r in d.segment_references()} & self._definitions.keys())
                               for d in self._definitions.values()})
        self.time_dependent_ids: frozenset[str] = frozenset(
            d.id for d in self._definitions.values() if d.time_dependent)

    # the catalog

    def __len__(self) -> int:
        return len(self._definitions)

    def __contains__(self, segment_id: object) -> bool:
        return segment_id in self._definitions

    def __iter__(self) -> Iterator[SegmentDefinition]:
        return iter(self._definitions.values())

    def get(self, segment_id: str) -> SegmentDefinition | None:
        return self._definitions.get(segment_id)

    # what an update can change

    def affected_by_event(self, event_name: str) -> frozenset[str]:
        """Segments with a condition on this event (message conditions included, by their event)."""
        return self._readers.get(("event", event_name), _NONE)

    def affected_by_traits(self, names: Iterable[str]) -> frozenset[str]:
        """Segments reading any of these traits (top-level names, as an identify writes them)."""
        found: set[str] = set()
        for name in names:
            found |= self._readers.get(("trait", name), _NONE)
        return frozenset(found)

    def affected_by(self, kind: str, key: str | None = None) -> frozenset[str]:
        """Segments reading a fact: kind is score, stage, tag, rfm, persona, consent, campaign,
        identifiers or segment; key narrows consent to a channel, campaign to a campaign id,
        segment to a segment id (without key: every segment reading that kind of fact)."""
        if key is None:
            return self._by_kind.get(kind, _NONE)
        return self._readers.get((kind, key), _NONE)

    def dependents(self, segment_ids: Iterable[str]) -> frozenset[str]:
        """Segments that read these segments, directly or through others."""
        found: set[str] = set()
        queue = list(segment_ids)
        while queue:
            for reader in self._readers.get(("segment", queue.pop()), _NONE):
                if reader not in found:
                    found.add(reader)
                    queue.append(reader)
        return frozenset(found)

    def evaluation_order(self, segment_ids: Iterable[str]) -> list[str]:
        """These segments, each after every segment it reads (directly or not); unknown ids dropped."""
        known = {s for s in segment_ids if s in self._definitions}
        return sorted(known, key=lambda s: (self._depth[s], s))

    def retention(self, kind: str, key: str) -> tuple[int, bool]:
        """What a contact keeps of a counter (kind "counter": an event name; "filtered": a
        matcher key): how many of the latest exact times, and whether per-day buckets.
        A counter no segment counts over a window beyond its latest occurrence keeps its
        total, first and last only. The buckets stand in for exact times a contact does not
        have yet (a count raised by a new definition, until its back-fill recounts them)."""
        need = self._exact_times.get((kind, key), 0)
        return need, need > 0

    def matchers_for(self, event_name: str) -> list[EventMatcher]:
        """The filtered matchers on this event: for each, a contact keeps a counter in
        contact.filtered[matcher.key]. Conditions without filters read contact.counters."""
        return list(self._matchers.get(event_name, ()))


def _depths(depends_on: dict[str, list[str]]) -> dict[str, int]:
    """0 for a segment that reads no segment, else one more than the deepest it reads.
    A reference that closes a cycle is ignored, so a bad catalog still gets an order."""
    depth: dict[str, int] = {}
    for root in sorted(depends_on):
        if root in depth:
            continue
        stack = [(root, iter(depends_on[root]))]
        on_path = {root}
        while stack:
            node, pending = stack[-1]
            for child in pending:
                if child not in depth and child not in on_path:
                    on_path.add(child)
                    stack.append((child, iter(depends_on[child])))
                    break
            else:
                stack.pop()
                on_path.discard(node)
                depth[node] = 1 + max((depth[c] for c in depends_on[node] if c in depth), default=-1)
    return depth
