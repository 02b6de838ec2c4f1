"""Messaging benchmark: renders per second, sends per second through the whole send pipeline,
and Mercurio's own AWS cost per 1,000 emails.

    .venv/bin/python -m bench.run --suite messaging               # about 2 minutes on 2 cores
    .venv/bin/python -m bench.run --suite messaging --msg-contacts 2000 --json out/msg.json

1. **Renders** (in process, no AWS): the shipped `welcome.html.j2` and `coffee-offer.html.j2`
   rendered for a contact as a send does (sandboxed Jinja, CSS inlined, preheader, plain-text
   part), then links rewritten to signed click URLs with an open pixel (`LinkTracker.track`)
   and the raw MIME built (`build_email`). *Cold*: the template compiled for every render (a
   new container, or a new version in S3). *Warm*: found through `TemplateLibrary`, which
   compiles each stored version once; the store (S3 on AWS) is asked again only after
   `max_age` seconds.
2. **Sends** on the local stack (moto server with every resource of
   infrastructure/template.yaml, the shipped templates accepted as `make run` does, the
   sending domains verified in the emulator's SES): a population of contacts with email
   consent is seeded in the contacts table; some live where it is night now (quiet hours),
   some already had 3 marketing emails this week (the frequency cap), a few never gave
   consent. `MessagingService.request` (what a trigger or a broadcast calls) queues one
   message per contact; the `send_messages` consumer (the Lambda entry point itself, called
   with Lambda's SQS event shape by `local.queue_bridge.QueueBridge`, which deletes what
   succeeded as the event source mapping does) takes each one through claim → contact →
   suppressions → history → gate → send rate → render → SES v2 `SendEmail` (raw MIME).
   The deferred messages are then woken: the clock moves 12 hours on (morning for the
   quiet-hours contacts, the cap has freed) and they are made visible on the queue, as SQS
   does when their visibility timeout ends; they are sent.
   A second, paced run (one request every `--trickle-interval` seconds with the consumer
   polling meanwhile) gives the latency of one message through an idle pipeline.
3. **Units**: DynamoDB requests and computed RRU/WRU per table on the app's own clients
   (bench/units.py); for the messages table, every item written is read back (IndexMeter, a
   client the recorder does not count, its time kept out of the handlers' time) so that its
   write units come from the real sizes before and after, and its indexes' write units from
   what each index projects (index_units_of_write: a write that changes nothing an index
   projects costs that index nothing); the events the sends and the feedback append to the
   contacts (Message Sent, Email Bounced…) are then run through `process_events` (the stream
   handler), its units and Lambda time counted per email; SQS requests on the app's SQS client (SendMessage,
   ChangeMessageVisibility) and on the bridge's (ReceiveMessage, DeleteMessageBatch: the event
   source mapping's on AWS, billed to the account just the same); S3 GETs of templates; Lambda
   time of each `send_messages` invocation (wall, and CPU of the handler's thread).
4. **Cost per 1,000 emails** from those numbers and public us-east-1 prices (`PRICES`),
   against SES's own $0.10 per 1,000; the budget is 10 % of it.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.harness import ROOT

TEMPLATES = ("welcome.html.j2", "coffee-offer.html.j2")
NIGHT_HOURS = (22, 23, 0, 1)  # local hours that are quiet now and daytime 12 hours later
DAY_HOURS = tuple(range(9, 19))
ZONES = ("Pacific/Honolulu", "America/Los_Angeles", "America/Denver", "America/New_York", "America/Sao_Paulo",
         "Atlantic/Azores", "Europe/London", "Europe/Rome", "Europe/Athens", "Europe/Moscow", "Asia/Dubai",
         "Asia/Karachi", "Asia/Kolkata", "Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo",
         "Australia/Brisbane", "Pacific/Noumea", "Pacific/Auckland")
WAKE_SHIFT = timedelta(hours=12)


# -- prices and cost (pure) ---------------------------------------------------------------

@dataclass(frozen=True)
class Prices:
    """Public us-east-1 list prices in dollars (see docs/PERFORMANCE.md for date and source)."""

    wru: float = 0.625 / 1e6  # DynamoDB on-demand, per write request unit
    rru: float = 0.125 / 1e6  # DynamoDB on-demand, per read request unit
    sqs_request: float = 0.40 / 1e6  # SQS standard queue, per request (64 KB chunk)
    lambda_gb_s: float = 0.0000133334  # Lambda arm64 (.chalice/config.json: lambda_architecture arm64)
    lambda_gb_s_x86: float = 0.0000166667  # Lambda x86_64, for comparison
    lambda_request: float = 0.20 / 1e6  # Lambda, per invocation
    s3_get: float = 0.0004 / 1000  # S3 Standard GET
    sns_publish: float = 0.50 / 1e6  # SNS standard topic, per publish (64 KB chunk); to SQS: no charge
    ses_per_1000: float = 0.10  # SES outbound email, per 1,000

    @property
    def budget_per_1000(self) -> float:
        return self.ses_per_1000 / 10


@dataclass
class PerEmail:
    """What the pipeline spent, divided by the emails SES accepted."""

    rru: float = 0.0
    wru: float = 0.0  # base tables
    index_wru: float = 0.0  # global secondary indexes (not in the base table's units)
    sqs_requests: float = 0.0
    invocations: float = 0.0  # Lambda invocations of the consumer
    lambda_seconds: float = 0.0  # billed duration (summed per invocation, rounded up to 1 ms)
    s3_gets: float = 0.0
    sns_publishes: float = 0.0  # SES's event destination publishing feedback to the topic

    def plus(self, other: "PerEmail") -> "PerEmail":
        return PerEmail(**{name: getattr(self, name) + getattr(other, name) for name in self.__dataclass_fields__})


def billed_seconds(durations: list[float]) -> float:
    """Lambda bills each invocation's duration rounded up to the millisecond."""
    return sum(math.ceil(d * 1000) / 1000 for d in durations)


def projected(item: dict | None, index: dict, table_keys: list[str]) -> dict | None:
    """The index item a base item (wire format) makes in a global secondary index (its
    KeySchema and Projection as in the template), or None when the item is not in the index
    (absent, or without the index's key attributes: a sparse index)."""
    if item is None:
        return None
    keys = [k["AttributeName"] for k in index["KeySchema"]]
    if any(k not in item for k in keys):
        return None
    projection = index.get("Projection") or {}
    kind = projection.get("ProjectionType", "ALL")
    if kind == "ALL":
        return dict(item)
    names = set(keys) | set(table_keys) | (set(projection.get("NonKeyAttributes") or ())
                                           if kind == "INCLUDE" else set())
    return {k: v for k, v in item.items() if k in names}


def index_units_of_write(before: dict | None, after: dict | None, index: dict, table_keys: list[str]) -> int:
    """Write units one base-table write costs in one index: nothing when the index item is
    unchanged (an update of attributes it does not project), a put when it appears or
    changes, a delete when it goes, both when its index key changes (1 WRU per started KB of
    the index item)."""
    from bench.units import item_size

    old, new = projected(before, index, table_keys), projected(after, index, table_keys)
    if old == new:
        return 0
    keys = [k["AttributeName"] for k in index["KeySchema"]]
    if old is not None and new is not None and all(old.get(k) == new.get(k) for k in keys):
        return max(1, math.ceil(max(item_size(old), item_size(new)) / 1024))
    units = 0
    for gone_or_new in (old, new):
        if gone_or_new is not None:
            units += max(1, math.ceil(item_size(gone_or_new) / 1024))
    return units


class IndexMeter:
    """The write units of a table's global secondary indexes, for the writes the app's client
    makes: after each successful write to the table the item is read back (with a client the
    recorder does not count) and its index items before and after compared
    (index_units_of_write). DynamoDB bills index writes as writes; they are not in the base
    table's units."""

    _WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")

    def __init__(self, recorder, table_name: str, resource: dict, endpoint: str, region: str):
        import boto3

        props = resource["Properties"]
        self.table = table_name
        self.key_names = [k["AttributeName"] for k in props["KeySchema"]]
        self.indexes = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes") or ()}
        self.units, self.base_units, self.failed_units = {name: 0 for name in self.indexes}, 0, 0
        self.own_cpu = self.own_wall = 0.0  # time spent reading items back (taken out of the handlers' time)
        self.items: dict[tuple, dict | None] = {}
        self._lock = threading.Lock()
        self.reader = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
        self.reader.meta.events.unregister("before-parameter-build.dynamodb.*", unique_id=f"bench-before-{id(recorder)}")
        self.reader.meta.events.unregister("after-call.dynamodb.*", unique_id=f"bench-after-{id(recorder)}")
        for client in list(recorder._instrumented):  # every DynamoDB client the app made so far
            if client is self.reader:
                continue
            client.meta.events.register("before-parameter-build.dynamodb.*", self._params,
                                        unique_id=f"bench-index-params-{id(self)}")
            client.meta.events.register("after-call.dynamodb.*", self._after, unique_id=f"bench-index-{id(self)}")

    def reset(self) -> None:
        with self._lock:
            self.units = {name: 0 for name in self.indexes}
            self.base_units = 0  # the table's own write units, from the real sizes before and after
            self.failed_units = 0  # conditional writes refused (billed by the item's size too)

    def correct(self, units: dict, label: str) -> None:
        """Replace the recorder's write units of this table (an UpdateItem that does not return
        the new item is estimated there from the values it sets, which undercounts a write that
        adds to a large item) by the ones measured here."""
        row = units.get(label)
        if row is not None:
            row["wru_estimated"] = row["wru"]
            row["wru"] = float(self.base_units + self.failed_units)

    def total(self) -> int:
        return sum(self.units.values())

    @staticmethod
    def _params(params, context, **_):
        context["bench.index.params"] = params

    def _keys_written(self, name: str, params: dict) -> list[dict]:
        if name == "BatchWriteItem":
            keys = []
            for request in (params.get("RequestItems") or {}).get(self.table, []):
                body = request.get("PutRequest", {}).get("Item") or request.get("DeleteRequest", {}).get("Key")
                if body:
                    keys.append(body)
            return keys
        if params.get("TableName") != self.table:
            return []
        return [params.get("Item") or params.get("Key") or {}]

    def _after(self, http_response, model, context, **_):
        from bench.units import item_size, write_units

        if model.name not in self._WRITES:
            return
        params = context.get("bench.index.params") or {}
        for written in self._keys_written(model.name, params):
            key = {k: written[k] for k in self.key_names if k in written}
            key = {k: (v if isinstance(v, dict) else {"S": v}) for k, v in key.items()}
            where = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in key.items()))
            if http_response.status_code >= 300:
                with self._lock:
                    known = self.items.get(where)
                    self.failed_units += write_units(item_size(known) if known else 0)
                continue
            wall, cpu = time.perf_counter(), time.thread_time()
            after = self.reader.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
            self.own_cpu += time.thread_time() - cpu  # the bench's reads, not the handler's work
            self.own_wall += time.perf_counter() - wall
            with self._lock:
                before = self.items.get(where)
                self.base_units += write_units(max(item_size(before) if before else 0,
                                                   item_size(after) if after else 0))
                for name, index in self.indexes.items():
                    self.units[name] += index_units_of_write(before, after, index, self.key_names)
                self.items[where] = after


def cost_per_1000(per: PerEmail, memory_mb: int, prices: Prices = Prices(), x86: bool = False) -> dict:
    """Dollars per 1,000 emails by service, their total, SES's price, the budget, and whether
    Mercurio's own cost is within it."""
    gb_s = prices.lambda_gb_s_x86 if x86 else prices.lambda_gb_s
    parts = {
        "dynamodb_reads": per.rru * prices.rru * 1000,
        "dynamodb_writes": (per.wru + per.index_wru) * prices.wru * 1000,
        "sqs": per.sqs_requests * prices.sqs_request * 1000,
        "lambda_requests": per.invocations * prices.lambda_request * 1000,
        "lambda_duration": per.lambda_seconds * memory_mb / 1024 * gb_s * 1000,
        "s3_gets": per.s3_gets * prices.s3_get * 1000,
        "sns": per.sns_publishes * prices.sns_publish * 1000,
    }
    total = sum(parts.values())
    return {"parts": parts, "total": total, "ses": prices.ses_per_1000, "budget": prices.budget_per_1000,
            "share_of_ses": total / prices.ses_per_1000, "within_budget": total < prices.budget_per_1000}


def lambda_estimate_seconds(cpu_seconds: float, calls: dict[str, float], memory_mb: int,
                            latency_ms: dict[str, float]) -> float:
    """An estimate of the duration on AWS of work measured here: its CPU time stretched by
    Lambda's CPU share at this memory (one full vCPU at 1,769 MB), plus each remote call's
    round trip in the region. A model, not a measurement: docs/PERFORMANCE.md states the
    assumptions."""
    share = min(1.0, memory_mb / 1769)
    return cpu_seconds / share + sum(count * latency_ms.get(service, 0.0) / 1000 for service, count in calls.items())


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def zone_at_local_hours(now: datetime, hours: tuple[int, ...], zones: tuple[str, ...] = ZONES) -> str:
    """The first zone of `zones` whose local hour is one of `hours` at `now`."""
    for name in zones:
        if now.astimezone(ZoneInfo(name)).hour in hours:
            return name
    raise LookupError(f"no zone at local hours {hours} at {now.isoformat()}")


# -- counting calls on boto3 clients ------------------------------------------------------

class CallCounter:
    """Counts the requests made by the clients it instruments, by (label, operation)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        self.seconds: dict[str, float] = {}

    def instrument(self, client, label: str) -> None:
        service = client.meta.service_model.endpoint_prefix
        events = client.meta.events

        def before(context, **_):
            context["bench.calls.started"] = time.perf_counter()

        def after(model, context, **_):
            elapsed = time.perf_counter() - context.get("bench.calls.started", time.perf_counter())
            with self._lock:
                key = (label, model.name)
                self.counts[key] = self.counts.get(key, 0) + 1
                self.seconds[label] = self.seconds.get(label, 0.0) + elapsed

        events.register(f"before-call.{service}.*", before, unique_id=f"bench-calls-before-{label}-{id(self)}")
        events.register(f"after-call.{service}.*", after, unique_id=f"bench-calls-after-{label}-{id(self)}")

    def reset(self) -> None:
        with self._lock:
            self.counts, self.seconds = {}, {}

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self.counts)


class ShiftedClock:
    """The system clock moved by `offset` (the wake-up pass runs 12 hours later)."""

    def __init__(self):
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


# -- 1. renders ---------------------------------------------------------------------------

class MemoryStore:
    """A TemplateStore in memory, counting its reads (S3 GETs on AWS)."""

    def __init__(self, files: dict[str, str]):
        self.files, self.gets = dict(files), 0

    def get(self, filename):
        from chalicelib.services.template_store import StoredTemplate

        self.gets += 1
        source = self.files.get(filename)
        return StoredTemplate(source, "v1") if source is not None else None

    def list(self):
        return sorted(self.files)

    def put(self, filename, source):
        self.files[filename] = source
        return "v1"

    def versions(self):
        return {name: "v1" for name in self.files}


def _variables(contact_id: str, email: str, links: dict, message_id: str) -> dict:
    """The variables MessagingService._render gives a template."""
    return {"contact": {"id": contact_id, "email": email, "phone": None, "locale": "en-GB",
                        "timezone": "Europe/London", "segments": ["coffee-lovers"], "stage": "customer",
                        "score": 42},
            "traits": {"email": email, "first_name": "Ada", "last_name": "Lovelace", "plan": "pro"},
            "links": links, "message": {"id": message_id, "campaign": None}, "data": {"currency": "EUR"}}


def render_once(compiled, tracker, index: int, now: datetime) -> dict:
    """One email, as MessagingService._send_email builds it; the time of each stage."""
    from chalicelib.domain.messaging import links as link_rules
    from chalicelib.domain.messaging.mime import EmailContent, build_email

    mid = f"bench-{index:08d}"
    expires = now + timedelta(days=180)
    t0 = time.perf_counter()
    unsubscribe = tracker.page_url(link_rules.UNSUBSCRIBE, mid, expires)
    preferences = tracker.page_url(link_rules.PREFERENCES, mid, expires)
    rendered = compiled.render(_variables(f"c{index}", f"ada{index}@example.com",
                                          {"unsubscribe": unsubscribe, "preferences": preferences}, mid),
                               locale="en-GB", timezone="Europe/London", now=now)
    t1 = time.perf_counter()
    tracked = tracker.track(rendered.html, mid, expires, keep=(unsubscribe, preferences))
    t2 = time.perf_counter()
    raw = build_email(EmailContent(message_id=mid, sender=rendered.from_address or "Mercurio <hello@shop.example>",
                                   to=f"ada{index}@example.com", subject=rendered.subject, html=tracked.html,
                                   text=rendered.text, sent_at=now, kind="marketing", unsubscribe_url=unsubscribe,
                                   reply_to=rendered.reply_to))
    t3 = time.perf_counter()
    return {"render": t1 - t0, "track": t2 - t1, "mime": t3 - t2, "bytes": len(raw), "links": len(tracked.links),
            "html_bytes": len(tracked.html), "text_bytes": len(rendered.text or "")}


def render_phase(renders: int, cold_renders: int) -> list[dict]:
    from chalicelib.domain.messaging.links import LinkTracker
    from chalicelib.domain.messaging.templates import TemplateEngine
    from chalicelib.services.template_store import TemplateLibrary

    now = datetime.now(timezone.utc)
    tracker = LinkTracker((b"bench-link-secret-0123456789abcdef",), "https://t.shop.example/v1/m")
    out = []
    for filename in TEMPLATES:
        source = (ROOT / "templates" / filename).read_text(encoding="utf-8")
        name = filename.split(".")[0]
        engine = TemplateEngine()
        engine.compile(filename, source)  # imports and first-use costs out of the cold figure
        render_once(engine.compile(filename, source), tracker, 0, now)

        cold, compile_s = [], []
        for i in range(cold_renders):
            started = time.perf_counter()
            compiled = engine.compile(filename, source)
            compile_s.append(time.perf_counter() - started)
            stages = render_once(compiled, tracker, i, now)
            cold.append(time.perf_counter() - started)

        store = MemoryStore({filename: source})
        library = TemplateLibrary(store, TemplateEngine(), max_age=30.0)
        library.find(name, "html", "en-GB")  # compiled here, once
        gets_after_first = store.gets
        warm, parts = [], {"render": [], "track": [], "mime": [], "lookup": []}
        for i in range(renders):
            started = time.perf_counter()
            compiled = library.find(name, "html", "en-GB")
            looked = time.perf_counter()
            stages = render_once(compiled, tracker, i, now)
            warm.append(time.perf_counter() - started)
            parts["lookup"].append(looked - started)
            for key in ("render", "track", "mime"):
                parts[key].append(stages[key])
        cpu_started = time.thread_time()
        for i in range(min(renders, 200)):
            render_once(library.find(name, "html", "en-GB"), tracker, i, now)
        cpu_per = (time.thread_time() - cpu_started) / min(renders, 200)
        out.append({
            "template": filename, "cold_renders": cold_renders, "warm_renders": renders,
            "cold_per_s": cold_renders / sum(cold), "warm_per_s": renders / sum(warm),
            "cold_ms": 1000 * statistics.median(cold), "compile_ms": 1000 * statistics.median(compile_s),
            "warm_ms": 1000 * statistics.median(warm), "warm_p95_ms": 1000 * percentile(warm, 95),
            "warm_cpu_ms": 1000 * cpu_per,
            "stages_ms": {k: 1000 * statistics.median(v) for k, v in parts.items()},
            "store_gets": store.gets - gets_after_first + 1,
            "mime_bytes": stages["bytes"], "html_bytes": stages["html_bytes"], "text_bytes": stages["text_bytes"],
            "tracked_links": stages["links"],
        })
    return out


# -- 2. sends on the local stack ------------------------------------------------------------

def provision_stage(h, suffix: str, clock: ShiftedClock) -> dict:
    """Every resource of infrastructure/template.yaml for a new stage, the app pointed at it,
    the shipped templates accepted and the sending domains verified (what `make run` does)."""
    import boto3

    from chalicelib.entrypoints import runtime
    from local.provision import load_template, provision
    from local.ses_identities import sending_domains, verify_domains
    from local.upload_templates import accept_templates

    from local.run import configure_message_pages

    name = f"{h.run_id}-{suffix}"
    created = provision(name, endpoint_url=h.endpoint)
    configure_message_pages("https://mercurio.shop.example")
    # SES's MaxSendRate is an account quota (14/s and up on AWS), not Mercurio's throughput:
    # set high here so that the gate's send-rate deferrals do not hide the pipeline's own speed.
    os.environ.setdefault("MERCURIO_EMAIL_RATE_PER_SECOND", "1000")
    os.environ["MERCURIO_STAGE"] = name
    os.environ["MERCURIO_EVENTS_STREAM_ARN"] = created["EventsTable.StreamArn"]
    runtime.reset(clock=clock)
    template = load_template()
    key_names = {created[logical]: [k["AttributeName"] for k in res["Properties"]["KeySchema"]]
                 for logical, res in template["Resources"].items() if res["Type"] == "AWS::DynamoDB::Table"}
    labels = {created[logical]: logical.removesuffix("Table").lower()
              for logical, res in template["Resources"].items() if res["Type"] == "AWS::DynamoDB::Table"}
    h.recorder.add_tables(key_names, labels)
    h._instrument()
    services = runtime.services()
    accepted, refused = accept_templates(services.template_authoring)
    if refused or not set(TEMPLATES) <= set(accepted):
        raise RuntimeError(f"the shipped templates were not accepted: {refused}")
    verify_domains(boto3.client("ses", endpoint_url=h.endpoint, region_name=h.region),
                   sending_domains(ROOT / "templates", services.settings.default_from_address))
    return created


@dataclass
class Person:
    contact_id: str
    email: str
    group: str  # awake | quiet | capped | no_consent
    template: str
    zone: str
    locale: str | None


def seed_population(rng, count: int, now: datetime, shares: dict[str, float], tag: str) -> list[Person]:
    """Contacts written straight to the contacts table (not measured): an email, a first
    name, a time zone, a locale for some, channel-wide email consent except the no_consent
    group; the capped group's 3 marketing emails of the week are written to the message log."""
    from chalicelib.domain.contact import Contact
    from chalicelib.domain.events import iso
    from chalicelib.domain.messaging.consent import ALL_TOPICS, GRANTED, ConsentRecord, ConsentState
    from chalicelib.domain.messaging.messages import QUEUED, SENT, Message, StatusChange, message_id
    from chalicelib.adapters.dynamodb_messages import to_item
    from chalicelib.entrypoints import runtime

    services = runtime.services()
    repo, log = services.contact_repository, services.message_store
    night = zone_at_local_hours(now, NIGHT_HOURS)
    groups = []
    for group, share in shares.items():
        groups += [group] * round(share * count)
    groups = (groups + ["awake"] * count)[:count]
    rng.shuffle(groups)
    people = []
    with repo.Contact.batch_write() as contacts, repo.Identity.batch_write() as identities, \
            log.table.batch_writer() as messages:
        for i, group in enumerate(groups):
            contact = Contact(id=uuid.UUID(int=rng.getrandbits(128)).hex, created_at=iso(now - timedelta(days=30)))
            email = f"{tag}.reader{i}@example.com"
            zone = night if group in ("quiet", "capped") else zone_at_local_hours(
                now, DAY_HOURS, tuple(rng.sample(ZONES, len(ZONES))))
            locale = "it-IT" if rng.random() < 0.2 else ("en-GB" if rng.random() < 0.5 else None)
            contact.traits = {"email": email, "first_name": rng.choice(("Ada", "Bruno", "Chiara", "Dev", "Eli")),
                              "timezone": zone, **({"locale": locale} if locale else {})}
            contact.add_identifier(f"email:{email}")
            if group != "no_consent":
                contact.consent = ConsentState().with_record(ConsentRecord(
                    "email", ALL_TOPICS, GRANTED, now - timedelta(days=30), "bench signup")).to_document()
            item = repo._to_item(contact)
            item.version = 1
            contacts.save(item)
            for identifier in contact.identifiers:
                identities.save(repo.Identity(identifier, contact_id=contact.id))
            if group == "capped":  # the oldest of the 3 leaves the 7-day window in 2 hours
                for n, ago in enumerate((timedelta(days=6, hours=22), timedelta(days=3), timedelta(days=1))):
                    at = now - ago
                    mid = message_id(f"bench-past-{n}", contact.id, "coffee-offer", "email")
                    past = Message(id=mid, contact_id=contact.id, channel="email", template="coffee-offer",
                                   lane="marketing", topic="promotions", cause=f"bench-past-{n}", requested_at=at,
                                   status=SENT, address=email, provider_id=f"past-{mid}",
                                   timeline=(StatusChange(QUEUED, at), StatusChange(SENT, at)))
                    messages.put_item(Item=to_item(past, 2))
            template = "welcome" if i % 2 == 0 else "coffee-offer"
            people.append(Person(contact.id, email, group, template, zone, locale))
    return people


class Consumer:
    """The messages queue's event source mapping: QueueBridge in front of the `send_messages`
    entry point, timing each invocation (wall, and CPU of this thread)."""

    def __init__(self, h, queue_url: str, calls: CallCounter):
        from chalice.local import LambdaContext

        from chalicelib.entrypoints.messages import send_messages
        from local.queue_bridge import QueueBridge

        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.records = 0
        self.waiting: dict[str, str] = {}  # message id -> receipt handle of messages left on the queue

        self.meter = None  # an IndexMeter whose own reads are taken out of the timings

        def invoke(event: dict) -> dict:
            context = LambdaContext("send_messages", memory_size=512, max_runtime_ms=60_000)
            own = (self.meter.own_cpu, self.meter.own_wall) if self.meter else (0.0, 0.0)
            wall, cpu = time.perf_counter(), time.thread_time()
            result = send_messages(event, context) or {}
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            if self.meter:
                cpu, wall = cpu - (self.meter.own_cpu - own[0]), wall - (self.meter.own_wall - own[1])
            self.cpu.append(cpu)
            self.wall.append(wall)
            self.records += len(event["Records"])
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures") or []}
            for record in event["Records"]:
                if record["messageId"] in failed:
                    self.waiting[json.loads(record["body"])["message_id"]] = record["receiptHandle"]
            return result

        self.bridge = QueueBridge(queue_url, invoke, endpoint_url=h.endpoint, region=h.region, wait_seconds=0)
        calls.instrument(self.bridge.client, "sqs-event-source")

    def drain(self, timeout: float = 900.0) -> None:
        """Deliver until no message is visible (deferred ones stay, invisible)."""
        deadline = time.monotonic() + timeout
        while self.bridge.poll_once(0):
            if time.monotonic() > deadline:
                raise TimeoutError("the messages queue was still busy")

    def wake(self) -> int:
        """Make the deferred messages visible now, as SQS does when their time comes (with the
        bench's own client: on AWS nobody calls anything for it)."""
        import boto3

        sqs = boto3.client("sqs", endpoint_url=self.bridge.client.meta.endpoint_url, region_name=self.bridge.region)
        for handle in self.waiting.values():
            sqs.change_message_visibility(QueueUrl=self.bridge.queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        woken, self.waiting = len(self.waiting), {}
        return woken


CAMPAIGN = "bench-campaign"  # every message belongs to a campaign, as a broadcast's do: its counters are counted


class EventsStream:
    """The events table's stream delivered to `process_events` in batches of 100, as the
    event source mapping does (local.stream_bridge), each invocation timed (wall, CPU)."""

    def __init__(self, h, stream_arn: str):
        from chalice.local import LambdaContext

        from chalicelib.entrypoints.stream import process_events
        from local.stream_bridge import StreamBridge

        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.records = 0

        def handler(event: dict) -> dict:
            context = LambdaContext("process_events", memory_size=1024, max_runtime_ms=120_000)
            wall, cpu = time.perf_counter(), time.thread_time()
            result = process_events(event, context) or {}
            self.cpu.append(time.thread_time() - cpu)
            self.wall.append(time.perf_counter() - wall)
            self.records += len(event["Records"])
            return result

        self.bridge = StreamBridge(stream_arn, handler, endpoint_url=h.endpoint, region=h.region)

    def drain(self, idle_polls: int = 3, timeout: float = 900.0) -> None:
        """Until the stream stays empty (processing may append events of its own)."""
        deadline, idle = time.monotonic() + timeout, 0
        while idle < idle_polls:
            if self.bridge.poll_once() == 0:
                idle += 1
                time.sleep(0.01)
            else:
                idle = 0
            if time.monotonic() > deadline:
                raise TimeoutError("the events stream was still busy")

    def summary(self, ops) -> dict:
        out = {"records": self.records, "invocations": len(self.wall), "lambda_wall": list(self.wall),
               "lambda_cpu": list(self.cpu), "units": units_by_table(ops)}
        self.wall, self.cpu, self.records = [], [], 0
        return out


def _statuses(log, people: list[Person], mids: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for person in people:
        message = log.get(mids[person.contact_id])
        key = message.status if message is not None else "missing"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _reasons(log, people: list[Person], mids: dict[str, str]) -> dict[str, int]:
    """Why messages waited or were skipped (codes on their timelines)."""
    counts: dict[str, int] = {}
    for person in people:
        message = log.get(mids[person.contact_id])
        for change in message.timeline if message else ():
            code = change.detail.get("code")
            if code and change.status in ("deferred", "skipped", "failed"):
                key = f"{change.status}:{code}"
                counts[key] = counts.get(key, 0) + 1
    return counts


def units_by_table(ops) -> dict[str, dict]:
    tables: dict[str, dict] = {}
    for (op, table), s in ops.items():
        row = tables.setdefault(table, {"requests": 0, "rru": 0.0, "wru": 0.0, "errors": 0, "ops": {}})
        row["requests"] += s.requests
        row["rru"] += s.rru
        row["wru"] += s.wru
        row["errors"] += s.errors
        row["ops"][op] = row["ops"].get(op, 0) + s.requests
    return tables


def send_phase(h, args, say) -> dict:
    import random

    try:
        from chalicelib.adapters.counter_batches import counter_batch
    except ImportError:  # code from before batching (a baseline run): every addition is written at once
        from contextlib import nullcontext

        def counter_batch(*_):
            return nullcontext()
    from chalicelib.entrypoints import runtime
    from chalicelib.services.broadcasts import FANOUT_BATCH
    from chalicelib.services.message_events import MESSAGE_TAG

    clock = ShiftedClock()
    created = provision_stage(h, "messaging", clock)
    services = runtime.services()
    calls = CallCounter()
    calls.instrument(services.message_queue.client, "sqs-app")
    calls.instrument(services.template_store.client, "s3-templates")
    calls.instrument(services.email_sender.client, "ses")
    rng = random.Random(args.seed)
    now = clock.now()
    shares = {"quiet": args.msg_quiet_share, "capped": args.msg_capped_share, "no_consent": args.msg_no_consent_share}
    say(f"messaging: seeding {args.msg_contacts} contacts…")
    people = seed_population(rng, args.msg_contacts, now, shares, "burst")
    consumer = Consumer(h, created["MessagesQueue"], calls)

    accepted_at: dict[str, float] = {}
    requested_at: dict[str, float] = {}
    sender = services.email_sender
    send_raw = sender.send_raw

    def timed_send_raw(raw, from_address, to_address, tags=None):
        result = send_raw(raw, from_address, to_address, tags)
        if result.accepted and tags:
            accepted_at[tags[MESSAGE_TAG]] = time.perf_counter()
        return result

    sender.send_raw = timed_send_raw
    messaging = services.messaging
    # Warm the container as a running Lambda would be (imports, templates compiled, clients).
    warm = seed_population(rng, 5, now, {}, "warm")
    for p in warm:
        messaging.request(p.contact_id, p.template, "email", f"bench-warm-{p.contact_id}", campaign=CAMPAIGN)
    consumer.drain()
    stream = EventsStream(h, created["EventsTable.StreamArn"])
    stream.drain()  # the warm-up's Message Sent events
    stream.wall, stream.cpu, stream.records = [], [], 0
    import yaml  # noqa: F401 - load_template's parser

    from local.provision import load_template

    index = IndexMeter(h.recorder, created["MessagesTable"], load_template()["Resources"]["MessagesTable"],
                       h.endpoint, h.region)
    consumer.meter = index
    consumer.wall, consumer.cpu, consumer.records = [], [], 0

    # a) burst: every request first (a broadcast's fan-out), then the consumer.
    h.recorder.reset()
    calls.reset()
    index.reset()
    say(f"messaging: {len(people)} requests…")
    mids: dict[str, str] = {}
    started = time.perf_counter()
    for page in range(0, len(people), FANOUT_BATCH):
        # A broadcast's fan-out requests a batch of contacts per invocation, its campaign
        # counters summed and its messages enqueued ten per request (entrypoints/broadcasts.py).
        with counter_batch(services.campaign_stats, services.message_queue):
            for p in people[page:page + FANOUT_BATCH]:
                requested_at_p = time.perf_counter()
                message = messaging.request(p.contact_id, p.template, "email", f"bench-burst-{p.contact_id}",
                                            campaign=CAMPAIGN)
                mids[p.contact_id] = message.id
                requested_at[message.id] = requested_at_p
    request_seconds = time.perf_counter() - started
    request_ops, _ = h.recorder.snapshot()
    request_calls = calls.snapshot()
    say("messaging: sending…")
    drain_started = time.perf_counter()
    consumer.drain()
    drain_seconds = time.perf_counter() - drain_started
    first_pass = {"wall": list(consumer.wall), "cpu": list(consumer.cpu), "records": consumer.records}
    first_ops, first_tables = h.recorder.snapshot()
    first_calls = calls.snapshot()
    sent_first = sum(1 for m in accepted_at if m in requested_at)
    first_statuses = _statuses(services.message_log, people, mids)  # reads not counted: the recorder restarts
    h.recorder.reset()

    # b) the deferred ones, 12 hours later: morning in their zone, the cap freed.
    say(f"messaging: waking {len(consumer.waiting)} deferred messages 12 hours later…")
    clock.offset = WAKE_SHIFT
    woken = consumer.wake()
    consumer.drain()  # the clock stays 12 hours on: the send rate's state is there now
    wake_ops, wake_tables = h.recorder.snapshot()
    lambda_wall, lambda_cpu = list(consumer.wall), list(consumer.cpu)  # the trickle below is not in them
    records = consumer.records
    ops = _plus(first_ops, wake_ops)
    all_calls = calls.snapshot()
    statuses = _statuses(services.message_log, people, mids)
    reasons = _reasons(services.message_log, people, mids)
    delivered = sum(1 for m in accepted_at if m in requested_at)
    awake = {mids[p.contact_id] for p in people if p.group == "awake"}
    burst_latency = [accepted_at[m] - requested_at[m] for m in awake if m in accepted_at]

    messages_table = created["MessagesTable"]
    message_sizes = [size for t in (first_tables, wake_tables) if messages_table in t
                     for size in t[messages_table].sizes]
    from bench.units import TableItems

    messages_items = TableItems()
    for size in message_sizes:
        messages_items.add(size)
    index_wru, index_by_name = index.total(), dict(index.units)
    measured_units = units_by_table(ops)
    index.correct(measured_units, "messages")

    # The events the sends appended to the contacts (Message Sent), through the stream handler
    # as its event source mapping would deliver them: what each send costs there.
    say("messaging: stream processing of the sends' events…")
    h.recorder.reset()
    stream.drain()
    stream_ops, _ = h.recorder.snapshot()
    send_stream = stream.summary(stream_ops)

    say("messaging: SES delivery feedback for every email sent…")
    index.reset()
    feedback = feedback_phase(h, people, mids, index)
    feedback["index_wru"], feedback["index_by_name"] = index.total(), dict(index.units)
    index.correct(feedback["units"], "messages")
    h.recorder.reset()
    stream.drain()
    stream_ops, _ = h.recorder.snapshot()
    feedback["stream"] = stream.summary(stream_ops)

    # c) trickle: one request at a time through an idle pipeline, the consumer polling meanwhile.
    say(f"messaging: {args.trickle} paced requests…")
    trickle_people = seed_population(rng, args.trickle, clock.now(), {}, "trickle")
    stop = threading.Event()

    poll_errors: list[str] = []

    def poll():
        while not stop.is_set():
            try:
                if consumer.bridge.poll_once(0) == 0:
                    time.sleep(0.005)
            except Exception as exc:  # reported with the results
                poll_errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.1)

    poller = threading.Thread(target=poll, name="bench-consumer", daemon=True)
    poller.start()
    trickle_mids = []
    for p in trickle_people:
        t0 = time.perf_counter()
        message = messaging.request(p.contact_id, p.template, "email", f"bench-trickle-{p.contact_id}",
                                    campaign=CAMPAIGN)
        requested_at[message.id] = t0
        trickle_mids.append(message.id)
        time.sleep(args.trickle_interval)
    deadline = time.monotonic() + 60
    while not all(m in accepted_at for m in trickle_mids) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    poller.join(timeout=10)
    sender.send_raw = send_raw
    trickle_latency = [accepted_at[m] - requested_at[m] for m in trickle_mids if m in accepted_at]

    return {
        "contacts": len(people), "groups": {g: sum(1 for p in people if p.group == g) for g in
                                            ("awake", "quiet", "capped", "no_consent")},
        "night_zone": zone_at_local_hours(now, NIGHT_HOURS), "italian": sum(1 for p in people if p.locale == "it-IT"),
        "request_seconds": request_seconds, "requests_per_s": len(people) / request_seconds,
        "request_units": units_by_table(request_ops), "request_calls": _calls_json(request_calls),
        "drain_seconds": drain_seconds, "sent_first_pass": sent_first,
        "sends_per_s": sent_first / drain_seconds if drain_seconds else 0.0,
        "first_pass": {"statuses": first_statuses, "invocations": len(first_pass["wall"]),
                       "records": first_pass["records"], "wall": sum(first_pass["wall"]),
                       "cpu": sum(first_pass["cpu"]), "units": units_by_table(_minus(first_ops, request_ops)),
                       "calls": _calls_json(_minus_calls(first_calls, request_calls))},
        "woken": woken, "statuses": statuses, "reasons": reasons, "delivered": delivered,
        "invocations": len(lambda_wall), "records": records, "lambda_wall": lambda_wall, "lambda_cpu": lambda_cpu,
        "units": measured_units, "calls": _calls_json(all_calls),
        "messages_item_bytes": messages_items.summary(),
        "index_wru": index_wru, "index_by_name": index_by_name, "stream": send_stream,
        "burst_latency_ms": _latency(burst_latency), "trickle_latency_ms": _latency(trickle_latency),
        "trickle": len(trickle_mids), "trickle_sent": len(trickle_latency), "trickle_errors": poll_errors[:3],
        "trickle_statuses": {m: getattr(services.message_log.get(m), "status", None) for m in trickle_mids[:5]},
        "rate_per_second": services.send_policy.rates["email"].per_second,
    }, feedback


def _minus(after, before):
    from bench.units import OpStats

    out = {}
    for key, s in after.items():
        b = before.get(key)
        if b is None:
            out[key] = s
            continue
        diff = OpStats(**asdict(s))
        for name in diff.__dataclass_fields__:
            setattr(diff, name, getattr(s, name) - getattr(b, name))
        if diff.requests:
            out[key] = diff
    return out


def _plus(a, b):
    from bench.units import OpStats

    out = {k: OpStats(**asdict(v)) for k, v in a.items()}
    for key, s in b.items():
        out.setdefault(key, OpStats()).add(s)
    return out


def _minus_calls(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def _calls_json(counts: dict) -> dict:
    out: dict[str, dict[str, int]] = {}
    for (label, op), n in sorted(counts.items()):
        out.setdefault(label, {})[op] = n
    return out


def _latency(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": 1000 * percentile(values, 50), "p95": 1000 * percentile(values, 95),
            "max": 1000 * max(values)}


def feedback_phase(h, people: list[Person], mids: dict[str, str], meter=None) -> dict:
    """The configuration set's Delivery event for every email sent (the eventType record in
    SNS's envelope, as the feedback queue carries it), handed to the `ses_feedback` entry point
    in batches of 10 as its event source mapping would: what each delivered email costs after
    SES accepted it. The SQS requests of the feedback queue are not made here (the batches are
    built in process): one ReceiveMessage and one DeleteMessageBatch per batch, counted as such."""
    from chalice.local import LambdaContext

    from chalicelib.entrypoints import runtime
    from chalicelib.entrypoints.feedback import ses_feedback
    from chalicelib.services.message_events import MESSAGE_TAG
    from local.queue_bridge import to_lambda_record

    log = runtime.services().message_log
    sent = [m for m in (log.get(mids[p.contact_id]) for p in people) if m is not None and m.status == "sent"]
    bodies = []
    for m in sent:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        record = {"eventType": "Delivery",
                  "mail": {"timestamp": stamp, "messageId": m.provider_id, "source": "offers@shop.example",
                           "destination": [m.address],
                           "tags": {MESSAGE_TAG: [m.id], "template": [m.template], "lane": [m.lane],
                                    **({"campaign": [m.campaign]} if m.campaign else {})}},
                  "delivery": {"timestamp": stamp, "recipients": [m.address], "processingTimeMillis": 812,
                               "smtpResponse": "250 2.0.0 OK", "reportingMTA": "a8-1.smtp-out.amazonses.com"}}
        bodies.append(json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()),
                                  "TopicArn": "arn:aws:sns:us-east-1:000000000000:feedback",
                                  "Message": json.dumps(record), "Timestamp": stamp}))
    h.recorder.reset()
    wall, cpu, failures = [], [], 0
    for start in range(0, len(bodies), 10):
        event = {"Records": [to_lambda_record({"MessageId": str(uuid.uuid4()), "ReceiptHandle": f"r{start + i}",
                                               "Body": body, "Attributes": {}}, "arn:aws:sqs:us-east-1:0:fb",
                                              "us-east-1") for i, body in enumerate(bodies[start:start + 10])]}
        own = (meter.own_cpu, meter.own_wall) if meter else (0.0, 0.0)
        w, c = time.perf_counter(), time.thread_time()
        result = ses_feedback(event, LambdaContext("ses_feedback", memory_size=512, max_runtime_ms=60_000)) or {}
        c, w = time.thread_time() - c, time.perf_counter() - w
        if meter:
            c, w = c - (meter.own_cpu - own[0]), w - (meter.own_wall - own[1])
        cpu.append(c)
        wall.append(w)
        failures += len(result.get("batchItemFailures") or [])
    ops, _ = h.recorder.snapshot()
    delivered = sum(1 for m in sent if (log.get(m.id) or m).status == "delivered")
    return {"events": len(bodies), "delivered_status": delivered, "failures": failures, "invocations": len(wall),
            "lambda_wall": wall, "lambda_cpu": cpu, "units": units_by_table(ops),
            "sqs_requests": 2 * len(wall)}


# -- 3-4. per email and cost ----------------------------------------------------------------

LATENCY_MS = {"dynamodb": 5.0, "sqs": 10.0, "ses": 30.0, "s3": 20.0}  # assumed in-region round trips
MEMORY_MB = 512  # .chalice/config.json, send_messages


STREAM_MEMORY_MB = 1024  # .chalice/config.json, process_events


def stream_per_email(stream: dict, n: int, aws: bool) -> PerEmail:
    """The stream handler's share (the events the sends or the feedback appended to contacts),
    its Lambda time expressed at MEMORY_MB (it runs at STREAM_MEMORY_MB). `aws`: the time
    modelled for AWS (lambda_estimate_seconds) instead of the time measured here."""
    units = stream["units"]
    if aws:
        calls = {"dynamodb": sum(t["requests"] for t in units.values())}
        seconds = lambda_estimate_seconds(sum(stream["lambda_cpu"]), calls, STREAM_MEMORY_MB, LATENCY_MS)
    else:
        seconds = billed_seconds(stream["lambda_wall"])
    return PerEmail(rru=sum(t["rru"] for t in units.values()) / n, wru=sum(t["wru"] for t in units.values()) / n,
                    invocations=stream["invocations"] / n,
                    lambda_seconds=seconds * STREAM_MEMORY_MB / MEMORY_MB / n)


def per_email(sends: dict, stream: bool = True, aws: bool = False) -> PerEmail:
    n = max(1, sends["delivered"])
    units = sends["units"]
    sqs = sum(sum(ops.values()) for label, ops in sends["calls"].items() if label.startswith("sqs"))
    s3 = sum(sends["calls"].get("s3-templates", {}).values())
    own = PerEmail(rru=sum(t["rru"] for t in units.values()) / n, wru=sum(t["wru"] for t in units.values()) / n,
                   index_wru=sends["index_wru"] / n, sqs_requests=sqs / n, invocations=sends["invocations"] / n,
                   lambda_seconds=billed_seconds(sends["lambda_wall"]) / n, s3_gets=s3 / n)
    return own.plus(stream_per_email(sends["stream"], n, aws)) if stream and sends.get("stream") else own


def feedback_per_email(fb: dict, aws: bool = False) -> PerEmail:
    n = max(1, fb["events"])
    own = PerEmail(rru=sum(t["rru"] for t in fb["units"].values()) / n,
                   wru=sum(t["wru"] for t in fb["units"].values()) / n, index_wru=fb["index_wru"] / n,
                   sqs_requests=fb["sqs_requests"] / n, invocations=fb["invocations"] / n,
                   lambda_seconds=billed_seconds(fb["lambda_wall"]) / n, s3_gets=0.0, sns_publishes=1.0)
    return own.plus(stream_per_email(fb["stream"], n, aws)) if fb.get("stream") else own


def estimate(sends: dict) -> dict:
    """The consumer's duration on AWS, per email, by the model of lambda_estimate_seconds."""
    n = max(1, sends["delivered"])
    calls = {"dynamodb": sum(t["requests"] for t in sends["units"].values())
             - sum(t["requests"] for t in sends["request_units"].values()),
             "sqs": sum(sends["calls"].get("sqs-app", {}).values())
             - sum(sends["request_calls"].get("sqs-app", {}).values()),
             "ses": sum(sends["calls"].get("ses", {}).values()),
             "s3": sum(sends["calls"].get("s3-templates", {}).values())}
    seconds = lambda_estimate_seconds(sum(sends["lambda_cpu"]), calls, MEMORY_MB, LATENCY_MS)
    return {"seconds_per_email": seconds / n, "calls_per_email": {k: v / n for k, v in calls.items()}}


def run_suite(h, args, say) -> dict:
    say("messaging: renders…")
    renders = render_phase(args.renders, args.cold_renders)
    sends, feedback = send_phase(h, args, say)
    per = per_email(sends)
    modelled = estimate(sends)
    n = max(1, sends["delivered"])
    stream_aws = stream_per_email(sends["stream"], n, aws=True)
    per_aws = PerEmail(**{**asdict(per_email(sends, stream=False)),
                          "lambda_seconds": modelled["seconds_per_email"]}).plus(stream_aws)
    fb = feedback_per_email(feedback)
    m = max(1, feedback["events"])
    fb_calls = {"dynamodb": sum(t["requests"] for t in feedback["units"].values()) / m}
    fb_own = PerEmail(**{**asdict(feedback_per_email({**feedback, "stream": None})),
                         "lambda_seconds": lambda_estimate_seconds(sum(feedback["lambda_cpu"]) / m, fb_calls,
                                                                   MEMORY_MB, LATENCY_MS)})
    fb_aws = fb_own.plus(stream_per_email(feedback["stream"], m, aws=True)) if feedback.get("stream") else fb_own
    return {"renders": renders, "sends": sends, "feedback": feedback, "per_email": asdict(per),
            "feedback_per_email": asdict(fb), "aws_estimate": modelled,
            "cost_measured": cost_per_1000(per, MEMORY_MB), "cost_aws_estimate": cost_per_1000(per_aws, MEMORY_MB),
            "cost_aws_estimate_x86": cost_per_1000(per_aws, MEMORY_MB, x86=True),
            "cost_feedback": cost_per_1000(fb_aws, MEMORY_MB),
            "cost_with_feedback": cost_per_1000(per_aws.plus(fb_aws), MEMORY_MB),
            "prices": asdict(Prices())}


# -- report ---------------------------------------------------------------------------------

def verdicts(results: dict) -> list[str]:
    out = []
    for key, what in (("cost_measured", "send pipeline, Lambda time as measured here"),
                      ("cost_aws_estimate", "send pipeline, Lambda time as estimated for AWS"),
                      ("cost_with_feedback", "send pipeline + SES delivery feedback, AWS estimate")):
        c = results[key]
        out.append(f"{'MET   ' if c['within_budget'] else 'MISSED'} messaging cost ({what}): "
                   f"${c['total']:.5f} per 1,000 emails = {100 * c['share_of_ses']:.1f} % of SES's "
                   f"${c['ses']:.2f} (budget < 10 %, ${c['budget']:.3f})")
    return out


def render(results: dict) -> list[str]:
    r, s = results["renders"], results["sends"]
    lines = ["", "Messaging", "1. Renders (one process, no AWS): render + CSS inline + text part, tracked links "
                               "+ open pixel, raw MIME"]
    head = (f"{'template':<22} {'cold/s':>7} {'cold ms':>8} {'compile ms':>10} {'warm/s':>7} {'warm ms':>8} "
            f"{'p95 ms':>7} {'cpu ms':>7} {'render':>7} {'track':>6} {'mime':>6} {'MIME B':>7} {'links':>5}")
    lines += [head, "-" * len(head)]
    for t in r:
        st = t["stages_ms"]
        lines.append(f"{t['template']:<22} {t['cold_per_s']:>7.0f} {t['cold_ms']:>8.2f} {t['compile_ms']:>10.2f} "
                     f"{t['warm_per_s']:>7.0f} {t['warm_ms']:>8.2f} {t['warm_p95_ms']:>7.2f} "
                     f"{t['warm_cpu_ms']:>7.2f} {st['render']:>7.2f} {st['track']:>6.2f} {st['mime']:>6.2f} "
                     f"{t['mime_bytes']:>7} {t['tracked_links']:>5}")
    lines.append(f"   warm lookups asked the store {r[0]['store_gets']} time(s) for {r[0]['warm_renders']} renders "
                 f"(cached by version, re-asked after max_age)")
    lines += ["", "2. Sends on the local stack (moto server; request -> messages queue -> send_messages -> gate -> "
                  "render -> SES v2 raw)"]
    g = s["groups"]
    lines.append(f"   {s['contacts']} contacts: {g['awake']} awake with consent, {g['quiet']} in quiet hours "
                 f"({s['night_zone']}), {g['capped']} at the weekly cap, {g['no_consent']} without consent; "
                 f"{s['italian']} with locale it-IT; email rate budget {s['rate_per_second']:g}/s")
    lines.append(f"   requests: {s['requests_per_s']:.0f}/s; first pass: {s['sent_first_pass']} sent in "
                 f"{s['drain_seconds']:.1f} s = {s['sends_per_s']:.1f} sends/s (one consumer), statuses "
                 f"{s['first_pass']['statuses']}")
    lines.append(f"   12 h later: {s['woken']} woken; final statuses {s['statuses']}; reasons {s['reasons']}")
    bl, tl = s["burst_latency_ms"], s["trickle_latency_ms"]
    lines.append(f"   request -> SES accepted: burst (all queued first) p50 {bl.get('p50', 0):.0f} ms, p95 "
                 f"{bl.get('p95', 0):.0f} ms; trickle ({tl['n']} paced) p50 {tl.get('p50', 0):.1f} ms, p95 "
                 f"{tl.get('p95', 0):.1f} ms, max {tl.get('max', 0):.1f} ms")
    lines += ["", "3. Per delivered email (deferrals, skips and wake-ups included)"]
    n = max(1, s["delivered"])
    head = f"   {'table':<14} {'requests':>8} {'RRU':>6} {'WRU':>6}  operations"
    lines += [head]
    for table, t in sorted(s["units"].items()):
        ops = ", ".join(f"{op} {c / n:.2f}" for op, c in sorted(t["ops"].items()))
        lines.append(f"   {table:<14} {t['requests'] / n:>8.2f} {t['rru'] / n:>6.2f} {t['wru'] / n:>6.2f}  {ops}"
                     + (f" ({t['errors']} conditional failures)" if t["errors"] else ""))
    lines.append(f"   {'messages GSIs':<14} {'':>8} {'':>6} {s['index_wru'] / n:>6.2f}  "
                 + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(s["index_by_name"].items())))
    st = s["stream"]
    lines.append(f"   stream handler (the sends' events: {st['records']} records, {st['invocations']} invocations):")
    for table, t in sorted(st["units"].items()):
        ops = ", ".join(f"{op} {c / n:.2f}" for op, c in sorted(t["ops"].items()))
        lines.append(f"   {'  ' + table:<14} {t['requests'] / n:>8.2f} {t['rru'] / n:>6.2f} {t['wru'] / n:>6.2f}  {ops}")
    lines.append(f"   {'':<14} Lambda {1000 * sum(st['lambda_wall']) / n:.1f} ms wall, "
                 f"{1000 * sum(st['lambda_cpu']) / n:.1f} ms CPU per email (at {STREAM_MEMORY_MB} MB)")
    pe = results["per_email"]
    lines.append(f"   total: {pe['rru']:.2f} RRU, {pe['wru'] + pe['index_wru']:.2f} WRU; SQS {pe['sqs_requests']:.2f} "
                 f"requests ({s['calls'].get('sqs-app', {})} app, {s['calls'].get('sqs-event-source', {})} event "
                 f"source); S3 GETs {pe['s3_gets']:.4f}; Lambda {pe['invocations']:.3f} invocations, "
                 f"{1000 * pe['lambda_seconds']:.1f} ms billed here, CPU {1000 * sum(s['lambda_cpu']) / n:.1f} ms, "
                 f"AWS estimate {1000 * results['aws_estimate']['seconds_per_email']:.1f} ms")
    fb = results["feedback"]
    m = max(1, fb["events"])
    lines.append(f"   SES delivery feedback ({fb['events']} Delivery events, {fb['delivered_status']} messages now "
                 f"delivered, {fb['failures']} failures): " + "; ".join(
                     f"{t} {u['requests'] / m:.2f} req {u['rru'] / m:.2f} RRU {u['wru'] / m:.2f} WRU "
                     f"({', '.join(f'{op} {c / m:.2f}' for op, c in sorted(u['ops'].items()))})"
                     for t, u in sorted(fb["units"].items()))
                 + f"; GSIs {fb['index_wru'] / m:.2f} WRU ({fb['index_by_name']}); Lambda "
                   f"{1000 * sum(fb['lambda_wall']) / m:.1f} ms wall, {1000 * sum(fb['lambda_cpu']) / m:.1f} ms CPU "
                   f"per event")
    fst = fb.get("stream")
    if fst:
        lines.append(f"   feedback's events in the stream handler ({fst['records']} records): " + "; ".join(
            f"{t} {u['requests'] / m:.2f} req {u['rru'] / m:.2f} RRU {u['wru'] / m:.2f} WRU "
            f"({', '.join(f'{op} {c / m:.2f}' for op, c in sorted(u['ops'].items()))})"
            for t, u in sorted(fst["units"].items())) + f"; Lambda {1000 * sum(fst['lambda_cpu']) / m:.1f} ms CPU")
    lines.append(f"   message item written: {s['messages_item_bytes']}")
    lines += ["", "4. Cost per 1,000 emails (us-east-1 list prices)"]
    for key, what in (("cost_measured", "Lambda as measured here"), ("cost_aws_estimate", "Lambda AWS estimate, arm64"),
                      ("cost_aws_estimate_x86", "Lambda AWS estimate, x86"),
                      ("cost_feedback", "SES delivery feedback alone (AWS estimate)"),
                      ("cost_with_feedback", "send + delivery feedback (AWS estimate, arm64)")):
        c = results[key]
        parts = ", ".join(f"{k} ${v:.5f}" for k, v in c["parts"].items())
        lines.append(f"   {what}: ${c['total']:.5f} ({100 * c['share_of_ses']:.1f} % of SES) — {parts}")
    return lines
