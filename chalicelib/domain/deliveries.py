"""Deliveries to destinations: what one queued delivery is, and when a failed one is tried
again or parked.

A delivery is identified by `<cause>:<destination id>`, where the cause is the messageId of
the internal event it reports: the same fact published twice is the same delivery, and a
receiver sees the same `X-Mercurio-Delivery` header on every attempt.

Back-off: the n-th retry waits `first_retry * 2**(n-1)` seconds, capped at `max_delay`
(2 s, 4 s, 8 s … 15 min with the defaults), until `horizon` has passed since the first
attempt (24 h on AWS); then the delivery is parked with the last error as its reason. A
parked delivery stays visible and can be replayed by an operator.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from chalicelib.domain.events import iso, parse_timestamp

PENDING, DELIVERED, RETRYING, PARKED = "pending", "delivered", "retrying", "parked"
STATUSES = (PENDING, DELIVERED, RETRYING, PARKED)
MAX_ERROR = 300


class InvalidDeliveryMessage(ValueError):
    """A queue message that is not a delivery this version can read."""


@dataclass(frozen=True)
class DeliveryMessage:
    delivery_id: str
    destination_id: str
    payload: dict
    enqueued_at: str

    def to_json(self) -> str:
        return json.dumps({"delivery_id": self.delivery_id, "destination_id": self.destination_id,
                           "payload": self.payload, "enqueued_at": self.enqueued_at},
                          ensure_ascii=False, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, body: str) -> "DeliveryMessage":
        try:
            data = json.loads(body)
            message = cls(delivery_id=data["delivery_id"], destination_id=data["destination_id"],
                          payload=data["payload"], enqueued_at=data["enqueued_at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidDeliveryMessage(f"not a delivery message: {exc}") from None
        if not all(isinstance(v, str) and v for v in (message.delivery_id, message.destination_id,
                                                        message.enqueued_at)) \
                or not isinstance(message.payload, dict):
            raise InvalidDeliveryMessage("a delivery message needs delivery_id, destination_id, payload, enqueued_at")
        return message


def delivery_id(cause: str, destination_id: str) -> str:
    return f"{cause}:{destination_id}"


@dataclass(frozen=True)
class RetryPolicy:
    first_retry: float = 2.0
    max_delay: float = 900.0
    horizon: float = 24 * 3600.0

    def delay(self, failed_attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the n-th failed attempt (n >= 1). A receiver's Retry-After
        is honoured as a minimum, within the cap."""
        exponent = min(max(failed_attempts - 1, 0), 40)  # 2**40 s is beyond any cap
        wait = min(self.first_retry * (2 ** exponent), self.max_delay)
        if retry_after is not None:
            wait = min(max(wait, retry_after), self.max_delay)
        return wait


@dataclass(frozen=True)
class Retry:
    at: datetime
    delay: float


@dataclass(frozen=True)
class Park:
    reason: str


def after_failure(policy: RetryPolicy, failed_attempts: int, first_attempt_at: str, now: datetime,
                  error: str, retry_after: float | None = None, retryable: bool = True) -> Retry | Park:
    """What to do after a failed attempt: try again at some moment, or park."""
    if not retryable:
        return Park(error[:MAX_ERROR])
    delay = policy.delay(failed_attempts, retry_after)
    deadline = parse_timestamp(first_attempt_at) + timedelta(seconds=policy.horizon)
    when = now + timedelta(seconds=delay)
    if when > deadline:
        hours = policy.horizon / 3600
        span = f"{hours:g} h" if hours >= 1 else f"{policy.horizon:g} s"
        return Park(f"gave up after {failed_attempts} attempts over {span}: {error}"[:MAX_ERROR])
    return Retry(at=when, delay=delay)


def attempt_entry(now: datetime, outcome: str, http_status: int | None, error: str | None) -> dict:
    entry = {"at": iso(now), "outcome": outcome}
    if http_status is not None:
        entry["http_status"] = http_status
    if error:
        entry["error"] = error[:MAX_ERROR]
    return entry
