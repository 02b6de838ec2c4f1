"""What Lambda's event source mapping does on AWS, for the emulator: read the DynamoDB stream
and invoke the app's stream handler with batches of records.

Honours partial batch responses (`batchItemFailures`): the batch is retried from the first
failed record, as Lambda does with ReportBatchItemFailures. A record that keeps failing is
retried with back-off up to `max_retries` times and then reported and passed over, as the
production mapping's MaximumRetryAttempts + on-failure destination would.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Callable

import boto3

from local.polling import start_polling

log = logging.getLogger("mercurio.local.stream")


def to_lambda_record(record: dict, stream_arn: str, region: str) -> dict:
    dynamodb = dict(record["dynamodb"])
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = created.timestamp()
    return {
        "eventID": record.get("eventID"),
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }


class StreamBridge:
    def __init__(self, stream_arn: str, handler: Callable[[dict], dict | None], endpoint_url: str | None = None,
                 region: str = "us-east-1", batch_size: int = 100, poll_interval: float = 0.05,
                 max_retries: int = 10, retry_delay: float = 0.05):
        self.stream_arn = stream_arn
        self.handler = handler
        self.region = region
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.client = boto3.client("dynamodbstreams", endpoint_url=endpoint_url, region_name=region)
        self._iterators: dict[str, str | None] = {}
        self._failures: dict[str, int] = {}
        self.dropped: list[dict] = []
        self.delivered = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()

    def _discover_shards(self) -> None:
        shards = self.client.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self.client.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]

    def poll_once(self) -> int:
        """Deliver what is waiting on every shard; return how many records were read
        (delivered or to be retried), so that 0 means the stream is drained."""
        self._discover_shards()
        delivered = 0
        seen = 0
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            response = self.client.get_records(ShardIterator=iterator, Limit=self.batch_size)
            records = response.get("Records", [])
            seen += len(records)
            next_iterator = response.get("NextShardIterator")
            if records:
                event = {"Records": [to_lambda_record(r, self.stream_arn, self.region) for r in records]}
                try:
                    result = self.handler(event) or {}
                except Exception:  # every record failed: Lambda retries the whole batch
                    log.exception("stream handler failed the whole batch")
                    result = {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}
                failures = result.get("batchItemFailures") or []
                if failures:
                    next_iterator = self._retry_from(shard_id, failures[0]["itemIdentifier"], records)
                    first_failed = int(failures[0]["itemIdentifier"])
                    delivered += sum(1 for r in records if int(r["dynamodb"]["SequenceNumber"]) < first_failed)
                else:
                    delivered += len(records)
            self._iterators[shard_id] = next_iterator
        self.delivered += delivered
        return seen

    def _retry_from(self, shard_id: str, sequence: str, records: list[dict]) -> str:
        attempts = self._failures.get(sequence, 0) + 1
        self._failures[sequence] = attempts
        if attempts > self.max_retries:
            failed = next(r for r in records if r["dynamodb"]["SequenceNumber"] == sequence)
            self.dropped.append(failed)
            log.error("stream record %s failed %d times; passed over", sequence, attempts - 1)
            return self.client.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard_id,
                                                  ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                                  SequenceNumber=sequence)["ShardIterator"]
        time.sleep(min(2.0, self.retry_delay * 2**attempts))
        return self.client.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard_id,
                                              ShardIteratorType="AT_SEQUENCE_NUMBER",
                                              SequenceNumber=sequence)["ShardIterator"]

    def drain(self, timeout: float = 10.0) -> int:
        """Poll until nothing is waiting (for tests and benchmarks)."""
        total = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = self.poll_once()
            total += n
            if n == 0:
                return total
        raise TimeoutError(f"stream not drained within {timeout}s")

    def start(self) -> None:
        self._thread = start_polling("stream-bridge", self.poll_once, self._stop, self.poll_interval, log)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
