"""The DynamoDB adapters against moto: conditional writes, transactions, streams, timelines."""
from __future__ import annotations

import boto3
import pytest

from chalicelib.adapters.dynamodb_contacts import DynamoDBContactRepository
from chalicelib.adapters.dynamodb_events import DynamoDBEventStore, item_size, write_units
from chalicelib.domain.contact import Contact
from chalicelib.services.ports import ConcurrentUpdate, StoredEvent
from chalicelib.services.process_events import BatchCache, EventProcessor
from tests.unit.fakes import FakeClock


@pytest.fixture
def events(aws_tables):
    return DynamoDBEventStore(aws_tables["EventsTable"], client=boto3.client("dynamodb"))


@pytest.fixture
def repo(aws_tables):
    return DynamoDBContactRepository(aws_tables["ContactsTable"], aws_tables["IdentitiesTable"], region="us-east-1")


def stored(pk: str, ts: str, mid: str, **body) -> StoredEvent:
    return StoredEvent(partition=pk, sort=f"{ts}#{mid}", body={"messageId": mid, "timestamp": ts, **body}, ttl=2_000_000_000)


def stream_records(aws_tables) -> list[dict]:
    streams = boto3.client("dynamodbstreams")
    arn = aws_tables["EventsTable.StreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records.extend(streams.get_records(ShardIterator=it)["Records"])
    return records


def test_template_tables_have_stream_and_ttl(aws_tables):
    ddb = boto3.client("dynamodb")
    table = ddb.describe_table(TableName=aws_tables["EventsTable"])["Table"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    ttl = ddb.describe_time_to_live(TableName=aws_tables["EventsTable"])["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "ttl" and ttl["TimeToLiveStatus"] == "ENABLED"


def test_append_writes_in_batches_and_a_resent_event_is_not_a_new_insert(events, aws_tables):
    batch = [stored(f"anon:{i % 3}", f"2026-11-22T10:00:{i:02d}.000Z", f"m{i}", type="track") for i in range(60)]
    result = events.append(batch)
    assert result.written == 60
    events.append(batch[:5])  # an SDK retry of the first five
    records = stream_records(aws_tables)
    inserts = [r for r in records if r["eventName"] == "INSERT"]
    assert len(inserts) == 60
    assert all(r["eventName"] != "INSERT" for r in records[60:])


def test_timeline_merges_partitions_newest_first_with_cursor(events):
    events.append([stored("anon:a", "2026-11-22T10:00:01.000Z", "m1", event="one"),
                   stored("user:u", "2026-11-22T10:00:02.000Z", "m2", event="two"),
                   stored("anon:a", "2026-11-22T10:00:03.000Z", "m3", event="three"),
                   stored("email:e@x.io", "2026-11-22T10:00:04.000Z", "m4", event="four"),
                   stored("anon:other", "2026-11-22T10:00:05.000Z", "m5", event="not mine")])
    page, cursor = events.timeline(["anon:a", "user:u", "email:e@x.io"], 3, None)
    assert [e["event"] for e in page] == ["four", "three", "two"]
    page, cursor = events.timeline(["anon:a", "user:u", "email:e@x.io"], 3, cursor)
    assert [e["event"] for e in page] == ["one"] and cursor is None


def test_stored_says_which_event_keys_are_in_the_table(events):
    events.append([stored("contact:c1", "2026-11-22T10:00:00.000Z", "mercurio-1"),
                   stored("contact:c1", "2026-11-22T10:00:01.000Z", "mercurio-2")])
    keys = [("contact:c1", "2026-11-22T10:00:00.000Z#mercurio-1"),
            ("contact:c1", "2026-11-22T10:00:01.000Z#mercurio-2"),
            ("contact:c1", "2026-11-22T10:00:02.000Z#mercurio-3"),  # not stored
            ("contact:c2", "2026-11-22T10:00:00.000Z#mercurio-1")]  # another partition
    assert events.stored(keys) == set(keys[:2])
    assert events.stored([]) == set()
    many = [("contact:c9", f"2026-11-22T10:00:00.000Z#m{i:03d}") for i in range(150)]  # more than one request
    assert events.stored(many + keys[:1]) == {keys[0]}


def test_item_size_follows_dynamodb_rules():
    item = {"pk": "anon:a", "sk": "x", "b": "é" * 10, "ttl": 1_700_000_000}
    assert item_size(item) == 2 + 6 + 2 + 1 + 1 + 20 + 3 + 6
    assert write_units({"b": "x" * 1023}) == 1 and write_units({"b": "x" * 1030}) == 2


def test_claims_are_first_come_first_served(repo):
    assert repo.claim("email:a@x.io", "c1") == "c1"
    assert repo.claim("email:a@x.io", "c2") == "c1"
    assert repo.lookup(["email:a@x.io", "email:none@x.io"]) == {"email:a@x.io": "c1"}


def test_repoint_only_moves_what_still_points_at_the_old_contact(repo):
    repo.claim("anon:a", "c1")
    assert repo.repoint("anon:a", "c1", "c2") is True
    assert repo.repoint("anon:a", "c1", "c3") is False
    assert repo.lookup(["anon:a"]) == {"anon:a": "c2"}


def test_saves_are_conditional_on_the_version(repo):
    repo.create(Contact(id="c1", created_at="t", traits={"a": 1}))
    first, second = repo.get("c1", consistent=True), repo.get("c1", consistent=True)
    first.traits["a"] = 2
    repo.save(first)
    second.traits["a"] = 3
    with pytest.raises(ConcurrentUpdate):
        repo.save(second)
    assert repo.get("c1", consistent=True).traits == {"a": 2}
    with pytest.raises(ConcurrentUpdate):
        repo.create(Contact(id="c1", created_at="t"))


def test_a_merge_is_atomic_and_fences_the_loser(repo):
    repo.create(Contact(id="keep", created_at="1"))
    repo.create(Contact(id="gone", created_at="2"))
    survivor, loser = repo.get("keep", True), repo.get("gone", True)
    stale_loser = repo.get("gone", True)
    survivor.traits["merged"] = True
    repo.merge(survivor, [loser])
    assert repo.get("gone", True).merged_into == "keep"
    stale_loser.traits["late"] = 1
    with pytest.raises(ConcurrentUpdate):
        repo.save(stale_loser)  # a writer holding the old loser must re-read and follow

    # A conflicting merge writes nothing at all.
    repo.create(Contact(id="x", created_at="3"))
    keep, x = repo.get("keep", True), repo.get("x", True)
    keep.version -= 1
    x.traits["should_not"] = "land"
    with pytest.raises(ConcurrentUpdate):
        repo.merge(keep, [x])
    assert repo.get("x", True).merged_into is None
    assert "should_not" not in repo.get("x", True).traits


def test_get_many_reads_contacts_in_batches_of_100(repo, monkeypatch):
    for i in range(130):
        repo.create(Contact(id=f"c{i:03d}", created_at="t", traits={"n": i}))
    keep, gone = repo.get("c000", True), repo.get("c001", True)
    repo.merge(keep, [gone])
    batches = []
    real_page = repo.Contact._batch_get_page.__func__

    def counted(cls, keys, *args, **kwargs):
        batches.append(len(keys))
        return real_page(cls, keys, *args, **kwargs)

    monkeypatch.setattr(repo.Contact, "_batch_get_page", classmethod(counted))
    found = repo.get_many([f"c{i:03d}" for i in range(100)] + ["missing", "c005"])
    assert batches == [100, 1]  # BatchGetItem takes at most 100 keys; a repeated id is asked once
    assert len(found) == 100 and "missing" not in found
    assert found["c042"].traits == {"n": 42} and found["c042"].version == 1
    assert found["c001"].merged_into == "c000"  # merged-away contacts are returned as `get` returns them
    assert repo.get_many([]) == {}


def test_processing_against_dynamodb_merges_anonymous_history(repo):
    processor = EventProcessor(repo, FakeClock(), sleep=lambda s: None)
    cache = BatchCache()
    base = {"receivedAt": "2026-11-22T10:00:00.000Z", "context": {}}
    processor.process({**base, "type": "page", "messageId": "p1", "anonymousId": "a",
                       "timestamp": "2026-11-22T10:00:00.000Z"}, cache)
    processor.process({**base, "type": "identify", "messageId": "i1", "userId": "u", "traits": {"email": "u@x.io"},
                       "timestamp": "2026-11-22T10:01:00.000Z"}, BatchCache())
    outcome = processor.process({**base, "type": "identify", "messageId": "i2", "userId": "u", "anonymousId": "a",
                                 "timestamp": "2026-11-22T10:02:00.000Z"}, BatchCache())
    assert outcome.merged
    contact = repo.get(outcome.contact_id, True)
    assert contact.identifiers == ["anon:a", "email:u@x.io", "user:u"]
    assert repo.lookup(["anon:a", "user:u", "email:u@x.io"]) == {
        "anon:a": contact.id, "user:u": contact.id, "email:u@x.io": contact.id}
    assert contact.counters["Page Viewed"]["total"] == 1


def _keys(aws_tables, pk: str) -> list[str]:
    table = boto3.resource("dynamodb").Table(aws_tables["EventsTable"])
    return [item["sk"] for item in table.query(KeyConditionExpression=boto3.dynamodb.conditions.Key("pk").eq(pk))["Items"]]


def test_a_resent_messageid_keeps_the_first_received_row_only(events, aws_tables):
    first = stored("user:u1", "2026-11-22T10:00:05.000Z", "m-1", receivedAt="2026-11-22T10:00:05.100Z")
    # The resend carries an earlier device time but reached the API later.
    resend = stored("user:u1", "2026-11-22T09:59:58.000Z", "m-1", receivedAt="2026-11-22T10:00:09.000Z")
    others = [stored("user:u1", "2026-11-22T10:00:01.000Z", "m-10", receivedAt="2026-11-22T10:00:01.000Z"),
              stored("user:u1", "2026-11-22T10:00:02.000Z", "xm-1", receivedAt="2026-11-22T10:00:02.000Z"),
              stored("user:u2", "2026-11-22T10:00:05.000Z", "m-1", receivedAt="2026-11-22T10:00:05.000Z")]
    events.append([first, *others])
    # A redelivered record of a row alone with its messageId deletes nothing.
    assert events.discard_resent("user:u1", first.sort, "m-1") == 0
    events.append([resend])
    assert events.discard_resent("user:u1", resend.sort, "m-1") == 1
    assert sorted(_keys(aws_tables, "user:u1")) == sorted([first.sort, others[0].sort, others[1].sort])
    assert _keys(aws_tables, "user:u2") == [others[2].sort]
    assert events.discard_resent("user:u1", resend.sort, "m-1") == 0  # idempotent
    assert events.discard_resent("user:u1", first.sort, "not-its-id") == 0


def test_resends_further_apart_than_the_window_are_left_alone(events, aws_tables):
    events.append([stored("anon:a", "2026-11-01T10:00:00.000Z", "m", receivedAt="2026-11-01T10:00:00.000Z"),
                   stored("anon:a", "2026-11-22T10:00:00.000Z", "m", receivedAt="2026-11-22T10:00:00.000Z")])
    assert events.discard_resent("anon:a", "2026-11-22T10:00:00.000Z#m", "m") == 0
    assert len(_keys(aws_tables, "anon:a")) == 2
