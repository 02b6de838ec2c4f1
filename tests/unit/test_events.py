"""Event validation, limits and stamping (Segment's HTTP Tracking API contract)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from chalicelib.domain.events import (
    MAX_BATCH_EVENTS,
    EventRejected,
    RequestError,
    StampContext,
    decode_body,
    event_key,
    normalise_event,
    parse_timestamp,
    split_batch,
)

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


def ctx(**kw) -> StampContext:
    kw.setdefault("received_at", NOW)
    kw.setdefault("new_id", lambda: "generated-id")
    return StampContext(**kw)


def errors_of(raw, **kw) -> list[str]:
    with pytest.raises(EventRejected) as info:
        normalise_event(raw, ctx(**kw), kw.pop("forced_type", None) if "forced_type" in kw else None)
    return info.value.errors


@pytest.mark.parametrize("body,content_type,message,status", [
    (b"{not json", "application/json", "not valid JSON", 400),
    (b"[1,2]", "application/json", "must be a JSON object, got list", 400),
    (b"null", "text/plain", "got null", 400),
    (b"", "application/json", "empty body", 400),
    (b"\xff\xfe", "application/json", "not UTF-8", 400),
    (b"{}", "application/x-www-form-urlencoded", "unsupported Content-Type", 415),
    (b"{" + b" " * (500 * 1024) + b"}", "application/json", "limit is 512000 bytes", 413),
])
def test_unusable_bodies_are_explained(body, content_type, message, status):
    with pytest.raises(RequestError) as info:
        decode_body(body, content_type)
    assert message in str(info.value)
    assert info.value.status == status


def test_text_plain_and_charset_are_accepted():
    assert decode_body(b'{"a":1}', "text/plain;charset=UTF-8") == {"a": 1}
    assert decode_body(b'{"a":1}', "application/json; charset=utf-8") == {"a": 1}


def test_an_identity_is_required():
    assert errors_of({"type": "track", "event": "X"}) == ["userId or anonymousId is required"]


@pytest.mark.parametrize("raw,expected", [
    ({"type": "track", "anonymousId": "a"}, "track needs event"),
    ({"type": "track", "anonymousId": "a", "event": "  "}, "track needs event"),
    ({"type": "alias", "userId": "u"}, "alias needs previousId"),
    ({"type": "alias", "anonymousId": "a", "previousId": "p"}, "alias needs userId"),
    ({"type": "group", "userId": "u"}, "group needs groupId"),
    ({"type": "identify", "userId": "u", "traits": []}, "traits must be an object, got list"),
    ({"type": "track", "userId": "u", "event": "E", "properties": "x"}, "properties must be an object"),
    ({"type": "page", "userId": "u", "context": 3}, "context must be an object, got int"),
    ({"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"}, "timestamp 'yesterday' is not an ISO-8601"),
    ({"type": "track", "userId": "u", "event": "E", "sentAt": 5}, "sentAt must be an ISO-8601"),
    ({"type": "track", "userId": {"a": 1}, "event": "E"}, "userId must be a string"),
    ({"type": "track", "userId": "u", "event": "E", "messageId": ""}, "messageId must be a non-empty string"),
    ({"type": "shout", "userId": "u"}, "type must be one of identify, track, page, screen, group, alias, got 'shout'"),
    ({"type": "track", "userId": "u" * 300, "event": "E"}, "userId is longer than 256 characters"),
])
def test_each_rule_names_the_field(raw, expected):
    assert any(expected in e for e in errors_of(raw)), errors_of(raw)


def test_all_problems_are_listed_at_once():
    errors = errors_of({"type": "track", "properties": [], "timestamp": "nope"})
    assert len(errors) == 4  # no id, properties, timestamp, no event


def test_nesting_depth_is_bounded():
    deep: dict = {}
    node = deep
    for _ in range(20):
        node["x"] = {}
        node = node["x"]
    errors = errors_of({"type": "track", "userId": "u", "event": "E", "properties": deep}, max_depth=12)
    assert errors == ["event is nested more than 12 levels deep"]


def test_event_size_is_limited_to_32_kb():
    errors = errors_of({"type": "track", "userId": "u", "event": "E", "properties": {"x": "a" * 33_000}})
    assert "the limit is 32768 bytes" in errors[0]


def test_clock_skew_is_corrected_from_sent_at():
    # The device clock is 1 hour fast; the event happened 2 s before the batch was sent.
    event = normalise_event({
        "type": "track", "userId": "u", "event": "E",
        "timestamp": "2026-11-22T12:59:58.000Z", "sentAt": "2026-11-22T13:00:00.000Z",
    }, ctx())
    assert event["timestamp"] == "2026-11-22T11:59:58.000Z"
    assert event["originalTimestamp"] == "2026-11-22T12:59:58.000Z"
    assert event["receivedAt"] == "2026-11-22T12:00:00.000Z"


def test_batch_level_sent_at_applies_to_each_event():
    event = normalise_event({"type": "track", "userId": "u", "event": "E", "timestamp": "2026-11-22T10:00:00Z"},
                            ctx(batch_sent_at="2026-11-22T10:00:10Z"))
    assert event["timestamp"] == "2026-11-22T11:59:50.000Z"


def test_without_sent_at_the_client_timestamp_is_kept_and_without_any_received_at_is_used():
    e1 = normalise_event({"type": "track", "userId": "u", "event": "E", "timestamp": "2026-11-01T00:00:00+02:00"}, ctx())
    assert e1["timestamp"] == "2026-10-31T22:00:00.000Z"
    e2 = normalise_event({"type": "track", "userId": "u", "event": "E"}, ctx())
    assert e2["timestamp"] == e2["receivedAt"] == "2026-11-22T12:00:00.000Z"


def test_a_corrected_timestamp_never_lands_in_the_future():
    event = normalise_event({"type": "track", "userId": "u", "event": "E",
                             "timestamp": "2026-11-22T13:00:00Z", "sentAt": "2026-11-22T12:00:00Z"}, ctx())
    assert event["timestamp"] == "2026-11-22T12:00:00.000Z"


def test_message_id_is_generated_when_absent_and_kept_when_given():
    assert normalise_event({"type": "page", "anonymousId": "a"}, ctx())["messageId"] == "generated-id"
    assert normalise_event({"type": "page", "anonymousId": "a", "messageId": "m1"}, ctx())["messageId"] == "m1"


def test_ip_is_captured_and_can_be_truncated():
    e = normalise_event({"type": "page", "anonymousId": "a"}, ctx(ip="203.0.113.77"))
    assert e["context"]["ip"] == "203.0.113.77"
    e = normalise_event({"type": "page", "anonymousId": "a"}, ctx(ip="203.0.113.77", ip_truncate=True))
    assert e["context"]["ip"] == "203.0.113.0"
    e = normalise_event({"type": "page", "anonymousId": "a"}, ctx(ip="2001:db8:abcd:12::1", ip_truncate=True))
    assert e["context"]["ip"] == "2001:db8:abcd::"
    e = normalise_event({"type": "page", "anonymousId": "a", "context": {"ip": "198.51.100.9"}}, ctx(ip="10.0.0.1"))
    assert e["context"]["ip"] == "198.51.100.9"


def test_numeric_ids_become_strings():
    e = normalise_event({"type": "identify", "userId": 42, "traits": {"plan": "pro"}}, ctx())
    assert e["userId"] == "42"
    assert event_key(e)[0] == "user:42"


def test_the_storage_key_is_the_same_for_a_retry():
    raw = {"type": "track", "anonymousId": "a", "event": "E", "messageId": "m-1",
           "timestamp": "2026-11-22T11:00:00Z", "sentAt": "2026-11-22T11:00:01Z"}
    first = normalise_event(raw, ctx())
    retry = normalise_event({**raw, "sentAt": "2026-11-22T11:05:00Z"},
                            ctx(received_at=datetime(2026, 11, 22, 12, 5, tzinfo=timezone.utc)))
    assert event_key(first) == event_key(retry) == ("anon:a", "2026-11-22T11:00:00.000Z#m-1")


def test_forced_type_from_the_path_wins():
    e = normalise_event({"type": "identify", "userId": "u", "event": "Clicked"}, ctx(), forced_type="track")
    assert e["type"] == "track"


def test_batch_limits():
    with pytest.raises(RequestError, match="batch must be a list"):
        split_batch({"batch": {}})
    with pytest.raises(RequestError, match="batch is empty"):
        split_batch({"batch": []})
    with pytest.raises(RequestError) as info:
        split_batch({"batch": [{}] * (MAX_BATCH_EVENTS + 1)})
    assert info.value.status == 413 and "limit is 2500" in str(info.value)


def test_parse_timestamp_accepts_iso_variants():
    assert parse_timestamp("2026-11-22T12:00:00Z") == NOW
    assert parse_timestamp("2026-11-22T13:00:00+01:00") == NOW
    assert parse_timestamp("2026-11-22T12:00:00") == NOW
    with pytest.raises(ValueError):
        parse_timestamp("22/11/2026")


def test_a_realistic_analytics_js_event_stays_under_one_kilobyte_when_stored():
    raw = {"type": "page", "anonymousId": "2b7c4d7e-6a1f-4c2e-9d55-5a2b3f4e5d6c",
           "messageId": "ajs-next-1732280000000-6c1f8a4b-2b7c-4d7e-9a1f-4c2e9d555a2b",
           "timestamp": "2026-11-22T11:59:59.123Z", "sentAt": "2026-11-22T12:00:00.000Z",
           "properties": {"path": "/products/coffee", "url": "https://shop.example/products/coffee",
                          "title": "Coffee beans", "referrer": "https://shop.example/", "search": ""},
           "context": {"library": {"name": "analytics.js", "version": "next-1.84.3"},
                       "locale": "fr-FR", "page": {"path": "/products/coffee", "referrer": "https://shop.example/",
                                                   "title": "Coffee beans", "url": "https://shop.example/products/coffee"},
                       "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"}}
    from chalicelib.adapters.dynamodb_events import DynamoDBEventStore, write_units
    from chalicelib.services.ports import StoredEvent
    event = normalise_event(raw, ctx(ip="203.0.113.7"))
    pk, sk = event_key(event)
    item = DynamoDBEventStore.to_item(StoredEvent(pk, sk, event, 1))
    assert write_units(item) == 1, len(json.dumps(item))


def test_gzip_bodies_are_inflated():
    import gzip

    assert decode_body(gzip.compress(b'{"a": 1}'), "application/json", "gzip") == {"a": 1}
    assert decode_body(b'{"a": 1}', "application/json", "identity") == {"a": 1}


@pytest.mark.parametrize("body,encoding,message,status", [
    (b"not gzip at all", "gzip", "not valid gzip data", 400),
    (b"{}", "br", "unsupported Content-Encoding 'br'", 415),
])
def test_bad_compressed_bodies_are_explained(body, encoding, message, status):
    with pytest.raises(RequestError) as info:
        decode_body(body, "application/json", encoding)
    assert message in str(info.value) and info.value.status == status


def test_a_compression_bomb_is_refused_without_inflating_it_all():
    import gzip

    bomb = gzip.compress(b"{" + b" " * (50 * 1024 * 1024) + b"}")
    assert len(bomb) < 100_000
    with pytest.raises(RequestError) as info:
        decode_body(bomb, "application/json", "gzip")
    assert info.value.status == 413 and "decompressed body is larger" in str(info.value)
