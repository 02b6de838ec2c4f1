"""The public message pages through the Chalice app (chalice.test.Client) on moto's tables,
with the message ports as in-memory fakes (their DynamoDB adapters come with the send
pipeline) and the stream processor run over what the pages appended."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.messaging.links import CLICK, OPEN, PREFERENCES, UNSUBSCRIBE, LinkTracker
from chalicelib.domain.messaging.messages import SENT, Message, StatusChange
from tests.e2e.conftest import AppClient
from tests.unit.messaging_fakes import FakeChannelStats, FakeMessageLog, FakeSuppressionStore

SECRET = "link-secret-for-the-e2e-tests-0001"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


@pytest.fixture
def pages(app_env, monkeypatch):
    from chalice.test import Client

    import app as mercurio
    from chalicelib.entrypoints import runtime

    monkeypatch.setenv("MERCURIO_LINK_SECRETS", SECRET)
    monkeypatch.setenv("MERCURIO_SUPPRESSION_SALT", "a-salt-of-at-least-16-bytes")
    monkeypatch.setenv("MERCURIO_PUBLIC_MESSAGES_URL", "https://mercurio.example/v1/m")
    log, suppressions = FakeMessageLog(), FakeSuppressionStore()
    runtime.reset(message_log=log, suppression_store=suppressions, channel_stats=FakeChannelStats())
    with Client(mercurio.app, stage_name="test") as client:
        app = AppClient(client, app_env["EventsTable.StreamArn"], app_env["EffectsQueue"])
        # A known contact, created the way contacts are: by an identify through the API.
        response = app.post("/v1/identify", {"userId": "ada", "traits": {"email": "ada@example.com"}})
        assert response.status_code == 200
        app.drain()
        _, contact = app.admin("/v1/admin/contacts?identifier=user:ada")
        now = datetime.now(timezone.utc)
        log.create(Message(id="msg_e2e", contact_id=contact["id"], channel="email", template="promo",
                           lane="marketing", topic="newsletter", cause="e2e", requested_at=now - timedelta(hours=1),
                           status=SENT, address="ada@example.com", campaign="launch",
                           links=("https://shop.example/offer", "javascript:alert(1)"),
                           timeline=(StatusChange(SENT, now - timedelta(hours=1)),)))
        tracker = LinkTracker([SECRET.encode()], "https://mercurio.example/v1/m")
        yield app, log, suppressions, tracker, contact["id"]
    runtime.reset()


def token(tracker, kind, index=None, message_id="msg_e2e", days=30):
    return tracker.token(kind, message_id, index, datetime.now(timezone.utc) + timedelta(days=days))


def test_a_click_redirects_to_the_stored_destination_and_shows_on_the_contact(pages):
    app, log, _, tracker, contact_id = pages
    response = app.http.get(f"/v1/m/c/{token(tracker, CLICK, 0)}", headers={"User-Agent": BROWSER})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("https://shop.example/offer?mcid=clk_")
    app.drain()
    status, timeline = app.admin(f"/v1/admin/contacts/{contact_id}/events?kind=internal")
    clicked = [e for e in timeline["events"] if e.get("event") == "Email Link Clicked"]
    assert clicked and clicked[0]["properties"]["url"] == "https://shop.example/offer"
    _, contact = app.admin(f"/v1/admin/contacts/{contact_id}")
    assert contact["counters"]["Email Link Clicked"]["total"] == 1
    assert log.get("msg_e2e").status == "clicked"


@pytest.mark.parametrize("bad", ["x", "a.b", "%00", "..%2F..", "A" * 3000])
def test_a_bad_click_token_is_a_safe_page_not_a_redirect(pages, bad):
    app, *_ = pages
    response = app.http.get(f"/v1/m/c/{bad}")
    assert response.status_code == 200 and "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert b"cannot be opened" in response.body


def test_an_unsafe_stored_destination_and_an_expired_link_give_the_safe_page(pages):
    app, _, _, tracker, _ = pages
    response = app.http.get(f"/v1/m/c/{token(tracker, CLICK, 1)}")
    assert response.status_code == 200 and b"unsafe destination" in response.body
    response = app.http.get(f"/v1/m/c/{token(tracker, CLICK, 0, days=-1)}")
    assert response.status_code == 200 and b"expired" in response.body


def test_the_pixel_is_always_a_gif(pages):
    app, log, _, tracker, _ = pages
    for path, accept in ((f"/v1/m/o/{token(tracker, OPEN)}.gif", "image/avif,image/webp,image/*,*/*;q=0.8"),
                         ("/v1/m/o/garbage.gif", "image/*"), ("/v1/m/o/%FF", "*/*")):
        response = app.http.get(path, headers={"User-Agent": BROWSER, "Accept": accept})
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/gif", (path, response.body)
        assert response.body.startswith(b"GIF89a")
    assert log.get("msg_e2e").status == "opened"
    assert app.http.get("/v1/m/o/garbage.gif").status_code == 204  # accepts no image: nothing to draw


def test_a_get_of_the_unsubscribe_link_only_shows_a_page(pages):
    app, log, suppressions, tracker, _ = pages
    response = app.http.get(f"/v1/m/u/{token(tracker, UNSUBSCRIBE)}")
    assert response.status_code == 200 and b"<form method=\"post\">" in response.body
    assert log.get("msg_e2e").status == SENT and suppressions.entries == {}


def test_the_one_click_post_unsubscribes_at_once_idempotently(pages):
    app, log, _, tracker, contact_id = pages
    path = f"/v1/m/u/{token(tracker, UNSUBSCRIBE)}"
    for _ in range(2):
        response = app.http.post(path, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                "User-Agent": "Gmail one-click"},
                                 body="List-Unsubscribe=One-Click")
        assert response.status_code == 200 and b"unsubscribed" in response.body
    app.drain()
    _, contact = app.admin(f"/v1/admin/contacts/{contact_id}")
    record = contact["consent"]["email/newsletter"]
    assert record["status"] == "denied" and record["source"] == "feedback"
    assert record["proof"]["where"] == "message:msg_e2e" and record["proof"]["user_agent"] == "Gmail one-click"
    assert [c.status for c in log.get("msg_e2e").timeline].count("unsubscribed") == 1


def test_the_page_form_can_unsubscribe_from_everything(pages):
    app, _, suppressions, tracker, contact_id = pages
    response = app.http.post(f"/v1/m/u/{token(tracker, UNSUBSCRIBE)}",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}, body="everything=1")
    assert response.status_code == 200
    app.drain()
    _, contact = app.admin(f"/v1/admin/contacts/{contact_id}")
    assert contact["consent"]["email"]["status"] == "denied"
    assert [e.reason for e in suppressions.entries.values()] == ["unsubscribed"]


def test_the_preference_centre_reads_and_saves_choices(pages):
    app, _, _, tracker, contact_id = pages
    path = f"/v1/m/p/{token(tracker, PREFERENCES)}"
    page = app.http.get(path)
    assert page.status_code == 200 and b'name="email/newsletter"' in page.body
    saved = app.http.post(path, headers={"Content-Type": "application/x-www-form-urlencoded"},
                          body="sms=granted&email%2Fnewsletter=denied")
    assert saved.status_code == 200 and b"saved" in saved.body
    app.drain()
    _, contact = app.admin(f"/v1/admin/contacts/{contact_id}")
    assert contact["consent"]["sms"]["status"] == "granted"
    assert contact["consent"]["email/newsletter"]["status"] == "denied"
    bad = app.http.post(path, headers={"Content-Type": "application/x-www-form-urlencoded"}, body="fax=granted")
    assert bad.status_code == 400 and b"not a channel" in bad.body
    wrong = app.http.get(f"/v1/m/p/{token(tracker, UNSUBSCRIBE)}")
    assert wrong.status_code == 200 and b"not meant for this page" in wrong.body


def test_a_store_failure_is_never_a_500(pages, monkeypatch):
    app, log, _, tracker, _ = pages

    def broken(*args, **kwargs):
        raise RuntimeError("store down")

    monkeypatch.setattr(log, "get", broken)
    assert app.http.get(f"/v1/m/c/{token(tracker, CLICK, 0)}").status_code == 200
    assert app.http.get(f"/v1/m/o/{token(tracker, OPEN)}.gif", headers={"Accept": "image/*"}).status_code == 200
    assert app.http.post(f"/v1/m/u/{token(tracker, UNSUBSCRIBE)}", body="List-Unsubscribe=One-Click",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 503


def test_the_local_stack_serves_the_message_pages(local_stack):
    """`make run` configures the link signing key and the salt: a bad link gets the safe
    page with its reason, the pixel draws."""
    import urllib.request

    with urllib.request.urlopen(f"{local_stack.api_url}/v1/m/c/not-a-token", timeout=10) as response:
        assert response.status == 200 and b"incomplete or damaged" in response.read()
    request = urllib.request.Request(f"{local_stack.api_url}/v1/m/o/not-a-token.gif", headers={"Accept": "image/*"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and response.read().startswith(b"GIF89a")
