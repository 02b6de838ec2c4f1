"""`make run` (local/run.py) wires the journey runtime the way AWS does: the enrollment runner
state machine, executed by the emulator, sends its tasks to the queues the template
substituted into its definition, the local bridges hand them to the app's consumers, and the
consumers answer the machine. An enrollment the runtime does not know is the probe: its
consumer fails the task by name, so the execution's end shows the whole loop ran.

No timed assertions: every poll has a deadline that only bounds a failure."""
from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest

DEADLINE_SECONDS = 60  # bounds a failure only (the local stack may be busy)
STAGE = "local"
PROBE_ROLE = "arn:aws:iam::123456789012:role/mercurio-local-probe"


@pytest.fixture(scope="module")
def emulator(local_stack) -> str:
    # local.run writes where everything listens to its ready file, beside its log.
    return json.loads(local_stack.log_path.with_name("ready.json").read_text())["emulator_url"]


def client(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1")


def finished(sfn, execution_arn: str) -> dict:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.2)  # polling only
    raise AssertionError(f"{execution_arn} still running after {DEADLINE_SECONDS} s")


def queue_url(url: str, name: str) -> str:
    return client("sqs", url).get_queue_url(QueueName=f"mercurio-{STAGE}-{name}")["QueueUrl"]


def messages_on(url: str, name: str) -> int:
    attributes = client("sqs", url).get_queue_attributes(QueueUrl=queue_url(url, name), AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_an_execution_of_the_enrollment_runner_is_answered_by_the_apps_advance_consumer(emulator):
    sfn = client("stepfunctions", emulator)
    (runner,) = [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
                 if m["name"] == f"mercurio-{STAGE}-enrollment-runner"]
    name = f"enr-probe-{uuid.uuid4().hex[:12]}"
    started = sfn.start_execution(stateMachineArn=runner, name=name,
                                  input=json.dumps({"enrollment_id": name, "wait": {"kind": "start"}}))

    described = finished(sfn, started["executionArn"])
    assert described["status"] == "FAILED"
    assert described["error"] == "Mercurio.UnknownEnrollment"  # the runtime's answer, through the bridge
    entered = [e["stateEnteredEventDetails"]["name"] for e in
               sfn.get_execution_history(executionArn=started["executionArn"])["events"]
               if e["type"].endswith("StateEntered")]
    assert entered == ["Advance", "AdvanceFailed"]
    assert messages_on(emulator, "journey-advance") == 0


def test_an_event_wait_registration_reaches_the_apps_event_wait_consumer(emulator):
    """A machine of the test's own sends one wait-for-event registration to the event-waits
    queue, exactly as the runner's WaitForEvent state does, and waits for its answer."""
    sfn = client("stepfunctions", emulator)
    waits = queue_url(emulator, "journey-event-waits")
    probe = sfn.create_state_machine(name=f"probe-event-wait-{uuid.uuid4().hex[:8]}", roleArn=PROBE_ROLE,
                                     definition=json.dumps({"StartAt": "WaitForEvent", "States": {"WaitForEvent": {
                                         "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                                         "Parameters": {"QueueUrl": waits, "MessageBody": {
                                             "enrollment_id.$": "$.enrollment_id", "execution_arn.$": "$$.Execution.Id",
                                             "task_token.$": "$$.Task.Token", "wait.$": "$.wait"}},
                                         "TimeoutSeconds": DEADLINE_SECONDS, "End": True}}}))["stateMachineArn"]
    name = f"enr-probe-{uuid.uuid4().hex[:12]}"
    started = sfn.start_execution(stateMachineArn=probe, name=name, input=json.dumps(
        {"enrollment_id": name, "wait": {"kind": "event", "timeout_seconds": DEADLINE_SECONDS}}))

    described = finished(sfn, started["executionArn"])
    assert described["status"] == "FAILED"
    assert described["error"] == "Mercurio.UnknownEnrollment"
    assert messages_on(emulator, "journey-event-waits") == 0


def test_a_journey_signal_is_consumed_from_the_fifo_queue(emulator):
    sqs = client("sqs", emulator)
    signals = queue_url(emulator, "journey-events.fifo")
    signal_id = f"sig-{uuid.uuid4().hex}"
    # Stopping an enrollment that does not exist changes nothing: handled, then deleted.
    sqs.send_message(QueueUrl=signals, MessageGroupId="enr-none", MessageDeduplicationId=signal_id,
                     MessageBody=json.dumps({"kind": "stop", "id": signal_id, "enrollment_id": "enr-none",
                                             "reason": "probe"}))
    deadline = time.monotonic() + DEADLINE_SECONDS
    while messages_on(emulator, "journey-events.fifo"):
        assert time.monotonic() < deadline, "the journey-events queue was not consumed"
        time.sleep(0.2)  # polling only
    assert messages_on(emulator, "journey-events-dlq.fifo") == 0
