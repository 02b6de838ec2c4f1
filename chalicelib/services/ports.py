"""Ports: what the use cases need from the outside world, named by role."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime, timezone

from chalicelib.domain.contact import Contact


class ConcurrentUpdate(Exception):
    """Someone else changed the item first: re-read and try again."""


class Clock(abc.ABC):
    @abc.abstractmethod
    def now(self) -> datetime: ...


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


@dataclass(frozen=True)
class AppendResult:
    written: int
    capacity_units: float


@dataclass(frozen=True)
class StoredEvent:
    partition: str
    sort: str
    body: dict
    ttl: int


class EventStore(abc.ABC):
    """Append-only log of tracking events (the DynamoDB table whose stream drives processing)."""

    @abc.abstractmethod
    def append(self, events: list[StoredEvent]) -> AppendResult: ...

    @abc.abstractmethod
    def timeline(self, partitions: list[str], limit: int, before: str | None) -> tuple[list[dict], str | None]:
        """Newest first across the partitions; `before` is the sort key to continue below."""


class ContactRepository(abc.ABC):
    """Contacts and the identifiers that point at them; every write is conditional."""

    @abc.abstractmethod
    def lookup(self, identifiers: list[str], consistent: bool = False) -> dict[str, str]:
        """identifier -> contact id, for those that are claimed."""

    @abc.abstractmethod
    def get(self, contact_id: str, consistent: bool = False) -> Contact | None: ...

    @abc.abstractmethod
    def claim(self, identifier: str, contact_id: str) -> str:
        """Point identifier at contact_id unless it is already claimed; return the owner."""

    @abc.abstractmethod
    def repoint(self, identifier: str, from_id: str, to_id: str) -> bool:
        """Move identifier from one contact to another if it still points at from_id."""

    @abc.abstractmethod
    def create(self, contact: Contact) -> None:
        """Insert a new contact; ConcurrentUpdate if the id exists."""

    @abc.abstractmethod
    def save(self, contact: Contact) -> None:
        """Write the contact if its version is unchanged since it was read; bumps version."""

    @abc.abstractmethod
    def merge(self, survivor: Contact, loser: Contact) -> None:
        """Atomically save the combined survivor and mark the loser merged into it."""
