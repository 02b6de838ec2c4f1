"""The enrollment runner as the local stack has it: moto's server started by the local runner
(local.run.Emulator), every resource provisioned from infrastructure/template.yaml with
executing Step Functions (local/provision.py), and the machine run end to end through the
two queues the template substituted into its definition.

The test process runs in a time zone twelve hours behind UTC: the emulator must run on UTC
by itself (moto compares a TimestampPath with its naive local clock), or the one-second wait
below would last twelve hours and the test fail at its deadline.

No timed assertions: every poll has a deadline that only bounds a failure."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest

from local.provision import load_template, provision, substitute_definition
from local.run import Emulator

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "infrastructure" / "enrollment-runner.asl.json"
STAGE = "sfn"
DEADLINE_SECONDS = 30  # bounds a failure only


@pytest.fixture(scope="module")
def emulator():
    # The caller's zone is not the emulator's: UTC-12 here (POSIX spells it Etc/GMT+12).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "Etc/GMT+12")
        server = Emulator(0)
        server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def stack(emulator):
    return provision(STAGE, endpoint_url=emulator, execute=True)


def client(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1")


def receive(sqs, queue_url: str) -> dict:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
            return json.loads(messages[0]["Body"])
    raise AssertionError(f"no message on {queue_url} within {DEADLINE_SECONDS} s")


def finished(sfn, execution_arn: str) -> dict:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)  # polling only
    raise AssertionError(f"{execution_arn} still running after {DEADLINE_SECONDS} s")


def test_the_machine_is_the_asl_file_with_the_provisioned_queue_urls(emulator, stack):
    sfn = client("stepfunctions", emulator)
    described = sfn.describe_state_machine(stateMachineArn=stack["EnrollmentRunner"])
    assert described["name"] == f"mercurio-{STAGE}-enrollment-runner" == stack["EnrollmentRunner.Name"]
    assert described["type"] == "STANDARD"
    assert described["roleArn"] == stack["EnrollmentRunnerRole.Arn"]
    expected = (ASL.read_text().replace("${AdvanceQueueUrl}", stack["JourneyAdvanceQueue"])
                .replace("${EventWaitQueueUrl}", stack["JourneyEventWaitsQueue"]))
    assert described["definition"] == expected
    assert "${" not in described["definition"]
    states = json.loads(described["definition"])["States"]
    assert states["Advance"]["Parameters"]["QueueUrl"].endswith(f"/mercurio-{STAGE}-journey-advance")
    assert states["WaitForEvent"]["Parameters"]["QueueUrl"].endswith(f"/mercurio-{STAGE}-journey-event-waits")
    # The role may send to those two queues and nothing else.
    iam = client("iam", emulator)
    role = stack["EnrollmentRunnerRole"]
    (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    (statement,) = document["Statement"]
    assert statement["Action"] == "sqs:SendMessage"
    assert sorted(statement["Resource"]) == sorted([stack["JourneyAdvanceQueue.Arn"],
                                                    stack["JourneyEventWaitsQueue.Arn"]])


def test_the_journey_events_queue_is_fifo_without_content_deduplication(emulator, stack):
    sqs = client("sqs", emulator)
    for logical, dead_letter in (("JourneyEventsQueue", "JourneyEventsDeadLetterQueue"),
                                 ("JourneyEventsDeadLetterQueue", None)):
        attributes = sqs.get_queue_attributes(QueueUrl=stack[logical], AttributeNames=["All"])["Attributes"]
        assert attributes["FifoQueue"] == "true", logical
        assert attributes["ContentBasedDeduplication"] == "false", logical
        if dead_letter:
            assert json.loads(attributes["RedrivePolicy"]) == {
                "deadLetterTargetArn": stack[f"{dead_letter}.Arn"], "maxReceiveCount": 10}
    for logical in ("JourneyAdvanceQueue", "JourneyEventWaitsQueue"):
        attributes = sqs.get_queue_attributes(QueueUrl=stack[logical], AttributeNames=["All"])["Attributes"]
        assert attributes.get("FifoQueue", "false") == "false", logical
        assert json.loads(attributes["RedrivePolicy"]) == {
            "deadLetterTargetArn": stack["JourneysDeadLetterQueue.Arn"], "maxReceiveCount": 10}
        assert attributes["VisibilityTimeout"] == "360"


def test_an_enrollment_runs_through_both_provisioned_queues_on_the_emulator_clock(emulator, stack):
    sqs, sfn = client("sqs", emulator), client("stepfunctions", emulator)
    started = sfn.start_execution(stateMachineArn=stack["EnrollmentRunner"], name="enr-local-c1",
                                  input=json.dumps({"enrollment_id": "enr-local-c1", "wait": {"kind": "start"}}))

    first = receive(sqs, stack["JourneyAdvanceQueue"])
    assert first["enrollment_id"] == "enr-local-c1" and first["after"] == {"kind": "start"}
    assert first["execution_arn"] == started["executionArn"]
    # One second ahead in UTC: on an emulator running on the caller's UTC-12 clock this would
    # be twelve hours ahead.
    until = {"kind": "until",
             "at": (datetime.now(timezone.utc) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    sfn.send_task_success(taskToken=first["task_token"], output=json.dumps(until))

    after_time = receive(sqs, stack["JourneyAdvanceQueue"])
    assert after_time["after"] == until
    sfn.send_task_success(taskToken=after_time["task_token"],
                          output=json.dumps({"kind": "event", "timeout_seconds": 60}))

    registration = receive(sqs, stack["JourneyEventWaitsQueue"])
    assert registration["enrollment_id"] == "enr-local-c1"
    assert registration["wait"] == {"kind": "event", "timeout_seconds": 60}
    sfn.send_task_success(taskToken=registration["task_token"], output=json.dumps({"event": "Order Completed"}))

    after_event = receive(sqs, stack["JourneyAdvanceQueue"])
    assert after_event["after"]["event"] == {"event": "Order Completed"}
    sfn.send_task_success(taskToken=after_event["task_token"], output=json.dumps({"kind": "done"}))
    assert finished(sfn, started["executionArn"])["status"] == "SUCCEEDED"


def test_the_substitution_is_cloudformations_and_refuses_an_unknown_name():
    template = load_template()
    props = template["Resources"]["EnrollmentRunner"]["Properties"]
    assert set(props["DefinitionSubstitutions"]) == {"AdvanceQueueUrl", "EventWaitQueueUrl"}
    text = substitute_definition(props["DefinitionString"], {"AdvanceQueueUrl": "https://q/a",
                                                             "EventWaitQueueUrl": "https://q/w"})
    assert json.loads(text)["States"]["Advance"]["Parameters"]["QueueUrl"] == "https://q/a"
    with pytest.raises(ValueError, match=r"\$\{EventWaitQueueUrl\}"):
        substitute_definition(props["DefinitionString"], {"AdvanceQueueUrl": "https://q/a"})


def test_executing_state_machines_needs_a_server():
    with pytest.raises(ValueError, match="endpoint_url"):
        provision(STAGE, endpoint_url=None, execute=True)
