"""Destinations: where segment entries are pushed as they happen (a CRM webhook).

The signing secret never sits in a definition: the document names an SSM parameter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.domain.definition_errors import DefinitionError, expect_list, expect_mapping, expect_name, \
    unknown_fields

FIELDS = ("id", "name", "description", "url", "secret_parameter", "segments")
_PARAMETER = re.compile(r"^/mercurio/[a-z0-9-]+/destinations/[A-Za-z0-9_.-]{1,200}$")


@dataclass(frozen=True)
class Destination:
    id: str
    name: str
    url: str
    secret_parameter: str
    segments: tuple[str, ...]

    def wants(self, segment_id: str) -> bool:
        return segment_id in self.segments


def parse_destination(doc: object) -> Destination:
    problems: list[str] = []
    mapping = expect_mapping(doc, "", problems)
    if mapping is None:
        raise DefinitionError(problems)
    unknown_fields(mapping, FIELDS, "", problems)
    definition_id = expect_name(mapping.get("id"), "id", problems)
    name = mapping.get("name") or definition_id
    url = mapping.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        problems.append(f"url: {url!r} is not an http(s) URL")
    parameter = mapping.get("secret_parameter")
    if not isinstance(parameter, str) or not _PARAMETER.match(parameter):
        problems.append("secret_parameter: the name of an SSM SecureString parameter under "
                        "/mercurio/<stage>/destinations/, e.g. /mercurio/prod/destinations/crm")
    segments = expect_list(mapping.get("segments"), "segments", problems) or []
    if not segments and "segments" in mapping:
        problems.append("segments: list at least one segment id")
    for i, segment in enumerate(segments):
        if not isinstance(segment, str) or not segment:
            problems.append(f"segments[{i}]: {segment!r} is not a segment id")
    if problems:
        raise DefinitionError(problems)
    return Destination(definition_id, str(name), url, parameter, tuple(segments))
