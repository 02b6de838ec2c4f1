"""The erase ports of the DynamoDB adapters against moto (services/privacy_ports.py)."""
from __future__ import annotations

import boto3
import pytest

from chalicelib.adapters.dynamodb_contacts import DynamoDBContactRepository
from chalicelib.adapters.dynamodb_events import DynamoDBEventStore
from chalicelib.domain.contact import Contact
from chalicelib.services.ports import StoredEvent


@pytest.fixture
def events(aws_tables):
    return DynamoDBEventStore(aws_tables["EventsTable"], client=boto3.client("dynamodb"))


@pytest.fixture
def repo(aws_tables):
    return DynamoDBContactRepository(aws_tables["ContactsTable"], aws_tables["IdentitiesTable"], region="us-east-1")


def stored(pk: str, n: int) -> StoredEvent:
    ts = f"2026-11-20T10:00:{n:02d}.000Z"
    return StoredEvent(partition=pk, sort=f"{ts}#m{n}", body={"messageId": f"m{n}", "timestamp": ts}, ttl=2_000_000_000)


def test_a_partition_is_erased_in_slices_and_no_other(events):
    events.append([stored("user:ada", n) for n in range(30)] + [stored("user:bob", 1)])
    assert events.erase_partition("user:ada", limit=20) == (20, False)
    deleted, empty = events.erase_partition("user:ada", limit=20)
    assert deleted == 10
    # A page that read the last row may not know yet that nothing follows: one more call says so.
    if not empty:
        assert events.erase_partition("user:ada", limit=20) == (0, True)
    assert events.timeline(["user:ada"], 10, None) == ([], None)
    assert len(events.timeline(["user:bob"], 10, None)[0]) == 1


def test_an_identity_is_forgotten_only_while_it_points_at_the_contact(repo):
    repo.claim("email:ada@example.com", "c1")
    repo.claim("user:bob", "c2")
    assert repo.forget_identifier("user:bob", "c1") is False
    assert repo.forget_identifier("email:ada@example.com", "c1") is True
    assert repo.forget_identifier("email:ada@example.com", "c1") is False
    assert repo.lookup(["email:ada@example.com", "user:bob"]) == {"user:bob": "c2"}


def test_a_contact_item_is_deleted_once(repo):
    repo.create(Contact(id="c1", created_at="2026-11-01T00:00:00.000Z"))
    assert repo.delete_contact("c1") is True
    assert repo.get("c1", consistent=True) is None
    assert repo.delete_contact("c1") is False
