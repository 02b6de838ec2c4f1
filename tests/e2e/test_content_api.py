"""Scenario 8 through the app: `GET /v1/content` with the shipped `hero` content definition
and slot templates synced to the (moto) data bucket, the write key and CORS of the tracking
routes, and the visitor's segments deciding the variant."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.unit.fakes import FakeClock

KEY = "test-write-key-1"


@pytest.fixture
def shipped(app_client, monkeypatch):
    from chalicelib.entrypoints import runtime
    from local.upload_templates import accept_templates

    runtime.reset()
    fake = FakeClock(datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc))
    runtime.use_clock(fake)
    runtime.services().definitions.seed_directory(Path("chalicelib/definitions"))
    uploaded, refused = accept_templates(runtime.services().template_authoring)
    assert "hero-coffee.slot.j2" in uploaded and refused == []
    yield fake
    runtime.use_clock(None)


def get_content(app_client, query: str, headers: dict | None = None):
    response = app_client.http.get(f"/v1/content?{query}", headers=headers or {})
    return response.status_code, json.loads(response.body or b"{}"), response.headers


def view_products(app_client, anonymous_id: str, category: str, count: int) -> None:
    for i in range(count):
        response = app_client.post("/v1/track", {"anonymousId": anonymous_id, "event": "Product Viewed",
                                                 "messageId": f"{anonymous_id}-{i}",
                                                 "properties": {"product_id": f"p-{i}", "category": category}})
        assert response.status_code == 200, response.body
    app_client.drain()


def test_scenario_8_a_coffee_lover_sees_the_coffee_banner_others_the_default(app_client, shipped):
    status, body, headers = get_content(app_client, f"slot=hero&anonymousId=coffee-fan&writeKey={KEY}")
    assert (status, body["variant"]) == (200, "hero")  # not known yet: the default
    assert headers["Cache-Control"] == "private, no-store"

    view_products(app_client, "coffee-fan", "coffee", 3)
    view_products(app_client, "gear-fan", "Coffee machines", 3)
    status, body, _ = get_content(app_client, f"slot=hero&anonymousId=coffee-fan&writeKey={KEY}")
    assert status == 200 and body["slot"] == "hero" and body["variant"] == "hero-coffee"
    assert "your next roast is ready" in body["html"]
    status, body, _ = get_content(app_client, f"slot=hero&anonymousId=gear-fan&writeKey={KEY}")
    assert (status, body["variant"]) == (200, "hero")
    assert "Small-batch coffee" in body["html"]


def test_the_write_key_may_come_as_basic_auth_and_cors_follows_the_tracking_routes(app_client, shipped):
    basic = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(),
             "Origin": "https://shop.example"}
    status, body, headers = get_content(app_client, "slot=hero&userId=u-1", basic)
    assert status == 200 and body["variant"] == "hero"
    assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
    preflight = app_client.http.request("OPTIONS", "/v1/content", headers={"Origin": "https://shop.example"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]


@pytest.mark.parametrize("query, status, reason", [
    ("slot=hero&anonymousId=a", 401, "missing write key"),
    (f"slot=hero&anonymousId=a&writeKey=wrong-{KEY}", 401, "unknown write key"),
    (f"anonymousId=a&writeKey={KEY}", 400, "slot is required"),
    (f"slot=hero&writeKey={KEY}", 400, "anonymousId or userId is required"),
    (f"slot=sidebar&anonymousId=a&writeKey={KEY}", 404, "no slot 'sidebar'"),
])
def test_refusals_carry_their_reason(app_client, shipped, query, status, reason):
    got, body, _ = get_content(app_client, query)
    assert got == status and reason in body["error"]


def test_the_route_writes_no_event_and_no_contact(app_client, shipped):
    import boto3

    from chalicelib import config

    get_content(app_client, f"slot=hero&anonymousId=just-looking&writeKey={KEY}")
    events = boto3.resource("dynamodb").Table(config.settings().events_table).scan()["Items"]
    contacts = boto3.resource("dynamodb").Table(config.settings().contacts_table).scan()["Items"]
    assert events == [] and contacts == []
