"""The messages queues on SQS: marketing and transactional messages each on their own queue
(and consumer), so a receipt never waits behind a bulk send. A queue message carries only the
message id; everything else is in the message log. A message that must wait (deferred, or a
provider retry) stays on its queue, made visible again later with ChangeMessageVisibility, as
the effects queue does (at most 12 hours per receive: a longer wait wakes, is checked again,
and sleeps on). Inside `batched()` (a broadcast's fan-out batch) the enqueued messages are sent
ten per SendMessageBatch when the batch ends; an entry SQS refuses raises there, so the batch
is retried and its requests enqueue the messages that are still waiting to be claimed."""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager

import boto3

from chalicelib.domain.messaging.consent import TRANSACTIONAL
from chalicelib.services.message_ports import MessageQueue

MAX_DELAY = 900  # DelaySeconds' ceiling
# SQS's ceiling is 12 hours counted from the receive, not from this call: a margin of five
# minutes covers the time the consumer has held the message (its timeout is one minute).
MAX_VISIBILITY = 12 * 3600 - 300
BATCH = 10  # SendMessageBatch's limit


class QueueBatchFailed(Exception):
    """SQS refused some messages of a batch: the caller's batch is retried."""


class SqsMessageQueue(MessageQueue):
    def __init__(self, marketing_queue: str, transactional_queue: str, client=None):
        self.names = {"marketing": marketing_queue, TRANSACTIONAL: transactional_queue}
        self._client = client
        self._urls: dict[str, str] = {}
        self._local = threading.local()

    @contextmanager
    def batched(self):
        """Messages enqueued inside are sent when it ends, ten per request (nested: the outer sends)."""
        if getattr(self._local, "pending", None) is not None:
            yield
            return
        self._local.pending = []
        try:
            yield
        finally:
            pending, self._local.pending = self._local.pending, None
            self._send_batches(pending)

    def _send_batches(self, pending: list[tuple[str, str, int]]) -> None:
        refused = []
        for lane in {lane for _, lane, _ in pending}:
            entries = [(mid, delay) for mid, lane_of, delay in pending if lane_of == lane]
            for start in range(0, len(entries), BATCH):
                answer = self.client.send_message_batch(QueueUrl=self.url(lane), Entries=[
                    {"Id": str(i), "MessageBody": json.dumps({"message_id": mid}), "DelaySeconds": delay}
                    for i, (mid, delay) in enumerate(entries[start:start + BATCH])])
                refused += [f"{e.get('Id')}: {e.get('Code')}" for e in answer.get("Failed") or ()]
        if refused:
            raise QueueBatchFailed(f"SQS refused {len(refused)} message(s): {', '.join(refused[:5])}")

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("sqs")
        return self._client

    def url(self, lane: str) -> str:
        lane = TRANSACTIONAL if lane == TRANSACTIONAL else "marketing"
        if lane not in self._urls:
            self._urls[lane] = self.client.get_queue_url(QueueName=self.names[lane])["QueueUrl"]
        return self._urls[lane]

    def enqueue(self, message_id: str, lane: str, delay_seconds: float = 0) -> None:
        delay = max(0, min(int(round(delay_seconds)), MAX_DELAY))
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            pending.append((message_id, lane, delay))
            return
        self.client.send_message(QueueUrl=self.url(lane), MessageBody=json.dumps({"message_id": message_id}),
                                 DelaySeconds=delay)

    def retry_later(self, lane: str, receipt_handle: str, seconds: float) -> None:
        self.client.change_message_visibility(QueueUrl=self.url(lane), ReceiptHandle=receipt_handle,
                                              VisibilityTimeout=max(0, min(int(round(seconds)), MAX_VISIBILITY)))


def message_id_of(body: str) -> str:
    """The message id a queue message carries; ValueError for anything else."""
    try:
        doc = json.loads(body)
    except (TypeError, ValueError):
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("message_id"), str) or not doc["message_id"]:
        raise ValueError("no message_id")
    return doc["message_id"]
