"""Composition root: builds the services with their AWS adapters, once per Lambda container."""
from __future__ import annotations

import os
from functools import lru_cache

from chalicelib import config
from chalicelib.adapters.dynamodb_contacts import DynamoDBContactRepository
from chalicelib.adapters.dynamodb_events import DynamoDBEventStore
from chalicelib.services.contacts import ContactQueries
from chalicelib.services.imports import ContactImporter
from chalicelib.services.ingest import IngestService
from chalicelib.services.ports import SystemClock
from chalicelib.services.process_events import EventProcessor


def _endpoint() -> str | None:
    # boto3 honours AWS_ENDPOINT_URL by itself; PynamoDB needs it passed as `host`.
    return os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")


@lru_cache(maxsize=1)
def clock() -> SystemClock:
    return SystemClock()


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
def event_processor() -> EventProcessor:
    return EventProcessor(contact_repository(), clock(), counter_days=config.settings().counter_days)


@lru_cache(maxsize=1)
def contact_queries() -> ContactQueries:
    return ContactQueries(contact_repository(), event_store(), clock())


@lru_cache(maxsize=1)
def contact_importer() -> ContactImporter:
    return ContactImporter(event_store(), clock(), ttl_days=config.settings().event_ttl_days)


def reset() -> None:
    """Forget every built object (tests change the environment between cases)."""
    for builder in (clock, event_store, contact_repository, ingest_service, event_processor,
                    contact_queries, contact_importer):
        builder.cache_clear()
    config.settings.cache_clear()
