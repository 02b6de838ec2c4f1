"""Segment memberships in DynamoDB, sharded so a big segment spreads its writes.

Entering and leaving are transactions that also move the segment's size counter, each
conditional on the membership's previous state: replaying them changes nothing.
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


class DynamoDBMembershipStore(MembershipStore):
    def __init__(self, memberships_table: str, definitions_table: str, resource=None):
        self.members_table = LazyTable(memberships_table, resource)
        self.definitions_table = LazyTable(definitions_table, resource)

    def _move(self, segment_id: str, contact_id: str, entering: bool, since: str | None) -> bool:
        key = {"pk": {"S": f"{segment_id}#{shard_of(contact_id)}"}, "sk": {"S": contact_id}}
        change = {"Put": {"TableName": self.members_table.table_name,
                          "Item": {**key, "since": {"S": since or ""}},
                          "ConditionExpression": "attribute_not_exists(pk)"}} if entering else \
            {"Delete": {"TableName": self.members_table.table_name, "Key": key,
                        "ConditionExpression": "attribute_exists(pk)"}}
        size = {"Update": {"TableName": self.definitions_table.table_name,
                           "Key": {"pk": {"S": "stats"}, "sk": {"S": f"segment#{segment_id}"}},
                           "UpdateExpression": "ADD #size :delta",
                           "ExpressionAttributeNames": {"#size": "size"},
                           "ExpressionAttributeValues": {":delta": {"N": "1" if entering else "-1"}}}}
        try:
            self.members_table.client.transact_write_items(TransactItems=[change, size])
            return True
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if exc.response["Error"]["Code"] == "TransactionCanceledException" and \
                    reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False  # already in that state: nothing to do
            raise

    def enter(self, segment_id: str, contact_id: str, since: str) -> bool:
        return self._move(segment_id, contact_id, True, since)

    def leave(self, segment_id: str, contact_id: str) -> bool:
        return self._move(segment_id, contact_id, False, None)

    def size(self, segment_id: str) -> int:
        item = self.definitions_table.table.get_item(Key={"pk": "stats", "sk": f"segment#{segment_id}"}).get("Item")
        return int(item.get("size", 0)) if item else 0

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
