"""Journeys: multi-step automations written in the journey language (domain/journeys/language.py).

NOT EXECUTED YET. A journey can be stored, versioned, validated and simulated for one
contact (POST /v1/admin/journeys/{id}/simulate), but nothing runs it: the stream handler
enrolls nobody, no wait is scheduled and no message is sent for a stored journey. The kind
has no event matchers, no back-fill and no members, and nothing reads `catalog.journeys`
on the stream. Wiring the enrollment runner (docs/JOURNEYS.md) is the next step.

References checked with the other definitions: the segments a journey names (trigger,
entry, exit, goal, branch conditions), the personas, RFM classes, stages and campaigns its
branch conditions name, and the destinations its notify nodes call. The templates its send
nodes name are not checked here: templates are not definitions (services/templates.py keeps
them), so no definition provides them; the sender fails a message whose template is missing
(`template_missing`).
"""
from __future__ import annotations

from chalicelib.domain.definition_errors import DefinitionError, Reference
from chalicelib.domain.definition_kinds.base import DRAFT_ID, DefinitionKind, Reading
from chalicelib.domain.journeys.language import Journey, read_journey

NOT_DEFINITIONS = ("template",)  # what a journey names that the definition registry does not hold


def _checked(references) -> tuple[Reference, ...]:
    return tuple(r for r in references if r.kind not in NOT_DEFINITIONS)


class JourneyKind(DefinitionKind):
    name = "journey"
    plural = "journeys"
    catalog_attribute = "journeys"
    provides_names = ("journey",)

    def parse(self, document) -> Journey:
        return read_journey(document)[0]

    def read(self, document) -> Reading:
        try:
            journey, references = read_journey(document)
        except DefinitionError as exc:
            return Reading(None, list(exc.problems), _checked(exc.references))
        return Reading(journey, [], _checked(references))

    def references(self, value: Journey):
        return _checked(read_journey(value.source_doc)[1])

    def draft(self, document: dict) -> dict:
        # A draft is checked for what it would do; its id and name come when it is stored.
        return {"id": DRAFT_ID, **document}


KIND = JourneyKind()
