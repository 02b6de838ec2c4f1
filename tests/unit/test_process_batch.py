"""A stream batch: events of one contact applied in memory and written once, failures
reported per contact and in stream order, redelivery counted once."""
from __future__ import annotations

import itertools

import pytest

from chalicelib.services.catalog import Catalog
from chalicelib.services.ports import ConcurrentUpdate
from chalicelib.services.process_events import BatchCache, EventProcessor
from chalicelib.services.effects import EffectsPublisher
from chalicelib.services.messagebus import MessageBus
from chalicelib.services.segmentation import ProfileRules
from chalicelib.domain.segments.language import parse_segment
from tests.unit.fakes import (
    FakeClock,
    FakeContactRepository,
    FakeEventStore,
    FakeMembershipStore,
    FakeRecheckSchedule,
)

_ids = itertools.count(1)


def ev(anon: str, name: str = "Clicked", ts: str = "2026-11-22T11:00:00.000Z", **kw) -> dict:
    event = {"type": "track", "event": name, "anonymousId": anon, "messageId": kw.pop("messageId", f"m{next(_ids)}"),
             "timestamp": ts, "receivedAt": ts, "context": {}}
    event.update(kw)
    return event


class FlakyRepository(FakeContactRepository):
    """Fails the saves of chosen contacts: `broken` always, `races` once with a lost race."""

    def __init__(self):
        super().__init__()
        self.broken: set[str] = set()
        self.races: set[str] = set()
        self.saved_ids: list[str] = []

    def _fail(self, contact):
        if contact.id in self.broken:
            raise RuntimeError(f"throttled writing {contact.id}")
        if contact.id in self.races:
            self.races.discard(contact.id)
            stored = self.contacts.get(contact.id)
            if stored is not None:  # someone else wrote it meanwhile
                stored["contact"].version += 1
            raise ConcurrentUpdate(contact.id)

    def save(self, contact):
        self._fail(contact)
        super().save(contact)
        self.saved_ids.append(contact.id)

    def create(self, contact):
        self._fail(contact)
        super().create(contact)
        self.saved_ids.append(contact.id)


@pytest.fixture
def repo():
    return FlakyRepository()


@pytest.fixture
def processor(repo):
    ids = itertools.count(1)
    return EventProcessor(repo, FakeClock(), new_id=lambda: f"c{next(ids):03d}", sleep=lambda s: None)


def owner(repo, anon):
    return repo.get(repo.identities[f"anon:{anon}"])


def test_a_burst_of_page_views_is_one_contact_write(processor, repo):
    processor.process(ev("a1"))  # the contact exists before the burst
    repo.calls.clear()
    result = processor.process_batch([ev("a1", "Page Viewed") for _ in range(7)])
    assert result.failed() == []
    assert repo.calls.get("save") == 1 and result.contact_writes == 1
    assert repo.calls.get("get") == 1
    assert owner(repo, "a1").counters["Page Viewed"]["total"] == 7


def test_a_new_contact_and_its_burst_are_created_in_one_write(processor, repo):
    result = processor.process_batch([ev("new", "Page Viewed") for _ in range(3)])
    assert result.failed() == [] and repo.calls.get("create") == 1 and "save" not in repo.calls
    assert owner(repo, "new").counters["Page Viewed"]["total"] == 3


def test_interleaved_contacts_are_each_written_once_with_their_events_in_order(processor, repo):
    batch = [ev("a", "Identify", ts="2026-11-22T10:00:00.000Z"), ev("b"), ev("a"), ev("b"), ev("a")]
    batch[0] = {"type": "identify", "anonymousId": "a", "traits": {"plan": "old"}, "messageId": "i1",
                "timestamp": "2026-11-22T10:00:00.000Z", "receivedAt": "2026-11-22T10:00:00.000Z", "context": {}}
    batch.append({"type": "identify", "anonymousId": "a", "traits": {"plan": "new"}, "messageId": "i2",
                  "timestamp": "2026-11-22T10:05:00.000Z", "receivedAt": "2026-11-22T10:05:00.000Z", "context": {}})
    result = processor.process_batch(batch)
    assert result.failed() == [] and result.contact_writes == 2
    assert owner(repo, "a").traits["plan"] == "new"
    assert owner(repo, "a").counters["Clicked"]["total"] == 2 and owner(repo, "b").counters["Clicked"]["total"] == 2


def test_a_failed_write_fails_that_contacts_records_and_every_later_one(processor, repo):
    for anon in ("a", "b", "c"):
        processor.process(ev(anon))
    b_id = owner(repo, "b").id
    repo.broken.add(b_id)
    batch = [ev("a"), ev("b"), ev("c"), ev("a"), ev("b"), ev("c")]
    result = processor.process_batch(batch)
    assert result.failed() == [1, 2, 3, 4, 5]  # b's first record, and everything after it
    # a and c were written all the same; b was not
    assert owner(repo, "a").counters["Clicked"]["total"] == 3
    assert owner(repo, "c").counters["Clicked"]["total"] == 3
    assert owner(repo, "b").counters["Clicked"]["total"] == 1

    # The stream redelivers from the first failed record: nothing is counted twice.
    repo.broken.clear()
    again = processor.process_batch(batch[1:])
    assert again.failed() == []
    assert [owner(repo, x).counters["Clicked"]["total"] for x in "abc"] == [3, 3, 3]


def test_an_event_that_fails_stops_the_batch_but_earlier_contacts_are_written(processor, repo):
    batch = [ev("a"), {"type": "track", "messageId": "bad", "timestamp": "x"}, ev("b"), ev("a")]
    result = processor.process_batch(batch)
    assert result.failed() == [1, 2, 3]
    assert owner(repo, "a").counters["Clicked"]["total"] == 1
    assert "anon:b" not in repo.identities


def test_a_lost_race_at_the_single_write_reads_again_and_applies_every_event_once(processor, repo):
    processor.process(ev("a"))
    a_id = owner(repo, "a").id
    repo.races.add(a_id)
    result = processor.process_batch([ev("a"), ev("a", "Page Viewed"), ev("a")])
    assert result.failed() == []
    contact = owner(repo, "a")
    assert contact.counters["Clicked"]["total"] == 3 and contact.counters["Page Viewed"]["total"] == 1


def test_a_merge_within_the_batch_keeps_the_events_applied_before_it(processor, repo):
    processor.process(ev("a1", ts="2026-11-20T10:00:00.000Z"))
    processor.process({"type": "identify", "userId": "u1", "messageId": "seed", "traits": {},
                       "timestamp": "2026-11-21T10:00:00.000Z", "receivedAt": "2026-11-21T10:00:00.000Z",
                       "context": {}})
    batch = [ev("a1"), ev("a1"),
             {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "link", "traits": {},
              "timestamp": "2026-11-22T11:00:00.000Z", "receivedAt": "2026-11-22T11:00:00.000Z", "context": {}},
             ev("a1")]
    result = processor.process_batch(batch)
    assert result.failed() == []
    survivor = owner(repo, "a1")
    while survivor.merged_into:
        survivor = repo.get(survivor.merged_into)
    assert survivor.counters["Clicked"]["total"] == 4


def test_redelivering_a_whole_batch_changes_nothing(processor, repo):
    batch = [ev("a"), ev("a"), ev("b")]
    processor.process_batch(batch)
    repo.calls.clear()
    result = processor.process_batch(batch)
    assert result.failed() == [] and "save" not in repo.calls and "create" not in repo.calls
    assert owner(repo, "a").counters["Clicked"]["total"] == 2


# -- the outbox of a coalesced write, and re-publishing -------------------------------------

class CountingMemberships(FakeMembershipStore):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def enter(self, segment_id, contact_id, since):
        self.calls += 1
        return super().enter(segment_id, contact_id, since)

    def leave(self, segment_id, contact_id):
        self.calls += 1
        return super().leave(segment_id, contact_id)


def _with_rules(repo):
    segment = parse_segment({"id": "clickers", "name": "Clicked", "conditions": {"event": "Clicked"}})
    catalog = Catalog.of(segments={"clickers": segment})
    memberships, events = CountingMemberships(), FakeEventStore()
    publisher = EffectsPublisher(memberships, events, FakeRecheckSchedule(), MessageBus({}), lambda contact, now: 0.0)
    processor = EventProcessor(repo, FakeClock(), sleep=lambda s: None, rules=ProfileRules(lambda: catalog),
                               publisher=publisher)
    return processor, memberships, events


def test_effects_of_a_coalesced_write_are_published_after_it_and_once(repo):
    processor, memberships, events = _with_rules(repo)
    result = processor.process_batch([ev("a"), ev("a"), ev("a")])
    assert result.failed() == [] and result.contact_writes == 1
    assert memberships.calls == 1 and len(events.inserted) == 1  # one entry, one Segment Entered
    assert events.inserted[0].body["event"] == "Segment Entered"


def test_an_internal_events_arrival_settles_the_outbox_it_came_from(repo):
    processor, memberships, events = _with_rules(repo)
    processor.process_batch([ev("a")])
    contact_id = owner(repo, "a").id
    assert repo.get(contact_id).outbox  # stored with the write, published after it
    calls = memberships.calls
    entered = events.inserted[0].body
    # The stream delivers Segment Entered in a later invocation (a fresh cache).
    result = processor.process_batch([entered], BatchCache())
    assert result.failed() == []
    assert memberships.calls == calls  # the membership was not published a second time
    assert len(events.inserted) == 1
    stored = repo.get(contact_id)
    assert stored.outbox == [] and stored.counters["Segment Entered"]["total"] == 1


def another_container(processor: EventProcessor) -> EventProcessor:
    """The same stores and rules in another process: it remembers no publishing."""
    return EventProcessor(processor.repo, FakeClock(), sleep=lambda s: None, rules=processor.rules,
                          publisher=processor.publisher)


def test_a_stored_outbox_this_process_published_is_not_published_again_nor_read_for(repo):
    """The contact's next event comes in a later stream batch, before the Segment Entered its
    last write emitted: this process published that write's outbox whole (it remembers the
    version), so no membership move, event write, or proof read repeats."""
    processor, memberships, events = _with_rules(repo)
    processor.process_batch([ev("a")])
    contact_id = owner(repo, "a").id
    assert repo.get(contact_id).outbox  # stored with the write, published after it
    calls, appended = memberships.calls, len(events.inserted)
    assert processor.process_batch([ev("a", "Other")], BatchCache()).failed() == []
    assert memberships.calls == calls and len(events.inserted) == appended and events.lookups == 0
    assert repo.get(contact_id).outbox == []  # the next write stores only its own effects


def test_a_stored_outbox_whose_events_are_all_stored_is_not_published_again(repo):
    """The same in another process: one read of the outbox's event keys proves it."""
    processor, memberships, events = _with_rules(repo)
    processor.process_batch([ev("a")])
    contact_id = owner(repo, "a").id
    calls, appended = memberships.calls, len(events.inserted)
    assert another_container(processor).process_batch([ev("a", "Other")], BatchCache()).failed() == []
    assert memberships.calls == calls and len(events.inserted) == appended and events.lookups == 1
    assert repo.get(contact_id).outbox == []


def test_a_stored_outbox_is_published_again_when_one_of_its_events_is_not_stored(repo):
    """Publishing stopped before the internal events were stored (the process died, or the
    append failed): the next processing of the contact publishes the outbox again."""
    processor, memberships, events = _with_rules(repo)
    processor.process_batch([ev("a")])
    calls = memberships.calls
    events.items.clear()  # as if the append had not happened
    another_container(processor).process_batch([ev("a", "Other")], BatchCache())
    assert memberships.calls == calls + 1
    assert [e.body["event"] for e in events.items.values()] == ["Segment Entered"]


def test_an_outbox_whose_publishing_failed_is_published_again_by_the_same_process(repo):
    """Only a publishing that finished is remembered."""
    processor, memberships, events = _with_rules(repo)
    failing = {"on": True}
    append = events.append

    def append_or_fail(batch):
        if failing["on"]:
            raise RuntimeError("event store unavailable")
        return append(batch)

    events.append = append_or_fail
    clicked = ev("a")
    assert processor.process_batch([clicked]).failed() == [0]
    failing["on"] = False
    calls = memberships.calls
    assert processor.process_batch([clicked], BatchCache()).failed() == []  # the stream's retry
    assert memberships.calls == calls + 1
    assert [e.body["event"] for e in events.items.values()] == ["Segment Entered"]
    assert owner(repo, "a").counters["Clicked"]["total"] == 1


def test_the_recheck_entry_is_filed_before_the_write_once_for_the_final_check(repo):
    segment = parse_segment({"id": "recent", "name": "Clicked today", "conditions": {"event": "Clicked",
                                                                                      "within": "1 day"}})
    catalog = Catalog.of(segments={"recent": segment})
    schedule = FakeRecheckSchedule()
    publisher = EffectsPublisher(CountingMemberships(), FakeEventStore(), FakeRecheckSchedule(), MessageBus({}),
                                 lambda contact, now: 0.0)
    processor = EventProcessor(repo, FakeClock(), sleep=lambda s: None, rules=ProfileRules(lambda: catalog),
                               publisher=publisher, schedule=schedule)
    batch = [ev("a", ts=f"2026-11-22T11:0{i}:00.000Z") for i in range(3)]
    assert processor.process_batch(batch).failed() == []
    stored = owner(repo, "a")
    assert stored.next_check is not None
    assert [at for at, cid in schedule.items] == [stored.next_check[:19]]
    assert all(e["kind"] != "schedule" for e in stored.outbox)
    assert publisher.schedule.items == set()  # nothing left for the publisher to file again


def test_a_partly_failed_batch_is_counted_once_however_many_records_a_contact_has_in_it(processor, repo):
    """The stream redelivers a batch from its first failed record on: b's records, written
    after a's write failed, come again, more of them than the digests kept beyond a write
    (RECENT_IDS), and again in a second redelivery."""
    from chalicelib.domain.contact_state import RECENT_IDS

    for anon in ("a", "b"):
        processor.process(ev(anon))
    repo.broken.add(owner(repo, "a").id)
    n = RECENT_IDS + 10
    batch = [ev("a")] + [ev("b") for _ in range(n)]
    assert processor.process_batch(batch).failed() == list(range(n + 1))
    assert owner(repo, "b").counters["Clicked"]["total"] == n + 1

    # Redelivered with one new record of b; a fails again, so all of it comes a third time.
    retry = batch + [ev("b")]
    assert processor.process_batch(retry).failed() == list(range(n + 2))
    assert owner(repo, "b").counters["Clicked"]["total"] == n + 2
    repo.broken.clear()
    assert processor.process_batch(retry).failed() == []
    assert owner(repo, "b").counters["Clicked"]["total"] == n + 2
    assert owner(repo, "a").counters["Clicked"]["total"] == 2
    # Read back, b keeps RECENT_IDS digests beyond those of its latest write.
    assert len(owner(repo, "b").recent) <= RECENT_IDS + n + 2


def test_a_merge_announces_contacts_merged_naming_the_absorbed_profile(repo):
    processor, _, events = _with_rules(repo)
    processor.process_batch([ev("phone", userId="u")])  # the user, on one device
    processor.process_batch([ev("laptop")])  # an anonymous visit on another
    profiles = {owner(repo, "phone").id, owner(repo, "laptop").id}
    processor.process_batch([ev("laptop", userId="u")])  # the login joins them
    survivor = owner(repo, "laptop").id
    assert owner(repo, "phone").id == survivor and len(profiles) == 2
    merged = [e.body for e in events.inserted if e.body["event"] == "Contacts Merged"]
    assert len(merged) == 1 and merged[0]["contactId"] == survivor
    assert merged[0]["properties"] == {"merged": sorted(profiles - {survivor})}


def test_the_memory_of_published_writes_is_bounded_and_the_oldest_falls_back_to_the_read(repo, monkeypatch):
    from chalicelib.services import process_events

    monkeypatch.setattr(process_events, "PUBLISHED_MEMORY", 1)
    processor, memberships, events = _with_rules(repo)
    processor.process_batch([ev("a")])
    processor.process_batch([ev("b")], BatchCache())  # pushes a's write out of the memory
    calls = memberships.calls
    assert processor.process_batch([ev("b", "Other"), ev("a", "Other")], BatchCache()).failed() == []
    assert events.lookups == 1 and memberships.calls == calls  # b known; a proven by one read
