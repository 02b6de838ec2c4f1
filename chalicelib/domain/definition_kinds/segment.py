"""Segments: who belongs, re-evaluated as events arrive; back-filled over existing contacts
when a version is stored; members removed (with a Segment Exited event) when deleted."""
from __future__ import annotations

from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.definition_kinds.base import DRAFT_ID, DefinitionKind, Reading
from chalicelib.domain.segments.index import SegmentIndex
from chalicelib.domain.segments.language import find_cycles, parse_segment, read_segment


class SegmentKind(DefinitionKind):
    name = "segment"
    plural = "segments"
    catalog_attribute = "segments"
    backfill = True
    has_members = True
    provides_names = ("segment",)

    def parse(self, document):
        return parse_segment(document)

    def read(self, document):
        try:
            definition, references = read_segment(document)
        except DefinitionError as exc:
            return Reading(None, list(exc.problems), tuple(exc.references))
        return Reading(definition, [], references)

    def draft(self, document):
        # A preview asks "who would this be?": naming the segment comes later.
        return {"name": document.get("id") or DRAFT_ID, **document}

    def check_together(self, values, changed):
        refs = {sid: [r for r in d.segment_references() if r.segment_id in values] for sid, d in values.items()}
        problems = []
        for _, _, loop in find_cycles(refs):
            for i, sid in enumerate(loop[:-1]):
                if sid in changed:
                    at = next((r.at for r in refs[sid] if r.segment_id == loop[i + 1]), "conditions")
                    seen_from = loop[i:-1] + loop[:i + 1]  # told from the segment being changed
                    problems.append((sid, f"{at}: segments form a cycle: {' → '.join(seen_from)}"))
        return problems

    def catalogue(self, catalog, values):
        catalog.segments = values
        catalog.index = SegmentIndex(list(values.values()))

    def matchers(self, value):
        return value.matchers()


KIND = SegmentKind()
