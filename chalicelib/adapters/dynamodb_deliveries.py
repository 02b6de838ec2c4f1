"""The delivery log in DynamoDB: one item per delivery to a destination.

pk `destination_id`, sk `delivery_id`. Two indexes serve the admin listing newest first:
`by_updated` (sort `updated_at`) and `by_status` (sort `status_updated` =
`<status>#<updated_at>`, for `?status=`). The payload is stored as JSON text (numbers stay
exactly what the receiver gets). Every write is conditional: a delivered or parked delivery
is never attempted again by a redelivered queue message, a lease (`lease_until`) keeps two
consumers from attempting the same delivery at once, and an attempt starts only when it is
due (`next_attempt_at`). `carrier` is the queue message that carries the delivery's retries.
"""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timedelta
from decimal import Decimal

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.domain.deliveries import DELIVERED, PARKED, PENDING, RETRYING, DeliveryMessage
from chalicelib.domain.events import iso
from chalicelib.services.effect_ports import DeliveryConflict, DeliveryStore

ATTEMPTS_KEPT = 50  # the attempt log keeps the latest ones; `attempts` counts them all
DELIVERED_RETENTION = timedelta(days=30)  # delivered items expire (TTL); others stay until handled


def _plain(value):
    """DynamoDB's Decimals back to ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _view(item: dict | None) -> dict | None:
    if item is None:
        return None
    view = _plain({k: v for k, v in item.items() if k not in ("status_updated", "expires", "payload")})
    view["payload"] = json.loads(item["payload"]) if "payload" in item else None
    return view


def _encode_cursor(key: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(_plain(key), sort_keys=True).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, destination_id: str) -> dict:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("cursor is not one this API returned") from None
    if not isinstance(key, dict) or key.get("destination_id") != destination_id or \
            not all(isinstance(v, str) for v in key.values()):
        raise ValueError("cursor is not one this API returned")
    return key


class DynamoDBDeliveryStore(LazyTable, DeliveryStore):
    def claim(self, message: DeliveryMessage, carrier: str, now: datetime, lease_seconds: float) -> dict | None:
        stamp = iso(now)
        try:
            item = self.table.update_item(
                Key={"destination_id": message.destination_id, "delivery_id": message.delivery_id},
                UpdateExpression=(
                    "SET #status = if_not_exists(#status, :pending), attempts = if_not_exists(attempts, :zero), "
                    "payload = if_not_exists(payload, :payload), event_type = if_not_exists(event_type, :type), "
                    "created_at = if_not_exists(created_at, :now), "
                    "first_attempt_at = if_not_exists(first_attempt_at, :now), "
                    "updated_at = if_not_exists(updated_at, :now), "
                    "status_updated = if_not_exists(status_updated, :status_updated), "
                    "attempt_log = if_not_exists(attempt_log, :empty), lease_until = :lease, carrier = :carrier"),
                ConditionExpression=(
                    "attribute_not_exists(delivery_id) OR "
                    "(#status IN (:pending, :retrying) AND (attribute_not_exists(lease_until) OR lease_until < :now) "
                    "AND (attribute_not_exists(next_attempt_at) OR next_attempt_at <= :now))"),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":pending": PENDING, ":retrying": RETRYING, ":zero": 0, ":now": stamp, ":empty": [],
                    ":payload": json.dumps(message.payload, ensure_ascii=False, separators=(",", ":"), default=str),
                    ":type": str(message.payload.get("type", "")), ":status_updated": f"{PENDING}#{stamp}",
                    ":lease": iso(now + timedelta(seconds=lease_seconds)), ":carrier": carrier,
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return _view(item)

    def get(self, destination_id: str, delivery_id: str) -> dict | None:
        item = self.table.get_item(Key={"destination_id": destination_id, "delivery_id": delivery_id},
                                   ConsistentRead=True).get("Item")
        return _view(item)

    def record_attempt(self, destination_id: str, delivery_id: str, status: str, attempt: dict, now: datetime,
                       next_attempt_at: str | None = None, error: str | None = None) -> dict:
        stamp = iso(now)
        names = {"#status": "status"}
        values = {":status": status, ":now": stamp, ":one": 1, ":attempt": [attempt],
                  ":status_updated": f"{status}#{stamp}"}
        sets = ["#status = :status", "updated_at = :now", "status_updated = :status_updated",
                "attempts = attempts + :one", "attempt_log = list_append(attempt_log, :attempt)"]
        removes = ["lease_until"]
        if next_attempt_at:
            sets.append("next_attempt_at = :next")
            values[":next"] = next_attempt_at
        else:
            removes.append("next_attempt_at")
        if error:
            sets.append("last_error = :error")
            values[":error"] = error
        if status == DELIVERED:
            sets += ["delivered_at = :now", "expires = :expires"]
            values[":expires"] = int((now + DELIVERED_RETENTION).timestamp())
        if status == PARKED:
            sets += ["parked_at = :now", "parked_reason = :reason"]
            values[":reason"] = error or "parked"
        item = self.table.update_item(
            Key={"destination_id": destination_id, "delivery_id": delivery_id},
            UpdateExpression="SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes),
            ConditionExpression="attribute_exists(delivery_id)",
            ExpressionAttributeNames=names, ExpressionAttributeValues=values, ReturnValues="ALL_NEW",
        )["Attributes"]
        log = item.get("attempt_log") or []
        if len(log) > ATTEMPTS_KEPT:
            # Trimmed in a second write so the first one never depends on the log's length.
            self.table.update_item(
                Key={"destination_id": destination_id, "delivery_id": delivery_id},
                UpdateExpression="REMOVE " + ", ".join(f"attempt_log[{i}]" for i in range(len(log) - ATTEMPTS_KEPT)))
            item["attempt_log"] = log[-ATTEMPTS_KEPT:]
        return _view(item)

    def reopen(self, destination_id: str, delivery_id: str, now: datetime) -> dict:
        stamp = iso(now)
        try:
            item = self.table.update_item(
                Key={"destination_id": destination_id, "delivery_id": delivery_id},
                UpdateExpression=("SET #status = :pending, first_attempt_at = :now, updated_at = :now, "
                                  "status_updated = :status_updated, replayed_at = :now, "
                                  "replays = if_not_exists(replays, :zero) + :one "
                                  "REMOVE next_attempt_at, lease_until, parked_reason, carrier"),
                ConditionExpression="#status = :parked",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":pending": PENDING, ":parked": PARKED, ":now": stamp, ":zero": 0,
                                           ":one": 1, ":status_updated": f"{PENDING}#{stamp}"},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            current = self.get(destination_id, delivery_id)
            if current is None:
                raise KeyError(delivery_id) from None
            raise DeliveryConflict(f"delivery {delivery_id} is {current['status']}: only a parked delivery "
                                   "can be replayed") from None
        return _view(item)

    def list(self, destination_id: str, status: str | None, limit: int,
             cursor: str | None) -> tuple[list[dict], str | None]:
        if status:
            index = "by_status"
            condition = Key("destination_id").eq(destination_id) & Key("status_updated").begins_with(status + "#")
        else:
            index = "by_updated"
            condition = Key("destination_id").eq(destination_id)
        query = {"IndexName": index, "KeyConditionExpression": condition, "ScanIndexForward": False,
                 "Limit": limit}
        if cursor:
            query["ExclusiveStartKey"] = _decode_cursor(cursor, destination_id)
        page = self.table.query(**query)
        rows = [_view(item) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return rows, (_encode_cursor(last) if last else None)
