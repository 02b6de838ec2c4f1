"""Raw MIME: both parts, the headers mail providers require, UTF-8 done right, same bytes on retry."""
from __future__ import annotations

import email
from dataclasses import replace
from datetime import datetime, timezone
from email import policy

import pytest

from chalicelib.domain.messaging.mime import EmailContent, InvalidEmail, build_email, message_id_header

SENT = datetime(2026, 11, 3, 9, 0, 5, tzinfo=timezone.utc)
MARKETING = EmailContent(
    message_id="m-2026-11-welcome-c42",
    sender="Caffè Mercurio <hello@shop.example>",
    to="Jürgen Müller <jurgen@example.de>",
    subject="Willkommen, Jürgen ☕",
    html="<html><body><p>Grüße aus Rom — <a href=\"https://shop.example\">shop</a></p></body></html>",
    text="Grüße aus Rom — shop (https://shop.example)\n",
    sent_at=SENT,
    kind="marketing",
    unsubscribe_url="https://t.shop.example/u/TOKEN",
)


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def test_a_marketing_email_parses_back_with_both_parts_and_every_header():
    raw = build_email(MARKETING)
    message = parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]  # clients show the last they can
    assert parts[0].get_content().replace("\r\n", "\n") == MARKETING.text
    assert parts[1].get_content().replace("\r\n", "\n").rstrip("\n") == MARKETING.html
    assert parts[0].get_content_charset() == "utf-8"
    assert message["Subject"] == "Willkommen, Jürgen ☕"
    assert message["From"].addresses[0].display_name == "Caffè Mercurio"
    assert message["From"].addresses[0].addr_spec == "hello@shop.example"
    assert message["To"].addresses[0].addr_spec == "jurgen@example.de"
    assert message["Date"].datetime == SENT
    assert message["Message-ID"] == "<m-2026-11-welcome-c42@shop.example>"
    assert message["List-Unsubscribe"] == "<https://t.shop.example/u/TOKEN>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["MIME-Version"] == "1.0"


def test_utf8_headers_are_encoded_and_lines_fit_smtp():
    raw = build_email(replace(MARKETING, html="<p>" + "x" * 5000 + "</p>"))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert raw.isascii()
    subject = next(line for line in head.split(b"\r\n") if line.startswith(b"Subject: "))
    assert b"=?utf-8?" in subject and "Jürgen".encode() not in head
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert parse(raw).get_body(("html",)).get_content().rstrip("\r\n") == "<p>" + "x" * 5000 + "</p>"


def test_the_same_message_builds_the_same_bytes():
    assert build_email(MARKETING) == build_email(MARKETING)
    other = parse(build_email(replace(MARKETING, message_id="m-other")))
    assert other["Message-ID"] == "<m-other@shop.example>"


def test_a_transactional_email_needs_no_unsubscribe_headers():
    message = parse(build_email(replace(MARKETING, kind="transactional", unsubscribe_url=None)))
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


def test_a_marketing_email_without_an_https_unsubscribe_url_is_refused():
    with pytest.raises(InvalidEmail, match="needs an https unsubscribe URL"):
        build_email(replace(MARKETING, unsubscribe_url=None))
    with pytest.raises(InvalidEmail, match="must be https"):
        build_email(replace(MARKETING, unsubscribe_url="http://t.shop.example/u/TOKEN"))
    with pytest.raises(InvalidEmail, match="must be https"):
        build_email(replace(MARKETING, unsubscribe_url="https://t.shop.example/u/a>, <https://evil.example"))


def test_plain_http_is_accepted_only_on_the_loopback_address_of_the_local_stack():
    for url in ("http://127.0.0.1:8000/u/TOKEN", "http://localhost/u/TOKEN", "http://[::1]:8000/u/TOKEN"):
        assert parse(build_email(replace(MARKETING, unsubscribe_url=url)))["List-Unsubscribe"] == f"<{url}>"
    for url in ("http://127.0.0.1.evil.example/u/TOKEN", "http://localhost.evil.example/u/T",
                "http://10.0.0.1:8000/u/TOKEN", "http://127.0.0.1:8000/u/a>, <https://evil.example"):
        with pytest.raises(InvalidEmail, match="must be https"):
            build_email(replace(MARKETING, unsubscribe_url=url))


def test_a_mailto_unsubscribe_can_be_offered_as_well():
    message = parse(build_email(replace(MARKETING, unsubscribe_mailto="unsubscribe@shop.example")))
    # A long header is folded (RFC 5322); unfolded, it is the two targets in order.
    assert message["List-Unsubscribe"].strip() == "<https://t.shop.example/u/TOKEN>, <mailto:unsubscribe@shop.example>"


def test_a_personalised_subject_cannot_inject_headers():
    message = parse(build_email(replace(MARKETING, subject="Hi\r\nBcc: victim@example.com\r\n")))
    assert message["Bcc"] is None
    assert message["Subject"] == "Hi Bcc: victim@example.com"


@pytest.mark.parametrize("field", ["to", "sender", "reply_to"])
@pytest.mark.parametrize("value", ["not an address", "a@example.com, b@example.com", "x@y\r\nBcc: z@example.com", ""])
def test_addresses_must_be_exactly_one(field, value):
    with pytest.raises(InvalidEmail, match="is not one email address"):
        build_email(replace(MARKETING, **{field: value or "@"}))


def test_reply_to_and_international_domains():
    message = parse(build_email(replace(MARKETING, reply_to="Shop <help@shop.example>", to="anna@bücher.example")))
    assert message["Reply-To"].addresses[0].addr_spec == "help@shop.example"
    assert message["To"].addresses[0].domain == "xn--bcher-kva.example"


def test_naive_times_and_unknown_kinds_are_refused():
    with pytest.raises(InvalidEmail, match="time zone"):
        build_email(replace(MARKETING, sent_at=datetime(2026, 11, 3, 9, 0)))
    with pytest.raises(InvalidEmail, match="kind"):
        build_email(replace(MARKETING, kind="promo"))


def test_message_ids_that_cannot_be_a_message_id_are_hashed_deterministically():
    assert message_id_header("abc-123", "shop.example") == "<abc-123@shop.example>"
    odd = message_id_header("campaign 7/contact <42>", "shop.example")
    assert odd == message_id_header("campaign 7/contact <42>", "shop.example")
    assert " " not in odd and odd.count("<") == 1 and odd.endswith("@shop.example>")
    assert message_id_header("a..b", "d.example") != "<a..b@d.example>"
