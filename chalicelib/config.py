"""The one place that reads the environment.

Everything configurable about Mercurio is an environment variable, set per stage in
`.chalice/config.json` on AWS and by the local runner on one machine.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

from chalicelib.domain.sources import Source, SourceConfigError, parse_sources


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _int(name: str, default: int) -> int:
    value = _env(name)
    try:
        return int(value) if value is not None else default
    except ValueError as exc:
        raise SourceConfigError(f"{name}={value!r} is not an integer") from exc


def stage() -> str:
    return _env("MERCURIO_STAGE", "dev") or "dev"


def events_stream_arn() -> str:
    """Read at import time by the stream handler's decorator (Chalice needs a literal)."""
    return _env(
        "MERCURIO_EVENTS_STREAM_ARN",
        f"arn:aws:dynamodb:us-east-1:000000000000:table/mercurio-{stage()}-events/stream/not-deployed",
    )


def effects_queue_name() -> str:
    """Read at import time by the queue consumer's decorator (Chalice needs a literal)."""
    return _env("MERCURIO_EFFECTS_QUEUE", f"mercurio-{stage()}-effects")


def messages_queue_name() -> str:
    """Marketing messages' queue; read at import time by its consumer's decorator."""
    return _env("MERCURIO_MESSAGES_QUEUE", f"mercurio-{stage()}-messages")


def transactional_queue_name() -> str:
    """Transactional messages' own queue (never behind a bulk send); read at import time."""
    return _env("MERCURIO_TRANSACTIONAL_QUEUE", f"mercurio-{stage()}-messages-transactional")


def feedback_queue_name() -> str:
    """Read at import time by the SES feedback consumer's decorator (Chalice needs a literal)."""
    return _env("MERCURIO_FEEDBACK_QUEUE", f"mercurio-{stage()}-ses-feedback")


def fanout_queue_name() -> str:
    """Broadcast fan-out batches' queue; read at import time by its consumer's decorator."""
    return _env("MERCURIO_FANOUT_QUEUE", f"mercurio-{stage()}-broadcast-fanout")


def journey_events_queue_name() -> str:
    """Journey signals (events, segment changes, entries, stops), a FIFO queue grouped by
    contact; read at import time by its consumer's decorator."""
    return _env("MERCURIO_JOURNEY_EVENTS_QUEUE", f"mercurio-{stage()}-journey-events.fifo")


def journey_advance_queue_name() -> str:
    """The enrollment runner's Advance task messages; read at import time by its consumer."""
    return _env("MERCURIO_JOURNEY_ADVANCE_QUEUE", f"mercurio-{stage()}-journey-advance")


def journey_waits_queue_name() -> str:
    """The enrollment runner's wait-for-event task messages; read at import time by its consumer."""
    return _env("MERCURIO_JOURNEY_WAITS_QUEUE", f"mercurio-{stage()}-journey-event-waits")


def _secrets(name: str) -> tuple[bytes, ...]:
    """Comma-separated secrets, newest first (a rotation keeps the older ones readable)."""
    value = _env(name)
    return tuple(part.strip().encode("utf-8") for part in value.split(",") if part.strip()) if value else ()


def _seconds(name: str, default: float) -> float:
    value = _env(name)
    try:
        seconds = float(value) if value is not None else default
    except ValueError as exc:
        raise SourceConfigError(f"{name}={value!r} is not a number of seconds") from exc
    if seconds <= 0:
        raise SourceConfigError(f"{name}={value!r} must be more than zero")
    return seconds


@dataclass(frozen=True)
class Settings:
    stage: str
    events_table: str
    contacts_table: str
    identities_table: str
    definitions_table: str
    memberships_table: str
    schedule_table: str
    data_bucket: str
    sources: tuple[Source, ...]
    admin_token: str | None
    admin_token_parameter: str | None
    event_ttl_days: int
    ip_truncate: bool
    counter_days: int
    definitions_cache_seconds: float
    webhooks_allow_private: bool
    max_nesting_depth: int = 12
    # Where the AWS SDKs point: None on AWS; the emulator's URL locally. boto3 honours
    # AWS_ENDPOINT_URL by itself; PynamoDB needs it passed as `host`.
    dynamodb_endpoint: str | None = None
    aws_region: str | None = None
    effects_queue: str = "mercurio-dev-effects"
    deliveries_table: str = "mercurio-dev-deliveries"
    # Deliveries: first retry after this, doubling up to the cap, for `horizon` seconds.
    delivery_first_retry_seconds: float = 2.0
    delivery_max_delay_seconds: float = 900.0
    delivery_horizon_seconds: float = 24 * 3600.0
    # Messaging (services/messaging.py).
    messages_table: str = "mercurio-dev-messages"
    suppressions_table: str = "mercurio-dev-suppressions"
    channels_table: str = "mercurio-dev-channels"
    messages_queue: str = "mercurio-dev-messages"
    transactional_queue: str = "mercurio-dev-messages-transactional"
    feedback_queue: str = "mercurio-dev-ses-feedback"
    fanout_queue: str = "mercurio-dev-broadcast-fanout"
    # Where the links in messages live (clicks, pixel, unsubscribe, preferences): the API's URL
    # followed by /v1/m.
    public_messages_url: str = "http://127.0.0.1:8000/v1/m"
    # Secrets, set directly (local stack, tests) or read from SSM SecureString parameters:
    # the links' signing keys, newest first (a rotation keeps the older ones readable), and the
    # salt of the suppression list's address hashes (16 bytes or more, never changed: a new
    # salt would forget every opt-out).
    link_secrets: tuple[bytes, ...] = ()
    link_secret_parameter: str | None = None
    suppression_salt: bytes = b""
    suppression_salt_parameter: str | None = None
    ses_configuration_set: str | None = None
    default_from_address: str = "Mercurio <hello@mercurio.example>"
    sms_max_segments: int = 3
    # The gate (domain/messaging/policy.py): cap, quiet hours, default zone, horizon.
    cap_messages: int = 3
    cap_days: int = 7
    quiet_hours: str | None = "21:00-08:00"
    default_time_zone: str = "UTC"
    # SES's MaxSendRate, read from GetAccount when not set here.
    email_rate_per_second: float | None = None
    # Powertools' own switch, read here too: the per-message metrics are flushed one by one
    # (each with its reason), which Powertools' switch does not silence by itself.
    metrics_enabled: bool = True
    # SMS: through SNS (default), or AWS End User Messaging SMS with its origination identity
    # (a phone number, sender id or pool ARN) and, optionally, its configuration set.
    sms_provider: str = "sns"
    sms_origination_identity: str | None = None
    sms_configuration_set: str | None = None
    # Push: the SNS platform application of each device type (MERCURIO_PUSH_PLATFORMS,
    # {"ios": "<APNs platform application ARN>", "android": "<FCM one>"}).
    push_platforms: tuple = ()
    # The consent forms the public write key may grant through (MERCURIO_CONSENT_FORMS,
    # {"footer-newsletter": {"shown": "<the wording>", "collects": ["email/newsletter"]}}).
    consent_forms: dict = field(default_factory=dict)
    # Journeys (services/journey_runtime.py): the enrollments table, the three queues and the
    # enrollment runner state machine (infrastructure/enrollment-runner.asl.json).
    enrollments_table: str = "mercurio-dev-enrollments"
    journey_events_queue: str = "mercurio-dev-journey-events.fifo"
    journey_advance_queue: str = "mercurio-dev-journey-advance"
    journey_waits_queue: str = "mercurio-dev-journey-event-waits"
    enrollment_runner_arn: str | None = None
    # How much faster than the wall clock the machine's waits pass (1 on AWS). The local
    # stack sets it so that an hour's wait takes seconds; it is applied where the runtime
    # turns the engine's wait into the machine's wait, nowhere else.
    journey_time_scale: float = 1.0


SMS_PROVIDERS = ("sns", "end-user-messaging")


def _sms_provider() -> str:
    provider = (_env("MERCURIO_SMS_PROVIDER", "sns") or "sns").strip().lower()
    if provider not in SMS_PROVIDERS:
        raise SourceConfigError(f"MERCURIO_SMS_PROVIDER={provider!r} is not one of {', '.join(SMS_PROVIDERS)}")
    if provider == "end-user-messaging" and not _env("MERCURIO_SMS_ORIGINATION_IDENTITY"):
        raise SourceConfigError("MERCURIO_SMS_PROVIDER=end-user-messaging needs MERCURIO_SMS_ORIGINATION_IDENTITY "
                                "(a phone number, sender id or pool of AWS End User Messaging SMS)")
    return provider


@lru_cache(maxsize=1)
def settings() -> Settings:
    st = stage()
    sources_json = _env("MERCURIO_SOURCES")
    write_key = _env("MERCURIO_WRITE_KEY")
    raw_sources: list = json.loads(sources_json) if sources_json else []
    if write_key:
        raw_sources.append({"name": "default", "write_key": write_key, "origins": ["*"]})
    return Settings(
        stage=st,
        events_table=_env("MERCURIO_EVENTS_TABLE", f"mercurio-{st}-events"),
        contacts_table=_env("MERCURIO_CONTACTS_TABLE", f"mercurio-{st}-contacts"),
        identities_table=_env("MERCURIO_IDENTITIES_TABLE", f"mercurio-{st}-identities"),
        definitions_table=_env("MERCURIO_DEFINITIONS_TABLE", f"mercurio-{st}-definitions"),
        memberships_table=_env("MERCURIO_MEMBERSHIPS_TABLE", f"mercurio-{st}-memberships"),
        schedule_table=_env("MERCURIO_SCHEDULE_TABLE", f"mercurio-{st}-schedule"),
        data_bucket=_env("MERCURIO_DATA_BUCKET", f"mercurio-{st}-data-000000000000"),
        sources=parse_sources(raw_sources),
        admin_token=_env("MERCURIO_ADMIN_TOKEN"),
        admin_token_parameter=_env("MERCURIO_ADMIN_TOKEN_PARAMETER"),
        event_ttl_days=_int("MERCURIO_EVENT_TTL_DAYS", 395),
        ip_truncate=_bool("MERCURIO_IP_TRUNCATE", False),
        counter_days=_int("MERCURIO_COUNTER_DAYS", 90),
        definitions_cache_seconds=float(_int("MERCURIO_DEFINITIONS_CACHE_SECONDS", 30)),
        webhooks_allow_private=_bool("MERCURIO_WEBHOOKS_ALLOW_PRIVATE", False),
        dynamodb_endpoint=_env("AWS_ENDPOINT_URL_DYNAMODB") or _env("AWS_ENDPOINT_URL"),
        aws_region=_env("AWS_REGION") or _env("AWS_DEFAULT_REGION"),
        effects_queue=effects_queue_name(),
        deliveries_table=_env("MERCURIO_DELIVERIES_TABLE", f"mercurio-{st}-deliveries"),
        delivery_first_retry_seconds=_seconds("MERCURIO_DELIVERY_FIRST_RETRY_SECONDS", 2.0),
        delivery_max_delay_seconds=_seconds("MERCURIO_DELIVERY_MAX_DELAY_SECONDS", 900.0),
        delivery_horizon_seconds=_seconds("MERCURIO_DELIVERY_HORIZON_SECONDS", 24 * 3600.0),
        messages_table=_env("MERCURIO_MESSAGES_TABLE", f"mercurio-{st}-messages"),
        suppressions_table=_env("MERCURIO_SUPPRESSIONS_TABLE", f"mercurio-{st}-suppressions"),
        channels_table=_env("MERCURIO_CHANNELS_TABLE", f"mercurio-{st}-channels"),
        messages_queue=messages_queue_name(),
        transactional_queue=transactional_queue_name(),
        feedback_queue=feedback_queue_name(),
        fanout_queue=fanout_queue_name(),
        public_messages_url=_env("MERCURIO_PUBLIC_MESSAGES_URL", "http://127.0.0.1:8000/v1/m"),
        link_secrets=_secrets("MERCURIO_LINK_SECRETS"),
        link_secret_parameter=_env("MERCURIO_LINK_SECRET_PARAMETER"),
        suppression_salt=(_env("MERCURIO_SUPPRESSION_SALT") or "").encode("utf-8"),
        suppression_salt_parameter=_env("MERCURIO_SUPPRESSION_SALT_PARAMETER"),
        ses_configuration_set=_env("MERCURIO_SES_CONFIGURATION_SET"),
        default_from_address=_env("MERCURIO_FROM_ADDRESS", "Mercurio <hello@mercurio.example>"),
        sms_max_segments=_int("MERCURIO_SMS_MAX_SEGMENTS", 3),
        cap_messages=_int("MERCURIO_CAP_MESSAGES", 3),
        cap_days=_int("MERCURIO_CAP_DAYS", 7),
        quiet_hours=_env("MERCURIO_QUIET_HOURS", "21:00-08:00"),
        default_time_zone=_env("MERCURIO_DEFAULT_TIME_ZONE", "UTC"),
        email_rate_per_second=_seconds("MERCURIO_EMAIL_RATE_PER_SECOND", 1.0)
        if _env("MERCURIO_EMAIL_RATE_PER_SECOND") else None,
        metrics_enabled=not _bool("POWERTOOLS_METRICS_DISABLED", False),
        sms_provider=_sms_provider(),
        sms_origination_identity=_env("MERCURIO_SMS_ORIGINATION_IDENTITY"),
        sms_configuration_set=_env("MERCURIO_SMS_CONFIGURATION_SET"),
        push_platforms=_push_platforms(_env("MERCURIO_PUSH_PLATFORMS")),
        consent_forms=_consent_forms(_env("MERCURIO_CONSENT_FORMS")),
        enrollments_table=_env("MERCURIO_ENROLLMENTS_TABLE", f"mercurio-{st}-enrollments"),
        journey_events_queue=journey_events_queue_name(),
        journey_advance_queue=journey_advance_queue_name(),
        journey_waits_queue=journey_waits_queue_name(),
        enrollment_runner_arn=_env("MERCURIO_ENROLLMENT_RUNNER_ARN"),
        journey_time_scale=_scale("MERCURIO_JOURNEY_TIME_SCALE"),
    )


def _scale(name: str) -> float:
    value = _env(name)
    try:
        scale = float(value) if value is not None else 1.0
    except ValueError as exc:
        raise SourceConfigError(f"{name}={value!r} is not a number") from exc
    if not 1.0 <= scale <= 1_000_000.0:
        raise SourceConfigError(f"{name}={value!r} must be between 1 (real time) and 1000000")
    return scale


def _json_setting(name: str, text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SourceConfigError(f"{name} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SourceConfigError(f"{name} must be a JSON object")
    return value


def _push_platforms(text: str | None) -> tuple:
    """(("android", arn), ("ios", arn)): device type → SNS platform application ARN."""
    value = _json_setting("MERCURIO_PUSH_PLATFORMS", text)
    for platform, arn in value.items():
        if platform not in ("ios", "android") or not isinstance(arn, str) or not arn.startswith("arn:"):
            raise SourceConfigError(f"MERCURIO_PUSH_PLATFORMS: {platform!r} must be ios or android with the ARN "
                                    "of its SNS platform application")
    return tuple(sorted(value.items()))


def _consent_forms(text: str | None) -> dict:
    from chalicelib.domain.messaging.consent import ALL_TOPICS, CHANNELS, ConsentForm

    forms = {}
    for form_id, spec in _json_setting("MERCURIO_CONSENT_FORMS", text).items():
        shown = spec.get("shown") if isinstance(spec, dict) else None
        collects = spec.get("collects") if isinstance(spec, dict) else None
        if not isinstance(shown, str) or not shown.strip() or not isinstance(collects, list) or not collects:
            raise SourceConfigError(f"MERCURIO_CONSENT_FORMS: form {form_id!r} needs `shown` (the wording) and "
                                    "`collects` (a list like [\"email\", \"email/newsletter\"])")
        pairs = set()
        for item in collects:
            channel, _, topic = str(item).partition("/")
            if channel not in CHANNELS:
                raise SourceConfigError(f"MERCURIO_CONSENT_FORMS: form {form_id!r} collects an unknown channel "
                                        f"{item!r}")
            pairs.add((channel, topic.strip().lower() or ALL_TOPICS))
        forms[form_id] = ConsentForm(form_id, shown.strip(), frozenset(pairs))
    return forms


def recheck_minutes() -> int:
    """How often the scheduled job looks for contacts whose segments time may have changed
    (the promise: a time-based condition flips within this many minutes). Read at import."""
    return max(1, min(15, _int("MERCURIO_RECHECK_MINUTES", 5)))
