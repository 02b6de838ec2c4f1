"""Composition root: builds the services with their AWS adapters, once per Lambda container."""
from __future__ import annotations

import os
from functools import lru_cache

from chalicelib import config
from chalicelib.domain import scoring
from chalicelib.adapters.dynamodb_contacts import DynamoDBContactRepository
from chalicelib.adapters.dynamodb_definitions import DynamoDBDefinitionStore
from chalicelib.adapters.dynamodb_events import DynamoDBEventStore
from chalicelib.adapters.dynamodb_memberships import DynamoDBMembershipStore
from chalicelib.adapters.dynamodb_schedule import DynamoDBRecheckSchedule
from chalicelib.adapters.s3_definitions import S3DefinitionUploads
from chalicelib.adapters.s3_exports import S3AudienceExporter
from chalicelib.adapters.webhooks import WebhookSender
from chalicelib.services.audiences import AudienceExports, SegmentEntryNotifier
from chalicelib.services.contacts import ContactQueries
from chalicelib.services.definitions import DefinitionService
from chalicelib.services.imports import ContactImporter
from chalicelib.services.ingest import IngestService
from chalicelib.services.ports import SystemClock
from chalicelib.services.process_events import EventProcessor
from chalicelib.services.segment_jobs import SegmentJobs
from chalicelib.services.segmentation import EffectsPublisher, ProfileRules


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
                             memberships=membership_store(), on_unreadable=count_unreadable_definitions)


@lru_cache(maxsize=1)
def profile_rules() -> ProfileRules:
    return ProfileRules(lambda: definitions().catalog(), counter_days=config.settings().counter_days)


@lru_cache(maxsize=1)
def effects_publisher() -> EffectsPublisher:
    return EffectsPublisher(membership_store(), event_store(), recheck_schedule(),
                            ttl_days=config.settings().event_ttl_days)


@lru_cache(maxsize=1)
def event_processor() -> EventProcessor:
    return EventProcessor(contact_repository(), clock(), counter_days=config.settings().counter_days,
                          rules=profile_rules(), publisher=effects_publisher(), notifier=entry_notifier())


def _secret(parameter: str) -> str:
    from aws_lambda_powertools.utilities.parameters import get_parameter

    return get_parameter(parameter, decrypt=True, max_age=300)


@lru_cache(maxsize=1)
def entry_notifier() -> SegmentEntryNotifier:
    sender = WebhookSender(allow_private=config.settings().webhooks_allow_private)
    return SegmentEntryNotifier(lambda: list(definitions().catalog().destinations.values()), sender, _secret)


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
    def score_of(contact, now):
        config = definitions().catalog().scoring
        return scoring.score_now(config, contact, now) if config is not None else 0.0

    return ContactQueries(contact_repository(), event_store(), clock(), score_of=score_of)


@lru_cache(maxsize=1)
def contact_importer() -> ContactImporter:
    return ContactImporter(event_store(), clock(), ttl_days=config.settings().event_ttl_days)


def reset() -> None:
    """Forget every built object (tests change the environment between cases)."""
    for builder in (event_store, contact_repository, ingest_service, event_processor, contact_queries,
                    contact_importer, definition_store, membership_store, recheck_schedule, definition_uploads,
                    definitions, profile_rules, effects_publisher, segment_jobs, entry_notifier, audience_exports):
        builder.cache_clear()
    config.settings.cache_clear()
    use_clock(None)


def count_unreadable_definitions(rows: list[dict]) -> None:
    """Metric DefinitionsUnreadable at every catalog load: stored definitions this release's
    parser refuses (each is logged with its problems by the definition service)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    # Metrics objects of one namespace share their metric set: the entry point flushes it.
    Metrics(namespace="Mercurio", service="mercurio").add_metric(
        name="DefinitionsUnreadable", unit=MetricUnit.Count, value=len(rows))
