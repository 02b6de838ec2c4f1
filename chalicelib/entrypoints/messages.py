"""The messages queues → MessagingService.send, with Powertools' partial batch failure
reporting: `send_messages` consumes the marketing queue, `send_transactional_messages` the
transactional one (its own Lambda, so a receipt never waits behind a bulk send).

A message that must wait (deferred by the gate, a provider retry, another worker's lease)
stays on its queue: it is made visible again at its moment with ChangeMessageVisibility and
reported as a batch item failure, as the effects consumer does. SQS allows at most 12 hours
per receive, so a longer deferral wakes every 12 hours, finds it is not yet due (one
consistent read of the message, no write) and sleeps again: about two SQS requests and one
read per 12 hours of waiting. The event source mappings must report batch item failures.
"""
from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalice import Blueprint

from chalicelib import config
from chalicelib.adapters.counter_batches import counter_batch
from chalicelib.adapters.sqs_messages import message_id_of
from chalicelib.domain.messaging.consent import MARKETING, TRANSACTIONAL
from chalicelib.entrypoints.runtime import flush_metrics, logger, metrics, services, tracer

INVALID_MESSAGE_RETRY = 900.0  # an unreadable queue message waits long, then the redrive policy parks it

message_handlers = Blueprint(__name__)


@message_handlers.on_sqs_message(queue=config.messages_queue_name(), batch_size=10, name="send_messages")
@tracer.capture_method(capture_response=False)
def send_messages(event):
    """Marketing messages (triggers, broadcasts), one attempt per receive."""
    return _consume(event, MARKETING)


@message_handlers.on_sqs_message(queue=config.transactional_queue_name(), batch_size=10,
                                 name="send_transactional_messages")
@tracer.capture_method(capture_response=False)
def send_transactional_messages(event):
    """Transactional messages (receipts, confirmations), on their own queue."""
    return _consume(event, TRANSACTIONAL)


def _consume(event, lane: str) -> dict:
    try:
        wired = services()
        with counter_batch(wired.campaign_stats, wired.channel_stats):  # one counter write per batch
            return handle_messages(event.to_dict(), event.context, wired.messaging, wired.message_queue, lane,
                                   logger, metrics)
    finally:
        flush_metrics()


class SendLater(Exception):
    """Reported as a batch item failure: the message stays on the queue."""


def handle_messages(event: dict, context, service, queue, lane: str, logger=None,
                    metrics=None) -> dict:
    counts: dict[str, int] = {}

    def postpone(record: SQSRecord, seconds: float) -> None:
        try:
            queue.retry_later(lane, record.receipt_handle, seconds)
        except Exception:  # it comes back after the queue's own visibility timeout instead
            if logger is not None:
                logger.exception("could not delay the message", extra={"messageId": record.message_id})

    def record_handler(record: SQSRecord) -> None:
        try:
            message_id = message_id_of(record.body)
        except ValueError as exc:
            counts["invalid"] = counts.get("invalid", 0) + 1
            if logger is not None:
                logger.error("unreadable messages-queue message", extra={"messageId": record.message_id,
                                                                          "reason": str(exc)})
            postpone(record, INVALID_MESSAGE_RETRY)
            raise SendLater(str(exc)) from None
        outcome = service.send(message_id)
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        if logger is not None and outcome.status in ("skipped", "deferred", "failed", "retrying"):
            log = logger.error if outcome.status == "failed" else logger.info
            log(f"message {outcome.status}", extra={"message_id": message_id, "code": outcome.code,
                                                     "reason": outcome.reason, "retry_in": outcome.retry_in})
        if not outcome.done:
            postpone(record, outcome.retry_in)
            raise SendLater(outcome.reason or outcome.status)

    batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(event=event, record_handler=record_handler, processor=batch,
                                        context=context)
    if logger is not None:
        logger.info("messages batch processed", extra={**counts, "lane": lane,
                                                        "records": len(event.get("Records", []))})
    return response
