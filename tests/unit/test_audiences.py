"""Audiences out: spreadsheet rows safe to open, hashed customer lists for ad platforms."""
from __future__ import annotations

import csv
import hashlib
import io

from chalicelib.domain.audiences import (
    HASHED_COLUMNS,
    contact_email,
    contact_phone,
    csv_rows,
    customer_match_email,
    hashed_audience_rows,
    safe_cell,
)
from chalicelib.domain.contact import Contact


def person(contact_id: str, traits: dict | None = None, identifiers: list | None = None) -> Contact:
    return Contact(id=contact_id, created_at="2026-11-01T00:00:00.000Z", traits=traits or {},
                   identifiers=identifiers or [])


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_csv_rows_have_a_header_then_one_row_per_contact():
    contacts = [
        person("c1", {"email": "ada@example.com", "phone": "+33612345678", "first_name": "Ada", "orders": 3},
               ["email:ada@example.com", "phone:+33612345678"]),
        person("c2", {}, ["email:bob@example.com"]),
    ]
    rows = list(csv_rows(contacts, ["first_name", "orders", "plan"]))
    assert rows[0] == ["id", "email", "phone", "first_name", "orders", "plan"]
    assert rows[1] == ["c1", "ada@example.com", "'+33612345678", "Ada", 3, ""]
    assert rows[2] == ["c2", "bob@example.com", "", "", "", ""]


def test_formula_injection_is_neutralised():
    contacts = [person("c1", {"first_name": "=HYPERLINK(\"http://evil\")", "last_name": "+1+1", "note": "-2",
                              "nick": "@SUM(A1)", "tab": "\tx", "cr": "\rx", "fine": "a=b", "score": -5,
                              "vip": True, "tags": ["a", "b"]})]
    header, row = list(csv_rows(contacts, ["first_name", "last_name", "note", "nick", "tab", "cr", "fine", "score",
                                           "vip", "tags"]))
    assert row[3:] == ["'=HYPERLINK(\"http://evil\")", "'+1+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "a=b", -5,
                       "true", '["a", "b"]']
    assert list(csv_rows([], ["=cmd"]))[0][-1] == "'=cmd"


def test_rows_survive_a_csv_round_trip():
    contacts = [person("c1", {"email": "a@b.co", "city": 'Paris, "Left bank"\nFrance'})]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(csv_rows(contacts, ["city"]))
    parsed = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert parsed[1] == ["c1", "a@b.co", "", 'Paris, "Left bank"\nFrance']


def test_safe_cell_keeps_plain_values():
    assert safe_cell(None) == "" and safe_cell(1.5) == 1.5 and safe_cell("plain") == "plain"


def test_email_and_phone_come_from_traits_then_identifiers():
    assert contact_email(person("c", {"email": " Ada@Example.com "})) == "ada@example.com"
    assert contact_email(person("c", {"email": "not an email"}, ["email:x@y.zz"])) == "x@y.zz"
    assert contact_phone(person("c", {}, ["phone:+33612345678"])) == "+33612345678"
    assert contact_phone(person("c", {"phone": "06 12 34 56 78"})) is None  # national: no region known
    assert contact_email({"id": "d", "traits": {"email": "d@e.fr"}}) == "d@e.fr"


def test_customer_match_email_normalisation():
    assert customer_match_email("  John.Smith+news@Gmail.com ") == "johnsmith+news@gmail.com"
    assert customer_match_email("j.s@googlemail.com") == "js@googlemail.com"
    assert customer_match_email("John.Smith@Example.com") == "john.smith@example.com"


def test_hashed_rows_follow_the_customer_match_format():
    contacts = [
        person("c1", {"email": "John.Smith@gmail.com", "phone": "+33612345678"}),
        person("c2", {}, ["phone:+14155550123"]),
        person("c3", {"first_name": "Nobody"}, ["user:42", "anon:x"]),
        person("c4", {"email": "ada@example.com"}),
    ]
    audience = hashed_audience_rows(contacts)
    rows = list(audience)
    assert rows[0] == list(HASHED_COLUMNS) == ["email_sha256", "phone_sha256"]
    assert rows[1] == [sha("johnsmith@gmail.com"), sha("+33612345678")]
    assert rows[2] == ["", sha("+14155550123")]
    assert rows[3] == [sha("ada@example.com"), ""]
    assert len(rows) == 4
    assert (audience.rows, audience.skipped) == (3, 1)
    assert all(len(cell) in (0, 64) and cell == cell.lower() for row in rows[1:] for cell in row)


def test_known_customer_match_digest():
    # SHA-256 of "test@gmail.com", lower-case hex, as ad platforms compare it.
    expected = "87924606b4131a8aceeeae8868531fbb9712aaa07a5d3a756b26ce0f5d6ca674"
    assert list(hashed_audience_rows([person("c", {"email": "Te.st@Gmail.com"})]))[1][0] == expected


def test_asking_for_a_base_column_or_a_trait_twice_gives_one_column():
    contacts = [person("c1", {"email": "ada@example.com", "plan": "pro"}, ["email:ada@example.com"])]
    rows = list(csv_rows(contacts, ["email", "plan", "id", "plan", "phone"]))
    assert rows[0] == ["id", "email", "phone", "plan"]
    assert rows[1] == ["c1", "ada@example.com", "", "pro"]


def test_an_export_file_is_named_once_with_its_extension():
    from chalicelib.adapters.s3_exports import ExportResult, export_key
    from chalicelib.services.audiences import AudienceExports
    from tests.unit.fakes import FakeClock, FakeContactRepository, FakeDefinitionStore, FakeMembershipStore

    class RecordingExporter:
        def export(self, key_prefix, name, rows):
            list(rows)
            return ExportResult(key=export_key(key_prefix, name), rows=0, bytes=0)

        def signed_url(self, key, seconds):
            return "https://signed/" + key

    definitions = FakeDefinitionStore()
    definitions.put("segment", "vip", {"id": "vip", "name": "VIP"}, "2026-11-01T00:00:00.000Z")
    exports = AudienceExports(FakeMembershipStore(), FakeContactRepository(), RecordingExporter(), definitions,
                              FakeClock())
    for fmt in ("csv", "audience"):
        key = exports.export("vip", fmt, [])["key"]
        assert key.startswith(f"exports/vip/vip-{fmt}-") and key.count(".csv") == 1 and key.endswith(".csv"), key
