"""Audiences out: a segment exported to S3 (CSV of chosen traits, or the hashed customer
list ad platforms match on) behind a signed link. (Segment entries reach CRMs through the
effects queue: services/handlers.py and services/deliveries.py.)

An export is an `audience-export` job (services/jobs.py): each slice reads one page of
members, their contacts in batched reads, and writes their rows as one part in S3; the slice
that reads the last page composes the header and the parts into the export file. A small
audience finishes within the admin request; a large one goes on in the scheduled jobs Lambda.
"""
from __future__ import annotations

import itertools
import re

from chalicelib.domain.audiences import csv_rows, hashed_audience_rows
from chalicelib.domain.events import iso
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.jobs import JobError
from chalicelib.services.ports import Clock, MembershipStore

FORMATS = ("csv", "audience")
LINK_SECONDS = 3600
PAGE_SIZE = 500  # members per slice of an export job
BATCH_SIZE = 100  # contacts per batched read (DynamoDB's BatchGetItem limit)
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

    def check_export(self, params: dict) -> dict:
        """The parameters of an `audience-export` job, checked before it starts:
        {"segment": id, "format": "csv" | "audience", "traits": [names]}."""
        segment_id, fmt, traits = params.get("segment"), params.get("format", "csv"), params.get("traits") or []
        if not isinstance(segment_id, str) or not segment_id:
            raise BadQuery("an audience export needs the segment id")
        if self.definitions.get("segment", segment_id) is None:
            raise NotFound(f"no segment {segment_id!r}")
        if fmt not in FORMATS:
            raise BadQuery(f"format must be one of {', '.join(FORMATS)}")
        if not isinstance(traits, list) or not all(isinstance(t, str) and _TRAIT.match(t) for t in traits):
            raise BadQuery("traits must be a list of trait names")
        return {"segment": segment_id, "format": fmt, "traits": traits}

    def export_slice(self, export_id: str, params: dict, cursor: str | None, partial: dict | None,
                     page_size: int | None = None) -> dict:
        """One slice of an `audience-export` job: one page of members, their contacts read in
        batches of `BATCH_SIZE`, their rows written as the next part. The slice that reads
        the last page composes the parts into the export and returns its answer as `result`."""
        segment_id, fmt, traits = params["segment"], params["format"], params["traits"]
        if self.definitions.get("segment", segment_id) is None:
            raise JobError(f"no segment {segment_id!r}: it was deleted during the export")
        # Only counters: the job record must stay small however many parts there are.
        partial = dict(partial or {"stamp": iso(self.clock.now()).replace(":", "").replace(".", ""),
                                   "members_read": 0, "skipped": 0, "parts": 0, "rows": 0})
        prefix = f"exports/{segment_id}"
        members, cursor = self.memberships.members(segment_id, page_size or PAGE_SIZE, cursor)
        contacts = self._live_contacts([row["contact_id"] for row in members])
        if fmt == "csv":
            rows = csv_rows(contacts, traits)
        else:
            rows = hashed = hashed_audience_rows(contacts)
        data_rows = list(itertools.islice(rows, 1, None))  # the header is written once, by the composition
        if fmt != "csv":
            partial["skipped"] += hashed.skipped
        if data_rows:
            # Numbered from what is recorded: a slice run again rewrites its own part.
            part = self.exporter.write_part(prefix, export_id, partial["parts"] + 1, data_rows)
            partial["parts"] += 1
            partial["rows"] += part.rows
        partial["members_read"] += len(members)
        step = {"cursor": cursor, "partial": partial,
                "progress": {"members_read": partial["members_read"], "parts": partial["parts"],
                             "rows": partial["rows"]}}
        if cursor:
            return step
        header = next(iter(csv_rows([], traits) if fmt == "csv" else hashed_audience_rows([])))
        # The exporter names the file `<name>.csv` itself.
        result = self.exporter.export_parts(prefix, f"{segment_id}-{fmt}-{partial['stamp']}", header,
                                            export_id, partial["parts"], partial["rows"])
        answer = {"segment_id": segment_id, "format": fmt, "key": result.key, "rows": result.rows,
                  "bytes": result.bytes, "url": self.exporter.signed_url(result.key, LINK_SECONDS),
                  "expires_in": LINK_SECONDS}
        if fmt != "csv":
            answer["skipped_without_identifier"] = partial["skipped"]
        step["result"] = answer
        return step

    def _live_contacts(self, contact_ids: list[str]) -> list:
        """The members' contacts in member order, one batched read per `BATCH_SIZE` ids;
        merged-away and vanished contacts are left out."""
        contacts = []
        for start in range(0, len(contact_ids), BATCH_SIZE):
            chunk = contact_ids[start:start + BATCH_SIZE]
            found = self.repo.get_many(chunk)
            contacts.extend(c for c in (found.get(i) for i in chunk) if c is not None and not c.merged_into)
        return contacts
