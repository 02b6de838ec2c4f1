"""The broadcast and campaign-stats adapters against moto: the fan-out queue, the funnel
counters (atomic ADD per campaign, template and variant), and the message log's count-once
mark, which a later optimistic `advance` keeps."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest

from chalicelib.adapters.dynamodb_campaign_stats import DynamoDBCampaignStats
from chalicelib.adapters.dynamodb_messages import DynamoDBMessageLog
from chalicelib.adapters.sqs_fanout import SqsFanOutQueue, batch_of
from chalicelib.domain.messaging.messages import CLICKED, DELIVERED, OPENED, SENT, Message, StatusChange, message_id
from chalicelib.services.campaign_stats import CountingMessageLog

NOW = datetime(2026, 12, 10, 9, 0, tzinfo=timezone.utc)


def message(contact="c1", variant="a") -> Message:
    return Message(id=message_id("broadcast:dec", contact, "welcome", "email"), contact_id=contact, channel="email",
                   template="welcome", lane="marketing", topic=None, cause="broadcast:dec", requested_at=NOW,
                   campaign="dec", variant=variant, timeline=(StatusChange("queued", NOW),))


@pytest.fixture
def parts(aws_tables):
    store = DynamoDBMessageLog(aws_tables["MessagesTable"])
    stats = DynamoDBCampaignStats(aws_tables["ChannelsTable"])
    return store, stats, CountingMessageLog(store, store, stats)


def test_counters_add_atomically_per_template_and_variant(parts):
    _, stats, _ = parts
    stats.add("dec", "welcome", "a", {"sent": 2, "skipped:holdout": 1})
    stats.add("dec", "welcome", "a", {"sent": 1})
    stats.add("dec", "bold", "b", {"sent": 1, "clicked": 1})
    stats.add("other", "welcome", None, {"sent": 5})
    rows = sorted(stats.read("dec"), key=lambda r: r["variant"])
    assert rows == [{"template": "welcome", "variant": "a", "counts": {"sent": 3, "skipped:holdout": 1}},
                    {"template": "bold", "variant": "b", "counts": {"sent": 1, "clicked": 1}}]
    assert stats.read("other")[0]["variant"] is None and stats.read("nobody") == []


def test_a_batch_writes_each_counter_row_once(parts):
    store, stats, log = parts
    writes = []
    real = stats.table.update_item
    stats.table.update_item = lambda **kw: writes.append(kw["Key"]["sk"]) or real(**kw)
    with stats.batched():
        for contact in ("c1", "c2", "c3"):
            m = message(contact=contact)
            log.create(m)
            log.advance(m.id, StatusChange(SENT, NOW))
        log.create(message(contact="c4", variant="b"))
    assert sorted(writes) == ["funnel#welcome#a", "funnel#welcome#b"]
    rows = {r["variant"]: r["counts"] for r in stats.read("dec")}
    assert rows == {"a": {"requested": 3, "sent": 3}, "b": {"requested": 1}}


def test_a_status_is_counted_once_however_often_it_arrives(parts):
    store, stats, log = parts
    first = message()
    assert log.create(first) and not log.create(first)  # a replayed request counts nothing
    for _ in range(3):
        log.advance(first.id, StatusChange(SENT, NOW))
        log.advance(first.id, StatusChange(DELIVERED, NOW))
        log.advance(first.id, StatusChange(CLICKED, NOW))
    [row] = stats.read("dec")
    assert row["counts"] == {"requested": 1, "sent": 1, "delivered": 1, "clicked": 1, "opened": 1}
    assert store.get(first.id).status == CLICKED  # the marks never leak into the message
    assert store.first_time(first.id, "sent") is False and store.first_time("msg_unknown", "sent") is False


def test_an_advance_that_read_before_a_mark_does_not_erase_it(parts):
    store, _, _ = parts
    first = message(contact="c2")
    store.create(first)
    store.advance(first.id, StatusChange(OPENED, NOW))
    stale = store._item(first.id)
    assert store.first_time(first.id, "delivered")
    # An out-of-order advance (a late delivery after the open) reads, then puts conditionally;
    # racing the mark, its read is older, so its conditional put must retry.
    table = store.table
    real_get = store._item
    calls = []

    def racing(message_id):
        calls.append(message_id)
        return stale if len(calls) == 1 else real_get(message_id)

    store._item = racing
    late = store.advance(first.id, StatusChange(DELIVERED, NOW))
    assert late.status == OPENED and late.timeline[-1].status == DELIVERED
    assert len(calls) == 2  # the stale version was refused once
    assert "delivered" in table.get_item(Key={"id": first.id})["Item"]["counted"]
    assert store.first_time(first.id, "delivered") is False


def test_fan_out_batches_go_to_the_queue_ten_per_call(aws_tables):
    queue = SqsFanOutQueue(aws_tables["FanOutQueue"].rsplit("/", 1)[-1])
    batches = [{"broadcast": "dec", "phase": "launch", "page": 1, "contacts": [f"c{i}"]} for i in range(12)]
    queue.send(batches)
    sqs = boto3.client("sqs")
    received = []
    for _ in range(5):
        answer = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)
        received += [batch_of(m["Body"]) for m in answer.get("Messages", [])]
    assert sorted(b["contacts"][0] for b in received) == sorted(f"c{i}" for i in range(12))
    with pytest.raises(ValueError):
        batch_of(json.dumps({"contacts": []}))
    with pytest.raises(ValueError):
        batch_of("not json")
