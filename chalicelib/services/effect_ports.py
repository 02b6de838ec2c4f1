"""Ports of the effects side: the queue effects leave through, the log of deliveries, and
the signing secrets. Named by role; the AWS adapters live in chalicelib/adapters/."""
from __future__ import annotations

import abc
from datetime import datetime

from chalicelib.domain.deliveries import DeliveryMessage


class EffectsQueue(abc.ABC):
    """Where deliveries wait for the queue consumer (SQS on AWS and locally)."""

    @abc.abstractmethod
    def send(self, messages: list[DeliveryMessage]) -> None:
        """Enqueue every message or raise (the caller's outbox is then published again)."""


class SecretMissing(Exception):
    """The signing secret does not exist (yet): a retryable failure."""


class SecretStore(abc.ABC):
    @abc.abstractmethod
    def get(self, name: str) -> str:
        """The secret's value; SecretMissing when there is none."""

    @abc.abstractmethod
    def put(self, name: str, value: str) -> None:
        """Store (or replace) the secret, encrypted; it is never read back through the API."""


class DeliveryConflict(Exception):
    """The delivery is not in a state that allows this (e.g. replaying one not parked)."""


class DeliveryStore(abc.ABC):
    """Every delivery to a destination, its status and attempts. Writes are conditional, so
    a redelivered queue message for a delivered delivery changes nothing."""

    @abc.abstractmethod
    def claim(self, message: DeliveryMessage, carrier: str, now: datetime, lease_seconds: float) -> dict | None:
        """Record the delivery if new and take the right to attempt it now, for the queue
        message `carrier` (which becomes the delivery's carrier; no other attempt starts
        until the lease ends). None when it must not be attempted now: delivered, parked,
        leased, or its next attempt is not due yet."""

    @abc.abstractmethod
    def get(self, destination_id: str, delivery_id: str) -> dict | None: ...

    @abc.abstractmethod
    def record_attempt(self, destination_id: str, delivery_id: str, status: str, attempt: dict,
                       now: datetime, next_attempt_at: str | None = None, error: str | None = None) -> dict:
        """Add one attempt and set the delivery's status; the lease is released."""

    @abc.abstractmethod
    def reopen(self, destination_id: str, delivery_id: str, now: datetime) -> dict:
        """A parked delivery back to pending with a fresh retry horizon (replay);
        DeliveryConflict when it is not parked."""

    @abc.abstractmethod
    def list(self, destination_id: str, status: str | None, limit: int,
             cursor: str | None) -> tuple[list[dict], str | None]:
        """Newest first; ValueError for a cursor this store did not return."""
