"""Concurrent processing of one person's events against DynamoDB (moto server).

Parallel stream shards can hold events of the same person: claims, contact writes and
merges must stay correct when workers race. Here the races are between whole requests
(workers interleave reads, conditional writes and transactions through moto's server).

Mercurio's guarantee (chalicelib/services/process_events.py) rests on DynamoDB making each
request atomic: a conditional write checks and writes as one step, and a transaction
commits all of its writes or none, with nothing else in between. moto's threaded server
does not: its backends hold no lock, so two conditional puts on the same version can both
pass their check, and a cancelled TransactWriteItems puts back a copy of the whole table
taken when it started, undoing every write other requests committed meanwhile. That, not
the merge protocol, left this test with a page view counted twice or missed, or a merged
profile live again, in a few runs in a hundred, more under CPU load (every failing run
coincided with a contact version written twice or a committed one rolled back; see
test_the_emulator_applies_one_request_at_a_time). The server here, like the local stack's
(local/atomic.py), therefore handles one DynamoDB request at a time: requests still
interleave in any order, as they do against DynamoDB, but each is atomic, as it is there.
"""
from __future__ import annotations

import threading

import boto3
import pytest

from chalicelib.adapters.dynamodb_contacts import DynamoDBContactRepository
from chalicelib.domain.contact import Contact
from chalicelib.services.ports import ConcurrentUpdate
from chalicelib.services.process_events import EventProcessor
from local.atomic import OneDynamoDBRequestAtATime
from local.provision import provision
from tests.unit.fakes import FakeClock
from tests.unit.test_process_events import process_as_the_stream_would


class AtomicMotoServer:
    """moto's threaded server, each request applied atomically (see the module docstring)."""

    def __init__(self):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.app = OneDynamoDBRequestAtATime(DomainDispatcherApplication(create_backend_app))
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=MotoRequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


@pytest.fixture(scope="module")
def atomic_server():
    server = AtomicMotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto_server(atomic_server):
    return atomic_server.url


def test_racing_workers_end_with_one_contact_and_every_event_counted(moto_server):
    tables = provision("race", endpoint_url=moto_server)
    repo = DynamoDBContactRepository(tables["ContactsTable"], tables["IdentitiesTable"], host=moto_server,
                                     region="us-east-1")
    processor = EventProcessor(repo, FakeClock())
    ts = "2026-11-22T10:00:00.000Z"
    processor.process({"type": "identify", "messageId": "seed", "userId": "u", "timestamp": ts,
                       "receivedAt": ts, "traits": {"email": "u@x.io"}, "context": {}})
    workers = 6
    per_worker = []
    for w in range(workers):
        events = [{"type": "identify", "messageId": f"id-{w}", "userId": "u", "anonymousId": f"dev-{w}",
                   "timestamp": ts, "receivedAt": ts, "traits": {}, "context": {}}]
        events += [{"type": "track", "event": "Viewed", "messageId": f"v-{w}-{i}", "anonymousId": f"dev-{w}",
                    "timestamp": ts, "receivedAt": ts, "context": {}} for i in range(4)]
        # Half the workers see the device's page views before its login: they create
        # anonymous profiles that must then merge.
        if w % 2:
            events = events[1:] + events[:1]
        per_worker.append(events)
    errors: list[Exception] = []
    barrier = threading.Barrier(workers)

    def run(events):
        barrier.wait()
        try:
            for event in events:
                process_as_the_stream_would(processor, event)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(events,)) for events in per_worker]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    owners = repo.lookup([f"anon:dev-{w}" for w in range(workers)] + ["user:u", "email:u@x.io"], consistent=True)
    survivors = set()
    for contact_id in owners.values():
        contact = repo.get(contact_id, consistent=True)
        while contact.merged_into:
            contact = repo.get(contact.merged_into, consistent=True)
        survivors.add(contact.id)
    assert len(survivors) == 1
    survivor = repo.get(survivors.pop(), consistent=True)
    assert survivor.counters["Viewed"]["total"] == workers * 4
    assert {f"anon:dev-{w}" for w in range(workers)} <= set(survivor.identifiers)
    ddb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    live = [i for i in ddb.scan(TableName=tables["ContactsTable"])["Items"] if "merged_into" not in i]
    assert len(live) == 1


def test_the_emulator_applies_one_request_at_a_time(atomic_server, monkeypatch):
    """A merge transaction that is cancelled must not undo a contact write committed while
    it ran. Forced interleaving: the transaction is held inside moto (after moto copied the
    table to roll back to, before it checks the conditions) until a concurrent save of the
    loser has either committed or been queued behind it; then the transaction is cancelled
    (its survivor is stale). On moto's plain threaded server the save commits in between and
    the cancelled transaction's rollback erases it: the loser is back at version 1. On the
    server the concurrency test uses, the save waits, then commits."""
    from moto.dynamodb.models import DynamoDBBackend

    url = atomic_server.url
    tables = provision("emulator", endpoint_url=url)
    repo = DynamoDBContactRepository(tables["ContactsTable"], tables["IdentitiesTable"], host=url,
                                     region="us-east-1")
    survivor = Contact(id="survivor", created_at="2026-11-22T10:00:00.000Z")
    loser = Contact(id="loser", created_at="2026-11-22T10:00:00.000Z")
    repo.create(survivor)
    repo.create(loser)
    stale_survivor = repo.get("survivor", consistent=True)
    stale_survivor.version = 7  # not what is stored: the transaction is cancelled

    held = threading.Event()       # the transaction is inside moto
    save_done = threading.Event()  # the concurrent save committed, or waits for the transaction
    in_transaction = threading.local()
    original_transact, original_get = DynamoDBBackend.transact_write_items, DynamoDBBackend.get_item

    def transact(self, transact_items):
        in_transaction.active = True
        try:
            return original_transact(self, transact_items)
        finally:
            in_transaction.active = False

    def get_item(self, table_name, keys, projection_expressions=None):
        if getattr(in_transaction, "active", False) and not held.is_set():
            held.set()
            assert save_done.wait(timeout=60), "the concurrent save neither committed nor queued"
        return original_get(self, table_name, keys, projection_expressions)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", transact)
    monkeypatch.setattr(DynamoDBBackend, "get_item", get_item)
    monkeypatch.setattr(atomic_server.app, "on_queued", save_done.set)
    outcome: list = []

    def merge():
        try:
            repo.merge(stale_survivor, [repo.get("loser", consistent=True)])
        except ConcurrentUpdate as exc:
            outcome.append(exc)

    merging = threading.Thread(target=merge)
    merging.start()
    assert held.wait(timeout=60), "the merge transaction never reached moto"
    loser.traits = {"plan": "pro"}
    saving = threading.Thread(target=lambda: (repo.save(loser), save_done.set()))
    saving.start()
    merging.join()
    saving.join()

    assert len(outcome) == 1  # the merge was cancelled: the survivor was stale
    stored = repo.get("loser", consistent=True)
    assert (stored.version, stored.traits, stored.merged_into) == (2, {"plan": "pro"}, None)


def test_a_merge_cancelled_by_a_transaction_conflict_is_a_lost_race(atomic_server, monkeypatch):
    """DynamoDB cancels a transaction with TransactionConflict when another transaction or
    write is under way on one of its items (moto never does: it is forced here). Nothing was
    written, as with a failed condition: the merge reports a lost race, so the event is
    resolved again at once instead of failing its whole stream batch."""
    from moto.dynamodb.exceptions import TransactionCanceledException
    from moto.dynamodb.models import DynamoDBBackend

    url = atomic_server.url
    tables = provision("conflict", endpoint_url=url)
    repo = DynamoDBContactRepository(tables["ContactsTable"], tables["IdentitiesTable"], host=url,
                                     region="us-east-1")
    for contact_id in ("survivor", "loser"):
        repo.create(Contact(id=contact_id, created_at="2026-11-22T10:00:00.000Z"))
    survivor, loser = repo.get("survivor", consistent=True), repo.get("loser", consistent=True)

    def conflicting(self, transact_items):
        raise TransactionCanceledException([(None, None, None), ("TransactionConflict", "in progress", None)])

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", conflicting)
    with pytest.raises(ConcurrentUpdate):
        repo.merge(survivor, [loser])
    monkeypatch.undo()
    assert (survivor.version, loser.version, loser.merged_into) == (1, 1, None)
    repo.merge(survivor, [loser])  # the retry, once the other transaction is done
    assert repo.get("loser", consistent=True).merged_into == "survivor"


def test_a_save_that_meets_a_merge_in_progress_is_a_lost_race(atomic_server, monkeypatch):
    # On DynamoDB, a write to an item while a transaction holds it is refused with
    # TransactionConflictException: the contact changed meanwhile, read it again.
    from pynamodb.exceptions import PutError
    from botocore.exceptions import ClientError

    monkeypatch.setenv("AWS_ENDPOINT_URL", atomic_server.url)
    provision("concurrency", endpoint_url=atomic_server.url)
    repo = DynamoDBContactRepository("mercurio-concurrency-contacts", "mercurio-concurrency-identities",
                                     host=atomic_server.url, region="us-east-1")
    contact = Contact(id="c-conflict", created_at="2026-11-01T00:00:00.000Z")
    repo.create(contact)
    conflict = ClientError({"Error": {"Code": "TransactionConflictException", "Message": "in progress"}},
                           "PutItem")

    def refused(self, *args, **kwargs):
        raise PutError("Failed to put item", conflict)

    monkeypatch.setattr(repo.Contact, "save", refused)
    with pytest.raises(ConcurrentUpdate):
        repo.save(contact)
