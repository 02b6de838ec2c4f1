"""The effects queue on SQS: deliveries are enqueued in batches (SendMessageBatch, up to
10 messages and 256 KB per call) and, when an attempt fails, the same message is made
visible again later (ChangeMessageVisibility) by the consumer.
"""
from __future__ import annotations

from chalicelib.domain.deliveries import DeliveryMessage
from chalicelib.adapters.sqs_queue import SqsQueue
from chalicelib.services.effect_ports import EffectsQueue

BATCH_MESSAGES = 10
BATCH_BYTES = 256 * 1024
MAX_VISIBILITY = 12 * 3600  # SQS's ceiling for one receive


class EnqueueFailed(Exception):
    """SQS refused some messages: the caller must publish again (nothing is dropped)."""


class SqsEffectsQueue(SqsQueue, EffectsQueue):
    def send(self, messages: list[DeliveryMessage]) -> None:
        batch: list[tuple[str, str]] = []
        size = 0
        for message in messages:
            body = message.to_json()
            length = len(body.encode("utf-8"))
            if length > BATCH_BYTES:
                raise EnqueueFailed(f"delivery {message.delivery_id} is {length} bytes, over SQS's 256 KB")
            if len(batch) == BATCH_MESSAGES or size + length > BATCH_BYTES:
                self._send_batch(batch)
                batch, size = [], 0
            batch.append((message.delivery_id, body))
            size += length
        if batch:
            self._send_batch(batch)

    def _send_batch(self, batch: list[tuple[str, str]]) -> None:
        entries = [{"Id": str(i), "MessageBody": body,
                    "MessageAttributes": {"delivery_id": {"DataType": "String", "StringValue": delivery}}}
                   for i, (delivery, body) in enumerate(batch)]
        response = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
        failed = response.get("Failed") or []
        if failed:
            first = failed[0]
            raise EnqueueFailed(f"{len(failed)} of {len(entries)} deliveries not enqueued "
                                f"({first.get('Code')}: {first.get('Message')})")

    def retry_later(self, receipt_handle: str, seconds: float) -> None:
        """The message becomes visible again in `seconds` (whole seconds, at most 12 h)."""
        self.client.change_message_visibility(QueueUrl=self.url, ReceiptHandle=receipt_handle,
                                              VisibilityTimeout=max(0, min(int(round(seconds)), MAX_VISIBILITY)))
