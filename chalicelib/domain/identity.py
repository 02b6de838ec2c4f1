"""Identifiers: the keys by which one person is known (`user:42`, `anon:…`, `email:…`, `phone:…`,
and `click:…`, the id of an email link click: the visit it opens belongs to the recipient).

Email and phone are normalised (lower-case email, E.164 phone) so that the same person typed
twice is one identifier.
"""
from __future__ import annotations

import re

import phonenumbers

IDENTIFIER_TYPES = ("user", "anon", "email", "phone", "click")
MAX_ID_LENGTH = 256
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class InvalidIdentifier(ValueError):
    pass


def normalise_email(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifier("is not a string")
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidIdentifier(f"{value!r} is not an email address")
    return email


def normalise_phone(value: object, default_region: str | None = None) -> str:
    """E.164. A number without a country prefix needs a region (from the contact's locale)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidIdentifier("is not a string")
    raw = value.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else (default_region or None))
    except phonenumbers.NumberParseException as exc:
        hint = "" if raw.startswith("+") or default_region else " (no country code and no region known)"
        raise InvalidIdentifier(f"{value!r} is not a phone number{hint}") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentifier(f"{value!r} is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def region_from_locale(locale: object) -> str | None:
    """`fr-FR` → `FR`; used to read national phone numbers."""
    if not isinstance(locale, str):
        return None
    parts = re.split(r"[-_]", locale.strip())
    if len(parts) >= 2 and len(parts[-1]) == 2 and parts[-1].isalpha():
        return parts[-1].upper()
    return None


def make_identifier(kind: str, value: object, default_region: str | None = None) -> str:
    if kind not in IDENTIFIER_TYPES:
        raise InvalidIdentifier(f"unknown identifier type {kind!r} (expected one of {', '.join(IDENTIFIER_TYPES)})")
    if kind == "email":
        return f"email:{normalise_email(value)}"
    if kind == "phone":
        return f"phone:{normalise_phone(value, default_region)}"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidIdentifier("must be a string")
    text = str(value).strip()
    if not text:
        raise InvalidIdentifier("is empty")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidIdentifier(f"is longer than {MAX_ID_LENGTH} characters")
    return f"{kind}:{text}"


def parse_identifier(text: str) -> str:
    """`email:A@B.C` → `email:a@b.c`; raises InvalidIdentifier with a readable reason."""
    if not isinstance(text, str) or ":" not in text:
        raise InvalidIdentifier(
            "identifier must look like <type>:<value>, with type one of " + ", ".join(IDENTIFIER_TYPES)
        )
    kind, _, value = text.partition(":")
    kind = kind.strip().lower()
    if kind == "phone" and value.startswith(" "):
        value = "+" + value[1:]  # an unencoded '+' in a query string arrives as a space
    return make_identifier(kind, value)


def kind_of(identifier: str) -> str:
    return identifier.partition(":")[0]
