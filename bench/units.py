"""DynamoDB request units, computed from the items a request actually reads and writes.

A `Recorder` hooks the botocore event system of every DynamoDB client the app uses
(`before-parameter-build.dynamodb.*` keeps the request, `after-call.dynamodb.*` sees the
response) and keeps, per operation:

* the number of requests (and how many came back with an error such as a failed condition);
* the read / write request units computed with DynamoDB's documented sizing rules
  (the "computed" numbers);
* the ConsumedCapacity the endpoint itself returned (the "reported" numbers: real on AWS,
  a constant per call on moto, which does not size items).

Sizing rules (DynamoDB Developer Guide, "Item sizes and capacity unit consumption"):
an item's size is the sum of its attribute names and values (strings as UTF-8 bytes, numbers
about 1 byte per 2 significant digits + 1, binary as raw bytes, null/bool 1 byte, list/map
3 bytes + 1 byte per element + the elements). A write costs 1 WRU per started 1 KB of the
larger of the item before and after; a read 1 RRU per started 4 KB when strongly
consistent, half that when eventually consistent; transactional reads and writes cost
twice as much. Reading an item that does not exist still costs the minimum. BatchGetItem
and BatchWriteItem are sized item by item; Query and Scan on the total.
"""
from __future__ import annotations

import base64
import functools
import json
import math
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field

KB = 1024
READ_BLOCK = 4 * KB
WRITE_BLOCK = KB


# -- item size ---------------------------------------------------------------------------

def number_size(text: str) -> int:
    digits = text.strip().lstrip("+-").lower().split("e")[0].replace(".", "")
    digits = digits.lstrip("0").rstrip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(value: dict) -> int:
    """Size of one wire-format AttributeValue ({"S": "…"}, {"N": "12"}, {"M": {…}}, …)."""
    if not isinstance(value, dict) or len(value) != 1:
        return len(json.dumps(value, default=str).encode("utf-8"))
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        return number_size(raw)
    if kind == "B":
        return len(raw) if isinstance(raw, (bytes, bytearray)) else len(base64.b64decode(raw))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in raw)
    if kind == "NS":
        return sum(number_size(n) for n in raw)
    if kind == "BS":
        return sum(len(b) if isinstance(b, (bytes, bytearray)) else len(base64.b64decode(b)) for b in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(v) for k, v in raw.items())
    return len(json.dumps(raw, default=str).encode("utf-8"))


def item_size(item: dict) -> int:
    """Size of a wire-format item: attribute names plus values."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int, transactional: bool = False) -> int:
    return max(1, math.ceil(size / WRITE_BLOCK)) * (2 if transactional else 1)


def read_units(size: int, consistent: bool, transactional: bool = False) -> float:
    blocks = max(1, math.ceil(size / READ_BLOCK))
    if transactional:
        return 2.0 * blocks
    return float(blocks) if consistent else blocks / 2


# -- recording ---------------------------------------------------------------------------

@dataclass
class OpStats:
    requests: int = 0
    errors: int = 0  # answered with an error (e.g. ConditionalCheckFailed): still billed
    items_read: int = 0
    items_written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    rru: float = 0.0  # computed from item sizes
    wru: float = 0.0  # computed from item sizes
    reported: float = 0.0  # ConsumedCapacity.CapacityUnits as returned by the endpoint
    seconds: float = 0.0  # client-side time in the call, summed

    def add(self, other: "OpStats") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class TableItems:
    """Sizes of the items written to one table (the bytes that drive WRU)."""

    count: int = 0
    total: int = 0
    largest: int = 0
    sizes: list = field(default_factory=list)
    by_key: dict = field(default_factory=dict)  # key (JSON of the key attributes) → last size written

    def add(self, size: int, key: str | None = None) -> None:
        self.count += 1
        self.total += size
        self.largest = max(self.largest, size)
        self.sizes.append(size)
        if key is not None:
            self.by_key[key] = size

    def summary(self) -> dict:
        if not self.count:
            return {"items": 0}
        ordered = sorted(self.sizes)
        return {"items": self.count, "mean_bytes": round(self.total / self.count),
                "p50_bytes": ordered[len(ordered) // 2], "max_bytes": self.largest,
                "over_1kb": sum(1 for s in ordered if s > WRITE_BLOCK)}


def _reported(parsed: dict) -> float:
    consumed = parsed.get("ConsumedCapacity")
    if isinstance(consumed, dict):
        consumed = [consumed]
    return float(sum(c.get("CapacityUnits", 0.0) or 0.0 for c in consumed or []))


class Recorder:
    """Counts DynamoDB requests and request units on the clients it instruments."""

    def __init__(self, key_names: dict[str, list[str]] | None = None):
        self.key_names: dict[str, list[str]] = dict(key_names or {})
        self.labels: dict[str, str] = {}  # physical table name → short name for reports
        self._lock = threading.Lock()
        self._known_sizes: dict[tuple[str, str], int] = {}  # last size seen per item: "larger of before/after"
        self._instrumented = weakref.WeakSet()
        self.reset()

    # -- wiring ----------------------------------------------------------------------

    def add_tables(self, key_names: dict[str, list[str]], labels: dict[str, str] | None = None) -> None:
        self.key_names.update(key_names)
        self.labels.update(labels or {})

    def instrument(self, client) -> bool:
        """Register the hooks on one botocore/boto3 DynamoDB client (once)."""
        if client in self._instrumented:
            return False
        events = client.meta.events
        events.register("before-parameter-build.dynamodb.*", self._before, unique_id=f"bench-before-{id(self)}")
        events.register("after-call.dynamodb.*", self._after, unique_id=f"bench-after-{id(self)}")
        self._instrumented.add(client)
        return True

    def watch_new_clients(self) -> None:
        """Instrument every DynamoDB client created from now on, whoever creates it: boto3
        (through its botocore session) and PynamoDB (its own botocore sessions) both go
        through botocore.session.Session.create_client."""
        import botocore.session

        original = botocore.session.Session.create_client
        if getattr(original, "_bench_recorder", None) is self:
            return
        recorder = self

        @functools.wraps(original)
        def create_client(session, service_name, *args, **kwargs):
            client = original(session, service_name, *args, **kwargs)
            if service_name == "dynamodb":
                recorder.instrument(client)
            return client

        create_client._bench_recorder = self
        botocore.session.Session.create_client = create_client

    def reset(self) -> None:
        with self._lock:
            self.ops: dict[tuple[str, str], OpStats] = {}  # (operation, table label) → stats
            self.tables: dict[str, TableItems] = {}

    def snapshot(self) -> tuple[dict[tuple[str, str], OpStats], dict[str, TableItems]]:
        with self._lock:
            ops = {k: OpStats(**asdict(v)) for k, v in self.ops.items()}
            tables = {k: TableItems(v.count, v.total, v.largest, list(v.sizes), dict(v.by_key))
                      for k, v in self.tables.items()}
        return ops, tables

    # -- hooks -----------------------------------------------------------------------

    def _before(self, params, model, context, **_):
        context["bench.params"] = params
        context["bench.started"] = time.perf_counter()

    def _after(self, http_response, parsed, model, context, **_):
        elapsed = time.perf_counter() - context.get("bench.started", time.perf_counter())
        params = context.get("bench.params") or {}
        failed = http_response.status_code >= 300
        stats = OpStats(requests=1, errors=int(failed), seconds=elapsed, reported=_reported(parsed or {}))
        written: list[tuple[str, int, str]] = []
        with self._lock:
            measure = getattr(self, f"_{model.name}", None)
            if measure is not None:
                measure(params, parsed or {}, failed, stats, written)
            current = self.ops.setdefault((model.name, self._label(params)), OpStats())
            current.add(stats)
            for table, size, key in written:
                self.tables.setdefault(table, TableItems()).add(size, key)

    def _label(self, params: dict) -> str:
        names = {params.get("TableName")} | set(params.get("RequestItems") or {})
        for entry in params.get("TransactItems") or []:
            names |= {body.get("TableName") for body in entry.values()}
        return "+".join(sorted(self.labels.get(n, n) for n in names if n)) or "-"

    # -- item bookkeeping ------------------------------------------------------------

    def _key(self, table: str, item_or_key: dict) -> tuple[str, str]:
        names = self.key_names.get(table)
        if names:
            key = {n: item_or_key.get(n) for n in names}
        else:
            key = item_or_key
        return table, json.dumps(key, sort_keys=True, default=str)

    def _seen(self, table: str, item: dict) -> int:
        size = item_size(item)
        self._known_sizes[self._key(table, item)] = size
        return size

    def _before_size(self, table: str, key: dict) -> int:
        return self._known_sizes.get(self._key(table, key), 0)

    def _write(self, table: str, item: dict | None, key: dict, failed: bool, transactional: bool,
               stats: OpStats, written: list, new_size: int | None = None) -> None:
        """One item written (put, update or delete): units on the larger of before and after."""
        before = self._before_size(table, key)
        after = item_size(item) if item is not None else (new_size if new_size is not None else 0)
        stats.wru += write_units(max(before, after), transactional)
        stats.items_written += 1
        if not failed:
            stats.bytes_written += after
            where = self._key(table, key)
            written.append((table, after, where[1]))
            if item is not None or new_size is not None:
                self._known_sizes[where] = after
            else:
                self._known_sizes.pop(where, None)

    # -- per operation (named after the API operation) -------------------------------

    def _GetItem(self, params, parsed, failed, stats, written):
        table = params.get("TableName", "")
        item = parsed.get("Item")
        size = self._seen(table, item) if item else 0
        stats.items_read += 1 if item else 0
        stats.bytes_read += size
        stats.rru += read_units(size, bool(params.get("ConsistentRead")))

    def _BatchGetItem(self, params, parsed, failed, stats, written):
        unprocessed = parsed.get("UnprocessedKeys") or {}
        for table, request in (params.get("RequestItems") or {}).items():
            consistent = bool(request.get("ConsistentRead"))
            items = (parsed.get("Responses") or {}).get(table, [])
            for item in items:
                size = self._seen(table, item)
                stats.items_read += 1
                stats.bytes_read += size
                stats.rru += read_units(size, consistent)
            left = len((unprocessed.get(table) or {}).get("Keys", []))
            missing = len(request.get("Keys", [])) - len(items) - left
            stats.rru += max(0, missing) * read_units(0, consistent)  # absent items cost the minimum

    def _TransactGetItems(self, params, parsed, failed, stats, written):
        for request, response in zip(params.get("TransactItems", []), parsed.get("Responses") or []):
            get = request.get("Get", {})
            item = (response or {}).get("Item")
            size = self._seen(get.get("TableName", ""), item) if item else 0
            stats.items_read += 1 if item else 0
            stats.bytes_read += size
            stats.rru += read_units(size, True, transactional=True)

    def _query_like(self, params, parsed, stats):
        items = parsed.get("Items") or []
        total = sum(item_size(i) for i in items)
        stats.items_read += len(items)
        stats.bytes_read += total
        stats.rru += read_units(total, bool(params.get("ConsistentRead")))

    def _Query(self, params, parsed, failed, stats, written):
        self._query_like(params, parsed, stats)

    def _Scan(self, params, parsed, failed, stats, written):
        self._query_like(params, parsed, stats)

    def _PutItem(self, params, parsed, failed, stats, written):
        item = params.get("Item", {})
        self._write(params.get("TableName", ""), item, item, failed, False, stats, written)

    def _UpdateItem(self, params, parsed, failed, stats, written):
        table, key = params.get("TableName", ""), params.get("Key", {})
        attrs = parsed.get("Attributes")
        if attrs and params.get("ReturnValues") == "ALL_NEW":
            new_size = item_size(attrs)
        else:
            # The new item is not returned: the key plus the values set, or the known size.
            values = params.get("ExpressionAttributeValues") or {}
            new_size = max(self._before_size(table, key),
                           item_size(key) + sum(value_size(v) for v in values.values()))
        self._write(table, None, key, failed, False, stats, written, new_size=new_size)

    def _DeleteItem(self, params, parsed, failed, stats, written):
        key = params.get("Key", {})
        self._write(params.get("TableName", ""), None, key, failed, False, stats, written)

    def _BatchWriteItem(self, params, parsed, failed, stats, written):
        unprocessed = parsed.get("UnprocessedItems") or {}
        for table, requests in (params.get("RequestItems") or {}).items():
            left = {json.dumps(r, sort_keys=True, default=str) for r in unprocessed.get(table, [])}
            for request in requests:
                if json.dumps(request, sort_keys=True, default=str) in left:
                    continue
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    self._write(table, item, item, failed, False, stats, written)
                elif "DeleteRequest" in request:
                    self._write(table, None, request["DeleteRequest"]["Key"], failed, False, stats, written)

    def _TransactWriteItems(self, params, parsed, failed, stats, written):
        for entry in params.get("TransactItems", []):
            (kind, body), = entry.items()
            table = body.get("TableName", "")
            if kind == "Put":
                self._write(table, body["Item"], body["Item"], failed, True, stats, written)
            elif kind == "Update":
                values = body.get("ExpressionAttributeValues") or {}
                new_size = max(self._before_size(table, body["Key"]),
                               item_size(body["Key"]) + sum(value_size(v) for v in values.values()))
                self._write(table, None, body["Key"], failed, True, stats, written, new_size=new_size)
            elif kind == "Delete":
                self._write(table, None, body["Key"], failed, True, stats, written)
            elif kind == "ConditionCheck":
                stats.wru += write_units(self._before_size(table, body["Key"]), transactional=True)
