"""The public pages a message links to, reached without logging in through signed tokens:
the click redirect, the open pixel, the unsubscribe page (RFC 8058 one-click POST) and the
preference centre.

No input makes these answer 500: a bad token gets a safe page that says why (never a
redirect), the pixel is always a 1x1 GIF, and a failure of the stores answers 503 on the
pages that record a decision (the person's click must not be lost silently) and the safe
page or the pixel elsewhere.
"""
from __future__ import annotations

import base64
import html
from urllib.parse import parse_qsl

from chalice import Blueprint, Response

from chalicelib.entrypoints.runtime import logger, services
from chalicelib.services.interactions import BadPreferences, PageResult, RequestFacts

messages_public = Blueprint(__name__)
ANY = ["*/*"]
MAX_FORM_BYTES = 8192

# The smallest transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# What image requests ask for. These are binary media types of the API (app.py adds them):
# API Gateway, and Chalice after it, return a binary body only to a request whose Accept
# names one of them. A request that accepts no image gets 204 (recorded all the same).
PIXEL_ACCEPT_TYPES = ("image/gif", "image/*", "image/webp", "image/png", "image/apng", "image/avif")
_PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
}
_REASON_WORDS = {
    "malformed token": "This link is incomplete or damaged. Copy the whole link from the message and try again.",
    "bad signature": "This link was not issued by us, or it was changed after it was sent.",
    "expired": "This link has expired. Please use the link in a more recent message.",
    "unknown message": "We no longer have the message this link belongs to.",
    "unknown link": "This link does not belong to the message it names.",
    "unsafe destination": "This link leads somewhere we will not send you.",
    "wrong token kind": "This link is not meant for this page.",
    "unavailable": "We could not complete this request just now. Please try again in a minute.",
}


def _facts() -> RequestFacts:
    request = messages_public.current_request
    ip = (request.context.get("identity") or {}).get("sourceIp")
    return RequestFacts(ip=ip, user_agent=request.headers.get("user-agent"), method=request.method)


def _page(title: str, body: str, status: int = 200) -> Response:
    document = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                f"<title>{html.escape(title)}</title>"
                "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;"
                "line-height:1.5}button{font-size:1rem;padding:.5rem 1rem}fieldset{border:0;padding:0}"
                "td{padding:.25rem .5rem}</style></head>"
                f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return Response(body=document, status_code=status, headers=dict(_PAGE_HEADERS))


def _safe_page(reason: str | None, status: int = 200) -> Response:
    words = _REASON_WORDS.get(reason or "", "This link cannot be used.")
    return _page("This link cannot be opened", f"<p>{html.escape(words)}</p>"
                 f"<p><small>Reason: {html.escape(reason or 'unknown')}</small></p>", status)


def _form(request) -> dict:
    raw = request.raw_body or b""
    if len(raw) > MAX_FORM_BYTES:
        raise BadPreferences("the form is too large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPreferences("the form is not UTF-8 text") from None
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=64))


# -- click and open ------------------------------------------------------------------------

@messages_public.route("/v1/m/c/{token}", methods=["GET", "HEAD"])
def message_click(token):
    try:
        result = services().interactions.click(token, _facts())
    except Exception:  # noqa: BLE001 - never a 500 and never a redirect that was not checked
        logger.exception("click could not be recorded")
        return _safe_page("unavailable")
    if result.destination is None:
        return _safe_page(result.reason)
    if result.not_recorded:
        logger.error("click not recorded", extra={"reason": result.not_recorded})
    return Response(body="", status_code=302, headers={
        "Location": result.destination, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@messages_public.route("/v1/m/o/{token}", methods=["GET", "HEAD"])
def message_open(token):
    try:
        services().interactions.open(token, _facts())
    except Exception:  # noqa: BLE001 - the pixel is served whatever happens
        logger.exception("open could not be recorded")
    headers = {"Cache-Control": "no-store, no-cache, must-revalidate, private"}
    if not _accepts_image(messages_public.current_request.headers.get("accept")):
        return Response(body="", status_code=204, headers=headers)
    return Response(body=PIXEL, status_code=200, headers={"Content-Type": "image/gif", **headers})


def _accepts_image(accept: str | None) -> bool:
    kinds = {part.split(";")[0].strip().lower() for part in (accept or "").split(",")}
    return "*/*" in kinds or bool(kinds & set(PIXEL_ACCEPT_TYPES))


# -- unsubscribe ---------------------------------------------------------------------------

def _unsubscribe_form(result: PageResult) -> str:
    scope = html.escape(result.scope or "")
    everything = ""
    if result.message is not None and result.message.topic:
        everything = ("<p><button type=\"submit\" name=\"everything\" value=\"1\">Unsubscribe from all marketing "
                      f"{html.escape(result.message.channel)} messages</button></p>")
    return (f"<p>Unsubscribe from {scope}?</p><form method=\"post\">"
            "<p><button type=\"submit\" name=\"action\" value=\"unsubscribe\">Unsubscribe</button></p>"
            f"{everything}</form>")


@messages_public.route("/v1/m/u/{token}", methods=["GET", "POST"], content_types=ANY)
def message_unsubscribe(token):
    request = messages_public.current_request
    try:
        interactions = services().interactions
        if request.method == "GET":  # RFC 8058: a GET (a mail scanner following links) never unsubscribes
            result = interactions.unsubscribe_page(token)
            if result.reason:
                return _safe_page(result.reason)
            return _page("Unsubscribe", _unsubscribe_form(result))
        try:
            form = _form(request)
        except BadPreferences:
            form = {}
        one_click = form.get("List-Unsubscribe") == "One-Click"
        result = interactions.unsubscribe(token, _facts(), everything=form.get("everything") == "1",
                                          one_click=one_click)
    except Exception:  # noqa: BLE001
        logger.exception("unsubscribe could not be recorded")
        return _safe_page("unavailable", 503)
    if result.reason:
        return _safe_page(result.reason)
    return _page("You are unsubscribed", f"<p>You will receive no more {html.escape(result.scope or '')}.</p>")


# -- preference centre ---------------------------------------------------------------------

def _preferences_form(result: PageResult, notice: str = "") -> str:
    rows = []
    for key, label, status in result.choices:
        name = html.escape(key, quote=True)
        yes = " checked" if status == "granted" else ""
        no = " checked" if status == "denied" else ""
        rows.append(f"<tr><td>{html.escape(label)}</td>"
                    f"<td><label><input type=\"radio\" name=\"{name}\" value=\"granted\"{yes}> Yes</label></td>"
                    f"<td><label><input type=\"radio\" name=\"{name}\" value=\"denied\"{no}> No</label></td></tr>")
    return (f"{notice}<p>Choose what you want to receive.</p><form method=\"post\"><fieldset><table>"
            + "".join(rows) + "</table></fieldset><p><button type=\"submit\">Save my choices</button></p></form>")


@messages_public.route("/v1/m/p/{token}", methods=["GET", "POST"], content_types=ANY)
def message_preferences(token):
    request = messages_public.current_request
    try:
        interactions = services().interactions
        if request.method == "GET":
            result = interactions.preferences(token)
            if result.reason:
                return _safe_page(result.reason)
            return _page("Your preferences", _preferences_form(result))
        try:
            result = interactions.save_preferences(token, _form(request), _facts())
        except BadPreferences as exc:
            return _page("Your preferences were not saved", f"<p>{html.escape(str(exc))}</p>", 400)
    except Exception:  # noqa: BLE001
        logger.exception("preferences could not be recorded")
        return _safe_page("unavailable", 503)
    if result.reason:
        return _safe_page(result.reason)
    notice = "<p><strong>Your choices are saved.</strong></p>" if result.changed else \
        "<p><strong>Nothing changed.</strong></p>"
    return _page("Your preferences", _preferences_form(result, notice))


# -- double opt-in confirmation ------------------------------------------------------------

_CONFIRM_WORDS = {
    "expired": "This confirmation link has expired. Please subscribe again: we will send you a new one.",
    "wrong_token": "This confirmation link belongs to an older request. Please use the most recent email we sent.",
    "not_pending": "There is no subscription waiting for confirmation with this link. Please subscribe again.",
}


@messages_public.route("/v1/m/confirm/{token}", methods=["GET", "POST"], content_types=ANY)
def message_confirm(token):
    """A double opt-in's confirmation link. The GET shows a button and records nothing (mail
    scanners and link previews open links); the button's POST starts the subscription (a second
    one is a no-op)."""
    request = messages_public.current_request
    try:
        interactions = services().interactions
        if request.method == "GET":
            result = interactions.confirm_page(token)
        else:
            result = interactions.confirm(token, _facts())
    except Exception:  # noqa: BLE001
        logger.exception("confirmation could not be recorded")
        return _safe_page("unavailable", 503)
    if result.reason in _CONFIRM_WORDS:
        return _page("Subscription not confirmed", f"<p>{html.escape(_CONFIRM_WORDS[result.reason])}</p>"
                     f"<p><small>Reason: {html.escape(result.reason)}</small></p>")
    if result.reason:
        return _safe_page(result.reason)
    if request.method == "GET":
        return _page("Confirm your subscription",
                     f"<p>Please confirm that you want to receive {html.escape(result.scope or '')}.</p>"
                     "<form method=\"post\"><button type=\"submit\">Yes, confirm my subscription</button></form>")
    return _page("Subscription confirmed", f"<p>Thank you: you will receive {html.escape(result.scope or '')}."
                 " You can change this at any time from the link at the bottom of every message.</p>")
