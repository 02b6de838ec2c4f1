"""The messages queues on SQS: marketing and transactional messages each on their own queue
(and consumer), so a receipt never waits behind a bulk send. A queue message carries only the
message id; everything else is in the message log. A message that must wait (deferred, or a
provider retry) stays on its queue, made visible again later with ChangeMessageVisibility, as
the effects queue does (at most 12 hours per receive: a longer wait wakes, is checked again,
and sleeps on)."""
from __future__ import annotations

import json

import boto3

from chalicelib.domain.messaging.consent import TRANSACTIONAL
from chalicelib.services.message_ports import MessageQueue

MAX_DELAY = 900  # DelaySeconds' ceiling
# SQS's ceiling is 12 hours counted from the receive, not from this call: a margin of five
# minutes covers the time the consumer has held the message (its timeout is one minute).
MAX_VISIBILITY = 12 * 3600 - 300


class SqsMessageQueue(MessageQueue):
    def __init__(self, marketing_queue: str, transactional_queue: str, client=None):
        self.names = {"marketing": marketing_queue, TRANSACTIONAL: transactional_queue}
        self._client = client
        self._urls: dict[str, str] = {}

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
        self.client.send_message(QueueUrl=self.url(lane), MessageBody=json.dumps({"message_id": message_id}),
                                 DelaySeconds=max(0, min(int(round(delay_seconds)), MAX_DELAY)))

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
