"""Signed webhook deliveries (e.g. a marketing-qualified lead posted to a CRM).

Each delivery is a JSON POST with these headers:

    Content-Type: application/json
    User-Agent: Mercurio-Webhooks/1
    X-Mercurio-Delivery: <id, the same on every attempt: use it to ignore duplicates>
    X-Mercurio-Timestamp: <Unix time in seconds when the attempt was signed>
    X-Mercurio-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>" keyed with the secret>

Verifying a delivery (receiver side): read the raw body bytes before parsing them, compute
`hmac_sha256(secret, timestamp + "." + body)` in hex, compare it with the `v1=` value in
constant time, and refuse timestamps more than five minutes from your clock (replays).
`verify_signature` below does exactly this.

`attempt` makes exactly one POST and returns a `WebhookAttempt`: retrying is the effects
queue's (services/deliveries.py: back-off, a Retry-After honoured, parking), never a sleep
here. Redirects are never followed.

Only http and https URLs are accepted. Unless `allow_private=True`, a host that resolves to
a loopback, private, link-local, shared, multicast or otherwise non-public address is
refused, and the connection is made to the address that was checked (no second DNS lookup
that a rebinding name could answer differently). Proxies from the environment are not used.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.domain.destinations import is_public_address

USER_AGENT = "Mercurio-Webhooks/1"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = 300
MAX_REASON = 200


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    mac = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_signature(secret: str | bytes, timestamp: str, body: bytes, signature: str,
                     tolerance: int = DEFAULT_TOLERANCE, now: float | None = None) -> bool:
    """What a receiver does: constant-time comparison and a bounded clock difference."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except (TypeError, ValueError):
        return False
    if age > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")


class RefusedDestination(ValueError):
    pass


def _is_public(address: str) -> bool:
    return is_public_address(ipaddress.ip_address(address.split("%")[0]))


def resolve_destination(url: str, allow_private: bool) -> tuple[str, int, str]:
    """(host, port, address to connect to); RefusedDestination for what may not be called.

    OSError (socket.gaierror) when the name does not resolve: that may be transient.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RefusedDestination(f"only http and https URLs are allowed, got {parts.scheme or 'none'!r}")
    if parts.username is not None or parts.password is not None:
        raise RefusedDestination("credentials in the URL are not allowed; use the signing secret")
    host = parts.hostname
    if not host:
        raise RefusedDestination("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RefusedDestination("the URL's port is not a number between 0 and 65535") from None
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise OSError(f"{host} has no address")
    if not allow_private:
        blocked = [a for a in addresses if not _is_public(a)]
        if blocked:
            raise RefusedDestination(f"{host} resolves to a non-public address ({blocked[0]})")
    return host, port, addresses[0]


def _pinned(connection_class, address: str):
    """A connection class that connects to `address`, keeping the host for Host and TLS."""

    class Pinned(connection_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

            def create_connection(target, timeout=None, source_address=None):
                return socket.create_connection((address, target[1]), timeout, source_address)

            self._create_connection = create_connection

    return Pinned


class _PinnedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, address: str):
        super().__init__()
        self._address = address

    def http_open(self, req):
        return self.do_open(_pinned(http.client.HTTPConnection, self._address), req)


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, address: str):
        super().__init__()
        self._address = address

    def https_open(self, req):
        return self.do_open(_pinned(http.client.HTTPSConnection, self._address), req, context=self._context)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx surfaces as an HTTPError and is reported, not followed


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the back-off


@dataclass(frozen=True)
class WebhookAttempt:
    """One POST and what came of it. `retryable`: a later attempt may succeed (network
    errors, 429, 5xx, other 4xx); a refused URL cannot until the definition changes."""

    delivered: bool
    http_status: int | None
    reason: str
    retryable: bool
    retry_after: float | None = None
    sent: bool = True  # False when refused before any connection


class WebhookSender:
    def __init__(self, timeout: float = 5, opener=None, allow_private: bool = False, clock=time.time):
        """`opener` replaces the HTTP client: anything with `open(request, timeout=…)`."""
        self.timeout = timeout
        self.opener = opener
        self.allow_private = allow_private
        self.clock = clock

    @staticmethod
    def encode(payload: object) -> bytes:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")

    def attempt(self, url: str, payload: object, secret: str | bytes, delivery_id: str, *,
                allow_private: bool | None = None) -> WebhookAttempt:
        """Exactly one signed POST (no waiting, no retry): the queue consumer's unit of work,
        its back-off being the queue's."""
        allow = self.allow_private if allow_private is None else allow_private
        body = self.encode(payload)
        try:
            _, _, address = resolve_destination(url, allow)
        except RefusedDestination as exc:
            return WebhookAttempt(False, None, f"refused: {exc}"[:MAX_REASON], retryable=False, sent=False)
        except OSError as exc:
            return WebhookAttempt(False, None, f"cannot resolve the host: {exc}"[:MAX_REASON], retryable=True,
                                  sent=False)
        timestamp = str(int(self.clock()))
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Mercurio-Delivery": delivery_id,
            "X-Mercurio-Timestamp": timestamp,
            "X-Mercurio-Signature": sign(secret, timestamp, body),
        })
        try:
            with self._open(request, address) as response:
                response.read(64 * 1024)
                return WebhookAttempt(True, response.status, f"HTTP {response.status}", retryable=False)
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} {exc.reason or ''}".strip()
            retry_after = _retry_after(exc.headers)
            exc.close()
            if 300 <= exc.code < 400:
                reason = f"{reason}: redirects are not followed"
            return WebhookAttempt(False, exc.code, reason[:MAX_REASON], retryable=True, retry_after=retry_after)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            detail = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return WebhookAttempt(False, None, f"network error: {detail or type(exc).__name__}"[:MAX_REASON],
                                  retryable=True)

    def _open(self, request, address: str):
        if self.opener is not None:
            return self.opener.open(request, timeout=self.timeout)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), _NoRedirects(),
            _PinnedHTTPHandler(address), _PinnedHTTPSHandler(address),
        )
        return opener.open(request, timeout=self.timeout)
