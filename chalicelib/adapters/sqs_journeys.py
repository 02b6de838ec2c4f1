"""The journey-events queue on SQS (FIFO): one message per signal, grouped by contact so a
contact's signals are handled one at a time and in order (a purchase never overtakes the
add-to-cart that enrolled the cart), deduplicated by the signal's id for five minutes (the
runtime also remembers the signals it applied, beyond that window)."""
from __future__ import annotations

import hashlib
import json

from chalicelib.adapters.sqs_queue import SqsQueue
from chalicelib.services.journey_ports import JourneyQueue

SQS_BATCH = 10


class SignalsNotQueued(Exception):
    """SQS refused some signals: the caller's retry sends them again (deduplicated)."""


def _dedup(signal: dict) -> str:
    return hashlib.sha256(json.dumps([signal.get("kind"), signal["id"], signal.get("contact_id"),
                                      signal.get("enrollment_id"), signal.get("journey_id")]).encode()).hexdigest()


class Redeliver(SqsQueue):
    """A consumer's back-off: the message it could not handle comes back after `seconds`."""

    def retry_later(self, receipt_handle: str, seconds: float) -> None:
        self.client.change_message_visibility(QueueUrl=self.url, ReceiptHandle=receipt_handle,
                                              VisibilityTimeout=int(min(max(seconds, 0), 43200)))


class SqsJourneyQueue(Redeliver, JourneyQueue):
    def send(self, signals: list[dict]) -> None:
        for start in range(0, len(signals), SQS_BATCH):
            chunk = signals[start:start + SQS_BATCH]
            entries = [{"Id": str(i), "MessageBody": json.dumps(s, separators=(",", ":"), default=str),
                        "MessageGroupId": s.get("contact_id") or s.get("enrollment_id") or s["id"],
                        "MessageDeduplicationId": _dedup(s)} for i, s in enumerate(chunk)]
            answer = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            if answer.get("Failed"):
                failed = answer["Failed"][0]
                raise SignalsNotQueued(f"{len(answer['Failed'])} journey signal(s) not queued: "
                                       f"{failed.get('Message') or failed.get('Code')}")
