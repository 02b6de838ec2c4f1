"""Identity resolution and profile updates, with in-memory repositories."""
from __future__ import annotations

import itertools
import threading

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.services.ports import ConcurrentUpdate
from chalicelib.services.process_events import BatchCache, EventProcessor, ProcessingConflict
from tests.unit.fakes import FakeClock, FakeContactRepository

_ids = itertools.count(1)


def ev(etype="track", ts="2026-11-20T10:00:00.000Z", **kw) -> dict:
    event = {"type": etype, "messageId": kw.pop("messageId", f"m{next(_ids)}"), "timestamp": ts,
             "receivedAt": ts, "context": kw.pop("context", {})}
    if etype == "track":
        event["event"] = kw.pop("event", "Clicked")
    event.update(kw)
    return event


@pytest.fixture
def repo():
    return FakeContactRepository()


@pytest.fixture
def processor(repo):
    counter = itertools.count(1)
    return EventProcessor(repo, FakeClock(), new_id=lambda: f"c{next(counter):03d}", sleep=lambda s: None)


def contact_of(repo: FakeContactRepository, identifier: str) -> Contact:
    contact = repo.get(repo.identities[identifier])
    while contact.merged_into:
        contact = repo.get(contact.merged_into)
    return contact


def test_a_new_visitor_gets_a_contact(processor, repo):
    outcome = processor.process(ev(anonymousId="a1"))
    assert outcome.created
    c = contact_of(repo, "anon:a1")
    assert c.identifiers == ["anon:a1"]
    assert c.counters["Clicked"]["total"] == 1


def test_identify_links_anonymous_user_and_email(processor, repo):
    processor.process(ev("page", anonymousId="a1"))
    processor.process(ev("identify", anonymousId="a1", userId="u1", traits={"email": "Ada@X.io"}))
    c = contact_of(repo, "user:u1")
    assert c.identifiers == ["anon:a1", "email:ada@x.io", "user:u1"]
    assert repo.identities["email:ada@x.io"] == c.id
    assert len(repo.contacts) == 1


def test_two_known_profiles_merge_when_an_event_links_them(processor, repo):
    processor.process(ev("track", ts="2026-11-01T00:00:00.000Z", anonymousId="laptop", event="Viewed"))
    processor.process(ev("identify", userId="u1", traits={"email": "ada@x.io", "plan": "pro"}))
    processor.process(ev("track", anonymousId="phone", event="Viewed"))
    # The phone's visitor logs in: three profiles become one.
    processor.process(ev("identify", anonymousId="phone", userId="u1"))
    processor.process(ev("identify", anonymousId="laptop", traits={"email": "ada@x.io"}))
    survivor = contact_of(repo, "user:u1")
    assert survivor.identifiers == ["anon:laptop", "anon:phone", "email:ada@x.io", "user:u1"]
    assert survivor.counters["Viewed"]["total"] == 2
    assert survivor.traits["plan"] == "pro"
    for identifier in survivor.identifiers:
        assert repo.identities[identifier] == survivor.id  # re-pointed, not just followed
    live = [c for c in repo.contacts.values() if not c["contact"].merged_into]
    assert len(live) == 1
    assert sorted(survivor.merged_from) == sorted(c for c in repo.contacts if c != survivor.id)


def test_conflicting_user_ids_are_not_merged(processor, repo):
    processor.process(ev("identify", anonymousId="shared-pc", userId="alice"))
    processor.process(ev("identify", anonymousId="shared-pc", userId="bob", traits={"name": "Bob"}))
    alice, bob = contact_of(repo, "user:alice"), contact_of(repo, "user:bob")
    assert alice.id != bob.id
    assert repo.identities["anon:shared-pc"] == alice.id
    assert bob.traits == {"name": "Bob"}
    assert "anon:shared-pc" not in bob.identifiers


def test_alias_links_a_previous_id(processor, repo):
    processor.process(ev("page", anonymousId="a9"))
    processor.process(ev("alias", userId="u9", previousId="a9"))
    assert contact_of(repo, "user:u9").id == contact_of(repo, "anon:a9").id


def test_alias_merges_two_user_ids_explicitly(processor, repo):
    processor.process(ev("identify", userId="old-id"))
    processor.process(ev("identify", userId="new-id"))
    processor.process(ev("alias", userId="new-id", previousId="old-id"))
    assert contact_of(repo, "user:old-id").id == contact_of(repo, "user:new-id").id


def test_alias_with_an_unknown_previous_id_claims_it_as_anonymous(processor, repo):
    processor.process(ev("alias", userId="u", previousId="fresh"))
    assert contact_of(repo, "anon:fresh").id == contact_of(repo, "user:u").id


def test_redelivered_record_is_applied_once(processor, repo):
    event = ev(anonymousId="a1")
    processor.process(event)
    outcome = processor.process(event)
    assert outcome.applied is False
    assert contact_of(repo, "anon:a1").counters["Clicked"]["total"] == 1


def test_the_batch_cache_saves_reads(processor, repo):
    cache = BatchCache()
    for _ in range(10):
        processor.process(ev(anonymousId="a1"), cache)
    assert repo.calls["lookup"] == 1
    assert repo.calls.get("get", 0) == 0
    assert repo.calls["create"] + repo.calls["save"] == 10  # one write per event


def test_a_dangling_identity_is_healed(processor, repo):
    # A creator claimed the identifier and crashed before writing the profile.
    repo.identities["anon:ghost"] = "c-ghost"
    processor.process(ev(anonymousId="ghost"))
    assert contact_of(repo, "anon:ghost").id == "c-ghost"


def test_a_stale_identity_pointing_at_a_merged_contact_is_followed_and_repointed(processor, repo):
    processor.process(ev("page", anonymousId="a"))
    processor.process(ev("identify", userId="u"))
    processor.process(ev("identify", anonymousId="a", userId="u"))
    survivor = contact_of(repo, "user:u")
    loser_id = next(c for c in repo.contacts if c != survivor.id)
    repo.identities["anon:a"] = loser_id  # as if the re-point had not happened yet
    processor.process(ev(anonymousId="a"))
    assert repo.identities["anon:a"] == survivor.id
    assert contact_of(repo, "anon:a").counters["Clicked"]["total"] == 1


class FlakyRepository(FakeContactRepository):
    """Loses the first N saves to a concurrent writer."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures

    def _lose(self):
        if self.failures > 0:
            self.failures -= 1
            raise ConcurrentUpdate("someone else wrote first")

    def save(self, contact):
        self._lose()
        super().save(contact)

    def create(self, contact):
        self._lose()
        super().create(contact)


def test_a_lost_race_is_retried():
    repo = FlakyRepository(failures=3)
    outcome = EventProcessor(repo, FakeClock(), sleep=lambda s: None).process(ev(userId="u"))
    assert outcome.attempts == 4
    assert contact_of(repo, "user:u").counters["Clicked"]["total"] == 1


def test_endless_conflicts_give_up_so_the_stream_retries_later():
    repo = FlakyRepository(failures=100)
    with pytest.raises(ProcessingConflict):
        EventProcessor(repo, FakeClock(), sleep=lambda s: None).process(ev(userId="u"))


def process_as_the_stream_would(processor, event, redeliveries: int = 20):
    """A record whose processing keeps losing races (ProcessingConflict after MAX_ATTEMPTS)
    fails and is delivered again by the stream; with eight racing workers that can happen,
    and what must hold is that nothing is lost, not that no retry was needed."""
    for _ in range(redeliveries):
        try:
            return processor.process(event, BatchCache())
        except ProcessingConflict:
            continue
    raise AssertionError(f"{event['messageId']} lost every race {redeliveries} deliveries in a row")


def test_concurrent_events_for_one_person_lose_nothing(repo):
    """Eight workers (like parallel stream shards) race on the same people."""
    processor = EventProcessor(repo, FakeClock(), sleep=lambda s: None)
    processor.process(ev("identify", userId="u", traits={"email": "u@x.io"}))
    events = []
    for i in range(8):
        events.append(ev("identify", anonymousId=f"device-{i}", userId="u"))
        events.extend(ev(anonymousId=f"device-{i}", event="Viewed") for _ in range(5))
    errors = []

    def worker(chunk):
        try:
            for event in chunk:
                process_as_the_stream_would(processor, event)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(events[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    survivor = contact_of(repo, "user:u")
    assert survivor.counters["Viewed"]["total"] == 40
    assert {f"anon:device-{i}" for i in range(8)} <= set(survivor.identifiers)
    assert all(contact_of(repo, f"anon:device-{i}").id == survivor.id for i in range(8))


def test_a_merge_and_the_event_that_caused_it_are_one_write(processor, repo):
    processor.process(ev("page", anonymousId="a"))
    processor.process(ev("identify", userId="u", traits={"plan": "pro"}))
    writes_before = repo.calls.get("save", 0) + repo.calls.get("create", 0)
    outcome = processor.process(ev("identify", anonymousId="a", userId="u", traits={"city": "Paris"}))
    assert outcome.merged
    assert repo.calls["merge"] == 1
    assert repo.calls.get("save", 0) + repo.calls.get("create", 0) == writes_before
    survivor = contact_of(repo, "user:u")
    assert survivor.traits == {"plan": "pro", "city": "Paris"}  # visible together with the merge


def test_the_stored_outbox_holds_only_the_last_writes_effects(repo):
    """Effects are published after each write; the next write must not carry them again
    (they would be re-published forever and the contact item would grow)."""
    from chalicelib.services.effects import EffectsPublisher
    from chalicelib.services.messagebus import MessageBus
    from tests.unit.fakes import FakeEventStore, FakeMembershipStore, FakeRecheckSchedule

    published = []

    class CountingPublisher(EffectsPublisher):
        def publish(self, contact, now):
            published.extend(contact.outbox)
            return super().publish(contact, now)

    class OneEffectPerEvent:
        def forget_merged(self, survivor, loser):
            pass

        def on_event(self, contact, event, now, full=False):
            contact.outbox.append({"kind": "schedule", "at": event["timestamp"]})

        def counter_retention(self):
            return None  # counters keep everything

    publisher = CountingPublisher(FakeMembershipStore(), FakeEventStore(), FakeRecheckSchedule(), MessageBus({}),
                                  lambda contact, now: 0.0)
    processor = EventProcessor(repo, FakeClock(), sleep=lambda s: None, rules=OneEffectPerEvent(),
                               publisher=publisher)
    for _ in range(6):
        processor.process(ev(userId="u"), BatchCache())  # a new invocation each time
        stored = repo.get(repo.identities["user:u"])
        assert len(stored.outbox) == 1
    # Each effect published once, after its write: this process remembers the writes it
    # published whole, so the stored outbox is not published again.
    assert len(published) == 6
    # Another process cannot know (these effects carry no internal event to look up): the
    # stored outbox is published again before its next write, then that write's own.
    other = EventProcessor(repo, FakeClock(), sleep=lambda s: None, rules=OneEffectPerEvent(), publisher=publisher)
    other.process(ev(userId="u"), BatchCache())
    assert len(published) == 6 + 2 and len(repo.get(repo.identities["user:u"]).outbox) == 1


def test_a_merge_of_several_profiles_is_one_write_or_none():
    """A visitor's anonymous profile and an email-only profile both join the user's at once,
    and one of them changes just before the merge is written: the merge is retried, and
    every page view, the late one included, is counted once on the one survivor."""
    repo = FakeContactRepository()
    processor = EventProcessor(repo, FakeClock(), sleep=lambda s: None)
    processor.process(ev("identify", userId="u", traits={}))
    for _ in range(3):
        processor.process(ev(anonymousId="dev", event="Viewed"))
    processor.process(ev("identify", anonymousId="other", traits={"email": "ada@x.io"}))
    processor.process(ev(anonymousId="other", event="Viewed"))
    changed_once = []
    real_merge = repo.merge

    def merge_after_a_concurrent_write(survivor, losers):
        if not changed_once:  # another worker writes the last loser just before our merge
            changed_once.append(True)
            late = repo.get(losers[-1].id, consistent=True)
            processor.process(ev(anonymousId="dev" if "anon:dev" in late.identifiers else "other",
                                 event="Viewed"))
        return real_merge(survivor, losers)

    repo.merge = merge_after_a_concurrent_write
    processor.process(ev("identify", userId="u", anonymousId="dev", traits={"email": "ada@x.io"}))
    assert changed_once
    merged = contact_of(repo, "user:u")
    assert contact_of(repo, "anon:dev").id == contact_of(repo, "email:ada@x.io").id == merged.id
    assert merged.counters["Viewed"]["total"] == 3 + 1 + 1  # each page view once, the late one too


def test_segments_consent_object_records_the_data_collection_categories():
    # Segment's consent managers put the person's categories on every event
    # (context.consent.categoryPreferences) and announce a change with their own event.
    from chalicelib.services.catalog import Catalog
    from chalicelib.services.segmentation import ProfileRules

    repo, clock = FakeContactRepository(), FakeClock()
    processor = EventProcessor(repo, clock, rules=ProfileRules(lambda: Catalog.of()))

    def event(message_id, ts, prefs, name="Page Viewed"):
        return {"type": "track", "event": name, "messageId": message_id, "anonymousId": "a1",
                "timestamp": ts, "receivedAt": ts, "originalTimestamp": ts, "properties": {},
                "context": {"consent": {"categoryPreferences": prefs}}}

    outcome = processor.process(event("m1", "2026-11-22T10:00:00.000Z", {"Advertising": False, "Analytics": True}))
    consent = repo.get(outcome.contact_id).consent
    assert consent["data/Advertising"]["status"] == "denied" and consent["data/Analytics"]["status"] == "granted"
    processor.process(event("m2", "2026-11-22T11:00:00.000Z", {"Advertising": True},
                            name="Segment Consent Preference Updated"))
    assert repo.get(outcome.contact_id).consent["data/Advertising"]["status"] == "granted"
    # An older event delivered late does not undo the newer choice.
    processor.process(event("m0", "2026-11-22T09:00:00.000Z", {"Advertising": False}))
    assert repo.get(outcome.contact_id).consent["data/Advertising"]["status"] == "granted"


def test_a_filtered_condition_counts_matching_events_after_a_first_one_that_did_not_match():
    # A visitor who looks at tea first, then at three coffees, is a coffee lover: the counter
    # of coffee views starts with the first view of any product, not with the first coffee.
    from pathlib import Path

    import yaml

    from chalicelib.domain.segments.language import parse_segment
    from chalicelib.services.catalog import Catalog
    from chalicelib.services.segmentation import ProfileRules

    shipped = Path(__file__).resolve().parents[2] / "chalicelib" / "definitions" / "segments" / "coffee-lovers.yaml"
    segment = parse_segment(yaml.safe_load(shipped.read_text(encoding="utf-8")))
    repo, clock = FakeContactRepository(), FakeClock()
    processor = EventProcessor(repo, clock, rules=ProfileRules(lambda: Catalog.of(segments={segment.id: segment})))

    def view(n, category):
        ts = f"2026-11-22T10:0{n}:00.000Z"
        return processor.process({"type": "track", "event": "Product Viewed", "messageId": f"v{n}",
                                  "anonymousId": "a1", "timestamp": ts, "receivedAt": ts, "originalTimestamp": ts,
                                  "properties": {"category": category, "product_id": f"p{n}"}})

    view(0, "tea")
    outcome = [view(n, "coffee") for n in (1, 2, 3)][-1]
    contact = repo.get(outcome.contact_id)
    assert "coffee-lovers" in contact.segments, contact.filtered


def test_a_count_started_empty_takes_its_first_occurrence_from_the_first_match():
    from chalicelib.domain.contact import bump_counter

    counters = {"k": {"total": 0, "first": "2026-11-22T10:00:00.000Z", "last": "2026-11-22T10:00:00.000Z"}}
    bump_counter(counters, "k", "2026-11-23T09:00:00.000Z", 90)
    assert counters["k"]["total"] == 1
    assert counters["k"]["first"] == counters["k"]["last"] == "2026-11-23T09:00:00.000Z"
