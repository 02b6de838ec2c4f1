"""The SES feedback queue → SesFeedback, with Powertools' partial batch failure reporting.
Registered as the `ses_feedback` Lambda (an SQS event source; the queue is subscribed to the
SNS topic of the configuration set's event destination and of the identity notifications).

An unreadable record (not SES feedback, malformed JSON, an SNS subscription confirmation) is
logged and counted, then acknowledged: retrying it would never make it readable. A failure
of a store is reported as a batch item failure, so only that record comes back (the queue's
redrive policy parks it in the dead-letter queue after repeated failures).
"""
from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalice import Blueprint

from chalicelib import config
from chalicelib.adapters.counter_batches import counter_batch
from chalicelib.entrypoints.runtime import flush_metrics, logger, metrics, services, tracer
from chalicelib.services.feedback import SesFeedback, UnreadableFeedback, parse_sqs_body

feedback_handlers = Blueprint(__name__)


@feedback_handlers.on_sqs_message(queue=config.feedback_queue_name(), batch_size=10, name="ses_feedback")
@tracer.capture_method(capture_response=False)
def ses_feedback(event):
    try:
        wired = services()
        with counter_batch(wired.campaign_stats, wired.channel_stats):  # one counter write per batch
            return handle_feedback(event.to_dict(), event.context, wired.ses_feedback, logger, metrics)
    finally:
        flush_metrics()


def handle_feedback(event: dict, context, service: SesFeedback, logger=None, metrics=None) -> dict:
    counts = {"applied": 0, "duplicate": 0, "ignored": 0, "unknown_message": 0, "unreadable": 0}

    def record_handler(record: SQSRecord) -> None:
        try:
            parsed = parse_sqs_body(record.body)
        except UnreadableFeedback as exc:
            counts["unreadable"] += 1
            if logger is not None:
                logger.error("unreadable SES feedback", extra={"messageId": record.message_id, "reason": str(exc)})
            return
        outcome = service.handle(parsed)
        counts[outcome.status] += 1
        if logger is not None and outcome.status == "unknown_message":
            logger.warning("SES feedback for a message not in the log",
                           extra={"type": parsed.kind, "ses_message_id": parsed.ses_message_id,
                                  "suppressed": outcome.suppressed})

    batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(event=event, record_handler=record_handler, processor=batch,
                                        context=context)
    if metrics is not None:
        from aws_lambda_powertools.metrics import MetricUnit

        metrics.add_metric(name="FeedbackApplied", unit=MetricUnit.Count, value=counts["applied"])
        metrics.add_metric(name="FeedbackUnknownMessage", unit=MetricUnit.Count, value=counts["unknown_message"])
        metrics.add_metric(name="FeedbackUnreadable", unit=MetricUnit.Count, value=counts["unreadable"])
    if logger is not None:
        logger.info("SES feedback batch processed", extra={**counts, "records": len(event.get("Records", []))})
    return response
