"""Broadcasts: one-off messages to a segment (domain/messaging/broadcasts.py)."""
from __future__ import annotations

from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.definition_kinds.base import DefinitionKind, Reading
from chalicelib.domain.messaging.broadcasts import parse_broadcast


class BroadcastKind(DefinitionKind):
    name = "broadcast"
    plural = "broadcasts"
    catalog_attribute = "broadcasts"
    provides_names = ("broadcast",)

    def parse(self, document):
        return parse_broadcast(document)

    def draft(self, document):
        # Validating a draft checks what it would send and when; naming it comes later.
        return {"name": document.get("id") or "draft", **document}

    def read(self, document):
        # The segment and campaign a broadcast names are checked with its other problems.
        try:
            value = parse_broadcast(document)
        except DefinitionError as exc:
            return Reading(None, list(exc.problems), tuple(exc.references))
        return Reading(value, [], tuple(self.references(value)))

    def references(self, value):
        from chalicelib.domain.definition_errors import Reference

        refs = [Reference("segment", value.segment, "segment")]
        if value.campaign:
            refs.append(Reference("campaign", value.campaign, "campaign"))
        return refs


KIND = BroadcastKind()
