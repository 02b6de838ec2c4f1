"""Email campaigns: offers and attribution windows that sort recipients into six groups."""
from __future__ import annotations

from chalicelib.domain.definition_kinds.base import DefinitionKind
from chalicelib.domain.engagement import parse_campaign


class CampaignKind(DefinitionKind):
    name = "campaign"
    plural = "campaigns"
    catalog_attribute = "campaigns"
    provides_names = ("campaign",)

    def parse(self, document):
        return parse_campaign(document)


KIND = CampaignKind()
