"""Shared boto3 plumbing for the adapters: a lazily created table resource."""
from __future__ import annotations

import boto3


class LazyTable:
    def __init__(self, table_name: str, resource=None):
        self.table_name = table_name
        self._resource = resource
        self._table = None

    @property
    def table(self):
        if self._table is None:
            resource = self._resource or boto3.resource("dynamodb")
            self._table = resource.Table(self.table_name)
        return self._table

    @property
    def client(self):
        return self.table.meta.client
