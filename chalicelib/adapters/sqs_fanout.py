"""The broadcast fan-out queue on SQS: each queue message is one batch of at most 100 contact
ids of a launching broadcast (services/broadcasts.py), sent ten to a SendMessageBatch call."""
from __future__ import annotations

import json

from chalicelib.adapters.sqs_queue import SqsQueue
from chalicelib.services.broadcast_ports import FanOutQueue

SQS_BATCH = 10  # SendMessageBatch's limit


class FanOutNotQueued(Exception):
    """SQS refused some entries of a batch: the launch slice runs again (same batches)."""


class SqsFanOutQueue(SqsQueue, FanOutQueue):
    def send(self, batches: list[dict]) -> None:
        for start in range(0, len(batches), SQS_BATCH):
            entries = [{"Id": str(i), "MessageBody": json.dumps(batch, separators=(",", ":"))}
                       for i, batch in enumerate(batches[start:start + SQS_BATCH])]
            answer = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            if answer.get("Failed"):
                raise FanOutNotQueued(f"{len(answer['Failed'])} fan-out batch(es) not queued: "
                                      f"{answer['Failed'][0].get('Message') or answer['Failed'][0].get('Code')}")


def batch_of(body: str) -> dict:
    """The fan-out batch a queue message carries; ValueError for anything else."""
    try:
        doc = json.loads(body)
    except (TypeError, ValueError):
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("broadcast"), str) or not isinstance(doc.get("contacts"), list):
        raise ValueError("not a fan-out batch (broadcast and contacts)")
    return doc
