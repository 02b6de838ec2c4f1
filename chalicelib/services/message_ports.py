"""Ports of messaging: the message log, the suppression list, the channels' recent outcome
counts (for the circuit breaker), and the send-rate state (templates: services/template_store.py).
Named by role; the AWS adapters live in chalicelib/adapters/, fakes in tests/unit.
"""
from __future__ import annotations

import abc
from datetime import datetime

from chalicelib.domain.messaging.consent import SuppressionEntry
from chalicelib.domain.messaging.messages import FAILED, SENT, SKIPPED, Message, StatusChange, rank
from chalicelib.domain.messaging.policy import PastSend, RateBudget, SendCounters


class MessageLog(abc.ABC):
    """Every message, its status and timeline. Creation is conditional (the deterministic id
    makes a second request for the same cause a no-op) and so is the claim before the
    provider call, which is what makes a retried send go out once."""

    @abc.abstractmethod
    def create(self, message: Message) -> bool:
        """Store a new message; False (and nothing written) when that id already exists."""

    @abc.abstractmethod
    def get(self, message_id: str) -> Message | None: ...

    @abc.abstractmethod
    def claim(self, message_id: str, change: StatusChange, lease_until: datetime) -> Message | None:
        """Move a queued or deferred message (or one whose sending lease has run out) to
        `sending`, for one worker; None when another worker has it or it has left already."""

    @abc.abstractmethod
    def advance(self, message_id: str, change: StatusChange, **fields) -> Message | None:
        """Append a status change (the status moves forward only, see messages.rank) and set
        the given fields (`provider_id`, `links`, `subject`, `address`…). None for an unknown id."""

    @abc.abstractmethod
    def by_provider_id(self, provider_id: str) -> Message | None:
        """The message a provider's id (SES MessageId, SNS MessageId) belongs to."""

    @abc.abstractmethod
    def for_contact(self, contact_id: str, since: datetime | None = None, limit: int = 100,
                    cursor: str | None = None) -> tuple[list[Message], str | None]:
        """The contact's messages, newest first (requested_at), a bounded page."""

    @abc.abstractmethod
    def erase_contact(self, contact_id: str) -> int:
        """Delete every message of the contact (erasure); the number deleted."""

    def record_once(self, message_id: str, change: StatusChange) -> tuple[str, Message | None]:
        """Append `change` unless the very same entry is on the timeline already (a redelivered
        provider notification): ("applied" | "duplicate" | "unknown", the message). A log may
        do it in one conditional write, without reading the message first."""
        message = self.get(message_id)
        if message is None:
            return "unknown", None
        if change in message.timeline:
            return "duplicate", message
        return "applied", self.advance(message_id, change)

    def sends_of(self, contact_id: str, since: datetime, limit: int = 200) -> list[tuple[str, PastSend]]:
        """What the frequency caps read: (message id, the send) of the contact's messages
        requested since `since` that were sent (and did not end skipped or failed). A log may
        answer it from an index without reading the messages."""
        rows, _ = self.for_contact(contact_id, since=since, limit=limit)
        sends = []
        for row in rows:
            if rank(row.status) < rank(SENT) or row.status in (SKIPPED, FAILED):
                continue
            at = next((c.at for c in row.timeline if c.status == SENT), None)
            if at is not None:
                sends.append((row.id, PastSend(at, row.channel, row.lane)))
        return sends


class SuppressionStore(abc.ABC):
    """Suppressed addresses by salted hash: nothing here holds an address."""

    @abc.abstractmethod
    def find(self, channel: str, address_hash: str) -> tuple[SuppressionEntry, ...]: ...

    @abc.abstractmethod
    def add(self, entry: SuppressionEntry) -> None:
        """Idempotent: the same channel, hash and reason again keeps the first entry."""


class ChannelStats(abc.ABC):
    """Per channel and hour: sends, permanent bounces and complaints, added atomically; read
    over a recent window for the circuit breaker."""

    @abc.abstractmethod
    def add(self, channel: str, at: datetime, sent: int = 0, bounced: int = 0, complained: int = 0) -> None: ...

    @abc.abstractmethod
    def window(self, channel: str, now: datetime, hours: int) -> SendCounters: ...


class SendRate(abc.ABC):
    """The channel's token bucket (GCRA: one timestamp per channel, one conditional write)."""

    @abc.abstractmethod
    def take(self, channel: str, lane: str, budget: RateBudget, now: datetime) -> datetime | None:
        """Spend one send now: None when taken, else the earliest moment one fits."""


class MessageQueue(abc.ABC):
    """Where requested messages wait for the sender: one queue per lane, so a transactional
    message never waits behind a bulk send."""

    @abc.abstractmethod
    def enqueue(self, message_id: str, lane: str, delay_seconds: float = 0) -> None: ...

    @abc.abstractmethod
    def retry_later(self, lane: str, receipt_handle: str, seconds: float) -> None:
        """The received queue message comes back in `seconds` (capped by the queue's limit)."""
