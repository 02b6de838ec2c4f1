"""RFM: recency, frequency and monetary classes that segments name (`rfm: champions`)."""
from __future__ import annotations

from chalicelib.domain import rfm
from chalicelib.domain.definition_kinds.base import DefinitionKind


class RfmKind(DefinitionKind):
    name = "rfm"
    plural = "rfm"
    catalog_attribute = "rfm"
    singleton = True
    provides_names = ("rfm class",)

    def parse(self, document):
        return rfm.parse_rfm(document)

    def provides(self, definition_id, value):
        return {("rfm class", c.name.lower()) for c in value.classes} if value is not None else set()


KIND = RfmKind()
