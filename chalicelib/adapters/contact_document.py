"""How a contact's document is stored: JSON, deflated against a preset dictionary, and the
processed-message digests as raw bytes beside it.

A contact item is written on every event and DynamoDB bills a write unit per started KB, so
bytes here are the processing cost. Two things make a profile small:

- **A preset dictionary.** A profile is a few KB of JSON whose keys repeat across every
  contact (`"total":`, `"first":"`, the part names, the Segment e-commerce event names, the
  context keys, browser user-agent fragments). Deflate on its own cannot use that for a
  document this short; primed with the dictionary it starts with them already known.
  The dictionary is fixed: a stored body starts with the version byte of the dictionary it
  was written with, and a changed dictionary gets a new version (old bodies stay readable).
- **Digests outside the JSON.** The 64 digests of recently applied messageIds are random,
  so they do not compress: as base64 inside JSON they cost 11 bytes each, as raw bytes 6.
"""
from __future__ import annotations

import base64
import json
import zlib

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

DICTIONARIES = {1: _DICTIONARY_V1}
CURRENT = 1


def encode_body(document: dict, version: int = CURRENT) -> bytes:
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARIES[version])
    return bytes([version]) + packer.compress(raw) + packer.flush()


def decode_body(body: bytes) -> dict:
    version, data = body[0], body[1:]
    unpacker = zlib.decompressobj(-15, DICTIONARIES[version])
    return json.loads((unpacker.decompress(data) + unpacker.flush()).decode("utf-8"))


def pack_digests(digests: list[str]) -> bytes:
    # Digests of another length come from an older layout: they only protected old messages.
    return b"".join(base64.urlsafe_b64decode(d) for d in digests if len(d) == 8)


def unpack_digests(packed: bytes) -> list[str]:
    return [base64.urlsafe_b64encode(packed[i:i + DIGEST_BYTES]).decode()
            for i in range(0, len(packed), DIGEST_BYTES)]
