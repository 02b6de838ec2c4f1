"""The local SQS event source mapping: Lambda's event shape, deletion of what succeeded,
failed messages left on the queue for the visibility the handler set."""
from __future__ import annotations

import boto3

from local.queue_bridge import QueueBridge


def send(aws_tables, *bodies: str) -> None:
    sqs = boto3.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=aws_tables["EffectsQueue"], MessageBody=body,
                         MessageAttributes={"delivery_id": {"DataType": "String", "StringValue": f"d-{body}"}})


def test_messages_arrive_in_lambda_shape_and_are_deleted_when_handled(aws_tables):
    send(aws_tables, "a", "b")
    seen = []
    bridge = QueueBridge(aws_tables["EffectsQueue"], lambda event: seen.extend(event["Records"]) or {})
    assert bridge.drain(timeout=10) == 2
    assert sorted(r["body"] for r in seen) == ["a", "b"]
    record = seen[0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == aws_tables["EffectsQueue.Arn"]
    assert record["receiptHandle"] and record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["delivery_id"]["stringValue"] == f"d-{record['body']}"
    assert bridge.waiting() == 0


def test_a_reported_failure_stays_on_the_queue_until_its_visibility_ends(aws_tables):
    send(aws_tables, "flaky", "fine")
    sqs = boto3.client("sqs")
    calls = []

    def handler(event):
        failures = []
        for record in event["Records"]:
            calls.append((record["body"], record["attributes"]["ApproximateReceiveCount"]))
            if record["body"] == "flaky" and record["attributes"]["ApproximateReceiveCount"] == "1":
                sqs.change_message_visibility(QueueUrl=aws_tables["EffectsQueue"],
                                              ReceiptHandle=record["receiptHandle"], VisibilityTimeout=1)
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    bridge = QueueBridge(aws_tables["EffectsQueue"], handler)
    bridge.drain(timeout=20)
    assert sorted(calls) == [("fine", "1"), ("flaky", "1"), ("flaky", "2")]
    assert bridge.waiting() == 0


def test_a_handler_that_raises_leaves_the_whole_batch(aws_tables):
    send(aws_tables, "x")
    bridge = QueueBridge(aws_tables["EffectsQueue"], lambda event: 1 / 0)
    assert bridge.poll_once(wait_seconds=0) == 1
    assert bridge.handled == 0 and bridge.waiting() == 1
