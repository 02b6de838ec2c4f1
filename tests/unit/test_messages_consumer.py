"""The messages queues' consumer: a message that must wait stays on the queue, delayed to its
moment, and is reported as a batch item failure; a done one is removed; an unreadable one
waits long, then the redrive policy parks it."""
from __future__ import annotations

import json

from chalicelib.entrypoints.messages import INVALID_MESSAGE_RETRY, handle_messages
from chalicelib.services.messaging import SendOutcome
from tests.unit.messaging_fakes import FakeMessageQueue


class ScriptedService:
    def __init__(self, outcomes: dict[str, SendOutcome]):
        self.outcomes = outcomes
        self.sent: list[str] = []

    def send(self, message_id):
        self.sent.append(message_id)
        return self.outcomes[message_id]


def record(n: int, body: str) -> dict:
    return {"messageId": f"q-{n}", "receiptHandle": f"rh-{n}", "body": body, "attributes": {},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:mercurio-test-messages", "awsRegion": "us-east-1"}


def test_waiting_messages_stay_delayed_on_their_lanes_queue_and_done_ones_go():
    service = ScriptedService({
        "m-sent": SendOutcome("sent", True),
        "m-night": SendOutcome("deferred", False, 8 * 3600.0, "quiet_hours", "quiet hours"),
        "m-skip": SendOutcome("skipped", True, code="no_consent"),
    })
    queue = FakeMessageQueue()
    event = {"Records": [record(1, json.dumps({"message_id": "m-sent"})),
                         record(2, json.dumps({"message_id": "m-night"})),
                         record(3, json.dumps({"message_id": "m-skip"})),
                         record(4, "not json")]}
    response = handle_messages(event, None, service, queue, "transactional")
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {"q-2", "q-4"}
    assert queue.delayed == [("transactional", "rh-2", 8 * 3600.0), ("transactional", "rh-4", INVALID_MESSAGE_RETRY)]
    assert service.sent == ["m-sent", "m-night", "m-skip"]
