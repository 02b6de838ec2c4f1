"""The message log in DynamoDB: one item per message (pk `id`, the deterministic message id).

- `create` is a conditional put (`attribute_not_exists(id)`): a second request for the same
  cause writes nothing.
- `claim` is one conditional update: a `queued` or `deferred` message, or a `sending` one
  whose lease (`lease_until`) has run out, becomes `sending` with a new lease. Two workers
  racing for the same message: exactly one condition holds.
- `release` (the lease holder gives the message back as `deferred`, to wake at a later
  moment) is conditional on `sending`.
- `advance` appends to the timeline and moves `status` forward only (messages.rank): one
  UpdateItem without a read, conditional on the current status ranking at most the new one
  (and the timeline not full). When that condition fails (a late, out-of-order feedback, a
  full timeline) it falls back to a read and a write conditional on the `version` read
  (optimistic locking, retried on a race), which keeps the furthest status.
- The campaign counters' count-once marks (`counted`, a string set) ride on the status writes
  (`create`, `advance`, `release` with `marks`): the write that adds a mark learns whether it
  was new from the item as it was (ReturnValues ALL_OLD), so counting once costs no write of
  its own (services/campaign_stats.py).

Two indexes: `by_contact` (contact_id, requested_at) for a contact's messages newest first,
projecting only `channel`, `lane` and `sent_at` (what the gate's frequency caps read), so a
write that changes none of them (claim, release, feedback) does not write the index again;
listings read the full items by key (BatchGetItem). `sent_at` is the moment the message was
sent, kept while it counts as a send (removed if it ends `skipped` or `failed`).
`by_provider` (provider_id, sparse, keys only) for SES/SNS feedback. `data` (the triggering
event's properties: any JSON) is stored as JSON text and each timeline entry as JSON text, so
numbers come back exactly and the timeline can be appended with `list_append`.
"""
from __future__ import annotations

import base64
import binascii
import json
import time
import zlib
from dataclasses import replace
from datetime import datetime

from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.domain.events import iso, parse_timestamp
from chalicelib.domain.messaging.messages import (
    DEFERRED,
    FAILED,
    MAX_TIMELINE,
    SENDING,
    SENT,
    SKIPPED,
    STATUSES,
    UNSENT,
    Message,
    StatusChange,
    rank,
)
from chalicelib.domain.messaging.policy import PastSend
from chalicelib.services.broadcast_ports import CountOnce
from chalicelib.services.campaign_stats import MarksOnWrite
from chalicelib.services.message_ports import MessageLog

BY_CONTACT, BY_PROVIDER = "by_contact", "by_provider"
MAX_RACES = 8  # optimistic-lock retries of one advance before giving up loudly
_SETTABLE = ("provider_id", "links", "subject", "address", "variant", "campaign", "data")
BATCH_GET = 100  # BatchGetItem's limit of keys per request
UNPROCESSED_RETRIES = 8
_sleep = time.sleep  # the back-off between BatchGetItem rounds (tests replace it)
NOT_SENDS = (SKIPPED, FAILED)  # a message ending in these is not a send for the frequency caps


class MessagesUnreadable(Exception):
    """A listing's messages could not all be read (throttled beyond UNPROCESSED_RETRIES)."""


class MessageConflict(Exception):
    """Too many concurrent writers on one message (never expected: one worker holds a lease)."""


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def sent_at(message: Message) -> str | None:
    """When the message was sent, while it counts as a send (the `by_contact` projection)."""
    if message.status in NOT_SENDS:
        return None
    return next((iso(c.at) for c in message.timeline if c.status == SENT), None)


def _stored_links(links) -> tuple[str, object]:
    """The tracked links' destinations as stored: (attribute, value). Mostly URLs sharing a
    shop's prefix and query, they are stored zlib-compressed (`links_z`, binary) when that is
    smaller; every later write of the message (delivery, opens, clicks) costs by its size."""
    plain = list(links)
    packed = zlib.compress(_json(plain).encode("utf-8"), 9)
    if len(packed) < sum(len(u.encode("utf-8")) for u in plain):
        return "links_z", Binary(packed)
    return "links", plain


def _links_of(item: dict) -> list:
    if "links_z" in item:
        return json.loads(zlib.decompress(bytes(item["links_z"])).decode("utf-8"))
    return list(item.get("links") or ())


def to_item(message: Message, version: int) -> dict:
    doc = message.to_document()
    doc.pop("links", None)
    if message.links:
        name, value = _stored_links(message.links)
        doc[name] = value
    doc["data"] = _json(message.data)
    doc["timeline"] = [_entry(c) for c in message.timeline]
    doc["version"] = version
    if sent_at(message):
        doc["sent_at"] = sent_at(message)
    return doc


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _entry(change: StatusChange) -> str:
    return _json(change.to_document())


def _field_value(name: str, value):
    """A settable field as `to_item` stores it (links: see _stored_links)."""
    if name == "data":
        return _json(value or {})
    return value


def from_item(item: dict) -> Message:
    doc = {k: v for k, v in item.items() if k not in ("version", "lease_until", "counted", "sent_at", "links_z")}
    doc["data"] = json.loads(item.get("data") or "{}")
    doc["timeline"] = [json.loads(c) for c in item.get("timeline") or ()]
    doc["links"] = _links_of(item)
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


class DynamoDBMessageLog(LazyTable, MessageLog, CountOnce, MarksOnWrite):
    def create(self, message: Message) -> bool:
        return self.create_marked(message, ())

    def create_marked(self, message: Message, marks) -> bool:
        item = to_item(message, 1)
        if marks:
            item["counted"] = set(marks)
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(id)")
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
        entry = _entry(change)
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
        return self.release_marked(message_id, change, ())[0]

    def release_marked(self, message_id: str, change: StatusChange, marks) -> tuple[Message | None, set[str]]:
        expression = ("SET #status = :deferred, timeline = list_append(timeline, :entry), "
                      "version = version + :one REMOVE lease_until")
        values = {":deferred": DEFERRED, ":sending": SENDING, ":entry": [_entry(change)], ":one": 1}
        if marks:
            expression += " ADD counted :marks"
            values[":marks"] = set(marks)
        try:
            answer = self.table.update_item(
                Key={"id": message_id}, UpdateExpression=expression, ConditionExpression="#status = :sending",
                ExpressionAttributeNames={"#status": "status"}, ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD")
        except ClientError as exc:
            if _conditional_failed(exc):
                return None, set()
            raise
        old = answer["Attributes"]
        before = from_item(old)
        released = replace(before, status=DEFERRED, timeline=before.timeline + (change,))
        return released, set(marks) - set(old.get("counted") or ())

    def advance(self, message_id: str, change: StatusChange, **fields) -> Message | None:
        return self.advance_marked(message_id, change, (), **fields)[0]

    def advance_marked(self, message_id: str, change: StatusChange, marks, **fields
                       ) -> tuple[Message | None, set[str]]:
        unknown = set(fields) - set(_SETTABLE)
        if unknown:
            raise TypeError(f"advance cannot set {', '.join(sorted(unknown))}")
        marks = set(marks)
        done = self._advance_forward(message_id, change, marks, fields)
        if done is not None:
            return done
        return self._advance_read_write(message_id, change, marks, fields)

    def record_once(self, message_id: str, change: StatusChange) -> tuple[str, Message | None]:
        outcome, message, _ = self.record_once_marked(message_id, change, ())
        return outcome, message

    def record_once_marked(self, message_id: str, change: StatusChange, marks
                           ) -> tuple[str, Message | None, set[str]]:
        """One conditional write, no read, when the change moves forward and its entry is not
        on the timeline yet; else a read decides (unknown, duplicate, or an out-of-order
        change appended by the read-then-put path)."""
        marks = set(marks)
        done = self._advance_forward(message_id, change, marks, {}, unless_recorded=True)
        if done is not None:
            return "applied", done[0], done[1]
        item = self._item(message_id)
        if item is None:
            return "unknown", None, set()
        if _entry(change) in (item.get("timeline") or ()):
            return "duplicate", from_item(item), set()
        message, new_marks = self._advance_read_write(message_id, change, marks, {})
        return ("applied" if message is not None else "unknown"), message, new_marks

    def _advance_forward(self, message_id: str, change: StatusChange, marks: set[str], fields: dict,
                         unless_recorded: bool = False) -> tuple[Message, set[str]] | None:
        """The usual case in one write, no read: the status moves forward (or stays at its
        rank) and the timeline has room. None when that does not hold (or the message is
        unknown): the caller reads and decides."""
        earlier = [s for s in STATUSES if rank(s) <= rank(change.status)]
        values = {":status": change.status, ":entry": [_entry(change)], ":one": 1, ":max": MAX_TIMELINE,
                  **{f":r{i}": s for i, s in enumerate(earlier)}}
        names = {"#status": "status"}
        sets = ["#status = :status", "timeline = list_append(timeline, :entry)", "version = version + :one"]
        removes = []
        for i, (name, value) in enumerate(sorted(fields.items())):
            if name == "links":
                name, value = _stored_links(value) if value else ("links", None)
                names[f"#o{i}"] = "links" if name == "links_z" else "links_z"
                removes.append(f"#o{i}")  # the other form, if the links had it before
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
            else:
                sets.append(f"#f{i} = :f{i}")
                values[f":f{i}"] = _field_value(name, value)
        if change.status != SENDING:
            removes.append("lease_until")  # a message that left `sending` keeps no lease
        if change.status == SENT:
            sets.append("sent_at = if_not_exists(sent_at, :sent_at)")
            values[":sent_at"] = iso(change.at)
        elif change.status in NOT_SENDS:
            removes.append("sent_at")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        if marks:
            expression += " ADD counted :marks"
            values[":marks"] = marks
        condition = ("attribute_exists(id) AND size(timeline) < :max AND #status IN ("
                     + ", ".join(f":r{i}" for i in range(len(earlier))) + ")")
        if unless_recorded:  # the same entry (a redelivered notification) is not appended twice
            condition += " AND NOT contains(timeline, :entry_text)"
            values[":entry_text"] = _entry(change)
        try:
            answer = self.table.update_item(Key={"id": message_id}, UpdateExpression=expression,
                                            ConditionExpression=condition, ExpressionAttributeNames=names,
                                            ExpressionAttributeValues=values, ReturnValues="ALL_OLD")
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        old = answer["Attributes"]
        values = {k: (tuple(v) if k == "links" else v) for k, v in fields.items()}
        updated = replace(from_item(old), **values).advanced(change)
        return updated, marks - set(old.get("counted") or ())

    def _advance_read_write(self, message_id: str, change: StatusChange, marks: set[str], fields: dict
                            ) -> tuple[Message | None, set[str]]:
        for _ in range(MAX_RACES):
            item = self._item(message_id)
            if item is None:
                return None, set()
            current = from_item(item)
            values = {k: (tuple(v) if k == "links" else v) for k, v in fields.items()}
            updated = replace(current, **values).advanced(change)
            new_item = to_item(updated, int(item["version"]) + 1)
            if updated.status == SENDING and "lease_until" in item:
                new_item["lease_until"] = item["lease_until"]  # a message that left `sending` keeps no lease
            counted = set(item.get("counted") or ())
            if counted | marks:
                new_item["counted"] = counted | marks  # the campaign counters' marks
            try:
                self.table.put_item(Item=new_item, ConditionExpression="version = :v",
                                    ExpressionAttributeValues={":v": item["version"]})
            except ClientError as exc:
                if _conditional_failed(exc):
                    continue
                raise
            return updated, marks - counted
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
        return self._full_items([row["id"] for row in answer.get("Items", [])]), (_encode_cursor(last) if last else None)

    def _full_items(self, ids: list[str]) -> list[Message]:
        """The messages of these ids, in this order (the index holds only what the caps read);
        one erased meanwhile is left out."""
        found: dict[str, dict] = {}
        for start in range(0, len(ids), BATCH_GET):
            request = {self.table.name: {"Keys": [{"id": i} for i in ids[start:start + BATCH_GET]]}}
            for attempt in range(UNPROCESSED_RETRIES):
                answer = self.table.meta.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table.name, []):
                    found[item["id"]] = item
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                _sleep(min(0.05 * 2 ** attempt, 1.0))  # throttled: back off before asking for the rest
            else:
                raise MessagesUnreadable("DynamoDB kept some messages unprocessed: try again")
        return [from_item(found[i]) for i in ids if i in found]

    def sends_of(self, contact_id: str, since: datetime, limit: int = 200) -> list[tuple[str, PastSend]]:
        """The contact's sends (sent_at set) among its messages requested since `since`, read
        from the index alone: (message id, the send)."""
        answer = self.table.query(IndexName=BY_CONTACT, ScanIndexForward=False, Limit=max(1, min(int(limit), 1000)),
                                  KeyConditionExpression=Key("contact_id").eq(contact_id)
                                  & Key("requested_at").gte(iso(since)))
        return [(row["id"], PastSend(parse_timestamp(row["sent_at"]), row["channel"], row["lane"]))
                for row in answer.get("Items", []) if row.get("sent_at")]

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
