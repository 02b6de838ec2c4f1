"""The local inbox (`make run`: {shop}/_inbox, and /_inbox.json for scripts and tests):
every email, SMS and push the embedded AWS emulator received, newest first.

It reads moto's own record of what was sent, `/moto-api/data.json` on the emulator:
`ses.RawMessage` (id, source, destinations, raw_data: the MIME exactly as sent),
`ses.Message` (id, source, subject, body, destinations: simple sends), `sns.SMS`
(message_id, phone_number, message) and `sns.PlatformEndpoint` (arn, token, messages: id →
payload). moto keeps no send time, so the inbox orders by when it first saw a message, then
by the emulator's own order. Emails are shown with their headers and their HTML in a
sandboxed iframe (no scripts; links open in a new tab). Never shipped to Lambda.
"""
from __future__ import annotations

import email
import email.policy
import html
import itertools
import json
import threading
import time
import urllib.request
from datetime import datetime, timezone

HEADERS = ("From", "To", "Subject", "Date", "List-Unsubscribe", "List-Unsubscribe-Post", "Message-ID")


def _parts(raw: str) -> tuple[dict, str | None, str | None]:
    message = email.message_from_string(raw, policy=email.policy.default)
    headers = {name: str(message[name]) for name in HEADERS if message[name] is not None}
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    return (headers, html_part.get_content() if html_part is not None else None,
            text_part.get_content() if text_part is not None else None)


def _push_text(payload: str) -> dict:
    """Title and body of an SNS push payload: a plain message, or a JSON one per platform."""
    try:
        outer = json.loads(payload)
    except (TypeError, ValueError):
        return {"body": payload}
    if not isinstance(outer, dict):
        return {"body": payload}
    for key in ("APNS", "APNS_SANDBOX", "GCM", "default"):
        inner = outer.get(key)
        if isinstance(inner, str):
            try:
                inner = json.loads(inner)
            except ValueError:
                return {"body": inner}
        if isinstance(inner, dict):
            alert = (inner.get("aps") or {}).get("alert") or (inner.get("notification") or {})
            if isinstance(alert, dict) and (alert.get("title") or alert.get("body")):
                return {"title": alert.get("title"), "body": alert.get("body")}
    return {"body": payload}


def messages_from_moto(data: dict) -> list[dict]:
    """Every email, SMS and push in moto's model data, in the emulator's order (oldest first)."""
    found = []
    for item in data.get("ses", {}).get("RawMessage", []):
        headers, body_html, body_text = _parts(item.get("raw_data") or "")
        found.append({"channel": "email", "id": item.get("id"), "from": item.get("source"),
                      "to": sorted(set(item.get("destinations") or [])), "subject": headers.get("Subject"),
                      "headers": headers, "html": body_html, "text": body_text})
    for item in data.get("ses", {}).get("Message", []):
        destinations = item.get("destinations") or {}
        found.append({"channel": "email", "id": item.get("id"), "from": item.get("source"),
                      "to": list(destinations.get("ToAddresses", [])) if isinstance(destinations, dict) else [],
                      "subject": item.get("subject"),
                      "headers": {"From": item.get("source"), "Subject": item.get("subject")},
                      "html": item.get("body"), "text": None})
    for item in data.get("sns", {}).get("SMS", []):
        found.append({"channel": "sms", "id": item.get("message_id"), "to": item.get("phone_number"),
                      "text": item.get("message")})
    for endpoint in data.get("sns", {}).get("PlatformEndpoint", []):
        for message_id, payload in (endpoint.get("messages") or {}).items():
            found.append({"channel": "push", "id": message_id, "endpoint": endpoint.get("arn"),
                          "token": endpoint.get("token"), "payload": payload, **_push_text(payload)})
    return found


class Inbox:
    """What the emulator received, each message stamped with when this inbox first saw it."""

    def __init__(self, emulator_url: str, clock=lambda: datetime.now(timezone.utc)):
        self.emulator_url, self.clock = emulator_url.rstrip("/"), clock
        self._seen: dict[tuple[str, str], tuple[str, int]] = {}
        self._sequence = itertools.count()
        self._lock = threading.Lock()

    def fetch(self) -> dict:
        with urllib.request.urlopen(f"{self.emulator_url}/moto-api/data.json", timeout=10) as response:
            return json.loads(response.read())

    def messages(self) -> list[dict]:
        """Newest first."""
        found = messages_from_moto(self.fetch())
        now = self.clock().isoformat(timespec="seconds")
        with self._lock:
            for message in found:
                key = (message["channel"], str(message["id"]))
                if key not in self._seen:
                    self._seen[key] = (now, next(self._sequence))
                message["seen_at"], order = self._seen[key]
                message["_order"] = order
        found.sort(key=lambda m: m.pop("_order"), reverse=True)
        return found


def _iframe(body_html: str) -> str:
    # Links open in a new tab; the sandbox allows that and nothing else (no scripts, no forms,
    # no navigation of this page).
    document = '<base target="_blank">' + body_html
    return (f'<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer" '
            f'srcdoc="{html.escape(document, quote=True)}"></iframe>')


def render_page(messages: list[dict]) -> str:
    e = html.escape
    items = []
    for m in messages:
        if m["channel"] == "email":
            rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in m["headers"].items())
            body = _iframe(m["html"]) if m.get("html") else f"<pre>{e(m.get('text') or '')}</pre>"
            title = e(m.get("subject") or "(no subject)")
            items.append(f'<article class="email"><h2>✉️ {title}</h2><p class="to">to {e(", ".join(m["to"]))}'
                         f' · seen {e(m["seen_at"])}</p><table>{rows}</table>{body}</article>')
        elif m["channel"] == "sms":
            items.append(f'<article class="sms"><h2>💬 SMS to {e(m["to"] or "")}</h2>'
                         f'<p class="to">seen {e(m["seen_at"])}</p><pre>{e(m["text"] or "")}</pre></article>')
        else:
            items.append(f'<article class="push"><h2>🔔 {e(m.get("title") or "Push")}</h2>'
                         f'<p class="to">to {e(m.get("token") or "")} · seen {e(m["seen_at"])}</p>'
                         f'<pre>{e(m.get("body") or "")}</pre></article>')
    listing = "\n".join(items) or '<p class="empty">Nothing sent yet.</p>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Local inbox · Mercurio</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem; background: #f6f6f6; }}
article {{ background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 1rem; margin: 1rem 0; }}
h2 {{ margin: 0; font-size: 1.1rem; }} .to {{ color: #666; margin: .25rem 0; }}
table {{ font-size: .85rem; border-collapse: collapse; }} th {{ text-align: left; padding-right: 1rem; color: #555; }}
iframe {{ width: 100%; height: 28rem; border: 1px solid #eee; margin-top: .5rem; }}
</style></head><body>
<h1>Local inbox</h1>
<p>Every email, SMS and push the embedded AWS emulator received, newest first. Reload to refresh;
<a href="/_inbox.json">JSON</a>.</p>
{listing}
</body></html>"""


# A page with no script of its own; the emails' HTML runs nothing (sandboxed iframes).
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; frame-src 'self'"


def wait_for(inbox: Inbox, predicate, timeout: float = 30.0) -> list[dict]:
    """Poll until the messages satisfy `predicate` (for scripts and tests); the deadline only
    bounds a failure."""
    deadline = time.monotonic() + timeout
    while True:
        messages = inbox.messages()
        if predicate(messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.2)
