"""local/queue_bridge.py on the journey-events FIFO queue as the template creates it (moto):
one contact's signals reach the consumer in the order they were sent, in Lambda's FIFO
record shape; what the consumer reports as failed stays on the queue and holds back the
rest of that contact's signals, never another contact's; what it handled is deleted."""
from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from local.provision import provision
from local.queue_bridge import QueueBridge


@pytest.fixture
def queue_url():
    with mock_aws():
        yield provision("fifo")["JourneyEventsQueue"]


def send(sqs, queue_url: str, contact: str, signal_id: str) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"kind": "event", "id": signal_id, "contact_id": contact}),
                     MessageGroupId=contact, MessageDeduplicationId=signal_id)


def ids(event: dict) -> list[str]:
    return [json.loads(record["body"])["id"] for record in event["Records"]]


def test_each_contacts_signals_arrive_in_order_in_lambdas_fifo_shape_and_are_deleted(queue_url):
    sqs = boto3.client("sqs", region_name="us-east-1")
    for contact, signal_id in (("c-1", "a1"), ("c-2", "b1"), ("c-1", "a2"), ("c-1", "a3")):
        send(sqs, queue_url, contact, signal_id)
    send(sqs, queue_url, "c-1", "a2")  # the same signal again: deduplicated by its id
    batches: list[dict] = []
    bridge = QueueBridge(queue_url, lambda event: batches.append(event) or {"batchItemFailures": []})

    assert bridge.poll_once(wait_seconds=0) == 4
    (event,) = batches
    assert ids(event) == ["a1", "b1", "a2", "a3"]
    for record in event["Records"]:
        assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"].endswith(":mercurio-fifo-journey-events.fifo")
        assert record["attributes"]["MessageGroupId"] == json.loads(record["body"])["contact_id"]
        assert record["attributes"]["MessageDeduplicationId"] == json.loads(record["body"])["id"]
        assert record["attributes"]["SequenceNumber"]
    assert bridge.waiting() == 0 and bridge.handled == 4


def test_a_failed_signal_holds_back_its_contact_only_and_comes_back_first(queue_url):
    sqs = boto3.client("sqs", region_name="us-east-1")
    for contact, signal_id in (("c-1", "a1"), ("c-2", "b1"), ("c-1", "a2")):
        send(sqs, queue_url, contact, signal_id)
    seen: list[list[str]] = []

    def consumer(event: dict) -> dict:
        seen.append(ids(event))
        if len(seen) > 1:
            return {"batchItemFailures": []}
        # a1 fails: it and the rest of c-1's signals are reported, as a FIFO consumer must,
        # and made visible again at once (a consumer's back-off, here zero).
        failed = [r for r in event["Records"] if r["attributes"]["MessageGroupId"] == "c-1"]
        for record in failed:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"],
                                          VisibilityTimeout=0)
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in failed]}

    bridge = QueueBridge(queue_url, consumer)
    assert bridge.poll_once(wait_seconds=0) == 3
    assert bridge.handled == 1 and bridge.waiting() == 2  # b1 deleted; a1 and a2 stay
    assert bridge.poll_once(wait_seconds=0) == 2
    assert seen == [["a1", "b1", "a2"], ["a1", "a2"]]
    assert bridge.waiting() == 0


def test_while_a_contacts_signal_is_being_handled_its_next_one_is_not_handed_out(queue_url):
    """moto holds a message group while one of its messages is in flight, as SQS does: a
    second poller (Lambda runs several) gets the other contact's signal, not c-1's next."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    for contact, signal_id in (("c-1", "a1"), ("c-1", "a2"), ("c-2", "b1")):
        send(sqs, queue_url, contact, signal_id)
    meanwhile: list[str] = []

    def consumer(event: dict) -> dict:
        other = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        meanwhile.extend(json.loads(m["Body"])["id"] for m in other.get("Messages", []))
        for message in other.get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return {"batchItemFailures": []}

    bridge = QueueBridge(queue_url, consumer, batch_size=1)
    assert bridge.poll_once(wait_seconds=0) == 1
    assert meanwhile == ["b1"]
    assert bridge.poll_once(wait_seconds=0) == 1  # a2, once a1 is deleted
    assert bridge.waiting() == 0
