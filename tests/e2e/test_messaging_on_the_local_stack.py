"""Messaging's acceptance on the real local stack (`python -m local.run`, over HTTP): a signup
gets the welcome email in the local inbox with one-click unsubscribe headers; a tracked link
redirects and the click shows on the contact; the one-click POST stops the next marketing
send with its reason; a hard bounce (the emulator's simulator address) suppresses the address.

Quiet hours stay on (21:00-08:00 in the contact's zone): each contact here lives in a fixed
UTC offset chosen so that it is midday for them whenever the test runs, and one lives where
it is 23:00, to see the wait for the morning.
"""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo


def _zone_where_it_is(hour: int) -> str:
    """An IANA fixed-offset zone (Etc/GMT±N, sign inverted by POSIX) whose local hour is
    `hour` now. Offsets run from -12 to +14: any hour of the day is reachable."""
    now = datetime.now(timezone.utc)
    offset = (hour - now.hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" + ("+" if offset <= 0 else "-") + str(abs(offset))


def _post(stack, path: str, body: dict) -> None:
    request = urllib.request.Request(stack.api_url + path, data=json.dumps({"writeKey": stack.write_key, **body}).encode(),
                                     method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _signup(stack, email: str, zone: str) -> str:
    """What the demo shop's newsletter form sends: identify by email, then the consent."""
    anon = f"anon-{uuid.uuid4()}"
    _post(stack, "/v1/i", {"anonymousId": anon, "traits": {"email": email, "first_name": "Ada", "timezone": zone}})
    _post(stack, "/v1/t", {"anonymousId": anon, "event": "Consent Updated",
                           "properties": {"channel": "email", "status": "granted", "source": "newsletter signup"}})
    return anon


def _until(what: str, probe, timeout: float = 60.0):
    """Poll until `probe()` answers something truthy: returns as soon as it does; the deadline
    only bounds a failure (processing is asynchronous and the machine may be busy)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def _inbox(stack) -> list[dict]:
    with urllib.request.urlopen(stack.shop_url + "/_inbox.json", timeout=10) as response:
        body = json.loads(response.read())
    return body["messages"] if isinstance(body, dict) else body


def _emails_to(stack, address: str) -> list[dict]:
    return [m for m in _inbox(stack) if m["channel"] == "email" and address in m["to"]]


def _contact_messages(stack, contact_id: str) -> list[dict]:
    status, body = stack.admin_get(f"/v1/admin/contacts/{contact_id}/messages")
    assert status == 200, body
    return body["messages"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_signup_welcome_click_unsubscribe_and_the_next_send_is_stopped(local_stack):
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    _signup(local_stack, email, _zone_where_it_is(12))

    [mail] = _until("the welcome email in the local inbox", lambda: _emails_to(local_stack, email))
    headers = mail["headers"]
    assert headers["Subject"].startswith("Welcome to Caffè Mercurio, Ada")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.match(r"<(http[^>]+/v1/m/u/[^>]+)>", headers["List-Unsubscribe"]).group(1)
    contact = local_stack.wait_for_contact(f"email:{email}")

    # A tracked link goes to the destination stored at send time, with the click's id.
    tracked = re.findall(r'href="(http[^"]+/v1/m/c/[^"]+)"', mail["html"])
    assert tracked, "the email's links go through the click redirect"
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(tracked[0], timeout=10)
        raise AssertionError("the click redirect did not redirect")
    except urllib.error.HTTPError as redirect:
        assert redirect.code == 302
        landing = redirect.headers["Location"]
    assert landing.startswith("https://") and "mcid=clk_" in landing
    _until("the click on the contact's timeline", lambda: any(
        e.get("event") == "Email Link Clicked"
        for e in local_stack.admin_get(f"/v1/admin/contacts/{contact['id']}/events?kind=internal")[1]["events"]))

    # A GET of the unsubscribe link changes nothing (mail scanners follow links); the
    # one-click POST unsubscribes at once.
    with urllib.request.urlopen(unsubscribe, timeout=10) as page:
        assert page.status == 200 and b"Unsubscribe" in page.read()
    request = urllib.request.Request(unsubscribe, data=b"List-Unsubscribe=One-Click", method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    # The next marketing send of that list is skipped, with the reason: a marketer uploads a
    # newsletter issue and a trigger that sends it when the person views a product.
    _admin(local_stack, "PUT", "/v1/admin/templates/issue-1.html.j2", NEWSLETTER_ISSUE.encode(), "text/plain")
    _admin(local_stack, "PUT", "/v1/admin/definitions/trigger/issue-1-e2e", json.dumps(
        {"name": "Newsletter issue on a product view", "when": {"event": "Product Viewed"},
         "send": {"template": "issue-1", "channel": "email"}}).encode(), "application/json")
    anon = next(i.split(":", 1)[1] for i in contact["identifiers"] if i.startswith("anon:"))

    def view_and_look():
        # Each view is a new event, so a trigger the stream's catalog picks up a moment late
        # (it is reloaded every 2 s locally) still sees one.
        _post(local_stack, "/v1/t", {"anonymousId": anon, "event": "Product Viewed",
                                     "properties": {"product_id": "roma", "category": "coffee"}})
        return [m for m in _contact_messages(local_stack, contact["id"])
                if m["template"] == "issue-1" and m["status"] in ("skipped", "sent")]

    outcome = _until("the newsletter issue's outcome", view_and_look)
    assert {m["status"] for m in outcome} == {"skipped"}, outcome
    assert outcome[0]["timeline"][-1]["detail"]["code"] == "consent_denied", outcome
    assert len(_emails_to(local_stack, email)) == 1  # still only the welcome email


NEWSLETTER_ISSUE = """---
subject: "Issue 1: the autumn roasts"
from: "Caffè Mercurio <hello@shop.example>"
kind: marketing
topic: newsletter
---
<html><body><p>Hello {{ traits.first_name | default("friend") }}, here is issue 1.</p>
<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p></body></html>
"""


def _admin(stack, method: str, path: str, body: bytes, content_type: str) -> None:
    request = urllib.request.Request(stack.api_url + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {stack.admin_token}",
                                              "Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_at_23_local_time_the_welcome_email_waits_for_the_morning(local_stack):
    email = f"owl-{uuid.uuid4().hex[:8]}@example.com"
    zone = _zone_where_it_is(23)
    _signup(local_stack, email, zone)
    contact = local_stack.wait_for_contact(f"email:{email}")
    [welcome] = _until("the welcome email deferred", lambda: [
        m for m in _contact_messages(local_stack, contact["id"]) if m["status"] == "deferred"])
    deferral = welcome["timeline"][-1]
    assert deferral["detail"]["code"] == "quiet_hours"
    # The next 08:00 in the contact's zone after the moment the gate deferred it (23:xx there,
    # or just past midnight if the hour turned meanwhile: the same morning either way).
    deferred_at = datetime.fromisoformat(deferral["at"].replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    morning = deferred_at.replace(hour=8, minute=0, second=0, microsecond=0)
    if morning <= deferred_at:
        morning += timedelta(days=1)
    assert datetime.fromisoformat(deferral["detail"]["until"]) == morning
    assert _emails_to(local_stack, email) == []


def test_a_hard_bounce_suppresses_the_address(local_stack):
    address = "bounce@simulator.amazonses.com"
    _signup(local_stack, address, _zone_where_it_is(12))
    contact = local_stack.wait_for_contact(f"email:{address}")
    # The welcome email goes to the simulator, which answers with a permanent bounce: the
    # feedback queue suppresses the address and the message is recorded bounced.
    [welcome] = _until("the bounce on the welcome email", lambda: [
        m for m in _contact_messages(local_stack, contact["id"]) if m["status"] == "bounced"])
    assert welcome["template"] == "welcome"
    _until("the Email Bounced event on the contact", lambda: any(
        e.get("event") == "Email Bounced" and e["properties"].get("bounce_type") == "hard"
        for e in local_stack.admin_get(f"/v1/admin/contacts/{contact['id']}/events?kind=internal")[1]["events"]))
