"""The HTTP API end to end, in-process: Chalice routes → DynamoDB (moto) → stream → contacts."""
from __future__ import annotations

import base64
import json

import pytest

KEY = "test-write-key-1"


def body_of(response) -> dict:
    return json.loads(response.body)


@pytest.mark.parametrize("path,event_type", [
    ("/v1/identify", "identify"), ("/v1/i", "identify"), ("/v1/track", "track"), ("/v1/t", "track"),
    ("/v1/page", "page"), ("/v1/p", "page"), ("/v1/screen", "screen"), ("/v1/s", "screen"),
    ("/v1/group", "group"), ("/v1/g", "group"), ("/v1/alias", "alias"), ("/v1/a", "alias"),
])
def test_every_segment_path_accepts_its_event(app_client, path, event_type):
    event = {"anonymousId": "a1", "userId": "u1", "event": "E", "name": "N", "groupId": "g1", "previousId": "a1",
             "writeKey": KEY}
    response = app_client.post(path, event, key=None, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.body
    assert body_of(response) == {"success": True, "accepted": 1}


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b", "/v1/import"])
def test_batch_paths(app_client, path):
    response = app_client.post(path, {"batch": [{"type": "track", "userId": "u", "event": "E"},
                                                {"type": "page", "userId": "u"}]})
    assert response.status_code == 200 and body_of(response)["accepted"] == 2


def test_events_become_a_contact_with_a_timeline(app_client):
    app_client.post("/v1/page", {"anonymousId": "v1", "name": "Pricing", "properties": {"path": "/pricing"}})
    app_client.post("/v1/track", {"anonymousId": "v1", "event": "Signed Up", "properties": {"plan": "pro"}})
    app_client.post("/v1/identify", {"anonymousId": "v1", "userId": "42", "traits": {"email": "Ada@X.io"}})
    app_client.drain()
    status, contact = app_client.admin("/v1/admin/contacts?identifier=email:ada@x.io")
    assert status == 200
    assert contact["identifiers"] == ["anon:v1", "email:ada@x.io", "user:42"]
    assert contact["counters"]["Signed Up"]["total"] == 1
    status, same = app_client.admin(f"/v1/admin/contacts/{contact['id']}")
    assert status == 200 and same["id"] == contact["id"]
    status, page = app_client.admin(f"/v1/admin/contacts/{contact['id']}/events")
    assert [e["type"] for e in page["events"]] == ["identify", "track", "page"]
    assert page["events"][1]["properties"] == {"plan": "pro"}


def test_a_resent_event_is_stored_and_processed_once(app_client):
    event = {"userId": "u", "event": "Order Completed", "messageId": "order-1", "timestamp": "2026-11-22T10:00:00Z"}
    for _ in range(3):
        assert app_client.post("/v1/track", event).status_code == 200
    app_client.drain()
    status, contact = app_client.admin("/v1/admin/contacts?identifier=user:u")
    assert contact["counters"]["Order Completed"]["total"] == 1
    status, page = app_client.admin(f"/v1/admin/contacts/{contact['id']}/events")
    assert len(page["events"]) == 1


def _stored_rows(app_client, pk: str) -> list[str]:
    import boto3
    from boto3.dynamodb.conditions import Key

    from chalicelib import config

    table = boto3.resource("dynamodb").Table(config.settings().events_table)
    return [item["sk"] for item in table.query(KeyConditionExpression=Key("pk").eq(pk))["Items"]]


def test_a_messageid_resent_with_another_timestamp_is_stored_shown_and_counted_once(app_client):
    """What Segment's SDKs do on a second call or a retry: same messageId, new timestamps."""
    first = {"userId": "resender", "event": "Order Completed", "messageId": "order-7",
             "timestamp": "2026-11-22T10:00:00.000Z", "sentAt": "2026-11-22T10:00:00.500Z"}
    again = {**first, "timestamp": "2026-11-22T10:00:03.000Z", "sentAt": "2026-11-22T10:00:03.200Z"}
    other = {**first, "messageId": "order-8"}
    assert app_client.post("/v1/track", first).status_code == 200
    app_client.drain()
    assert app_client.post("/v1/batch", {"batch": [{**again, "type": "track"}, {**other, "type": "track"}]}
                           ).status_code == 200
    assert app_client.post("/v1/track", {**again, "timestamp": "2026-11-22T09:59:00.000Z"}).status_code == 200
    app_client.drain()
    rows = _stored_rows(app_client, "user:resender")
    assert sorted(r.partition("#")[2] for r in rows) == ["order-7", "order-8"], rows
    assert "2026-11-22T10:00:00.000Z#order-7" in rows  # the row kept is the first one received
    _, contact = app_client.admin("/v1/admin/contacts?identifier=user:resender")
    assert contact["counters"]["Order Completed"]["total"] == 2
    _, page = app_client.admin(f"/v1/admin/contacts/{contact['id']}/events?kind=tracked")
    assert sorted(e["messageId"] for e in page["events"]) == ["order-7", "order-8"]


@pytest.mark.parametrize("key,status,message", [
    (None, 401, "missing write key"),
    ("wrong-key-123", 401, "unknown write key"),
])
def test_bad_keys_are_401(app_client, key, status, message):
    response = app_client.post("/v1/track", {"userId": "u", "event": "E"}, key=key)
    assert response.status_code == status
    assert message in body_of(response)["error"]


@pytest.mark.parametrize("body,content_type,status,message", [
    ("{not json", "application/json", 400, "not valid JSON"),
    ("[]", "application/json", 400, "must be a JSON object"),
    ('{"userId": "u"}', "application/x-www-form-urlencoded", 415, "unsupported Content-Type"),
    ('{"userId": "u"}', "application/json", 400, "track needs event"),
    ('{"event": "E"}', "application/json", 400, "userId or anonymousId is required"),
    ('{"userId": "u", "event": "E", "properties": [1]}', "application/json", 400, "properties must be an object"),
])
def test_bad_input_gets_a_reason(app_client, body, content_type, status, message):
    response = app_client.post("/v1/track", body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.body
    assert message in body_of(response)["error"]
    assert body_of(response)["success"] is False


def test_limits(app_client):
    big = app_client.post("/v1/track", {"userId": "u", "event": "E", "properties": {"x": "a" * 40_000}})
    assert big.status_code == 400 and "32768" in body_of(big)["error"]
    huge = app_client.post("/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "E",
                                                    "properties": {"x": "a" * 20_000}}] * 30})
    assert huge.status_code == 413 and "512000" in body_of(huge)["error"]
    many = app_client.post("/v1/batch", {"batch": [{"type": "page", "userId": "u"}] * 2501})
    assert many.status_code == 413 and "2500" in body_of(many)["error"]


def test_a_bad_event_in_a_batch_loses_nothing_else(app_client):
    response = app_client.post("/v1/batch", {"batch": [
        {"type": "track", "userId": "u", "event": "Kept"},
        {"type": "track", "userId": "u", "event": "Also kept", "timestamp": "2026-11-22T09:00:00Z"},
        {"type": "track", "userId": "u", "event": "Bad", "timestamp": "not a date"},
    ]})
    assert response.status_code == 200
    body = body_of(response)
    assert body["accepted"] == 2
    assert body["rejected"] == [{"index": 2, "errors": ["timestamp 'not a date' is not an ISO-8601 date-time"]}]
    app_client.drain()
    _, contact = app_client.admin("/v1/admin/contacts?identifier=user:u")
    assert set(contact["counters"]) == {"Kept", "Also kept"}


def test_cors_preflight_and_origin_echo(app_client):
    pre = app_client.http.request("OPTIONS", "/v1/t", headers={"Origin": "https://shop.example",
                                                               "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    response = app_client.post("/v1/t", {"writeKey": KEY, "anonymousId": "a", "event": "E"}, key=None,
                               headers={"Content-Type": "text/plain", "Origin": "https://shop.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example"


def test_a_source_only_accepts_its_own_origins(app_client, monkeypatch):
    from chalicelib.entrypoints import runtime

    monkeypatch.delenv("MERCURIO_WRITE_KEY")
    monkeypatch.setenv("MERCURIO_SOURCES", json.dumps([{"name": "shop", "write_key": "shop-key-0001",
                                                         "origins": ["https://shop.example"]}]))
    runtime.reset()
    ok = app_client.post("/v1/t", {"anonymousId": "a", "event": "E"}, key="shop-key-0001",
                         headers={"Origin": "https://shop.example"})
    assert ok.status_code == 200
    denied = app_client.post("/v1/t", {"anonymousId": "a", "event": "E"}, key="shop-key-0001",
                             headers={"Origin": "https://attacker.example"})
    assert denied.status_code == 403
    pre = app_client.http.request("OPTIONS", "/v1/t", headers={"Origin": "https://attacker.example"})
    assert "Access-Control-Allow-Origin" not in pre.headers


def test_the_write_key_cannot_read_or_import(app_client):
    basic = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    for path in ("/v1/admin/contacts?identifier=user:u", "/v1/admin/contacts/x", "/v1/admin/contacts/x/events"):
        assert app_client.http.get(path, headers={"Authorization": basic}).status_code == 401
        assert app_client.http.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
        assert app_client.http.get(path).status_code == 401
    response = app_client.http.post("/v1/admin/imports", headers={"Authorization": basic},
                                    body=json.dumps({"csv": "Email\na@b.co\n"}))
    assert response.status_code == 401


def test_admin_errors(app_client):
    assert app_client.admin("/v1/admin/contacts?identifier=user:nobody")[0] == 404
    status, body = app_client.admin("/v1/admin/contacts?identifier=nonsense")
    assert status == 400 and "must look like" in body["error"]
    assert app_client.admin("/v1/admin/contacts")[0] == 400
    assert app_client.admin("/v1/admin/contacts/nope")[0] == 404
    assert app_client.admin("/v1/admin/contacts/nope/events?limit=abc")[0] == 400


def test_csv_import_through_the_api_is_idempotent(app_client):
    csv_text = "Customer ID,Email,Plan\n1,one@x.io,pro\n2,bad-email,free\n"
    token = {"Authorization": "Bearer test-admin-token-1"}
    first = app_client.http.post("/v1/admin/imports", headers=token, body=json.dumps({"csv": csv_text}))
    assert first.status_code == 200
    report = body_of(first)
    assert (report["accepted"], report["rejected"]) == (1, 1)
    assert report["errors"][0]["line"] == 3 and report["errors"][0]["field"] == "Email"
    app_client.drain()
    _, before = app_client.admin("/v1/admin/contacts?identifier=email:one@x.io")
    again = app_client.http.post("/v1/admin/imports", headers=token, body=json.dumps({"csv": csv_text}))
    assert body_of(again)["accepted"] == 1
    app_client.drain()  # the same keys are rewritten: MODIFY records, which processing ignores
    _, contact = app_client.admin("/v1/admin/contacts?identifier=email:one@x.io")
    assert contact == before
    _, timeline = app_client.admin(f"/v1/admin/contacts/{contact['id']}/events")
    assert len(timeline["events"]) == 1
    assert contact["traits"] == {"email": "one@x.io", "plan": "pro"}
    assert contact["identifiers"] == ["email:one@x.io", "user:1"]
    bad = app_client.http.post("/v1/admin/imports", headers=token, body="{oops")
    assert bad.status_code == 400 and "not valid JSON" in body_of(bad)["error"]


def test_snippet_and_health_are_served(app_client):
    health = app_client.http.get("/health")
    assert health.status_code == 200
    js = app_client.http.get("/v1/mercurio.js")
    assert js.status_code == 200
    assert js.headers["Content-Type"].startswith("application/javascript")
    assert b"mercurio" in js.body


def test_gzip_batches_are_accepted(app_client):
    import gzip

    body = gzip.compress(json.dumps({"batch": [{"type": "track", "userId": "gz", "event": "Zipped"}]}).encode())
    response = app_client.post("/v1/batch", body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.body
    assert body_of(response)["accepted"] == 1


def test_preflight_allows_the_retry_header_segment_sdks_send(app_client):
    pre = app_client.http.request("OPTIONS", "/v1/t", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,x-retry-count"})
    allowed = {h.strip().lower() for h in pre.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-retry-count", "content-type"} <= allowed


def test_csv_import_as_a_text_csv_body_with_the_mapping_in_the_query(app_client):
    from urllib.parse import urlencode

    token = {"Authorization": "Bearer test-admin-token-1"}
    csv_text = "Client,E-mail,Mobile\nc-7,seven@x.io,06 12 34 56 78\nc-8,not-an-email,\n"
    query = urlencode({"mapping.Client": "userId", "mapping.E-mail": "email", "mapping.Mobile": "phone",
                       "default_region": "FR", "source": "crm"})
    response = app_client.http.post(f"/v1/admin/imports?{query}", body=csv_text.encode(),
                                    headers={**token, "Content-Type": "text/csv; charset=utf-8"})
    assert response.status_code == 200, response.body
    report = body_of(response)
    assert (report["accepted"], report["rejected"]) == (1, 1)
    assert report["mapping"] == {"Client": "userId", "E-mail": "email", "Mobile": "phone"}
    app_client.drain()
    status, contact = app_client.admin("/v1/admin/contacts?identifier=user:c-7")
    assert status == 200 and contact["traits"] == {"email": "seven@x.io", "phone": "+33612345678"}

    unknown = app_client.http.post("/v1/admin/imports?mapping.Nope=email", body=csv_text.encode(),
                                   headers={**token, "Content-Type": "text/csv"})
    assert unknown.status_code == 400 and "Nope" in body_of(unknown)["error"]
    typo = app_client.http.post("/v1/admin/imports?region=FR", body=csv_text.encode(),
                                headers={**token, "Content-Type": "text/csv"})
    assert typo.status_code == 400 and "region" in body_of(typo)["error"]
    latin1 = app_client.http.post("/v1/admin/imports", body="Email\nl\xe9a@x.io\n".encode("latin-1"),
                                  headers={**token, "Content-Type": "text/csv"})
    assert latin1.status_code == 400 and "UTF-8" in body_of(latin1)["error"]
