"""Ingest: Segment's HTTP Tracking API → validated, stamped events appended to the event store.

Runs on the request path, so it does one thing: validate and append with batched writes.
Identity and profile work happens later, driven by the store's stream.
"""
from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from typing import Callable

from chalicelib.domain.events import (
    EventRejected,
    RequestError,
    StampContext,
    decode_body,
    event_key,
    normalise_event,
    retention_ttl,
    split_batch,
)
from chalicelib.domain.nesting import nesting_depth
from chalicelib.domain.sources import Source, find_source
from chalicelib.services.ports import Clock, EventStore, StoredEvent


class Unauthorized(Exception):
    status = 401


class OriginNotAllowed(Exception):
    status = 403


@dataclass(frozen=True)
class TrackingRequest:
    body: bytes | None
    content_type: str | None
    authorization: str | None = None
    origin: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    event_type: str | None = None  # None for /v1/batch
    content_encoding: str | None = None


@dataclass
class IngestResult:
    accepted: int
    rejected: list[dict] = field(default_factory=list)
    duplicates: int = 0
    capacity_units: float = 0.0
    source: Source | None = None

    @property
    def status(self) -> int:
        return 200 if self.accepted or self.duplicates else 400

    def response(self) -> dict:
        body: dict = {"success": self.status == 200, "accepted": self.accepted}
        if self.duplicates:
            body["duplicates"] = self.duplicates
        if self.rejected:
            body["rejected"] = self.rejected
            if self.status != 200:
                first = self.rejected[0]
                body["error"] = "; ".join(first["errors"]) if len(self.rejected) == 1 else (
                    f"all {len(self.rejected)} events were rejected; see rejected"
                )
        return body


def write_key_from_basic_auth(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


class IngestService:
    def __init__(
        self,
        store: EventStore,
        sources: tuple[Source, ...],
        clock: Clock,
        ttl_days: int = 395,
        ip_truncate: bool = False,
        max_depth: int = 12,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ):
        self.store = store
        self.sources = sources
        self.clock = clock
        self.ttl_days = ttl_days
        self.ip_truncate = ip_truncate
        self.max_depth = max_depth
        self.new_id = new_id

    def authenticate(self, request: TrackingRequest, body: dict | None) -> Source:
        key = write_key_from_basic_auth(request.authorization)
        if key is None and body is not None and isinstance(body.get("writeKey"), str):
            key = body["writeKey"]
        source = find_source(self.sources, key)
        if source is None:
            raise Unauthorized(
                "unknown write key" if key else
                "missing write key: send it as the Basic auth user name or as writeKey in the body"
            )
        if not source.allows_origin(request.origin):
            raise OriginNotAllowed(f"origin {request.origin} is not allowed for this write key")
        return source

    def ingest(self, request: TrackingRequest) -> IngestResult:
        basic_key = write_key_from_basic_auth(request.authorization)
        if basic_key is not None:
            self.authenticate(request, None)  # fail fast, before reading the body
        body = decode_body(request.body, request.content_type, request.content_encoding)
        source = self.authenticate(request, body)

        received = self.clock.now()
        raws = split_batch(body) if request.event_type is None else [body]
        batch_context = body.get("context") if request.event_type is None else None
        if batch_context is not None and not isinstance(batch_context, dict):
            raise RequestError("context must be an object")
        # The batch's context is copied into every event, one level below the event itself.
        if batch_context is not None and nesting_depth(batch_context, self.max_depth) > self.max_depth - 1:
            raise RequestError(f"context is nested more than {self.max_depth - 1} levels deep")
        ctx = StampContext(
            received_at=received,
            ip=request.ip,
            user_agent=request.user_agent,
            batch_sent_at=body.get("sentAt") if request.event_type is None else None,
            batch_context=batch_context,
            source=source.name,
            ip_truncate=self.ip_truncate,
            max_depth=self.max_depth,
            new_id=self.new_id,
        )
        result = IngestResult(accepted=0, source=source)
        to_store: dict[tuple[str, str], StoredEvent] = {}
        ttl = retention_ttl(received, self.ttl_days)
        for index, raw in enumerate(raws):
            try:
                event = normalise_event(raw, ctx, forced_type=request.event_type)
            except EventRejected as exc:
                entry: dict = {"index": index, "errors": exc.errors}
                if isinstance(raw, dict) and isinstance(raw.get("messageId"), str):
                    entry["messageId"] = raw["messageId"]
                result.rejected.append(entry)
                continue
            pk, sk = event_key(event)
            if (pk, sk) in to_store:
                result.duplicates += 1
                continue
            to_store[(pk, sk)] = StoredEvent(partition=pk, sort=sk, body=event, ttl=ttl)
        if to_store:
            outcome = self.store.append(list(to_store.values()))
            result.accepted = outcome.written
            result.capacity_units = outcome.capacity_units
        return result
