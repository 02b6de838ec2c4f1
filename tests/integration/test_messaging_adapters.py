"""The messaging adapters against moto, each on its table from infrastructure/template.yaml:
the message log, the suppression list, the channel counters and the send rate."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.adapters.dynamodb_channel_stats import DynamoDBChannelStats
from chalicelib.adapters.dynamodb_messages import DynamoDBMessageLog
from chalicelib.adapters.dynamodb_send_rate import DynamoDBSendRate
from chalicelib.adapters.dynamodb_suppressions import DynamoDBSuppressionStore
from chalicelib.domain.messaging.consent import SuppressionEntry, suppression_key
from chalicelib.domain.messaging.messages import Message, StatusChange, message_id
from chalicelib.domain.messaging.policy import RateBudget

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
SALT = b"0123456789abcdef0123"


def message(cause: str = "evt-1", contact: str = "c1", at: datetime = NOW, data: dict | None = None) -> Message:
    return Message(id=message_id(cause, contact, "welcome", "email"), contact_id=contact, channel="email",
                   template="welcome", lane="marketing", topic=None, cause=cause, requested_at=at,
                   data=data or {}, timeline=(StatusChange("queued", at),))


@pytest.fixture
def log(aws_tables):
    return DynamoDBMessageLog(aws_tables["MessagesTable"])


def test_creation_is_conditional_and_the_message_reads_back_exactly(log):
    first = message(data={"price": 12.5, "items": [1, 2], "name": "Bean"})
    assert log.create(first) is True
    assert log.create(message(data={"other": True})) is False  # same cause: a no-op
    stored = log.get(first.id)
    assert stored == first and isinstance(stored.data["price"], float)
    assert log.get("msg_unknown") is None


def test_one_claim_wins_and_an_expired_lease_can_be_claimed_again(log):
    m = message()
    log.create(m)
    claimed = log.claim(m.id, StatusChange("sending", NOW), NOW + timedelta(minutes=5))
    assert claimed is not None and claimed.status == "sending"
    assert [c.status for c in claimed.timeline] == ["queued", "sending"]
    assert log.claim(m.id, StatusChange("sending", NOW + timedelta(minutes=1)), NOW + timedelta(minutes=6)) is None
    late = NOW + timedelta(minutes=6)
    assert log.claim(m.id, StatusChange("sending", late), late + timedelta(minutes=5)) is not None
    assert log.claim("msg_unknown", StatusChange("sending", NOW), NOW) is None


def test_a_sent_message_is_never_claimed_and_status_moves_forward_only(log):
    m = message()
    log.create(m)
    log.claim(m.id, StatusChange("sending", NOW), NOW + timedelta(minutes=5))
    sent = log.advance(m.id, StatusChange("sent", NOW, {"provider_id": "ses-1"}), provider_id="ses-1",
                       links=["https://shop.example/a"], subject="Welcome", address="ada@example.com")
    assert sent.status == "sent" and sent.links == ("https://shop.example/a",) and sent.subject == "Welcome"
    assert "lease_until" not in log.table.get_item(Key={"id": m.id})["Item"]  # it left `sending`
    assert log.claim(m.id, StatusChange("sending", NOW + timedelta(hours=1)), NOW + timedelta(hours=2)) is None
    log.advance(m.id, StatusChange("clicked", NOW + timedelta(minutes=3)))
    late = log.advance(m.id, StatusChange("delivered", NOW + timedelta(minutes=4)))
    assert late.status == "clicked" and late.timeline[-1].status == "delivered"
    assert log.get(m.id) == late
    assert log.by_provider_id("ses-1").id == m.id and log.by_provider_id("nope") is None
    assert log.advance("msg_unknown", StatusChange("sent", NOW)) is None


def test_a_claimed_message_can_be_released_to_wait(log):
    m = message()
    log.create(m)
    assert log.release(m.id, StatusChange("deferred", NOW)) is None  # not claimed
    log.claim(m.id, StatusChange("sending", NOW), NOW + timedelta(minutes=5))
    until = NOW + timedelta(hours=8)
    back = log.release(m.id, StatusChange("deferred", NOW, {"code": "quiet_hours", "until": until.isoformat()}))
    assert back.status == "deferred" and back.timeline[-1].detail["code"] == "quiet_hours"
    assert log.claim(m.id, StatusChange("sending", until), until + timedelta(minutes=5)) is not None


def test_a_contacts_messages_come_newest_first_in_pages_and_are_erased(log):
    for n in range(5):
        log.create(message(f"evt-{n}", at=NOW + timedelta(minutes=n)))
    log.create(message("evt-x", contact="c2"))
    page, cursor = log.for_contact("c1", limit=3)
    assert [m.cause for m in page] == ["evt-4", "evt-3", "evt-2"] and cursor
    rest, end = log.for_contact("c1", limit=3, cursor=cursor)
    assert [m.cause for m in rest] == ["evt-1", "evt-0"] and end is None
    recent, _ = log.for_contact("c1", since=NOW + timedelta(minutes=3))
    assert [m.cause for m in recent] == ["evt-4", "evt-3"]
    with pytest.raises(ValueError):
        log.for_contact("c2", cursor=cursor)  # a cursor of another contact
    assert log.erase_contact("c1") == 5
    assert log.for_contact("c1") == ([], None) and len(log.for_contact("c2")[0]) == 1


def test_the_contact_index_holds_what_the_caps_read_and_listings_read_whole_messages(log):
    a, b = message("evt-a"), message("evt-b", at=NOW + timedelta(minutes=1))
    log.create(a)
    log.create(b)
    log.advance(a.id, StatusChange("sent", NOW, {"provider_id": "ses-a"}), provider_id="ses-a",
                links=["https://shop.example/a"], subject="Hello")
    rows = log.table.query(IndexName="by_contact", KeyConditionExpression="contact_id = :c",
                           ExpressionAttributeValues={":c": "c1"})["Items"]
    projected = {r["id"]: r for r in rows}
    assert set(projected[a.id]) == {"id", "contact_id", "requested_at", "channel", "lane", "sent_at"}
    assert set(projected[b.id]) == {"id", "contact_id", "requested_at", "channel", "lane"}  # not sent
    listed, _ = log.for_contact("c1")
    assert [m.id for m in listed] == [b.id, a.id]
    assert listed[1] == log.get(a.id) and listed[1].subject == "Hello" and listed[1].timeline[-1].status == "sent"


def test_a_listing_asks_again_for_the_messages_dynamodb_left_unprocessed(log, monkeypatch):
    from chalicelib.adapters import dynamodb_messages

    waits = []
    monkeypatch.setattr(dynamodb_messages, "_sleep", waits.append)
    a, b = message("evt-a"), message("evt-b", at=NOW + timedelta(minutes=1))
    log.create(a)
    log.create(b)
    client = log.table.meta.client
    real = client.batch_get_item
    rounds = []

    def throttled(RequestItems):
        rounds.append(RequestItems)
        if len(rounds) == 1:  # the first round answers one key and leaves the other
            table, request = next(iter(RequestItems.items()))
            answer = real(RequestItems={table: {"Keys": request["Keys"][:1]}})
            answer["UnprocessedKeys"] = {table: {"Keys": request["Keys"][1:]}}
            return answer
        return real(RequestItems=RequestItems)

    monkeypatch.setattr(client, "batch_get_item", throttled)
    listed, _ = log.for_contact("c1")
    assert [m.id for m in listed] == [b.id, a.id] and len(rounds) == 2 and waits == [0.05]


def test_sends_of_reads_the_sends_from_the_index_and_a_send_that_failed_leaves_them(log):
    from chalicelib.domain.messaging.policy import PastSend

    a, b, c = message("evt-a"), message("evt-b", at=NOW + timedelta(minutes=1)), message("evt-c")
    for m in (a, b, c):
        log.create(m)
    log.advance(a.id, StatusChange("sent", NOW + timedelta(minutes=2)))
    log.advance(a.id, StatusChange("delivered", NOW + timedelta(minutes=3)))
    log.advance(b.id, StatusChange("sent", NOW + timedelta(minutes=2)))
    log.advance(b.id, StatusChange("failed", NOW + timedelta(minutes=3), {"reason": "rejected by SES"}))
    log.advance(c.id, StatusChange("skipped", NOW))
    assert log.sends_of("c1", NOW - timedelta(days=1)) == [
        (a.id, PastSend(NOW + timedelta(minutes=2), "email", "marketing"))]
    assert log.sends_of("c1", NOW + timedelta(minutes=1)) == []  # requested before `since`


def test_a_forward_advance_is_one_write_without_a_read_and_carries_its_marks(log):
    m = message()
    assert log.create_marked(m, ["requested"]) is True
    reads = []
    real = log._item
    log._item = lambda mid: reads.append(mid) or real(mid)
    sent, new = log.advance_marked(m.id, StatusChange("sent", NOW), ["sent"], provider_id="ses-1",
                                   links=["https://shop.example/a"])
    assert reads == [] and new == {"sent"}
    assert sent == log.get(m.id) and sent.status == "sent" and sent.provider_id == "ses-1"
    again, new = log.advance_marked(m.id, StatusChange("sent", NOW + timedelta(seconds=1)), ["sent"])
    assert new == set() and again.status == "sent"
    # Out of order: the read-then-put path, marks included.
    log.advance(m.id, StatusChange("opened", NOW + timedelta(minutes=5)))
    reads.clear()
    late, new = log.advance_marked(m.id, StatusChange("delivered", NOW + timedelta(minutes=1)), ["delivered"])
    assert late.status == "opened" and new == {"delivered"} and reads == [m.id]
    _, new = log.advance_marked(m.id, StatusChange("delivered", NOW + timedelta(minutes=1)), ["delivered"])
    assert new == set()
    assert log.table.get_item(Key={"id": m.id})["Item"]["counted"] == {"requested", "sent", "delivered"}
    assert log.advance_marked("msg_unknown", StatusChange("sent", NOW), ["sent"]) == (None, set())


def test_links_sharing_a_prefix_are_stored_compressed_and_read_back_exactly(log):
    many = [f"https://shop.example/products/{p}?utm_source=mercurio&utm_campaign=autumn&offer={p}"
            for p in ("espresso", "filter", "grinder")]
    m, short = message("evt-a"), message("evt-b")
    log.create(m)
    log.create(short)
    sent = log.advance(m.id, StatusChange("sent", NOW), links=many)
    item = log.table.get_item(Key={"id": m.id})["Item"]
    assert "links" not in item and len(bytes(item["links_z"])) < sum(len(u) for u in many) / 2
    assert sent.links == tuple(many) and log.get(m.id).links == tuple(many)
    assert {x.id: x for x in log.for_contact("c1")[0]}[m.id].links == tuple(many)  # listings too
    log.advance(short.id, StatusChange("sent", NOW), links=["https://a.example/"])  # too short to gain
    assert log.table.get_item(Key={"id": short.id})["Item"]["links"] == ["https://a.example/"]
    assert log.get(short.id).links == ("https://a.example/",)


def test_a_delivery_is_recorded_once_in_one_write_without_a_read(log):
    m = message()
    log.create(m)
    log.advance(m.id, StatusChange("sent", NOW))
    reads = []
    real = log._item
    log._item = lambda mid: reads.append(mid) or real(mid)
    delivered = StatusChange("delivered", NOW + timedelta(seconds=3), {"feedback_id": "ses:abc", "smtpResponse": "250"})
    outcome, recorded, new = log.record_once_marked(m.id, delivered, ["delivered"])
    assert (outcome, new, reads) == ("applied", {"delivered"}, [])
    assert recorded.status == "delivered" and recorded.timeline[-1] == delivered
    outcome, recorded, new = log.record_once_marked(m.id, delivered, ["delivered"])  # redelivered
    assert (outcome, new) == ("duplicate", set()) and [c.status for c in recorded.timeline].count("delivered") == 1
    log.advance(m.id, StatusChange("clicked", NOW + timedelta(minutes=5)))
    late = StatusChange("delivered", NOW + timedelta(seconds=4), {"feedback_id": "ses:def"})
    outcome, recorded, _ = log.record_once_marked(m.id, late, [])  # out of order: read, then put
    assert outcome == "applied" and recorded.status == "clicked" and recorded.timeline[-1] == late
    assert log.record_once("msg_unknown", delivered) == ("unknown", None)


def test_a_release_carries_its_mark_and_says_whether_it_was_new(log):
    m = message()
    log.create_marked(m, ["requested", "deferred"])  # a scheduled request counted its deferral
    log.claim(m.id, StatusChange("sending", NOW), NOW + timedelta(minutes=5))
    released, new = log.release_marked(m.id, StatusChange("deferred", NOW, {"code": "quiet_hours"}), ["deferred"])
    assert new == set() and released == log.get(m.id) and released.status == "deferred"
    assert log.release_marked(m.id, StatusChange("deferred", NOW), ["deferred"]) == (None, set())  # not sending


def test_suppressions_are_found_by_channel_and_hash_and_the_first_entry_stays(aws_tables):
    store = DynamoDBSuppressionStore(aws_tables["SuppressionsTable"])
    key = suppression_key("email", "Ada@Example.com", SALT)
    store.add(SuppressionEntry("email", key, "unsubscribed", NOW))
    store.add(SuppressionEntry("email", key, "unsubscribed", NOW + timedelta(days=1)))  # kept: the first
    store.add(SuppressionEntry("email", key, "bounced_hard", NOW + timedelta(days=2), "550 5.1.1"))
    found = store.find("email", suppression_key("email", "ada@example.com", SALT))
    assert [(e.reason, e.at) for e in found] == [("unsubscribed", NOW), ("bounced_hard", NOW + timedelta(days=2))]
    assert found[1].detail == "550 5.1.1"
    assert store.find("sms", key) == () and store.find("email", "hmac-sha256:other") == ()


def test_channel_counters_of_a_batch_are_written_once_per_hour_and_counted_meanwhile(aws_tables):
    stats = DynamoDBChannelStats(aws_tables["ChannelsTable"])
    writes = []
    real = stats.table.update_item
    stats.table.update_item = lambda **kw: writes.append(kw["Key"]) or real(**kw)
    with stats.batched():
        for i in range(10):
            stats.add("email", NOW + timedelta(minutes=i), sent=1)  # all in the hour from 12:00
        stats.add("email", NOW - timedelta(hours=2), bounced=1)
        assert writes == []
        assert stats.window("email", NOW + timedelta(minutes=30), 24).sent == 10  # counted already
    assert len(writes) == 2  # one per channel and hour
    counters = stats.window("email", NOW + timedelta(minutes=30), 24)
    assert (counters.sent, counters.bounced) == (10, 1)
    stats.add("email", NOW, sent=1)  # outside a batch: written at once
    assert len(writes) == 3 and stats.window("email", NOW + timedelta(minutes=30), 24).sent == 11


def test_the_window_is_read_once_for_a_few_seconds_and_again_after_its_own_writes(aws_tables):
    stats = DynamoDBChannelStats(aws_tables["ChannelsTable"])
    other = DynamoDBChannelStats(aws_tables["ChannelsTable"])  # another container (feedback)
    queries = []
    real = stats.table.query
    stats.table.query = lambda **kw: queries.append(kw) or real(**kw)
    assert stats.window("email", NOW, 24).bounced == 0
    other.add("email", NOW, bounced=1)
    assert stats.window("email", NOW + timedelta(seconds=5), 24).bounced == 0 and len(queries) == 1
    assert stats.window("email", NOW + timedelta(seconds=11), 24).bounced == 1 and len(queries) == 2
    stats.add("email", NOW, sent=1)  # its own addition: read again
    assert stats.window("email", NOW + timedelta(seconds=12), 24).sent == 1 and len(queries) == 3


def test_a_batch_whose_counters_cannot_be_written_is_logged_and_does_not_fail(aws_tables, caplog):
    stats = DynamoDBChannelStats(aws_tables["ChannelsTable"])

    def refuse(**_):
        raise RuntimeError("throttled")

    stats.table.update_item = refuse
    with stats.batched():
        stats.add("email", NOW, sent=3)
    assert "counters not written" in caplog.text


def test_channel_counters_add_up_per_hour_within_the_window(aws_tables):
    stats = DynamoDBChannelStats(aws_tables["ChannelsTable"])
    stats.add("email", NOW - timedelta(hours=30), sent=100)  # outside a 24-hour window
    stats.add("email", NOW - timedelta(hours=2), sent=10, bounced=1)
    stats.add("email", NOW - timedelta(hours=2), sent=5)
    stats.add("email", NOW, sent=3, complained=1)
    stats.add("sms", NOW, sent=7)
    window = stats.window("email", NOW, 24)
    assert (window.sent, window.bounced, window.complained, window.window) == (18, 1, 1, timedelta(hours=24))
    assert stats.window("email", NOW, 48).sent == 118


def test_the_send_rate_gives_a_burst_then_the_moment_the_next_send_fits(aws_tables):
    rate = DynamoDBSendRate(aws_tables["ChannelsTable"])
    budget = RateBudget(per_second=2, burst=2)
    assert rate.take("email", "marketing", budget, NOW) is None
    assert rate.take("email", "marketing", budget, NOW) is None
    assert rate.take("email", "marketing", budget, NOW) == NOW + timedelta(milliseconds=500)
    assert rate.take("email", "marketing", budget, NOW + timedelta(milliseconds=500)) is None
    assert rate.take("sms", "marketing", budget, NOW) is None  # its own bucket


def test_tokens_are_taken_ten_at_a_time_and_held_ones_expire(aws_tables):
    rate = DynamoDBSendRate(aws_tables["ChannelsTable"])
    writes = []
    real = rate.table.update_item
    rate.table.update_item = lambda **kw: writes.append(kw) or real(**kw)
    budget = RateBudget(per_second=100, burst=100)
    for _ in range(10):
        assert rate.take("email", "marketing", budget, NOW) is None
    assert len(writes) == 1  # one write took the ten
    assert rate.take("email", "marketing", budget, NOW) is None and len(writes) == 2
    # Held tokens are not spent after HOLD: the bucket is asked again.
    later = NOW + timedelta(seconds=2)
    assert rate.take("email", "marketing", budget, later) is None and len(writes) == 3
    # The bucket counts every token taken, held ones included: ten from `later` on.
    tat = rate.table.get_item(Key={"channel": "email", "sk": "rate"})["Item"]["tat"]
    assert int(tat) == int((later - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds()) * 1_000_000 \
        + 10 * budget.interval_us()


def test_a_reserve_never_takes_more_than_the_bucket_has(aws_tables):
    rate = DynamoDBSendRate(aws_tables["ChannelsTable"])
    budget = RateBudget(per_second=1, burst=3, transactional_reserve=1)
    other = DynamoDBSendRate(aws_tables["ChannelsTable"])
    assert rate.take("email", "marketing", budget, NOW) is None  # takes 2: the reserve stays
    assert other.take("email", "marketing", budget, NOW) is not None  # nothing left for marketing
    assert other.take("email", "transactional", budget, NOW) is None
    assert rate.take("email", "marketing", budget, NOW) is None  # its held token
    assert rate.take("email", "marketing", budget, NOW) is not None


def test_the_transactional_reserve_is_left_to_transactional_sends(aws_tables):
    rate = DynamoDBSendRate(aws_tables["ChannelsTable"])
    budget = RateBudget(per_second=1, burst=3, transactional_reserve=1)
    assert rate.take("email", "marketing", budget, NOW) is None
    assert rate.take("email", "marketing", budget, NOW) is None
    assert rate.take("email", "marketing", budget, NOW) is not None  # the last token is kept
    assert rate.take("email", "transactional", budget, NOW) is None


def test_each_lane_has_its_own_queue_and_a_received_message_can_be_delayed(aws_tables):
    import boto3

    from chalicelib.adapters.sqs_messages import SqsMessageQueue, message_id_of

    queue = SqsMessageQueue("mercurio-test-messages", "mercurio-test-messages-transactional")
    queue.enqueue("msg_bulk", "marketing")
    queue.enqueue("msg_receipt", "transactional")
    sqs = boto3.client("sqs")
    bulk = sqs.receive_message(QueueUrl=aws_tables["MessagesQueue"], MaxNumberOfMessages=10)["Messages"]
    receipts = sqs.receive_message(QueueUrl=aws_tables["TransactionalMessagesQueue"],
                                   MaxNumberOfMessages=10)["Messages"]
    assert [message_id_of(m["Body"]) for m in bulk] == ["msg_bulk"]
    assert [message_id_of(m["Body"]) for m in receipts] == ["msg_receipt"]
    queue.retry_later("marketing", bulk[0]["ReceiptHandle"], 30 * 3600)  # capped at SQS's 12 hours
    assert sqs.receive_message(QueueUrl=aws_tables["MessagesQueue"]).get("Messages") is None
    with pytest.raises(ValueError):
        message_id_of('{"id": 1}')


def test_a_batch_of_enqueued_messages_goes_ten_per_request_when_it_ends(aws_tables):
    import boto3

    from chalicelib.adapters.sqs_messages import SqsMessageQueue, message_id_of

    queue = SqsMessageQueue("mercurio-test-messages", "mercurio-test-messages-transactional")
    calls = []
    real = queue.client.send_message_batch
    queue.client.send_message_batch = lambda **kw: calls.append(len(kw["Entries"])) or real(**kw)
    with queue.batched():
        for i in range(12):
            queue.enqueue(f"msg_{i}", "marketing")
        queue.enqueue("msg_later", "marketing", 60)
        assert calls == []
    assert sorted(calls) == [3, 10]
    sqs = boto3.client("sqs")
    seen = set()
    for _ in range(3):
        for m in sqs.receive_message(QueueUrl=aws_tables["MessagesQueue"], MaxNumberOfMessages=10).get("Messages", []):
            seen.add(message_id_of(m["Body"]))
    assert seen == {f"msg_{i}" for i in range(12)}  # the delayed one is not visible yet


def test_a_batch_sqs_refuses_in_part_raises_so_its_requests_are_retried(aws_tables):
    from chalicelib.adapters.sqs_messages import QueueBatchFailed, SqsMessageQueue

    queue = SqsMessageQueue("mercurio-test-messages", "mercurio-test-messages-transactional")
    queue.url("marketing")
    queue.client.send_message_batch = lambda **kw: {
        "Successful": [], "Failed": [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False}
                                     for e in kw["Entries"]]}
    with pytest.raises(QueueBatchFailed, match="refused 2"):
        with queue.batched():
            queue.enqueue("msg_a", "marketing")
            queue.enqueue("msg_b", "marketing")
