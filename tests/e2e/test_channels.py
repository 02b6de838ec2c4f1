"""Channels through the whole app in-process (chalice.test.Client on moto): mobile push
devices (a token in an event → an SNS endpoint registered off the stream → a push sent to it;
a disabled endpoint leaves the contact), double opt-in for email (a signup through a
registered consent form → pending → confirmation email → the signed link grants it), and
template previews for a real contact and test sends."""
from __future__ import annotations

import email
import email.policy
import json
import re
import uuid

import boto3
import pytest

ADMIN = {"Authorization": "Bearer test-admin-token-1", "Content-Type": "application/json"}
BASE_URL = "https://t.shop.example/v1/m"
FORM_WORDING = "Send me the newsletter (about one email a week)."


def sns_backend():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    return sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]


def ses_raw_messages() -> list:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


@pytest.fixture
def channels(app_client, app_env, monkeypatch):
    from chalicelib.entrypoints import runtime
    from local.push_platforms import create_push_platforms, push_platforms_setting
    from local.queue_bridge import QueueBridge
    from local.upload_templates import accept_templates

    monkeypatch.setenv("MERCURIO_LINK_SECRETS", "e2e-link-secret-0123456789")
    monkeypatch.setenv("MERCURIO_SUPPRESSION_SALT", "e2e-suppression-salt-0123")
    monkeypatch.setenv("MERCURIO_PUBLIC_MESSAGES_URL", BASE_URL)
    monkeypatch.setenv("MERCURIO_QUIET_HOURS", "off")
    monkeypatch.setenv("MERCURIO_PUSH_PLATFORMS", push_platforms_setting(create_push_platforms()))
    monkeypatch.setenv("MERCURIO_CONSENT_FORMS", json.dumps(
        {"newsletter": {"shown": FORM_WORDING, "collects": ["email", "email/newsletter"]}}))
    runtime.reset()
    accepted, refused = accept_templates(runtime.services().template_authoring)
    assert {"confirm-subscription.html.j2", "order-shipped.push.j2"} <= set(accepted) and refused == []
    boto3.client("ses").verify_domain_identity(Domain="shop.example")
    invoke = app_client.client.lambda_.invoke
    app_client.marketing = QueueBridge(app_env["MessagesQueue"], lambda e: invoke("send_messages", e).payload)
    app_client.transactional = QueueBridge(app_env["TransactionalMessagesQueue"],
                                           lambda e: invoke("send_transactional_messages", e).payload)
    app_client.services = runtime.services
    return app_client


def contact_of(client, user_id: str) -> dict:
    status, body = client.admin(f"/v1/admin/contacts?identifier=user:{user_id}")
    assert status == 200, body
    return body


# -- push devices ----------------------------------------------------------------------------

def track_from_device(client, user_id: str, token: str, device_type: str = "ios") -> None:
    assert client.post("/v1/track", {"userId": user_id, "event": "App Opened",
                                     "context": {"device": {"token": token, "type": device_type}}}).status_code == 200


def test_a_device_token_becomes_an_endpoint_off_the_stream_and_receives_the_order_shipped_push(channels):
    track_from_device(channels, "u-push", "apns-token-0001")
    channels.drain()
    assert sns_backend().platform_endpoints == {}  # the stream handler never calls SNS
    assert channels.drain_effects() == 1
    [endpoint] = sns_backend().platform_endpoints.values()
    assert endpoint.token == "apns-token-0001"
    channels.drain()  # the registration reaches the contact as an event the processor applies
    contact = contact_of(channels, "u-push")
    assert contact["traits"]["push_endpoints"] == [endpoint.arn]
    assert "apns-token-0001" not in json.dumps(contact["traits"])  # only a digest of the token is kept

    track_from_device(channels, "u-push", "apns-token-0001")  # the same device again: nothing to register
    channels.drain()
    assert channels.deliver_effects_once(wait_seconds=0) == 0

    message = channels.services().messaging.request(contact["id"], "order-shipped", "push", "order:A-77",
                                                    data={"order_id": "A-77", "carrier": "Poste",
                                                          "expected": "2026-12-04"})
    assert message.lane == "transactional"
    assert channels.transactional.drain(timeout=30) == 1
    [payload] = endpoint.messages.values()
    assert "Your order A-77 is on its way" in payload and "Poste" in payload
    status, page = channels.admin(f"/v1/admin/contacts/{contact['id']}/messages")
    assert [m["status"] for m in page["messages"]] == ["sent"]


def test_a_push_to_a_disabled_endpoint_removes_it_from_the_contact(channels):
    track_from_device(channels, "u-gone", "fcm-token-0002", "android")
    channels.drain()
    channels.drain_effects()
    channels.drain()
    contact = contact_of(channels, "u-gone")
    [arn] = contact["traits"]["push_endpoints"]
    boto3.client("sns").set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "false"})

    channels.services().messaging.request(contact["id"], "order-shipped", "push", "order:B-1",
                                          data={"order_id": "B-1", "expected": "2026-12-05"})
    channels.transactional.drain(timeout=30)
    channels.drain()
    assert contact_of(channels, "u-gone")["traits"]["push_endpoints"] == []
    status, page = channels.admin(f"/v1/admin/contacts/{contact['id']}/messages")
    assert page["messages"][0]["status"] == "failed"
    assert "disabled" in page["messages"][0]["reason"]["text"]


# -- double opt-in -------------------------------------------------------------------------------

def subscribe(client, user_id: str, address: str, form_id: str = "newsletter", channel: str = "email") -> None:
    assert client.post("/v1/identify", {"userId": user_id, "traits": {"email": address}}).status_code == 200
    assert client.post("/v1/track", {"userId": user_id, "event": "Consent Updated",
                                     "properties": {"channel": channel, "topic": "newsletter", "status": "pending",
                                                    "form_id": form_id},
                                     "context": {"page": {"url": "https://shop.example/"}}}).status_code == 200
    client.drain()


def confirmation_link(raw: str) -> str:
    message = email.message_from_string(raw, policy=email.policy.default)
    html = message.get_body(preferencelist=("html",)).get_content()
    [link] = re.findall(r'href="([^"]+)"[^>]*>Yes, subscribe me', html)
    return link


def follow(client, url: str):
    """The tracked link redirects to the confirmation page: follow it as a mail client does."""
    path = url.replace("https://t.shop.example", "")
    response = client.http.get(path, headers={"User-Agent": "Mozilla/5.0 (e2e)"})
    if response.status_code in (301, 302, 303):
        return follow(client, response.headers["Location"])
    return response


def confirm(client, url: str):
    """Open the confirmation link (the page only asks), then press its button: a POST to the
    page the tracked link led to."""
    page = follow(client, url)
    assert page.status_code == 200 and b"Yes, confirm my subscription" in page.body
    redirect = client.http.get(url.replace("https://t.shop.example", ""), headers={"User-Agent": "Mozilla/5.0 (e2e)"})
    target = redirect.headers["Location"] if redirect.status_code == 302 else url
    return client.http.post(target.replace("https://t.shop.example", ""), body=b"",
                            headers={"User-Agent": "Mozilla/5.0 (e2e)",
                                     "Content-Type": "application/x-www-form-urlencoded"})


def test_a_signup_through_the_form_is_pending_until_the_confirmation_link_is_clicked_once(channels):
    subscribe(channels, "u-doi", "doi@example.com")
    contact = contact_of(channels, "u-doi")
    record = contact["consent"]["email/newsletter"]
    assert record["status"] == "pending" and record["proof"]["shown"] == FORM_WORDING
    assert channels.transactional.drain(timeout=30) == 1
    [sent] = ses_raw_messages()
    assert "confirm your subscription" in email.message_from_string(sent.raw_data)["Subject"]

    link = confirmation_link(sent.raw_data)
    follow(channels, link)  # opening the link (or a scanner doing it) confirms nothing
    channels.drain()
    assert contact_of(channels, "u-doi")["consent"]["email/newsletter"]["status"] == "pending"
    page = confirm(channels, link)
    assert page.status_code == 200 and b"Subscription confirmed" in page.body
    channels.drain()
    record = contact_of(channels, "u-doi")["consent"]["email/newsletter"]
    assert record["status"] == "granted" and record["source"] == "double_opt_in"
    assert record["proof"]["user_agent"] == "Mozilla/5.0 (e2e)" and record["proof"]["shown"] == FORM_WORDING
    assert record["confirmation"]["confirmed_at"]

    again = confirm(channels, confirmation_link(sent.raw_data))  # a second confirmation changes nothing
    assert again.status_code == 200 and b"Subscription confirmed" in again.body
    status, events = channels.admin(f"/v1/admin/contacts/{contact['id']}/events?limit=100")
    granted = [e for e in events["events"] if e.get("event") == "Consent Updated"
               and (e.get("properties") or {}).get("source") == "double_opt_in"]
    assert len(granted) == 1


def test_the_write_key_cannot_ask_for_consent_beyond_a_registered_form(channels):
    subscribe(channels, "u-noform", "noform@example.com", form_id="not-a-form")
    subscribe(channels, "u-sms", "sms@example.com", channel="sms")  # the form collects email only
    assert "email/newsletter" not in contact_of(channels, "u-noform")["consent"]
    assert "sms/newsletter" not in contact_of(channels, "u-sms")["consent"]
    assert channels.transactional.drain(timeout=5) == 0


def test_resend_is_limited_and_an_expired_or_forged_link_gets_a_clear_page(channels):
    subscribe(channels, "u-resend", "resend@example.com")
    contact = contact_of(channels, "u-resend")
    path = f"/v1/admin/contacts/{contact['id']}/confirmations/resend"
    body = json.dumps({"channel": "email", "topic": "newsletter"})
    too_soon = channels.http.post(path, headers=ADMIN, body=body)
    assert too_soon.status_code == 429 and json.loads(too_soon.body)["code"] == "resend_too_soon"
    unknown = channels.http.post(path, headers=ADMIN, body=json.dumps({"channel": "email", "topic": "other"}))
    assert unknown.status_code == 409 and json.loads(unknown.body)["code"] == "not_pending"
    assert channels.http.post(path, headers={"Content-Type": "application/json"}, body=body).status_code == 401

    forged = channels.http.get("/v1/m/confirm/not-a-token")
    assert forged.status_code == 200 and b"This link cannot be opened" in forged.body
    from datetime import datetime, timedelta, timezone

    tracker = channels.services().link_tracker
    expired = tracker.page_url("confirm", "some-message", datetime.now(timezone.utc) - timedelta(days=1))
    page = channels.http.get(expired.replace("https://t.shop.example", ""))
    assert page.status_code == 200 and b"expired" in page.body


# -- template preview for a contact and test sends ----------------------------------------------

def test_preview_for_a_real_contact_uses_its_traits_and_a_test_send_goes_only_to_the_given_address(channels):
    assert channels.post("/v1/identify", {"userId": "u-prev", "traits": {"email": "grace@example.com",
                                                                         "first_name": "Grace"}}).status_code == 200
    channels.drain()
    contact = contact_of(channels, "u-prev")
    preview = channels.http.post("/v1/admin/templates/welcome.html.j2/preview", headers=ADMIN,
                                 body=json.dumps({"contact_id": contact["id"]}))
    assert preview.status_code == 200, preview.body
    assert "Welcome to Caffè Mercurio, Grace" == json.loads(preview.body)["rendered"]["subject"]
    missing = channels.http.post("/v1/admin/templates/welcome.html.j2/preview", headers=ADMIN,
                                 body=json.dumps({"contact_id": "nobody"}))
    assert missing.status_code == 404

    response = channels.http.post("/v1/admin/templates/welcome.html.j2/test-send", headers=ADMIN,
                                  body=json.dumps({"to": "tester@example.com", "contact_id": contact["id"]}))
    assert response.status_code == 202, response.body
    answer = json.loads(response.body)
    assert answer["test"] is True and answer["to"] == "tester@example.com"
    assert channels.marketing.drain(timeout=30) == 1  # no consent needed: it goes to the tester only
    [sent] = ses_raw_messages()
    assert sent.destinations == ["tester@example.com"] or "tester@example.com" in str(sent.destinations)
    parsed = email.message_from_string(sent.raw_data, policy=email.policy.default)
    assert parsed["Subject"] == "[Test] Welcome to Caffè Mercurio, Grace"
    assert channels.services().message_log.get(answer["message_id"]).status == "sent"
    status, page = channels.admin(f"/v1/admin/contacts/{contact['id']}/messages")
    assert page["messages"] == []  # never the contact's message


def test_a_test_send_to_a_suppressed_address_is_skipped_and_bad_input_is_a_400(channels):
    from datetime import datetime, timezone

    from chalicelib.domain.messaging.consent import BOUNCED_HARD, suppress

    services = channels.services()
    services.suppression_store.add(suppress("email", "dead@example.com", BOUNCED_HARD, datetime.now(timezone.utc),
                                            services.suppression_salt))
    response = channels.http.post("/v1/admin/templates/welcome.html.j2/test-send", headers=ADMIN,
                                  body=json.dumps({"to": "dead@example.com", "sample": "it-CH, Zurich"}))
    assert response.status_code == 202, response.body
    channels.marketing.drain(timeout=30)
    message = services.message_log.get(json.loads(response.body)["message_id"])
    assert message.status == "skipped" and message.timeline[-1].detail["code"] == "suppressed"
    assert ses_raw_messages() == []
    for body in ({"to": "not an address"}, {}, {"to": "a@example.com", "sample": "nobody"},
                 {"to": "a@example.com", "contact_id": 7}):
        bad = channels.http.post("/v1/admin/templates/welcome.html.j2/test-send", headers=ADMIN,
                                 body=json.dumps(body))
        assert bad.status_code == 400, (body, bad.body)
    push = channels.http.post("/v1/admin/templates/order-shipped.push.j2/test-send", headers=ADMIN,
                              body=json.dumps({"to": "a@example.com"}))
    assert push.status_code == 400
