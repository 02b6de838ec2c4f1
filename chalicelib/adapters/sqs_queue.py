"""One SQS queue, found by name: the client and the queue's URL are looked up once, when first
needed (a Lambda that never enqueues never calls GetQueueUrl)."""
from __future__ import annotations

import boto3


class SqsQueue:
    def __init__(self, queue_name: str, client=None):
        self.queue_name = queue_name
        self._client = client
        self._url: str | None = None

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("sqs")
        return self._client

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self.client.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
        return self._url
