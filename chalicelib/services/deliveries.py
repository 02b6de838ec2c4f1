"""Delivering what the effects queue holds to destinations, one attempt per receive, and
the delivery log operators read and replay from.

For each queue message: claim the delivery in the log (a delivered or parked one is a
no-op: the message is simply removed), make one signed POST, record the attempt, and say
what the queue must do with the message: remove it (delivered, parked) or show it again
after the back-off delay (see domain/deliveries.py for the schedule).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from chalicelib.domain.deliveries import (
    DELIVERED,
    PARKED,
    RETRYING,
    STATUSES,
    DeliveryMessage,
    Park,
    RetryPolicy,
    after_failure,
    attempt_entry,
)
from chalicelib.domain.destinations import Destination
from chalicelib.domain.events import iso, parse_timestamp
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.effect_ports import DeliveryConflict, DeliveryStore, EffectsQueue, SecretMissing, \
    SecretStore
from chalicelib.services.ports import Clock

MIN_SECRET, MAX_SECRET = 16, 4096
INTERNAL_FIELDS = ("lease_until", "carrier")  # bookkeeping of the consumer, not for operators
LEASE_SECONDS = 60.0  # longer than one attempt (the sender's timeout), shorter than any back-off cap


@dataclass(frozen=True)
class DeliveryOutcome:
    """What the queue does with the message: `done` removes it; otherwise it is shown
    again after `retry_in` seconds."""

    status: str  # delivered | retrying | parked | skipped | busy
    done: bool
    retry_in: float = 0.0
    reason: str = ""


class DeliveryService:
    def __init__(self, store: DeliveryStore, destination_of: Callable[[str], Destination | None], sender,
                 secrets: SecretStore, queue: EffectsQueue, clock: Clock, policy: RetryPolicy,
                 lease_seconds: float = LEASE_SECONDS):
        self.store = store
        self.destination_of = destination_of
        self.sender = sender  # WebhookSender: `attempt(url, payload, secret, delivery_id)`
        self.secrets = secrets
        self.queue = queue
        self.clock = clock
        self.policy = policy
        self.lease_seconds = lease_seconds

    # -- the queue consumer's unit of work ---------------------------------------------------

    def deliver(self, message: DeliveryMessage, carrier: str) -> DeliveryOutcome:
        """`carrier`: the id of the queue message that brought it (the same delivery may be
        enqueued twice when an outbox is published again)."""
        now = self.clock.now()
        record = self.store.claim(message, carrier, now, self.lease_seconds)
        if record is None:
            current = self.store.get(message.destination_id, message.delivery_id)
            status = current["status"] if current else "unknown"
            if status in (DELIVERED, PARKED):
                return DeliveryOutcome("skipped", done=True, reason=f"already {status}")
            if current is not None and current.get("carrier") not in (None, carrier):
                # A second copy of a delivery another message carries: removing it keeps
                # the back-off schedule (the carrier stays on the queue until it is done).
                return DeliveryOutcome("skipped", done=True, reason="duplicate of a queued delivery")
            # Attempted right now, or received before its next attempt: look again then.
            moments = [parse_timestamp(current[k]) for k in ("lease_until", "next_attempt_at")
                       if current is not None and current.get(k)]
            wait = max((m - now).total_seconds() for m in moments) if moments else self.lease_seconds
            return DeliveryOutcome("busy", done=False, retry_in=max(1.0, wait), reason="not due yet")

        destination = self.destination_of(message.destination_id)
        if destination is None:
            return self._failed(message, record, now, f"destination {message.destination_id!r} no longer exists",
                                None, retryable=False)
        try:
            secret = self.secrets.get(destination.secret_parameter)
        except SecretMissing:
            return self._failed(message, record, now,
                                f"signing secret {destination.secret_parameter} is not set (set it with PUT "
                                f"/v1/admin/destinations/{destination.id}/secret)", None)
        except Exception as exc:  # SSM throttled or unreachable: a later attempt may read it
            return self._failed(message, record, now, f"cannot read the signing secret: {exc}", None)
        attempt = self.sender.attempt(destination.url, message.payload, secret, message.delivery_id)
        if attempt.delivered:
            self.store.record_attempt(message.destination_id, message.delivery_id, DELIVERED,
                                      attempt_entry(now, DELIVERED, attempt.http_status, None), now)
            return DeliveryOutcome(DELIVERED, done=True, reason=attempt.reason)
        return self._failed(message, record, now, attempt.reason, attempt.http_status,
                            retryable=attempt.retryable, retry_after=attempt.retry_after)

    def _failed(self, message: DeliveryMessage, record: dict, now: datetime, error: str, http_status: int | None,
                retryable: bool = True, retry_after: float | None = None) -> DeliveryOutcome:
        failed = int(record.get("attempts") or 0) + 1
        decision = after_failure(self.policy, failed, record["first_attempt_at"], now, error, retry_after, retryable)
        if isinstance(decision, Park):
            self.store.record_attempt(message.destination_id, message.delivery_id, PARKED,
                                      attempt_entry(now, "failed", http_status, error), now, error=decision.reason)
            return DeliveryOutcome(PARKED, done=True, reason=decision.reason)
        self.store.record_attempt(message.destination_id, message.delivery_id, RETRYING,
                                  attempt_entry(now, "failed", http_status, error), now,
                                  next_attempt_at=iso(decision.at), error=error)
        return DeliveryOutcome(RETRYING, done=False, retry_in=decision.delay, reason=error)

    # -- operators -------------------------------------------------------------------------

    def _destination(self, destination_id: str) -> Destination:
        destination = self.destination_of(destination_id)
        if destination is None:
            raise NotFound(f"no destination {destination_id!r}")
        return destination

    def deliveries(self, destination_id: str, status: str | None, limit: int, cursor: str | None) -> dict:
        if status not in (None, "", *STATUSES):
            raise BadQuery(f"status must be one of {', '.join(STATUSES)}")
        try:
            rows, next_cursor = self.store.list(destination_id, status or None, limit, cursor)
        except ValueError as exc:
            raise BadQuery(str(exc)) from None
        page = {"destination_id": destination_id,
                "deliveries": [{k: v for k, v in row.items() if k not in ("payload", *INTERNAL_FIELDS)}
                               for row in rows]}
        if next_cursor:
            page["next_cursor"] = next_cursor
        return page

    def delivery(self, destination_id: str, delivery_id: str) -> dict:
        row = self.store.get(destination_id, delivery_id)
        if row is None:
            raise NotFound(f"no delivery {delivery_id!r} to {destination_id!r}")
        return {k: v for k, v in row.items() if k not in INTERNAL_FIELDS}

    def replay(self, destination_id: str, delivery_id: str) -> dict:
        """A parked delivery goes back on the queue, with a fresh retry horizon."""
        row = self.delivery(destination_id, delivery_id)
        now = self.clock.now()
        try:
            reopened = self.store.reopen(destination_id, delivery_id, now)
        except DeliveryConflict as exc:
            raise BadQuery(str(exc)) from None
        message = DeliveryMessage(delivery_id=delivery_id, destination_id=destination_id, payload=row["payload"],
                                  enqueued_at=iso(now))
        try:
            self.queue.send([message])  # its carrier is whichever message claims it first
        except Exception as exc:
            # Not on the queue: park it again so it stays visible and can be replayed later.
            self.store.record_attempt(destination_id, delivery_id, PARKED,
                                      attempt_entry(now, "replay failed", None, str(exc)), now,
                                      error=f"replay could not be enqueued: {exc}")
            raise
        return {k: v for k, v in reopened.items() if k not in ("payload", *INTERNAL_FIELDS)}

    def set_secret(self, destination_id: str, value: object) -> dict:
        destination = self._destination(destination_id)
        if not isinstance(value, str) or not MIN_SECRET <= len(value) <= MAX_SECRET or value != value.strip():
            raise BadQuery(f"secret must be a string of {MIN_SECRET} to {MAX_SECRET} characters, "
                           "without leading or trailing spaces")
        self.secrets.put(destination.secret_parameter, value)
        return {"destination_id": destination_id, "secret_parameter": destination.secret_parameter, "stored": True}

