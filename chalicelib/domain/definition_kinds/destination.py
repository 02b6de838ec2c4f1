"""Destinations: where segment entries are pushed (a CRM webhook); each names segments."""
from __future__ import annotations

from chalicelib.domain.definition_errors import DefinitionError, Reference
from chalicelib.domain.definition_kinds.base import DefinitionKind, Reading
from chalicelib.domain.destinations import parse_destination


def _segment_references(document: object) -> tuple[Reference, ...]:
    segments = document.get("segments") if isinstance(document, dict) else None
    if not isinstance(segments, list):
        return ()
    return tuple(Reference("segment", s, f"segments[{i}]") for i, s in enumerate(segments)
                 if isinstance(s, str) and s)


class DestinationKind(DefinitionKind):
    name = "destination"
    plural = "destinations"
    catalog_attribute = "destinations"
    provides_names = ("destination",)

    def parse(self, document):
        return parse_destination(document)

    def save_problems(self, document, allow_private_addresses):
        if allow_private_addresses:
            return []
        try:
            parse_destination(document, allow_private=False)
        except DefinitionError as exc:
            return list(exc.problems)
        return []

    def read(self, document):
        # The segments a destination names are checked even when other fields are wrong.
        try:
            value = parse_destination(document)
        except DefinitionError as exc:
            return Reading(None, list(exc.problems), _segment_references(document))
        return Reading(value, [], _segment_references(document))


KIND = DestinationKind()
