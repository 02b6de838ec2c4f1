"""The local event source mapping: batches, partial failures and retries, as Lambda does."""
from __future__ import annotations

import boto3

from chalicelib.adapters.dynamodb_events import DynamoDBEventStore, decode_body
from chalicelib.services.ports import StoredEvent
from local.stream_bridge import StreamBridge


def put(aws_tables, n: int) -> None:
    store = DynamoDBEventStore(aws_tables["EventsTable"], client=boto3.client("dynamodb"))
    store.append([StoredEvent(f"anon:{i}", f"2026-11-22T10:00:{i:02d}.000Z#m{i}", {"n": i}, 1) for i in range(n)])


def test_records_arrive_in_lambda_shape(aws_tables):
    put(aws_tables, 3)
    seen = []
    bridge = StreamBridge(aws_tables["EventsTable.StreamArn"], lambda e: seen.extend(e["Records"]) or {})
    assert bridge.drain() == 3
    assert [r["eventName"] for r in seen] == ["INSERT"] * 3
    assert seen[0]["eventSource"] == "aws:dynamodb"
    assert decode_body(seen[0]["dynamodb"]["NewImage"]["b"]["B"]) == {"n": 0}
    assert isinstance(seen[0]["dynamodb"]["ApproximateCreationDateTime"], float)


def test_a_partial_failure_is_retried_from_the_failed_record(aws_tables):
    put(aws_tables, 5)
    calls = []

    def handler(event):
        sequences = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        calls.append(len(sequences))
        if len(calls) == 1:  # the third record fails once
            return {"batchItemFailures": [{"itemIdentifier": sequences[2]}]}
        return {"batchItemFailures": []}

    bridge = StreamBridge(aws_tables["EventsTable.StreamArn"], handler)
    bridge.drain()
    assert calls == [5, 3]
    assert bridge.delivered == 5 and bridge.dropped == []


def test_a_record_that_always_fails_is_passed_over_after_the_retries(aws_tables):
    put(aws_tables, 2)

    def handler(event):
        first = event["Records"][0]
        if decode_body(first["dynamodb"]["NewImage"]["b"]["B"]) == {"n": 0}:
            raise RuntimeError("poison")
        return {}

    bridge = StreamBridge(aws_tables["EventsTable.StreamArn"], handler, max_retries=2, retry_delay=0)
    bridge.drain(timeout=30)
    assert len(bridge.dropped) == 1
    assert bridge.delivered == 1
