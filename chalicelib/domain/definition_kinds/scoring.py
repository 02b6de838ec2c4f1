"""Lead scoring: points, grades, tags and the lifecycle stages segments name (`stage: mql`)."""
from __future__ import annotations

from chalicelib.domain import scoring
from chalicelib.domain.definition_kinds.base import DefinitionKind


class ScoringKind(DefinitionKind):
    name = "scoring"
    plural = "scoring"
    catalog_attribute = "scoring"
    singleton = True
    provides_names = ("stage",)

    def parse(self, document):
        return scoring.parse_scoring(document)

    def provides(self, definition_id, value):
        return {("stage", s.name.lower()) for s in value.stages} if value is not None else set()

    def matchers(self, value):
        return value.matchers()


KIND = ScoringKind()
