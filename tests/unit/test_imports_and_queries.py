"""CSV contact import and the admin reads, with in-memory ports."""
from __future__ import annotations

import pytest

from chalicelib.services.contacts import BadQuery, ContactQueries, NotFound
from chalicelib.services.imports import ContactImporter, ImportRejected, auto_mapping
from chalicelib.services.process_events import EventProcessor
from tests.unit.fakes import FakeClock, FakeContactRepository, FakeEventStore

CSV = """Customer ID,Email,First Name,Phone,Company
42,Ada@Example.com,Ada,+44 20 7946 0958,Analytical Engines
,grace@example.com,Grace,,Navy
43,not-an-email,Bad,,X
,,Nobody,,
44,linus@example.com,Linus,12,Kernel
"""


class World:
    """An importer whose events are processed on demand, like the stream would."""

    def __init__(self):
        self.store, self.repo, self.clock = FakeEventStore(), FakeContactRepository(), FakeClock()
        self.importer = ContactImporter(self.store, self.clock)
        self.processor = EventProcessor(self.repo, self.clock, sleep=lambda s: None)
        self.processed = 0

    def process_new(self):
        for stored in self.store.inserted[self.processed:]:
            self.processor.process(stored.body)
        self.processed = len(self.store.inserted)

    def __iter__(self):
        return iter((self.store, self.repo, self.clock, self.importer, self.process_new))


@pytest.fixture
def world():
    return World()


def test_auto_mapping_recognises_common_headers():
    assert auto_mapping(["Customer ID", "E-mail", "First Name", "Mobile"]) == {
        "Customer ID": "userId", "E-mail": "email", "First Name": "traits.first_name", "Mobile": "phone"}


def test_import_reports_each_bad_row_with_line_and_field(world):
    store, repo, _, importer, process_new = world
    report = importer.run({"csv": CSV})
    assert (report["rows"], report["accepted"], report["rejected"]) == (5, 2, 3)
    errors = {(e["line"], e["field"]) for e in report["errors"]}
    assert errors == {(4, "Email"), (5, None), (6, "Phone")}
    assert any("not an email address" in e["error"] for e in report["errors"])
    process_new()
    ada = repo.get(repo.identities["user:42"])
    assert ada.traits == {"email": "ada@example.com", "first_name": "Ada", "phone": "+442079460958",
                          "company": "Analytical Engines"}
    assert repo.identities["email:ada@example.com"] == ada.id
    assert repo.identities["phone:+442079460958"] == ada.id
    grace = repo.get(repo.identities["email:grace@example.com"])
    assert grace.traits["company"] == "Navy"
    assert ada.first_seen is None  # an import is not activity


def test_uploading_the_same_file_again_changes_nothing(world):
    store, repo, _, importer, process_new = world
    importer.run({"csv": CSV})
    process_new()
    snapshot = {k: v["contact"].to_document() for k, v in repo.contacts.items()}
    inserted = len(store.inserted)
    importer.run({"csv": CSV})
    process_new()
    assert len(store.inserted) == inserted  # same keys: nothing new reaches the stream
    assert {k: v["contact"].to_document() for k, v in repo.contacts.items()} == snapshot


def test_a_changed_row_updates_the_contact(world):
    store, repo, clock, importer, process_new = world
    importer.run({"csv": "Email,Plan\nada@example.com,free\n"})
    clock.advance(days=1)
    importer.run({"csv": "Email,Plan\nada@example.com,pro\n"})
    process_new()
    assert repo.get(repo.identities["email:ada@example.com"]).traits["plan"] == "pro"


def test_explicit_mapping_and_region(world):
    store, repo, _, importer, process_new = world
    report = importer.run({"csv": "id,mail,tel,notes\n7,a@b.co,06 12 34 56 78,skip me\n",
                           "mapping": {"id": "userId", "mail": "email", "tel": "phone", "notes": "ignore"},
                           "default_region": "FR"})
    assert report["accepted"] == 1
    process_new()
    assert repo.get(repo.identities["user:7"]).traits == {"email": "a@b.co", "phone": "+33612345678"}


@pytest.mark.parametrize("request_body,message", [
    ({}, "csv is required"),
    ({"csv": "a,b\n1,2\n", "mapping": {"zzz": "email"}}, "does not have"),
    ({"csv": "a,b\n1,2\n", "mapping": {"a": "emails"}}, "is not a target"),
    ({"csv": "a,b\n1,2\n", "mapping": {"a": "traits.a"}}, "needs a column mapped to userId, email or phone"),
    ({"csv": "a,a\n1,2\n"}, "empty or repeated column names"),
    ({"csv": "Email\nx@y.z\n", "default_region": "France"}, "two-letter country code"),
    ({"csv": "Email\nx@y.z\n", "as_of": "soon"}, "as_of"),
    ("just text", "must be a JSON object"),
])
def test_unusable_imports_are_rejected_whole(world, request_body, message):
    store, _, _, importer, _ = world
    with pytest.raises(ImportRejected, match=message):
        importer.run(request_body)
    assert store.items == {}


def test_queries_by_identifier_and_timeline_pages(world):
    store, repo, clock, _, _ = world
    from chalicelib.services.ingest import IngestService, TrackingRequest
    from chalicelib.domain.sources import parse_sources
    import json

    ingest = IngestService(store, parse_sources([{"write_key": "key-12345678"}]), clock)
    processor = EventProcessor(repo, clock, sleep=lambda s: None)
    for i in range(5):
        clock.advance(seconds=1)
        ingest.ingest(TrackingRequest(body=json.dumps({"writeKey": "key-12345678", "anonymousId": "v",
                                                       "event": f"E{i}"}).encode(),
                                      content_type="text/plain", event_type="track"))
    for stored in store.inserted:
        processor.process(stored.body)
    queries = ContactQueries(repo, store, clock)
    contact = queries.by_identifier("anon:v")
    first = queries.timeline(contact["id"], limit="2")
    assert [e["event"] for e in first["events"]] == ["E4", "E3"]
    second = queries.timeline(contact["id"], limit="2", cursor=first["next_cursor"])
    assert [e["event"] for e in second["events"]] == ["E2", "E1"]
    last = queries.timeline(contact["id"], limit="2", cursor=second["next_cursor"])
    assert [e["event"] for e in last["events"]] == ["E0"] and "next_cursor" not in last
    with pytest.raises(NotFound):
        queries.by_identifier("anon:nobody")
    with pytest.raises(BadQuery, match="must look like"):
        queries.by_identifier("nobody")
    with pytest.raises(BadQuery, match="between 1 and 200"):
        queries.timeline(contact["id"], limit="0")
    with pytest.raises(BadQuery, match="cursor"):
        queries.timeline(contact["id"], cursor="%%%")


def test_an_upload_is_a_text_csv_body_or_the_json_wrapper():
    from chalicelib.services.imports import MAX_IMPORT_BYTES, import_request

    assert import_request(b"Email\na@b.co\n", "text/csv", {"mapping.Email": "email", "as_of": "2026-01-01"}) == {
        "csv": "Email\na@b.co\n", "mapping": {"Email": "email"}, "as_of": "2026-01-01"}
    assert import_request(b'{"csv": "Email\\na@b.co\\n"}', "application/json", None) == {"csv": "Email\na@b.co\n"}
    assert import_request(b'{"csv": "x"}', None, {}) == {"csv": "x"}
    with pytest.raises(ImportRejected, match="larger than 5 MB"):
        import_request(b"a" * (MAX_IMPORT_BYTES + 1), "text/csv", {})
    with pytest.raises(ImportRejected, match="unknown query parameter"):
        import_request(b"Email\n", "text/csv", {"mapping": "Email=email"})
    with pytest.raises(ImportRejected, match="not valid JSON"):
        import_request(b"Email\na@b.co\n", "application/json", {})


def test_a_resent_messageid_shows_once_on_the_timeline_and_its_row_is_discarded(world):
    """Segment's SDKs resend a messageId with new timestamps: one row, one entry, one count."""
    import json

    from chalicelib.domain.sources import parse_sources
    from chalicelib.services.ingest import IngestService, TrackingRequest
    from chalicelib.services.resent_events import discard_if_resent

    store, repo, clock, _, _ = world
    ingest = IngestService(store, parse_sources([{"write_key": "key-12345678"}]), clock)
    processor = EventProcessor(repo, clock, sleep=lambda s: None)
    queries = ContactQueries(repo, store, clock)

    def send():
        ingest.ingest(TrackingRequest(body=json.dumps({"writeKey": "key-12345678", "userId": "u", "event": "Paid",
                                                       "messageId": "pay-1"}).encode(),
                                      content_type="application/json", event_type="track"))
        stored = store.inserted[-1]
        outcome = processor.process(stored.body)
        return stored, outcome

    first, outcome = send()
    assert outcome.applied
    # A redelivered stream record of it finds its row alone and keeps it.
    assert discard_if_resent(store, {"pk": first.partition, "sk": first.sort}, first.body, applied=False) == 0
    clock.advance(seconds=4)
    resend, outcome = send()
    assert resend.sort != first.sort and not outcome.applied  # two timestamps, two keys; applied once
    contact = queries.by_identifier("user:u")
    assert contact["counters"]["Paid"]["total"] == 1
    assert [e["messageId"] for e in queries.timeline(contact["id"])["events"]] == ["pay-1"]  # before the clean-up
    assert discard_if_resent(store, {"pk": resend.partition, "sk": resend.sort}, resend.body, applied=True) == 0
    assert discard_if_resent(store, {"pk": resend.partition, "sk": resend.sort}, resend.body, applied=False) == 1
    assert list(store.items) == [(first.partition, first.sort)]
