"""The events table: append with batched writes, read a contact's timeline back.

Plain boto3 here rather than PynamoDB: the request path needs BatchWriteItem with
ReturnConsumedCapacity and nothing else. The event is one zlib-compressed JSON attribute:
an analytics.js event of up to 1 KB as sent (plus the server's stamps) stays under 1 KB
stored, one write request unit.
"""
from __future__ import annotations

import heapq
import json
import random
import time
import zlib
from datetime import datetime, timedelta
from typing import Callable

import boto3
from boto3.dynamodb.conditions import Key

from chalicelib.domain.events import iso  # the sort key's time part
from chalicelib.services.ports import AppendResult, EventStore, EventStoreUnavailable, ResentEvents, StoredEvent
from chalicelib.services.privacy_ports import EventErasure

BATCH_WRITE_MAX = 25
BATCH_GET_MAX = 100
MAX_RETRIES = 8




def encode_body(body: dict) -> bytes:
    return zlib.compress(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), 6)


def decode_body(stored) -> dict:
    """The stored `b` attribute: compressed bytes (boto3 may wrap them in Binary) or, for
    items written before compression, JSON text."""
    if isinstance(stored, str):
        return json.loads(stored)
    raw = getattr(stored, "value", stored)
    return json.loads(zlib.decompress(bytes(raw)).decode("utf-8"))


def item_size(item: dict) -> int:
    """DynamoDB's item size: attribute names plus values (strings and numbers as sent)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode("utf-8"))
        if isinstance(value, (bytes, bytearray)):
            size += len(value)
        elif isinstance(value, str):
            size += len(value.encode("utf-8"))
        elif isinstance(value, (int, float)):
            size += len(str(value)) // 2 + 1
        else:
            size += len(json.dumps(value).encode("utf-8"))
    return size


def write_units(item: dict) -> int:
    return max(1, -(-item_size(item) // 1024))


# How far apart two sends of the same messageId may be stamped and still be found as one:
# SDK retries and double calls are seconds to hours apart.
RESEND_WINDOW = timedelta(days=1)


class DynamoDBEventStore(EventStore, ResentEvents, EventErasure):
    def __init__(self, table_name: str, client=None, sleep: Callable[[float], None] = time.sleep):
        self.table_name = table_name
        self._client = client
        self._table = None
        self.sleep = sleep

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client

    @property
    def table(self):
        if self._table is None:
            self._table = boto3.resource("dynamodb", endpoint_url=self.client.meta.endpoint_url,
                                         region_name=self.client.meta.region_name).Table(self.table_name)
        return self._table

    @staticmethod
    def to_item(event: StoredEvent) -> dict:
        return {
            "pk": event.partition,
            "sk": event.sort,
            "b": encode_body(event.body),
            "ttl": event.ttl,
        }

    def append(self, events: list[StoredEvent]) -> AppendResult:
        units = 0.0
        for start in range(0, len(events), BATCH_WRITE_MAX):
            chunk = events[start:start + BATCH_WRITE_MAX]
            requests = [
                {"PutRequest": {"Item": {
                    "pk": {"S": item["pk"]}, "sk": {"S": item["sk"]},
                    "b": {"B": item["b"]}, "ttl": {"N": str(item["ttl"])},
                }}}
                for item in map(self.to_item, chunk)
            ]
            units += self._write(requests)
        return AppendResult(written=len(events), capacity_units=units)

    def _write(self, requests: list[dict]) -> float:
        units = 0.0
        pending = {self.table_name: requests}
        for attempt in range(MAX_RETRIES):
            response = self.client.batch_write_item(RequestItems=pending, ReturnConsumedCapacity="TOTAL")
            units += sum(c.get("CapacityUnits", 0.0) for c in response.get("ConsumedCapacity", []))
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return units
            self.sleep(min(1.0, 0.025 * 2**attempt) * (0.5 + random.random() / 2))
        raise EventStoreUnavailable(f"{sum(len(v) for v in pending.values())} events not written after retries")

    def stored(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """BatchGetItem of the keys alone, eventually consistent (0.5 RRU per item of up to
        4 KB). Keys still unprocessed after the retries count as not found."""
        found: set[tuple[str, str]] = set()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), BATCH_GET_MAX):
            pending = {self.table_name: {
                "Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in unique[start:start + BATCH_GET_MAX]],
                "ProjectionExpression": "pk, sk"}}
            for attempt in range(MAX_RETRIES):
                response = self.client.batch_get_item(RequestItems=pending)
                found |= {(item["pk"]["S"], item["sk"]["S"])
                          for item in response.get("Responses", {}).get(self.table_name, [])}
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                self.sleep(min(1.0, 0.025 * 2**attempt) * (0.5 + random.random() / 2))
        return found

    def discard_resent(self, partition: str, sort: str, message_id: str) -> int:
        """Runs off the request path (the stream handler), only for an event whose messageId
        the contact had already applied: one Query over the partition's rows stamped within
        a day of this one (about 0.5 RRU per 4 KB read), one DeleteItem per resent row."""
        stamp, _, sorted_id = sort.partition("#")
        if sorted_id != message_id:
            return 0
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return 0
        low = iso(when - RESEND_WINDOW)
        high = iso(when + RESEND_WINDOW) + "~"  # past every `#messageId` of that instant
        rows = []
        kwargs = {"KeyConditionExpression": Key("pk").eq(partition) & Key("sk").between(low, high)}
        while True:
            response = self.table.query(**kwargs)
            rows += [item for item in response.get("Items", []) if item["sk"].partition("#")[2] == message_id]
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        if len(rows) < 2:
            return 0
        # Segment keeps the first one it received; so does the contact, which applied it.
        rows.sort(key=lambda item: (decode_body(item["b"]).get("receivedAt") or "", item["sk"]))
        for item in rows[1:]:
            self.table.delete_item(Key={"pk": partition, "sk": item["sk"]})
        return len(rows) - 1

    def timeline(self, partitions: list[str], limit: int, before: str | None) -> tuple[list[dict], str | None]:
        streams = []
        for pk in partitions:
            condition = Key("pk").eq(pk)
            if before:
                condition = condition & Key("sk").lt(before)
            response = self.table.query(
                KeyConditionExpression=condition, ScanIndexForward=False, Limit=limit + 1
            )
            streams.append([(item["sk"], item["b"]) for item in response.get("Items", [])])
        merged = heapq.merge(*streams, key=lambda pair: pair[0], reverse=True)
        events: list[dict] = []
        last_sk = None
        seen: set[str] = set()
        for sk, body in merged:
            if sk in seen:
                continue
            seen.add(sk)
            if len(events) == limit:
                return events, last_sk
            events.append(decode_body(body))
            last_sk = sk
        return events, None

    # -- erasure (services/privacy.py) ---------------------------------------------------

    def erase_partition(self, partition: str, limit: int = 500) -> tuple[int, bool]:
        """One Query of keys only, then batched deletes: a slice of an erasure job."""
        response = self.table.query(KeyConditionExpression=Key("pk").eq(partition), ProjectionExpression="pk, sk",
                                    Limit=limit, ConsistentRead=True)
        keys = [{"pk": item["pk"], "sk": item["sk"]} for item in response.get("Items", [])]
        for start in range(0, len(keys), BATCH_WRITE_MAX):
            requests = [{"DeleteRequest": {"Key": {"pk": {"S": k["pk"]}, "sk": {"S": k["sk"]}}}}
                        for k in keys[start:start + BATCH_WRITE_MAX]]
            self._write(requests)
        return len(keys), "LastEvaluatedKey" not in response

