"""Composition root: `bootstrap(settings, **overrides)` wires Mercurio's services.

It returns a `Services` object that builds each service or adapter the first time it is
asked for, from the settings, unless an override of that name was given (tests pass fakes:
`bootstrap(settings, clock=FixedClock(...), contact_repository=FakeRepository())`). Nothing
here is global: the Lambda entry points keep one `Services` per container
(`chalicelib.entrypoints.runtime`), tests build their own.
"""
from __future__ import annotations

from functools import cached_property, partial

from chalicelib.config import Settings
from chalicelib.domain import scoring
from chalicelib.services.ports import Clock, SystemClock


class Services:
    """Every service and adapter, built lazily (a Lambda that only ingests never builds the
    segment jobs) and once per `Services` object."""

    def __init__(self, settings: Settings, overrides: dict):
        self.settings = settings
        unknown = [name for name in overrides if not isinstance(getattr(type(self), name, None), cached_property)]
        if unknown:
            raise TypeError(f"bootstrap: nothing called {', '.join(sorted(unknown))} to override")
        # cached_property reads the instance dict first: an override is simply pre-cached.
        self.__dict__.update(overrides)

    # -- time ----------------------------------------------------------------------------------

    @cached_property
    def clock(self) -> Clock:
        return SystemClock()

    # -- adapters ------------------------------------------------------------------------------

    @cached_property
    def event_store(self):
        from chalicelib.adapters.dynamodb_events import DynamoDBEventStore

        return DynamoDBEventStore(self.settings.events_table)

    @cached_property
    def contact_repository(self):
        from chalicelib.adapters.dynamodb_contacts import DynamoDBContactRepository

        s = self.settings
        return DynamoDBContactRepository(s.contacts_table, s.identities_table, host=s.dynamodb_endpoint,
                                         region=s.aws_region)

    @cached_property
    def definition_store(self):
        from chalicelib.adapters.dynamodb_definitions import DynamoDBDefinitionStore

        return DynamoDBDefinitionStore(self.settings.definitions_table)

    @cached_property
    def membership_store(self):
        from chalicelib.adapters.dynamodb_memberships import DynamoDBMembershipStore

        return DynamoDBMembershipStore(self.settings.memberships_table, self.settings.definitions_table)

    @cached_property
    def recheck_schedule(self):
        from chalicelib.adapters.dynamodb_schedule import DynamoDBRecheckSchedule

        return DynamoDBRecheckSchedule(self.settings.schedule_table)

    @cached_property
    def definition_uploads(self):
        from chalicelib.adapters.s3_definitions import S3DefinitionUploads

        return S3DefinitionUploads(self.settings.data_bucket)

    @cached_property
    def audience_exporter(self):
        from chalicelib.adapters.s3_exports import S3AudienceExporter

        return S3AudienceExporter(self.settings.data_bucket)

    # -- services ------------------------------------------------------------------------------

    @cached_property
    def ingest(self):
        from chalicelib.services.ingest import IngestService

        s = self.settings
        return IngestService(self.event_store, s.sources, self.clock, ttl_days=s.event_ttl_days,
                             ip_truncate=s.ip_truncate, max_depth=s.max_nesting_depth)

    @cached_property
    def definitions(self):
        from chalicelib.services.definitions import DefinitionService

        return DefinitionService(self.definition_store, self.clock,
                                 cache_seconds=self.settings.definitions_cache_seconds,
                                 allow_private_destinations=self.settings.webhooks_allow_private,
                                 memberships=self.membership_store, on_unreadable=count_unreadable_definitions,
                                 uploads=self.definition_uploads)

    @cached_property
    def profile_rules(self):
        from chalicelib.services.segmentation import ProfileRules

        return ProfileRules(lambda: self.definitions.catalog(), counter_days=self.settings.counter_days)

    @cached_property
    def effects_publisher(self):
        from chalicelib.services.effects import EffectsPublisher

        return EffectsPublisher(self.membership_store, self.event_store, self.recheck_schedule, self.message_bus,
                                self.score_of, ttl_days=self.settings.event_ttl_days)

    @cached_property
    def event_processor(self):
        from chalicelib.services.process_events import EventProcessor

        return EventProcessor(self.contact_repository, self.clock, counter_days=self.settings.counter_days,
                              rules=self.profile_rules, publisher=self.effects_publisher,
                              schedule=self.recheck_schedule)

    # -- effects: the message bus, the effects queue and deliveries to destinations --------------

    @cached_property
    def score_of(self):
        """The decayed score, as the admin API and webhook payloads show it (0.0 without scoring)."""
        def score_of(contact, now) -> float:
            config = self.definitions.catalog().scoring
            return scoring.score_now(config, contact, now) if config is not None else 0.0

        return score_of

    @cached_property
    def effects_queue(self):
        from chalicelib.adapters.sqs_effects import SqsEffectsQueue

        return SqsEffectsQueue(self.settings.effects_queue)

    @cached_property
    def message_bus(self):
        """Every typed contact event's handlers, with their dependencies bound (cosmicpython's
        bootstrap): a new reaction is a handler in services/handlers.py and its line here."""
        from chalicelib.domain.events import iso
        from chalicelib.services.handlers import EVENT_HANDLERS, enqueue_destination_deliveries
        from chalicelib.services.messagebus import MessageBus

        dependencies = {
            enqueue_destination_deliveries: {
                "destinations": lambda: list(self.definitions.catalog().destinations.values()),
                "queue": self.effects_queue, "now": lambda: iso(self.clock.now())},
        }
        return MessageBus({event_type: [partial(handler, **dependencies[handler]) for handler in handlers]
                           for event_type, handlers in EVENT_HANDLERS.items()})

    @cached_property
    def delivery_store(self):
        from chalicelib.adapters.dynamodb_deliveries import DynamoDBDeliveryStore

        return DynamoDBDeliveryStore(self.settings.deliveries_table)

    @cached_property
    def secret_store(self):
        from chalicelib.adapters.ssm_secrets import SsmSecretStore

        return SsmSecretStore()

    @cached_property
    def delivery_service(self):
        from chalicelib.adapters.webhooks import WebhookSender
        from chalicelib.domain.deliveries import RetryPolicy
        from chalicelib.services.deliveries import DeliveryService

        s = self.settings
        policy = RetryPolicy(first_retry=s.delivery_first_retry_seconds, max_delay=s.delivery_max_delay_seconds,
                             horizon=s.delivery_horizon_seconds)
        return DeliveryService(self.delivery_store, lambda d: self.definitions.catalog().destinations.get(d),
                               WebhookSender(allow_private=s.webhooks_allow_private),
                               self.secret_store, self.effects_queue, self.clock, policy)

    @cached_property
    def audience_exports(self):
        from chalicelib.services.audiences import AudienceExports

        return AudienceExports(self.membership_store, self.contact_repository, self.audience_exporter,
                               self.definitions, self.clock)

    @cached_property
    def segment_jobs(self):
        from chalicelib.services.segment_jobs import SegmentJobs

        return SegmentJobs(self.contact_repository, self.definitions, self.profile_rules, self.effects_publisher,
                           self.recheck_schedule, self.membership_store, self.event_store, self.clock,
                           counter_days=self.settings.counter_days)

    @cached_property
    def jobs(self):
        from chalicelib.services.jobs import JobRunner

        return JobRunner(self.definition_store, self.segment_jobs, self.clock)

    @cached_property
    def contact_queries(self):
        from chalicelib.services.contacts import ContactQueries

        return ContactQueries(self.contact_repository, self.event_store, self.clock, score_of=self.score_of)

    @cached_property
    def contact_importer(self):
        from chalicelib.services.imports import ContactImporter

        return ContactImporter(self.event_store, self.clock, ttl_days=self.settings.event_ttl_days)

    # -- after a send: public message pages, SES feedback, erasure and export -----------------
    # The message ports' DynamoDB adapters come with the send pipeline; until they are wired
    # here, these three must be given as overrides (tests pass the in-memory fakes).

    @cached_property
    def message_log(self):
        raise LookupError("no MessageLog adapter is wired: pass message_log= to bootstrap()")

    @cached_property
    def suppression_store(self):
        raise LookupError("no SuppressionStore adapter is wired: pass suppression_store= to bootstrap()")

    @cached_property
    def channel_stats(self):
        raise LookupError("no ChannelStats adapter is wired: pass channel_stats= to bootstrap()")

    @cached_property
    def link_tracker(self):
        from chalicelib.domain.messaging.links import LinkTracker

        return LinkTracker(self.settings.link_secrets, self.settings.public_messages_url)

    @cached_property
    def interactions(self):
        from chalicelib.services.interactions import Interactions

        return Interactions(lambda: self.message_log, lambda: self.suppression_store, self.event_store,
                            self.contact_repository, self.link_tracker, self.clock, self.settings.suppression_salt,
                            ttl_days=self.settings.event_ttl_days)

    @cached_property
    def ses_feedback(self):
        from chalicelib.services.feedback import SesFeedback

        return SesFeedback(self.message_log, self.suppression_store, self.channel_stats, self.event_store,
                           self.clock, self.settings.suppression_salt, ttl_days=self.settings.event_ttl_days)

    @cached_property
    def privacy(self):
        from chalicelib.services.privacy import Privacy

        return Privacy(self.contact_repository, self.event_store, self.membership_store, self.definition_store,
                       self.clock, self.settings.suppression_salt, messages=lambda: self.message_log,
                       suppressions=lambda: self.suppression_store, score_of=self.score_of)


def count_unreadable_definitions(rows: list[dict]) -> None:
    """Metric DefinitionsUnreadable at every catalog load: stored definitions this release's
    parser refuses (each is logged with its problems by the definition service)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    # Metrics objects of one namespace share their metric set: the entry point flushes it.
    Metrics(namespace="Mercurio", service="mercurio").add_metric(
        name="DefinitionsUnreadable", unit=MetricUnit.Count, value=len(rows))


def bootstrap(settings: Settings, **overrides) -> Services:
    """The wired services for these settings; any named part can be replaced."""
    return Services(settings, overrides)
