"""The contact body's stored layouts: layout 2 (times as numbers, counters and effects as
arrays) reads back exactly what was written, and layout 1 bodies still read."""
from __future__ import annotations

import json

from chalicelib.adapters.contact_document import CURRENT, compact, decode_body, encode_body
from chalicelib.domain.contact import Contact, apply_event
from chalicelib.services.segmentation import internal_event
from chalicelib.domain.events import parse_timestamp

CONTACT_ID = "5d1f0c2a9b8e4f7d8c6b5a4e3d2c1b0a"


def shop_document() -> dict:
    contact = Contact(id=CONTACT_ID, created_at="2026-09-01T08:15:02.417Z")
    names = ["Product Viewed", "Page Viewed", "Product Added", "Order Completed", "Cart Viewed"]
    for i in range(40):
        apply_event(contact, {
            "type": "track", "event": names[i % len(names)], "messageId": f"m{i}",
            "timestamp": f"2026-11-{1 + i % 28:02d}T1{i % 10}:0{i % 6}:1{i % 9}.{i * 7 % 1000:03d}Z",
            "context": {"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "locale": "de-DE",
                        "timezone": "Europe/Berlin", "page": {"url": "https://shop.example.com/p/1"}}},
            retention=lambda name: (3, True) if name == "Cart Viewed" else (0, False))
    contact.traits = {"email": "ada@example.com", "plan": "pro", "signed": "2026-01-01T00:00:00.000Z"}
    contact.trait_ts = {"email": "2026-09-01T08:15:02.417Z", "plan": "2026-10-02T11:00:00.000Z",
                        "signed": "2026-10-02T11:00:00.000Z"}
    contact.segments = {"buyers": {"since": "2026-11-03T10:00:00.123Z"}}
    contact.checks = {"buyers": "2027-02-01T10:00:00.000Z", "carts": "2026-11-30T00:00:00Z"}  # second: not canonical
    contact.next_check = "2026-11-30T00:00:00Z"
    contact.groups = {"acme": {"traits": {"name": "Acme"}, "at": "2026-10-05T09:00:00.000Z"}}
    contact.consent = {"email": {"status": "granted", "at": "2026-09-01T08:15:02.417Z", "source": "form"}}
    contact.filtered = {"m:abc": {"total": 2, "first": "2026-11-01T10:00:00.000Z",
                                  "last": "2026-11-02T10:00:00.000Z", "as_of": "2026-11-02T10:00:01.000Z"}}
    now = parse_timestamp("2026-11-29T10:00:00.250Z")
    entered = internal_event(CONTACT_ID, "Segment Entered", {"segment_id": "buyers", "segment_name": "Buyers"},
                             now, "m39")
    moved = internal_event("a-merged-loser", "Segment Exited", {"segment_id": "carts", "segment_name": "Carts"},
                           now, "m38")
    contact.outbox = [
        {"kind": "event", "event": entered},
        {"kind": "enter", "segment_id": "buyers", "since": "2026-11-29T10:00:00.250Z"},
        {"kind": "event", "event": moved},  # names the loser it came from: stored as it is
        {"kind": "leave", "segment_id": "carts", "since": "2026-11-29T10:00:00.250Z", "contact_id": "a-merged-loser"},
        {"kind": "schedule", "at": "2026-11-30T00:00:00.000Z"},
    ]
    doc = contact.to_document()
    doc.pop("recent")  # stored beside the body
    return doc


def test_layout_2_reads_back_exactly_what_was_written():
    doc = shop_document()
    body = encode_body(doc, CONTACT_ID)
    assert body[0] == CURRENT == 2
    assert decode_body(body, CONTACT_ID) == doc
    assert json.dumps(decode_body(body, CONTACT_ID), sort_keys=True) == json.dumps(doc, sort_keys=True)


def test_times_are_numbers_after_the_creation_and_other_text_stays_text():
    doc = shop_document()
    stored = compact(doc, CONTACT_ID)
    assert stored["created_at"] == 1788250502417  # epoch milliseconds of 2026-09-01T08:15:02.417Z
    assert stored["trait_ts"]["email"] == 0 and stored["trait_ts"]["plan"] > 0
    assert stored["checks"]["carts"] == "2026-11-30T00:00:00Z"  # not canonical: kept as written
    assert stored["next_check"] == "2026-11-30T00:00:00Z"
    assert stored["traits"]["signed"] == "2026-01-01T00:00:00.000Z"  # a trait's value is never converted
    assert stored["consent"] == doc["consent"]
    product_viewed = stored["counters"]["Product Viewed"]
    assert isinstance(product_viewed, list) and len(product_viewed) == 3
    cart = stored["counters"]["Cart Viewed"]
    assert set(cart[3]) == {"days", "recent"}
    assert stored["filtered"]["m:abc"][3] == {"as_of": "2026-11-02T10:00:01.000Z"}


def test_effects_of_the_segment_rules_are_stored_without_their_constant_fields():
    doc = shop_document()
    outbox = compact(doc, CONTACT_ID)["outbox"]
    entered = doc["outbox"][0]["event"]
    assert outbox[0] == ["event", "Segment Entered", entered["properties"], entered["messageId"],
                         outbox[0][4]]
    assert outbox[1] == ["enter", "buyers", outbox[0][4]]
    assert outbox[2] == doc["outbox"][2] and outbox[3] == doc["outbox"][3]  # another contact's: as they are
    assert outbox[4][0] == "schedule"
    # Without the contact's id, no event can be taken for one of its own: all stored whole.
    assert compact(doc)["outbox"][0] == doc["outbox"][0]


def test_an_internal_event_of_another_shape_is_stored_whole():
    doc = shop_document()
    doc["outbox"][0]["event"]["context"] = {"library": {"name": "mercurio", "version": "2"}}
    assert compact(doc, CONTACT_ID)["outbox"][0] == doc["outbox"][0]
    assert decode_body(encode_body(doc, CONTACT_ID), CONTACT_ID) == doc


def test_a_layout_1_body_still_reads():
    doc = shop_document()
    old = encode_body(doc, version=1)
    assert old[0] == 1
    assert decode_body(old, CONTACT_ID) == doc
    assert json.loads(json.dumps(decode_body(old)))["created_at"] == "2026-09-01T08:15:02.417Z"


def test_layout_2_is_smaller_than_layout_1():
    doc = shop_document()
    assert len(encode_body(doc, CONTACT_ID)) < 0.9 * len(encode_body(doc, CONTACT_ID, version=1))


def test_a_document_without_a_canonical_creation_time_keeps_absolute_times():
    doc = shop_document()
    doc["created_at"] = ""
    stored = compact(doc, CONTACT_ID)
    assert stored["created_at"] == "" and stored["trait_ts"]["email"] == 1788250502417
    assert decode_body(encode_body(doc, CONTACT_ID), CONTACT_ID) == doc
