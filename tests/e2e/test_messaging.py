"""Scenario 1's welcome email through the whole app in-process (chalice.test.Client on moto):
a newsletter signup as the demo shop sends it (identify with email, then `Consent Updated`
for email) meets a welcome trigger (WELCOME_TRIGGER: the shipped welcome series is a journey,
chalicelib/definitions/journeys/welcome-series.yaml, which these tests leave out so that they
exercise messaging alone); the stream handler only requests the message;
the messages queue's consumer sends it through SES, where moto stores the raw MIME. Replaying
the stream batch, and delivering the queue message again, send nothing twice."""
from __future__ import annotations

import email
import email.policy
import json
import uuid
from pathlib import Path

import boto3
import pytest


ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": "Bearer test-admin-token-1", "Content-Type": "application/json"}
BASE_URL = "https://t.shop.example/v1/m"
# The welcome email at newsletter signup, once per contact, as a trigger definition.
WELCOME_TRIGGER = {"name": "Welcome email at newsletter signup",
                   "when": {"event": "Consent Updated",
                            "where": ['properties.channel == "email"', 'properties.status == "granted"']},
                   "send": {"template": "welcome", "channel": "email"}, "once": True}


def ses_raw_messages() -> list:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


@pytest.fixture
def messaging(app_client, app_env, monkeypatch):
    from chalicelib.entrypoints import runtime
    from local.queue_bridge import QueueBridge
    from local.upload_templates import accept_templates
    from local.stream_bridge import StreamBridge

    monkeypatch.setenv("MERCURIO_LINK_SECRETS", "e2e-link-secret-0123456789")
    monkeypatch.setenv("MERCURIO_SUPPRESSION_SALT", "e2e-suppression-salt-0123")
    monkeypatch.setenv("MERCURIO_PUBLIC_MESSAGES_URL", BASE_URL)
    monkeypatch.setenv("MERCURIO_QUIET_HOURS", "off")  # the test runs at any hour of the day
    runtime.reset()
    accepted, refused = accept_templates(runtime.services().template_authoring)  # what make run does
    assert "welcome.html.j2" in accepted and refused == []
    boto3.client("ses").verify_domain_identity(Domain="shop.example")
    response = app_client.http.put("/v1/admin/definitions/trigger/welcome-email", body=json.dumps(WELCOME_TRIGGER),
                                   headers=ADMIN)
    assert response.status_code == 200, response.body

    batches: list[dict] = []

    def process_events(event):
        batches.append(event)
        return app_client.client.lambda_.invoke("process_events", event).payload

    app_client.recorded_batches = batches
    app_client.bridge = StreamBridge(app_env["EventsTable.StreamArn"], process_events)
    app_client.messages = QueueBridge(
        app_env["MessagesQueue"], lambda e: app_client.client.lambda_.invoke("send_messages", e).payload)
    return app_client


def sign_up(client, email_address: str, first_name: str = "Ada") -> str:
    anonymous = f"anon-{uuid.uuid4().hex[:8]}"
    assert client.post("/v1/identify", {"anonymousId": anonymous,
                                        "traits": {"email": email_address, "first_name": first_name}}).status_code == 200
    assert client.post("/v1/track", {"anonymousId": anonymous, "event": "Consent Updated",
                                     "properties": {"channel": "email", "status": "granted",
                                                    "source": "newsletter signup"}}).status_code == 200
    client.drain()
    return anonymous


def test_a_signup_sends_exactly_one_welcome_email_with_one_click_unsubscribe_and_tracked_links(messaging):
    anonymous = sign_up(messaging, "ada@example.com")
    assert ses_raw_messages() == []  # the stream handler requested the message; it sent nothing
    assert messaging.messages.drain(timeout=30) >= 1
    [sent] = ses_raw_messages()
    message = email.message_from_string(sent.raw_data, policy=email.policy.default)
    assert message["To"] == "ada@example.com" and "Welcome to Caffè Mercurio, Ada" == message["Subject"]
    assert message["List-Unsubscribe"].startswith(f"<{BASE_URL}/u/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()
    assert f"{BASE_URL}/c/" in html and f"{BASE_URL}/o/" in html  # tracked links and the open pixel

    status, contact = messaging.admin(f"/v1/admin/contacts?identifier=anon:{anonymous}")
    assert status == 200, contact
    status, page = messaging.admin(f"/v1/admin/contacts/{contact['id']}/messages")
    assert status == 200, page
    [logged] = page["messages"]
    assert logged["status"] == "sent" and logged["template"] == "welcome" and logged["provider_id"] == sent.id
    assert [c["status"] for c in logged["timeline"]] == ["queued", "sending", "sent"]
    assert logged["links"] and all(link.startswith("http") for link in logged["links"])

    # The stream batch again (Lambda retried it), then the queue message again: nothing more.
    for batch in list(messaging.recorded_batches):
        messaging.client.lambda_.invoke("process_events", batch)
    messaging.messages.drain(timeout=30)
    assert len(ses_raw_messages()) == 1
    status, page = messaging.admin(f"/v1/admin/contacts/{contact['id']}/messages")
    assert len(page["messages"]) == 1


def test_a_signup_without_consent_gets_no_welcome_and_the_contacts_messages_need_the_admin_token(messaging):
    anonymous = f"anon-{uuid.uuid4().hex[:8]}"
    messaging.post("/v1/identify", {"anonymousId": anonymous, "traits": {"email": "bob@example.com"}})
    messaging.drain()
    assert messaging.messages.waiting() == 0 and ses_raw_messages() == []
    status, contact = messaging.admin(f"/v1/admin/contacts?identifier=anon:{anonymous}")
    status, page = messaging.admin(f"/v1/admin/contacts/{contact['id']}/messages")
    assert status == 200 and page["messages"] == []
    assert messaging.admin(f"/v1/admin/contacts/{contact['id']}/messages", token="wrong")[0] == 401
    assert messaging.admin("/v1/admin/contacts/nobody/messages")[0] == 404
    assert messaging.admin(f"/v1/admin/contacts/{contact['id']}/messages?limit=0")[0] == 400
