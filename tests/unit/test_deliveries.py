"""Delivering from the effects queue: one attempt per receive, back-off on a fake clock,
parking after the horizon, a secret that appears later, idempotent redelivery, replay."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from chalicelib.domain.deliveries import DeliveryMessage, InvalidDeliveryMessage, Park, Retry, RetryPolicy, \
    after_failure
from chalicelib.domain.destinations import Destination
from chalicelib.entrypoints.effects import handle_effects
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.deliveries import DeliveryService
from tests.unit.effects_fakes import FakeDeliveryStore, FakeEffectsQueue, FakeSecretStore, ScriptedSender, ok, \
    refused, server_error
from tests.unit.fakes import FakeClock

SECRET_NAME = "/mercurio/test/destinations/crm"
CRM = Destination("crm", "CRM", "https://crm.example.com/hooks", SECRET_NAME, ("mql",))
MESSAGE = DeliveryMessage(delivery_id="mercurio-abc:crm", destination_id="crm",
                          payload={"type": "segment.entered", "segment_id": "mql", "contact": {"id": "c1", "score": 0.0}},
                          enqueued_at="2026-11-22T12:00:00.000Z")


class World:
    def __init__(self, *outcomes, secrets=None, destinations=None, policy=None):
        self.clock = FakeClock(datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc))
        self.store = FakeDeliveryStore()
        self.sender = ScriptedSender(*outcomes)
        self.secrets = FakeSecretStore({SECRET_NAME: "s3cret-signing-key-01"} if secrets is None else secrets)
        self.queue = FakeEffectsQueue()
        known = {d.id: d for d in (destinations if destinations is not None else [CRM])}
        self.service = DeliveryService(self.store, known.get, self.sender, self.secrets, self.queue, self.clock,
                                       policy or RetryPolicy())

    def deliver_until_done(self, message=MESSAGE, most: int = 500, carrier: str = "msg-1"):
        outcomes = []
        for _ in range(most):
            outcome = self.service.deliver(message, carrier)
            outcomes.append(outcome)
            if outcome.done:
                return outcomes
            self.clock.advance(seconds=outcome.retry_in)  # the queue shows the message again then
        raise AssertionError("never done")

    def record(self, message=MESSAGE):
        return self.store.get(message.destination_id, message.delivery_id)


# -- the schedule ------------------------------------------------------------------------------

def test_back_off_doubles_from_two_seconds_up_to_fifteen_minutes():
    policy = RetryPolicy()
    assert [policy.delay(n) for n in range(1, 13)] == [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]
    assert policy.delay(3, retry_after=60) == 60  # a receiver's Retry-After is a minimum
    assert policy.delay(1, retry_after=10_000) == 900  # within the cap


def test_retries_last_at_least_a_day_then_the_delivery_is_parked():
    now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    assert isinstance(after_failure(RetryPolicy(), 1, "2026-11-22T12:00:00.000Z", now, "HTTP 503"), Retry)
    late = datetime(2026, 11, 23, 11, 50, tzinfo=timezone.utc)
    decision = after_failure(RetryPolicy(), 100, "2026-11-22T12:00:00.000Z", late, "HTTP 503")
    assert isinstance(decision, Park) and "gave up after 100 attempts over 24 h: HTTP 503" == decision.reason
    assert isinstance(after_failure(RetryPolicy(), 1, "2026-11-22T12:00:00.000Z", now, "refused", retryable=False),
                      Park)


def test_a_receiver_that_fails_three_times_then_recovers_gets_the_delivery():
    world = World(server_error(), server_error(500), server_error(502), ok())
    outcomes = world.deliver_until_done()
    assert [(o.status, o.retry_in) for o in outcomes] == [
        ("retrying", 2), ("retrying", 4), ("retrying", 8), ("delivered", 0)]
    record = world.record()
    assert record["status"] == "delivered" and record["attempts"] == 4
    assert [a["outcome"] for a in record["attempt_log"]] == ["failed", "failed", "failed", "delivered"]
    assert [a.get("http_status") for a in record["attempt_log"]] == [503, 500, 502, 200]
    assert {c["delivery_id"] for c in world.sender.calls} == {"mercurio-abc:crm"}  # one id on every attempt
    assert world.clock.now() == datetime(2026, 11, 22, 12, 0, 14, tzinfo=timezone.utc)


def test_a_receiver_that_never_recovers_is_parked_after_the_horizon_with_the_reason():
    world = World(server_error(503))
    outcomes = world.deliver_until_done()
    record = world.record()
    assert record["status"] == "parked" and outcomes[-1].status == "parked"
    elapsed = (world.clock.now() - datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)).total_seconds()
    assert 24 * 3600 - 900 <= elapsed <= 24 * 3600  # tried for (almost) the whole day, never beyond
    assert record["attempts"] == len(outcomes) == len(world.sender.calls)
    assert record["parked_reason"].startswith(f"gave up after {len(outcomes)} attempts over 24 h: HTTP 503")
    assert "next_attempt_at" not in record


def test_retrying_records_the_next_attempt_and_the_last_error():
    world = World(server_error(503))
    outcome = world.service.deliver(MESSAGE, "msg-1")
    record = world.record()
    assert outcome.status == "retrying" and not outcome.done
    assert record["status"] == "retrying" and record["last_error"] == "HTTP 503"
    assert record["next_attempt_at"] == "2026-11-22T12:00:02.000Z"


def test_a_missing_secret_is_retried_and_a_secret_that_appears_later_gets_the_delivery():
    world = World(ok(), secrets={})
    first = world.service.deliver(MESSAGE, "msg-1")
    assert first.status == "retrying" and world.sender.calls == []  # nothing is sent unsigned
    assert SECRET_NAME in world.record()["last_error"] and "/v1/admin/destinations/crm/secret" in \
        world.record()["last_error"]
    world.clock.advance(seconds=first.retry_in)
    assert world.service.deliver(MESSAGE, "msg-1").status == "retrying"  # still missing
    world.service.set_secret("crm", "whsec-appeared-later-0001")
    world.clock.advance(hours=1)
    assert world.service.deliver(MESSAGE, "msg-1").status == "delivered"
    assert world.sender.calls[0]["secret"] == "whsec-appeared-later-0001"
    assert world.record()["attempts"] == 3


def test_a_redelivered_message_for_a_delivered_delivery_changes_nothing():
    world = World(ok())
    assert world.service.deliver(MESSAGE, "msg-1").status == "delivered"
    again = world.service.deliver(MESSAGE, "msg-1")
    assert again.status == "skipped" and again.done
    assert len(world.sender.calls) == 1 and world.record()["attempts"] == 1


def test_a_second_copy_of_a_queued_delivery_is_removed_and_keeps_the_back_off():
    """The same outbox published twice enqueues the delivery twice: the copy must not
    attempt it again before its next attempt is due."""
    world = World(server_error(), ok())
    assert world.service.deliver(MESSAGE, "msg-1").status == "retrying"
    copy = world.service.deliver(MESSAGE, "msg-2")
    assert copy.status == "skipped" and copy.done
    assert len(world.sender.calls) == 1 and world.record()["attempts"] == 1
    world.clock.advance(seconds=2)
    assert world.service.deliver(MESSAGE, "msg-1").status == "delivered"


def test_a_delivery_is_never_attempted_twice_at_once_nor_before_it_is_due():
    world = World(server_error(), ok())
    world.store.claim(MESSAGE, "msg-1", world.clock.now(), 60)  # msg-1 is being attempted
    assert world.service.deliver(MESSAGE, "msg-2").status == "skipped"  # a copy: removed
    busy = world.service.deliver(MESSAGE, "msg-1")  # its own carrier, seen again meanwhile
    assert busy.status == "busy" and not busy.done and busy.retry_in == 60
    assert world.sender.calls == []
    world.clock.advance(seconds=61)  # that attempt died: its lease ended
    assert world.service.deliver(MESSAGE, "msg-1").status == "retrying"
    early = world.service.deliver(MESSAGE, "msg-1")  # shown again before its delay (2 s) is over
    assert early.status == "busy" and early.retry_in == 2 and len(world.sender.calls) == 1


def test_a_refused_url_or_a_deleted_destination_is_parked_at_once():
    world = World(refused())
    assert world.service.deliver(MESSAGE, "msg-1").status == "parked"
    assert world.record()["parked_reason"].startswith("refused:")
    gone = World(ok(), destinations=[])
    assert gone.service.deliver(MESSAGE, "msg-1").status == "parked"
    assert gone.record()["parked_reason"] == "destination 'crm' no longer exists"


def test_a_parked_delivery_is_replayed_through_the_queue_with_a_fresh_horizon():
    world = World(server_error(), policy=RetryPolicy(first_retry=2, max_delay=10, horizon=30))
    world.deliver_until_done()
    assert world.record()["status"] == "parked"
    world.clock.advance(hours=2)
    reopened = world.service.replay("crm", MESSAGE.delivery_id)
    assert reopened["status"] == "pending" and "payload" not in reopened
    assert [m.delivery_id for m in world.queue.sent] == [MESSAGE.delivery_id]
    assert world.queue.sent[0].payload == MESSAGE.payload
    world.sender.outcomes = [ok()]
    assert world.service.deliver(world.queue.sent[0], "msg-replay").status == "delivered"
    with pytest.raises(BadQuery, match="only a parked delivery can be replayed"):
        world.service.replay("crm", MESSAGE.delivery_id)
    with pytest.raises(NotFound):
        world.service.replay("crm", "no-such-delivery")


def test_the_log_lists_by_status_and_rejects_unknown_statuses():
    world = World(server_error())
    world.service.deliver(MESSAGE, "msg-1")
    other = DeliveryMessage("mercurio-def:crm", "crm", {"type": "segment.entered"}, "2026-11-22T12:00:00.000Z")
    world.sender.outcomes = [ok()]
    world.service.deliver(other, "msg-2")
    page = world.service.deliveries("crm", "retrying", 10, None)
    assert [d["delivery_id"] for d in page["deliveries"]] == ["mercurio-abc:crm"]
    assert not {"payload", "lease_until", "carrier"} & set(page["deliveries"][0])
    assert world.service.delivery("crm", "mercurio-abc:crm")["payload"] == MESSAGE.payload
    assert len(world.service.deliveries("crm", None, 10, None)["deliveries"]) == 2
    with pytest.raises(BadQuery):
        world.service.deliveries("crm", "lost", 10, None)


@pytest.mark.parametrize("value", [None, 42, "short", " padded-secret-value-0001 ", "x" * 5000])
def test_a_secret_must_be_a_reasonable_string(value):
    with pytest.raises(BadQuery):
        World().service.set_secret("crm", value)


def test_the_secret_of_an_unknown_destination_is_not_stored():
    world = World()
    with pytest.raises(NotFound):
        world.service.set_secret("nope", "whsec-appeared-later-0001")


# -- the queue consumer ------------------------------------------------------------------------

def _sqs_event(*bodies: str) -> dict:
    return {"Records": [{"messageId": f"msg-{i}", "receiptHandle": f"rh-{i}", "body": body, "attributes": {},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:mercurio-test-effects",
                         "awsRegion": "us-east-1"} for i, body in enumerate(bodies)]}


def test_the_consumer_reports_failures_and_delays_them_by_the_back_off():
    world = World(server_error(), ok())
    other = DeliveryMessage("mercurio-def:crm", "crm", {"type": "segment.entered"}, "2026-11-22T12:00:00.000Z")
    response = handle_effects(_sqs_event(MESSAGE.to_json(), other.to_json(), "not json"), None, world.service,
                              world.queue)
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-2"}]}
    assert world.queue.postponed == [("rh-0", 2.0), ("rh-2", 900.0)]
    assert world.record(other)["status"] == "delivered"


def test_a_batch_where_every_delivery_fails_is_an_answer_not_an_error():
    world = World(server_error())
    response = handle_effects(_sqs_event(MESSAGE.to_json()), None, world.service, world.queue)
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}


def test_delivery_messages_round_trip_and_bad_ones_are_named():
    assert DeliveryMessage.from_json(MESSAGE.to_json()) == MESSAGE
    for body in ("", "[]", json.dumps({"delivery_id": "x"}), json.dumps({**json.loads(MESSAGE.to_json()), "payload": 3})):
        with pytest.raises(InvalidDeliveryMessage):
            DeliveryMessage.from_json(body)


def test_the_consumer_counts_delivered_retried_and_parked_deliveries():
    class Metrics:
        def __init__(self):
            self.values = {}

        def add_metric(self, name, unit, value):
            self.values[name] = self.values.get(name, 0) + value

    world = World(server_error(), ok(), refused())
    bodies = [DeliveryMessage(f"m-{i}:crm", "crm", {"type": "segment.entered"}, "2026-11-22T12:00:00.000Z").to_json()
              for i in range(3)]
    metrics = Metrics()
    handle_effects(_sqs_event(*bodies), None, world.service, world.queue, metrics=metrics)
    assert {k: v for k, v in metrics.values.items() if k != "DeliveriesUnreadable"} == {
        "DeliveriesDelivered": 1, "DeliveriesRetried": 1, "DeliveriesParked": 1}
