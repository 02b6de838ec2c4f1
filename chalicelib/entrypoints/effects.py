"""The effects queue → DeliveryService, with Powertools' partial batch failure reporting.
Registered as the `deliver_effects` Lambda (an SQS event source).

Back-off is done with the queue itself: a failed delivery's message is made visible again
after the delay (ChangeMessageVisibility) and reported as a batch item failure, so Lambda
leaves it on the queue. Chosen over re-sending a copy with DelaySeconds because the
delivery keeps one message for its whole life: no window in which a crash between sending
the copy and deleting the original duplicates it, the queue's receive count follows the
attempts (so its redrive policy to the dead-letter queue is a real safety net: 300 receives
against about 105 attempts in 24 hours), and a delay may exceed DelaySeconds' 15-minute
ceiling if the cap is raised (up to 12 hours per receive).
The event source mapping must report batch item failures (infrastructure/deploy.sh and
single-stack.yaml turn ReportBatchItemFailures on).
"""
from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalice import Blueprint

from chalicelib import config
from chalicelib.domain.deliveries import DeliveryMessage, InvalidDeliveryMessage
from chalicelib.entrypoints.runtime import flush_metrics, logger, metrics, services, tracer
from chalicelib.services.deliveries import DeliveryService
from chalicelib.services.handlers import PUSH_REGISTRATION

INVALID_MESSAGE_RETRY = 900.0  # an unreadable message waits long, then the redrive policy parks it in the DLQ


effects_handlers = Blueprint(__name__)


@effects_handlers.on_sqs_message(queue=config.effects_queue_name(), batch_size=10, name="deliver_effects")
@tracer.capture_method(capture_response=False)
def deliver_effects(event):
    """Deliveries to destinations, one attempt per receive."""
    try:
        wired = services()
        return handle_effects(event.to_dict(), event.context, wired.delivery_service, wired.effects_queue,
                              logger, metrics, push_devices=wired.push_devices)
    finally:
        flush_metrics()


class RetryLater(Exception):
    """Reported as a batch item failure: the message stays on the queue."""


def handle_effects(event: dict, context, service: DeliveryService, queue, logger=None, metrics=None,
                   push_devices=None) -> dict:
    """`push_devices` (services/push_devices.py) takes the push registrations that ride this queue."""
    counts = {"delivered": 0, "retrying": 0, "parked": 0, "skipped": 0, "busy": 0, "invalid": 0}

    def postpone(record: SQSRecord, seconds: float) -> None:
        try:
            queue.retry_later(record.receipt_handle, seconds)
        except Exception:  # it comes back after the queue's own visibility timeout instead
            if logger is not None:
                logger.exception("could not delay the message", extra={"messageId": record.message_id})

    def record_handler(record: SQSRecord) -> None:
        try:
            message = DeliveryMessage.from_json(record.body)
        except InvalidDeliveryMessage as exc:
            counts["invalid"] += 1
            if logger is not None:
                logger.error("unreadable effects message", extra={"messageId": record.message_id, "reason": str(exc)})
            postpone(record, INVALID_MESSAGE_RETRY)
            raise RetryLater(str(exc)) from None
        if message.destination_id == PUSH_REGISTRATION and push_devices is not None:
            outcome = push_devices.register(message, attempts=int(record.attributes.approximate_receive_count or 1))
        else:
            outcome = service.deliver(message, record.message_id)
        counts[outcome.status] += 1
        if logger is not None and outcome.status in ("retrying", "parked"):
            log = logger.warning if outcome.status == "retrying" else logger.error
            log(f"delivery {outcome.status}", extra={"delivery_id": message.delivery_id,
                                                     "destination": message.destination_id,
                                                     "reason": outcome.reason, "retry_in": outcome.retry_in})
        if not outcome.done:
            postpone(record, outcome.retry_in)
            raise RetryLater(outcome.reason)

    # Every record failing is a normal answer here (each already has its delay), not an error.
    batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(event=event, record_handler=record_handler, processor=batch,
                                        context=context)
    if metrics is not None:
        from aws_lambda_powertools.metrics import MetricUnit

        metrics.add_metric(name="DeliveriesDelivered", unit=MetricUnit.Count, value=counts["delivered"])
        metrics.add_metric(name="DeliveriesRetried", unit=MetricUnit.Count, value=counts["retrying"])
        metrics.add_metric(name="DeliveriesParked", unit=MetricUnit.Count, value=counts["parked"])
        metrics.add_metric(name="DeliveriesUnreadable", unit=MetricUnit.Count, value=counts["invalid"])
    if logger is not None:
        logger.info("effects batch processed", extra={**counts, "records": len(event.get("Records", []))})
    return response
