"""Ports: what the use cases need from the outside world, named by role."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime, timezone

from chalicelib.domain.contact import Contact


class ConcurrentUpdate(Exception):
    """Someone else changed the item first: re-read and try again."""


class EventStoreUnavailable(Exception):
    """The event store kept refusing the write (throttling): the client should retry (503)."""


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

    @abc.abstractmethod
    def stored(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (partition, sort) keys are stored. May miss a key written a moment
        ago (an eventually consistent read), never reports one that is not stored."""


class ResentEvents(abc.ABC):
    """Rows of the event log that repeat a messageId already stored (Segment de-duplicates
    on messageId alone; a resend with another timestamp gets another sort key)."""

    @abc.abstractmethod
    def discard_resent(self, partition: str, sort: str, message_id: str) -> int:
        """Among the rows of `partition` near `sort` that carry `message_id`, keep the first
        received and delete the others; return how many were deleted. A row alone with its
        messageId is never deleted, so a redelivered stream record is harmless."""


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
    def merge(self, survivor: Contact, losers: list[Contact]) -> None:
        """Atomically save the combined survivor and mark every loser merged into it: the
        survivor already holds all the losers' state, so a survivor saved while one loser
        stayed live would count that loser twice when it is merged again."""

    def get_many(self, contact_ids: list[str]) -> dict[str, Contact]:
        """The contacts of these ids that exist, by id (merged-away ones included, as `get`
        returns them). Callers pass at most 100 ids: adapters read them in one batch."""
        found = {}
        for contact_id in dict.fromkeys(contact_ids):
            contact = self.get(contact_id)
            if contact is not None:
                found[contact_id] = contact
        return found

    def survivor(self, contact_id: str, consistent: bool = True, max_hops: int = 8) -> Contact | None:
        """The contact that holds this one now: itself, or where merges pointed it (a chain
        of at most `max_hops`, a pointer cycle stops it). None for an unknown id; a contact
        still merged after the hops is returned as it is, for the caller to judge."""
        contact = self.get(contact_id, consistent=consistent)
        seen: set[str] = set()
        while contact is not None and contact.merged_into and contact.id not in seen and len(seen) < max_hops:
            seen.add(contact.id)
            contact = self.get(contact.merged_into, consistent=consistent)
        return contact


class DefinitionStore(abc.ABC):
    """Versioned definitions (segments, scoring, RFM, personas, campaigns) and their stats."""

    @abc.abstractmethod
    def put(self, kind: str, definition_id: str, document: dict, now: str, expected: int | None = None) -> int:
        """Store a new version and make it current; return its version number. With
        `expected`, only when the current version (a deletion included) is still that one
        (0: none yet), else ConcurrentUpdate."""

    @abc.abstractmethod
    def delete(self, kind: str, definition_id: str, expected: int, now: str) -> int:
        """End a definition: it is no longer current, its versions stay readable, and the
        deletion is itself a version (returned). ConcurrentUpdate when the current version
        is no longer `expected`."""

    @abc.abstractmethod
    def current(self, kind: str | None = None) -> list[dict]:
        """Current versions: [{"kind", "id", "version", "document", "updated_at"}]."""

    @abc.abstractmethod
    def get(self, kind: str, definition_id: str) -> dict | None: ...

    @abc.abstractmethod
    def versions(self, kind: str, definition_id: str) -> list[dict]:
        """Every version, oldest first: [{"version", "created_at", "deleted"}]."""

    @abc.abstractmethod
    def get_version(self, kind: str, definition_id: str, version: int) -> dict | None:
        """One stored version as a row ({"kind", "id", "version", "document", "updated_at"});
        None for a deletion or a version that does not exist."""

    @abc.abstractmethod
    def latest_version(self, kind: str, definition_id: str) -> int:
        """The last version number written, a deletion included (0: never written)."""

    @abc.abstractmethod
    def stats(self, kind: str, definition_id: str) -> dict: ...

    @abc.abstractmethod
    def set_stats(self, kind: str, definition_id: str, **fields) -> None: ...

    @abc.abstractmethod
    def all_stats(self, kind: str) -> dict[str, dict]:
        """Every definition of a kind that has stats: id -> stats, in one read."""

    @abc.abstractmethod
    def get_state(self, name: str) -> dict | None: ...

    @abc.abstractmethod
    def put_state(self, name: str, value: dict) -> None: ...


class MembershipStore(abc.ABC):
    """Who is in which segment; entering and leaving are idempotent and keep sizes exact."""

    @abc.abstractmethod
    def enter(self, segment_id: str, contact_id: str, since: str) -> bool:
        """True if the contact was not a member before."""

    @abc.abstractmethod
    def leave(self, segment_id: str, contact_id: str) -> bool:
        """True if the contact was a member before."""

    @abc.abstractmethod
    def size(self, segment_id: str) -> int: ...

    @abc.abstractmethod
    def members(self, segment_id: str, limit: int, cursor: str | None) -> tuple[list[dict], str | None]: ...

    @abc.abstractmethod
    def recount(self, segment_id: str) -> int:
        """Set the size from the membership rows themselves (a crash between a row's write and
        its count leaves the size one off); return the size."""


class RecheckSchedule(abc.ABC):
    """Contacts to look at again at a given moment, read back by the moments that have come."""

    @abc.abstractmethod
    def schedule(self, contact_id: str, at: datetime) -> None: ...

    @abc.abstractmethod
    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(slot, contact id) pairs whose moment has come, oldest first."""

    @abc.abstractmethod
    def done(self, slot: str, contact_id: str) -> None: ...


class ContactScan(abc.ABC):
    """Reading every contact, resumably (back-fills, RFM thresholds, previews)."""

    @abc.abstractmethod
    def scan(self, cursor: str | None, limit: int) -> tuple[list[Contact], str | None]: ...
