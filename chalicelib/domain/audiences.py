"""Audiences out: contacts as spreadsheet rows, and as hashed customer lists for ad platforms.

Both producers yield the header row first, then one row per contact, so any CSV writer
(and the S3 exporter) can stream them without holding the audience in memory.

Spreadsheet rows (`csv_rows`)
    id, email, phone, then the chosen traits, each once: asking for `email`, `phone` or
    `id` adds nothing (the base column already holds the contact's normalised value), and a
    trait asked for twice is one column. A text cell that starts with `=`, `+`, `-`,
    `@`, a tab or a carriage return is prefixed with `'`, so a spreadsheet opening the file
    shows the text instead of evaluating it as a formula (CSV injection). Phone numbers in
    E.164 (`+33…`) therefore read `'+33…`: spreadsheets show them as text. Numbers and
    booleans are written as they are; lists and objects as JSON.

Hashed customer lists (`hashed_audience_rows`)
    Columns `email_sha256`, `phone_sha256`: lower-case hex SHA-256 of the normalised value,
    in the form Google Ads Customer Match documents:
    - email: trimmed and lower-cased; for gmail.com and googlemail.com addresses the dots of
      the local part are removed (Google treats them as the same mailbox). A `+suffix` is
      kept: Google's guidance does not ask to remove it and the person may use it on purpose.
    - phone: E.164 with the leading `+` (`+33612345678`), as Google requires. Meta's customer
      lists expect the same digits without `+`: `phone_e164.lstrip("+")` before hashing.
    A contact without a usable email or phone is skipped and counted in `skipped`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator

from chalicelib.domain.identity import InvalidIdentifier, normalise_email, normalise_phone

CSV_BASE_COLUMNS = ("id", "email", "phone")
HASHED_COLUMNS = ("email_sha256", "phone_sha256")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
GOOGLE_DOT_BLIND_DOMAINS = ("gmail.com", "googlemail.com")


def _field(contact, name: str, default=None):
    if isinstance(contact, dict):
        return contact.get(name, default)
    return getattr(contact, name, default)


def _identifier_values(contact, kind: str) -> list[str]:
    prefix = kind + ":"
    return [i[len(prefix):] for i in _field(contact, "identifiers", None) or [] if i.startswith(prefix)]


def contact_email(contact) -> str | None:
    """The contact's email: the `email` trait, else its first email identifier."""
    traits = _field(contact, "traits", None) or {}
    for value in [traits.get("email"), *_identifier_values(contact, "email")]:
        try:
            return normalise_email(value)
        except InvalidIdentifier:
            continue
    return None


def contact_phone(contact) -> str | None:
    """The contact's phone in E.164: the `phone` trait, else its first phone identifier."""
    traits = _field(contact, "traits", None) or {}
    for value in [traits.get("phone"), *_identifier_values(contact, "phone")]:
        if not isinstance(value, str) or not value.strip().startswith(("+", "00")):
            continue  # stored phones are E.164; a national number cannot be read without a region
        try:
            return normalise_phone(value)
        except InvalidIdentifier:
            continue
    return None


def safe_cell(value: object) -> object:
    """A cell value a spreadsheet shows as written (no formula evaluation)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_rows(contacts: Iterable, traits: list[str]) -> Iterator[list]:
    """Header then one row per contact: id, email, phone and the chosen traits."""
    traits = [t for t in dict.fromkeys(traits) if t not in CSV_BASE_COLUMNS]
    yield [safe_cell(c) for c in (*CSV_BASE_COLUMNS, *traits)]
    for contact in contacts:
        values = _field(contact, "traits", None) or {}
        row = [_field(contact, "id"), contact_email(contact), contact_phone(contact)]
        row.extend(values.get(name) for name in traits)
        yield [safe_cell(v) for v in row]


def customer_match_email(email: str) -> str:
    """Trim, lower-case; no dots in the local part of gmail.com / googlemail.com addresses."""
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if at and domain in GOOGLE_DOT_BLIND_DOMAINS:
        email = f"{local.replace('.', '')}@{domain}"
    return email


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class HashedAudience:
    """Iterable of hashed rows (header first); `rows` and `skipped` are counted as it goes."""

    def __init__(self, contacts: Iterable):
        self._contacts = contacts
        self.rows = 0
        self.skipped = 0

    def __iter__(self) -> Iterator[list[str]]:
        yield list(HASHED_COLUMNS)
        for contact in self._contacts:
            email, phone = contact_email(contact), contact_phone(contact)
            if email is None and phone is None:
                self.skipped += 1
                continue
            self.rows += 1
            yield [sha256_hex(customer_match_email(email)) if email else "",
                   sha256_hex(phone) if phone else ""]


def hashed_audience_rows(contacts: Iterable) -> HashedAudience:
    """Rows for an ad platform's customer-list matching; see the module notes for the format."""
    return HashedAudience(contacts)
