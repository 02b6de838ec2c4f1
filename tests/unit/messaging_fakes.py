"""In-memory twins of the messaging ports (services/message_ports.py), with the semantics
the DynamoDB adapters promise: conditional creation, a claim only of an unsent (or
lease-expired) message, a status that only moves forward, idempotent suppression entries,
and atomic counters."""
from __future__ import annotations

import copy
import threading
from dataclasses import replace
from datetime import datetime, timedelta

from chalicelib.domain.messaging.consent import SuppressionEntry
from chalicelib.domain.messaging.messages import SENDING, UNSENT, Message, StatusChange
from chalicelib.domain.messaging.policy import RateBudget, SendCounters
from chalicelib.services.message_ports import ChannelStats, MessageLog, SendRate, SuppressionStore


class FakeMessageLog(MessageLog):
    def __init__(self):
        self.messages: dict[str, Message] = {}
        self.leases: dict[str, datetime] = {}
        self.lock = threading.Lock()
        self.writes = 0

    def create(self, message: Message) -> bool:
        with self.lock:
            if message.id in self.messages:
                return False
            self.messages[message.id] = copy.deepcopy(message)
            self.writes += 1
            return True

    def get(self, message_id: str) -> Message | None:
        return self.messages.get(message_id)

    def claim(self, message_id: str, change: StatusChange, lease_until: datetime) -> Message | None:
        with self.lock:
            current = self.messages.get(message_id)
            if current is None:
                return None
            expired_lease = current.status == SENDING and self.leases.get(message_id, lease_until) <= change.at
            if current.status not in UNSENT and not expired_lease:
                return None
            claimed = replace(current, status=SENDING, timeline=current.timeline + (change,))
            self.messages[message_id] = claimed
            self.leases[message_id] = lease_until
            self.writes += 1
            return claimed

    def advance(self, message_id: str, change: StatusChange, **fields) -> Message | None:
        with self.lock:
            current = self.messages.get(message_id)
            if current is None:
                return None
            advanced = replace(current.advanced(change), **fields)
            self.messages[message_id] = advanced
            self.writes += 1
            return advanced

    def by_provider_id(self, provider_id: str) -> Message | None:
        return next((m for m in self.messages.values() if m.provider_id == provider_id), None)

    def for_contact(self, contact_id, since=None, limit=100, cursor=None):
        mine = sorted((m for m in self.messages.values() if m.contact_id == contact_id
                       and (since is None or m.requested_at >= since)),
                      key=lambda m: (m.requested_at, m.id), reverse=True)
        start = int(cursor) if cursor else 0
        page = mine[start:start + limit]
        return page, (str(start + limit) if start + limit < len(mine) else None)

    def erase_contact(self, contact_id: str) -> int:
        with self.lock:
            gone = [mid for mid, m in self.messages.items() if m.contact_id == contact_id]
            for mid in gone:
                del self.messages[mid]
                self.leases.pop(mid, None)
            return len(gone)


class FakeSuppressionStore(SuppressionStore):
    def __init__(self):
        self.entries: dict[tuple[str, str, str], SuppressionEntry] = {}

    def find(self, channel: str, address_hash: str) -> tuple[SuppressionEntry, ...]:
        return tuple(e for (c, h, _), e in sorted(self.entries.items()) if c == channel and h == address_hash)

    def add(self, entry: SuppressionEntry) -> None:
        self.entries.setdefault((entry.channel, entry.address_hash, entry.reason), entry)


class FakeChannelStats(ChannelStats):
    def __init__(self):
        self.hours: dict[tuple[str, str], dict[str, int]] = {}

    def add(self, channel, at, sent=0, bounced=0, complained=0) -> None:
        hour = at.strftime("%Y-%m-%dT%H")
        row = self.hours.setdefault((channel, hour), {"sent": 0, "bounced": 0, "complained": 0})
        row["sent"] += sent
        row["bounced"] += bounced
        row["complained"] += complained

    def window(self, channel, now, hours) -> SendCounters:
        first = (now - timedelta(hours=hours - 1)).strftime("%Y-%m-%dT%H")
        last = now.strftime("%Y-%m-%dT%H")
        rows = [r for (c, h), r in self.hours.items() if c == channel and first <= h <= last]
        return SendCounters(sent=sum(r["sent"] for r in rows), bounced=sum(r["bounced"] for r in rows),
                            complained=sum(r["complained"] for r in rows), window=timedelta(hours=hours))


class FakeSendRate(SendRate):
    """GCRA with one theoretical-arrival time per channel, as the adapter keeps it."""

    def __init__(self):
        self.tat: dict[str, datetime] = {}

    def take(self, channel, lane, budget: RateBudget, now):
        interval = timedelta(microseconds=budget.interval_us())
        reserve = 0 if lane == "transactional" else budget.transactional_reserve
        tolerance = interval * (budget.burst - 1 - reserve)
        tat = max(self.tat.get(channel, now), now)
        allowed_at = tat - tolerance
        if allowed_at > now:
            return allowed_at
        self.tat[channel] = tat + interval
        return None


# -- erasure: the delete ports (services/privacy_ports.py) on the everyday fakes -------------

from tests.unit.fakes import FakeContactRepository, FakeEventStore  # noqa: E402
from chalicelib.services.privacy_ports import ContactErasure, EventErasure  # noqa: E402


class ErasableEventStore(FakeEventStore, EventErasure):
    def erase_partition(self, partition, limit=500):
        keys = sorted(k for k in self.items if k[0] == partition)
        for key in keys[:limit]:
            del self.items[key]
        return len(keys[:limit]), len(keys) <= limit


class ErasableContactRepository(FakeContactRepository, ContactErasure):
    def forget_identifier(self, identifier, contact_id):
        with self.lock:
            if self.identities.get(identifier) != contact_id:
                return False
            del self.identities[identifier]
            return True

    def delete_contact(self, contact_id):
        with self.lock:
            return self.contacts.pop(contact_id, None) is not None
