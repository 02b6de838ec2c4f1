"""The ingest use case: authentication, origins, partial batches, de-duplication."""
from __future__ import annotations

import base64
import json

import pytest

from chalicelib.domain.events import RequestError
from chalicelib.domain.sources import Source, parse_sources
from chalicelib.services.ingest import IngestService, OriginNotAllowed, TrackingRequest, Unauthorized
from tests.unit.fakes import FakeClock, FakeEventStore

SOURCES = parse_sources([
    {"name": "web", "write_key": "web-key-123", "origins": ["https://shop.example", "https://www.shop.example"]},
    {"name": "server", "write_key": "server-key-1", "origins": ["*"]},
])


@pytest.fixture
def store():
    return FakeEventStore()


@pytest.fixture
def service(store):
    return IngestService(store, SOURCES, FakeClock())


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def req(body, event_type=None, **kw) -> TrackingRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    kw.setdefault("content_type", "application/json")
    return TrackingRequest(body=raw, event_type=event_type, **kw)


def test_write_key_in_basic_auth_or_body(service, store):
    service.ingest(req({"anonymousId": "a", "event": "E"}, "track", authorization=basic("server-key-1")))
    service.ingest(req({"writeKey": "server-key-1", "anonymousId": "a", "event": "F"}, "track",
                       content_type="text/plain"))
    assert [e.body["event"] for e in store.inserted] == ["E", "F"]
    assert all(e.body["source"] == "server" for e in store.inserted)


@pytest.mark.parametrize("authorization,body,message", [
    (None, {"anonymousId": "a", "event": "E"}, "missing write key"),
    (basic("nope-nope"), {"anonymousId": "a", "event": "E"}, "unknown write key"),
    (None, {"writeKey": "nope-nope", "anonymousId": "a", "event": "E"}, "unknown write key"),
    ("Bearer web-key-123", {"anonymousId": "a", "event": "E"}, "missing write key"),
])
def test_unknown_or_missing_key_is_401_and_stores_nothing(service, store, authorization, body, message):
    with pytest.raises(Unauthorized, match=message):
        service.ingest(req(body, "track", authorization=authorization))
    assert store.items == {}


def test_a_bad_basic_key_fails_before_the_body_is_read(service):
    with pytest.raises(Unauthorized):
        service.ingest(req(b"{not json", "track", authorization=basic("wrong-key-1")))


def test_browser_origins_are_checked_per_source(service, store):
    ok = req({"writeKey": "web-key-123", "anonymousId": "a", "event": "E"}, "track", origin="https://SHOP.example")
    assert service.ingest(ok).accepted == 1
    with pytest.raises(OriginNotAllowed):
        service.ingest(req({"writeKey": "web-key-123", "anonymousId": "a", "event": "E"}, "track",
                           origin="https://evil.example"))
    assert len(store.items) == 1


def test_a_batch_keeps_the_good_events_and_reports_the_bad(service, store):
    result = service.ingest(req({"writeKey": "server-key-1", "batch": [
        {"type": "track", "userId": "u", "event": "Good", "messageId": "m1"},
        {"type": "track", "userId": "u", "messageId": "m2"},
        "not an object",
        {"type": "identify", "anonymousId": "a", "traits": {"x": 1}},
    ]}))
    assert result.status == 200
    body = result.response()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    assert body["rejected"][0]["messageId"] == "m2"
    assert "track needs event" in body["rejected"][0]["errors"][0]
    assert len(store.items) == 2


def test_a_batch_with_only_bad_events_is_a_400(service):
    result = service.ingest(req({"writeKey": "server-key-1", "batch": [{"type": "track", "userId": "u"}]}))
    assert result.status == 400
    assert "track needs event" in result.response()["error"]


def test_a_message_id_sent_twice_is_stored_once(service, store):
    event = {"type": "track", "userId": "u", "event": "E", "messageId": "dup", "timestamp": "2026-11-22T11:00:00Z"}
    result = service.ingest(req({"writeKey": "server-key-1", "batch": [event, event]}))
    assert (result.accepted, result.duplicates) == (1, 1)
    service.ingest(req({**event, "writeKey": "server-key-1"}, "track"))  # an SDK retry
    assert len(store.inserted) == 1


def test_batch_context_and_sent_at_apply_to_every_event(service, store):
    service.ingest(req({"writeKey": "server-key-1", "sentAt": "2026-11-22T12:00:00Z",
                        "context": {"library": {"name": "analytics-python"}},
                        "batch": [{"type": "track", "userId": "u", "event": "E", "timestamp": "2026-11-22T11:59:00Z"}]}))
    stored = store.inserted[0].body
    assert stored["context"]["library"]["name"] == "analytics-python"
    assert stored["timestamp"] == "2026-11-22T11:59:00.000Z"


def test_request_errors_propagate_with_status(service):
    with pytest.raises(RequestError) as info:
        service.ingest(req({"writeKey": "server-key-1", "batch": "x"}))
    assert info.value.status == 400


def test_sources_configuration_is_validated():
    from chalicelib.domain.sources import SourceConfigError

    with pytest.raises(SourceConfigError, match="write_key"):
        parse_sources([{"name": "x", "write_key": "short"}])
    assert Source("a", "k" * 8, ("*",)).allows_origin("https://any.example")
    assert Source("a", "k" * 8, ("https://a.example",)).allows_origin(None)
