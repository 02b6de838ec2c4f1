"""The effects adapters against moto: the delivery log in DynamoDB, the effects queue in
SQS and the signing secrets in SSM, each created from infrastructure/template.yaml."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from chalicelib.adapters.dynamodb_deliveries import ATTEMPTS_KEPT, DynamoDBDeliveryStore
from chalicelib.adapters.sqs_effects import EnqueueFailed, SqsEffectsQueue
from chalicelib.adapters.ssm_secrets import SsmSecretStore
from chalicelib.domain.deliveries import DeliveryMessage, attempt_entry
from chalicelib.domain.events import iso
from chalicelib.services.effect_ports import DeliveryConflict, SecretMissing

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def message(n: int = 1, destination: str = "crm", payload: dict | None = None) -> DeliveryMessage:
    return DeliveryMessage(delivery_id=f"mercurio-{n:04d}:{destination}", destination_id=destination,
                           payload=payload or {"type": "segment.entered", "contact": {"id": f"c{n}", "score": 12.5}},
                           enqueued_at=iso(NOW))


@pytest.fixture
def store(aws_tables):
    return DynamoDBDeliveryStore(aws_tables["DeliveriesTable"])


# -- the delivery log ----------------------------------------------------------------------------

def test_a_claim_records_the_delivery_once_and_holds_a_lease(store):
    first = store.claim(message(), "msg-1", NOW, 60)
    assert first["status"] == "pending" and first["attempts"] == 0 and first["first_attempt_at"] == iso(NOW)
    assert first["payload"] == {"type": "segment.entered", "contact": {"id": "c1", "score": 12.5}}
    assert isinstance(first["payload"]["contact"]["score"], float)
    assert store.claim(message(), "msg-1", NOW + timedelta(seconds=30), 60) is None  # leased
    again = store.claim(message(), "msg-1", NOW + timedelta(seconds=61), 60)  # the lease ended
    assert again is not None and again["created_at"] == iso(NOW)


def test_attempts_are_recorded_and_a_delivered_delivery_is_never_claimed_again(store):
    store.claim(message(), "msg-1", NOW, 60)
    later = NOW + timedelta(seconds=1)
    retrying = store.record_attempt("crm", message().delivery_id, "retrying", attempt_entry(later, "failed", 503, "HTTP 503"),
                                    later, next_attempt_at=iso(later + timedelta(seconds=2)), error="HTTP 503")
    assert retrying["status"] == "retrying" and retrying["attempts"] == 1 and retrying["last_error"] == "HTTP 503"
    assert "lease_until" not in retrying and retrying["next_attempt_at"] == iso(later + timedelta(seconds=2))
    assert store.claim(message(), "msg-2", later + timedelta(seconds=1), 60) is None  # not due yet
    assert store.get("crm", message().delivery_id)["carrier"] == "msg-1"
    assert store.claim(message(), "msg-2", later + timedelta(seconds=2), 60)["carrier"] == "msg-2"
    done = store.record_attempt("crm", message().delivery_id, "delivered", attempt_entry(later, "delivered", 200, None),
                                later + timedelta(seconds=3))
    assert done["status"] == "delivered" and done["attempts"] == 2 and "next_attempt_at" not in done
    assert [a["outcome"] for a in done["attempt_log"]] == ["failed", "delivered"]
    assert store.claim(message(), "msg-1", NOW + timedelta(days=1), 60) is None
    assert store.get("crm", message().delivery_id)["status"] == "delivered"


def test_the_attempt_log_keeps_the_latest_attempts_and_counts_them_all(store):
    store.claim(message(), "msg-1", NOW, 60)
    for i in range(ATTEMPTS_KEPT + 5):
        when = NOW + timedelta(seconds=i)
        record = store.record_attempt("crm", message().delivery_id, "retrying",
                                      attempt_entry(when, "failed", 500, f"HTTP 500 #{i}"), when,
                                      next_attempt_at=iso(when), error="HTTP 500")
    assert record["attempts"] == ATTEMPTS_KEPT + 5
    stored = store.get("crm", message().delivery_id)
    assert len(stored["attempt_log"]) == ATTEMPTS_KEPT
    assert stored["attempt_log"][-1]["error"] == f"HTTP 500 #{ATTEMPTS_KEPT + 4}"


def test_only_a_parked_delivery_reopens_and_with_a_fresh_horizon(store):
    store.claim(message(), "msg-1", NOW, 60)
    with pytest.raises(DeliveryConflict, match="pending"):
        store.reopen("crm", message().delivery_id, NOW)
    with pytest.raises(KeyError):
        store.reopen("crm", "nothing:crm", NOW)
    store.record_attempt("crm", message().delivery_id, "parked", attempt_entry(NOW, "failed", None, "refused"), NOW,
                         error="refused: 10.0.0.1")
    assert store.get("crm", message().delivery_id)["parked_reason"] == "refused: 10.0.0.1"
    later = NOW + timedelta(days=2)
    reopened = store.reopen("crm", message().delivery_id, later)
    assert reopened["status"] == "pending" and reopened["first_attempt_at"] == iso(later)
    assert reopened["replays"] == 1 and "parked_reason" not in reopened
    assert store.claim(message(), "msg-1", later, 60) is not None


def test_listing_newest_first_by_status_with_cursor_paging(store):
    for n in range(7):
        when = NOW + timedelta(minutes=n)
        store.claim(message(n), "msg-1", when, 60)
        status = "parked" if n % 3 == 0 else "delivered"
        store.record_attempt("crm", message(n).delivery_id, status, attempt_entry(when, status, 200, None), when,
                             error="gave up" if status == "parked" else None)
    store.claim(message(99, destination="other"), "msg-2", NOW, 60)
    seen, cursor = [], None
    while True:
        rows, cursor = store.list("crm", None, 3, cursor)
        seen += [r["delivery_id"] for r in rows]
        if not cursor:
            break
    assert seen == [message(n).delivery_id for n in reversed(range(7))]
    parked, cursor = store.list("crm", "parked", 10, None)
    assert [r["delivery_id"] for r in parked] == [message(n).delivery_id for n in (6, 3, 0)] and cursor is None
    assert store.list("crm", "retrying", 10, None) == ([], None)
    _, cursor = store.list("crm", None, 2, None)
    with pytest.raises(ValueError):
        store.list("other", None, 2, cursor)  # a cursor of another destination
    with pytest.raises(ValueError):
        store.list("crm", None, 2, "not-a-cursor")


# -- the effects queue ---------------------------------------------------------------------------

def test_deliveries_are_enqueued_in_batches_and_read_back_whole(aws_tables):
    sqs = boto3.client("sqs")
    queue = SqsEffectsQueue("mercurio-test-effects")
    sent = [message(n) for n in range(23)]
    queue.send(sent)
    received = []
    while True:
        got = sqs.receive_message(QueueUrl=aws_tables["EffectsQueue"], MaxNumberOfMessages=10,
                                  MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            break
        received += got
    assert sorted(DeliveryMessage.from_json(m["Body"]).delivery_id for m in received) == \
        sorted(m.delivery_id for m in sent)
    assert {m["MessageAttributes"]["delivery_id"]["StringValue"] for m in received} == {m.delivery_id for m in sent}


def test_a_failed_delivery_is_shown_again_only_after_its_delay(aws_tables):
    sqs = boto3.client("sqs")
    queue = SqsEffectsQueue("mercurio-test-effects")
    queue.send([message()])
    first = sqs.receive_message(QueueUrl=aws_tables["EffectsQueue"], VisibilityTimeout=0)["Messages"][0]
    queue.retry_later(first["ReceiptHandle"], 600)
    assert sqs.receive_message(QueueUrl=aws_tables["EffectsQueue"]).get("Messages", []) == []
    attributes = sqs.get_queue_attributes(QueueUrl=aws_tables["EffectsQueue"],
                                          AttributeNames=["ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    queue.retry_later(first["ReceiptHandle"], 0)
    again = sqs.receive_message(QueueUrl=aws_tables["EffectsQueue"], AttributeNames=["ApproximateReceiveCount"])
    assert again["Messages"][0]["MessageId"] == first["MessageId"]
    assert again["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_an_oversized_delivery_is_an_error_not_a_silent_drop(aws_tables):
    queue = SqsEffectsQueue("mercurio-test-effects")
    with pytest.raises(EnqueueFailed, match="256 KB"):
        queue.send([message(payload={"type": "segment.entered", "blob": "x" * 300_000})])


def test_the_queue_has_a_dead_letter_queue_as_a_safety_net(aws_tables):
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=aws_tables["EffectsQueue"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == aws_tables["EffectsDeadLetterQueue.Arn"]
    assert int(redrive["maxReceiveCount"]) >= 200  # well past the ~105 attempts of a day of back-off
    assert int(attributes["MessageRetentionPeriod"]) > 24 * 3600


# -- signing secrets -----------------------------------------------------------------------------

def test_a_missing_secret_is_not_cached_and_a_stored_one_is_a_secure_string(aws_tables):
    secrets = SsmSecretStore()
    name = "/mercurio/test/destinations/crm"
    with pytest.raises(SecretMissing):
        secrets.get(name)
    boto3.client("ssm").put_parameter(Name=name, Value="first-secret-value-01", Type="SecureString")
    assert secrets.get(name) == "first-secret-value-01"  # found at once: the miss was not cached
    secrets.put(name, "rotated-secret-value-02")
    assert secrets.get(name) == "rotated-secret-value-02"
    parameter = boto3.client("ssm").get_parameter(Name=name)["Parameter"]
    assert parameter["Type"] == "SecureString" and parameter["Value"] != "rotated-secret-value-02"
