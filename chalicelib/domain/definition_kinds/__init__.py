"""Every kind of definition Mercurio knows, registered here and nowhere else.

A new kind (a template, a journey, a broadcast) is one module in this package with a
DefinitionKind subclass, and one line below: the definition service, the catalog, the
admin routes, the definition files and the S3 uploads all take their kinds from here.
"""
from __future__ import annotations

from chalicelib.domain.definition_kinds import broadcast, campaign, content, destination, journey, personas, rfm, \
    scoring, segment, trigger
from chalicelib.domain.definition_kinds.base import DefinitionKind, Reading
from chalicelib.domain.definition_kinds.registry import KindRegistry

REGISTRY = KindRegistry([
    segment.KIND,
    campaign.KIND,
    destination.KIND,
    scoring.KIND,
    rfm.KIND,
    personas.KIND,
    content.KIND,
    broadcast.KIND,
    trigger.KIND,
    journey.KIND,  # stored, validated and simulated; not executed yet
])

__all__ = ["REGISTRY", "DefinitionKind", "KindRegistry", "Reading"]
