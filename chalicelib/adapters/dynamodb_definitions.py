"""Definitions in DynamoDB: every version kept, the current one readable in one query."""
from __future__ import annotations

import json
from decimal import Decimal

from boto3.dynamodb.conditions import Key

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.services.ports import DefinitionStore

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
    def put(self, kind: str, definition_id: str, document: dict, now: str) -> int:
        key = f"{kind}#{definition_id}"
        current = self.table.get_item(Key={"pk": CURRENT, "sk": key}, ConsistentRead=True).get("Item")
        version = int(current["version"]) + 1 if current else 1
        body = json.dumps(document, ensure_ascii=False, sort_keys=True)
        condition = "attribute_not_exists(pk)" if current is None else "version = :previous"
        values = {} if current is None else {":previous": current["version"]}
        self.client.transact_write_items(TransactItems=[
            {"Put": {"TableName": self.table_name,
                     "Item": {"pk": {"S": key}, "sk": {"S": f"v{version:010d}"}, "doc": {"S": body},
                              "created_at": {"S": now}},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"TableName": self.table_name,
                     "Item": {"pk": {"S": CURRENT}, "sk": {"S": key}, "doc": {"S": body},
                              "version": {"N": str(version)}, "updated_at": {"S": now}},
                     "ConditionExpression": condition,
                     **({"ExpressionAttributeValues": {":previous": {"N": str(values[":previous"])}}} if values else {})}},
        ])
        return version

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
            rows.extend(self._row(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return rows

    def get(self, kind: str, definition_id: str) -> dict | None:
        item = self.table.get_item(Key={"pk": CURRENT, "sk": f"{kind}#{definition_id}"}, ConsistentRead=True).get("Item")
        return self._row(item) if item else None

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
