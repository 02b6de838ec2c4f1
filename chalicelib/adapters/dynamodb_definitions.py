"""Definitions in DynamoDB: every version kept, the current one readable in one query."""
from __future__ import annotations

import json
from decimal import Decimal

from boto3.dynamodb.conditions import Key

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.services.ports import ConcurrentUpdate, DefinitionStore

CURRENT = "current"


def _plain(value):
    """DynamoDB numbers come back as Decimal: give callers ints and floats."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class DynamoDBDefinitionStore(LazyTable, DefinitionStore):
    """Items: ("kind#id", "v0000000001") one per version, a deletion included (`deleted`);
    ("current", "kind#id") the current version's copy, or a tombstone after a deletion (so
    the next version number continues, and a concurrent writer is detected)."""

    def _pointer(self, key: str) -> dict | None:
        return self.table.get_item(Key={"pk": CURRENT, "sk": key}, ConsistentRead=True).get("Item")

    def _write(self, key: str, version: int, previous: int, version_item: dict, pointer: dict) -> None:
        condition = "attribute_not_exists(pk)" if previous == 0 else "version = :previous"
        values = {":previous": {"N": str(previous)}} if previous else {}
        try:
            self.client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table_name,
                         "Item": {"pk": {"S": key}, "sk": {"S": f"v{version:010d}"}, **version_item},
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table_name,
                         "Item": {"pk": {"S": CURRENT}, "sk": {"S": key}, "version": {"N": str(version)}, **pointer},
                         "ConditionExpression": condition,
                         **({"ExpressionAttributeValues": values} if values else {})}},
            ])
        except self.client.exceptions.TransactionCanceledException:
            raise ConcurrentUpdate(f"{key} changed meanwhile (now past version {previous}); read it again") from None

    def put(self, kind: str, definition_id: str, document: dict, now: str, expected: int | None = None) -> int:
        key = f"{kind}#{definition_id}"
        current = self._pointer(key)
        previous = int(current["version"]) if current else 0
        if expected is not None and expected != previous:
            raise ConcurrentUpdate(f"{key} is at version {previous}, not {expected}")
        body = json.dumps(document, ensure_ascii=False, sort_keys=True)
        self._write(key, previous + 1, previous, {"doc": {"S": body}, "created_at": {"S": now}},
                    {"doc": {"S": body}, "updated_at": {"S": now}})
        return previous + 1

    def delete(self, kind: str, definition_id: str, expected: int, now: str) -> int:
        key = f"{kind}#{definition_id}"
        self._write(key, expected + 1, expected, {"deleted": {"BOOL": True}, "created_at": {"S": now}},
                    {"deleted": {"BOOL": True}, "updated_at": {"S": now}})
        return expected + 1

    def _row(self, item: dict) -> dict:
        kind, _, definition_id = item["sk"].partition("#")
        return {"kind": kind, "id": definition_id, "version": int(item["version"]),
                "document": json.loads(item["doc"]), "updated_at": item.get("updated_at")}

    def current(self, kind: str | None = None) -> list[dict]:
        condition = Key("pk").eq(CURRENT)
        if kind:
            condition = condition & Key("sk").begins_with(f"{kind}#")
        rows, start = [], None
        while True:
            page = self.table.query(KeyConditionExpression=condition, ConsistentRead=True,
                                    **({"ExclusiveStartKey": start} if start else {}))
            rows.extend(self._row(item) for item in page.get("Items", []) if not item.get("deleted"))
            start = page.get("LastEvaluatedKey")
            if not start:
                return rows

    def get(self, kind: str, definition_id: str) -> dict | None:
        item = self._pointer(f"{kind}#{definition_id}")
        return self._row(item) if item and not item.get("deleted") else None

    def latest_version(self, kind: str, definition_id: str) -> int:
        item = self._pointer(f"{kind}#{definition_id}")
        return int(item["version"]) if item else 0

    def versions(self, kind: str, definition_id: str) -> list[dict]:
        found, start = [], None
        while True:
            page = self.table.query(KeyConditionExpression=Key("pk").eq(f"{kind}#{definition_id}"),
                                    ProjectionExpression="sk, created_at, deleted", ConsistentRead=True,
                                    **({"ExclusiveStartKey": start} if start else {}))
            found.extend({"version": int(item["sk"][1:]), "created_at": item.get("created_at"),
                          "deleted": bool(item.get("deleted"))} for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return found

    def get_version(self, kind: str, definition_id: str, version: int) -> dict | None:
        item = self.table.get_item(Key={"pk": f"{kind}#{definition_id}", "sk": f"v{version:010d}"},
                                   ConsistentRead=True).get("Item")
        if not item or item.get("deleted"):
            return None
        return {"kind": kind, "id": definition_id, "version": version, "document": json.loads(item["doc"]),
                "updated_at": item.get("created_at")}

    def stats(self, kind: str, definition_id: str) -> dict:
        item = self.table.get_item(Key={"pk": "stats", "sk": f"{kind}#{definition_id}"}).get("Item") or {}
        return _plain({k: v for k, v in item.items() if k not in ("pk", "sk")})

    def all_stats(self, kind: str) -> dict[str, dict]:
        found, start = {}, None
        while True:
            page = self.table.query(KeyConditionExpression=Key("pk").eq("stats") & Key("sk").begins_with(f"{kind}#"),
                                    **({"ExclusiveStartKey": start} if start else {}))
            for item in page.get("Items", []):
                found[item["sk"].partition("#")[2]] = _plain({k: v for k, v in item.items() if k not in ("pk", "sk")})
            start = page.get("LastEvaluatedKey")
            if not start:
                return found

    def set_stats(self, kind: str, definition_id: str, **fields) -> None:
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": json.loads(json.dumps(v), parse_float=Decimal) for i, v in enumerate(fields.values())}
        self.table.update_item(
            Key={"pk": "stats", "sk": f"{kind}#{definition_id}"},
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
            ExpressionAttributeNames=names, ExpressionAttributeValues=values,
        )

    def get_state(self, name: str) -> dict | None:
        item = self.table.get_item(Key={"pk": "state", "sk": name}, ConsistentRead=True).get("Item")
        return json.loads(item["doc"]) if item else None

    def put_state(self, name: str, value: dict) -> None:
        self.table.put_item(Item={"pk": "state", "sk": name, "doc": json.dumps(value, sort_keys=True)})
