"""The message log in DynamoDB: one item per message (pk `id`, the deterministic message id).

- `create` is a conditional put (`attribute_not_exists(id)`): a second request for the same
  cause writes nothing.
- `claim` is one conditional update: a `queued` or `deferred` message, or a `sending` one
  whose lease (`lease_until`) has run out, becomes `sending` with a new lease. Two workers
  racing for the same message: exactly one condition holds.
- `release` (the lease holder gives the message back as `deferred`, to wake at a later
  moment) is conditional on `sending`.
- `advance` appends to the timeline and moves `status` forward only (messages.rank): a read,
  then a write conditional on the `version` read (optimistic locking, retried on a race).

Two indexes: `by_contact` (contact_id, requested_at) for a contact's messages newest first,
`by_provider` (provider_id, sparse, keys only) for SES/SNS feedback. `data` (the triggering
event's properties: any JSON) is stored as JSON text and each timeline entry as JSON text, so
numbers come back exactly and the timeline can be appended with `list_append`.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import replace
from datetime import datetime

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.domain.events import iso
from chalicelib.domain.messaging.messages import DEFERRED, SENDING, UNSENT, Message, StatusChange
from chalicelib.services.broadcast_ports import CountOnce
from chalicelib.services.message_ports import MessageLog

BY_CONTACT, BY_PROVIDER = "by_contact", "by_provider"
MAX_RACES = 8  # optimistic-lock retries of one advance before giving up loudly
_SETTABLE = ("provider_id", "links", "subject", "address", "variant", "campaign", "data")


class MessageConflict(Exception):
    """Too many concurrent writers on one message (never expected: one worker holds a lease)."""


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def to_item(message: Message, version: int) -> dict:
    doc = message.to_document()
    doc["data"] = json.dumps(message.data, sort_keys=True, separators=(",", ":"))
    doc["timeline"] = [json.dumps(c.to_document(), sort_keys=True) for c in message.timeline]
    doc["version"] = version
    return doc


def from_item(item: dict) -> Message:
    doc = {k: v for k, v in item.items() if k not in ("version", "lease_until")}
    doc["data"] = json.loads(item.get("data") or "{}")
    doc["timeline"] = [json.loads(c) for c in item.get("timeline") or ()]
    doc["links"] = list(item.get("links") or ())
    return Message.from_document(doc)


def _encode_cursor(key: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, contact_id: str) -> dict:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("cursor is not one this API returned") from None
    if not isinstance(key, dict) or key.get("contact_id") != contact_id or \
            not all(isinstance(v, str) for v in key.values()):
        raise ValueError("cursor is not one this API returned")
    return key


class DynamoDBMessageLog(LazyTable, MessageLog, CountOnce):
    def create(self, message: Message) -> bool:
        try:
            self.table.put_item(Item=to_item(message, 1), ConditionExpression="attribute_not_exists(id)")
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def _item(self, message_id: str) -> dict | None:
        return self.table.get_item(Key={"id": message_id}, ConsistentRead=True).get("Item")

    def get(self, message_id: str) -> Message | None:
        item = self._item(message_id)
        return from_item(item) if item else None

    def claim(self, message_id: str, change: StatusChange, lease_until: datetime) -> Message | None:
        entry = json.dumps(change.to_document(), sort_keys=True)
        try:
            answer = self.table.update_item(
                Key={"id": message_id},
                UpdateExpression=("SET #status = :sending, lease_until = :lease, "
                                  "timeline = list_append(if_not_exists(timeline, :empty), :entry), "
                                  "version = version + :one"),
                ConditionExpression=("attribute_exists(id) AND (#status IN (:queued, :deferred) OR "
                                     "(#status = :sending AND lease_until < :now))"),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":sending": SENDING, ":lease": iso(lease_until), ":entry": [entry],
                                           ":empty": [], ":one": 1, ":queued": UNSENT[0], ":deferred": UNSENT[1],
                                           ":now": iso(change.at)},
                ReturnValues="ALL_NEW")
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return from_item(answer["Attributes"])

    def release(self, message_id: str, change: StatusChange) -> Message | None:
        """The worker holding the lease gives the message back, `deferred` (not forward-only:
        a claimed message that must wait goes back to waiting). None when it is not `sending`."""
        entry = json.dumps(change.to_document(), sort_keys=True)
        try:
            answer = self.table.update_item(
                Key={"id": message_id},
                UpdateExpression=("SET #status = :deferred, timeline = list_append(timeline, :entry), "
                                  "version = version + :one REMOVE lease_until"),
                ConditionExpression="#status = :sending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":deferred": DEFERRED, ":sending": SENDING, ":entry": [entry],
                                           ":one": 1},
                ReturnValues="ALL_NEW")
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return from_item(answer["Attributes"])

    def advance(self, message_id: str, change: StatusChange, **fields) -> Message | None:
        unknown = set(fields) - set(_SETTABLE)
        if unknown:
            raise TypeError(f"advance cannot set {', '.join(sorted(unknown))}")
        for _ in range(MAX_RACES):
            item = self._item(message_id)
            if item is None:
                return None
            current = from_item(item)
            values = {k: (tuple(v) if k == "links" else v) for k, v in fields.items()}
            updated = replace(current, **values).advanced(change)
            new_item = to_item(updated, int(item["version"]) + 1)
            if updated.status == SENDING and "lease_until" in item:
                new_item["lease_until"] = item["lease_until"]  # a message that left `sending` keeps no lease
            if "counted" in item:
                new_item["counted"] = item["counted"]  # the campaign counters' marks (first_time)
            try:
                self.table.put_item(Item=new_item, ConditionExpression="version = :v",
                                    ExpressionAttributeValues={":v": item["version"]})
            except ClientError as exc:
                if _conditional_failed(exc):
                    continue
                raise
            return updated
        raise MessageConflict(f"message {message_id} kept changing under {MAX_RACES} attempts to update it")

    def first_time(self, message_id: str, key: str) -> bool:
        """Count-once mark for the campaign counters (services/campaign_stats.py): adds `key`
        to the message's `counted` set unless it is there; True for the one writer that added
        it. The version moves too, so an `advance` that read the item before cannot put back
        a `counted` without this mark."""
        try:
            self.table.update_item(
                Key={"id": message_id},
                UpdateExpression="ADD counted :key SET version = version + :one",
                ConditionExpression="attribute_exists(id) AND NOT contains(counted, :name)",
                ExpressionAttributeValues={":key": {key}, ":name": key, ":one": 1})
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def by_provider_id(self, provider_id: str) -> Message | None:
        if not provider_id:
            return None
        rows = self.table.query(IndexName=BY_PROVIDER, KeyConditionExpression=Key("provider_id").eq(provider_id),
                                Limit=1).get("Items", [])
        return self.get(rows[0]["id"]) if rows else None

    def for_contact(self, contact_id: str, since: datetime | None = None, limit: int = 100,
                    cursor: str | None = None) -> tuple[list[Message], str | None]:
        condition = Key("contact_id").eq(contact_id)
        if since is not None:
            condition = condition & Key("requested_at").gte(iso(since))
        params = {"IndexName": BY_CONTACT, "KeyConditionExpression": condition, "ScanIndexForward": False,
                  "Limit": max(1, min(int(limit), 1000))}
        if cursor:
            params["ExclusiveStartKey"] = _decode_cursor(cursor, contact_id)
        answer = self.table.query(**params)
        last = answer.get("LastEvaluatedKey")
        return [from_item(i) for i in answer.get("Items", [])], (_encode_cursor(last) if last else None)

    def erase_contact(self, contact_id: str) -> int:
        erased = 0
        params = {"IndexName": BY_CONTACT, "KeyConditionExpression": Key("contact_id").eq(contact_id),
                  "ProjectionExpression": "id"}
        while True:
            answer = self.table.query(**params)
            with self.table.batch_writer() as batch:
                for row in answer.get("Items", []):
                    batch.delete_item(Key={"id": row["id"]})
                    erased += 1
            if "LastEvaluatedKey" not in answer:
                return erased
            params["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
