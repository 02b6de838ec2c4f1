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
    ContactScan,
    DefinitionStore,
    EventStore,
    MembershipStore,
    RecheckSchedule,
    ResentEvents,
    StoredEvent,
)


class FakeClock(Clock):
    def __init__(self, start: datetime | None = None):
        self.current = start or datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta) -> None:
        self.current += timedelta(**delta)


class FakeEventStore(EventStore, ResentEvents):
    def __init__(self):
        self.items: dict[tuple[str, str], StoredEvent] = {}
        self.inserted: list[StoredEvent] = []  # what a stream would carry as INSERT records
        self.lookups = 0  # calls of `stored`

    def append(self, events: list[StoredEvent]) -> AppendResult:
        for e in events:
            if (e.partition, e.sort) not in self.items:
                self.inserted.append(e)
            self.items[(e.partition, e.sort)] = e
        return AppendResult(written=len(events), capacity_units=float(len(events)))

    def discard_resent(self, partition, sort, message_id):
        rows = sorted((k for k in self.items if k[0] == partition and k[1].partition("#")[2] == message_id),
                      key=lambda k: (self.items[k].body.get("receivedAt") or "", k[1]))
        for key in rows[1:]:
            del self.items[key]
        return max(len(rows) - 1, 0)

    def stored(self, keys):
        self.lookups += 1
        return {k for k in keys if k in self.items}

    def timeline(self, partitions, limit, before):
        streams = []
        for pk in partitions:
            keys = sorted((k for k in self.items if k[0] == pk and (before is None or k[1] < before)),
                          key=lambda k: k[1], reverse=True)[: limit + 1]
            streams.append([(k[1], self.items[k].body) for k in keys])
        merged = list(heapq.merge(*streams, key=lambda p: p[0], reverse=True))
        page = merged[:limit]
        return [b for _, b in page], (page[-1][0] if len(merged) > limit else None)


class FakeContactRepository(ContactRepository, ContactScan):
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

    def get_many(self, contact_ids):
        self._count("get_many")  # one batched read, however many ids (callers pass at most 100)
        with self.lock:
            return {i: copy.deepcopy(self.contacts[i]["contact"]) for i in contact_ids if i in self.contacts}

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
        # Stored as a store stores it: its document (what is not in it is not kept).
        stored = Contact.from_document(contact.id, copy.deepcopy(contact.to_document()), contact.version,
                                       contact.merged_into)
        self.contacts[contact.id] = {"contact": stored}

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

    def merge(self, survivor, losers):
        self._count("merge")
        with self.lock:
            self._check(survivor)
            for loser in losers:
                self._check(loser)
            self._write(survivor)
            for loser in losers:
                loser.merged_into = survivor.id
                self._write(loser)

    def scan(self, cursor, limit):
        ids = sorted(i for i, c in self.contacts.items() if not c["contact"].merged_into and (cursor is None or i > cursor))
        page = ids[:limit]
        return [self.get(i) for i in page], (page[-1] if len(ids) > limit else None)


class FakeDefinitionStore(DefinitionStore):
    def __init__(self):
        self.versions_of: dict[tuple[str, str], list[dict]] = {}  # a deletion is a version with document None
        self._stats: dict[tuple[str, str], dict] = {}
        self.state: dict[str, dict] = {}

    def put(self, kind, definition_id, document, now, expected=None):
        versions = self.versions_of.setdefault((kind, definition_id), [])
        if expected is not None and expected != len(versions):
            raise ConcurrentUpdate(f"{kind}#{definition_id} is at version {len(versions)}, not {expected}")
        versions.append({"kind": kind, "id": definition_id, "version": len(versions) + 1,
                         "document": copy.deepcopy(document), "updated_at": now})
        return len(versions)

    def delete(self, kind, definition_id, expected, now):
        versions = self.versions_of.setdefault((kind, definition_id), [])
        if expected != len(versions):
            raise ConcurrentUpdate(f"{kind}#{definition_id} is at version {len(versions)}, not {expected}")
        versions.append({"kind": kind, "id": definition_id, "version": len(versions) + 1, "document": None,
                         "updated_at": now})
        return len(versions)

    def current(self, kind=None):
        return [copy.deepcopy(v[-1]) for (k, _), v in sorted(self.versions_of.items())
                if kind in (None, k) and v and v[-1]["document"] is not None]

    def get(self, kind, definition_id):
        versions = self.versions_of.get((kind, definition_id))
        return copy.deepcopy(versions[-1]) if versions and versions[-1]["document"] is not None else None

    def latest_version(self, kind, definition_id):
        return len(self.versions_of.get((kind, definition_id), []))

    def versions(self, kind, definition_id):
        return [{"version": v["version"], "created_at": v["updated_at"], "deleted": v["document"] is None}
                for v in self.versions_of.get((kind, definition_id), [])]

    def get_version(self, kind, definition_id, version):
        versions = self.versions_of.get((kind, definition_id), [])
        if not 1 <= version <= len(versions) or versions[version - 1]["document"] is None:
            return None
        return copy.deepcopy(versions[version - 1])

    def stats(self, kind, definition_id):
        return dict(self._stats.get((kind, definition_id), {}))

    def all_stats(self, kind):
        return {i: dict(v) for (k, i), v in self._stats.items() if k == kind}

    def set_stats(self, kind, definition_id, **fields):
        self._stats.setdefault((kind, definition_id), {}).update(copy.deepcopy(fields))

    def get_state(self, name):
        return copy.deepcopy(self.state.get(name))

    def put_state(self, name, value):
        self.state[name] = copy.deepcopy(value)


class FakeMembershipStore(MembershipStore):
    def __init__(self):
        self.members_by_segment: dict[str, dict[str, str]] = {}

    def enter(self, segment_id, contact_id, since):
        members = self.members_by_segment.setdefault(segment_id, {})
        if contact_id in members:
            return False
        members[contact_id] = since
        return True

    def leave(self, segment_id, contact_id):
        return self.members_by_segment.get(segment_id, {}).pop(contact_id, None) is not None

    def size(self, segment_id):
        return len(self.members_by_segment.get(segment_id, {}))

    def recount(self, segment_id):
        return self.size(segment_id)

    def members(self, segment_id, limit, cursor):
        ids = sorted(c for c in self.members_by_segment.get(segment_id, {}) if cursor is None or c > cursor)
        page = ids[:limit]
        rows = [{"contact_id": c, "since": self.members_by_segment[segment_id][c]} for c in page]
        return rows, (page[-1] if len(ids) > limit else None)


class FakeRecheckSchedule(RecheckSchedule):
    def __init__(self):
        self.items: set[tuple[str, str]] = set()

    def schedule(self, contact_id, at):
        self.items.add((at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), contact_id))

    def due(self, now, limit):
        stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return sorted(i for i in self.items if i[0] <= stamp)[:limit]

    def done(self, slot, contact_id):
        self.items.discard((slot, contact_id))


class FakeS3Client:
    """The few S3 calls the audience exporter makes, on objects kept in memory."""

    class Body:
        def __init__(self, data: bytes):
            self.data = data
            self.closed = False

        def iter_chunks(self, chunk_size):
            for start in range(0, len(self.data), chunk_size):
                yield self.data[start:start + chunk_size]

        def close(self):
            self.closed = True

    def __init__(self):
        self.objects: dict[tuple[str, str], bytes] = {}
        self.reads: list[str] = []

    def upload_fileobj(self, fileobj, bucket, key, ExtraArgs=None):
        self.objects[(bucket, key)] = fileobj.read()

    def get_object(self, Bucket, Key):
        self.reads.append(Key)
        return {"Body": self.Body(self.objects[(Bucket, Key)])}

    def generate_presigned_url(self, operation, Params, ExpiresIn):
        return f"https://{Params['Bucket']}.s3.example/{Params['Key']}?X-Amz-Expires={ExpiresIn}"

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(key for _, key in self.objects if key.startswith(prefix))
