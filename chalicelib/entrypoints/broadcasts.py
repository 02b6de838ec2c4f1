"""Broadcasts: the admin routes (launch, stats, a campaign's funnel) and the fan-out queue's
consumer, which turns each batch of recipients into requested messages (services/broadcasts.py).

The consumer takes one queue message (at most 100 contacts) per invocation, with at most
FANOUT_CONCURRENCY invocations at a time: the throttle of a launch. A batch that fails is
reported as a batch item failure and comes back after the queue's visibility timeout; after
the redrive policy's attempts it is parked on the fan-out dead-letter queue, where an operator
sees it and can redrive it (the ids are deterministic: a redriven batch sends nobody twice).
"""
from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalice import Blueprint

from chalicelib import config
from chalicelib.adapters.counter_batches import counter_batch
from chalicelib.adapters.sqs_fanout import batch_of
from chalicelib.entrypoints.http import admin_call
from chalicelib.entrypoints.runtime import flush_metrics, logger, services, tracer
from chalicelib.services.broadcasts import FANOUT_CONCURRENCY

broadcasts_api = Blueprint(__name__)
LAUNCH_BUDGET_SECONDS = 20.0  # API Gateway answers within 29 s; the rest continues on schedule


def _admin(action, status: int = 200):
    return admin_call(broadcasts_api.current_request, action, status)


@broadcasts_api.route("/v1/admin/broadcasts/{broadcast_id}/launch", methods=["POST"])
def admin_broadcast_launch(broadcast_id):
    """Freeze the broadcast and start its fan-out job: 202 with the job (409 when launched)."""
    return _admin(lambda r: services().broadcasts.launch(broadcast_id, LAUNCH_BUDGET_SECONDS), 202)


@broadcasts_api.route("/v1/admin/broadcasts/{broadcast_id}/stats", methods=["GET"])
def admin_broadcast_stats(broadcast_id):
    """The launch, the funnel and, with an experiment, each arm and the sequential verdict."""
    return _admin(lambda r: services().broadcasts.view(broadcast_id))


@broadcasts_api.route("/v1/admin/campaigns/{campaign_id}/stats", methods=["GET"])
def admin_campaign_stats(campaign_id):
    return _admin(lambda r: services().broadcasts.campaign_stats(campaign_id))


@broadcasts_api.on_sqs_message(queue=config.fanout_queue_name(), batch_size=1, name="broadcast_fanout",
                               maximum_concurrency=FANOUT_CONCURRENCY)
@tracer.capture_method(capture_response=False)
def broadcast_fanout(event):
    try:
        wired = services()
        # The page's `requested` counts: one write per row; its messages: ten per SQS request.
        with counter_batch(wired.campaign_stats, wired.message_queue):
            return handle_fanout(event.to_dict(), event.context, wired.broadcasts, logger)
    finally:
        flush_metrics()


def handle_fanout(event: dict, context, broadcasts, logger=None) -> dict:
    def record_handler(record: SQSRecord) -> None:
        counts = broadcasts.fan_out(batch_of(record.body))
        if logger is not None:
            logger.info("fan-out batch", extra={"messageId": record.message_id, **counts})

    batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=record_handler, processor=batch, context=context)
