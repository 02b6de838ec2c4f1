"""What Lambda's SQS event source mapping does on AWS, for the emulator: long-poll the
effects queue and invoke the app's queue consumer with batches of messages in Lambda's SQS
event shape.

As with ReportBatchItemFailures: the messages the handler did not report as failed are
deleted; the failed ones stay on the queue, invisible for whatever the handler set with
ChangeMessageVisibility (or the queue's visibility timeout), and come back then. A handler
that raises fails the whole batch, which also stays.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import boto3

from local.polling import start_polling

log = logging.getLogger("mercurio.local.queue")


def to_lambda_record(message: dict, queue_arn: str, region: str) -> dict:
    attributes = message.get("MessageAttributes") or {}
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes") or {},
        "messageAttributes": {name: {"stringValue": value.get("StringValue"), "binaryValue": value.get("BinaryValue"),
                                     "stringListValues": [], "binaryListValues": [],
                                     "dataType": value.get("DataType")}
                              for name, value in attributes.items()},
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class QueueBridge:
    def __init__(self, queue_url: str, handler: Callable[[dict], dict | None], endpoint_url: str | None = None,
                 region: str = "us-east-1", batch_size: int = 10, wait_seconds: int = 1):
        self.queue_url = queue_url
        self.handler = handler
        self.region = region
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.client = boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
        self.queue_arn = self.client.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.handled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self, wait_seconds: int | None = None) -> int:
        """Receive one batch (long-polling up to `wait_seconds`) and hand it to the handler;
        return how many messages were received."""
        response = self.client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds if wait_seconds is None else wait_seconds,
            AttributeNames=["All"], MessageAttributeNames=["All"])
        messages = response.get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [to_lambda_record(m, self.queue_arn, self.region) for m in messages]}
        try:
            result = self.handler(event) or {}
        except Exception:  # the whole batch failed: every message stays on the queue
            log.exception("queue handler failed the whole batch")
            return len(messages)
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures") or []}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
        self.handled += len(done)
        return len(messages)

    def waiting(self) -> int:
        """Messages on the queue, visible or not (those waiting for a retry included)."""
        attributes = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return sum(int(v) for v in attributes.values())

    def drain(self, timeout: float = 30.0) -> int:
        """Deliver until the queue is empty, retries included (for tests): returns how many
        messages were received meanwhile."""
        received = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received += self.poll_once()
            if self.waiting() == 0:
                return received
        raise TimeoutError(f"effects queue not drained within {timeout}s ({self.waiting()} messages left)")

    def start(self) -> None:
        self._thread = start_polling("queue-bridge", self.poll_once, self._stop, 0, log)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
