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
                                 uploads=self.definition_uploads,
                                 views={"journey": lambda journey_id, row: self.journey_admin.definition_view(
                                     journey_id, row)})

    @cached_property
    def profile_rules(self):
        from chalicelib.services.segmentation import ProfileRules

        return ProfileRules(lambda: self.definitions.catalog(), counter_days=self.settings.counter_days,
                            site_consent=lambda: self.site_consent)

    @cached_property
    def site_consent(self):
        """The consent forms the public write key may grant through (MERCURIO_CONSENT_FORMS)."""
        from chalicelib.domain.messaging.consent import SiteConsentPolicy

        return SiteConsentPolicy(forms=self.settings.consent_forms)

    @cached_property
    def effects_publisher(self):
        from chalicelib.services.effects import EffectsPublisher

        return EffectsPublisher(self.membership_store, self.event_store, self.recheck_schedule, self.message_bus,
                                self.score_of, ttl_days=self.settings.event_ttl_days,
                                journeys=_Lazy(lambda: self.journey_queue))

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
        from chalicelib.domain.messaging.links import CONFIRM
        from chalicelib.services.handlers import EVENT_HANDLERS, enqueue_destination_deliveries, \
            enqueue_journey_merge_signal, enqueue_journey_segment_signal, enqueue_push_registration, \
            record_conversion, request_confirmation, request_triggered_messages
        from chalicelib.services.messagebus import MessageBus

        dependencies = {
            enqueue_destination_deliveries: {
                "destinations": lambda: list(self.definitions.catalog().destinations.values()),
                "queue": self.effects_queue, "now": lambda: iso(self.clock.now())},
            request_triggered_messages: {
                "triggers": lambda: list(self.definitions.catalog().triggers.values()),
                "request": lambda *args, **kwargs: self.messaging.request(*args, **kwargs)},
            record_conversion: {"messages": _Lazy(lambda: self.message_log)},
            enqueue_push_registration: {"queue": self.effects_queue, "now": lambda: iso(self.clock.now())},
            enqueue_journey_segment_signal: {"segments": lambda: self.definitions.catalog().journey_interest()[1],
                                             "queue": _Lazy(lambda: self.journey_queue)},
            enqueue_journey_merge_signal: {"journeys_live": lambda: bool(self.definitions.catalog().journeys),
                                           "queue": _Lazy(lambda: self.journey_queue)},
            request_confirmation: {
                "request": lambda *args, **kwargs: self.messaging.request(*args, **kwargs),
                "confirm_url": lambda mid, expires: self.link_tracker.page_url(CONFIRM, mid, expires)},
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
    def push_devices(self):
        """Push registrations from the effects queue; disabled endpoints reported by sends."""
        from chalicelib.adapters.sns_push import UnknownPlatform
        from chalicelib.domain.deliveries import RetryPolicy
        from chalicelib.services.push_devices import PermanentRegistrationError, PushDevices

        s = self.settings
        policy = RetryPolicy(first_retry=s.delivery_first_retry_seconds, max_delay=s.delivery_max_delay_seconds,
                             horizon=s.delivery_horizon_seconds)
        return PushDevices(lambda platform, token, contact: self.push_sender.register(platform, token, contact),
                           self.event_store, self.clock, policy,
                           permanent=(PermanentRegistrationError, UnknownPlatform),
                           ttl_days=s.event_ttl_days)

    # -- messaging: the message log, the gate's stores, the channels and the send use case ------

    @cached_property
    def message_store(self):
        from chalicelib.adapters.dynamodb_messages import DynamoDBMessageLog

        return DynamoDBMessageLog(self.settings.messages_table)

    @cached_property
    def campaign_stats(self):
        from chalicelib.adapters.dynamodb_campaign_stats import DynamoDBCampaignStats

        return DynamoDBCampaignStats(self.settings.channels_table)

    @cached_property
    def message_log(self):
        """The message log as every service uses it: each campaign message's first entry into
        a funnel status is counted (services/campaign_stats.py)."""
        from chalicelib.services.campaign_stats import CountingMessageLog

        return CountingMessageLog(self.message_store, self.message_store, self.campaign_stats)

    @cached_property
    def fanout_queue(self):
        from chalicelib.adapters.sqs_fanout import SqsFanOutQueue

        return SqsFanOutQueue(self.settings.fanout_queue)

    @cached_property
    def broadcasts(self):
        from chalicelib.services.broadcasts import Broadcasts

        return Broadcasts(self.definition_store, self.membership_store, self.contact_repository, self.messaging,
                          self.message_log, self.fanout_queue, self.campaign_stats, self.clock,
                          start_job=self.jobs.start, latest_job=self.jobs.latest,
                          default_zone=self.settings.default_time_zone)

    @cached_property
    def suppression_store(self):
        from chalicelib.adapters.dynamodb_suppressions import DynamoDBSuppressionStore

        return DynamoDBSuppressionStore(self.settings.suppressions_table)

    @cached_property
    def channel_stats(self):
        from chalicelib.adapters.dynamodb_channel_stats import DynamoDBChannelStats

        return DynamoDBChannelStats(self.settings.channels_table)

    @cached_property
    def send_rate(self):
        from chalicelib.adapters.dynamodb_send_rate import DynamoDBSendRate

        return DynamoDBSendRate(self.settings.channels_table)

    @cached_property
    def message_queue(self):
        from chalicelib.adapters.sqs_messages import SqsMessageQueue

        return SqsMessageQueue(self.settings.messages_queue, self.settings.transactional_queue)

    @cached_property
    def email_sender(self):
        from chalicelib.adapters.ses_email import SesEmailSender

        return SesEmailSender(configuration_set=self.settings.ses_configuration_set)

    @cached_property
    def sms_sender(self):
        from chalicelib.adapters.sms_senders import EndUserMessagingSmsSender, SnsSmsSender

        s = self.settings
        if s.sms_provider == "end-user-messaging":
            return EndUserMessagingSmsSender(s.sms_origination_identity, configuration_set=s.sms_configuration_set)
        return SnsSmsSender()

    @cached_property
    def push_sender(self):
        from chalicelib.adapters.sns_push import SnsPushSender

        return SnsPushSender(dict(self.settings.push_platforms))

    @cached_property
    def link_tracker(self):
        from chalicelib.domain.messaging.links import LinkTracker

        secrets = self.settings.link_secrets or tuple(
            part.strip().encode() for part in _secret(None, self.settings.link_secret_parameter, self.secret_store,
                                                      "MERCURIO_LINK_SECRETS").decode().split(",") if part.strip())
        return LinkTracker(secrets, self.settings.public_messages_url)

    @cached_property
    def suppression_salt(self) -> bytes:
        return _secret(self.settings.suppression_salt.decode(), self.settings.suppression_salt_parameter,
                       self.secret_store, "MERCURIO_SUPPRESSION_SALT")

    @cached_property
    def send_policy(self):
        from datetime import timedelta

        from chalicelib.domain.messaging.policy import FrequencyCap, PolicySettings, RateBudget

        s = self.settings
        rate = s.email_rate_per_second
        if rate is None:  # SES's own quota (GetAccount), read once per container
            quota = self.email_sender.quota()
            rate = quota.max_per_second if quota is not None and quota.max_per_second > 0 else 1.0
        return PolicySettings(caps=(FrequencyCap(s.cap_messages, timedelta(days=s.cap_days)),),
                              quiet_hours=_quiet_hours(s.quiet_hours), default_time_zone=s.default_time_zone,
                              rates={"email": RateBudget(per_second=rate, burst=max(2, int(rate)),
                                                         transactional_reserve=1)})

    @cached_property
    def messaging(self):
        from chalicelib.services.messaging import MessagingService

        s = self.settings
        return MessagingService(
            log=self.message_log, suppressions=self.suppression_store, stats=self.channel_stats, rate=self.send_rate,
            templates=self.templates, contacts=self.contact_repository, queue=self.message_queue,
            clock=self.clock, email=self.email_sender, sms=self.sms_sender, push=self.push_sender,
            tracker=lambda: self.link_tracker, salt=lambda: self.suppression_salt, policy=self.send_policy,
            from_address=s.default_from_address, sms_max_segments=s.sms_max_segments, count=message_counter(s),
            events=self.event_store, event_ttl_days=s.event_ttl_days,
            push_endpoint_gone=lambda contact, endpoint, mid: self.push_devices.endpoint_disabled(contact, endpoint,
                                                                                                  mid))

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

        runner = JobRunner(self.definition_store, self.segment_jobs, self.clock, exports=self.audience_exports)
        runner.broadcasts = _Later(lambda: self.broadcasts)  # broadcasts start jobs: built on first use
        runner.journeys = _Later(lambda: self.journey_admin)  # so do journey stops and schedules
        return runner

    @cached_property
    def contact_queries(self):
        from chalicelib.services.contacts import ContactQueries

        return ContactQueries(self.contact_repository, self.event_store, self.clock, score_of=self.score_of)

    @cached_property
    def journey_simulations(self):
        from chalicelib.services.journeys import JourneySimulations

        return JourneySimulations(self.definitions, self.contact_queries, self.clock, score_of=self.score_of)

    @cached_property
    def enrollment_store(self):
        from chalicelib.adapters.dynamodb_enrollments import DynamoDBEnrollmentStore

        return DynamoDBEnrollmentStore(self.settings.enrollments_table)

    @cached_property
    def enrollment_runner(self):
        from chalicelib.adapters.sfn_runner import StepFunctionsRunner

        return StepFunctionsRunner(self.settings.enrollment_runner_arn)

    @cached_property
    def journey_queue(self):
        from chalicelib.adapters.sqs_journeys import SqsJourneyQueue

        return SqsJourneyQueue(self.settings.journey_events_queue)

    @cached_property
    def journey_runtime(self):
        from chalicelib.services.journey_runtime import JourneyRuntime

        s = self.settings
        return JourneyRuntime(definitions=self.definitions, store=self.enrollment_store, runner=self.enrollment_runner,
                              queue=self.journey_queue, contacts=self.contact_repository, messaging=self.messaging,
                              message_log=self.message_log, effects_queue=self.effects_queue, events=self.event_store,
                              clock=self.clock, score_of=self.score_of,
                              coupons=_Lazy(lambda: self.coupon_pools),
                              time_scale=s.journey_time_scale, default_zone=s.default_time_zone,
                              event_ttl_days=s.event_ttl_days)

    @cached_property
    def coupon_pools(self):
        from chalicelib.adapters.dynamodb_coupons import DynamoDBCouponStore
        from chalicelib.services.coupons import CouponPools

        return CouponPools(DynamoDBCouponStore(self.settings.enrollments_table))

    @cached_property
    def journey_admin(self):
        from chalicelib.services.journey_admin import JourneyAdmin

        return JourneyAdmin(self.definitions, self.enrollment_store, self.journey_queue, self.contact_repository,
                            self.message_log, self.campaign_stats, self.membership_store, self.clock,
                            jobs=_Later(lambda: self.jobs))

    @cached_property
    def contact_importer(self):
        from chalicelib.services.imports import ContactImporter

        return ContactImporter(self.event_store, self.clock, ttl_days=self.settings.event_ttl_days)

    # -- templates and on-site content ---------------------------------------------------------

    @cached_property
    def template_store(self):
        """The accepted version of every template: what sends, previews and slots read."""
        from chalicelib.adapters.s3_templates import S3TemplateStore

        return S3TemplateStore(self.settings.data_bucket, prefix="accepted-templates/")

    @cached_property
    def template_inbox(self):
        """Where marketers upload (`aws s3 cp`, `make upload-templates`): judged before use."""
        from chalicelib.adapters.s3_templates import S3TemplateStore

        return S3TemplateStore(self.settings.data_bucket, prefix="templates/")

    @cached_property
    def templates(self):
        """Compiled templates by name and locale, cached by stored version (every channel)."""
        from chalicelib.domain.messaging.templates import TemplateEngine
        from chalicelib.services.template_store import TemplateLibrary

        return TemplateLibrary(self.template_store, TemplateEngine(clock=self.clock.now),
                               max_age=self.settings.definitions_cache_seconds)

    @cached_property
    def template_authoring(self):
        """Uploads judged before they replace anything; verdicts; previews."""
        from chalicelib.services.templates import TemplateAuthoring

        return TemplateAuthoring(self.template_store, self.templates, self.definition_store, self.clock.now,
                                 inbox=self.template_inbox)

    @cached_property
    def template_trials(self):
        """Previews for a real contact and test sends."""
        from chalicelib.services.template_trials import TemplateTrials

        return TemplateTrials(self.template_authoring, self.messaging, self.contact_repository, self.clock,
                              tracker=lambda: self.link_tracker)

    @cached_property
    def confirmations(self):
        from chalicelib.services.confirmations import Confirmations

        return Confirmations(self.contact_repository, self.event_store, self.clock,
                             ttl_days=self.settings.event_ttl_days)

    @cached_property
    def content_service(self):
        from chalicelib.services.content import ContentService

        return ContentService(self.contact_repository, lambda: self.definitions.catalog().content, self.templates,
                              self.settings.sources, self.clock, score_of=self.score_of)

    # -- after a send: public message pages, SES feedback, erasure and export -----------------

    @cached_property
    def interactions(self):
        from chalicelib.services.interactions import Interactions

        return Interactions(lambda: self.message_log, lambda: self.suppression_store, self.event_store,
                            self.contact_repository, self.link_tracker, self.clock, self.suppression_salt,
                            ttl_days=self.settings.event_ttl_days)

    @cached_property
    def ses_feedback(self):
        from chalicelib.services.feedback import SesFeedback

        return SesFeedback(self.message_log, self.suppression_store, self.channel_stats, self.event_store,
                           self.clock, self.suppression_salt, ttl_days=self.settings.event_ttl_days)

    @cached_property
    def privacy(self):
        from chalicelib.services.privacy import Privacy

        return Privacy(self.contact_repository, self.event_store, self.membership_store, self.definition_store,
                       self.clock, self.suppression_salt, messages=lambda: self.message_log,
                       suppressions=lambda: self.suppression_store, score_of=self.score_of,
                       exports=self.audience_exporter, enrollments=_Lazy(lambda: self.enrollment_store),
                       journey_queue=_Lazy(lambda: self.journey_queue))


class _Later:
    """A dependency built on first use (breaks the jobs ↔ broadcasts cycle)."""

    def __init__(self, build):
        self._build = build

    def __getattr__(self, name):
        return getattr(self._build(), name)


class _Lazy:
    """A dependency built the first time it is used: a stream Lambda that never converts a
    message never builds the message log."""

    def __init__(self, build):
        self._build, self._built = build, None

    def __getattr__(self, name):
        if self._built is None:
            self._built = self._build()
        return getattr(self._built, name)


def count_unreadable_definitions(rows: list[dict]) -> None:
    """Metric DefinitionsUnreadable at every catalog load: stored definitions this release's
    parser refuses (each is logged with its problems by the definition service)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    # Metrics objects of one namespace share their metric set: the entry point flushes it.
    Metrics(namespace="Mercurio", service="mercurio").add_metric(
        name="DefinitionsUnreadable", unit=MetricUnit.Count, value=len(rows))


def _secret(value: str | None, parameter: str | None, store, variable: str) -> bytes:
    """A messaging secret: set directly (local stack, tests) or read from SSM."""
    if value:
        return value.encode()
    if parameter:
        return store.get(parameter).encode()
    raise RuntimeError(f"set {variable} or {variable}_PARAMETER (an SSM SecureString of 16+ random bytes)")


def _quiet_hours(text: str | None):
    """`21:00-08:00` → QuietHours; empty or `off` → None."""
    from datetime import time

    from chalicelib.domain.messaging.policy import QuietHours

    if not text or text.strip().lower() in ("off", "none"):
        return None
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
        return QuietHours(start, end)
    except ValueError as exc:
        raise ValueError(f"MERCURIO_QUIET_HOURS={text!r} is not like 21:00-08:00") from exc


def message_counter(settings: Settings):
    """How message outcomes are counted: a metric each, unless metrics are off."""
    return count_message_outcome if settings.metrics_enabled else _not_counted


def _not_counted(outcome: str, code: str | None) -> None:
    """Metrics off (POWERTOOLS_METRICS_DISABLED, as the local stack runs): nothing printed."""


def count_message_outcome(outcome: str, code: str | None) -> None:
    """Metric Messages<Outcome> (MessagesSent, MessagesSkipped…), with the reason code as a
    dimension for skips, deferrals and failures, so every reason is counted."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    name = "Messages" + "".join(part.title() for part in outcome.split("_"))
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace="Mercurio",
                       default_dimensions={"reason": code or "none"}) as metric:
        metric  # noqa: B018 - flushed when the block ends


def bootstrap(settings: Settings, **overrides) -> Services:
    """The wired services for these settings; any named part can be replaced."""
    return Services(settings, overrides)
