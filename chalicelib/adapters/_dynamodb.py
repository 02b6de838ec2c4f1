"""Shared boto3 plumbing for the adapters: a lazily created table resource."""
from __future__ import annotations

import boto3


class LazyTable:
    def __init__(self, table_name: str, resource=None, client=None):
        self.table_name = table_name
        self._resource = resource
        self._client = client
        self._table = None

    @property
    def table(self):
        if self._table is None:
            resource = self._resource or boto3.resource("dynamodb")
            self._table = resource.Table(self.table_name)
        return self._table

    def query_all(self, **params) -> list[dict]:
        """Every item a Query answers, page after page."""
        items = []
        while True:
            answer = self.table.query(**params)
            items.extend(answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return items
            params["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    @property
    def client(self):
        """A plain client (wire-format attribute values): a resource's own client converts
        Python values and would misread them."""
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client
