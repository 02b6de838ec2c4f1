"""Against moto: the contact item's layout, sharded segment sizes, and a stream batch written
once per contact with partial failures."""
from __future__ import annotations

import json
import zlib

import boto3
import pytest

from chalicelib.adapters.dynamodb_contacts import DynamoDBContactRepository
from chalicelib.adapters.dynamodb_events import DynamoDBEventStore
from chalicelib.adapters.dynamodb_memberships import SHARDS, DynamoDBMembershipStore, shard_of, size_key
from chalicelib.domain.contact import Contact, apply_event
from chalicelib.domain.events import parse_timestamp
from chalicelib.services.ports import StoredEvent
from chalicelib.services.process_events import EventProcessor
from chalicelib.entrypoints.stream import handle_stream
from local.stream_bridge import to_lambda_record
from tests.unit.fakes import FakeClock


@pytest.fixture
def repo(aws_tables):
    return DynamoDBContactRepository(aws_tables["ContactsTable"], aws_tables["IdentitiesTable"], region="us-east-1")


@pytest.fixture
def memberships(aws_tables):
    return DynamoDBMembershipStore(aws_tables["MembershipsTable"], aws_tables["DefinitionsTable"],
                                   resource=boto3.resource("dynamodb"))


def raw_item(aws_tables, contact_id: str) -> dict:
    return boto3.client("dynamodb").get_item(TableName=aws_tables["ContactsTable"],
                                             Key={"id": {"S": contact_id}})["Item"]


def busy_contact(contact_id: str = "c1") -> Contact:
    contact = Contact(id=contact_id, created_at="2026-09-01T00:00:00.000Z")
    names = ["Product Viewed", "Page Viewed", "Product Added", "Order Completed", "Cart Viewed"]
    for i in range(60):
        day = 1 + i % 28
        apply_event(contact, {"type": "track", "event": names[i % len(names)], "messageId": f"m{i}",
                              "timestamp": f"2026-11-{day:02d}T1{i % 10}:00:00.000Z",
                              "context": {"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "locale": "de-DE"}})
    return contact


def without_digests(document: dict) -> dict:
    """A document without its digests: a contact read back stores only the latest of them
    again, plus those it remembers since it was read (ProcessedMessagesPart.dump)."""
    return {k: v for k, v in document.items() if k != "recent"}


# -- the contact item ------------------------------------------------------------------------

def test_a_contact_is_stored_as_a_deflated_body_and_raw_digests_and_reads_back_the_same(repo, aws_tables):
    contact = busy_contact()
    repo.create(contact)
    item = raw_item(aws_tables, "c1")
    assert set(item) == {"id", "version", "body", "seen"}
    assert len(item["seen"]["B"]) == 6 * len(contact.recent)
    again = repo.get("c1")
    assert again.recent == contact.recent  # every digest stored reads back
    assert without_digests(again.to_document()) == without_digests(contact.to_document())


def test_the_new_layout_is_smaller_than_the_zlib_document(repo, aws_tables):
    contact = busy_contact()
    repo.create(contact)
    item = raw_item(aws_tables, "c1")
    legacy = zlib.compress(json.dumps(contact.to_document(), separators=(",", ":")).encode(), 6)
    assert len(item["body"]["B"]) + len(item["seen"]["B"]) < len(legacy) * 0.85


def test_an_item_in_the_previous_layout_is_read_and_rewritten_in_the_new_one(repo, aws_tables):
    contact = busy_contact("old")
    doc = contact.to_document()
    legacy = zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)
    boto3.client("dynamodb").put_item(TableName=aws_tables["ContactsTable"],
                                      Item={"id": {"S": "old"}, "version": {"N": "3"}, "doc": {"B": legacy}})
    read = repo.get("old")
    assert read.version == 3 and read.recent == doc["recent"]
    assert without_digests(read.to_document()) == without_digests(doc)
    apply_event(read, {"type": "track", "event": "Cart Viewed", "messageId": "new", "context": {},
                       "timestamp": "2026-11-29T10:00:00.000Z"})
    repo.save(read)
    item = raw_item(aws_tables, "old")
    assert "body" in item and "doc" not in item
    assert repo.get("old").counters["Cart Viewed"]["total"] == read.counters["Cart Viewed"]["total"]


SHOP_SEGMENTS = [
    {"id": "coffee-viewers", "name": "Viewed coffee twice in 30 days",
     "conditions": {"event": "Product Viewed", "where": ['properties.category == "Coffee"'],
                    "at_least": 2, "within": "30 days"}},
    {"id": "recent-browsers", "name": "Viewed a product this week",
     "conditions": {"event": "Product Viewed", "within": "7 days"}},
    {"id": "cart-without-order", "name": "Added to cart, no order yet",
     "conditions": {"all": [{"event": "Product Added", "within": "1 day"},
                            {"event": "Order Completed", "within": "1 day", "at_most": 0}]}},
    {"id": "buyers-90d", "name": "Bought in the last 90 days",
     "conditions": {"event": "Order Completed", "within": "90 days"}},
    {"id": "list-browsers", "name": "Browsed 3 category lists in 30 days",
     "conditions": {"event": "Product List Viewed", "at_least": 3, "within": "30 days"}},
    {"id": "cart-viewers", "name": "Viewed the cart in 14 days",
     "conditions": {"event": "Cart Viewed", "within": "14 days"}},
]
BROWSERS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Safari/605.1.15",
]


def shop_customer() -> Contact:
    """A shop's regular: an identify, then 90 analytics.js calls over 60 days (nine event
    names, browser context with a campaign) read by six segments, and the outbox its last
    write leaves: a cart added, then an order, so Segment Entered (buyers) and Segment
    Exited (cart without order) with their membership moves."""
    from datetime import datetime, timedelta, timezone

    from chalicelib.domain.segments.language import parse_segment
    from chalicelib.services.catalog import Catalog
    from chalicelib.services.segmentation import ProfileRules

    catalog = Catalog.of(segments={d["id"]: parse_segment(d) for d in SHOP_SEGMENTS})
    rules = ProfileRules(lambda: catalog)
    contact = Contact(id="8f3a61c0b2d94e5fa7c1e0d9b8a7f6e5", created_at="2026-08-01T09:12:44.318Z")
    contact.identifiers = ["anon:0b6f7c2e-5d0a-4c8e-9f31-7a2b6c4d8e10", "email:ada.lovelace@example.com",
                           "user:customer-000123"]
    names = ["Product Viewed", "Product Viewed", "Product List Viewed", "Products Searched", "Cart Viewed",
             "Promotion Clicked", "Checkout Started", "Page Viewed", "Email Opened"]
    start = datetime(2026, 10, 1, 8, 3, 17, 211000, tzinfo=timezone.utc)
    stamp = lambda when: when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"  # noqa: E731
    events = [{"type": "identify", "messageId": "ajs-next-identify", "timestamp": stamp(start), "context": {},
               "traits": {"email": "ada.lovelace@example.com", "firstName": "Ada", "lastName": "Lovelace"}}]
    for i in range(90):
        when = start + timedelta(minutes=16 * 60 * i + (i * 37) % 600, milliseconds=i * 137)
        name = "Product Added" if i == 88 else "Order Completed" if i == 89 else names[(i * 7) % len(names)]
        events.append({
            "type": "track", "event": name, "messageId": f"ajs-next-{i:032x}", "timestamp": stamp(when),
            "properties": {"category": "Coffee" if i % 3 else "Grinders", "product_id": f"p{i % 6}"},
            "context": {"userAgent": BROWSERS[i % 2], "locale": "fr-FR", "timezone": "Europe/Paris",
                        "page": {"url": f"https://shop.example.com/products/single-origin-{i % 6}"},
                        "campaign": {"name": "spring-sale", "source": "newsletter", "medium": "email"}}})
    for event in events:
        contact.outbox.clear()  # the previous write's, published after it
        contact.remembered = 0  # each a write of its own, as in processing
        if apply_event(contact, event, retention=rules.counter_retention()):
            rules.on_event(contact, event, parse_timestamp(event["timestamp"]))
    return contact


def test_a_busy_shop_customers_item_stays_under_1_kb_with_its_outbox(repo, aws_tables):
    from bench.units import item_size
    from chalicelib.adapters.contact_document import encode_body

    contact = shop_customer()
    assert len(contact.counters) == 10 and len(contact.segments) >= 3
    assert [e["event"]["event"] for e in contact.outbox if e["kind"] == "event"] == ["Segment Entered",
                                                                                    "Segment Exited"]
    repo.create(contact)
    item = raw_item(aws_tables, contact.id)
    size = item_size(item)
    assert size < 1024
    # The same contact in layout 1 took a second write unit.
    doc = contact.to_document()
    digests = doc.pop("recent")
    assert size + len(encode_body(doc, version=1)) - len(item["body"]["B"]) > 1024
    again = repo.get(contact.id)
    assert without_digests(again.to_document()) == without_digests(contact.to_document())
    assert again.recent == contact.recent[-len(again.recent):] and len(again.recent) == len(digests)


def test_a_body_in_layout_1_is_read_and_rewritten_in_layout_2(repo, aws_tables):
    from chalicelib.adapters.contact_document import encode_body, pack_digests

    contact = shop_customer()
    doc = contact.to_document()
    digests = doc.pop("recent")
    boto3.client("dynamodb").put_item(TableName=aws_tables["ContactsTable"], Item={
        "id": {"S": contact.id}, "version": {"N": "4"}, "body": {"B": encode_body(doc, version=1)},
        "seen": {"B": pack_digests(digests)}})
    read = repo.get(contact.id)
    assert read.version == 4 and read.outbox == contact.outbox
    assert without_digests(read.to_document()) == without_digests(contact.to_document())
    repo.save(read)
    assert raw_item(aws_tables, contact.id)["body"]["B"][0] == 2
    assert without_digests(repo.get(contact.id).to_document()) == without_digests(contact.to_document())


# -- sharded segment sizes -------------------------------------------------------------------

def test_sizes_are_counted_in_one_counter_per_shard(memberships, aws_tables):
    contacts = [f"contact-{i:03d}" for i in range(80)]
    for cid in contacts:
        assert memberships.enter("vip", cid, "2026-11-22T10:00:00.000Z")
    assert memberships.size("vip") == 80
    table = boto3.resource("dynamodb").Table(aws_tables["MembershipsTable"])
    counters = [table.get_item(Key=size_key("vip", shard)).get("Item") for shard in range(SHARDS)]
    used = {shard_of(c) for c in contacts}
    assert len(used) > 8  # the writes spread over many partitions
    assert sum(int(c["size"]) for c in counters if c) == 80
    assert all(counters[s] is not None for s in used)
    # No size lives in one shared partition any more.
    definitions = boto3.resource("dynamodb").Table(aws_tables["DefinitionsTable"])
    assert definitions.get_item(Key={"pk": "stats", "sk": "segment#vip"}).get("Item") is None


def test_replayed_moves_change_nothing_and_leaving_counts_down(memberships):
    assert memberships.enter("vip", "a", "t")
    assert not memberships.enter("vip", "a", "t")  # published twice: no double count
    assert memberships.enter("vip", "b", "t")
    assert memberships.leave("vip", "a")
    assert not memberships.leave("vip", "a")
    assert memberships.size("vip") == 1
    assert memberships.size("nobody") == 0
    rows, cursor = memberships.members("vip", 10, None)
    assert [r["contact_id"] for r in rows] == ["b"] and cursor is None


def test_recount_restores_a_count_left_short_by_a_crash(memberships, aws_tables):
    for cid in ("a", "b", "c"):
        memberships.enter("vip", cid, "t")
    table = boto3.resource("dynamodb").Table(aws_tables["MembershipsTable"])
    table.put_item(Item={**size_key("vip", shard_of("a")), "size": 0})  # as if the ADD never ran
    assert memberships.size("vip") < 3
    assert memberships.recount("vip") == 3
    assert memberships.size("vip") == 3


# -- a stream batch, written once per contact ------------------------------------------------

class CountingRepository(DynamoDBContactRepository):
    def __init__(self, *args, broken: set | None = None, **kw):
        super().__init__(*args, **kw)
        self.broken = broken if broken is not None else set()
        self.writes = 0

    def save(self, contact):
        if contact.id in self.broken:
            raise RuntimeError("throttled")
        self.writes += 1  # create() goes through save() too
        super().save(contact)


def stream_event(aws_tables, after: str | None = None) -> dict:
    streams = boto3.client("dynamodbstreams")
    arn = aws_tables["EventsTable.StreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records.extend(streams.get_records(ShardIterator=it)["Records"])
    lambda_records = [to_lambda_record(r, arn, "us-east-1") for r in records]
    return {"Records": lambda_records}


def track(anon: str, i: int, name: str = "Page Viewed") -> StoredEvent:
    ts = f"2026-11-22T10:00:{i:02d}.000Z"
    body = {"type": "track", "event": name, "anonymousId": anon, "messageId": f"{anon}-{i}", "timestamp": ts,
            "receivedAt": ts, "context": {}}
    return StoredEvent(partition=f"anon:{anon}", sort=f"{ts}#{anon}-{i}", body=body, ttl=2_000_000_000)


def test_a_stream_batch_writes_each_contact_once_and_fails_a_broken_contact_in_order(aws_tables):
    events = DynamoDBEventStore(aws_tables["EventsTable"], client=boto3.client("dynamodb"))
    repo = CountingRepository(aws_tables["ContactsTable"], aws_tables["IdentitiesTable"], region="us-east-1")
    ids = iter(["c-a", "c-b", "c-c"])
    processor = EventProcessor(repo, FakeClock(), new_id=lambda: next(ids), sleep=lambda s: None)
    # a, b and c browse: 4, 3 and 3 page views interleaved in one batch.
    order = ["a", "b", "a", "c", "a", "b", "c", "a", "b", "c"]
    events.append([track(anon, i) for i, anon in enumerate(order)])
    batch = stream_event(aws_tables)
    sequence = [r["dynamodb"]["SequenceNumber"] for r in batch["Records"]]
    repo.broken.add("c-b")

    response = handle_stream(batch, None, processor)

    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert failed == sequence[1:]  # b's first record and every record after it
    assert repo.writes == 2  # a and c, once each
    assert repo.get("c-a").counters["Page Viewed"]["total"] == 4
    assert repo.get("c-c").counters["Page Viewed"]["total"] == 3
    assert repo.get("c-b") is None

    # The stream redelivers from the first failed record; b's write now succeeds.
    repo.broken.clear()
    retry = {"Records": batch["Records"][1:]}
    assert handle_stream(retry, None, processor)["batchItemFailures"] == []
    assert [repo.get(c).counters["Page Viewed"]["total"] for c in ("c-a", "c-b", "c-c")] == [4, 3, 3]
