"""The raw MIME message of an email, exactly as it will be handed to SES.

One function builds every email, so every marketing message carries the one-click
unsubscribe headers of RFC 8058 (`List-Unsubscribe: <https://…>` and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`), which Gmail and Yahoo require of bulk
senders. The Message-ID is derived from Mercurio's own message id, so a retried send builds
the same bytes, and SES's feedback events (which echo the Message-ID in
`mail.commonHeaders.messageId`) lead back to the message. Headers the sender adds for SES
(the configuration set) are not built here.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses, parseaddr

MARKETING, TRANSACTIONAL = "marketing", "transactional"
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_HEADER_WHITESPACE = re.compile(r"[\s\x00-\x1f\x7f]+")
# The local stack serves its pages on the loopback address over plain http: nothing leaves
# the machine, so RFC 8058's https requirement is waived there, and only there.
_LOOPBACK_HTTP = re.compile(r"^http://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?/[^\s<>]*$")


class InvalidEmail(ValueError):
    """An email that must not be sent as asked (the reason says what to fix)."""


@dataclass(frozen=True)
class EmailContent:
    message_id: str
    sender: str  # "Shop <news@shop.example>"
    to: str
    subject: str
    html: str
    text: str
    sent_at: datetime
    kind: str  # marketing | transactional
    unsubscribe_url: str | None = None  # required for marketing: the one-click POST endpoint
    unsubscribe_mailto: str | None = None  # optional second method for older clients
    reply_to: str | None = None


def _header_text(value: str) -> str:
    """Personalised header text on one line: a trait with a newline must not add a header."""
    return _HEADER_WHITESPACE.sub(" ", value or "").strip()


def _address(value: str, what: str) -> Address | str:
    text = _header_text(value)
    name, address = parseaddr(text)
    if len(getaddresses([text])) != 1 or not re.fullmatch(r"[^@\s<>,]+@[^@\s<>,]+\.[^@\s<>,]+", address or ""):
        raise InvalidEmail(f"{what}: {value!r} is not one email address")
    local, domain = address.rsplit("@", 1)
    try:
        domain.encode("ascii")
    except UnicodeEncodeError:
        domain = domain.encode("idna").decode("ascii")
    return Address(display_name=name, username=local, domain=domain)


def message_id_header(message_id: str, domain: str) -> str:
    """`<{id}@{domain}>`; an id with characters a Message-ID cannot hold is hashed instead."""
    local = message_id if _DOT_ATOM.match(message_id or "") and ".." not in message_id \
        and not message_id.startswith(".") and not message_id.endswith(".") else \
        hashlib.sha256((message_id or "").encode()).hexdigest()[:40]
    return f"<{local}@{domain}>"


def build_email(content: EmailContent) -> bytes:
    """multipart/alternative (text, then HTML) with From, To, Subject, Date, Message-ID and,
    for marketing, the one-click unsubscribe headers. UTF-8 headers are RFC 2047-encoded."""
    if content.kind not in (MARKETING, TRANSACTIONAL):
        raise InvalidEmail(f"kind must be marketing or transactional, got {content.kind!r}")
    if content.sent_at.tzinfo is None:
        raise InvalidEmail("sent_at must carry a time zone")
    if content.unsubscribe_url is not None and not (re.match(r"^https://[^\s<>]+$", content.unsubscribe_url)
                                                    or _LOOPBACK_HTTP.match(content.unsubscribe_url)):
        raise InvalidEmail(f"the unsubscribe URL must be https (RFC 8058), got {content.unsubscribe_url!r}")
    if content.kind == MARKETING and not content.unsubscribe_url:
        raise InvalidEmail("a marketing email needs an https unsubscribe URL (RFC 8058 one-click)")
    sender = _address(content.sender, "from")
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = _address(content.to, "to")
    if content.reply_to:
        message["Reply-To"] = _address(content.reply_to, "reply_to")
    message["Subject"] = _header_text(content.subject)
    message["Date"] = format_datetime(content.sent_at)
    message["Message-ID"] = message_id_header(content.message_id, sender.domain)
    if content.unsubscribe_url:
        targets = [f"<{content.unsubscribe_url}>"]
        if content.unsubscribe_mailto:
            targets.append(f"<mailto:{_address(content.unsubscribe_mailto, 'unsubscribe_mailto').addr_spec}>")
        message["List-Unsubscribe"] = ", ".join(targets)
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Quoted-printable keeps the message 7-bit clean whatever relays it, and a literal "="
    # is always encoded in it, so a boundary starting "=_" can never occur in a body: that
    # lets the boundary be derived from the message id, and a retry build the same bytes.
    message.set_content(content.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(content.html, subtype="html", charset="utf-8", cte="quoted-printable")
    message.set_boundary("=_" + hashlib.sha256(content.message_id.encode()).hexdigest()[:32])
    return message.as_bytes(policy=SMTP)
