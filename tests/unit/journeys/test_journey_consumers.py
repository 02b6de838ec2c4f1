"""The journey consumers' batch handling: a failed signal and the contact's later ones come back
with back-off, in order; a task message nobody can read is parked after its receives; a
journey version that no longer reads fails its execution with the reason."""
from __future__ import annotations

import json

from chalicelib.entrypoints.journey_runner import handle_signals, handle_tasks
from chalicelib.services.journey_runtime import Outcome, UnknownJourneyVersion


class Delays:
    def __init__(self):
        self.delayed: list[tuple[str, float]] = []

    def retry_later(self, receipt_handle, seconds):
        self.delayed.append((receipt_handle, seconds))


def sqs_event(*bodies, receives: int = 1, group: str = "c1") -> dict:
    return {"Records": [{"messageId": f"id-{i}", "receiptHandle": f"rh-{i}", "body": body if isinstance(body, str)
                         else json.dumps(body), "eventSource": "aws:sqs",
                         "attributes": {"ApproximateReceiveCount": str(receives), "MessageGroupId": group},
                         "messageAttributes": {}} for i, body in enumerate(bodies)]}


class Runtime:
    def __init__(self, fail_on: str | None = None):
        self.fail_on, self.seen, self.failed_tasks = fail_on, [], []

    def on_signal(self, signal):
        if signal["id"] == self.fail_on:
            raise ConnectionError("the table is throttling")
        self.seen.append(signal["id"])
        return Outcome(entered=1)

    def fail_task(self, token, error, cause):
        self.failed_tasks.append((token, error, cause))


def test_a_failed_signal_and_the_later_ones_of_the_batch_come_back_with_back_off():
    runtime, delays = Runtime(fail_on="s2"), Delays()
    response = handle_signals(sqs_event(*({"kind": "event", "id": f"s{i}"} for i in range(1, 5)), receives=3),
                              None, runtime, delays)
    assert runtime.seen == ["s1"]
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ["id-1", "id-2", "id-3"]
    assert delays.delayed == [("rh-1", 8.0), ("rh-2", 8.0), ("rh-3", 8.0)]


def test_an_unreadable_task_message_is_delayed_and_reported_failed():
    delays = Delays()
    response = handle_tasks(sqs_event("not json", {"enrollment_id": "e1"}), None, lambda m: Outcome(), Runtime(),
                            delays)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ["id-0", "id-1"]
    assert [r for r, _ in delays.delayed] == ["rh-0", "rh-1"]


def test_a_journey_version_that_no_longer_reads_fails_the_execution_with_the_reason():
    runtime = Runtime()

    def advance(message):
        raise UnknownJourneyVersion("journey x version 3 is not stored")

    response = handle_tasks(sqs_event({"enrollment_id": "e1", "task_token": "t1"}), None, advance, runtime, Delays())
    assert response["batchItemFailures"] == []
    assert runtime.failed_tasks == [("t1", "Mercurio.JourneyUnreadable", "journey x version 3 is not stored")]
