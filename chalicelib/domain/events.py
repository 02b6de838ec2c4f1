"""Tracking events in Segment's shape: validation, limits and server-side stamping.

The contract is Segment's HTTP Tracking API, so any Segment SDK works unchanged. A rejected
event carries a reason a developer can act on; in a batch the good events are kept.
"""
from __future__ import annotations

import ipaddress
import json
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from chalicelib.domain.identity import InvalidIdentifier, make_identifier
from chalicelib.domain.nesting import nesting_depth

EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")
SHORT_PATHS = {"i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias"}
MAX_EVENT_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_MESSAGE_ID = 100
MAX_NAME = 200
# A whole request may nest deeper than one event (batch → list → event), but never near the
# parser's recursion limit: past this the request is refused as a whole.
MAX_REQUEST_DEPTH = 64
OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
TIMESTAMP_FIELDS = ("timestamp", "originalTimestamp", "sentAt")


class RequestError(ValueError):
    """The request as a whole is unusable (bad JSON, too large…)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class EventRejected(ValueError):
    errors: list[str]

    def __str__(self) -> str:
        return "; ".join(self.errors)


@dataclass(frozen=True)
class StampContext:
    """What the server knows about the request that carried the event."""

    received_at: datetime
    ip: str | None = None
    user_agent: str | None = None
    batch_sent_at: object = None
    batch_context: dict | None = None
    source: str = "default"
    ip_truncate: bool = False
    max_depth: int = 12
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))


def iso(dt: datetime) -> str:
    """Millisecond ISO-8601 in UTC with a Z, the format Segment uses."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_timestamp(value: object) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an ISO-8601 date-time string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 date-time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _inflate(raw: bytes, encoding: str) -> bytes:
    """Decompress a gzip/deflate body, refusing anything that inflates past the limit."""
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise RequestError(f"unsupported Content-Encoding {encoding!r}: send gzip or an uncompressed body", 415)
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(raw, MAX_REQUEST_BYTES + 1)
    except zlib.error as exc:
        raise RequestError(f"body is not valid {encoding} data ({exc})") from None
    if len(body) > MAX_REQUEST_BYTES or inflater.unconsumed_tail:
        raise RequestError(f"decompressed body is larger than {MAX_REQUEST_BYTES} bytes (500 KB)", 413)
    return body


def decode_body(raw: bytes | str | None, content_type: str | None, content_encoding: str | None = None) -> dict:
    """Parse a request body into a JSON object, or explain why not."""
    encoding = (content_encoding or "").strip().lower()
    if encoding and encoding != "identity" and raw:
        if len(raw) > MAX_REQUEST_BYTES:
            raise RequestError(f"request body is {len(raw)} bytes; the limit is {MAX_REQUEST_BYTES} bytes (500 KB)", 413)
        raw = _inflate(raw, encoding)
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in ("application/json", "text/plain", ""):
        raise RequestError(
            f"unsupported Content-Type {media!r}: send application/json (or text/plain, as analytics.js does)",
            status=415,
        )
    if raw is None or len(raw) == 0:
        raise RequestError("empty body: expected a JSON object")
    if len(raw) > MAX_REQUEST_BYTES:
        raise RequestError(f"request body is {len(raw)} bytes; the limit is {MAX_REQUEST_BYTES} bytes (500 KB)", 413)
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        body = json.loads(text)
    except RecursionError:
        raise RequestError(f"body is nested more than {MAX_REQUEST_DEPTH} levels deep") from None
    except UnicodeDecodeError:
        raise RequestError("body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(body, dict):
        raise RequestError(f"body must be a JSON object, got {type(body).__name__ if body is not None else 'null'}")
    if nesting_depth(body, MAX_REQUEST_DEPTH) > MAX_REQUEST_DEPTH:
        raise RequestError(f"body is nested more than {MAX_REQUEST_DEPTH} levels deep")
    return body


def _truncate_ip(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def _id_field(event: dict, name: str, errors: list[str]) -> str | None:
    value = event.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        errors.append(f"{name} must be a string")
        return None
    try:
        return make_identifier("user", value).partition(":")[2]
    except InvalidIdentifier as exc:
        errors.append(f"{name} {exc}")
        return None


def normalise_event(raw: object, ctx: StampContext, forced_type: str | None = None) -> dict:
    """Validate one event and return it stamped; raise EventRejected listing every problem."""
    if not isinstance(raw, dict):
        raise EventRejected([f"event must be a JSON object, got {type(raw).__name__}"])
    errors: list[str] = []
    # Depth first: measuring the size serialises the event, which recurses once per level.
    if nesting_depth(raw, ctx.max_depth + 1) > ctx.max_depth:
        raise EventRejected([f"event is nested more than {ctx.max_depth} levels deep"])
    size = len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_EVENT_BYTES:
        raise EventRejected([f"event is {size} bytes; the limit is {MAX_EVENT_BYTES} bytes (32 KB)"])

    etype = forced_type or raw.get("type")
    if not isinstance(etype, str) or etype not in EVENT_TYPES:
        errors.append(f"type must be one of {', '.join(EVENT_TYPES)}" + (f", got {etype!r}" if etype else ""))
        raise EventRejected(errors)

    before = len(errors)
    user_id = _id_field(raw, "userId", errors)
    anonymous_id = _id_field(raw, "anonymousId", errors)
    if user_id is None and anonymous_id is None and len(errors) == before:
        errors.append("userId or anonymousId is required")

    for name in OBJECT_FIELDS:
        value = raw.get(name)
        if value is not None and not isinstance(value, dict):
            errors.append(f"{name} must be an object, got {type(value).__name__}")

    message_id = raw.get("messageId")
    if message_id is not None and (not isinstance(message_id, str) or not message_id.strip()):
        errors.append("messageId must be a non-empty string")
    elif isinstance(message_id, str) and len(message_id) > MAX_MESSAGE_ID:
        errors.append(f"messageId is longer than {MAX_MESSAGE_ID} characters")

    stamps: dict[str, datetime] = {}
    for name in TIMESTAMP_FIELDS:
        if raw.get(name) is not None:
            try:
                stamps[name] = parse_timestamp(raw[name])
            except ValueError as exc:
                errors.append(f"{name} {exc}")
    if "sentAt" not in stamps and ctx.batch_sent_at is not None:
        try:
            stamps["sentAt"] = parse_timestamp(ctx.batch_sent_at)
        except ValueError as exc:
            errors.append(f"sentAt {exc}")

    event_name = raw.get("event")
    page_name = raw.get("name")
    if etype == "track":
        if not isinstance(event_name, str) or not event_name.strip():
            errors.append("track needs event, the name of the action (a non-empty string)")
        elif len(event_name) > MAX_NAME:
            errors.append(f"event is longer than {MAX_NAME} characters")
    if etype in ("page", "screen") and page_name is not None:
        if not isinstance(page_name, str):
            errors.append("name must be a string")
        elif len(page_name) > MAX_NAME:
            errors.append(f"name is longer than {MAX_NAME} characters")
    group_id = None
    if etype == "group":
        before = len(errors)
        group_id = _id_field(raw, "groupId", errors)
        if group_id is None and len(errors) == before:
            errors.append("group needs groupId")
    previous_id = None
    if etype == "alias":
        before = len(errors)
        previous_id = _id_field(raw, "previousId", errors)
        if previous_id is None and len(errors) == before:
            errors.append("alias needs previousId")
        if user_id is None and raw.get("userId") in (None, ""):
            errors.append("alias needs userId")

    if errors:
        raise EventRejected(errors)

    received = ctx.received_at
    original = stamps.get("originalTimestamp") or stamps.get("timestamp")
    sent_at = stamps.get("sentAt")
    if original is not None and sent_at is not None:
        # Correct the device clock: the delay between event and send is trusted, the
        # device's absolute time is not.
        corrected = received - (sent_at - original)
        timestamp = min(corrected, received)
    elif original is not None:
        timestamp = original
    else:
        timestamp = received

    context = dict(ctx.batch_context or {})
    context.update(raw.get("context") or {})
    ip = context.get("ip") if isinstance(context.get("ip"), str) else ctx.ip
    if ip:
        context["ip"] = _truncate_ip(ip) if ctx.ip_truncate else ip
    if ctx.user_agent and "userAgent" not in context:
        context["userAgent"] = ctx.user_agent

    event: dict = {
        "type": etype,
        "messageId": message_id.strip() if isinstance(message_id, str) else ctx.new_id(),
        "timestamp": iso(timestamp),
        "originalTimestamp": iso(original) if original is not None else None,
        "receivedAt": iso(received),
        "sentAt": iso(sent_at) if sent_at is not None else None,
        "context": context,
        "source": ctx.source,
    }
    if user_id is not None:
        event["userId"] = user_id
    if anonymous_id is not None:
        event["anonymousId"] = anonymous_id
    if etype == "track":
        event["event"] = event_name.strip()
        event["properties"] = raw.get("properties") or {}
    elif etype in ("page", "screen"):
        if page_name:
            event["name"] = page_name
        if isinstance(raw.get("category"), str):
            event["category"] = raw["category"]
        event["properties"] = raw.get("properties") or {}
    elif etype == "identify":
        event["traits"] = raw.get("traits") or context.get("traits") or {}
    elif etype == "group":
        event["groupId"] = group_id
        event["traits"] = raw.get("traits") or {}
    elif etype == "alias":
        event["previousId"] = previous_id
    if raw.get("integrations"):
        event["integrations"] = raw["integrations"]
    return {k: v for k, v in event.items() if v is not None}


def event_key(event: dict) -> tuple[str, str]:
    """(partition, sort) built only from values an SDK retry repeats exactly."""
    if event.get("userId") is not None:
        pk = f"user:{event['userId']}"
    elif event.get("anonymousId") is not None:
        pk = f"anon:{event['anonymousId']}"
    else:
        pk = event["partition"]
    when = event.get("originalTimestamp") or event["receivedAt"]
    return pk, f"{when}#{event['messageId']}"


def split_batch(body: dict) -> list:
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise RequestError("batch must be a list of events")
    if len(batch) == 0:
        raise RequestError("batch is empty")
    if len(batch) > MAX_BATCH_EVENTS:
        raise RequestError(f"batch has {len(batch)} events; the limit is {MAX_BATCH_EVENTS}", 413)
    return batch


def retention_ttl(received_at: datetime, days: int) -> int:
    return int((received_at + timedelta(days=days)).timestamp())
