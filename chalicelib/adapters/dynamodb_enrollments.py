"""The enrollments table (infrastructure/template.yaml, EnrollmentsTable).

    pk e#<enrollment id>  sk enrollment   the enrollment: `doc` (JSON), `version`, and while it
                                          runs `running_journey`/`running_node` (the sparse
                                          index `running`)
    pk c#<contact id>     sk <journey id>  the contact's entries in that journey, `version`
    pk s#<journey id>     sk <shard>       counters, atomic ADD
    pk j#<journey id>     sk control       live | paused | stopped

An enrollment's document is one JSON attribute: the runtime reads and writes it whole, with
optimistic locking on `version`. A finished enrollment expires (`expires`) after
FINISHED_KEPT_DAYS, its trace with it.
"""
from __future__ import annotations

import base64
import json
import time

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.domain.journeys.records import EnrollmentRecord, from_doc, to_doc
from chalicelib.services.journey_ports import EnrollmentConflict, EnrollmentStore

ENROLLMENT = "enrollment"
CONTROL = "control"
SHARDS = 8
FINISHED_KEPT_DAYS = 180
ENTRIES_KEPT = 100  # per contact and journey, newest kept


def _key(enrollment_id: str) -> dict:
    return {"pk": f"e#{enrollment_id}", "sk": ENROLLMENT}


def _conflict(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


def _item(record: EnrollmentRecord, version: int) -> dict:
    e = record.enrollment
    item = {**_key(e.id), "doc": json.dumps(to_doc(record), separators=(",", ":"), default=str), "version": version,
            "journey_id": e.journey_id, "contact_id": e.contact_id, "status": e.status}
    if not e.finished:
        item["running_journey"] = e.journey_id
        item["running_node"] = f"{e.node}#{e.id}"
    else:
        item["expires"] = int(time.time()) + FINISHED_KEPT_DAYS * 86400
    return item


class DynamoDBEnrollmentStore(LazyTable, EnrollmentStore):
    def get(self, enrollment_id: str) -> EnrollmentRecord | None:
        item = self.table.get_item(Key=_key(enrollment_id), ConsistentRead=True).get("Item")
        return from_doc(json.loads(item["doc"]), int(item["version"])) if item else None

    def many(self, enrollment_ids: list[str]) -> list[EnrollmentRecord]:
        found: list[EnrollmentRecord] = []
        ids = list(dict.fromkeys(enrollment_ids))
        resource = self.table.meta.client
        for start in range(0, len(ids), 100):
            keys = [_key(i) for i in ids[start:start + 100]]
            request = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = resource.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table_name, []):
                    found.append(from_doc(json.loads(item["doc"]), int(item["version"])))
                request = answer.get("UnprocessedKeys") or None
        order = {i: n for n, i in enumerate(ids)}
        return sorted(found, key=lambda r: order[r.id])

    def entries(self, contact_id: str) -> dict[str, dict]:
        items = self.query_all(KeyConditionExpression=Key("pk").eq(f"c#{contact_id}"), ConsistentRead=True)
        return {item["sk"]: {"entries": json.loads(item["entries"]), "version": int(item["version"])} for item in items}

    def create(self, record: EnrollmentRecord, entries_version: int | None) -> None:
        e = record.enrollment
        current = self.entries_of(e.contact_id, e.journey_id)
        entries = (current["entries"] if current else []) + [
            {"id": e.id, "key": e.key, "entered_at": e.entered_at.isoformat()}]
        entries = entries[-ENTRIES_KEPT:]
        if entries_version is None:
            entries_condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            entries_condition = {"ConditionExpression": "#v = :v",
                                 "ExpressionAttributeNames": {"#v": "version"},
                                 "ExpressionAttributeValues": {":v": entries_version}}
        try:  # the resource's client: Python values, serialized by boto3
            self.table.meta.client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table_name, "Item": _item(record, 1),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table_name,
                         "Item": {"pk": f"c#{e.contact_id}", "sk": e.journey_id,
                                  "entries": json.dumps(entries, separators=(",", ":")),
                                  "version": (entries_version or 0) + 1},
                         **entries_condition}},
            ])
        except ClientError as exc:
            if _conflict(exc):
                raise EnrollmentConflict(f"enrollment {e.id} exists, or the contact's entries moved") from None
            raise

    def move_entries(self, from_contact: str, to_contact: str) -> int:
        moved = 0
        for journey_id, losing in self.entries(from_contact).items():
            keeping = self.entries_of(to_contact, journey_id)
            known = {e["id"] for e in (keeping["entries"] if keeping else [])}
            entries = sorted((keeping["entries"] if keeping else []) + [e for e in losing["entries"] if e["id"] not in known],
                             key=lambda e: e["entered_at"])[-ENTRIES_KEPT:]
            keep_condition = ({"ConditionExpression": "attribute_not_exists(pk)"} if keeping is None else
                              {"ConditionExpression": "#v = :k", "ExpressionAttributeNames": {"#v": "version"},
                               "ExpressionAttributeValues": {":k": keeping["version"]}})
            try:
                self.table.meta.client.transact_write_items(TransactItems=[
                    {"Delete": {"TableName": self.table_name, "Key": {"pk": f"c#{from_contact}", "sk": journey_id},
                                "ConditionExpression": "#v = :l", "ExpressionAttributeNames": {"#v": "version"},
                                "ExpressionAttributeValues": {":l": losing["version"]}}},
                    {"Put": {"TableName": self.table_name,
                             "Item": {"pk": f"c#{to_contact}", "sk": journey_id,
                                      "entries": json.dumps(entries, separators=(",", ":")),
                                      "version": (keeping["version"] if keeping else 0) + 1},
                             **keep_condition}},
                ])
            except ClientError as exc:
                if _conflict(exc):
                    raise EnrollmentConflict(f"the entries of {from_contact} or {to_contact} moved") from None
                raise
            moved += len(losing["entries"])
        return moved

    def entries_of(self, contact_id: str, journey_id: str) -> dict | None:
        item = self.table.get_item(Key={"pk": f"c#{contact_id}", "sk": journey_id}, ConsistentRead=True).get("Item")
        return {"entries": json.loads(item["entries"]), "version": int(item["version"])} if item else None

    def save(self, record: EnrollmentRecord) -> EnrollmentRecord:
        version = record.version + 1
        try:
            self.table.put_item(Item=_item(record, version), ConditionExpression="#v = :v",
                                ExpressionAttributeNames={"#v": "version"},
                                ExpressionAttributeValues={":v": record.version})
        except ClientError as exc:
            if _conflict(exc):
                raise EnrollmentConflict(f"enrollment {record.id} changed since version {record.version}") from None
            raise
        return EnrollmentRecord(**{**record.__dict__, "version": version})

    def running(self, journey_id: str, cursor: str | None = None, limit: int = 200):
        params = {"IndexName": "running", "KeyConditionExpression": Key("running_journey").eq(journey_id),
                  "Limit": limit}
        if cursor:
            params["ExclusiveStartKey"] = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        answer = self.table.query(**params)
        page = []
        for item in answer.get("Items", []):
            node, _, enrollment_id = item["running_node"].partition("#")
            page.append((node, enrollment_id))
        last = answer.get("LastEvaluatedKey")
        return page, (base64.urlsafe_b64encode(json.dumps(last).encode()).decode() if last else None)

    def add_counts(self, journey_id: str, shard: int, counts: dict[str, int]) -> None:
        counts = {k: v for k, v in counts.items() if v}
        if not counts:
            return
        names = {f"#c{i}": name for i, name in enumerate(counts)}
        values = {f":c{i}": value for i, value in enumerate(counts.values())}
        self.table.update_item(Key={"pk": f"s#{journey_id}", "sk": str(shard % SHARDS)},
                               UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counts))),
                               ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def counts(self, journey_id: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for item in self.query_all(KeyConditionExpression=Key("pk").eq(f"s#{journey_id}")):
            for name, value in item.items():
                if name not in ("pk", "sk"):
                    total[name] = total.get(name, 0) + int(value)
        return total

    def control(self, journey_id: str) -> dict | None:
        item = self.table.get_item(Key={"pk": f"j#{journey_id}", "sk": CONTROL}, ConsistentRead=True).get("Item")
        return {"state": item["state"], "at": item["at"], "reason": item["reason"]} if item else None

    def set_control(self, journey_id: str, state: str, at: str, reason: str) -> dict:
        self.table.put_item(Item={"pk": f"j#{journey_id}", "sk": CONTROL, "state": state, "at": at, "reason": reason})
        return {"state": state, "at": at, "reason": reason}

    def erase_contact(self, contact_id: str) -> int:
        rows = self.query_all(KeyConditionExpression=Key("pk").eq(f"c#{contact_id}"), ConsistentRead=True)
        keys = [{"pk": r["pk"], "sk": r["sk"]} for r in rows]
        for row in rows:
            keys.extend(_key(entry["id"]) for entry in json.loads(row["entries"]))
        with self.table.batch_writer() as batch:
            for key in keys:
                batch.delete_item(Key=key)
        return len(keys)

