"""Personas: who a contact is, assigned from the profile; segments name them (`persona: x`).
A new version is back-filled: every contact's persona is assigned again."""
from __future__ import annotations

from chalicelib.domain import personas
from chalicelib.domain.definition_kinds.base import DefinitionKind


class PersonasKind(DefinitionKind):
    name = "personas"
    plural = "personas"
    catalog_attribute = "personas"
    singleton = True
    backfill = True
    provides_names = ("persona",)

    def parse(self, document):
        return personas.parse_personas(document)

    def provides(self, definition_id, value):
        return {("persona", p.id.lower()) for p in value.personas} if value is not None else set()


KIND = PersonasKind()
