"""Destinations: where what happens to contacts is pushed as it happens (a CRM webhook).

The signing secret never sits in a definition: the document names an SSM parameter (set it
with `PUT /v1/admin/destinations/{id}/secret`). `events` says which facts the destination
hears (default: `segment.entered`); segment events are sent only for the listed segments.

A URL whose host is written as an address (in any of the forms a resolver accepts: dotted,
shortened `127.1`, hexadecimal `0x7f.1`, a single number `2130706433`, bracketed IPv6,
IPv4-mapped IPv6) is checked here, when the definition is saved: loopback, private,
link-local (cloud metadata), shared, multicast and unspecified addresses and `localhost`
names are refused, unless private addresses are allowed by configuration
(MERCURIO_WEBHOOKS_ALLOW_PRIVATE). A DNS name is resolved and checked at each delivery
(it may change meanwhile), by the webhook sender.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.domain.contact_events import KINDS as EVENT_KINDS
from chalicelib.domain.definition_errors import DefinitionError, expect_list, expect_mapping, expect_name, \
    unknown_fields

FIELDS = ("id", "name", "description", "url", "secret_parameter", "segments", "events")
DEFAULT_EVENTS = ("segment.entered",)
SEGMENT_EVENTS = ("segment.entered", "segment.exited")
_PARAMETER = re.compile(r"^/mercurio/[a-z0-9-]+/destinations/[A-Za-z0-9_.-]{1,200}$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Destination:
    id: str
    name: str
    url: str
    secret_parameter: str
    segments: tuple[str, ...]
    events: tuple[str, ...] = DEFAULT_EVENTS

    def hears(self, kind: str, segment_id: str | None = None) -> bool:
        """Whether an event of this kind (about this segment) is sent here."""
        if kind not in self.events:
            return False
        if kind in SEGMENT_EVENTS:
            return segment_id in self.segments
        return True


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any form inet_aton(3) accepts (what resolvers and HTTP clients
    pass through): 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last part
    fills the remaining bytes. None when the text is not such a form (a DNS name)."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        lowered = part.lower()
        try:
            if lowered.startswith("0x"):
                value = int(lowered[2:] or "0", 16)
            elif len(lowered) > 1 and lowered.startswith("0"):
                value = int(lowered, 8)
            else:
                value = int(lowered, 10) if lowered.isdigit() else None
        except ValueError:
            return None
        if value is None:
            return None
        values.append(value)
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host written as an address stands for; None for a DNS name."""
    host = host.strip().rstrip(".") if host else ""
    if not host:
        return None
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return _inet_aton(host)


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast, looking through IPv6 forms that embed an IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
    return ip.is_global and not ip.is_multicast and not ip.is_unspecified


def refused_host(host: str) -> str | None:
    """Why a URL host may not be called without MERCURIO_WEBHOOKS_ALLOW_PRIVATE (None: no
    objection before resolving it)."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} is this machine (loopback)"
    address = literal_address(name)
    if address is not None and not is_public_address(address):
        return f"{host} is a non-public address ({address})"
    return None


def check_url(url: str, allow_private: bool) -> list[str]:
    """Problems with a destination URL, checked without any network access."""
    parts = urlsplit(url)
    problems = []
    if parts.username is not None or parts.password is not None:
        problems.append("url: credentials in the URL are not allowed; the signing secret authenticates deliveries")
    try:
        parts.port
    except ValueError:
        problems.append("url: the port is not a number between 0 and 65535")
    if not allow_private and parts.hostname:
        reason = refused_host(parts.hostname)
        if reason:
            problems.append(f"url: {reason}; private, loopback and link-local addresses are refused "
                            "(set MERCURIO_WEBHOOKS_ALLOW_PRIVATE=true to allow them, e.g. for a local receiver)")
    return problems


def _is_http_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False


def parse_destination(doc: object, allow_private: bool = True) -> Destination:
    """`allow_private=False` also refuses literal non-public addresses (definitions being
    saved); stored definitions are read with the default, the sender checking at delivery."""
    problems: list[str] = []
    mapping = expect_mapping(doc, "", problems)
    if mapping is None:
        raise DefinitionError(problems)
    unknown_fields(mapping, FIELDS, "", problems)
    definition_id = expect_name(mapping.get("id"), "id", problems)
    name = mapping.get("name") or definition_id
    url = mapping.get("url")
    if not _is_http_url(url):
        problems.append(f"url: {url!r} is not an http(s) URL")
    else:
        problems.extend(check_url(url, allow_private))
    parameter = mapping.get("secret_parameter")
    if not isinstance(parameter, str) or not _PARAMETER.match(parameter):
        problems.append("secret_parameter: the name of an SSM SecureString parameter under "
                        "/mercurio/<stage>/destinations/, e.g. /mercurio/prod/destinations/crm")
    events = DEFAULT_EVENTS
    if "events" in mapping:
        listed = expect_list(mapping.get("events"), "events", problems) or []
        for i, kind in enumerate(listed):
            if kind not in EVENT_KINDS:
                problems.append(f"events[{i}]: {kind!r} is not one of {', '.join(sorted(EVENT_KINDS))}")
        if not listed and "events" in mapping and isinstance(mapping.get("events"), list):
            problems.append("events: list at least one event type")
        events = tuple(dict.fromkeys(k for k in listed if k in EVENT_KINDS)) or DEFAULT_EVENTS
    segments: list = []
    if "segments" in mapping or any(k in SEGMENT_EVENTS for k in events):
        segments = expect_list(mapping.get("segments"), "segments", problems) or []
        if not segments and isinstance(mapping.get("segments"), list):
            problems.append("segments: list at least one segment id")
    for i, segment in enumerate(segments):
        if not isinstance(segment, str) or not segment:
            problems.append(f"segments[{i}]: {segment!r} is not a segment id")
    if problems:
        raise DefinitionError(problems)
    return Destination(definition_id, str(name), url, parameter, tuple(segments), events)
