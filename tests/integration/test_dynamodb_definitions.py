"""The definition store on DynamoDB (moto): versions kept, a deletion is a version, the
current pointer fences concurrent writers."""
from __future__ import annotations

import pytest

from chalicelib.adapters.dynamodb_definitions import DynamoDBDefinitionStore
from chalicelib.services.ports import ConcurrentUpdate


@pytest.fixture
def store(aws_tables):
    return DynamoDBDefinitionStore(aws_tables["DefinitionsTable"])


def test_versions_a_deletion_and_the_next_version(store):
    assert store.put("segment", "vip", {"id": "vip", "v": 1}, "2026-11-01T00:00:00Z") == 1
    assert store.put("segment", "vip", {"id": "vip", "v": 2}, "2026-11-02T00:00:00Z", expected=1) == 2
    store.put("campaign", "promo", {"id": "promo"}, "2026-11-02T00:00:00Z")
    assert store.delete("segment", "vip", 2, "2026-11-03T00:00:00Z") == 3
    assert store.get("segment", "vip") is None
    assert [r["id"] for r in store.current()] == ["promo"]
    assert store.current("segment") == []
    assert store.latest_version("segment", "vip") == 3
    assert store.get_version("segment", "vip", 1)["document"] == {"id": "vip", "v": 1}
    assert store.get_version("segment", "vip", 3) is None  # the deletion has no document
    assert store.get_version("segment", "vip", 9) is None
    assert store.versions("segment", "vip") == [
        {"version": 1, "created_at": "2026-11-01T00:00:00Z", "deleted": False},
        {"version": 2, "created_at": "2026-11-02T00:00:00Z", "deleted": False},
        {"version": 3, "created_at": "2026-11-03T00:00:00Z", "deleted": True},
    ]
    assert store.put("segment", "vip", {"id": "vip", "v": 4}, "2026-11-04T00:00:00Z", expected=3) == 4
    assert store.get("segment", "vip")["version"] == 4


def test_a_writer_that_read_an_older_version_is_refused(store):
    store.put("segment", "vip", {"id": "vip"}, "t1")
    store.put("segment", "vip", {"id": "vip", "x": 1}, "t2")
    with pytest.raises(ConcurrentUpdate):
        store.put("segment", "vip", {"id": "vip", "x": 2}, "t3", expected=1)
    with pytest.raises(ConcurrentUpdate):
        store.delete("segment", "vip", 1, "t3")
    with pytest.raises(ConcurrentUpdate):
        store.put("segment", "new", {"id": "new"}, "t3", expected=2)
    assert store.get("segment", "vip")["document"] == {"id": "vip", "x": 1}
