"""Audiences out: spreadsheet rows safe to open, hashed customer lists for ad platforms."""
from __future__ import annotations

import csv
import hashlib
import io

import pytest

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


# -- exports as jobs: one page of members per slice, parts composed at the end -----------------

BUCKET = "data"


def exports_with(members: dict[str, Contact | None], merged: tuple = ()):
    """AudienceExports over fakes: segment `vip` holds every id of `members`; a None contact
    is a membership row whose contact is gone; the ids in `merged` were merged away."""
    from chalicelib.adapters.s3_exports import S3AudienceExporter
    from chalicelib.services.audiences import AudienceExports
    from tests.unit.fakes import (FakeClock, FakeContactRepository, FakeDefinitionStore, FakeMembershipStore,
                                  FakeS3Client)

    definitions = FakeDefinitionStore()
    definitions.put("segment", "vip", {"id": "vip", "name": "VIP"}, "2026-11-01T00:00:00.000Z")
    memberships, repo, s3 = FakeMembershipStore(), FakeContactRepository(), FakeS3Client()
    for contact_id, contact in members.items():
        memberships.enter("vip", contact_id, "2026-11-01T00:00:00.000Z")
        if contact is not None:
            contact.merged_into = "survivor" if contact_id in merged else None
            repo.create(contact)
    exports = AudienceExports(memberships, repo, S3AudienceExporter(BUCKET, client=s3), definitions, FakeClock())
    return exports, repo, s3, definitions


def run_export(exports, params: dict, export_id: str = "job-1") -> tuple[dict, list[dict]]:
    """Every slice of one export, as the job runner chains them; returns the result and the steps."""
    cursor, partial, steps = None, None, []
    while True:
        step = exports.export_slice(export_id, params, cursor, partial)
        steps.append(step)
        if "result" in step:
            return step["result"], steps
        cursor, partial = step["cursor"], step["partial"]


def read_csv(s3, key: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(s3.objects[(BUCKET, key)].decode("utf-8"))))


def test_a_large_export_reads_one_page_per_slice_with_one_batched_read_per_100_members():
    ids = [f"c{i:04d}" for i in range(1234)]
    merged = {ids[3], ids[777], ids[1200]}
    members = {i: person(i, {"email": f"{i}@example.com", "plan": "=pro"}) for i in ids}
    members[ids[10]] = None  # a membership row left behind by a contact that is gone
    exports, repo, s3, _ = exports_with(members, merged=tuple(merged))
    repo.calls.clear()

    result, steps = run_export(exports, {"segment": "vip", "format": "csv", "traits": ["plan"]})

    assert len(steps) == 3  # 500 + 500 + 234 members
    assert [s["progress"]["members_read"] for s in steps] == [500, 1000, 1234]
    assert repo.calls == {"get_many": 5 + 5 + 3}  # no contact read one by one
    live = [i for i in ids if i not in merged and i != ids[10]]
    rows = read_csv(s3, result["key"])
    assert rows[0] == ["id", "email", "phone", "plan"]
    assert [r for r in rows if r[0] == "id"] == [rows[0]]  # the header once, at the top
    assert [r[0] for r in rows[1:]] == live  # member order, merged-away and vanished contacts left out
    assert rows[1] == [live[0], f"{live[0]}@example.com", "", "'=pro"]
    assert result["rows"] == len(live) and result["bytes"] == len(s3.objects[(BUCKET, result["key"])])
    assert result["key"].startswith("exports/vip/vip-csv-") and result["key"].endswith(".csv")
    assert result["url"].endswith("X-Amz-Expires=3600") and result["expires_in"] == 3600
    assert "skipped_without_identifier" not in result
    assert s3.keys("exports/vip/.parts/job-1/") == [f"exports/vip/.parts/job-1/00000{n}.csv" for n in (1, 2, 3)]
    assert all(read_csv(s3, key)[0][0] != "id" for key in s3.keys("exports/vip/.parts/"))  # parts: data only


def test_a_hashed_export_counts_contacts_without_identifier_across_slices():
    members = {}
    for i in range(1100):
        contact_id = f"c{i:04d}"
        traits = {"first_name": "Nobody"} if i % 100 == 0 else {"email": f"U.{i}@Gmail.com"}
        members[contact_id] = person(contact_id, traits)
    exports, _, s3, _ = exports_with(members)

    result, steps = run_export(exports, {"segment": "vip", "format": "audience", "traits": []})

    assert len(steps) == 3
    assert result["skipped_without_identifier"] == 11  # 5 in the first slice, 5 in the second, 1 in the last
    assert result["rows"] == 1089 and result["format"] == "audience"
    rows = read_csv(s3, result["key"])
    assert rows[0] == list(HASHED_COLUMNS) and len(rows) == 1090
    assert rows[1] == [sha("u1@gmail.com"), ""]


def test_an_empty_segment_gives_a_header_only_file_in_one_slice():
    exports, repo, s3, _ = exports_with({})
    result, steps = run_export(exports, {"segment": "vip", "format": "csv", "traits": ["plan"]})
    assert len(steps) == 1 and result["rows"] == 0
    assert s3.objects[(BUCKET, result["key"])] == b"id,email,phone,plan\r\n"
    assert s3.keys("exports/vip/.parts/") == [] and "get_many" not in repo.calls


def test_a_slice_run_again_rewrites_its_own_part():
    members = {f"c{i:04d}": person(f"c{i:04d}", {"email": f"u{i}@example.com"}) for i in range(700)}
    exports, _, s3, _ = exports_with(members)
    params = {"segment": "vip", "format": "csv", "traits": []}
    first = exports.export_slice("job-1", params, None, None)
    again = exports.export_slice("job-1", params, None, None)  # a crash before the job record was saved
    assert first["partial"] == again["partial"] and first["cursor"] == again["cursor"]
    last = exports.export_slice("job-1", params, first["cursor"], first["partial"])
    assert last["result"]["rows"] == 700
    assert s3.keys("exports/vip/.parts/") == ["exports/vip/.parts/job-1/000001.csv",
                                              "exports/vip/.parts/job-1/000002.csv"]
    assert len(read_csv(s3, last["result"]["key"])) == 701


def test_a_segment_deleted_during_the_export_ends_it_with_the_reason():
    from chalicelib.services.jobs import JobError

    exports, _, _, definitions = exports_with({"c1": person("c1", {"email": "a@b.co"})})
    definitions.delete("segment", "vip", 1, "2026-11-02T00:00:00.000Z")
    with pytest.raises(JobError, match="no segment 'vip'"):
        exports.export_slice("job-1", {"segment": "vip", "format": "csv", "traits": []}, None, None)


def test_export_parameters_are_checked_before_the_job_starts():
    from chalicelib.services.contacts import BadQuery, NotFound

    exports, *_ = exports_with({})
    assert exports.check_export({"segment": "vip"}) == {"segment": "vip", "format": "csv", "traits": []}
    with pytest.raises(NotFound, match="no segment 'nope'"):
        exports.check_export({"segment": "nope", "format": "csv"})
    with pytest.raises(BadQuery, match="format must be one of csv, audience"):
        exports.check_export({"segment": "vip", "format": "xls"})
    for traits in ("plan", ["ok", 3], ["bad name"]):
        with pytest.raises(BadQuery, match="traits must be a list of trait names"):
            exports.check_export({"segment": "vip", "format": "csv", "traits": traits})
    with pytest.raises(BadQuery, match="needs the segment id"):
        exports.check_export({"format": "csv"})


def test_an_export_file_is_named_once_with_its_extension():
    exports, *_ = exports_with({})
    for fmt in ("csv", "audience"):
        key = run_export(exports, {"segment": "vip", "format": fmt, "traits": []})[0]["key"]
        assert key.startswith(f"exports/vip/vip-{fmt}-") and key.count(".csv") == 1 and key.endswith(".csv"), key


def test_get_many_reads_existing_contacts_by_id_through_get_by_default():
    from chalicelib.services.ports import ContactRepository
    from tests.unit.fakes import FakeContactRepository

    repo = FakeContactRepository()
    repo.create(person("a"))
    repo.create(person("b"))
    found = ContactRepository.get_many(repo, ["a", "missing", "b", "a"])
    assert sorted(found) == ["a", "b"] and found["a"].id == "a"
    assert repo.calls["get"] == 3  # duplicates read once
