"""Audiences out: a segment exported to S3 (CSV of chosen traits, or the hashed customer
list ad platforms match on) behind a signed link. (Segment entries reach CRMs through the
effects queue: services/handlers.py and services/deliveries.py.)"""
from __future__ import annotations

import re
from typing import Iterator

from chalicelib.domain.audiences import csv_rows, hashed_audience_rows
from chalicelib.domain.events import iso
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.ports import Clock, MembershipStore

FORMATS = ("csv", "audience")
LINK_SECONDS = 3600
_TRAIT = re.compile(r"^[A-Za-z0-9_.$-]{1,100}$")


class AudienceExports:
    def __init__(self, memberships: MembershipStore, repo, exporter, definitions, clock: Clock):
        self.memberships = memberships
        self.repo = repo
        self.exporter = exporter
        self.definitions = definitions
        self.clock = clock

    def members_page(self, segment_id: str, limit: int, cursor: str | None) -> dict:
        """One page of a segment's members, as the admin API lists them."""
        if self.definitions.get("segment", segment_id) is None:
            raise NotFound(f"no segment {segment_id!r}")
        try:
            rows, next_cursor = self.memberships.members(segment_id, limit, cursor)
        except (ValueError, KeyError, TypeError):
            raise BadQuery("cursor is not one this API returned") from None
        page = {"segment_id": segment_id, "members": rows}
        if next_cursor:
            page["next_cursor"] = next_cursor
        return page

    def _members(self, segment_id: str) -> Iterator:
        cursor = None
        while True:
            rows, cursor = self.memberships.members(segment_id, 500, cursor)
            for row in rows:
                contact = self.repo.get(row["contact_id"])
                if contact is not None and not contact.merged_into:
                    yield contact
            if not cursor:
                return

    def export(self, segment_id: str, fmt: object, traits: object) -> dict:
        if self.definitions.get("segment", segment_id) is None:
            raise NotFound(f"no segment {segment_id!r}")
        if fmt not in FORMATS:
            raise BadQuery(f"format must be one of {', '.join(FORMATS)}")
        if not isinstance(traits, list) or not all(isinstance(t, str) and _TRAIT.match(t) for t in traits):
            raise BadQuery("traits must be a list of trait names")
        stamp = iso(self.clock.now()).replace(":", "").replace(".", "")
        if fmt == "csv":
            rows, skipped = csv_rows(self._members(segment_id), traits), None
        else:
            rows = hashed_audience_rows(self._members(segment_id))
            skipped = rows
        # The exporter names the file `<name>.csv` itself.
        result = self.exporter.export(f"exports/{segment_id}", f"{segment_id}-{fmt}-{stamp}", rows)
        answer = {"segment_id": segment_id, "format": fmt, "key": result.key, "rows": result.rows,
                  "bytes": result.bytes, "url": self.exporter.signed_url(result.key, LINK_SECONDS),
                  "expires_in": LINK_SECONDS}
        if skipped is not None:
            answer["skipped_without_identifier"] = skipped.skipped
        return answer
