"""moto's server, with Query reading only the partition it asks for.

moto 5 answers a Query on a table's key by walking every item of the table (sorted), 10 to
13 µs per item: 0.1 s per Query at 10,000 items, 0.8 s at 60,000. DynamoDB reads only the
queried partition. Left as is, a job that queries a big table (the recheck schedule, the
events a back-fill recounts) would measure moto's table size, not the code.

This patch gives moto's own Query code the items of the queried partition instead of the
whole table; everything after that (sorting, key conditions, filters, limits, paging,
returned items) is moto's unchanged code, so the answers are the same. Queries on an index,
Scan and every other operation are untouched. `python -m bench.moto_server --fd N` takes
local/emulator_server.py's arguments; `bench.run --plain-moto` uses moto's server as shipped
instead.
"""
from __future__ import annotations

import sys
import threading

_hint = threading.local()


def patch() -> bool:
    """Install the patch; False if this moto does not have the code it expects."""
    try:
        from moto.dynamodb.models.table import Table
    except ImportError:
        return False
    if getattr(Table, "_bench_partition_query", False):
        return True
    original_query = Table.query
    original_all_items = Table.all_items

    def query(self, hash_key, *args, **kwargs):
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        _hint.target = (self, hash_key)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _hint.target = None

    def all_items(self):
        target = getattr(_hint, "target", None)
        if target is not None and target[0] is self:
            _hint.target = None  # only the Query's own first call
            partition = self.items.get(target[1])  # .get: the defaultdict must not grow
            if partition is None:
                return []
            return list(partition.values()) if self.range_key_attr else [partition]
        return original_all_items(self)

    Table.query = query
    Table.all_items = all_items
    Table._bench_partition_query = True
    return True


def main() -> None:
    if not patch():
        print("bench.moto_server: this moto version is not the one patched; running it as shipped",
              file=sys.stderr)
    from local.emulator_server import main as serve

    serve(sys.argv[1:])


if __name__ == "__main__":
    main()
