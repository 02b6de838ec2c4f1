"""Push registration against moto's SNS: the local stack's platform applications, the
effects consumer's routing of a registration to PushDevices, and SnsPushSender's
registration being idempotent (the same token gives the same endpoint)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from chalicelib.adapters.sns_push import SnsPushSender, UnknownPlatform
from chalicelib.domain.deliveries import DeliveryMessage, RetryPolicy
from chalicelib.entrypoints.effects import handle_effects
from chalicelib.services.handlers import PUSH_REGISTRATION
from chalicelib.services.push_devices import PushDevices
from local.push_platforms import create_push_platforms
from tests.unit.fakes import FakeClock, FakeEventStore

NOON = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def endpoints():
    from moto.sns.models import sns_backends

    return sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].platform_endpoints


class NoDeliveries:
    def deliver(self, message, carrier):
        raise AssertionError("a push registration is not a destination delivery")


class Queue:
    def __init__(self):
        self.later = []

    def retry_later(self, receipt_handle, seconds):
        self.later.append((receipt_handle, seconds))


def sqs_event(*messages: DeliveryMessage, receive_count: str = "1") -> dict:
    return {"Records": [{"messageId": f"sqs-{i}", "receiptHandle": f"rh-{i}", "body": m.to_json(),
                         "attributes": {"ApproximateReceiveCount": receive_count}, "messageAttributes": {},
                         "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
                         "awsRegion": "us-east-1"} for i, m in enumerate(messages)]}


def registration(token: str, platform: str = "ios", cause: str = "m-1") -> DeliveryMessage:
    return DeliveryMessage(f"{cause}:{PUSH_REGISTRATION}", PUSH_REGISTRATION,
                           {"contact_id": "c1", "platform": platform, "token": token}, NOON.isoformat())


def test_the_local_platform_applications_are_created_once(aws):
    first = create_push_platforms()
    assert set(first) == {"ios", "android"} and create_push_platforms() == first
    apps = boto3.client("sns").list_platform_applications()["PlatformApplications"]
    assert len(apps) == 2


def test_the_effects_consumer_registers_a_device_once_and_reports_the_endpoint(aws):
    sender = SnsPushSender(create_push_platforms())
    events = FakeEventStore()
    devices = PushDevices(sender.register, events, FakeClock(NOON), RetryPolicy(),
                          permanent=(UnknownPlatform,))
    queue = Queue()
    answer = handle_effects(sqs_event(registration("tok-a")), None, NoDeliveries(), queue, push_devices=devices)
    assert answer == {"batchItemFailures": []}
    again = handle_effects(sqs_event(registration("tok-a")), None, NoDeliveries(), queue, push_devices=devices)
    assert again == {"batchItemFailures": []}
    [endpoint] = endpoints().values()
    assert endpoint.token == "tok-a" and endpoint.custom_user_data == "c1"
    [reported] = [e.body for e in events.inserted]  # the redelivery reported nothing new
    assert reported["event"] == "Push Endpoint Registered" and reported["properties"]["endpoint"] == endpoint.arn
    assert reported["contactId"] == "c1" and "tok-a" not in json.dumps(reported["properties"])


def test_a_device_type_without_a_platform_application_is_parked_not_retried(aws):
    sender = SnsPushSender({"ios": create_push_platforms()["ios"]})
    events = FakeEventStore()
    devices = PushDevices(sender.register, events, FakeClock(NOON), RetryPolicy(), permanent=(UnknownPlatform,))
    queue = Queue()
    answer = handle_effects(sqs_event(registration("tok-b", "android")), None, NoDeliveries(), queue,
                            push_devices=devices)
    assert answer == {"batchItemFailures": []} and queue.later == [] and events.inserted == []
    assert endpoints() == {}
