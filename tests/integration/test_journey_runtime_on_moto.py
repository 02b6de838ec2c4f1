"""The journey runtime's adapters on moto: the enrollments table, the FIFO journey-events queue,
and the enrollment runner (the ASL file itself) executed by moto's Step Functions, with the
runtime answering its two queues as the Lambda consumers do.

No timed assertions: the machine's waits are real but scaled (an hour of journey is a second),
and every poll has a deadline that only bounds a failure."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.dynamodb_enrollments import DynamoDBEnrollmentStore
from chalicelib.adapters.sfn_runner import StepFunctionsRunner
from chalicelib.adapters.sqs_journeys import SqsJourneyQueue
from chalicelib.domain.contact import Contact
from chalicelib.domain.contact_state import iso_ms
from chalicelib.domain.journeys.engine import enroll
from chalicelib.domain.journeys.interest import signal_of
from chalicelib.domain.journeys.language import parse_journey
from chalicelib.domain.journeys.records import EnrollmentRecord
from chalicelib.services.definitions import DefinitionService
from chalicelib.services.journey_ports import EnrollmentConflict
from chalicelib.services.journey_runtime import JourneyRuntime
from chalicelib.services.ports import Clock
from tests.unit.fakes import FakeContactRepository, FakeDefinitionStore, FakeEventStore
from tests.unit.journey_fakes import RecordingEffects, RecordingMessaging
from tests.unit.journeys.test_journey_runtime import CART, PROFILE
from tests.unit.messaging_fakes import FakeMessageLog

ASL = Path(__file__).resolve().parents[2] / "infrastructure" / "enrollment-runner.asl.json"
ROLE = "arn:aws:iam::123456789012:role/mercurio-test-enrollment-runner"
TABLE = "mercurio-test-enrollments"
DEADLINE_SECONDS = 40  # bounds a failure only
SCALE = 86400.0  # a day of journey per second of machine: every wait here is one second


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


def create_table(dynamodb) -> None:
    dynamodb.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                              for n in ("pk", "sk", "running_journey", "running_node")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "running",
                                 "KeySchema": [{"AttributeName": "running_journey", "KeyType": "HASH"},
                                               {"AttributeName": "running_node", "KeyType": "RANGE"}],
                                 "Projection": {"ProjectionType": "KEYS_ONLY"}}])


class Stack:
    """moto with the enrollment runner, the three queues and the runtime on real adapters."""

    def __init__(self, *journeys):
        self.sqs = boto3.client("sqs")
        self.sfn = boto3.client("stepfunctions")
        create_table(boto3.client("dynamodb"))
        self.events_url = self.sqs.create_queue(
            QueueName="mercurio-test-journey-events.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"})["QueueUrl"]
        self.advance_url = self.sqs.create_queue(QueueName="mercurio-test-journey-advance")["QueueUrl"]
        self.waits_url = self.sqs.create_queue(QueueName="mercurio-test-journey-event-waits")["QueueUrl"]
        text = ASL.read_text().replace("${AdvanceQueueUrl}", self.advance_url) \
            .replace("${EventWaitQueueUrl}", self.waits_url)
        self.arn = self.sfn.create_state_machine(name="mercurio-test-enrollment-runner", definition=text,
                                                 roleArn=ROLE)["stateMachineArn"]
        self.clock = SystemClock()
        self.definitions = DefinitionService(FakeDefinitionStore(), self.clock, cache_seconds=0)
        self.definitions.put("segment", "vip", {"id": "vip", "name": "VIP",
                                                "conditions": {"trait": "vip", "equals": True}})
        self.definitions.put("destination", "crm", {
            "id": "crm", "name": "CRM", "url": "https://crm.example.com/hook",
            "secret_parameter": "/mercurio/test/destinations/crm", "segments": ["vip"]})
        for doc in journeys:
            self.definitions.put("journey", doc["id"], doc)
        self.contacts = FakeContactRepository()
        self.store = DynamoDBEnrollmentStore(TABLE)
        self.messaging = RecordingMessaging()
        self.runtime = JourneyRuntime(
            definitions=self.definitions, store=self.store, runner=StepFunctionsRunner(self.arn),
            queue=SqsJourneyQueue("mercurio-test-journey-events.fifo"), contacts=self.contacts,
            messaging=self.messaging, message_log=FakeMessageLog(), effects_queue=RecordingEffects(),
            events=FakeEventStore(), clock=self.clock, time_scale=SCALE)
        self.lock = threading.Lock()

    def pump(self) -> int:
        """One pass over the two task queues, as their Lambda consumers would."""
        handled = 0
        for url, handle in ((self.advance_url, self.runtime.on_advance), (self.waits_url, self.runtime.on_event_wait)):
            for message in self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                handle(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                handled += 1
        return handled

    def until(self, condition, what: str):
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            self.pump()
            found = condition()
            if found:
                return found
            time.sleep(0.05)  # polling only
        raise AssertionError(f"not within {DEADLINE_SECONDS} s: {what}")

    def signal(self, contact_id: str, name: str, message_id: str, **properties) -> None:
        event = {"type": "track", "event": name, "properties": properties, "messageId": message_id,
                 "timestamp": iso_ms(self.clock.now())}
        self.runtime.on_signal(signal_of(contact_id, event))

    def execution(self, enrollment_id: str) -> dict:
        return self.sfn.describe_execution(executionArn=self.runtime.runner.execution_arn(enrollment_id))

    def states(self, enrollment_id: str) -> list[str]:
        events = self.sfn.get_execution_history(executionArn=self.runtime.runner.execution_arn(enrollment_id),
                                                maxResults=1000)["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]

    def only(self, contact_id: str = "c1") -> EnrollmentRecord:
        entries = self.store.entries(contact_id)
        (journey,) = entries.values()
        (entry,) = journey["entries"]
        return self.store.get(entry["id"])

    def stop_running(self) -> None:
        for execution in self.sfn.list_executions(stateMachineArn=self.arn, statusFilter="RUNNING")["executions"]:
            self.sfn.stop_execution(executionArn=execution["executionArn"])


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")  # moto compares a TimestampPath with the naive local clock
    time.tzset()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield
    monkeypatch.undo()
    time.tzset()


def test_an_abandoned_cart_runs_on_the_state_machine_with_three_states_per_wait(aws):
    stack = Stack(CART)
    try:
        stack.contacts.create(Contact(id="c1", created_at="2026-01-01T00:00:00Z",
                                      consent={"sms": {"status": "granted", "at": "2026-01-01T00:00:00Z"}}))
        stack.signal("c1", "Product Added", "m1", cart_id="k1")
        record = stack.only()
        stack.until(lambda: stack.execution(record.id)["status"] != "RUNNING", "the enrollment ends")
        assert stack.execution(record.id)["status"] == "SUCCEEDED"
        assert stack.messaging.sent() == [("c1", "email", "cart-reminder"), ("c1", "sms", "cart-reminder-sms")]
        assert stack.states(record.id) == ["Advance", "Route", "WaitForEvent", "Advance", "Route", "WaitForEvent",
                                           "Advance", "Route", "Done"]
        final = stack.store.get(record.id)
        assert final.enrollment.status == "completed"
        assert stack.store.counts("abandoned-cart")["sent:email-reminder"] == 1
    finally:
        stack.stop_running()


def test_a_purchase_during_the_wait_ends_the_execution_and_sends_nothing(aws):
    stack = Stack(CART)
    try:
        stack.contacts.create(Contact(id="c1", created_at="2026-01-01T00:00:00Z"))
        stack.runtime.time_scale = 1.0  # the wait is a real hour here: it must end by the purchase
        stack.signal("c1", "Product Added", "m1", cart_id="k1")
        record = stack.until(lambda: (r := stack.only()).task_token and r, "the event wait registers its token")
        stack.signal("c1", "Order Completed", "m2", cart_id="k1")
        stack.until(lambda: stack.execution(record.id)["status"] != "RUNNING", "the execution ends")
        assert stack.execution(record.id)["status"] == "SUCCEEDED"
        assert stack.messaging.sent() == []
        final = stack.store.get(record.id)
        assert final.enrollment.status == "exited" and final.enrollment.converted_at is not None
    finally:
        stack.stop_running()


def test_the_awaited_event_resumes_the_wait_through_its_task_token(aws):
    stack = Stack(PROFILE)
    try:
        stack.contacts.create(Contact(id="c1", created_at="2026-01-01T00:00:00Z"))
        stack.runtime.time_scale = 1.0
        stack.signal("c1", "Signed Up", "m1")
        record = stack.until(lambda: (r := stack.only()).task_token and r, "the event wait registers its token")
        stack.signal("c1", "Profile Completed", "m2")
        stack.until(lambda: stack.execution(record.id)["status"] != "RUNNING", "the execution ends")
        assert stack.messaging.sent() == [("c1", "email", "thanks")]
        assert stack.states(record.id) == ["Advance", "Route", "WaitForEvent", "Advance", "Route", "Done"]
    finally:
        stack.stop_running()


# -- the adapters, one by one ---------------------------------------------------------------------

def record_for(contact_id: str, key: str, when: datetime) -> EnrollmentRecord:
    journey = parse_journey(CART)
    return EnrollmentRecord(enroll(journey, f"abandoned-cart-{contact_id}-{key}", contact_id, when, key),
                            journey_version=1, data={"items": [{"cart_id": key}]})


def test_the_enrollment_store_creates_once_locks_versions_and_lists_running_ones(aws):
    create_table(boto3.client("dynamodb"))
    store = DynamoDBEnrollmentStore(TABLE)
    when = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
    first = record_for("c1", "k1", when)
    store.create(first, None)
    with pytest.raises(EnrollmentConflict):
        store.create(first, 1)  # exists
    with pytest.raises(EnrollmentConflict):
        store.create(record_for("c1", "k2", when), None)  # the entries moved (version 1 now)
    store.create(record_for("c1", "k2", when), 1)
    entries = store.entries("c1")
    assert [e["key"] for e in entries["abandoned-cart"]["entries"]] == ["k1", "k2"]
    assert entries["abandoned-cart"]["version"] == 2
    read = store.get(first.id)
    assert read.version == 1 and read.data == {"items": [{"cart_id": "k1"}]} and read.enrollment == first.enrollment
    saved = store.save(read)
    with pytest.raises(EnrollmentConflict):
        store.save(read)  # version 1 is gone
    assert saved.version == 2
    page, cursor = store.running("abandoned-cart")
    assert sorted(page) == sorted([("wait-for-purchase", first.id), ("wait-for-purchase", f"abandoned-cart-c1-k2")])
    assert cursor is None
    from dataclasses import replace
    store.save(replace(saved, enrollment=replace(saved.enrollment, status="exited")))
    assert [i for _, i in store.running("abandoned-cart")[0]] == ["abandoned-cart-c1-k2"]
    assert [r.id for r in store.many([first.id, "nope", "abandoned-cart-c1-k2"])] == [first.id, "abandoned-cart-c1-k2"]
    for shard in range(10):
        store.add_counts("abandoned-cart", shard, {"entered": 1, "waiting_now:a": 1 if shard % 2 else -1})
    assert store.counts("abandoned-cart") == {"entered": 10, "waiting_now:a": 0}
    assert store.control("abandoned-cart") is None
    store.set_control("abandoned-cart", "paused", "2026-03-02T10:00:00Z", "copy check")
    assert store.control("abandoned-cart")["state"] == "paused"
    assert store.erase_contact("c1") == 3
    assert store.entries("c1") == {} and store.get(first.id) is None


def test_the_journey_queue_is_fifo_per_contact_and_drops_a_resent_signal(aws):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="mercurio-test-journey-events.fifo",
                           Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"})["QueueUrl"]
    queue = SqsJourneyQueue("mercurio-test-journey-events.fifo")
    signals = [{"kind": "event", "id": f"m{i}", "contact_id": "c1", "event": {"event": "E", "n": i}}
               for i in range(12)]
    queue.send(signals)
    queue.send(signals[:3])  # published twice: deduplicated
    received = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        for message in messages:
            received.append(json.loads(message["Body"])["id"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert received == [f"m{i}" for i in range(12)]


def test_the_runner_starts_an_execution_once_per_name_and_stops_it(aws):
    sqs = boto3.client("sqs")
    advance = sqs.create_queue(QueueName="a")["QueueUrl"]
    waits = sqs.create_queue(QueueName="w")["QueueUrl"]
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="m", roleArn=ROLE, definition=ASL.read_text().replace(
        "${AdvanceQueueUrl}", advance).replace("${EventWaitQueueUrl}", waits))["stateMachineArn"]
    runner = StepFunctionsRunner(arn)
    payload = {"enrollment_id": "e1", "wait": {"kind": "start"}}
    first = runner.start("e1", payload)
    assert runner.start("e1", payload) == first == runner.execution_arn("e1")
    assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 1
    # Enrollments are stopped while they wait (a Wait state): put this one there first.
    deadline = time.monotonic() + DEADLINE_SECONDS
    message = None
    while message is None and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=advance).get("Messages")
        message = json.loads(messages[0]["Body"]) if messages else None
    later = (datetime.now(timezone.utc) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    runner.answer(message["task_token"], {"kind": "until", "at": later, "round": 1})
    while "WaitStateEntered" not in [e["type"] for e in sfn.get_execution_history(executionArn=first)["events"]] \
            and time.monotonic() < deadline:
        time.sleep(0.05)  # polling only
    assert runner.stop(first, "the journey was stopped") is True
    while sfn.describe_execution(executionArn=first)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)  # moto's worker ends it in its own thread
    assert sfn.describe_execution(executionArn=first)["status"] == "ABORTED"
    assert runner.stop(runner.execution_arn("never-started"), "no such execution") is False
    with pytest.raises(Exception) as caught:
        StepFunctionsRunner(None).start("e2", payload)
    assert "MERCURIO_ENROLLMENT_RUNNER_ARN" in str(caught.value)


def test_a_merge_moves_the_entries_to_the_survivor(aws):
    create_table(boto3.client("dynamodb"))
    store = DynamoDBEnrollmentStore(TABLE)
    when = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
    store.create(record_for("anon", "k1", when), None)
    store.create(record_for("known", "k2", when + timedelta(minutes=1)), None)
    assert store.move_entries("anon", "known") == 1
    assert [e["key"] for e in store.entries("known")["abandoned-cart"]["entries"]] == ["k1", "k2"]
    assert store.entries("anon") == {}
    assert store.move_entries("anon", "known") == 0  # again: nothing left to move
