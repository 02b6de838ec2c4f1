"""Export and erasure through the app (scenario 10) on moto's tables: the contact, its events,
identities, memberships and messages go; its address survives only as a hashed suppression
entry, which keeps a new signup with that address from marketing until it opts in again."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from chalicelib.domain.messaging.consent import suppression_key
from chalicelib.domain.messaging.messages import SENT, Message, StatusChange
from tests.e2e.conftest import AppClient

SALT = "a-salt-of-at-least-16-bytes"
ADMIN = {"Authorization": "Bearer test-admin-token-1"}


@pytest.fixture
def app(app_env, monkeypatch):
    from chalice.test import Client

    import app as mercurio
    from chalicelib.entrypoints import runtime

    monkeypatch.setenv("MERCURIO_SUPPRESSION_SALT", SALT)
    runtime.reset()
    wired = runtime.services()
    with Client(mercurio.app, stage_name="test") as client:
        yield (AppClient(client, app_env["EventsTable.StreamArn"], app_env["EffectsQueue"]), wired.message_log,
               wired.suppression_store, app_env)
    runtime.reset()


def test_a_contact_is_exported_then_erased_leaving_only_its_hashed_opt_out(app):
    client, log, suppressions, tables = app
    client.post("/v1/identify", {"userId": "ada", "anonymousId": "a-1", "traits": {"email": "ada@example.com"}})
    client.post("/v1/track", {"userId": "ada", "event": "Product Viewed", "properties": {"sku": "c1"}})
    client.post("/v1/identify", {"userId": "bob", "traits": {"email": "bob@example.com"}})
    client.drain()
    _, ada = client.admin("/v1/admin/contacts?identifier=user:ada")
    sent = datetime(2026, 11, 21, tzinfo=timezone.utc)
    log.create(Message(id="msg_1", contact_id=ada["id"], channel="email", template="welcome", lane="marketing",
                       topic=None, cause="x", requested_at=sent, status=SENT, address="ada@example.com",
                       timeline=(StatusChange(SENT, sent),)))

    status, export = client.admin(f"/v1/admin/contacts/{ada['id']}/export")
    assert status == 200
    assert {e.get("event") for e in export["events"]} >= {"Product Viewed"}
    assert "email:ada@example.com" in export["identifiers"] and export["messages"][0]["id"] == "msg_1"

    assert client.http.delete(f"/v1/admin/contacts/{ada['id']}").status_code == 401  # admin only
    response = client.http.delete(f"/v1/admin/contacts/{ada['id']}", headers=ADMIN)
    assert response.status_code in (200, 202)
    job = json.loads(response.body)
    status, shown = client.admin(f"/v1/admin/erasures/{job['id']}")
    assert status == 200 and shown["status"] == "done", shown

    assert client.admin(f"/v1/admin/contacts/{ada['id']}")[0] == 404
    assert client.admin("/v1/admin/contacts?identifier=user:ada")[0] == 404
    assert client.admin("/v1/admin/contacts?identifier=user:bob")[0] == 200
    assert log.get("msg_1") is None
    import boto3

    partitions = {item["pk"]["S"] for item in boto3.client("dynamodb").scan(TableName=tables["EventsTable"])["Items"]}
    assert not partitions & {"user:ada", "anon:a-1", f"contact:{ada['id']}"}
    assert "user:bob" in partitions
    [entry] = suppressions.find("email", suppression_key("email", "ada@example.com", SALT.encode()))
    assert entry.reason == "erased"
    # Nothing else of Ada is left in the contacts, identities and messages tables.
    dynamodb = boto3.client("dynamodb")
    for table in ("ContactsTable", "IdentitiesTable", "MessagesTable"):
        items = dynamodb.scan(TableName=tables[table])["Items"]
        assert not any(ada["id"] in repr(item) or "ada@example.com" in repr(item) for item in items), table

    # Ada signs up again: her opt-out survives, so marketing waits for a fresh, confirmed opt-in.
    from chalicelib.entrypoints import runtime
    from local.upload_templates import accept_templates

    accept_templates(runtime.services().template_authoring)

    client.post("/v1/identify", {"userId": "ada-again", "traits": {"email": "ada@example.com"}})
    client.post("/v1/track", {"userId": "ada-again", "event": "Consent Updated",
                              "properties": {"channel": "email", "status": "granted"}})
    client.drain()
    _, again = client.admin("/v1/admin/contacts?identifier=user:ada-again")
    message = runtime.services().messaging.request(again["id"], "welcome", "email", "after-erasure")
    if message.status == "queued":
        runtime.services().messaging.send(message.id)
    assert log.get(message.id).status == "skipped"
    assert log.get(message.id).timeline[-1].detail["code"] == "suppressed_erased"
    assert client.admin("/v1/admin/erasures/nope")[0] == 404
    assert client.admin("/v1/admin/contacts/nobody/export")[0] == 404
    assert client.http.delete("/v1/admin/contacts/nobody", headers=ADMIN).status_code == 404
