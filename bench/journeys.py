"""Journeys benchmark: state transitions, Lambda calls, queue requests, DynamoDB units and cost
per enrollment of each shipped journey, enrollments started per second, and event → message
latency on the local stack.

    .venv/bin/python -m bench.run --suite journeys        # about 4 minutes on 2 cores
    .venv/bin/python -m bench.run --suite journeys --journey-contacts 10 --json out/journeys.json

1. **Per enrollment** (a stage provisioned from infrastructure/template.yaml on moto's server,
   its Step Functions executing the enrollment runner, `provision(..., execute=True)`): the
   shipped definitions (chalicelib/definitions, the journeys among them) seeded as `make run`
   does; contacts seeded straight into the contacts table (consent, traits, segments: not
   measured); then each timeline's events go in through the ingest service and the events
   table's stream (`process_events`, as the event source mapping calls it), which puts the
   journey signals on the journey-events FIFO queue; segment entries (birthday, win-back) are
   put on that queue as the stream's publisher puts them. The three journey consumers are the
   Lambda entry points themselves (`journey_events`, `journey_advance`, `journey_event_waits`)
   called by `local.queue_bridge.QueueBridge` with batches of ONE message, so every DynamoDB,
   SQS and Step Functions request is attributed to the message, hence to its enrollment and
   timeline (and batch size 1 is the worst case for Lambda invocations). Events a timeline
   sends while an enrollment waits (a purchase, the lead's scoring events) are ingested when
   the enrollment is seen waiting at that node. Each timeline runs at a time scale (the
   runtime's `time_scale`: an hour of journey in 1/scale of an hour) chosen so that a wait
   meant to time out does so in about a second, and a wait meant to be interrupted lasts 40 s
   of machine time. Afterwards, every execution's history (`GetExecutionHistory`) gives the
   states entered (each a billed transition) and the Task retries (also billed).
2. **Enrollments started per second**: `--journey-starts` contacts each add a product to a
   cart; the signals are queued first, then one `journey_events` consumer (batches of 10, as
   deployed) takes them: `on_signal` → the enrollment stored → `StartExecution` on moto.
3. **Latency on the local stack**: `local.run.LocalStack` (what `make run` starts: its
   bridges poll as they do there) in this process, the journey time scale at make run's 600;
   the abandoned cart's `Product Added` over HTTP → the email accepted by SES (the runner's
   `send_raw`, timed) minus the machine's wait (from the execution history), and a `wait_for`
   resumed by an event → the next email (a small bench journey stored through the
   definitions service, sending the shipped `onboarding` template).

Costs at us-east-1 list prices (`JourneyPrices`, extending bench/messaging.py's `Prices`).
What transfers to AWS: counts (transitions, messages, requests, request units). What does not:
seconds (moto on the same two cores); the Lambda time used for cost is modelled from the CPU
time measured here, as in the messaging suite.
"""
from __future__ import annotations

import base64
import json
import math
import os
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from bench.harness import ROOT, WRITE_KEY
from bench.messaging import Prices, lambda_estimate_seconds, percentile

HISTORY_LIMIT = 25_000  # Step Functions Standard: events in one execution's history
OPEN_EXECUTIONS = 1_000_000  # Step Functions Standard: open executions per account and region
START_EXECUTION_REFILL = 300  # per second, us-east-1 / us-west-2 / eu-west-1
START_EXECUTION_BUCKET = 1_300
TRANSITIONS_PER_WAIT = 3
MEMORY_MB = 512  # .chalice/config.json: journey_events, journey_advance, journey_event_waits
LATENCY_MS = {"dynamodb": 5.0, "sqs": 10.0, "stepfunctions": 20.0}  # assumed in-region round trips
FAST = 1_000_000.0  # the runtime's largest time scale: a year of journey in 32 s
BATCH = 10  # the consumers' batch size as deployed


# -- prices and pure helpers -------------------------------------------------------------------

@dataclass(frozen=True)
class JourneyPrices(Prices):
    """bench/messaging.py's list prices, and what journeys add (docs/PERFORMANCE.md, "Journeys")."""

    sfn_transition: float = 0.025 / 1000  # Step Functions Standard, per state transition (retries included)
    sqs_fifo_request: float = 0.50 / 1e6  # SQS FIFO queue, per request (64 KB chunk)


def history_counts(events: list[dict]) -> dict:
    """What one execution's history says it cost: the states entered (every one a billed
    transition), the Task retries (a Task scheduled again inside one state entry: billed as a
    transition each), the waits (WaitUntil and WaitForEvent entries), the Advance entries (one
    per run of non-waiting nodes) and the number of history events."""
    entered: dict[str, int] = {}
    retries = 0
    scheduled_in_state = 0
    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            entered[name] = entered.get(name, 0) + 1
            scheduled_in_state = 0
        elif kind == "TaskScheduled":
            scheduled_in_state += 1
            if scheduled_in_state > 1:
                retries += 1
    states = sum(entered.values())
    waits = entered.get("WaitUntil", 0) + entered.get("WaitForEvent", 0)
    return {"states": states, "retries": retries, "transitions": states + retries, "waits": waits,
            "advances": entered.get("Advance", 0), "history_events": len(events), "entered": entered}


def budget_of(counts: dict, advance_messages: int) -> dict:
    """The budget "at most three state transitions per wait and one Lambda call per run of
    non-waiting nodes" for one enrollment: transitions beyond the fixed three of the start and
    the end (Advance; Route, Done) per wait, and Advance task messages (each one Lambda call)
    per Advance state entered (each one run of non-waiting nodes)."""
    waits, transitions = counts["waits"], counts["transitions"]
    overhead = max(0, transitions - TRANSITIONS_PER_WAIT * waits)
    per_wait = (transitions - min(overhead, 3)) / waits if waits else 0.0
    calls_per_run = advance_messages / counts["advances"] if counts["advances"] else 0.0
    return {"transitions_per_wait": per_wait, "fixed": min(overhead, 3),
            "within_transitions": transitions <= TRANSITIONS_PER_WAIT * waits + 3,
            "calls_per_run": calls_per_run, "within_calls": advance_messages <= counts["advances"]}


def rounds_within_history(fixed_events: int, events_per_round: float, limit: int = HISTORY_LIMIT) -> int:
    """How many rounds (a wait and the Advance after it) an execution can run before its
    history reaches the limit, besides the `fixed_events` of its start and its end."""
    if events_per_round <= 0:
        return 0
    return max(0, int((limit - fixed_events) // events_per_round))


def open_executions(entries_per_day: float, days_open: float) -> float:
    """Little's law: executions open at once = entries per day × days each stays open."""
    return entries_per_day * days_open


def entries_per_day_at_quota(days_open: float, quota: int = OPEN_EXECUTIONS) -> float:
    return quota / days_open if days_open > 0 else float("inf")


def event_source_requests(messages: float, batch: int, full: bool = False) -> float:
    """ReceiveMessage + DeleteMessageBatch the event source mapping makes for `messages`
    delivered `batch` at a time (idle polling left out); `full`: every batch full (the share
    of one message in a busy queue), else whole batches."""
    if not messages:
        return 0
    return 2 * messages / batch if full else 2 * math.ceil(messages / batch)


@dataclass
class PerEnrollment:
    """What one enrollment cost, averaged over a timeline's enrollments."""

    transitions: float = 0.0
    invocations: float = 0.0  # Lambda invocations, batch size 1 (one per message)
    invocations_batched: float = 0.0  # the same messages in full batches of 10
    lambda_seconds: float = 0.0  # billed (modelled for AWS) at MEMORY_MB
    sqs_requests: float = 0.0  # standard queues (Advance, event waits, their event sources)
    sqs_requests_batched: float = 0.0
    sqs_fifo_requests: float = 0.0  # the journey-events FIFO queue (signals)
    sqs_fifo_requests_batched: float = 0.0
    rru: float = 0.0  # the journey runtime's DynamoDB reads (enrollments, contacts, definitions…)
    wru: float = 0.0  # its writes, the enrollments table's `running` index included

    def plus(self, other: "PerEnrollment") -> "PerEnrollment":
        return PerEnrollment(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})


def cost_per_1000(per: PerEnrollment, prices: JourneyPrices = JourneyPrices(), memory_mb: int = MEMORY_MB,
                  batched: bool = False) -> dict:
    """Dollars per 1,000 enrollments by service, and their total (batch size 1, or full batches)."""
    parts = {
        "step_functions": per.transitions * prices.sfn_transition * 1000,
        "lambda_requests": (per.invocations_batched if batched else per.invocations) * prices.lambda_request * 1000,
        "lambda_duration": per.lambda_seconds * memory_mb / 1024 * prices.lambda_gb_s * 1000,
        "sqs": (per.sqs_requests_batched if batched else per.sqs_requests) * prices.sqs_request * 1000,
        "sqs_fifo": (per.sqs_fifo_requests_batched if batched else per.sqs_fifo_requests)
        * prices.sqs_fifo_request * 1000,
        "dynamodb_reads": per.rru * prices.rru * 1000,
        "dynamodb_writes": per.wru * prices.wru * 1000,
    }
    return {"parts": parts, "total": sum(parts.values())}


def zone_at_hour(now: datetime, hours: range) -> str:
    """A fixed-offset IANA zone (Etc/GMT±N, the sign inverted as POSIX has it) where the local
    hour is in `hours` at `now`; offsets from -12 to +14 reach every hour."""
    for hour in hours:
        offset = (hour - now.hour) % 24
        if offset > 14:
            offset -= 24
        if -12 <= offset <= 14:
            return "Etc/GMT" + ("+" if offset <= 0 else "-") + str(abs(offset))
    raise LookupError(f"no zone at local hours {hours}")  # pragma: no cover


def outcome_of(record) -> dict:
    """An enrollment's end as the timeline checks it: status, the nodes that sent or notified
    (in order), whether the goal was reached."""
    enrollment = record.enrollment
    acted = [t.node for t in enrollment.trace if t.decision in ("sent", "notified")]
    return {"status": enrollment.status, "acted": acted,
            "converted": enrollment.converted_at is not None}


def latency_summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": 1000 * percentile(values, 50), "p95": 1000 * percentile(values, 95),
            "max": 1000 * max(values)}


# -- timelines -----------------------------------------------------------------------------------

def _track(uid: str, name: str, **properties) -> dict:
    return {"type": "track", "userId": uid, "event": name, "properties": properties,
            "messageId": f"bench-{uuid.uuid4()}"}


def _page(uid: str, path: str) -> dict:
    return {"type": "page", "userId": uid, "name": "Pricing",
            "properties": {"path": path, "url": f"https://shop.example{path}"}, "messageId": f"bench-{uuid.uuid4()}"}


@dataclass(frozen=True)
class Timeline:
    """One path through a shipped journey, for `contacts` contacts."""

    key: str
    journey: str
    name: str
    scale: float
    expect_status: str | None
    expect_acted: tuple[str, ...] = ()
    expect_converted: bool = False
    consent: tuple[str, ...] = ("email",)
    segments: tuple[str, ...] = ()
    local_hours: range | None = None  # the contact lives where it is one of these hours now
    birthday_today: bool = False
    setup: tuple = ()  # (uid) -> events ingested before the trigger (not heard by any journey)
    trigger: object = None  # (uid) -> events; or a segment id entered
    during: tuple = ()  # ((node, (uid) -> events), ...): sent when the enrollment waits at node
    enrollments: int = 1  # per contact
    stage: str = "subscriber"  # the lifecycle stage the contact already has (scoring.yaml)


def cart(uid: str, n: int = 1) -> str:
    return f"{uid}-cart{n}"


TIMELINES = (
    Timeline("A1", "abandoned-cart", "cart abandoned, SMS consent", FAST, "completed",
             ("email-reminder", "sms-reminder"), consent=("email", "sms"),
             trigger=lambda u: [_track(u, "Product Added", cart_id=cart(u), product_id="espresso", price=9.5)]),
    Timeline("A2", "abandoned-cart", "cart abandoned, no SMS consent", FAST, "exited", ("email-reminder",),
             trigger=lambda u: [_track(u, "Product Added", cart_id=cart(u), product_id="espresso", price=9.5)]),
    Timeline("A3", "abandoned-cart", "cart bought within the hour", 90.0, "exited", (), True,
             trigger=lambda u: [_track(u, "Product Added", cart_id=cart(u), product_id="espresso", price=9.5)],
             during=(("wait-for-purchase", lambda u: [_track(u, "Order Completed", cart_id=cart(u), total=9.5)]),)),
    Timeline("A4", "abandoned-cart", "cart bought after the email", 2160.0, "exited", ("email-reminder",), True,
             trigger=lambda u: [_track(u, "Product Added", cart_id=cart(u), product_id="espresso", price=9.5)],
             during=(("wait-more", lambda u: [_track(u, "Order Completed", cart_id=cart(u), total=9.5)]),)),
    Timeline("A5", "abandoned-cart", "two products in one cart, abandoned", FAST, "exited", ("email-reminder",),
             trigger=lambda u: [_track(u, "Product Added", cart_id=cart(u), product_id="espresso", price=9.5),
                                _track(u, "Product Added", cart_id=cart(u), product_id="grinder", price=89.0)]),
    Timeline("X1", "abandoned-cart", "a heard event with nothing running (an order, no cart)", FAST, None,
             trigger=lambda u: [_track(u, "Order Completed", cart_id=cart(u, 9), total=20.0)], enrollments=0),
    Timeline("W1", "welcome-series", "signup, not active", FAST, "completed", ("welcome", "onboarding", "tips"),
             consent=(), trigger=lambda u: [_track(u, "Consent Updated", channel="email", status="granted",
                                                   source="newsletter signup")]),
    Timeline("W2", "welcome-series", "signup, active (three sessions)", FAST, "exited", ("welcome", "onboarding"),
             consent=(), setup=lambda u: [_track(u, "Session Started") for _ in range(3)],
             trigger=lambda u: [_track(u, "Consent Updated", channel="email", status="granted",
                                       source="newsletter signup")]),
    Timeline("L1", "lead-nurturing", "white paper, never qualifies", FAST, "exited",
             ("nurture-1", "nurture-2", "nurture-3"),
             trigger=lambda u: [_track(u, "Form Submitted", form="white-paper")]),
    Timeline("L2", "lead-nurturing", "white paper, qualifies in the first wait (MQL, CRM)", 8640.0, "exited",
             ("nurture-1", "tell-crm"), True,
             trigger=lambda u: [_track(u, "Form Submitted", form="white-paper")],
             during=(("wait-1", lambda u: [_track(u, "Webinar Registered", webinar="roasting-101"),
                                           _page(u, "/pricing"), _page(u, "/pricing/teams")]),)),
    Timeline("B1", "birthday", "birthday today, before 09:00 local", FAST, "completed", ("birthday-email",),
             local_hours=range(1, 8), birthday_today=True, trigger="birthday-today"),
    Timeline("B2", "birthday", "birthday today, after 09:00 local (next year's)", FAST, "completed",
             ("birthday-email",), local_hours=range(10, 21), birthday_today=True, trigger="birthday-today"),
    Timeline("V1", "win-back", "lapsed regular, no purchase in 30 days", FAST, "completed",
             ("reactivation-offer",), segments=("win-back", "win-back-or-champions"),
             trigger="win-back-or-champions", stage="customer"),
    Timeline("V2", "win-back", "champion", FAST, "completed", ("thank-you",),
             segments=("champions-thank-you", "win-back-or-champions"), trigger="win-back-or-champions",
             stage="customer"),
    Timeline("V3", "win-back", "lapsed regular, buys within 30 days", 8640.0, None, ("reactivation-offer",), True,
             segments=("win-back", "win-back-or-champions"), trigger="win-back-or-champions", stage="customer",
             during=(("conversion-window", lambda u: [_track(u, "Order Completed", total=32.0)]),)),
)


# -- counting the app's SQS and Step Functions requests ----------------------------------------

class ApiCalls:
    """Requests of the app's SQS and Step Functions clients, by the tag the driver sets around
    each handler call (requests made outside a handler are not counted). A SendMessageBatch to
    the journey-events queue is also split by its messages' groups (contacts)."""

    SERVICES = ("sqs", "stepfunctions")

    def __init__(self):
        self.tag: tuple | None = None
        self.lock = threading.Lock()
        self.rows: dict[tuple, int] = defaultdict(int)  # (tag, service, operation, queue) -> requests
        self.seconds: dict[tuple, float] = defaultdict(float)  # (tag, service) -> seconds in calls
        self.signal_sends: dict[str, float] = defaultdict(float)  # contact -> FIFO send requests (shared)
        self.signals: dict[str, int] = defaultdict(int)  # contact -> signals sent
        self._clients = set()

    def watch(self) -> None:
        import functools

        import botocore.session

        original = botocore.session.Session.create_client
        if getattr(original, "_bench_api_calls", None) is self:
            return
        calls = self

        @functools.wraps(original)
        def create_client(session, service_name, *args, **kwargs):
            client = original(session, service_name, *args, **kwargs)
            if service_name in calls.SERVICES:
                calls.instrument(client)
            return client

        create_client._bench_api_calls = self
        botocore.session.Session.create_client = create_client

    def instrument(self, client) -> None:
        if id(client) in self._clients:
            return
        self._clients.add(id(client))
        service = client.meta.service_model.endpoint_prefix
        service = "stepfunctions" if service == "states" else service
        events = client.meta.events
        events.register(f"before-parameter-build.{client.meta.service_model.service_name}.*", self._before,
                        unique_id=f"bench-jcalls-before-{id(self)}")
        events.register(f"after-call.{client.meta.service_model.service_name}.*",
                        lambda model, context, **_: self._after(service, model, context),
                        unique_id=f"bench-jcalls-after-{id(self)}")

    @staticmethod
    def _before(params, context, **_):
        context["bench.jcalls"] = (params, time.perf_counter())

    def _after(self, service: str, model, context) -> None:
        tag = self.tag
        if tag is None:
            return
        params, started = context.get("bench.jcalls") or ({}, time.perf_counter())
        queue = (params.get("QueueUrl") or "").rsplit("/", 1)[-1]
        with self.lock:
            self.rows[(tag, service, model.name, queue)] += 1
            self.seconds[(tag, service)] += time.perf_counter() - started
            if model.name == "SendMessageBatch" and queue.endswith(".fifo"):
                groups = [e.get("MessageGroupId") for e in params.get("Entries") or []]
                for group in groups:
                    self.signal_sends[group] += 1 / len(groups)
                    self.signals[group] += 1

    def take(self, tag: tuple) -> dict:
        """The requests counted under `tag`, removed from the count."""
        with self.lock:
            mine = [k for k in self.rows if k[0] == tag]
            return {k[1:]: self.rows.pop(k) for k in mine}


# -- the stage ---------------------------------------------------------------------------------

def provision_journey_stage(h, suffix: str) -> dict:
    """Every resource of infrastructure/template.yaml for a new stage on the harness's moto
    server, the enrollment runner executing (moto's Step Functions), the app pointed at it,
    the shipped definitions seeded as `make run` seeds them."""
    from chalicelib.entrypoints import runtime
    from local.provision import load_template, provision

    name = f"{h.run_id}-{suffix}"
    created = provision(name, endpoint_url=h.endpoint, execute=True)
    os.environ["MERCURIO_STAGE"] = name
    os.environ["MERCURIO_EVENTS_STREAM_ARN"] = created["EventsTable.StreamArn"]
    os.environ["MERCURIO_ENROLLMENT_RUNNER_ARN"] = created["EnrollmentRunner"]
    os.environ["MERCURIO_JOURNEY_TIME_SCALE"] = str(int(FAST))
    runtime.reset()
    template = load_template()
    tables = {logical: res for logical, res in template["Resources"].items() if res["Type"] == "AWS::DynamoDB::Table"}
    h.recorder.add_tables({created[l]: [k["AttributeName"] for k in r["Properties"]["KeySchema"]]
                           for l, r in tables.items()},
                          {created[l]: l.removesuffix("Table").lower() for l in tables})
    h._instrument()
    services = runtime.services()
    services.definitions.seed_directory(ROOT / "chalicelib" / "definitions")
    return created


@dataclass
class Invocation:
    consumer: str
    key: str  # enrollment id (Advance, event waits), contact id (signals), "-" (stream)
    wall: float
    cpu: float
    ops: dict  # (operation, table) -> OpStats
    index_wru: float
    calls: dict  # (service, operation, queue) -> requests
    what: str = ""  # a signal's kind and event name or segment


class Driver:
    """The stream and the three journey consumers, one message at a time, in this thread."""

    def __init__(self, h, created: dict, calls: ApiCalls, meter):
        from chalice.local import LambdaContext

        from chalicelib.entrypoints.journey_runner import journey_advance, journey_event_waits, journey_events
        from chalicelib.entrypoints.stream import process_events
        from local.queue_bridge import QueueBridge
        from local.stream_bridge import StreamBridge

        self.h, self.calls, self.meter = h, calls, meter
        self.invocations: list[Invocation] = []
        self.messages: dict[str, int] = defaultdict(int)

        def timed(consumer: str, handler, key_of, memory: int = MEMORY_MB):
            def invoke(event: dict) -> dict:
                key = key_of(event)
                context = LambdaContext(consumer, memory_size=memory, max_runtime_ms=60_000)
                before, _ = h.recorder.snapshot()
                own = (meter.own_cpu, meter.own_wall, meter.total())
                calls.tag = (consumer, key)
                wall, cpu = time.perf_counter(), time.thread_time()
                try:
                    result = handler(event, context) or {}
                finally:
                    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                    calls.tag = None
                cpu -= meter.own_cpu - own[0]
                wall -= meter.own_wall - own[1]
                after, _ = h.recorder.snapshot()
                self.invocations.append(Invocation(consumer, key, wall, cpu, _minus(after, before),
                                                   meter.total() - own[2], calls.take((consumer, key)),
                                                   _signal_name(event) if consumer == "journey_events" else ""))
                self.messages[consumer] += len(event.get("Records", []))
                return result
            return invoke

        def task_key(event):
            return json.loads(event["Records"][0]["body"])["enrollment_id"] if event.get("Records") else "-"

        def signal_key(event):
            if not event.get("Records"):
                return "-"
            body = json.loads(event["Records"][0]["body"])
            return body.get("contact_id") or body.get("enrollment_id") or "-"

        endpoint = h.endpoint
        self.stream = StreamBridge(created["EventsTable.StreamArn"],
                                   timed("process_events", process_events, lambda e: "-", 1024),
                                   endpoint_url=endpoint, region=h.region)
        self.events = QueueBridge(created["JourneyEventsQueue"], timed("journey_events", journey_events, signal_key),
                                  endpoint_url=endpoint, region=h.region, batch_size=1, wait_seconds=0)
        self.advance = QueueBridge(created["JourneyAdvanceQueue"], timed("journey_advance", journey_advance, task_key),
                                   endpoint_url=endpoint, region=h.region, batch_size=1, wait_seconds=0)
        self.waits = QueueBridge(created["JourneyEventWaitsQueue"],
                                 timed("journey_event_waits", journey_event_waits, task_key),
                                 endpoint_url=endpoint, region=h.region, batch_size=1, wait_seconds=0)

    def poll(self) -> int:
        return (self.stream.poll_once() + self.events.poll_once(0) + self.advance.poll_once(0)
                + self.waits.poll_once(0))


def _signal_name(event: dict) -> str:
    if not event.get("Records"):
        return ""
    body = json.loads(event["Records"][0]["body"])
    if body.get("kind") == "event":
        return f"event {body['event'].get('event') or body['event'].get('type')}"
    if body.get("kind") == "segment":
        return f"segment {body['segment_id']} {'entered' if body.get('entered') else 'exited'}"
    return body.get("kind", "?")


def _minus(after: dict, before: dict) -> dict:
    from bench.units import OpStats

    out = {}
    for key, s in after.items():
        b = before.get(key)
        diff = OpStats(**asdict(s))
        if b is not None:
            for name in diff.__dataclass_fields__:
                setattr(diff, name, getattr(s, name) - getattr(b, name))
        if diff.requests:
            out[key] = diff
    return out


# -- 1. per enrollment ---------------------------------------------------------------------------

@dataclass
class Person:
    contact_id: str
    uid: str
    email: str
    timeline: Timeline
    sent_during: set = field(default_factory=set)


def seed_people(timelines, per_timeline: int, now: datetime, tag: str) -> list[Person]:
    """Contacts written straight to the contacts table (not measured): an email (a phone with
    SMS consent), a time zone, consent as the timeline says, segments, a birthday, the
    lifecycle stage an existing contact has (else its first event would change it, and the
    lead-nurturing journey hears every Stage Changed)."""
    from chalicelib.domain.contact import Contact
    from chalicelib.domain.events import iso
    from chalicelib.domain.messaging.consent import ALL_TOPICS, GRANTED, ConsentRecord, ConsentState
    from chalicelib.entrypoints import runtime

    repo = runtime.services().contact_repository
    people = []
    with repo.Contact.batch_write() as contacts, repo.Identity.batch_write() as identities:
        for timeline in timelines:
            for i in range(per_timeline):
                uid = f"{tag}-{timeline.key.lower()}-{i}-{uuid.uuid4().hex[:8]}"
                contact = Contact(id=uuid.uuid4().hex, created_at=iso(now - timedelta(days=40)))
                email = f"{uid}@example.com"
                zone = zone_at_hour(now, timeline.local_hours or range(12, 17))
                traits = {"email": email, "first_name": "Ada", "timezone": zone}
                if "sms" in timeline.consent:
                    traits["phone"] = f"+3933{i:08d}"
                if timeline.birthday_today:
                    local = now.astimezone(ZoneInfo(zone)).date()
                    traits["birthday"] = date(1992, local.month, local.day).isoformat()  # 1992: a leap year
                contact.traits = traits
                contact.add_identifier(f"email:{email}")
                contact.add_identifier(f"user:{uid}")
                state = ConsentState()
                for channel in timeline.consent:
                    state = state.with_record(ConsentRecord(channel, ALL_TOPICS, GRANTED, now - timedelta(days=30),
                                                            "bench signup"))
                contact.consent = state.to_document()
                contact.segments = {s: {"since": iso(now - timedelta(days=1))} for s in timeline.segments}
                contact.stage = timeline.stage
                item = repo._to_item(contact)
                item.version = 1
                contacts.save(item)
                for identifier in contact.identifiers:
                    identities.save(repo.Identity(identifier, contact_id=contact.id))
                people.append(Person(contact.id, uid, email, timeline))
    return people


def ingest(events: list[dict]) -> None:
    from chalicelib.entrypoints import runtime
    from chalicelib.services.ingest import TrackingRequest

    if not events:
        return
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    result = runtime.services().ingest.ingest(TrackingRequest(
        body=json.dumps({"batch": events}).encode(), content_type="application/json", authorization=auth))
    if result.rejected:
        raise RuntimeError(f"events rejected by ingest: {result.rejected}")


def segment_signal(person: Person, segment_id: str, now: datetime) -> dict:
    """What the stream's publisher queues when the contact enters a segment a journey hears."""
    from chalicelib.domain.events import iso

    return {"kind": "segment", "id": f"bench-seg-{uuid.uuid4()}", "contact_id": person.contact_id,
            "segment_id": segment_id, "entered": True, "at": iso(now)}


def run_phase(h, driver: Driver, calls: ApiCalls, people: list[Person], scale: float, say,
              deadline_s: float) -> dict:
    """Start every timeline of `people` at `scale`, deliver until each enrollment has ended and
    its execution closed; returns {contact id: [enrollment ids]} and the failures seen."""
    from chalicelib.domain.journeys.engine import WaitForEvent, WaitUntil
    from chalicelib.entrypoints import runtime

    services = runtime.services()
    services.journey_runtime.time_scale = scale
    store, sfn = services.enrollment_store, driver.sfn
    now = datetime.now(timezone.utc)
    setup = [e for p in people if p.timeline.setup for e in p.timeline.setup(p.uid)]
    if setup:
        ingest(setup)
        while driver.poll():
            pass
    triggered = []
    for p in people:
        if isinstance(p.timeline.trigger, str):
            calls.tag = ("process_events", "-")  # queued as the stream's publisher queues it
            services.journey_queue.send([segment_signal(p, p.timeline.trigger, now)])
            calls.tag = None
        else:
            triggered += p.timeline.trigger(p.uid)
    ingest(triggered)
    enrollments: dict[str, list[str]] = {}
    expected = sum(p.timeline.enrollments for p in people)
    ended: set[str] = set()
    closed: set[str] = set()
    started = time.monotonic()
    last_look = 0.0
    while True:
        worked = driver.poll()
        if time.monotonic() - last_look < 0.25 and worked:
            continue
        last_look = time.monotonic()
        for p in people:
            if p.timeline.enrollments and len(enrollments.get(p.contact_id, ())) < p.timeline.enrollments:
                entries = store.entries(p.contact_id).get(p.timeline.journey)
                if entries:
                    enrollments[p.contact_id] = [e["id"] for e in entries["entries"]]
        ids = [i for ids in enrollments.values() for i in ids if i not in ended]
        by_contact = {i: c for c, ids_ in enrollments.items() for i in ids_}
        for record in store.many(ids) if ids else []:
            person = next(p for p in people if p.contact_id == by_contact[record.id])
            if not record.running:
                ended.add(record.id)
                continue
            for node, events in person.timeline.during:
                waiting = record.enrollment.waiting
                ready = record.enrollment.node == node and (
                    (isinstance(waiting, WaitForEvent) and record.task_token) or isinstance(waiting, WaitUntil))
                if ready and node not in person.sent_during:
                    person.sent_during.add(node)
                    ingest(events(person.uid))
        for eid in list(ended - closed):
            status = sfn.describe_execution(executionArn=services.enrollment_runner.execution_arn(eid))["status"]
            if status != "RUNNING":
                closed.add(eid)
        total = sum(len(v) for v in enrollments.values())
        idle_contacts = [p for p in people if p.timeline.enrollments == 0]
        if total >= expected and len(closed) >= expected and not worked \
                and all(calls.signals.get(p.contact_id) for p in idle_contacts) and driver.events_idle():
            break  # every execution closed, every signal consumed (a goal may come after the end)
        if time.monotonic() - started > deadline_s:
            say(f"journeys: phase at scale {scale:g} still busy after {deadline_s:.0f} s "
                f"({len(closed)} of {expected} executions closed)")
            break
        if not worked:
            time.sleep(0.02)
    return enrollments


def execution_history(sfn, arn: str) -> list[dict]:
    events, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


JOURNEY_TABLES = ("enrollments", "contacts", "identities", "definitions", "events")  # the runtime's own
SEND_TABLES = ("messages", "channels")  # the sends' requests: counted in the messaging suite's per-email cost


def per_enrollment_phase(h, args, say) -> dict:
    from chalicelib.entrypoints import runtime
    from local.provision import load_template
    from bench.messaging import IndexMeter

    import boto3

    created = provision_journey_stage(h, "journeys")
    services = runtime.services()
    calls = ApiCalls()
    calls.watch()
    for client in (services.journey_queue.client, services.enrollment_runner.client):
        calls.instrument(client)
    services.enrollment_store.control("warm")  # the store's client exists before the meter hooks it
    if hasattr(services, "coupon_pools"):
        pool = services.coupon_pools
        pool.add("birthday", [f"BDAY-{i:05d}" for i in range(4 * args.journey_contacts + 10)])
    meter = IndexMeter(h.recorder, created["EnrollmentsTable"], load_template()["Resources"]["EnrollmentsTable"],
                       h.endpoint, h.region)
    driver = Driver(h, created, calls, meter)
    driver.sfn = boto3.client("stepfunctions", endpoint_url=h.endpoint, region_name=h.region)
    driver.ddb = boto3.client("dynamodb", endpoint_url=h.endpoint, region_name=h.region)
    sqs = boto3.client("sqs", endpoint_url=h.endpoint, region_name=h.region)

    def events_idle() -> bool:
        attributes = sqs.get_queue_attributes(QueueUrl=created["JourneyEventsQueue"], AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(v) for v in attributes.values()) == 0

    driver.events_idle = events_idle
    now = datetime.now(timezone.utc)
    people = seed_people(TIMELINES, args.journey_contacts, now, h.run_id)
    by_scale: dict[float, list[Person]] = defaultdict(list)
    for p in people:
        by_scale[p.timeline.scale].append(p)
    enrollments: dict[str, list[str]] = {}
    started = time.perf_counter()
    for scale in sorted(by_scale, reverse=True):
        group = by_scale[scale]
        say(f"journeys: {len(group)} contacts at time scale {scale:g} "
            f"({', '.join(sorted({p.timeline.key for p in group}))})…")
        enrollments.update(run_phase(h, driver, calls, group, scale, say, args.journey_deadline))
    seconds = time.perf_counter() - started
    return summarise_enrollments(h, driver, calls, people, enrollments, seconds)


def summarise_enrollments(h, driver: Driver, calls: ApiCalls, people: list[Person],
                          enrollments: dict[str, list[str]], seconds: float) -> dict:
    from bench.units import item_size
    from chalicelib.entrypoints import runtime

    services = runtime.services()
    store, runner = services.enrollment_store, services.enrollment_runner
    timeline_of_contact = {p.contact_id: p.timeline for p in people}
    timeline_of_enrollment = {eid: timeline_of_contact[c] for c, ids in enrollments.items() for eid in ids}
    rows: dict[str, dict] = {}
    for t in TIMELINES:
        rows[t.key] = {"key": t.key, "journey": t.journey, "name": t.name, "scale": t.scale,
                       "contacts": 0, "enrollments": 0, "outcomes": defaultdict(int), "unexpected": [],
                       "history": [], "budget": [], "invocations": defaultdict(int),
                       "units": {}, "calls": defaultdict(int), "cpu": 0.0, "wall": 0.0, "index_wru": 0.0,
                       "signals": 0, "signal_sends": 0.0, "dynamodb_calls": 0, "item_bytes": [],
                       "by_consumer": {}, "signal_names": defaultdict(int)}
    for p in people:
        rows[p.timeline.key]["contacts"] += 1
        rows[p.timeline.key]["signals"] += calls.signals.get(p.contact_id, 0)
        rows[p.timeline.key]["signal_sends"] += calls.signal_sends.get(p.contact_id, 0.0)
    advance_messages: dict[str, int] = defaultdict(int)
    for inv in driver.invocations:
        if inv.consumer == "process_events" or inv.key == "-":
            continue
        t = timeline_of_enrollment.get(inv.key) or timeline_of_contact.get(inv.key)
        if t is None:
            continue
        row = rows[t.key]
        row["invocations"][inv.consumer] += 1
        if inv.what:
            row["signal_names"][inv.what] += 1
        if inv.consumer == "journey_advance":
            advance_messages[inv.key] += 1
        row["cpu"] += inv.cpu
        row["wall"] += inv.wall
        row["index_wru"] += inv.index_wru
        consumer = row["by_consumer"].setdefault(inv.consumer, {"messages": 0, "ops": defaultdict(int), "rru": 0.0,
                                                                "wru": 0.0, "index_wru": 0.0, "cpu": 0.0})
        consumer["messages"] += 1
        consumer["index_wru"] += inv.index_wru
        consumer["cpu"] += inv.cpu
        for (op, table), s in inv.ops.items():
            consumer["ops"][f"{op} {table}"] += s.requests
            consumer["rru"] += s.rru
            consumer["wru"] += s.wru
            u = row["units"].setdefault(table, {"requests": 0, "rru": 0.0, "wru": 0.0, "ops": defaultdict(int)})
            u["requests"] += s.requests
            u["rru"] += s.rru
            u["wru"] += s.wru
            u["ops"][op] += s.requests
            row["dynamodb_calls"] += s.requests
        for (service, op, queue), n in inv.calls.items():
            row["calls"][f"{service}:{op}" + (f":{_queue_label(queue)}" if queue else "")] += n
    for eid, t in timeline_of_enrollment.items():
        row = rows[t.key]
        row["enrollments"] += 1
        record = store.get(eid)
        outcome = outcome_of(record)
        label = f"{outcome['status']}: {', '.join(outcome['acted']) or 'nothing sent'}" + \
            (", converted" if outcome["converted"] else "")
        row["outcomes"][label] += 1
        if (t.expect_status and outcome["status"] != t.expect_status) or tuple(outcome["acted"]) != t.expect_acted \
                or outcome["converted"] != t.expect_converted:
            row["unexpected"].append(label)
        item = driver.ddb.get_item(TableName=store.table_name, Key={"pk": {"S": f"e#{eid}"},
                                                                     "sk": {"S": "enrollment"}}).get("Item")
        row["item_bytes"].append(item_size(item) if item else 0)
        history = execution_history(driver.sfn, runner.execution_arn(eid))
        counts = history_counts(history)
        counts["per_round_events"] = _events_per_round(history)
        counts["status"] = next((e["type"] for e in reversed(history) if e["type"].startswith("Execution")), "?")
        row["history"].append(counts)
        row["budget"].append(budget_of(counts, advance_messages.get(eid, 0)))
    out = []
    for t in TIMELINES:
        row = rows[t.key]
        out.append(finish_row(row, t))
    return {"timelines": out, "seconds": seconds, "invocations": len(driver.invocations),
            "messages": dict(driver.messages)}


def _queue_label(queue: str) -> str:
    for name in ("journey-events", "journey-advance", "journey-event-waits", "messages", "effects"):
        if name in queue:
            return name
    return queue


def _events_per_round(history: list[dict]) -> list[int]:
    """History events from one Advance state entered to the next (the first: from the start)."""
    marks = [i for i, e in enumerate(history) if e["type"] == "TaskStateEntered"
             and e["stateEnteredEventDetails"]["name"] == "Advance"]
    return [b - a for a, b in zip(marks, marks[1:])]


def finish_row(row: dict, t: Timeline) -> dict:
    """Per enrollment (per contact when the timeline enrolls nobody)."""
    n = row["enrollments"] or row["contacts"] or 1
    hist = row["history"]
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    transitions = mean([c["transitions"] for c in hist])
    waits = mean([c["waits"] for c in hist])
    invocations = {k: v / n for k, v in row["invocations"].items()}
    messages = sum(row["invocations"].values())
    by_consumer_messages = dict(row["invocations"])
    calls = {k: v / n for k, v in sorted(row["calls"].items())}
    units = {table: {"requests": u["requests"] / n, "rru": u["rru"] / n, "wru": u["wru"] / n,
                     "ops": {op: c / n for op, c in sorted(u["ops"].items())}} for table, u in sorted(row["units"].items())}
    journey_rru = sum(u["rru"] for tb, u in units.items() if tb in JOURNEY_TABLES)
    journey_wru = sum(u["wru"] for tb, u in units.items() if tb in JOURNEY_TABLES) + row["index_wru"] / n
    # SQS: the signals (FIFO: the publisher's send, the event source's receive and delete), the
    # task messages Step Functions sends (one per Advance and event wait) with their receive and
    # delete, and what the handlers call themselves (back-off, messages queue excluded: a send).
    signals = row["invocations"].get("journey_events", 0)
    tasks = row["invocations"].get("journey_advance", 0) + row["invocations"].get("journey_event_waits", 0)
    handler_sqs = sum(v for k, v in row["calls"].items() if k.startswith("sqs:")
                      and not k.endswith(":messages") and not k.endswith(":effects"))
    fifo_send = row["signal_sends"]
    fifo = (fifo_send + event_source_requests(signals, 1)) / n
    fifo_batched = (fifo_send + event_source_requests(signals, BATCH, full=True)) / n
    std = (tasks + sum(event_source_requests(c, 1) for k, c in by_consumer_messages.items() if k != "journey_events")
           + handler_sqs) / n
    std_batched = (tasks + sum(event_source_requests(c, BATCH, full=True) for k, c in by_consumer_messages.items()
                               if k != "journey_events") + handler_sqs) / n
    sfn_calls = sum(v for k, v in row["calls"].items() if k.startswith("stepfunctions:"))
    sqs_calls = handler_sqs
    modelled = lambda_estimate_seconds(row["cpu"], {"dynamodb": row["dynamodb_calls"], "sqs": sqs_calls,
                                                    "stepfunctions": sfn_calls}, MEMORY_MB, LATENCY_MS) / n
    per = PerEnrollment(transitions=transitions, invocations=messages / n,
                        invocations_batched=messages / BATCH / n,
                        lambda_seconds=modelled, sqs_requests=std, sqs_requests_batched=std_batched,
                        sqs_fifo_requests=fifo, sqs_fifo_requests_batched=fifo_batched,
                        rru=journey_rru, wru=journey_wru)
    budgets = row["budget"]
    per_round = [x for c in hist for x in c["per_round_events"]]
    fixed = [c["history_events"] - sum(c["per_round_events"]) for c in hist]  # the start and the end
    return {
        "key": t.key, "journey": t.journey, "name": t.name, "scale": t.scale, "contacts": row["contacts"],
        "enrollments": row["enrollments"], "outcomes": dict(row["outcomes"]), "unexpected": row["unexpected"],
        "expected": f"{t.expect_status or 'ended'}: {', '.join(t.expect_acted) or 'nothing sent'}"
                    + (", converted" if t.expect_converted else ""),
        "transitions": transitions, "waits": waits,
        "transitions_range": [min((c["transitions"] for c in hist), default=0),
                              max((c["transitions"] for c in hist), default=0)],
        "retries": sum(c["retries"] for c in hist), "advances": mean([c["advances"] for c in hist]),
        "states": _states_summary(hist), "history_events": mean([c["history_events"] for c in hist]),
        "history_events_per_round": mean(per_round), "history_events_fixed": max(fixed, default=0),
        "execution_status": sorted({c["status"] for c in hist}),
        "within_transitions": all(b["within_transitions"] for b in budgets) if budgets else None,
        "within_calls": all(b["within_calls"] for b in budgets) if budgets else None,
        "transitions_per_wait": mean([b["transitions_per_wait"] for b in budgets if hist and waits]),
        "advance_calls_per_run": mean([b["calls_per_run"] for b in budgets]),
        "invocations": invocations, "signals": row["signals"] / n, "calls": calls, "units": units,
        "signal_names": {k: v / n for k, v in sorted(row["signal_names"].items())},
        "index_wru": row["index_wru"] / n, "cpu_ms": 1000 * row["cpu"] / n, "wall_ms": 1000 * row["wall"] / n,
        "dynamodb_calls": row["dynamodb_calls"] / n, "per": asdict(per),
        "item_bytes": max(row["item_bytes"], default=0),
        "per_message": {name: {"messages": c["messages"] / n, "rru": c["rru"] / c["messages"],
                               "wru": (c["wru"] + c["index_wru"]) / c["messages"], "cpu_ms": 1000 * c["cpu"] / c["messages"],
                               "ops": {op: v / c["messages"] for op, v in sorted(c["ops"].items())}}
                        for name, c in sorted(row["by_consumer"].items())},
        "cost": cost_per_1000(per), "cost_batched": cost_per_1000(per, batched=True),
        "send_tables": {tb: u for tb, u in units.items() if tb in SEND_TABLES},
    }


def _states_summary(hist: list[dict]) -> str:
    if not hist:
        return ""
    counts: dict[str, list[int]] = defaultdict(list)
    for c in hist:
        for name in set().union(*(h["entered"] for h in hist)):
            counts[name].append(c["entered"].get(name, 0))
    order = ("Advance", "Route", "WaitUntil", "WaitForEvent", "Done")
    names = sorted(counts, key=lambda s: order.index(s) if s in order else len(order))
    return ", ".join(f"{name} {sum(v) / len(v):g}" for name, v in ((nm, counts[nm]) for nm in names))


# -- 2. enrollments started per second ----------------------------------------------------------

def starts_phase(h, args, say) -> dict:
    """`--journey-starts` signals queued first, then one journey_events consumer, batches of 10."""
    import boto3

    from chalice.local import LambdaContext

    from chalicelib.domain.journeys.interest import signal_of
    from chalicelib.entrypoints import runtime
    from chalicelib.entrypoints.journey_runner import journey_events
    from local.queue_bridge import QueueBridge

    created = provision_journey_stage(h, "starts")
    services = runtime.services()
    calls = ApiCalls()
    calls.watch()
    calls.instrument(services.enrollment_runner.client)
    calls.instrument(services.journey_queue.client)
    timeline = Timeline("S", "abandoned-cart", "starts", FAST, None)
    now = datetime.now(timezone.utc)
    people = seed_people((timeline,), args.journey_starts, now, f"{h.run_id}s")
    signals = [signal_of(p.contact_id, {**_track(p.uid, "Product Added", cart_id=cart(p.uid), price=9.5),
                                        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.000Z")}) for p in people]
    # Warm the container (imports, catalog, clients) with one contact, not counted.
    warm, signals = signals[0], signals[1:]
    services.journey_runtime.on_signal(warm)
    services.journey_queue.send(signals)
    wall, cpu, invocations = [], [], 0

    def invoke(event: dict) -> dict:
        nonlocal invocations
        w, c = time.perf_counter(), time.thread_time()
        calls.tag = ("journey_events", "-")
        try:
            return journey_events(event, LambdaContext("journey_events", memory_size=MEMORY_MB, max_runtime_ms=60_000))
        finally:
            calls.tag = None
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - w)
            invocations += 1

    bridge = QueueBridge(created["JourneyEventsQueue"], invoke, endpoint_url=h.endpoint, region=h.region,
                         batch_size=BATCH, wait_seconds=0)
    h.recorder.reset()
    started = time.perf_counter()
    while bridge.handled < len(signals) and time.perf_counter() - started < args.journey_deadline:
        if bridge.poll_once(0) == 0:
            time.sleep(0.01)
    seconds = time.perf_counter() - started
    ops, _ = h.recorder.snapshot()
    sfn = boto3.client("stepfunctions", endpoint_url=h.endpoint, region_name=h.region)
    started_executions = 0
    token = None
    while True:
        page = sfn.list_executions(stateMachineArn=created["EnrollmentRunner"], maxResults=1000,
                                   **({"nextToken": token} if token else {}))
        started_executions += len(page["executions"])
        token = page.get("nextToken")
        if not token:
            break
    n = max(1, bridge.handled)
    start_calls = calls.rows.get((("journey_events", "-"), "stepfunctions", "StartExecution", ""), 0)
    units: dict[str, dict] = {}
    for (op, table), s in ops.items():
        u = units.setdefault(table, {"requests": 0, "rru": 0.0, "wru": 0.0, "ops": {}})
        u["requests"] += s.requests
        u["rru"] += s.rru
        u["wru"] += s.wru
        u["ops"][op] = u["ops"].get(op, 0) + s.requests / n
    dynamodb_seconds = sum(s.seconds for s in ops.values())
    sfn_seconds = calls.seconds.get((("journey_events", "-"), "stepfunctions"), 0.0)
    calls_per = {"dynamodb": sum(u["requests"] for u in units.values()) / n, "stepfunctions": start_calls / n}
    modelled = lambda_estimate_seconds(sum(cpu) / n, calls_per, MEMORY_MB, LATENCY_MS)
    return {"signals": len(signals), "handled": bridge.handled, "seconds": seconds,
            "per_second": bridge.handled / seconds if seconds else 0.0, "invocations": invocations,
            "executions": started_executions, "start_execution_calls": start_calls,
            "start_execution_ms": 1000 * sfn_seconds / max(1, start_calls),
            "dynamodb_ms_per_enrollment": 1000 * dynamodb_seconds / n,
            "cpu_ms_per_enrollment": 1000 * sum(cpu) / n, "wall_ms_per_enrollment": 1000 * sum(wall) / n,
            "units": {t: {**u, "requests": u["requests"] / n, "rru": u["rru"] / n, "wru": u["wru"] / n}
                      for t, u in sorted(units.items())},
            "dynamodb_calls_per_enrollment": calls_per["dynamodb"],
            "modelled_ms_per_enrollment": 1000 * modelled,
            "modelled_per_second_per_consumer": 1 / modelled if modelled else 0.0}


# -- 3. latency on the local stack ---------------------------------------------------------------

RESUME_JOURNEY = {
    "id": "bench-resume", "name": "Bench: a wait_for resumed by an event, then an email",
    "trigger": {"event": "Trial Started"},
    "entry": {"re_entry": "never"},
    "start": "wait-profile",
    "nodes": {
        "wait-profile": {"wait_for": {"event": "Profile Completed"}, "timeout": "30 days",
                         "on_event": "onboarding", "on_timeout": "gave-up"},
        "onboarding": {"send": {"template": "onboarding", "channel": "email"}},
        "gave-up": {"exit": "no profile within 30 days"},
    },
}


def latency_phase(h, args, say) -> dict:
    """On `local.run.LocalStack` (make run's stack, its own emulator) in this process."""
    import urllib.request

    import boto3

    from chalicelib.entrypoints import runtime
    from local.run import LocalStack

    os.environ["MERCURIO_JOURNEY_TIME_SCALE"] = str(args.journey_scale)
    for name in ("MERCURIO_STAGE", "MERCURIO_EVENTS_STREAM_ARN", "MERCURIO_ENROLLMENT_RUNNER_ARN"):
        os.environ.pop(name, None)
    runtime.reset()
    stack = LocalStack("127.0.0.1", 0, 0, 0, "bench-local-write-key", "bench-local-admin-token", jobs_interval=3600)
    accepted: dict[tuple[str, str], float] = {}
    say("journeys: starting the local stack (make run's) in this process…")
    stack.start()
    try:
        services = runtime.services()
        sender = services.email_sender
        send_raw = sender.send_raw

        def timed_send_raw(raw, from_address, to_address, tags=None):
            result = send_raw(raw, from_address, to_address, tags)
            if result.accepted and tags:
                accepted.setdefault((to_address, tags.get("template")), time.time())
            return result

        sender.send_raw = timed_send_raw
        services.definitions.put("journey", RESUME_JOURNEY["id"], RESUME_JOURNEY)
        sfn = boto3.client("stepfunctions", endpoint_url=stack.emulator.url, region_name="us-east-1")
        store, runner = services.enrollment_store, services.enrollment_runner

        def post(body: dict) -> None:
            data = json.dumps({"writeKey": stack.write_key, **body}).encode()
            request = urllib.request.Request(stack.api_url + "/v1/batch", data=data, method="POST",
                                             headers={"Content-Type": "text/plain"})
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status != 200:
                    raise RuntimeError(f"/v1/batch answered {response.status}")

        def signup(uid: str, email: str) -> None:
            zone = zone_at_hour(datetime.now(timezone.utc), range(12, 17))
            post({"batch": [{"type": "identify", "userId": uid, "traits": {"email": email, "first_name": "Ada",
                                                                        "timezone": zone}},
                            {"type": "track", "userId": uid, "event": "Consent Updated",
                             "properties": {"channel": "email", "status": "granted", "source": "bench"}}]})

        def until(probe, what: str, timeout: float = 120.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                found = probe()
                if found:
                    return found
                time.sleep(0.05)
            raise TimeoutError(f"not within {timeout:.0f} s: {what}")

        cart_rows, resume_rows = [], []
        run = uuid.uuid4().hex[:6]
        for i in range(args.journey_latency):
            uid, email = f"lat-{run}-{i}", f"lat-{run}-{i}@example.com"
            signup(uid, email)
            until(lambda: (email, "welcome") in accepted, "the welcome email of the signup")
            t0 = time.time()
            post({"batch": [{"type": "track", "userId": uid, "event": "Product Added",
                             "properties": {"cart_id": f"{uid}-cart", "product_id": "espresso", "price": 9.5}}]})
            until(lambda: (email, "cart-reminder") in accepted, "the cart reminder", 120 + 3600 / args.journey_scale)
            t1 = accepted[(email, "cart-reminder")]
            contact_id = _contact_id(services, uid)
            (entry,) = store.entries(contact_id)["abandoned-cart"]["entries"]
            history = execution_history(sfn, runner.execution_arn(entry["id"]))
            cart_rows.append(_cart_latency(t0, t1, history))
            # a wait_for resumed by an event
            uid2, email2 = f"lat-{run}-r{i}", f"lat-{run}-r{i}@example.com"
            signup(uid2, email2)
            until(lambda: (email2, "welcome") in accepted, "the welcome email of the second signup")
            post({"batch": [{"type": "track", "userId": uid2, "event": "Trial Started", "properties": {}}]})
            contact2 = until(lambda: _contact_id(services, uid2), "the second contact")

            def registered():
                entries = store.entries(contact2).get("bench-resume")
                if not entries:
                    return None
                record = store.get(entries["entries"][0]["id"])
                return record if record and record.task_token else None

            record = until(registered, "the event wait's token")
            t0 = time.time()
            post({"batch": [{"type": "track", "userId": uid2, "event": "Profile Completed", "properties": {}}]})
            until(lambda: (email2, "onboarding") in accepted, "the onboarding email after the event")
            resume_rows.append({"total": accepted[(email2, "onboarding")] - t0,
                                "enrollment": record.id})
            time.sleep(args.journey_latency_interval)
        sender.send_raw = send_raw
    finally:
        stack.stop()
    pipeline = [r["pipeline"] for r in cart_rows]
    return {"scale": args.journey_scale, "samples": len(cart_rows),
            "cart": {"pipeline_ms": latency_summary(pipeline),
                     "total_ms": latency_summary([r["total"] for r in cart_rows]),
                     "machine_wait_ms": latency_summary([r["wait"] for r in cart_rows]),
                     "entry_ms": latency_summary([r["entry"] for r in cart_rows]),
                     "first_advance_ms": latency_summary([r["first_advance"] for r in cart_rows]),
                     "after_wait_ms": latency_summary([r["after_wait"] for r in cart_rows])},
            "resume": {"total_ms": latency_summary([r["total"] for r in resume_rows])}}


def _contact_id(services, uid: str) -> str | None:
    identity = services.contact_repository.Identity
    try:
        return identity.get(f"user:{uid}").contact_id
    except identity.DoesNotExist:
        return None


def _cart_latency(t0: float, t1: float, history: list[dict]) -> dict:
    """Ingest → the email accepted, split by the execution's history: ingest → execution
    started (stream, signal, StartExecution), → the event wait entered (the first Advance),
    the machine's wait (the wait's task scheduled → timed out), timed out → email accepted
    (Advance, messages queue, send_messages, SES)."""
    def at(event) -> float:
        return event["timestamp"].timestamp()

    started = next(e for e in history if e["type"] == "ExecutionStarted")
    wait_entered = next(e for e in history if e["type"] == "TaskStateEntered"
                        and e["stateEnteredEventDetails"]["name"] == "WaitForEvent")
    timed_out = next(e for e in history if e["type"] == "TaskTimedOut")
    wait = at(timed_out) - at(wait_entered)
    return {"total": t1 - t0, "wait": wait, "pipeline": (t1 - t0) - wait, "entry": at(started) - t0,
            "first_advance": at(wait_entered) - at(started), "after_wait": t1 - at(timed_out)}


# -- suite ---------------------------------------------------------------------------------------

def quotas(timelines: list[dict]) -> dict:
    """Days each shipped journey keeps an execution open (its longest path's waits, from its
    definition), the entries per day that alone fill the 1M open executions, and how many
    rounds the 25,000-event history allows, for rounds of each kind measured (a WaitUntil
    round and a WaitForEvent round leave different numbers of events)."""
    kinds: dict[str, list[float]] = defaultdict(list)
    fixed = [t["history_events_fixed"] for t in timelines if t["enrollments"]]
    for t in timelines:
        if t["history_events_per_round"]:
            kinds["WaitForEvent" if "WaitForEvent" in t["states"] else "WaitUntil"].append(t["history_events_per_round"])
    fixed_events = max(fixed) if fixed else 0
    per_round = {kind: max(values) for kind, values in sorted(kinds.items())}
    days_open = {"abandoned-cart": 25 / 24, "welcome-series": 5.0, "lead-nurturing": 22.0,
                 "birthday (entered before 09:00)": 9 / 24, "birthday (entered after 09:00)": 365.0,
                 "win-back": 30.0}
    return {"events_per_round": per_round, "fixed_events": fixed_events,
            "rounds_within_history": {k: rounds_within_history(int(fixed_events), v) for k, v in per_round.items()},
            "days_open": days_open,
            "entries_per_day_at_1M": {k: entries_per_day_at_quota(v) for k, v in days_open.items()}}


def run_suite(h, args, say) -> dict:
    say("journeys: per enrollment, each shipped journey's timelines…")
    per = per_enrollment_phase(h, args, say)
    say(f"journeys: {args.journey_starts} enrollments started through on_signal…")
    starts = starts_phase(h, args, say) if args.journey_starts else None
    latency = None
    if args.journey_latency:
        say(f"journeys: latency on the local stack ({args.journey_latency} samples)…")
        latency = latency_phase(h, args, say)
    return {"per_enrollment": per, "starts": starts, "latency": latency, "quotas": quotas(per["timelines"]),
            "prices": asdict(JourneyPrices())}


# -- report ------------------------------------------------------------------------------------

def verdicts(results: dict) -> list[str]:
    out = []
    rows = [t for t in results["per_enrollment"]["timelines"] if t["enrollments"]]
    transitions_ok = all(t["within_transitions"] for t in rows)
    calls_ok = all(t["within_calls"] for t in rows)
    worst = max(rows, key=lambda t: t["transitions_per_wait"]) if rows else None
    out.append(f"{'MET   ' if transitions_ok else 'MISSED'} journeys: at most 3 state transitions per wait "
               f"(+3 for the start and the end) — every enrollment of {len(rows)} timelines; highest "
               f"{worst['transitions_per_wait']:.2f} per wait ({worst['key']}), "
               f"{sum(t['retries'] for t in rows)} Task retries" if worst else "journeys: nothing measured")
    out.append(f"{'MET   ' if calls_ok else 'MISSED'} journeys: one Lambda call (Advance message) per run of "
               f"non-waiting nodes — highest {max(t['advance_calls_per_run'] for t in rows):.2f} per run"
               if rows else "")
    bad = [f"{t['key']} ({'; '.join(sorted(set(t['unexpected'])))})" for t in results["per_enrollment"]["timelines"]
           if t["unexpected"]]
    out.append(("ALL AS EXPECTED " if not bad else "UNEXPECTED OUTCOMES ") + "journeys: each timeline's enrollments "
               "ended as the journey says" + (f": {', '.join(bad)}" if bad else ""))
    return [line for line in out if line]


def render(results: dict) -> list[str]:
    per = results["per_enrollment"]
    lines = ["", "Journeys", f"1. Per enrollment (moto's executing Step Functions; consumers called one message at a "
                             f"time; {per['invocations']} invocations in {per['seconds']:.0f} s)"]
    head = (f"   {'':<3} {'timeline':<52} {'n':>3} {'trans':>6} {'waits':>5} {'tr/wait':>7} {'adv':>4} "
            f"{'λ b1':>5} {'λ b10':>5} {'sqs':>5} {'fifo':>5} {'RRU':>5} {'WRU':>5} {'$/1000':>8} {'b10 $':>8}")
    lines.append(head)
    for t in per["timelines"]:
        p, n = t["per"], t["enrollments"] or t["contacts"]
        lines.append(f"   {t['key']:<3} {(t['journey'] + ': ' + t['name'])[:52]:<52} {n:>3} {p['transitions']:>6.2f} "
                     f"{t['waits']:>5.2f} {t['transitions_per_wait']:>7.2f} {t['advances']:>4.1f} "
                     f"{p['invocations']:>5.2f} {p['invocations_batched']:>5.2f} {p['sqs_requests']:>5.2f} "
                     f"{p['sqs_fifo_requests']:>5.2f} {p['rru']:>5.2f} {p['wru']:>5.2f} "
                     f"{t['cost']['total']:>8.5f} {t['cost_batched']['total']:>8.5f}")
    lines.append("   trans = billed state transitions (states entered + Task retries) per enrollment; λ b1 = Lambda "
                 "invocations at batch size 1 (one per message), b10 = the same messages in full batches of 10; sqs "
                 "= standard-queue requests (task messages Step Functions sends, receive, delete), fifo = the "
                 "journey-events queue (send, receive, delete) at batch 1; RRU/WRU = the runtime's DynamoDB "
                 "(enrollments with its index, contacts, definitions, events), the sends' requests excluded; $ = "
                 "per 1,000 enrollments, Lambda time modelled for AWS; X1 is per contact (no enrollment)")
    for t in per["timelines"]:
        lines.append(f"   {t['key']}: {t['states']}; history {t['history_events']:.0f} events "
                     f"({t['history_events_per_round']:.1f} per round); enrollment item {t['item_bytes']} B at the "
                     f"end; ended {t['outcomes']} "
                     f"(expected {t['expected']}); executions {t['execution_status']}")
        lines.append(f"       invocations {_fmt(t['invocations'])}; signals {_fmt(t['signal_names'])}; calls "
                     f"{_fmt(t['calls'])}; DynamoDB {t['dynamodb_calls']:.1f} calls: "
                     + "; ".join(f"{tb} {u['rru']:.2f} RRU {u['wru']:.2f} WRU ({_fmt(u['ops'])})"
                                 for tb, u in t["units"].items())
                     + f"; running index {t['index_wru']:.2f} WRU; CPU {t['cpu_ms']:.1f} ms, "
                       f"modelled {1000 * t['per']['lambda_seconds']:.0f} ms; cost {_fmt(t['cost']['parts'], 5)}")
        lines.append("       per message: " + "; ".join(
            f"{name} {m['rru']:.2f} RRU {m['wru']:.2f} WRU {m['cpu_ms']:.1f} ms CPU ({_fmt(m['ops'])})"
            for name, m in t["per_message"].items()))
    s = results.get("starts")
    if s:
        lines += ["", f"2. Enrollments started: {s['handled']} signals through one journey_events consumer (batches "
                      f"of {BATCH}) in {s['seconds']:.1f} s = {s['per_second']:.1f} enrollments/s on moto; "
                      f"{s['executions']} executions; StartExecution {s['start_execution_ms']:.1f} ms per call, "
                      f"DynamoDB {s['dynamodb_ms_per_enrollment']:.1f} ms and {s['dynamodb_calls_per_enrollment']:.1f}"
                      f" calls per enrollment, CPU {s['cpu_ms_per_enrollment']:.1f} ms; modelled on AWS "
                      f"{s['modelled_ms_per_enrollment']:.0f} ms per enrollment = "
                      f"{s['modelled_per_second_per_consumer']:.1f}/s per concurrent consumer",
                  "   per enrollment: " + "; ".join(f"{tb} {u['rru']:.2f} RRU {u['wru']:.2f} WRU ({_fmt(u['ops'])})"
                                                    for tb, u in s["units"].items())]
    lat = results.get("latency")
    if lat:
        c = lat["cart"]
        lines += ["", f"3. Latency on the local stack (LocalStack in process, time scale {lat['scale']:g}, "
                      f"{lat['samples']} samples)",
                  f"   abandoned cart, Product Added -> email accepted by SES, the machine's wait excluded: p50 "
                  f"{c['pipeline_ms'].get('p50', 0):.0f} ms, p95 {c['pipeline_ms'].get('p95', 0):.0f} ms "
                  f"(total p50 {c['total_ms'].get('p50', 0):.0f} ms, wait p50 {c['machine_wait_ms'].get('p50', 0):.0f}"
                  f" ms); entry {c['entry_ms'].get('p50', 0):.0f}/{c['entry_ms'].get('p95', 0):.0f} ms, first "
                  f"Advance {c['first_advance_ms'].get('p50', 0):.0f}/{c['first_advance_ms'].get('p95', 0):.0f} ms, "
                  f"timed out -> accepted {c['after_wait_ms'].get('p50', 0):.0f}/"
                  f"{c['after_wait_ms'].get('p95', 0):.0f} ms (p50/p95)",
                  f"   wait_for resumed by an event -> next email accepted: p50 "
                  f"{lat['resume']['total_ms'].get('p50', 0):.0f} ms, p95 {lat['resume']['total_ms'].get('p95', 0):.0f}"
                  f" ms"]
    q = results["quotas"]
    lines += ["", "4. Quotas: history events per round (measured) " + _fmt(q["events_per_round"], 0)
              + f", {q['fixed_events']:.0f} for the start and the end; rounds within 25,000 events: "
              + ", ".join(f"{k} {v:,}" for k, v in q["rounds_within_history"].items())
              + "; entries per day that alone fill 1M open executions: "
              + ", ".join(f"{k} {v:,.0f}" for k, v in q["entries_per_day_at_1M"].items())]
    return lines


def _fmt(d: dict, digits: int = 2) -> str:
    return ", ".join(f"{k} {v:.{digits}f}" for k, v in d.items())
