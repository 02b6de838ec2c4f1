"""The events-table stream → EventProcessor, with Powertools' partial batch failure reporting.

Registered as the `process_events` Lambda (a DynamoDB stream event source).

Only INSERT records are processed: an SDK retry rewrites the same key (a MODIFY), so a
resent event is never processed twice. A resend with a new timestamp is a new key (an
INSERT); the contact does not apply it again and `discard_if_resent` removes its row.

The batch is applied as a whole first (`EventProcessor.process_batch`: events of one contact
are applied in memory and the contact is written once), then each record is reported to
Powertools' BatchProcessor as done or failed. A contact whose write failed fails every one
of its records, and every record after the first failure fails too: the stream redelivers
them in order, and those already written are recognised by their digests.
"""
from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)

from chalice import Blueprint

from chalicelib import config
from chalicelib.adapters.dynamodb_events import decode_body
from chalicelib.entrypoints.runtime import flush_metrics, logger, metrics, services, tracer
from chalicelib.services.ports import ResentEvents
from chalicelib.services.process_events import BatchCache, EventProcessor
from chalicelib.services.resent_events import discard_if_resent

stream_handlers = Blueprint(__name__)


@stream_handlers.on_dynamodb_record(stream_arn=config.events_stream_arn(), batch_size=100,
                                    starting_position="TRIM_HORIZON", name="process_events")
@tracer.capture_method(capture_response=False)
def process_events(event):
    logger.append_keys(stream_records=len(event.to_dict().get("Records", [])))
    try:
        wired = services()
        return handle_stream(event.to_dict(), event.context, wired.event_processor, logger, metrics,
                             resent=wired.event_store)
    finally:
        logger.remove_keys(["stream_records"])
        flush_metrics()


def _tracking_event(record: DynamoDBRecord) -> dict | None:
    if record.event_name != DynamoDBRecordEventName.INSERT:
        return None
    body = record.dynamodb.new_image.get("b") if record.dynamodb else None
    return decode_body(body) if body is not None else None


def handle_stream(event: dict, context, processor: EventProcessor, logger=None, metrics=None,
                  resent: ResentEvents | None = None) -> dict:
    counts = {"processed": 0, "skipped": 0, "merged": 0, "created": 0, "contact_writes": 0, "resent": 0}
    records = [DynamoDBRecord(raw) for raw in event.get("Records", [])]
    decoded: dict[str, int] = {}  # sequence number -> position among the events to apply
    to_apply: list[dict] = []
    undecodable: dict[str, Exception] = {}
    for record in records:
        try:
            tracking_event = _tracking_event(record)
        except Exception as exc:  # noqa: BLE001 - a record that cannot be read fails alone
            undecodable[record.dynamodb.sequence_number] = exc
            continue
        if tracking_event is None:
            counts["skipped"] += 1
            continue
        decoded[record.dynamodb.sequence_number] = len(to_apply)
        to_apply.append(tracking_event)
    result = processor.process_batch(to_apply, BatchCache())
    counts["contact_writes"] = result.contact_writes
    for outcome in result.outcomes:
        if outcome is None:
            continue
        counts["created"] += int(outcome.created)
        counts["merged"] += len(outcome.merged)
        if outcome.merged and logger is not None:
            logger.info("contacts merged", extra={"survivor": outcome.contact_id, "merged": outcome.merged})

    def record_handler(record: DynamoDBRecord) -> None:
        sequence = record.dynamodb.sequence_number
        if sequence in undecodable:
            raise undecodable[sequence]
        position = decoded.get(sequence)
        if position is None:
            return
        error = result.errors[position]
        if error is not None:
            raise error
        outcome = result.outcomes[position]
        if resent is not None and outcome is not None:  # the same messageId stored twice: keep the first
            counts["resent"] += discard_if_resent(resent, record.dynamodb.keys, to_apply[position], outcome.applied)
        counts["processed"] += 1

    batch = BatchProcessor(event_type=EventType.DynamoDBStreams)
    response = process_partial_response(event=event, record_handler=record_handler, processor=batch,
                                        context=context)
    failed = len(response.get("batchItemFailures", []))
    if metrics is not None:
        from aws_lambda_powertools.metrics import MetricUnit

        metrics.add_metric(name="EventsProcessed", unit=MetricUnit.Count, value=counts["processed"])
        metrics.add_metric(name="EventsFailed", unit=MetricUnit.Count, value=failed)
        metrics.add_metric(name="ContactsCreated", unit=MetricUnit.Count, value=counts["created"])
        metrics.add_metric(name="ContactsMerged", unit=MetricUnit.Count, value=counts["merged"])
        metrics.add_metric(name="ContactWrites", unit=MetricUnit.Count, value=counts["contact_writes"])
    if logger is not None:
        logger.info("stream batch processed", extra={**counts, "failed": failed,
                                                     "records": len(event.get("Records", []))})
    return response
