"""How a contact's document is stored: a compact form of its JSON, deflated against a preset
dictionary, and the processed-message digests as raw bytes beside it.

A contact item is written on every event and DynamoDB bills a write unit per started KB, so
bytes here are the processing cost. What makes a profile small:

- **A preset dictionary.** A profile is a few hundred bytes of JSON whose keys repeat across
  every contact (the part names, the Segment e-commerce event names, the context keys,
  browser user-agent fragments). Deflate on its own cannot use that for a document this
  short; primed with the dictionary it starts with them already known. A dictionary is
  fixed: a stored body starts with the version byte of the layout it was written with, and
  a changed dictionary or layout gets a new version (old bodies stay readable).
- **Digests outside the JSON.** The digests of recently applied messageIds are random, so
  they do not compress: as base64 inside JSON they cost 11 bytes each, as raw bytes 6.
- **Times as numbers (layout 2).** A profile holds some forty millisecond timestamps (first
  and last time per counter, memberships, time checks, trait times). As ISO text each is 24
  characters; layout 2 stores `created_at` as epoch milliseconds and the others as
  milliseconds after it, which deflate packs into about half the bytes. Only canonical
  `YYYY-MM-DDTHH:MM:SS.mmmZ` text is converted, so every value reads back exactly as it was
  written; anything else stays text.
- **Counters and effects as short arrays (layout 2).** A counter `{"total","first","last"}`
  is stored `[total, first, last]` (its other keys in a fourth element), and the outbox's
  effects in the shapes the segment rules write them (a Mercurio internal event, a
  membership move, a recheck) are stored without their constant fields. An effect or
  counter of any other shape is stored as it is.

The contact (`chalicelib.domain.contact.Contact`) never sees any of this: `encode_body` takes
and `decode_body` gives the document `Contact.to_document` makes.
"""
from __future__ import annotations

import base64
import json
import re
import zlib
from datetime import datetime, timedelta, timezone

DIGEST_BYTES = 6

# Fragments a profile repeats, least useful first (deflate finds the end of a dictionary
# cheapest). Never edit a published version: add a new one and keep reading the old.
_DICTIONARY_V1 = "".join([
    # browsers (last_context.userAgent)
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36",
    "Firefox/125.0",
    # Segment's e-commerce spec and Mercurio's own events (counter names)
    '"Products Searched":{"total":', '"Product List Viewed":{"total":', '"Promotion Clicked":{"total":',
    '"Promotion Viewed":{"total":', '"Checkout Started":{"total":', '"Cart Viewed":{"total":',
    '"Product Removed":{"total":', '"Signed Up":{"total":', '"Form Submitted":{"total":',
    '"Email Opened":{"total":', '"Email Link Clicked":{"total":', '"Email Delivered":{"total":',
    '"Message Sent":{"total":', '"Score Changed":{"total":', '"Stage Changed":{"total":',
    '"Consent Updated":{"total":', '"Segment Exited":{"total":', '"Segment Entered":{"total":',
    '"Order Completed":{"total":', '"Product Added":{"total":', '"Product Viewed":{"total":',
    '"Page Viewed":{"total":',
    # the parts' keys, in the order they are written
    '{"status":"granted","at":"', '{"status":"denied","at":"', '"source":"',
    '"campaigns":{},"next_check":null,"checks":{},"outbox":[],"merged_from":[]}',
    '"score":{},"stage":null,"tags":[],"rfm":{},"persona":null,"consent":{},',
    '"segments":{},', '{"since":"', '"filtered":{},', '"groups":{},',
    '"last_context":{"at":"', '"locale":"en-US","timezone":"Europe/', '"ip":"', '"userAgent":"',
    '"device":"desktop"', '"device":"mobile"', '"page_url":"https://', '"campaign":{"name":"',
    '"source":"newsletter","medium":"email"',
    '"first":"', '"last":"', ',"days":{"', '},"recent":[1', ']},',
    '{"created_at":"', '"traits":{"email":"', '"firstName":"', '"lastName":"', '"phone":"+',
    '"trait_ts":{"email":"', '"identifiers":["anon:', '"email:', '"user:', '"first_seen":"', '"last_seen":"',
    '"counters":{', 'T00:00:00.000Z"', '.000Z","',
]).encode("utf-8")

# Layout 2: the same browsers, then the compact layout's own fragments, in the order the
# parts are written (the most common last).
_DICTIONARY_V2 = "".join([
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Firefox/125.0",
    '{"status":"granted","at":"', '{"status":"denied","at":"',
    '"campaign":{"name":"', '"source":"newsletter","medium":"email"', '"ip":"', '"clickId":"',
    '"phone":"+', '"firstName":"', '"lastName":"',
    # the outbox's compact effects
    '["event","Score Changed",{', '["event","Stage Changed",{', '["event","Tag Added",{',
    '["event","Contacts Merged",{"merged":["', '["schedule",', '["leave","', '["enter","',
    '["event","Segment Exited",{"segment_id":"', '"segment_name":"', '"mercurio-',
    '["event","Segment Entered",{"segment_id":"',
    # the parts, in the order they are written
    '"score":{},"stage":null,"tags":[],"rfm":{},"persona":null,"segments":{', '":{"since":',
    '},"checks":{"', '},"next_check":', ',"campaigns":{},"consent":{},"outbox":[', ']}',
    '"filtered":{"m:', ',{"days":{"', '},"recent":[1', '"as_of":"',
    '"Promotion Viewed":[', '"Product Removed":[', '"Signed Up":[', '"Form Submitted":[',
    '"Email Opened":[', '"Email Link Clicked":[', '"Email Delivered":[', '"Message Sent":[',
    '"Score Changed":[', '"Stage Changed":[', '"Consent Updated":[', '"Promotion Clicked":[',
    '"Checkout Started":[', '"Order Completed":[', '"Cart Viewed":[', '"Products Searched":[',
    '"Product List Viewed":[', '"Product Added":[', '"Page Viewed":[', '"Segment Exited":[',
    '"Segment Entered":[', '"Product Viewed":[',
    '"last_context":{"at":', ',"locale":"en-US","timezone":"America/', ',"locale":"en-GB","timezone":"Europe/',
    '","userAgent":"', '"device":"mobile"', '"device":"desktop","page_url":"https://',
    '"groups":{},"merged_from":[],"counters":{"',
    '{"created_at":', ',"traits":{"email":"', '"trait_ts":{"email":', '"identifiers":["anon:',
    '","email:', '","user:', '"],"first_seen":', ',"last_seen":',
]).encode("utf-8")

DICTIONARIES = {1: _DICTIONARY_V1, 2: _DICTIONARY_V2}
CURRENT = 2

# -- layout 2: times as numbers, counters and effects as arrays -------------------------------

_ISO_MS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
# The constant fields of the events Mercurio emits about a contact (`internal_event`): an
# effect is stored compact only when its event has exactly these, so a changed emitter can
# never be read back wrong, only stored in full.
_INTERNAL_CONTEXT = {"library": {"name": "mercurio", "version": "1"}}
_INTERNAL_SOURCE = "mercurio"
_INTERNAL_KEYS = {"type", "event", "properties", "contactId", "messageId", "timestamp", "originalTimestamp",
                  "receivedAt", "context", "source"}


def _to_ms(text: str) -> int | None:
    """Epoch milliseconds of canonical ISO text (it reads back as the same text), None for
    anything else."""
    if not isinstance(text, str) or not _ISO_MS.fullmatch(text):
        return None
    try:
        ms = (datetime.fromisoformat(text[:-1] + "+00:00") - _EPOCH) // _MS
        return ms if _from_ms(ms) == text else None
    except (ValueError, OverflowError):
        return None


def _from_ms(ms: int) -> str:
    moment = _EPOCH + ms * _MS
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Times:
    """Timestamps stored as milliseconds after a base (the contact's creation)."""

    def __init__(self, base: int):
        self.base = base

    def pack(self, value):
        ms = _to_ms(value)
        return value if ms is None else ms - self.base

    def unpack(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return _from_ms(value + self.base)
        return value


def _pack_counter(entry, t: _Times):
    if not isinstance(entry, dict) or not {"total", "first", "last"} <= set(entry):
        return entry
    if _to_ms(entry["first"]) is None or _to_ms(entry["last"]) is None:
        return entry
    rest = {k: v for k, v in entry.items() if k not in ("total", "first", "last")}
    return [entry["total"], t.pack(entry["first"]), t.pack(entry["last"])] + ([rest] if rest else [])


def _unpack_counter(stored, t: _Times):
    if not isinstance(stored, list):
        return stored
    entry = {"total": stored[0], "first": t.unpack(stored[1]), "last": t.unpack(stored[2])}
    if len(stored) > 3:
        entry.update(stored[3])
    return entry


def _pack_effect(effect, contact_id: str | None, t: _Times):
    kind = effect.get("kind") if isinstance(effect, dict) else None
    if kind in ("enter", "leave") and set(effect) == {"kind", "segment_id", "since"} \
            and _to_ms(effect["since"]) is not None:
        return [kind, effect["segment_id"], t.pack(effect["since"])]
    if kind == "schedule" and set(effect) == {"kind", "at"} and _to_ms(effect["at"]) is not None:
        return [kind, t.pack(effect["at"])]
    if kind == "event" and set(effect) == {"kind", "event"}:
        event = effect["event"]
        if isinstance(event, dict) and set(event) == _INTERNAL_KEYS and event["type"] == "track" \
                and event["contactId"] == contact_id and event["context"] == _INTERNAL_CONTEXT \
                and event["source"] == _INTERNAL_SOURCE and _to_ms(event["timestamp"]) is not None \
                and event["timestamp"] == event["originalTimestamp"] == event["receivedAt"]:
            return [kind, event["event"], event["properties"], event["messageId"], t.pack(event["timestamp"])]
    return effect


def _unpack_effect(stored, contact_id: str | None, t: _Times):
    if not isinstance(stored, list):
        return stored
    kind = stored[0]
    if kind in ("enter", "leave"):
        return {"kind": kind, "segment_id": stored[1], "since": t.unpack(stored[2])}
    if kind == "schedule":
        return {"kind": kind, "at": t.unpack(stored[1])}
    ts = t.unpack(stored[4])
    return {"kind": "event", "event": {
        "type": "track", "event": stored[1], "properties": stored[2], "contactId": contact_id,
        "messageId": stored[3], "timestamp": ts, "originalTimestamp": ts, "receivedAt": ts,
        "context": json.loads(json.dumps(_INTERNAL_CONTEXT)), "source": _INTERNAL_SOURCE}}


def _map_values(value, fn):
    return {k: fn(v) for k, v in value.items()} if isinstance(value, dict) else value


def _with_key(value, key: str, fn):
    """A dict whose `key` (if present) is mapped by fn; anything else as it is."""
    if isinstance(value, dict) and key in value:
        return {**value, key: fn(value[key])}
    return value


def compact(document: dict, contact_id: str | None = None) -> dict:
    """The document as layout 2 stores it (see the module's notes)."""
    doc = dict(document)
    base = _to_ms(doc.get("created_at"))
    t = _Times(base or 0)
    if base is not None:
        doc["created_at"] = base  # absolute: the base of every other time
    for key in ("first_seen", "last_seen", "next_check"):
        if key in doc:
            doc[key] = t.pack(doc[key])
    for key in ("trait_ts", "checks"):
        if key in doc:
            doc[key] = _map_values(doc[key], t.pack)
    if "last_context" in doc:
        doc["last_context"] = _with_key(doc["last_context"], "at", t.pack)
    for key in ("groups", "segments"):
        if key in doc:
            field = "at" if key == "groups" else "since"
            doc[key] = _map_values(doc[key], lambda v, f=field: _with_key(v, f, t.pack))
    for key in ("counters", "filtered"):
        if key in doc:
            doc[key] = _map_values(doc[key], lambda e: _pack_counter(e, t))
    if isinstance(doc.get("outbox"), list):
        doc["outbox"] = [_pack_effect(e, contact_id, t) for e in doc["outbox"]]
    return doc


def expand(stored: dict, contact_id: str | None = None) -> dict:
    """The document a layout 2 body holds, exactly as `compact` was given it."""
    doc = dict(stored)
    created = doc.get("created_at")
    t = _Times(created if isinstance(created, int) and not isinstance(created, bool) else 0)
    if "created_at" in doc:
        doc["created_at"] = t.unpack(0) if isinstance(created, int) and not isinstance(created, bool) else created
    for key in ("first_seen", "last_seen", "next_check"):
        if key in doc:
            doc[key] = t.unpack(doc[key])
    for key in ("trait_ts", "checks"):
        if key in doc:
            doc[key] = _map_values(doc[key], t.unpack)
    if "last_context" in doc:
        doc["last_context"] = _with_key(doc["last_context"], "at", t.unpack)
    for key in ("groups", "segments"):
        if key in doc:
            field = "at" if key == "groups" else "since"
            doc[key] = _map_values(doc[key], lambda v, f=field: _with_key(v, f, t.unpack))
    for key in ("counters", "filtered"):
        if key in doc:
            doc[key] = _map_values(doc[key], lambda e: _unpack_counter(e, t))
    if isinstance(doc.get("outbox"), list):
        doc["outbox"] = [_unpack_effect(e, contact_id, t) for e in doc["outbox"]]
    return doc


# -- bodies -----------------------------------------------------------------------------------

def _deflate(raw: bytes, version: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARIES[version])
    return bytes([version]) + packer.compress(raw) + packer.flush()


def encode_body(document: dict, contact_id: str | None = None, version: int = CURRENT) -> bytes:
    """`contact_id`: the contact the document belongs to (its effects name it; layout 2 does
    not store it twice)."""
    stored = compact(document, contact_id) if version >= 2 else document
    return _deflate(json.dumps(stored, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), version)


def decode_body(body: bytes, contact_id: str | None = None) -> dict:
    version, data = body[0], body[1:]
    unpacker = zlib.decompressobj(-15, DICTIONARIES[version])
    stored = json.loads((unpacker.decompress(data) + unpacker.flush()).decode("utf-8"))
    return expand(stored, contact_id) if version >= 2 else stored


def pack_digests(digests: list[str]) -> bytes:
    # Digests of another length come from an older layout: they only protected old messages.
    return b"".join(base64.urlsafe_b64decode(d) for d in digests if len(d) == 8)


def unpack_digests(packed: bytes) -> list[str]:
    return [base64.urlsafe_b64encode(packed[i:i + DIGEST_BYTES]).decode()
            for i in range(0, len(packed), DIGEST_BYTES)]
