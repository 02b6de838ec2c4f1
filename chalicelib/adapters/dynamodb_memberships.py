"""Segment memberships in DynamoDB, sharded so a big segment spreads its writes, with the
segment's size kept in sharded counters beside them.

A membership row lives under `<segment id>#<shard>`; the size counter of that shard under
`size#<segment id>#<shard>` (same table, its own partition). No partition is shared by all
segments, so the system's write rate is no longer capped by one partition's 1,000 WCU: each
segment spreads over SHARDS partitions for its rows and SHARDS for its counters.

Entering is a conditional put of the row (it must not exist), leaving a conditional delete
(it must exist); only a move that changed the row moves the counter (`ADD ±1` on the shard
counter). Replaying a move therefore changes nothing and costs one failed conditional write.
The two writes are not one transaction (a transaction costs twice the units): a process that
dies between them leaves that shard's count one short of the rows, which `recount` restores.
"""
from __future__ import annotations

import hashlib
import json

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.domain.nesting import load_json
from chalicelib.services.ports import MembershipStore

SHARDS = 16


def shard_of(contact_id: str) -> int:
    return hashlib.blake2b(contact_id.encode(), digest_size=2).digest()[0] % SHARDS


def size_key(segment_id: str, shard: int) -> dict:
    return {"pk": f"size#{segment_id}#{shard}", "sk": "size"}


class DynamoDBMembershipStore(MembershipStore):
    def __init__(self, memberships_table: str, definitions_table: str | None = None, resource=None):
        self.members_table = LazyTable(memberships_table, resource)
        # Kept for callers that still pass it; sizes no longer live in the definitions table.
        self.definitions_table = LazyTable(definitions_table, resource) if definitions_table else None

    def _move(self, segment_id: str, contact_id: str, entering: bool, since: str | None) -> bool:
        shard = shard_of(contact_id)
        key = {"pk": f"{segment_id}#{shard}", "sk": contact_id}
        table = self.members_table.table
        try:
            if entering:
                table.put_item(Item={**key, "since": since or ""}, ConditionExpression="attribute_not_exists(pk)")
            else:
                table.delete_item(Key=key, ConditionExpression="attribute_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False  # already in that state: nothing to do, the count already has it
            raise
        table.update_item(Key=size_key(segment_id, shard), UpdateExpression="ADD #size :delta",
                          ExpressionAttributeNames={"#size": "size"},
                          ExpressionAttributeValues={":delta": 1 if entering else -1})
        return True

    def enter(self, segment_id: str, contact_id: str, since: str) -> bool:
        return self._move(segment_id, contact_id, True, since)

    def leave(self, segment_id: str, contact_id: str) -> bool:
        return self._move(segment_id, contact_id, False, None)

    def size(self, segment_id: str) -> int:
        """The sum of the shard counters: one BatchGetItem of SHARDS small items."""
        keys = [size_key(segment_id, shard) for shard in range(SHARDS)]
        client = self.members_table.table.meta.client  # the resource's client: Python values in and out
        name = self.members_table.table_name
        total = 0
        request = {name: {"Keys": keys}}
        while request:
            page = client.batch_get_item(RequestItems=request)
            total += sum(int(item.get("size", 0)) for item in page.get("Responses", {}).get(name, []))
            request = page.get("UnprocessedKeys") or None
        return total

    def recount(self, segment_id: str) -> int:
        """Set each shard counter to the rows of its shard (after a crash between a row's write
        and its count). Counting reads every row: a job's work, not a request's."""
        total = 0
        for shard in range(SHARDS):
            count, start = 0, None
            while True:
                args = {"KeyConditionExpression": Key("pk").eq(f"{segment_id}#{shard}"), "Select": "COUNT"}
                if start:
                    args["ExclusiveStartKey"] = start
                page = self.members_table.table.query(**args)
                count += page["Count"]
                start = page.get("LastEvaluatedKey")
                if not start:
                    break
            self.members_table.table.put_item(Item={**size_key(segment_id, shard), "size": count})
            total += count
        return total

    def members(self, segment_id: str, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        shard, after = 0, None
        if cursor:
            state = load_json(cursor, limit=2)  # TooDeeplyNested is a ValueError: a bad cursor
            shard, after = int(state["shard"]), state.get("after")
        found: list[dict] = []
        while shard < SHARDS and len(found) < limit:
            args = {"KeyConditionExpression": Key("pk").eq(f"{segment_id}#{shard}"), "Limit": limit - len(found)}
            if after:
                args["ExclusiveStartKey"] = {"pk": f"{segment_id}#{shard}", "sk": after}
            page = self.members_table.table.query(**args)
            found.extend({"contact_id": item["sk"], "since": item.get("since")} for item in page.get("Items", []))
            if page.get("LastEvaluatedKey"):
                after = page["LastEvaluatedKey"]["sk"]
            else:
                shard, after = shard + 1, None
        if shard >= SHARDS:
            return found, None
        return found, json.dumps({"shard": shard, "after": after})
