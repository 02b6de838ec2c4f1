"""Tracked links and the open pixel of an email, and how their requests are judged.

At send time every http(s) link of the HTML is replaced by `{base}/c/{token}`; the original
destinations are kept, in order, with the message (message id + link index). A token is
HMAC-SHA256-signed over its purpose, the message id, the link index and an expiry, and a
click resolves only to a destination stored at send time: a tampered, unknown or expired
token gets a safe page with its reason, never a redirect to something the token carries
(no open redirect), and never a `javascript:` or `data:` URL (those are refused at send
time too). `mailto:`, `tel:`, `#anchors` and the unsubscribe link are left as written.

Opens and clicks that look automated (mail scanners, link checkers, Apple Mail Privacy
Protection prefetch) are flagged `suspected_bot` with a reason by a pure function over the
request's facts; they are recorded but not trusted for branching.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html as html_lib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

CLICK, OPEN = "c", "o"
# The person's own pages, reached from a message without logging in: one-click unsubscribe
# (RFC 8058: a GET shows a page, a POST unsubscribes at once) and the preference centre.
UNSUBSCRIBE, PREFERENCES = "u", "p"
CONFIRM = "confirm"  # a double opt-in's confirmation link (services/interactions.py)
PAGES = (UNSUBSCRIBE, PREFERENCES, CONFIRM)
_TRACKED_SCHEMES = ("http", "https")
_UNTOUCHED_SCHEMES = ("mailto", "tel", "sms")
# A tag runs to the first `>` outside quotes (a title may hold ">"), and only a real `href`
# attribute counts (not `data-href`), so no link can hide from the checks below.
_ANCHOR = re.compile(r"""<(?:a|area)\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.I)
_HREF = re.compile(r"""(?<![\w-])(href\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]")  # browsers drop tabs/newlines inside a URL: java\tscript:
_MAX_TOKEN = 2048
SAFE_PAGE_REASONS = ("malformed token", "bad signature", "expired", "unknown message", "unknown link",
                     "unsafe destination", "wrong token kind")


def href_action(href: str) -> str:
    """`track` (http/https), `keep` (mailto, tel, #anchor, relative) or `refuse` (any other scheme)."""
    url = _INVISIBLE.sub("", html_lib.unescape(href or "")).lower()
    match = _SCHEME.match(url)
    if not match:
        return "keep"  # an #anchor or a relative path: nothing to follow off the message
    scheme = match.group(1)
    if scheme in _TRACKED_SCHEMES:
        return "track"
    if scheme in _UNTOUCHED_SCHEMES:
        return "keep"
    return "refuse"


def _hrefs(html: str) -> Iterable[tuple[re.Match, str]]:
    for anchor in _ANCHOR.finditer(html):
        found = _HREF.search(anchor.group(0))
        if found:
            value = next(g for g in (found.group(2), found.group(3), found.group(4)) if g is not None)
            yield anchor, value


def unsafe_links(html: str) -> list[str]:
    """Every link whose scheme may run code or smuggle content (javascript:, data:, vbscript:...)."""
    return [value for _, value in _hrefs(html) if href_action(value) == "refuse"]


class UnsafeLink(ValueError):
    def __init__(self, hrefs: Sequence[str]):
        self.hrefs = list(hrefs)
        super().__init__("refused links (only http(s), mailto:, tel: and #anchors are allowed): "
                         + ", ".join(repr(h) for h in self.hrefs))


@dataclass(frozen=True)
class TrackedHtml:
    html: str
    links: tuple[str, ...]  # destinations by link index, stored with the message


@dataclass(frozen=True)
class ClickOutcome:
    """Where a click goes: `destination` when the token is good, else a safe page and why."""

    destination: str | None
    reason: str | None = None
    message_id: str | None = None
    link_index: int | None = None

    @property
    def safe_page(self) -> bool:
        return self.destination is None


@dataclass(frozen=True)
class OpenOutcome:
    message_id: str | None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkTracker:
    """Signs and checks the tokens of one deployment.

    `secrets` lists the signing keys, newest first: tokens are signed with the first and
    accepted with any, so a key can be rotated without breaking links already sent."""

    def __init__(self, secrets: Sequence[bytes], base_url: str):
        if not secrets or any(not isinstance(s, bytes) or len(s) < 16 for s in secrets):
            raise ValueError("link signing needs at least one secret of 16 bytes or more")
        if not re.match(r"^https?://[^/\s]+", base_url or ""):
            raise ValueError(f"the tracking base URL must be an http(s) URL, got {base_url!r}")
        self.secrets = tuple(secrets)
        self.base_url = base_url.rstrip("/")

    # --- tokens

    def _sign(self, payload: bytes, secret: bytes) -> bytes:
        return hmac.new(secret, payload, hashlib.sha256).digest()

    def token(self, kind: str, message_id: str, index: int | None, expires_at: datetime) -> str:
        payload = json.dumps([kind, message_id, index, int(expires_at.timestamp())], separators=(",", ":"),
                             ensure_ascii=True).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload, self.secrets[0]))}"

    def _verify(self, token: object, kind: str, now: datetime) -> tuple[str | None, int | None, str | None]:
        """(message id, index, reason): the reason is set when the token must not be trusted."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 1:
            return None, None, "malformed token"
        encoded, signature = token.split(".")
        try:
            payload, given = _unb64(encoded), _unb64(signature)
        except ValueError:
            return None, None, "malformed token"
        # Every key is compared, in constant time, before anything in the payload is read.
        valid = False
        for secret in self.secrets:
            valid |= hmac.compare_digest(self._sign(payload, secret), given)
        if not valid:
            return None, None, "bad signature"
        try:
            token_kind, message_id, index, expires = json.loads(payload)
        except (ValueError, TypeError):
            return None, None, "malformed token"
        if token_kind != kind:
            return None, None, "wrong token kind"
        if not isinstance(message_id, str) or not isinstance(expires, int):
            return None, None, "malformed token"
        if now.timestamp() >= expires:
            return message_id, index, "expired"
        return message_id, index, None

    # --- send time

    def rewrite(self, html: str, message_id: str, expires_at: datetime, keep: Iterable[str] = ()) -> TrackedHtml:
        """Every http(s) link through the click redirect; `keep` lists URLs left as written
        (the unsubscribe and preference links, which must work without tracking)."""
        refused = unsafe_links(html)
        if refused:
            raise UnsafeLink(refused)
        kept = {html_lib.unescape(url).strip() for url in keep}
        destinations: list[str] = []
        out, last = [], 0
        for anchor, value in _hrefs(html):
            destination = html_lib.unescape(value).strip()
            if href_action(value) != "track" or destination in kept:
                continue
            href = _HREF.search(anchor.group(0))
            start = anchor.start() + href.start()
            end = anchor.start() + href.end()
            url = f"{self.base_url}/c/{self.token(CLICK, message_id, len(destinations), expires_at)}"
            out.append(html[last:start] + f'{href.group(1)}"{url}"')
            last = end
            destinations.append(destination)
        out.append(html[last:])
        return TrackedHtml("".join(out), tuple(destinations))

    def open_pixel_url(self, message_id: str, expires_at: datetime) -> str:
        return f"{self.base_url}/o/{self.token(OPEN, message_id, None, expires_at)}.gif"

    def add_open_pixel(self, html: str, message_id: str, expires_at: datetime) -> str:
        pixel = (f'<img src="{self.open_pixel_url(message_id, expires_at)}" width="1" height="1" alt="" '
                 'style="display:block;width:1px;height:1px;border:0">')
        closing = None
        for closing in re.finditer(r"</body\s*>", html, re.I):
            pass
        return html[:closing.start()] + pixel + html[closing.start():] if closing else html + pixel

    def track(self, html: str, message_id: str, expires_at: datetime, keep: Iterable[str] = ()) -> TrackedHtml:
        rewritten = self.rewrite(html, message_id, expires_at, keep)
        return TrackedHtml(self.add_open_pixel(rewritten.html, message_id, expires_at), rewritten.links)

    def page_url(self, kind: str, message_id: str, expires_at: datetime) -> str:
        """The signed link of a message's unsubscribe (`u`) or preference-centre (`p`) page."""
        if kind not in PAGES:
            raise ValueError(f"no page of kind {kind!r}")
        return f"{self.base_url}/{kind}/{self.token(kind, message_id, None, expires_at)}"

    def read_page(self, token: object, kind: str, now: datetime) -> OpenOutcome:
        """The message an unsubscribe or preference-centre link belongs to. An expired link
        is refused (the page then asks the person to use a newer message's link)."""
        if kind not in PAGES:
            raise ValueError(f"no page of kind {kind!r}")
        message_id, _, reason = self._verify(token, kind, now)
        return OpenOutcome(message_id if reason is None else None, reason)

    # --- request time

    def resolve(self, token: object, stored_links: Callable[[str], Sequence[str] | None],
                now: datetime) -> ClickOutcome:
        """The destination stored at send time for a valid, unexpired click token.

        `stored_links(message_id)` returns the destinations kept with the message (None when
        there is no such message); it is only called once the signature is good."""
        message_id, index, reason = self._verify(token, CLICK, now)
        if reason:
            return ClickOutcome(None, reason, message_id if reason == "expired" else None,
                                index if reason == "expired" else None)
        if isinstance(index, bool) or not isinstance(index, int):
            return ClickOutcome(None, "malformed token")
        stored = stored_links(message_id)
        if stored is None:
            return ClickOutcome(None, "unknown message", message_id, index)
        if not 0 <= index < len(stored):
            return ClickOutcome(None, "unknown link", message_id, index)
        destination = stored[index]
        if not isinstance(destination, str) or href_action(destination) != "track":
            return ClickOutcome(None, "unsafe destination", message_id, index)
        return ClickOutcome(destination, None, message_id, index)

    def read_open(self, token: object, now: datetime) -> OpenOutcome:
        """The message an open pixel belongs to (the `.gif` suffix is accepted)."""
        if isinstance(token, str) and token.endswith(".gif"):
            token = token[:-4]
        message_id, _, reason = self._verify(token, OPEN, now)
        return OpenOutcome(message_id if reason in (None, "expired") else None, reason)


# ---------------------------------------------------------------------------- bot detection

_SCANNER_AGENT = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|preview|scanner|python-requests|python-urllib|aiohttp|curl/|wget|"
    r"go-http-client|java/|okhttp|libwww|httpclient|headless|phantomjs|barracuda|mimecast|proofpoint|"
    r"symantec|forcepoint|trendmicro|messagelabs|safelinks|urldefense|checkpoint|fortiguard|sophos|ironport|"
    r"zscaler|microsoft office|ms-office|outlook-ios-android",
    re.I)
_APPLE_PREFETCH_AGENT = re.compile(r"^\s*Mozilla/5\.0\s*$")  # what Apple's proxy sends, and no more


@dataclass(frozen=True)
class InteractionFacts:
    """What is known about one open or click request."""

    kind: str  # "open" or "click"
    at: datetime
    user_agent: str | None
    method: str = "GET"
    delivered_at: datetime | None = None  # or sent, when delivery is not known yet
    link_index: int | None = None
    earlier_clicks: Sequence[tuple[datetime, int]] = ()  # (when, link index) of this message's clicks so far
    link_count: int = 0
    from_apple_proxy: bool = False  # the caller checks the address against Apple's published relay ranges


@dataclass(frozen=True)
class InteractionVerdict:
    suspected_bot: bool
    reasons: tuple[str, ...] = ()


def classify_interaction(facts: InteractionFacts, *, min_click_delay: timedelta = timedelta(seconds=2),
                         burst_window: timedelta = timedelta(seconds=5), burst_links: int = 3) -> InteractionVerdict:
    """Flag requests that look automated. A flagged open or click is still recorded, but
    journeys do not branch on it."""
    reasons: list[str] = []
    agent = (facts.user_agent or "").strip()
    if not agent:
        reasons.append("no user agent")
    elif _SCANNER_AGENT.search(agent):
        reasons.append(f"user agent looks like a scanner or link checker ({agent[:80]})")
    if facts.method.upper() == "HEAD":
        reasons.append("HEAD request (link checkers probe without reading)")
    if facts.kind == "open":
        if facts.from_apple_proxy or (agent and _APPLE_PREFETCH_AGENT.match(agent)):
            reasons.append("looks like Apple Mail Privacy Protection prefetch")
    else:
        if facts.delivered_at is not None:
            delay = (facts.at - facts.delivered_at).total_seconds()
            if delay < min_click_delay.total_seconds():
                reasons.append(f"clicked {max(delay, 0):.1f} s after delivery")
        recent = {index for when, index in facts.earlier_clicks if abs(facts.at - when) <= burst_window}
        if facts.link_index is not None:
            recent.add(facts.link_index)
        if len(recent) >= burst_links or (facts.link_count >= 2 and len(recent) >= facts.link_count):
            reasons.append(f"{len(recent)} links clicked within {burst_window.total_seconds():g} s")
    return InteractionVerdict(bool(reasons), tuple(reasons))
