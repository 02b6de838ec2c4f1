"""Identity resolution and merges under forced interleavings, with the in-memory repository.

The guarantee (chalicelib/services/process_events.py): whatever the interleaving of workers
processing one person's events, the person ends with exactly one live contact and every
event is counted on it exactly once. Each test forces one interleaving: another worker's
whole event runs at an exact point of the first worker's (just before one of its
repository calls), in the same thread, so the order is the same on every run. The last
test runs the racing-workers scenario of tests/integration/test_concurrency_dynamodb.py
under seeded schedules: one worker runs at a time and every repository call is a point
where the scheduler may switch to another.
"""
from __future__ import annotations

import random
import threading

import pytest

from chalicelib.services.process_events import BatchCache, EventProcessor, ProcessingConflict
from tests.unit.fakes import FakeClock, FakeContactRepository

TS = "2026-11-22T10:00:00.000Z"


class Interleaved(FakeContactRepository):
    """Runs a callback once, just before the nth call of a repository method from now on
    (the call then goes ahead, against whatever the callback changed)."""

    def __init__(self):
        super().__init__()
        self.hooks: list[list] = []

    def before(self, method: str, then, nth: int = 1) -> None:
        self.hooks.append([method, nth, then])

    def _count(self, name: str) -> None:
        super()._count(name)
        for hook in self.hooks:
            if hook[0] == name and hook[1] > 0:
                hook[1] -= 1
                if hook[1] == 0:
                    hook[2]()


def identify(message_id: str, device: str, **traits) -> dict:
    return {"type": "identify", "messageId": message_id, "userId": "u", "anonymousId": device,
            "timestamp": TS, "receivedAt": TS, "traits": traits, "context": {}}


def viewed(message_id: str, device: str) -> dict:
    return {"type": "track", "event": "Viewed", "messageId": message_id, "anonymousId": device,
            "timestamp": TS, "receivedAt": TS, "context": {}}


def processor_for(repo, ids) -> EventProcessor:
    # A FakeClock: every profile has the same created_at, so the survivor is chosen by id.
    return EventProcessor(repo, FakeClock(), new_id=iter(ids).__next__, sleep=lambda s: None)


def head(repo: FakeContactRepository, identifier: str):
    contact = repo.get(repo.identities[identifier])
    while contact.merged_into:
        contact = repo.get(contact.merged_into)
    return contact


def live(repo: FakeContactRepository) -> list[str]:
    return sorted(cid for cid, stored in repo.contacts.items() if not stored["contact"].merged_into)


def assert_one_person(repo: FakeContactRepository, identifiers: list[str], views: int) -> None:
    heads = {head(repo, i).id for i in identifiers}
    assert len(heads) == 1 and live(repo) == sorted(heads)
    survivor = repo.get(heads.pop())
    assert set(identifiers) <= set(survivor.identifiers)
    assert survivor.counters["Viewed"]["total"] == views


def test_a_view_saved_on_a_contact_merged_away_meanwhile_is_counted_once_on_the_survivor():
    repo = Interleaved()
    processor = processor_for(repo, ["m", "z"])
    processor.process(identify("seed", "dev-0", email="u@x.io"))  # m: user:u, anon:dev-0, email
    processor.process(viewed("v1", "dev-1"))  # z: anon:dev-1
    # The second view has read z; before it saves z, the login merges z into m.
    repo.before("save", lambda: processor.process(identify("login", "dev-1")))
    outcome = processor.process(viewed("v2", "dev-1"))
    assert outcome.attempts == 2 and outcome.contact_id == "m"
    assert repo.get("z").merged_into == "m"
    assert_one_person(repo, ["user:u", "email:u@x.io", "anon:dev-0", "anon:dev-1"], views=2)


def test_two_merges_choosing_different_survivors_end_with_one_live_contact():
    """Equal created_at: the survivor is the smaller id. One login merges m into a (a is
    older by id), the other z into m; each read m before the other wrote."""
    repo = Interleaved()
    processor = processor_for(repo, ["m", "a", "z"])
    processor.process(identify("seed", "dev-0", email="u@x.io"))  # m
    processor.process(viewed("v1", "dev-1"))  # a
    processor.process(viewed("v2", "dev-2"))  # z
    repo.before("merge", lambda: processor.process(identify("login-2", "dev-2")))
    outcome = processor.process(identify("login-1", "dev-1"))
    assert outcome.attempts == 2 and outcome.contact_id == "a" and outcome.merged == ["m"]
    assert (repo.get("m").merged_into, repo.get("z").merged_into) == ("a", "m")
    assert_one_person(repo, ["user:u", "email:u@x.io", "anon:dev-0", "anon:dev-1", "anon:dev-2"], views=2)


def test_a_loser_two_workers_merge_at_once_is_absorbed_once():
    repo = Interleaved()
    processor = processor_for(repo, ["m", "z"])
    processor.process(identify("seed", "dev-0"))  # m
    for i in range(3):
        processor.process(viewed(f"v{i}", "dev-1"))  # z, 3 views
    # Two shards each hold a login of dev-1: both read m and z, one merges first.
    repo.before("merge", lambda: processor.process(identify("login-a", "dev-1")))
    outcome = processor.process(identify("login-b", "dev-1", email="u@x.io"))
    assert outcome.attempts == 2 and outcome.merged == []  # z was merged meanwhile: nothing left to merge
    assert repo.calls["merge"] == 2  # the one that committed, and the one that was refused
    assert repo.get("m").merged_from == ["z"]
    assert_one_person(repo, ["user:u", "email:u@x.io", "anon:dev-0", "anon:dev-1"], views=3)


def test_a_merge_cut_short_before_re_pointing_identifiers_is_healed_by_the_next_event():
    """Identifiers are re-pointed after the merge's transaction: a worker that stops in
    between leaves them at the fenced loser, whose merge pointer readers follow."""
    repo = Interleaved()
    processor = processor_for(repo, ["m", "z"])
    processor.process(identify("seed", "dev-0"))  # m
    processor.process(viewed("v1", "dev-1"))  # z

    def crash():
        raise RuntimeError("worker stopped")

    repo.before("repoint", crash)
    with pytest.raises(RuntimeError):
        processor.process(identify("login", "dev-1"))
    assert repo.identities["anon:dev-1"] == "z" and repo.get("z").merged_into == "m"
    processor.process(viewed("v2", "dev-1"))
    assert repo.identities["anon:dev-1"] == "m"  # healed on the way
    processor.process(identify("login", "dev-1"))  # the stream redelivers the interrupted record
    assert_one_person(repo, ["user:u", "anon:dev-0", "anon:dev-1"], views=2)
    assert repo.get("m").merged_from == ["z"]


class Scheduler:
    """One worker runs at a time; at every repository call, a seeded choice of who runs next."""

    def __init__(self, seed: int, workers: int):
        self.rng = random.Random(seed)
        self.turn: int | None = None
        self.running = set(range(workers))
        self.changed = threading.Condition()

    def _hand_over(self) -> None:
        self.turn = self.rng.choice(sorted(self.running)) if self.running else None
        self.changed.notify_all()

    def _wait_for(self, me: int) -> None:
        while self.turn != me:
            self.changed.wait()

    def begin(self) -> None:
        with self.changed:
            self._hand_over()

    def switch(self, me: int) -> None:
        with self.changed:
            self._hand_over()
            self._wait_for(me)

    def enter(self, me: int) -> None:
        with self.changed:
            self._wait_for(me)

    def leave(self, me: int) -> None:
        with self.changed:
            self.running.discard(me)
            self._hand_over()


class Scheduled(FakeContactRepository):
    def __init__(self, scheduler: Scheduler):
        super().__init__()
        self.scheduler = scheduler
        self.worker = threading.local()

    def _count(self, name: str) -> None:
        me = getattr(self.worker, "id", None)
        if me is not None:
            self.scheduler.switch(me)
        super()._count(name)


@pytest.mark.parametrize("seed", range(100))
def test_racing_workers_under_seeded_schedules_end_with_one_contact_and_every_event_counted(seed):
    workers = 6
    scheduler = Scheduler(seed, workers)
    repo = Scheduled(scheduler)
    ids = random.Random(seed)
    processor = EventProcessor(repo, FakeClock(), new_id=lambda: f"{ids.getrandbits(32):08x}", sleep=lambda s: None)
    processor.process(identify("seed", "dev-seed", email="u@x.io"))
    per_worker = []
    for w in range(workers):
        events = [identify(f"id-{w}", f"dev-{w}")] + [viewed(f"v-{w}-{i}", f"dev-{w}") for i in range(4)]
        if w % 2:
            events = events[1:] + events[:1]
        per_worker.append(events)
    errors: list = []

    def run(me: int, events: list[dict]) -> None:
        repo.worker.id = me
        scheduler.enter(me)
        try:
            for event in events:
                for _ in range(20):  # the stream redelivers a record that lost every race
                    try:
                        processor.process(event, BatchCache())
                        break
                    except ProcessingConflict:
                        continue
                else:
                    errors.append(f"{event['messageId']} lost every race")
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            scheduler.leave(me)

    threads = [threading.Thread(target=run, args=(w, events)) for w, events in enumerate(per_worker)]
    for t in threads:
        t.start()
    scheduler.begin()
    for t in threads:
        t.join()
    assert errors == []
    identifiers = ["user:u", "email:u@x.io", "anon:dev-seed"] + [f"anon:dev-{w}" for w in range(workers)]
    assert_one_person(repo, identifiers, views=workers * 4)
