"""Composition root: builds the services with their AWS adapters, once per Lambda container."""
from __future__ import annotations

import os
from functools import lru_cache, partial

from chalicelib import config
from chalicelib.domain import scoring
from chalicelib.domain.deliveries import RetryPolicy
from chalicelib.domain.events import iso
from chalicelib.adapters.dynamodb_contacts import DynamoDBContactRepository
from chalicelib.adapters.dynamodb_definitions import DynamoDBDefinitionStore
from chalicelib.adapters.dynamodb_deliveries import DynamoDBDeliveryStore
from chalicelib.adapters.dynamodb_events import DynamoDBEventStore
from chalicelib.adapters.dynamodb_memberships import DynamoDBMembershipStore
from chalicelib.adapters.dynamodb_schedule import DynamoDBRecheckSchedule
from chalicelib.adapters.s3_definitions import S3DefinitionUploads
from chalicelib.adapters.s3_exports import S3AudienceExporter
from chalicelib.adapters.sqs_effects import SqsEffectsQueue
from chalicelib.adapters.ssm_secrets import SsmSecretStore
from chalicelib.adapters.webhooks import WebhookSender
from chalicelib.services.audiences import AudienceExports
from chalicelib.services.contacts import ContactQueries
from chalicelib.services.definitions import DefinitionService
from chalicelib.services.deliveries import DeliveryService
from chalicelib.services.imports import ContactImporter
from chalicelib.services.ingest import IngestService
from chalicelib.services.messagebus import MessageBus
from chalicelib.services.ports import SystemClock
from chalicelib.services.process_events import EventProcessor
from chalicelib.services.segment_jobs import SegmentJobs
from chalicelib.services.effects import EffectsPublisher
from chalicelib.services.handlers import EVENT_HANDLERS, enqueue_destination_deliveries
from chalicelib.services.segmentation import ProfileRules


def _endpoint() -> str | None:
    # boto3 honours AWS_ENDPOINT_URL by itself; PynamoDB needs it passed as `host`.
    return os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")


_clock_override = None


class _Clock(SystemClock):
    """The system clock, unless a test or the local stack set another one with use_clock."""

    def now(self):
        return _clock_override.now() if _clock_override is not None else super().now()


_CLOCK = _Clock()


def clock() -> SystemClock:
    return _CLOCK


def use_clock(replacement) -> None:
    global _clock_override
    _clock_override = replacement


@lru_cache(maxsize=1)
def event_store() -> DynamoDBEventStore:
    return DynamoDBEventStore(config.settings().events_table)


@lru_cache(maxsize=1)
def contact_repository() -> DynamoDBContactRepository:
    s = config.settings()
    return DynamoDBContactRepository(s.contacts_table, s.identities_table, host=_endpoint(),
                                     region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


@lru_cache(maxsize=1)
def ingest_service() -> IngestService:
    s = config.settings()
    return IngestService(event_store(), s.sources, clock(), ttl_days=s.event_ttl_days,
                         ip_truncate=s.ip_truncate, max_depth=s.max_nesting_depth)


@lru_cache(maxsize=1)
def definition_store() -> DynamoDBDefinitionStore:
    return DynamoDBDefinitionStore(config.settings().definitions_table)


@lru_cache(maxsize=1)
def membership_store() -> DynamoDBMembershipStore:
    s = config.settings()
    return DynamoDBMembershipStore(s.memberships_table, s.definitions_table)


@lru_cache(maxsize=1)
def recheck_schedule() -> DynamoDBRecheckSchedule:
    return DynamoDBRecheckSchedule(config.settings().schedule_table)


@lru_cache(maxsize=1)
def definition_uploads() -> S3DefinitionUploads:
    return S3DefinitionUploads(config.settings().data_bucket)


@lru_cache(maxsize=1)
def definitions() -> DefinitionService:
    return DefinitionService(definition_store(), clock(), cache_seconds=config.settings().definitions_cache_seconds,
                             allow_private_destinations=config.settings().webhooks_allow_private)


@lru_cache(maxsize=1)
def profile_rules() -> ProfileRules:
    return ProfileRules(lambda: definitions().catalog(), counter_days=config.settings().counter_days)


@lru_cache(maxsize=1)
def effects_publisher() -> EffectsPublisher:
    return EffectsPublisher(membership_store(), event_store(), recheck_schedule(), message_bus(), score_of,
                            ttl_days=config.settings().event_ttl_days)


@lru_cache(maxsize=1)
def event_processor() -> EventProcessor:
    return EventProcessor(contact_repository(), clock(), counter_days=config.settings().counter_days,
                          rules=profile_rules(), publisher=effects_publisher())


@lru_cache(maxsize=1)
def audience_exports() -> AudienceExports:
    return AudienceExports(membership_store(), contact_repository(), S3AudienceExporter(config.settings().data_bucket),
                           definitions(), clock())


@lru_cache(maxsize=1)
def segment_jobs() -> SegmentJobs:
    return SegmentJobs(contact_repository(), definitions(), profile_rules(), effects_publisher(),
                       recheck_schedule(), membership_store(), event_store(), clock(),
                       counter_days=config.settings().counter_days)


@lru_cache(maxsize=1)
def contact_queries() -> ContactQueries:
    return ContactQueries(contact_repository(), event_store(), clock(), score_of=score_of)


@lru_cache(maxsize=1)
def contact_importer() -> ContactImporter:
    return ContactImporter(event_store(), clock(), ttl_days=config.settings().event_ttl_days)


# -- effects: the message bus, the effects queue and deliveries to destinations -----------------

def score_of(contact, now) -> float:
    """The decayed score, as the admin API and the webhook payloads show it (0.0 without scoring)."""
    config_ = definitions().catalog().scoring
    return scoring.score_now(config_, contact, now) if config_ is not None else 0.0


@lru_cache(maxsize=1)
def effects_queue() -> SqsEffectsQueue:
    return SqsEffectsQueue(config.settings().effects_queue)


@lru_cache(maxsize=1)
def message_bus() -> MessageBus:
    dependencies = {
        enqueue_destination_deliveries: {
            "destinations": lambda: list(definitions().catalog().destinations.values()),
            "queue": effects_queue(), "now": lambda: iso(clock().now())},
    }
    return MessageBus({event_type: [partial(handler, **dependencies[handler]) for handler in handlers]
                       for event_type, handlers in EVENT_HANDLERS.items()})


@lru_cache(maxsize=1)
def delivery_store() -> DynamoDBDeliveryStore:
    return DynamoDBDeliveryStore(config.settings().deliveries_table)


@lru_cache(maxsize=1)
def secret_store() -> SsmSecretStore:
    return SsmSecretStore()


@lru_cache(maxsize=1)
def delivery_service() -> DeliveryService:
    s = config.settings()
    policy = RetryPolicy(first_retry=s.delivery_first_retry_seconds, max_delay=s.delivery_max_delay_seconds,
                         horizon=s.delivery_horizon_seconds)
    return DeliveryService(delivery_store(), lambda d: definitions().catalog().destinations.get(d),
                           WebhookSender(max_attempts=1, allow_private=s.webhooks_allow_private),
                           secret_store(), effects_queue(), clock(), policy)


def reset() -> None:
    """Forget every built object (tests change the environment between cases)."""
    for builder in (event_store, contact_repository, ingest_service, event_processor, contact_queries,
                    contact_importer, definition_store, membership_store, recheck_schedule, definition_uploads,
                    definitions, profile_rules, effects_publisher, segment_jobs, audience_exports, message_bus, effects_queue,
                    delivery_store, secret_store, delivery_service):
        builder.cache_clear()
    config.settings.cache_clear()
    use_clock(None)
