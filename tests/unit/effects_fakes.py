"""In-memory twins of the effects ports (queue, delivery log, secrets) and a scripted
webhook sender, with the same conditional semantics as the AWS adapters."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta

from chalicelib.adapters.webhooks import WebhookAttempt
from chalicelib.domain.deliveries import DELIVERED, PARKED, PENDING, RETRYING, DeliveryMessage
from chalicelib.domain.events import iso
from chalicelib.services.effect_ports import DeliveryConflict, DeliveryStore, EffectsQueue, SecretMissing, \
    SecretStore


class FakeEffectsQueue(EffectsQueue):
    def __init__(self, fail: Exception | None = None):
        self.sent: list[DeliveryMessage] = []
        self.calls = 0
        self.fail = fail
        self.postponed: list[tuple[str, float]] = []

    def send(self, messages):
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        self.sent.extend(messages)

    def retry_later(self, receipt_handle, seconds):
        self.postponed.append((receipt_handle, seconds))


class FakeSecretStore(SecretStore):
    def __init__(self, secrets: dict | None = None):
        self.secrets = dict(secrets or {})

    def get(self, name):
        if name not in self.secrets:
            raise SecretMissing(f"the signing secret {name} is not set")
        return self.secrets[name]

    def put(self, name, value):
        self.secrets[name] = value


class FakeDeliveryStore(DeliveryStore):
    def __init__(self):
        self.items: dict[tuple[str, str], dict] = {}

    def claim(self, message, carrier, now, lease_seconds):
        key = (message.destination_id, message.delivery_id)
        item = self.items.get(key)
        stamp = iso(now)
        if item is None:
            item = {"destination_id": message.destination_id, "delivery_id": message.delivery_id,
                    "status": PENDING, "attempts": 0, "payload": copy.deepcopy(message.payload),
                    "event_type": message.payload.get("type", ""), "created_at": stamp,
                    "first_attempt_at": stamp, "updated_at": stamp, "attempt_log": []}
            self.items[key] = item
        elif item["status"] not in (PENDING, RETRYING) or item.get("lease_until", "") >= stamp \
                or item.get("next_attempt_at", "") > stamp:
            return None
        item["lease_until"] = iso(now + timedelta(seconds=lease_seconds))
        item["carrier"] = carrier
        return copy.deepcopy(item)

    def get(self, destination_id, delivery_id):
        return copy.deepcopy(self.items.get((destination_id, delivery_id)))

    def record_attempt(self, destination_id, delivery_id, status, attempt, now, next_attempt_at=None, error=None):
        item = self.items[(destination_id, delivery_id)]
        item.update(status=status, updated_at=iso(now), attempts=item["attempts"] + 1)
        item["attempt_log"].append(attempt)
        item.pop("lease_until", None)
        item.pop("next_attempt_at", None)
        if next_attempt_at:
            item["next_attempt_at"] = next_attempt_at
        if error:
            item["last_error"] = error
        if status == DELIVERED:
            item["delivered_at"] = iso(now)
        if status == PARKED:
            item["parked_reason"] = error or "parked"
        return copy.deepcopy(item)

    def reopen(self, destination_id, delivery_id, now):
        item = self.items.get((destination_id, delivery_id))
        if item is None:
            raise KeyError(delivery_id)
        if item["status"] != PARKED:
            raise DeliveryConflict(f"delivery {delivery_id} is {item['status']}: only a parked delivery can be replayed")
        item.update(status=PENDING, first_attempt_at=iso(now), updated_at=iso(now))
        for name in ("next_attempt_at", "lease_until", "parked_reason", "carrier"):
            item.pop(name, None)
        return copy.deepcopy(item)

    def list(self, destination_id, status, limit, cursor):
        rows = sorted((i for (d, _), i in self.items.items() if d == destination_id and status in (None, i["status"])),
                      key=lambda i: i["updated_at"], reverse=True)
        start = int(cursor) if cursor else 0
        page = rows[start:start + limit]
        return [copy.deepcopy(r) for r in page], (str(start + limit) if start + limit < len(rows) else None)


class ScriptedSender:
    """Answers each attempt with the next scripted outcome (the last one repeats)."""

    def __init__(self, *outcomes: WebhookAttempt):
        self.outcomes = list(outcomes) or [ok()]
        self.calls: list[dict] = []

    def attempt(self, url, payload, secret, delivery_id, *, allow_private=None):
        self.calls.append({"url": url, "payload": payload, "secret": secret, "delivery_id": delivery_id})
        return self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]


def ok(status: int = 200) -> WebhookAttempt:
    return WebhookAttempt(True, status, f"HTTP {status}", retryable=False)


def server_error(status: int = 503, retry_after: float | None = None) -> WebhookAttempt:
    return WebhookAttempt(False, status, f"HTTP {status}", retryable=True, retry_after=retry_after)


def refused() -> WebhookAttempt:
    return WebhookAttempt(False, None, "refused: 10.0.0.1 is not public", retryable=False, sent=False)


def at(text: str) -> datetime:
    from chalicelib.domain.events import parse_timestamp

    return parse_timestamp(text)
