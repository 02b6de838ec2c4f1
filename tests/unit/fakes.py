"""In-memory twins of the ports, with the same conditional-write semantics as DynamoDB."""
from __future__ import annotations

import copy
import heapq
import threading
from datetime import datetime, timedelta, timezone

from chalicelib.domain.contact import Contact
from chalicelib.services.ports import (
    AppendResult,
    Clock,
    ConcurrentUpdate,
    ContactRepository,
    EventStore,
    StoredEvent,
)


class FakeClock(Clock):
    def __init__(self, start: datetime | None = None):
        self.current = start or datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta) -> None:
        self.current += timedelta(**delta)


class FakeEventStore(EventStore):
    def __init__(self):
        self.items: dict[tuple[str, str], StoredEvent] = {}
        self.inserted: list[StoredEvent] = []  # what a stream would carry as INSERT records

    def append(self, events: list[StoredEvent]) -> AppendResult:
        for e in events:
            if (e.partition, e.sort) not in self.items:
                self.inserted.append(e)
            self.items[(e.partition, e.sort)] = e
        return AppendResult(written=len(events), capacity_units=float(len(events)))

    def timeline(self, partitions, limit, before):
        streams = []
        for pk in partitions:
            keys = sorted((k for k in self.items if k[0] == pk and (before is None or k[1] < before)),
                          key=lambda k: k[1], reverse=True)[: limit + 1]
            streams.append([(k[1], self.items[k].body) for k in keys])
        merged = list(heapq.merge(*streams, key=lambda p: p[0], reverse=True))
        page = merged[:limit]
        return [b for _, b in page], (page[-1][0] if len(merged) > limit else None)


class FakeContactRepository(ContactRepository):
    def __init__(self):
        self.contacts: dict[str, dict] = {}
        self.identities: dict[str, str] = {}
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def lookup(self, identifiers, consistent=False):
        self._count("lookup")
        with self.lock:
            return {i: self.identities[i] for i in identifiers if i in self.identities}

    def get(self, contact_id, consistent=False):
        self._count("get")
        with self.lock:
            stored = self.contacts.get(contact_id)
            return copy.deepcopy(stored["contact"]) if stored else None

    def claim(self, identifier, contact_id):
        self._count("claim")
        with self.lock:
            return self.identities.setdefault(identifier, contact_id)

    def repoint(self, identifier, from_id, to_id):
        self._count("repoint")
        with self.lock:
            if self.identities.get(identifier) != from_id:
                return False
            self.identities[identifier] = to_id
            return True

    def _check(self, contact: Contact) -> None:
        stored = self.contacts.get(contact.id)
        current = stored["contact"].version if stored else None
        if current != contact.version:
            raise ConcurrentUpdate(f"{contact.id}: version {contact.version} != {current}")

    def _write(self, contact: Contact) -> None:
        contact.version = (contact.version or 0) + 1
        self.contacts[contact.id] = {"contact": copy.deepcopy(contact)}

    def create(self, contact):
        self._count("create")
        with self.lock:
            if contact.id in self.contacts:
                raise ConcurrentUpdate(f"{contact.id} exists")
            contact.version = None
            self._write(contact)

    def save(self, contact):
        self._count("save")
        with self.lock:
            self._check(contact)
            self._write(contact)

    def merge(self, survivor, loser):
        self._count("merge")
        with self.lock:
            self._check(survivor)
            self._check(loser)
            loser.merged_into = survivor.id
            self._write(survivor)
            self._write(loser)
