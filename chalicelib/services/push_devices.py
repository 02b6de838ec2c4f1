"""Registering mobile devices for push, off the stream: the effects queue's consumer takes a
`Push Token Seen` registration (services/handlers.py enqueues it), creates (or finds) the
device's SNS platform endpoint, and reports it back to the contact as a `Push Endpoint
Registered` event the stream processor applies (services/segmentation.py). A send that finds
an endpoint disabled reports `Push Endpoint Removed` the same way.

Idempotent: SNS returns the same endpoint for the same token, and the reported event's id
derives from the registration, so a redelivered queue message changes nothing twice.
A failure that may pass (throttling, a timeout) comes back with back-off; one that cannot (no
platform application for the device type) is parked with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from chalicelib.domain.deliveries import DeliveryMessage, Park, RetryPolicy, after_failure
from chalicelib.domain.messaging.push_devices import (
    PLATFORMS,
    PUSH_ENDPOINT_REGISTERED,
    PUSH_ENDPOINT_REMOVED,
    token_digest,
)
from chalicelib.services.deliveries import DeliveryOutcome
from chalicelib.services.ports import Clock, EventStore


class PermanentRegistrationError(Exception):
    """The registration cannot succeed by trying again (unknown device type…)."""


@dataclass
class PushDevices:
    register_endpoint: Callable[[str, str, str], str]  # (platform, token, contact id) → endpoint ARN
    events: EventStore
    clock: Clock
    policy: RetryPolicy
    permanent: tuple = (PermanentRegistrationError,)  # exception types that park at once
    ttl_days: int = 395

    def register(self, message: DeliveryMessage, attempts: int = 1) -> DeliveryOutcome:
        """One attempt; `attempts` counts this one (the queue's receive count)."""
        from chalicelib.services.interactions import append_contact_event

        payload = message.payload
        contact_id, platform, token = payload.get("contact_id"), payload.get("platform"), payload.get("token")
        if not all(isinstance(v, str) and v for v in (contact_id, platform, token)) or platform not in PLATFORMS:
            return DeliveryOutcome("parked", True, reason="a push registration needs contact_id, platform "
                                                          f"({' or '.join(PLATFORMS)}) and token")
        now = self.clock.now()
        try:
            endpoint = self.register_endpoint(platform, token, contact_id)
        except self.permanent as exc:
            return DeliveryOutcome("parked", True, reason=f"the device cannot be registered: {exc}")
        except Exception as exc:  # noqa: BLE001 - SNS throttling, a timeout: tried again later
            decision = after_failure(self.policy, attempts, message.enqueued_at, now, f"{type(exc).__name__}: {exc}")
            if isinstance(decision, Park):
                return DeliveryOutcome("parked", True, reason=decision.reason)
            return DeliveryOutcome("retrying", False, decision.delay, reason=f"{type(exc).__name__}: {exc}")
        digest = token_digest(token)
        append_contact_event(self.events, contact_id, PUSH_ENDPOINT_REGISTERED,
                             {"endpoint": endpoint, "platform": platform, "token": digest}, now,
                             f"push-registered:{message.delivery_id}", self.ttl_days)
        return DeliveryOutcome("delivered", True)

    def endpoint_disabled(self, contact_id: str, endpoint: str, message_id: str) -> None:
        """A send found the endpoint disabled (or gone): it leaves the contact."""
        from chalicelib.services.interactions import append_contact_event

        append_contact_event(self.events, contact_id, PUSH_ENDPOINT_REMOVED,
                             {"endpoint": endpoint, "message_id": message_id}, self.clock.now(),
                             f"push-removed:{endpoint}:{message_id}", self.ttl_days)
