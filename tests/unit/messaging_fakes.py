"""In-memory twins of the messaging ports (message log, suppressions, channel counters, send
rate, template store, messages queue) and of the channel senders, with the adapters' semantics:
conditional create and claim, forward-only status, suppression entries kept first-come."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta

from chalicelib.domain.messaging.consent import SuppressionEntry
from chalicelib.domain.messaging.messages import DEFERRED, SENDING, UNSENT, Message, StatusChange
from chalicelib.domain.messaging.policy import RateBudget, RateState, SendCounters, rate_ready_at, take_send
from chalicelib.services.channel_ports import ACCEPTED, ChannelResult, EmailSender, PushSender, SendQuota, SmsSender
from chalicelib.services.message_ports import ChannelStats, MessageLog, MessageQueue, SendRate, SuppressionStore
from chalicelib.services.template_store import StoredTemplate, TemplateStore


class FakeMessageLog(MessageLog):
    def __init__(self):
        self.messages: dict[str, Message] = {}
        self.leases: dict[str, datetime] = {}
        self.writes = 0

    def create(self, message):
        if message.id in self.messages:
            return False
        self.messages[message.id] = message
        self.writes += 1
        return True

    def get(self, message_id):
        return self.messages.get(message_id)

    def claim(self, message_id, change, lease_until):
        current = self.messages.get(message_id)
        if current is None:
            return None
        lease = self.leases.get(message_id)
        if not (current.status in UNSENT or (current.status == SENDING and lease is not None and lease < change.at)):
            return None
        claimed = replace(current, status=SENDING, timeline=current.timeline + (change,))
        self.messages[message_id], self.leases[message_id] = claimed, lease_until
        self.writes += 1
        return claimed

    def release(self, message_id, change):
        current = self.messages.get(message_id)
        if current is None or current.status != SENDING:
            return None
        released = replace(current, status=DEFERRED, timeline=current.timeline + (change,))
        self.messages[message_id] = released
        self.leases.pop(message_id, None)
        self.writes += 1
        return released

    def advance(self, message_id, change, **fields):
        current = self.messages.get(message_id)
        if current is None:
            return None
        if "links" in fields:
            fields["links"] = tuple(fields["links"])
        updated = replace(current, **fields).advanced(change)
        self.messages[message_id] = updated
        self.writes += 1
        return updated

    def by_provider_id(self, provider_id):
        return next((m for m in self.messages.values() if m.provider_id == provider_id), None)

    def for_contact(self, contact_id, since=None, limit=100, cursor=None):
        rows = sorted((m for m in self.messages.values() if m.contact_id == contact_id
                       and (since is None or m.requested_at >= since)), key=lambda m: m.requested_at, reverse=True)
        start = int(cursor) if cursor else 0
        page = rows[start:start + limit]
        return page, (str(start + limit) if start + limit < len(rows) else None)

    def erase_contact(self, contact_id):
        gone = [k for k, m in self.messages.items() if m.contact_id == contact_id]
        for key in gone:
            del self.messages[key]
        return len(gone)


class FakeSuppressionStore(SuppressionStore):
    def __init__(self):
        self.entries: dict[tuple[str, str, str], SuppressionEntry] = {}

    def find(self, channel, address_hash):
        return tuple(e for (c, h, _), e in sorted(self.entries.items()) if c == channel and h == address_hash)

    def add(self, entry):
        self.entries.setdefault((entry.channel, entry.address_hash, entry.reason), entry)


class FakeChannelStats(ChannelStats):
    """Hourly buckets, as the DynamoDB adapter keeps them."""

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
    def __init__(self):
        self.states: dict[str, RateState] = {}

    def take(self, channel, lane, budget: RateBudget, now):
        state = self.states.get(channel, RateState())
        taken, new_state = take_send(budget, state, lane, now)
        if not taken:
            return rate_ready_at(budget, state, lane, now)
        self.states[channel] = new_state
        return None


class FakeTemplateStore(TemplateStore):
    def __init__(self, files: dict[str, str] | None = None):
        self.files = dict(files or {})

    def get(self, filename):
        source = self.files.get(filename)
        return StoredTemplate(source, hashlib.sha256(source.encode()).hexdigest()[:12]) if source is not None else None

    def list(self):
        return sorted(self.files)

    def put(self, filename, source):
        self.files[filename] = source
        return self.get(filename)[1]


class FakeMessageQueue(MessageQueue):
    def __init__(self):
        self.enqueued: list[tuple[str, str, float]] = []
        self.delayed: list[tuple[str, str, float]] = []

    def enqueue(self, message_id, lane, delay_seconds=0):
        self.enqueued.append((message_id, lane, delay_seconds))

    def retry_later(self, lane, receipt_handle, seconds):
        self.delayed.append((lane, receipt_handle, seconds))


class FakeEmailSender(EmailSender):
    def __init__(self, results: list[ChannelResult] | None = None):
        self.sent: list[dict] = []
        self.results = list(results or [])

    def send_raw(self, raw, from_address, to_address, tags=None):
        result = self.results.pop(0) if self.results else ChannelResult(ACCEPTED, provider_id=f"ses-{len(self.sent) + 1}")
        if result.status == ACCEPTED:
            self.sent.append({"raw": raw, "from": from_address, "to": to_address, "tags": dict(tags or {})})
        return result

    def quota(self):
        return SendQuota(14.0, 50000.0, 0.0)


class FakeSmsSender(SmsSender):
    def __init__(self):
        self.sent: list[tuple[str, str, bool, str]] = []

    def send(self, phone, text, transactional, reference):
        self.sent.append((phone, text, transactional, reference))
        return ChannelResult(ACCEPTED, provider_id=f"sns-{len(self.sent)}")


class FakePushSender(PushSender):
    def __init__(self):
        self.sent: list[tuple[str, str, str]] = []

    def register(self, platform, token, contact_id):
        return f"arn:endpoint/{platform}/{token}"

    def send(self, endpoint, title, body, data, reference):
        self.sent.append((endpoint, title, body))
        return ChannelResult(ACCEPTED, provider_id=f"push-{len(self.sent)}")


# -- erasure (services/privacy.py) ---------------------------------------------------------

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
