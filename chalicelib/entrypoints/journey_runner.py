"""The journey runtime's three queue consumers (services/journey_runtime.py):

- `journey_events`: the journey-events FIFO queue (signals: events, segment changes,
  entries, stops), one contact's signals in order (Powertools' FIFO processor stops at the
  first failure so the rest of that batch comes back in order);
- `journey_advance`: the enrollment runner's Advance task messages;
- `journey_event_waits`: its wait-for-event task messages.

A message that fails comes back with back-off (2^receives seconds, at most 15 minutes) and,
after the queue's maxReceiveCount, is parked in its dead-letter queue. A task message whose
journey version can no longer be read fails its execution (`Mercurio.JourneyUnreadable`,
with the reason): the execution ends in AdvanceFailed, visible in the console and the
enrollment's trace, instead of retrying for ever.
"""
from __future__ import annotations

import json

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, SqsFifoPartialProcessor, \
    process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalice import Blueprint

from chalicelib import config
from chalicelib.entrypoints.runtime import flush_metrics, logger, services, tracer

MAX_BACKOFF = 900.0
TASK_FIELDS = ("enrollment_id", "task_token")

journey_runner = Blueprint(__name__)


class TryAgain(Exception):
    """Reported as a batch item failure: the message comes back after its back-off."""


@journey_runner.on_sqs_message(queue=config.journey_events_queue_name(), batch_size=10, name="journey_events")
@tracer.capture_method(capture_response=False)
def journey_events(event):
    try:
        wired = services()
        return handle_signals(event.to_dict(), event.context, wired.journey_runtime, wired.journey_queue, logger)
    finally:
        flush_metrics()


@journey_runner.on_sqs_message(queue=config.journey_advance_queue_name(), batch_size=10, name="journey_advance")
@tracer.capture_method(capture_response=False)
def journey_advance(event):
    try:
        wired = services()
        return handle_tasks(event.to_dict(), event.context, wired.journey_runtime.on_advance, wired.journey_runtime,
                            _redeliver(wired.settings.journey_advance_queue), logger)
    finally:
        flush_metrics()


@journey_runner.on_sqs_message(queue=config.journey_waits_queue_name(), batch_size=10, name="journey_event_waits")
@tracer.capture_method(capture_response=False)
def journey_event_waits(event):
    try:
        wired = services()
        return handle_tasks(event.to_dict(), event.context, wired.journey_runtime.on_event_wait,
                            wired.journey_runtime, _redeliver(wired.settings.journey_waits_queue), logger)
    finally:
        flush_metrics()


def _redeliver(queue_name: str):
    from chalicelib.adapters.sqs_journeys import Redeliver

    return Redeliver(queue_name)


def _backoff(record: SQSRecord) -> float:
    receives = int(record.attributes.approximate_receive_count or 1)
    return min(MAX_BACKOFF, 2.0 ** receives)


def _postpone(queue, record: SQSRecord, logger) -> None:
    try:
        queue.retry_later(record.receipt_handle, _backoff(record))
    except Exception:  # it comes back after the queue's own visibility timeout instead
        if logger is not None:
            logger.exception("could not delay the message", extra={"messageId": record.message_id})


def _body(record: SQSRecord, required: tuple[str, ...]) -> dict:
    try:
        body = json.loads(record.body)
    except (TypeError, ValueError):
        raise ValueError("not JSON") from None
    if not isinstance(body, dict) or any(not isinstance(body.get(f), str) for f in required):
        raise ValueError(f"expected a JSON object with {', '.join(required)}")
    return body


def handle_signals(event: dict, context, runtime, queue, logger=None) -> dict:
    counts = {"signals": 0, "entered": 0, "refused": 0, "resumed": 0, "ended": 0}

    def record_handler(record: SQSRecord) -> None:
        try:
            signal = _body(record, ("kind", "id"))
            outcome = runtime.on_signal(signal)
        except Exception as exc:
            if logger is not None:
                logger.exception("journey signal failed", extra={"messageId": record.message_id,
                                                                  "reason": str(exc)})
            _postpone(queue, record, logger)
            raise TryAgain(str(exc)) from None
        counts["signals"] += 1
        for name in ("entered", "refused", "resumed", "ended"):
            counts[name] += getattr(outcome, name)

    processor = SqsFifoPartialProcessor()
    response = process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                        context=context)
    # After a failure the FIFO processor leaves the contact's later signals unhandled (their
    # order must hold); they come back with the failed one's back-off, not the queue's
    # visibility timeout.
    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    postponed = False
    for raw in event.get("Records", []):
        record = SQSRecord(raw)
        if record.message_id in failed:
            if postponed:
                _postpone(queue, record, logger)
            postponed = True  # the first failure postponed itself
    if logger is not None:
        logger.info("journey signals processed", extra={**counts, "postponed": len(failed)})
    return response


def handle_tasks(event: dict, context, handle, runtime, queue, logger=None) -> dict:
    from chalicelib.services.journey_runtime import UnknownJourneyVersion

    counts: dict[str, int] = {}

    def record_handler(record: SQSRecord) -> None:
        try:
            message = _body(record, TASK_FIELDS)
        except ValueError as exc:
            if logger is not None:
                logger.error("unreadable enrollment task message", extra={"messageId": record.message_id,
                                                                          "reason": str(exc)})
            _postpone(queue, record, logger)  # parked in the dead-letter queue after its receives
            raise TryAgain(str(exc)) from None
        try:
            outcome = handle(message)
        except UnknownJourneyVersion as exc:
            runtime.fail_task(message["task_token"], "Mercurio.JourneyUnreadable", str(exc))
            counts["failed"] = counts.get("failed", 0) + 1
            return
        except Exception as exc:
            if logger is not None:
                logger.exception("enrollment task failed, retrying", extra={
                    "messageId": record.message_id, "enrollment": message["enrollment_id"], "reason": str(exc)})
            _postpone(queue, record, logger)
            raise TryAgain(str(exc)) from None
        key = outcome.answered or "none"
        counts[key] = counts.get(key, 0) + 1

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                        context=context)
    if logger is not None:
        logger.info("enrollment tasks processed", extra={**counts, "records": len(event.get("Records", []))})
    return response
