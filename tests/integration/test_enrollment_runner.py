"""The generic enrollment runner (infrastructure/enrollment-runner.asl.json) executed by moto's
Step Functions: the test plays the two queue consumers (the one running the journey engine
for Advance, the one registering event-wait tokens) and reads the execution history back.

No timed assertions: the waits are real (moto sleeps in Wait and counts TimeoutSeconds) but
short, and every poll has a deadline that only bounds a failure."""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

ASL = Path(__file__).resolve().parents[2] / "infrastructure" / "enrollment-runner.asl.json"
ROLE = "arn:aws:iam::123456789012:role/mercurio-test-enrollment-runner"
DEADLINE_SECONDS = 30  # bounds a failure only; a passing run ends as soon as the machine does


def definition() -> dict:
    return json.loads(ASL.read_text())


class Runner:
    """The state machine in moto plus a test consumer for its two queues."""

    def __init__(self):
        self.sqs = boto3.client("sqs")
        self.sfn = boto3.client("stepfunctions")
        self.advance_queue = self.sqs.create_queue(QueueName="mercurio-test-journey-advance")["QueueUrl"]
        self.event_wait_queue = self.sqs.create_queue(QueueName="mercurio-test-journey-event-wait")["QueueUrl"]
        text = (ASL.read_text().replace("${AdvanceQueueUrl}", self.advance_queue)
                .replace("${EventWaitQueueUrl}", self.event_wait_queue))
        self.arn = self.sfn.create_state_machine(
            name="mercurio-test-enrollment-runner", definition=text, roleArn=ROLE)["stateMachineArn"]

    def start(self, enrollment_id: str) -> dict:
        return self.sfn.start_execution(stateMachineArn=self.arn, name=enrollment_id,
                                        input=json.dumps(start_input(enrollment_id)))

    def receive(self, queue_url: str) -> dict:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            messages = self.sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
            if messages:
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
                return json.loads(messages[0]["Body"])
        raise AssertionError(f"no message on {queue_url} within {DEADLINE_SECONDS} s")

    def answer(self, message: dict, output: dict) -> None:
        self.sfn.send_task_success(taskToken=message["task_token"], output=json.dumps(output))

    def finished(self, execution_arn: str) -> dict:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.05)  # polling only; nothing is asserted about how long it took
        raise AssertionError(f"{execution_arn} still running after {DEADLINE_SECONDS} s")

    def history(self, execution_arn: str) -> list[dict]:
        return self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]

    def stop_running(self) -> None:
        for execution in self.sfn.list_executions(stateMachineArn=self.arn, statusFilter="RUNNING")["executions"]:
            self.sfn.stop_execution(executionArn=execution["executionArn"])


def start_input(enrollment_id: str) -> dict:
    return {"enrollment_id": enrollment_id, "wait": {"kind": "start"}}


def entered_states(history: list[dict]) -> list[str]:
    return [event["stateEnteredEventDetails"]["name"] for event in history
            if event["type"].endswith("StateEntered")]


def transitions_per_wait(states: list[str]) -> list[int]:
    """For each round Advance → … → Advance: how many states were entered after the first
    Advance up to and including the next one (what Step Functions bills as transitions)."""
    advances = [index for index, name in enumerate(states) if name == "Advance"]
    return [later - earlier for earlier, later in zip(advances, advances[1:])]


def utc_seconds_from_now(seconds: int) -> str:
    """A TimestampPath value: moto 5.2.5 accepts only YYYY-MM-DDTHH:MM:SSZ."""
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def runner(monkeypatch):
    # moto compares a TimestampPath with the naive local clock: run it on UTC.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        runner = Runner()
        try:
            yield runner
        finally:
            runner.stop_running()
    monkeypatch.undo()
    time.tzset()


def test_the_definition_is_jsonpath_and_every_failure_ends_in_a_named_fail_state():
    machine = definition()
    states = machine["States"]
    text = ASL.read_text()
    assert machine["QueryLanguage"] == "JSONPath" and "JSONata" not in text
    assert set(re.findall(r"\$\{(\w+)\}", text)) == {"AdvanceQueueUrl", "EventWaitQueueUrl"}
    for name, state in states.items():
        for target in [state.get("Next"), state.get("Default"),
                       *(choice["Next"] for choice in state.get("Choices", [])),
                       *(catch["Next"] for catch in state.get("Catch", []))]:
            assert target is None or target in states, f"{name} → {target}"
    advance, event_wait = states["Advance"], states["WaitForEvent"]
    for task in (advance, event_wait):
        assert task["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
        assert task["Parameters"]["MessageBody"]["task_token.$"] == "$$.Task.Token"
        assert task["Parameters"]["MessageBody"]["enrollment_id.$"] == "$.enrollment_id"
        assert all(retry["BackoffRate"] > 1 for retry in task["Retry"])
        last_catch = task["Catch"][-1]
        assert last_catch["ErrorEquals"] == ["States.ALL"]
        assert states[last_catch["Next"]]["Type"] == "Fail"
        assert states[last_catch["Next"]]["ErrorPath"] == last_catch["ResultPath"] + ".Error"
    # A wait-for-event timeout is an outcome of the journey, never retried: it goes to Advance.
    assert not any("States.Timeout" in retry["ErrorEquals"] for retry in event_wait["Retry"])
    assert event_wait["Catch"][0] == {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.wait.timeout",
                                      "Next": "Advance"}
    assert states["WaitUntil"] == {"Type": "Wait", "TimestampPath": "$.wait.at", "Next": "Advance"}


def test_a_journey_waits_until_a_time_for_an_event_and_for_a_timeout_then_ends(runner):
    started = runner.start("enr-welcome-c1")

    first = runner.receive(runner.advance_queue)
    assert first["enrollment_id"] == "enr-welcome-c1" and first["after"] == {"kind": "start"}
    assert first["execution_arn"] == started["executionArn"]
    until = {"kind": "until", "at": utc_seconds_from_now(2)}
    runner.answer(first, until)

    after_time = runner.receive(runner.advance_queue)
    assert after_time["after"] == until
    runner.answer(after_time, {"kind": "event", "timeout_seconds": 60})

    registration = runner.receive(runner.event_wait_queue)
    assert registration["enrollment_id"] == "enr-welcome-c1"
    assert registration["wait"] == {"kind": "event", "timeout_seconds": 60}
    # The event handler resumes the enrollment with the event that arrived.
    runner.answer(registration, {"event": "Order Completed", "message_id": "m-1"})

    after_event = runner.receive(runner.advance_queue)
    assert after_event["after"] == {"kind": "event", "timeout_seconds": 60,
                                    "event": {"event": "Order Completed", "message_id": "m-1"}}
    runner.answer(after_event, {"kind": "event", "timeout_seconds": 1})

    unanswered = runner.receive(runner.event_wait_queue)  # registered, but no event comes
    after_timeout = runner.receive(runner.advance_queue)
    assert after_timeout["after"]["kind"] == "event" and "event" not in after_timeout["after"]
    assert after_timeout["after"]["timeout"]["Error"] == "States.Timeout"
    # A late answer to the timed-out registration must not move the enrollment: AWS refuses it
    # with TaskTimedOut; moto 5.2.5 accepts it and drops it. Either way the states visited
    # (asserted below) show it changed nothing.
    try:
        runner.answer(unanswered, {"event": "Order Completed", "message_id": "m-late"})
    except ClientError as refused:
        assert refused.response["Error"]["Code"] == "TaskTimedOut"
    runner.answer(after_timeout, {"kind": "done"})

    assert runner.finished(started["executionArn"])["status"] == "SUCCEEDED"
    history = runner.history(started["executionArn"])
    states = entered_states(history)
    assert states == ["Advance", "Route", "WaitUntil",
                      "Advance", "Route", "WaitForEvent",
                      "Advance", "Route", "WaitForEvent",
                      "Advance", "Route", "Done"]
    assert transitions_per_wait(states) == [3, 3, 3]
    assert [event["type"] for event in history].count("TaskTimedOut") == 1


def test_a_repeated_start_with_the_same_name_and_input_is_the_same_execution(runner):
    first = runner.start("enr-cart-c1-k1")
    again = runner.start("enr-cart-c1-k1")
    assert again["executionArn"] == first["executionArn"] and again["startDate"] == first["startDate"]
    assert len(runner.sfn.list_executions(stateMachineArn=runner.arn)["executions"]) == 1
    with pytest.raises(ClientError) as other_input:
        runner.sfn.start_execution(stateMachineArn=runner.arn, name="enr-cart-c1-k1",
                                   input=json.dumps({"enrollment_id": "enr-cart-c1-k2", "wait": {"kind": "start"}}))
    assert other_input.value.response["Error"]["Code"] == "ExecutionAlreadyExists"

    message = runner.receive(runner.advance_queue)
    runner.answer(message, {"kind": "done"})
    assert runner.finished(first["executionArn"])["status"] == "SUCCEEDED"
    # Only one execution ran: one Advance message was ever sent.
    assert runner.sqs.receive_message(QueueUrl=runner.advance_queue).get("Messages") is None
    with pytest.raises(ClientError) as after_end:
        runner.start("enr-cart-c1-k1")
    assert after_end.value.response["Error"]["Code"] == "ExecutionAlreadyExists"


def test_an_engine_failure_ends_in_the_fail_state_with_the_engine_error(runner):
    started = runner.start("enr-broken-c1")
    message = runner.receive(runner.advance_queue)
    runner.sfn.send_task_failure(taskToken=message["task_token"], error="Mercurio.UnknownJourneyVersion",
                                 cause="journey welcome has no version 7")

    described = runner.finished(started["executionArn"])
    assert described["status"] == "FAILED"
    assert described["error"] == "Mercurio.UnknownJourneyVersion"
    # The cause travels too on AWS (CausePath); moto 5.2.5's SendTaskFailure drops it, so only
    # the error is compared here.
    history = runner.history(started["executionArn"])
    assert entered_states(history) == ["Advance", "AdvanceFailed"]
    assert [event["type"] for event in history].count("TaskFailed") == 1  # not a retryable error


def test_an_answer_of_an_unknown_kind_fails_the_execution_by_name(runner):
    started = runner.start("enr-odd-c1")
    runner.answer(runner.receive(runner.advance_queue), {"kind": "sometime"})

    described = runner.finished(started["executionArn"])
    assert described["status"] == "FAILED" and described["error"] == "Mercurio.UnknownWait"
    assert entered_states(runner.history(started["executionArn"])) == ["Advance", "Route", "UnknownWait"]
