"""Segmentation benchmarks: what real-time segments cost per event, what time passing costs
(the recheck job), and what a new segment costs (back-fill and preview).

    .venv/bin/python -m bench.run --suite segments

a) Per event, with 10, 100 and 1,000 segments defined. The same contacts and the same
   track events in each run; 9 segments read the events the shop sends (1 to 3 of them per
   event) and the others read events and traits that never occur. Also: the stream
   handler's segment work alone, in process, up to 10,000 segments; the catalog load a cold
   Lambda pays; the scheduled job's cost when it has nothing to do.
b) The recheck job (`SegmentJobs.recheck_due`) at a controlled clock: contacts with a
   "no purchase for 60 days" segment, of which a given number are due to flip.
c) A new segment over existing contacts: `SegmentJobs.preview`, then `run_backfills`, for a
   filtered event condition (its counter is recounted from each contact's stored events)
   and for an unfiltered one.

How contacts are seeded (none of it is measured): each contact's events are folded with
the domain's own `apply_event` and `ProfileRules.on_event`, at the time of each event, and
the rechecks that would have happened between events are run (`ProfileRules.evaluate` at
each due moment), so the profile, its filtered counters, memberships and checks are what
processing would have left. The outbox each step leaves is handled as `EffectsPublisher`
would: internal events (Segment Entered…) are folded into the contact as the stream would
do; memberships, segment sizes and the recheck entries still due are written through the
tables' own item layout with batch writes. Contacts and identities are batch-written like
the core suite's. In c), the events are also stored in the events table as ingest stores
them (normalised, same keys).
"""
from __future__ import annotations

import json
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from bench.harness import Harness
from bench.units import TableItems
from bench.workload import PRODUCTS, Workload

COUNTER_DAYS = 90

# -- segment definitions -------------------------------------------------------------------

# Segments on the events the shop sends: each track event can change 1 to 3 of them.
HOT_SEGMENTS = [
    {"id": "coffee-viewers", "name": "Viewed coffee twice in 30 days",
     "conditions": {"event": "Product Viewed", "where": ['properties.category == "Coffee"'],
                    "at_least": 2, "within": "30 days"}},
    {"id": "recent-browsers", "name": "Viewed a product this week",
     "conditions": {"event": "Product Viewed", "within": "7 days"}},
    {"id": "cart-without-order", "name": "Added to cart, no order yet",
     "conditions": {"all": [{"event": "Product Added", "within": "1 day"},
                            {"event": "Order Completed", "within": "1 day", "at_most": 0}]}},
    {"id": "checkout-abandoners", "name": "Started checkout, no order in 2 days",
     "conditions": {"all": [{"event": "Checkout Started", "within": "2 days"},
                            {"event": "Order Completed", "within": "2 days", "at_most": 0}]}},
    {"id": "buyers-90d", "name": "Bought in the last 90 days",
     "conditions": {"event": "Order Completed", "within": "90 days"}},
    {"id": "grinder-searchers", "name": "Searched for a grinder",
     "conditions": {"event": "Products Searched", "where": ['properties.query contains "grinder"']}},
    {"id": "spring-sale-clickers", "name": "Clicked the spring sale",
     "conditions": {"event": "Promotion Clicked", "where": ['properties.promotion_id == "spring-sale"']}},
    {"id": "list-browsers", "name": "Browsed 3 category lists in 30 days",
     "conditions": {"event": "Product List Viewed", "at_least": 3, "within": "30 days"}},
    {"id": "cart-viewers", "name": "Viewed the cart in 14 days",
     "conditions": {"event": "Cart Viewed", "within": "14 days"}},
]


def other_segment(i: int) -> dict:
    """A segment on events and traits this shop's traffic never carries (other products,
    other teams' campaigns): five shapes in turn, some reading another segment."""
    sid = f"other-{i:05d}"
    shape = i % 5
    if shape == 0:
        conditions = {"event": f"Feature {i:05d} Used", "at_least": 2, "within": "30 days"}
    elif shape == 1:
        conditions = {"trait": f"custom_{i:05d}", "equals": "yes"}
    elif shape == 2:
        conditions = {"event": f"Webinar {i:05d} Attended", "where": ['properties.track == "advanced"']}
    elif shape == 3:
        conditions = {"all": [{"trait": f"seats_{i:05d}", "gte": 10},
                              {"event": f"Course {i:05d} Started", "within": "14 days"}]}
    else:
        conditions = {"any": [{"segment": f"other-{i - 4:05d}"}, {"trait": f"vip_{i:05d}", "exists": True}]}
    return {"id": sid, "name": f"Other segment {i}", "conditions": conditions}


def segment_documents(count: int) -> list[dict]:
    hot = HOT_SEGMENTS[:count]
    return hot + [other_segment(i) for i in range(count - len(hot))]


LAPSED = {"id": "lapsed-customers", "name": "No purchase for 60 days",
          "conditions": {"all": [{"event": "Order Completed"},
                                 {"event": "Order Completed", "within": "60 days", "at_most": 0}]}}
# c): a filtered condition nobody counted yet (recounted from the stored events), and an
# unfiltered one (read from the counters the profile already has).
PREMIUM = {"id": "premium-browsers", "name": "Viewed premium products twice in 30 days",
           "conditions": {"event": "Product Viewed", "where": ["properties.price >= 200"],
                          "at_least": 2, "within": "30 days"}}
RECENT_BUYERS = {"id": "recent-buyers", "name": "Bought in the last 30 days",
                 "conditions": {"event": "Order Completed", "within": "30 days"}}


class FixedClock:
    def __init__(self, at: datetime):
        self.current = at

    def now(self) -> datetime:
        return self.current


def define_segments(documents: list[dict], backfilled: bool) -> float:
    """Store definitions as DynamoDBDefinitionStore.put stores them (a version row and the
    current row, version 1), batch-written: one put per definition costs a transaction,
    which moto answers by deep-copying the whole table (73 s for 1,000 segments). The
    documents are validated together first, as seed_directory does. `backfilled`: their
    back-fills are marked done, as for segments that existed before the contacts' history;
    otherwise pending, as DefinitionService.put leaves them."""
    from chalicelib.entrypoints import runtime
    from chalicelib.domain.events import iso
    from chalicelib.domain.segments.language import parse_segment, validate_catalog

    defs = runtime.services().definitions
    started = time.perf_counter()
    problems = validate_catalog([parse_segment(d) for d in documents])
    if problems:
        raise ValueError(problems[:3])
    now = iso(defs.clock.now())
    with defs.store.table.batch_writer() as writer:
        for doc in documents:
            key = f"segment#{doc['id']}"
            body = json.dumps({**doc, "id": doc["id"]}, ensure_ascii=False, sort_keys=True)
            writer.put_item(Item={"pk": key, "sk": "v0000000001", "doc": body, "created_at": now})
            writer.put_item(Item={"pk": "current", "sk": key, "doc": body, "version": 1, "updated_at": now})
            progress = {"status": "done", "version": 1, "scanned": 0, "cursor": None, "started_at": now,
                        "finished_at": now} if backfilled else \
                {"status": "pending", "version": 1, "scanned": 0, "cursor": None, "started_at": now}
            writer.put_item(Item={"pk": "stats", "sk": key, "backfill": progress})
    defs.invalidate()
    return time.perf_counter() - started


def add_one_segment(h: Harness) -> dict:
    """A marketer saving one more segment through DefinitionService.put (the admin API's
    path): the new definition is checked against every existing one."""
    from chalicelib.entrypoints import runtime

    defs = runtime.services().definitions
    doc = {"id": "added-later", "name": "Added later", "conditions": {"event": "Gift Card Redeemed", "within": "30 days"}}
    result, seconds, ops, _ = measured(h, lambda: defs.put("segment", doc["id"], doc))
    c = cost(ops, 1)
    return {"seconds": seconds, "dynamodb_seconds": c["dynamodb_seconds"], "read_requests": c["read_requests"],
            "write_requests": c["write_requests"], "rru": c["rru"], "wru": c["wru"], "version": result["version"]}


# -- seeding profiles ----------------------------------------------------------------------

@dataclass
class Seeded:
    contacts: list = field(default_factory=list)
    people: list = field(default_factory=list)
    schedule: list = field(default_factory=list)  # (contact id, at)
    members: dict = field(default_factory=dict)  # segment id -> {contact id: since}
    internal_events: int = 0
    rechecks: int = 0
    stored_events: list = field(default_factory=list)


def _publish_locally(contact, rules, seeded: Seeded, now: datetime) -> None:
    """What EffectsPublisher and the stream would do with the outbox, kept in memory."""
    from chalicelib.domain.contact import apply_event
    from chalicelib.domain.events import parse_timestamp

    for _ in range(10):
        if not contact.outbox:
            return
        effects, contact.outbox = contact.outbox, []
        for effect in effects:
            kind = effect["kind"]
            if kind == "schedule":
                seeded.schedule.append((contact.id, parse_timestamp(effect["at"])))
            elif kind == "enter":
                seeded.members.setdefault(effect["segment_id"], {})[effect.get("contact_id", contact.id)] = \
                    effect["since"]
            elif kind == "leave":
                seeded.members.get(effect["segment_id"], {}).pop(effect.get("contact_id", contact.id), None)
            elif kind == "event":
                seeded.internal_events += 1
                event = effect["event"]
                contact.remembered = 0  # each its own write, as in processing
                if apply_event(contact, event, COUNTER_DAYS, rules.counter_retention()):
                    rules.on_event(contact, event, now)


def _catch_up(contact, rules, seeded: Seeded, until: datetime) -> None:
    """The rechecks the scheduled job runs between events: at each due moment up to `until`."""
    from chalicelib.domain.events import iso, parse_timestamp

    last = None
    while contact.next_check and contact.next_check <= iso(until):
        at = parse_timestamp(contact.next_check)
        if last is not None and at <= last:
            at = last + timedelta(minutes=1)
            if at > until:
                break
        rules.evaluate(contact, at, set(), cause=f"recheck:{iso(at)}")
        seeded.rechecks += 1
        _publish_locally(contact, rules, seeded, at)
        last = at


def fold(contact, events: list[tuple[dict, datetime]], rules, seeded: Seeded, until: datetime) -> None:
    """Apply events in time order as processing would, with the rechecks in between."""
    from chalicelib.domain.contact import apply_event

    for event, when in events:
        if rules is not None:
            _catch_up(contact, rules, seeded, when)
        # Each past event was its own stream write: the contact keeps what processing keeps
        # (its digests ring, and of each counter what the catalog's segments read).
        contact.remembered = 0
        if apply_event(contact, event, COUNTER_DAYS, rules.counter_retention() if rules is not None else None) \
                and rules is not None:
            rules.on_event(contact, event, when)
            _publish_locally(contact, rules, seeded, when)
    if rules is not None:
        _catch_up(contact, rules, seeded, until)
    contact.outbox.clear()


def new_contact(wl: Workload, created: datetime, tag: str, i: int):
    from chalicelib.domain.contact import Contact
    from chalicelib.domain.events import iso

    contact = Contact(id=uuid.UUID(int=wl.rng.getrandbits(128)).hex, created_at=iso(created))
    anon = wl.uuid()
    person = {"contact_id": contact.id, "anonymous_id": anon, "user_id": f"{tag}-user-{i:06d}",
              "email": f"{tag}.customer{i}@example.com"}
    for identifier in (f"anon:{anon}", f"user:{person['user_id']}", f"email:{person['email']}"):
        contact.add_identifier(identifier)
    return contact, person


def stamped(raw: dict, when: datetime) -> dict:
    from chalicelib.domain.events import iso

    raw.update({"timestamp": iso(when), "receivedAt": iso(when)})
    raw.pop("sentAt", None)
    if raw["type"] == "page":
        raw.setdefault("name", "Page")
    return raw


def browsing_history(wl: Workload, person: dict, count: int, days: int, now: datetime,
                     orders: bool = True) -> list[tuple[dict, datetime]]:
    """`count` analytics.js calls over `days` days (as Workload.history makes them)."""
    from bench.workload import TRACK_EVENTS, TRACK_WEIGHTS

    names = [n for n in TRACK_EVENTS if orders or n != "Order Completed"]
    weights = [w for n, w in zip(TRACK_EVENTS, TRACK_WEIGHTS) if orders or n != "Order Completed"]
    out = []
    for when in sorted(now - timedelta(seconds=wl.rng.randint(3600, days * 86400)) for _ in range(count)):
        if wl.rng.random() < 0.25:
            raw = wl.page(person["anonymous_id"], person["user_id"])
        else:
            raw = wl.track(person["anonymous_id"], person["user_id"], name=wl.rng.choices(names, weights)[0])
        out.append((stamped(raw, when), when))
    return out


def write_profiles(seeded: Seeded, after: datetime, identities: bool = True) -> dict:
    """Batch-write contacts, identities (unless told not to), memberships (and segment sizes)
    and the recheck entries later than `after` (earlier ones the job has already done)."""
    from chalicelib.entrypoints import runtime
    from chalicelib.adapters.dynamodb_memberships import shard_of, size_key
    from chalicelib.adapters.dynamodb_schedule import RETENTION, slot_of

    repo = runtime.services().contact_repository
    with repo.Contact.batch_write() as contacts, repo.Identity.batch_write() as owners:
        for contact in seeded.contacts:
            item = repo._to_item(contact)
            item.version = 1
            contact.version = 1
            contacts.save(item)
            for identifier in contact.identifiers if identities else ():
                owners.save(repo.Identity(identifier, contact_id=contact.id))
    memberships = runtime.services().membership_store
    rows = 0
    with memberships.members_table.table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as writer:
        for segment_id, members in seeded.members.items():
            for contact_id, since in members.items():
                writer.put_item(Item={"pk": f"{segment_id}#{shard_of(contact_id)}", "sk": contact_id, "since": since})
                rows += 1
    for segment_id, members in seeded.members.items():
        per_shard: dict[int, int] = {}
        for contact_id in members:
            per_shard[shard_of(contact_id)] = per_shard.get(shard_of(contact_id), 0) + 1
        for shard, n in per_shard.items():
            memberships.members_table.table.update_item(
                Key=size_key(segment_id, shard), UpdateExpression="ADD #size :n",
                ExpressionAttributeNames={"#size": "size"}, ExpressionAttributeValues={":n": n})
    entries = {}
    for contact_id, at in seeded.schedule:
        if at > after:
            day, minute = slot_of(at)
            entries[(day, minute, contact_id)] = int((at + RETENTION).timestamp())
    with runtime.services().recheck_schedule.table.batch_writer() as writer:
        for (day, minute, contact_id), expires in entries.items():
            writer.put_item(Item={"pk": f"due#{day}", "sk": f"{minute}#{contact_id}", "expires": expires})
    if seeded.stored_events:
        runtime.services().event_store.append(seeded.stored_events)
    return {"contacts": len(seeded.contacts), "memberships": rows, "schedule_entries": len(entries),
            "stored_events": len(seeded.stored_events)}


# -- measuring -------------------------------------------------------------------------------

def measured(h: Harness, fn):
    """Run fn with the recorder cleared; return (result, seconds, ops, tables)."""
    h.recorder.reset()
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    ops, tables = h.recorder.snapshot()
    return result, seconds, ops, tables


def cost(ops: dict, per: int) -> dict:
    from bench import run as core

    summary = core.summarise_ops(ops, max(1, per))
    reads = sum(s["requests"] for op, s in summary["per_op"].items() if op in core.READ_OPS)
    writes = sum(s["requests"] for op, s in summary["per_op"].items() if op in core.WRITE_OPS)
    rru = sum(s.rru for s in ops.values())
    wru = sum(s.wru for s in ops.values())
    return {**summary, "read_requests": reads, "write_requests": writes, "rru": rru, "wru": wru,
            "items_read": {f"{op} {t}": s.items_read for (op, t), s in ops.items() if s.items_read}}


def by_table(ops: dict, per: int) -> list[dict]:
    rows = []
    for (op, table), s in sorted(ops.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rows.append({"op": op, "table": table, "requests": s.requests, "per": s.requests / max(1, per),
                     "rru": s.rru / max(1, per), "wru": s.wru / max(1, per), "errors": s.errors,
                     "items_read": s.items_read, "items_written": s.items_written,
                     "mean_ms": 1000 * s.seconds / s.requests if s.requests else 0.0})
    return rows


def _count(ops: dict, op: str, table_part: str) -> int:
    return sum(s.requests for (o, t), s in ops.items() if o == op and table_part in t)


MOVE_OPS = ("TransactWriteItems", "PutItem", "DeleteItem")  # a membership move: a transaction before, a conditional put/delete now


def _moves(ops: dict) -> list:
    return [v for (o, t), v in ops.items() if o in MOVE_OPS and "memberships" in t]


# -- a) per event ------------------------------------------------------------------------

def build_shop_profiles(wl: Workload, count: int, history: int, rules, now: datetime, tag: str) -> Seeded:
    seeded = Seeded()
    for i in range(count):
        created = now - timedelta(days=90, seconds=count - i)
        contact, person = new_contact(wl, created, tag, i)
        signup = stamped(wl.identify(person["user_id"], person["anonymous_id"], person["email"], when=created),
                         created)
        events = [(signup, created)] + browsing_history(wl, person, history, 60, now)
        fold(contact, events, rules, seeded, now)
        seeded.contacts.append(contact)
        seeded.people.append(person)
    return seeded


def per_event_run(h: Harness, n_segments: int, contacts: int, events: int, history: int, seed: int,
                  keep: dict) -> dict:
    from bench import run as core
    from chalicelib.entrypoints import runtime
    from chalicelib.domain.contact import counter_name
    from chalicelib.services.segmentation import ProfileRules

    stage = h.use_stage(f"seg{n_segments}-{len(h.stages)}")
    documents = segment_documents(n_segments)
    define_seconds = define_segments(documents, backfilled=True)
    defs = runtime.services().definitions
    defs.invalidate()
    catalog = defs.catalog()
    rules = ProfileRules(lambda: catalog, counter_days=COUNTER_DAYS)
    wl = Workload(seed)
    now = datetime.now(timezone.utc)
    seeded = build_shop_profiles(wl, contacts, history, rules, now, tag="seg")
    written = write_profiles(seeded, after=now)
    batch = [wl.track(p["anonymous_id"], p["user_id"])
             for p in (wl.rng.choice(seeded.people) for _ in range(events))]
    if "contacts" not in keep:
        keep["contacts"] = [(c.id, c.to_document()) for c in seeded.contacts]
        keep["people"] = seeded.people
        keep["events"] = batch
    touched = [len(catalog.index.affected_by_event(counter_name(e))) for e in batch]
    core.append_events(batch)

    # The catalog as a warm container has it (its load is measured on its own below).
    defs.invalidate()
    defs.catalog()
    bridge = h.stream_bridge(stage)
    _, wall, ops, tables = measured(h, bridge.drain_all)
    n = len(batch)
    internal = bridge.bridge.delivered - n
    summary = cost(ops, n)
    handler = bridge.handler_seconds
    contacts_written = tables.get(stage.created["ContactsTable"], TableItems())
    moves = sum(v.requests for v in _moves(ops))
    reloads = {k: v for k, v in ops.items() if k[1] == "definitions" and k[0] in ("GetItem", "Query")}
    steady = cost({k: v for k, v in ops.items() if k not in reloads}, n)
    events_written = tables.get(stage.created["EventsTable"], TableItems())
    result = {
        "segments": n_segments, "contacts": contacts, "history": history, "events": n,
        "internal_events": internal, "failed_records": bridge.failed_items,
        "segments_read_per_event": sum(touched) / n, "segments_read_max": max(touched),
        "seconds": wall, "handler_seconds": handler, "handler_ms_per_event": 1000 * handler / n,
        "dynamodb_ms_per_event": 1000 * summary["dynamodb_seconds"] / n,
        "app_ms_per_event": 1000 * (handler - summary["dynamodb_seconds"]) / n,
        "membership_moves": moves, "schedule_puts": _count(ops, "PutItem", "schedule"),
        "membership_moves_failed": sum(v.errors for v in _moves(ops)),
        "internal_event_writes": events_written.count, "internal_events_distinct": len(events_written.by_key),
        "without_catalog_reloads": {k: steady[k] for k in ("read_requests_per_event", "write_requests_per_event",
                                                          "rru_per_event", "wru_per_event")},
        "catalog_reloads": _count(ops, "Query", "definitions"),
        "contact_item_bytes_written": contacts_written.summary(),
        "define_seconds": define_seconds, "seeded": written,
        "transitions": len(events_written.by_key), "seed_rechecks": seeded.rechecks,
        "per_table": by_table(ops, n),
        **{k: summary[k] for k in ("read_requests_per_event", "write_requests_per_event", "rru_per_event",
                                   "wru_per_event", "reported_cu_per_event")},
    }
    outboxes = stored_outboxes([c.id for c in seeded.contacts])
    result["stored_outbox"] = outboxes
    result["contact_document"] = core.contact_breakdown([c.id for c in seeded.contacts[:50]])
    result["catalog_load"] = catalog_load(h)
    result["idle_jobs"] = idle_jobs(h)
    result["add_one_segment"] = add_one_segment(h)
    return result


def stored_outboxes(contact_ids: list[str]) -> dict:
    """Effects left in the stored contact items (they are published again at the next write)."""
    from chalicelib.entrypoints import runtime

    repo = runtime.services().contact_repository
    lengths, sizes = [], []
    for contact_id in contact_ids:
        contact = repo.get(contact_id)
        if contact is not None:
            lengths.append(len(contact.outbox))
            sizes.append(len(json.dumps(contact.outbox, separators=(",", ":"))))
    n = max(1, len(lengths))
    return {"contacts": len(lengths), "non_empty": sum(1 for x in lengths if x), "mean_entries": sum(lengths) / n,
            "max_entries": max(lengths, default=0), "mean_json_bytes": sum(sizes) / n}


def outbox_rounds(h: Harness, contacts: int, rounds: int, history: int, seed: int) -> dict:
    """One event per contact per round, each contact at most once per stream batch (as when
    a batch holds many people): what each write re-publishes as rounds go by."""
    from bench import run as core
    from chalicelib.entrypoints import runtime
    from chalicelib.services.segmentation import ProfileRules

    stage = h.use_stage("outbox")
    define_segments(segment_documents(10), backfilled=True)
    defs = runtime.services().definitions
    catalog = defs.catalog()
    rules = ProfileRules(lambda: catalog, counter_days=COUNTER_DAYS)
    wl = Workload(seed)
    now = datetime.now(timezone.utc)
    seeded = build_shop_profiles(wl, contacts, history, rules, now, tag="ob")
    write_profiles(seeded, after=now)
    ids = [c.id for c in seeded.contacts]
    bridge = h.stream_bridge(stage)
    rows = []
    for number in range(1, rounds + 1):
        batch = [wl.track(p["anonymous_id"], p["user_id"]) for p in seeded.people]
        core.append_events(batch)
        defs.invalidate()
        defs.catalog()
        _, seconds, ops, tables = measured(h, bridge.drain_all)
        n = len(batch)
        tx = _moves(ops)
        written = tables.get(stage.created["EventsTable"], TableItems())
        c = cost(ops, n)
        rows.append({"round": number, "events": n, "seconds": seconds,
                     "membership_moves": sum(v.requests for v in tx), "failed_moves": sum(v.errors for v in tx),
                     "internal_event_writes": written.count,
                     "schedule_puts": _count(ops, "PutItem", "schedule"),
                     "rru_per_event": c["rru_per_event"], "wru_per_event": c["wru_per_event"],
                     "writes_per_event": c["write_requests_per_event"],
                     "contact_item_bytes": tables.get(stage.created["ContactsTable"], TableItems()).summary(),
                     "stored_outbox": stored_outboxes(ids)})
    return {"contacts": contacts, "history": history, "rounds": rows}


def burst_run(h: Harness, contacts: int, burst: int, history: int, seed: int) -> dict:
    """Each contact browses `burst` pages in a row (a visit), so a stream batch of 100 holds
    bursts of one contact's events: what applying them in memory and writing once saves."""
    from bench import run as core
    from chalicelib.entrypoints import runtime
    from chalicelib.services.segmentation import ProfileRules

    stage = h.use_stage("burst")
    define_segments(segment_documents(10), backfilled=True)
    defs = runtime.services().definitions
    catalog = defs.catalog()
    rules = ProfileRules(lambda: catalog, counter_days=COUNTER_DAYS)
    wl = Workload(seed)
    now = datetime.now(timezone.utc)
    seeded = build_shop_profiles(wl, contacts, history, rules, now, tag="burst")
    write_profiles(seeded, after=now)
    batch = [wl.page(p["anonymous_id"], p["user_id"]) for p in seeded.people for _ in range(burst)]
    core.append_events(batch)
    defs.invalidate()
    defs.catalog()
    bridge = h.stream_bridge(stage)
    _, seconds, ops, tables = measured(h, bridge.drain_all)
    n = len(batch)
    c = cost(ops, n)
    return {"contacts": contacts, "burst": burst, "events": n, "seconds": seconds,
            "contact_writes": _count(ops, "PutItem", "contacts"),
            "rru_per_event": c["rru_per_event"], "wru_per_event": c["wru_per_event"],
            "reads_per_event": c["read_requests_per_event"], "writes_per_event": c["write_requests_per_event"],
            "per_table": by_table(ops, n)}


def catalog_load(h: Harness, repeats: int = 3) -> dict:
    """What a cold container (or a cache expiry) pays to load and index the catalog."""
    from chalicelib.entrypoints import runtime

    defs = runtime.services().definitions
    runs = []
    for _ in range(repeats):
        defs.invalidate()
        catalog, seconds, ops, _ = measured(h, defs.catalog)
        dynamo = sum(s.seconds for s in ops.values())
        runs.append({"seconds": seconds, "dynamodb_seconds": dynamo, "parse_seconds": seconds - dynamo,
                     "requests": sum(s.requests for s in ops.values()), "rru": sum(s.rru for s in ops.values()),
                     "bytes_read": sum(s.bytes_read for s in ops.values()), "segments": len(catalog.segments)})
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "median_seconds": statistics.median(r["seconds"] for r in runs),
            "median_parse_seconds": statistics.median(r["parse_seconds"] for r in runs), "repeats": repeats}


def idle_jobs(h: Harness) -> dict:
    """The scheduled segment_jobs run (recheck, then back-fills) with nothing to do."""
    from chalicelib.entrypoints import runtime

    jobs = runtime.services().segment_jobs
    out = {}
    for name, fn in (("recheck_due", jobs.recheck_due), ("run_backfills", jobs.run_backfills)):
        result, seconds, ops, _ = measured(h, fn)
        c = cost(ops, 1)
        out[name] = {"seconds": seconds, "read_requests": c["read_requests"], "write_requests": c["write_requests"],
                     "rru": c["rru"], "wru": c["wru"], "result": result if name == "recheck_due" else len(result),
                     "per_table": by_table(ops, 1)}
    return out


def evaluation_cpu(keep: dict, counts: tuple[int, ...], repeats: int = 3) -> list[dict]:
    """The stream handler's segment work alone (ProfileRules.on_event), in process, no
    DynamoDB: the same contacts and events against catalogs of each size."""
    from chalicelib.domain.contact import Contact, apply_event, counter_name
    from chalicelib.services.catalog import build_catalog
    from chalicelib.services.segmentation import ProfileRules

    rows = []
    now = datetime.now(timezone.utc)
    events = []
    for raw in keep["events"]:
        event = dict(raw)
        event["receivedAt"] = event["timestamp"]
        events.append(event)
    owner = {p["user_id"]: p["contact_id"] for p in keep["people"]}
    for count in counts:
        documents = segment_documents(count)
        started = time.perf_counter()
        catalog = build_catalog([{"kind": "segment", "id": d["id"], "version": 1, "document": d}
                                 for d in documents])
        build = time.perf_counter() - started
        rules = ProfileRules(lambda catalog=catalog: catalog, counter_days=COUNTER_DAYS)
        timings = []
        for _ in range(repeats):
            contacts = {cid: Contact.from_document(cid, json.loads(json.dumps(doc)), 1, None)
                        for cid, doc in keep["contacts"]}
            spent = 0.0
            for event in events:
                contact = contacts[owner[event["userId"]]]
                if not apply_event(contact, event, COUNTER_DAYS):
                    continue
                started = time.perf_counter()
                rules.on_event(contact, event, now)
                spent += time.perf_counter() - started
                contact.outbox.clear()
            timings.append(spent)
        touched = [len(catalog.index.affected_by_event(counter_name(e))) for e in events]
        rows.append({"segments": count, "catalog_build_seconds": build,
                     "on_event_us": 1e6 * min(timings) / len(events),
                     "segments_read_per_event": sum(touched) / len(events)})
    return rows


# -- b) recheck ------------------------------------------------------------------------

RECHECK_AT = datetime(2026, 11, 22, 18, 0, tzinfo=timezone.utc)
PREVIOUS_RUN = RECHECK_AT - timedelta(hours=6)  # what was due before this was done then


def build_recheck_profiles(wl: Workload, contacts: int, flips: int, stale: int, history: int, rules) -> Seeded:
    """`flips` contacts whose last order turns 60 days old between the previous run and
    RECHECK_AT (full browsing history); `stale` contacts that ordered then too but again
    since (their older recheck entry is stale); everyone else (identify + one order, no
    browsing history: they are never read) has the order turning 60 days old later."""
    seeded = Seeded()
    window = (RECHECK_AT - PREVIOUS_RUN).total_seconds()
    for i in range(contacts):
        created = RECHECK_AT - timedelta(days=150, seconds=contacts - i)
        contact, person = new_contact(wl, created, "rc", i)
        signup = stamped(wl.identify(person["user_id"], person["anonymous_id"], person["email"], when=created),
                         created)
        events = [(signup, created)]
        if i < flips + stale:
            due = RECHECK_AT - timedelta(seconds=wl.rng.uniform(0, window - 60))
            orders = [due - timedelta(days=60)]
            if i >= flips:
                orders.append(RECHECK_AT - timedelta(seconds=wl.rng.uniform(86400, 50 * 86400)))
            events += browsing_history(wl, person, history, 90, PREVIOUS_RUN, orders=False)
        else:
            span = (PREVIOUS_RUN - (RECHECK_AT - timedelta(days=60))).total_seconds()
            orders = [RECHECK_AT - timedelta(days=60) + timedelta(seconds=wl.rng.uniform(60, span))]
        for when in orders:
            product = wl.rng.choice(PRODUCTS)
            raw = wl.track(person["anonymous_id"], person["user_id"], name="Order Completed")
            raw["properties"] = wl.properties("Order Completed", product)
            events.append((stamped(raw, when), when))
        events.sort(key=lambda pair: pair[1])
        fold(contact, events, rules, seeded, PREVIOUS_RUN)
        seeded.contacts.append(contact)
        seeded.people.append(person)
    return seeded


def recheck_run(h: Harness, contacts: int, flips: int, stale: int, history: int, seed: int,
                follow_up: bool = True) -> dict:
    from chalicelib.entrypoints import runtime
    from chalicelib.services.segmentation import ProfileRules

    stage = h.use_stage(f"recheck{contacts}-{len(h.stages)}")
    runtime.use_clock(FixedClock(PREVIOUS_RUN))
    define_segments([LAPSED], backfilled=True)
    defs = runtime.services().definitions
    catalog = defs.catalog()
    rules = ProfileRules(lambda: catalog, counter_days=COUNTER_DAYS)
    started = time.perf_counter()
    seeded = build_recheck_profiles(Workload(seed), contacts, flips, stale, history, rules)
    built = time.perf_counter() - started
    started = time.perf_counter()
    # No identity items: nothing here looks a contact up by identifier (the job reads
    # contacts by id, and the events it emits name their contact).
    written = write_profiles(seeded, after=PREVIOUS_RUN, identities=False)
    write_seconds = time.perf_counter() - started
    del seeded

    runtime.use_clock(FixedClock(RECHECK_AT))
    jobs = runtime.services().segment_jobs
    calls = []
    h.recorder.reset()
    begun = time.perf_counter()
    while True:
        t = time.perf_counter()
        result = jobs.recheck_due()
        calls.append({**result, "seconds": time.perf_counter() - t})
        if result["checked"] == 0:
            break
    seconds = sum(c["seconds"] for c in calls[:-1]) if len(calls) > 1 else calls[0]["seconds"]
    ops, tables = h.recorder.snapshot()
    written_contacts = tables.get(stage.created["ContactsTable"], TableItems())
    total = time.perf_counter() - begun
    checked = sum(c["checked"] for c in calls)
    changed = sum(c["changed"] for c in calls)
    c = cost(ops, max(1, checked))
    contact_get_requests = _count(ops, "GetItem", "contacts")
    contacts_scanned = _count(ops, "Scan", "contacts")

    follow = None
    if follow_up:
        bridge = h.stream_bridge(stage)
        _, follow_seconds, follow_ops, follow_tables = measured(h, bridge.drain_all)
        f = cost(follow_ops, max(1, changed))
        rewritten = follow_tables.get(stage.created["EventsTable"], TableItems())
        follow = {"records": bridge.bridge.delivered, "seconds": follow_seconds,
                  "handler_seconds": bridge.handler_seconds,
                  "read_requests": f["read_requests"], "write_requests": f["write_requests"],
                  "rru": f["rru"], "wru": f["wru"], "event_rewrites": rewritten.count,
                  "failed_moves": sum(v.errors for v in _moves(follow_ops)),
                  "per_table": by_table(follow_ops, max(1, changed))}
    return {
        "contacts": contacts, "flips_seeded": flips, "stale_seeded": stale, "history": history,
        "seeded": written, "seed_seconds": built + write_seconds,
        "contact_item_bytes_written": written_contacts.summary(),
        "calls": calls, "checked": checked, "changed": changed, "seconds": seconds, "seconds_with_empty_call": total,
        "contact_get_requests": contact_get_requests, "contact_scans": contacts_scanned,
        "read_requests": c["read_requests"], "write_requests": c["write_requests"], "rru": c["rru"], "wru": c["wru"],
        "dynamodb_seconds": c["dynamodb_seconds"], "per_table": by_table(ops, max(1, changed)),
        "empty_call": calls[-1],
        "follow_up": follow,
    }


# -- c) back-fill and preview -------------------------------------------------------------

def build_backfill_profiles(wl: Workload, contacts: int, history: int, rules, now: datetime) -> Seeded:
    """Known contacts whose `history` events are stored in the events table (normalised and
    keyed as ingest stores them) and folded into their profiles."""
    from chalicelib.domain.events import StampContext, event_key, normalise_event, retention_ttl
    from chalicelib.services.ports import StoredEvent

    seeded = Seeded()
    for i in range(contacts):
        created = now - timedelta(days=90, seconds=contacts - i)
        contact, person = new_contact(wl, created, "bf", i)
        raws = [(stamped(wl.identify(person["user_id"], person["anonymous_id"], person["email"], when=created),
                         created), created)]
        raws += browsing_history(wl, person, history, 60, now)
        events = []
        for raw, when in raws:
            raw.pop("receivedAt", None)
            event = normalise_event(raw, StampContext(received_at=when, source="default"))
            pk, sk = event_key(event)
            seeded.stored_events.append(StoredEvent(partition=pk, sort=sk, body=event,
                                                    ttl=retention_ttl(when, 395)))
            events.append((event, when))
        fold(contact, events, rules, seeded, now)
        seeded.contacts.append(contact)
        seeded.people.append(person)
    return seeded


def backfill_suite(h: Harness, contacts: int, history: int, seed: int) -> dict:
    from chalicelib.entrypoints import runtime
    from chalicelib.services.segmentation import ProfileRules

    stage = h.use_stage("backfill")
    now = RECHECK_AT
    runtime.use_clock(FixedClock(now))
    define_segments(HOT_SEGMENTS, backfilled=True)
    defs = runtime.services().definitions
    catalog = defs.catalog()
    rules = ProfileRules(lambda: catalog, counter_days=COUNTER_DAYS)
    started = time.perf_counter()
    seeded = build_backfill_profiles(Workload(seed), contacts, history, rules, now)
    written = write_profiles(seeded, after=now)
    seed_seconds = time.perf_counter() - started
    del seeded
    jobs = runtime.services().segment_jobs

    out = {"contacts": contacts, "history": history, "seeded": written, "seed_seconds": seed_seconds, "runs": []}
    for document, label in ((PREMIUM, "filtered event condition (history recounted)"),
                            (RECENT_BUYERS, "unfiltered event condition (profile counters)")):
        preview, p_seconds, p_ops, _ = measured(h, lambda document=document: jobs.preview(document))
        pc = cost(p_ops, max(1, preview["scanned"]))
        defs.put("segment", document["id"], document)

        def backfill(segment_id=document["id"]):
            calls = []
            while True:
                t = time.perf_counter()
                reports = [r for r in jobs.run_backfills() if r["id"] == segment_id]
                calls.append(time.perf_counter() - t)
                if not reports or reports[0]["status"] == "done":
                    return calls, reports

        (calls, reports), b_seconds, b_ops, b_tables = measured(h, backfill)
        scanned = reports[0]["scanned"] if reports else 0
        bc = cost(b_ops, max(1, scanned))
        size = runtime.services().membership_store.size(document["id"])
        out["runs"].append({
            "segment": document["id"], "label": label, "conditions": document["conditions"],
            "preview": {"seconds": p_seconds, "scanned": preview["scanned"], "size": preview["size"],
                        "complete": preview["complete"], "contacts_per_s": preview["scanned"] / p_seconds,
                        "read_requests": pc["read_requests"], "rru": pc["rru"], "write_requests": pc["write_requests"],
                        "dynamodb_seconds": pc["dynamodb_seconds"], "per_table": by_table(p_ops, max(1, preview["scanned"]))},
            "backfill": {"seconds": b_seconds, "calls": len(calls), "scanned": scanned, "members": size,
                         "contacts_per_s": scanned / b_seconds if b_seconds else 0.0,
                         "read_requests": bc["read_requests"], "write_requests": bc["write_requests"],
                         "rru": bc["rru"], "wru": bc["wru"], "dynamodb_seconds": bc["dynamodb_seconds"],
                         "contact_item_bytes_written": b_tables.get(stage.created["ContactsTable"],
                                                                    TableItems()).summary(),
                         "per_table": by_table(b_ops, max(1, scanned))},
        })
    return out


# -- the suite ------------------------------------------------------------------------------

def run_suite(h: Harness, args, say) -> dict:
    out: dict = {"per_event": [], "recheck": []}
    keep: dict = {}
    for count in args.segment_counts:
        say(f"segments: per event with {count} segments…")
        out["per_event"].append(per_event_run(h, count, args.seg_contacts, args.seg_events, args.history,
                                              args.seed, keep))
    if args.outbox_rounds > 0:
        say(f"segments: {args.outbox_rounds} rounds of one event per contact…")
        out["outbox"] = outbox_rounds(h, 100, args.outbox_rounds, args.history, args.seed)
        say("segments: page-view bursts (5 per contact in a row)…")
        out["burst"] = burst_run(h, 100, 5, args.history, args.seed)
    say("segments: evaluation alone, in process…")
    out["evaluation_cpu"] = evaluation_cpu(keep, tuple(sorted(set(args.segment_counts) | {10_000})))
    followed = False
    for contacts, stale in ((args.recheck_small, 0), (args.recheck_contacts, 0), (args.recheck_small, args.recheck_due)):
        if contacts <= 0:
            continue
        say(f"segments: recheck over {contacts} contacts ({args.recheck_due} due to flip"
            f"{f', {stale} stale entries' if stale else ''})…")
        out["recheck"].append(recheck_run(h, contacts, args.recheck_due, stale, args.history, args.seed,
                                          follow_up=not followed))
        followed = True
    if args.backfill_contacts > 0:
        say(f"segments: preview and back-fill over {args.backfill_contacts} contacts…")
        out["backfill"] = backfill_suite(h, args.backfill_contacts, args.backfill_history, args.seed)
    return out


# -- report ---------------------------------------------------------------------------------

def render(seg: dict) -> list[str]:
    lines = ["", "4. Segments: per event (StreamBridge -> app.process_events; same contacts and events per row)"]
    b = seg.get("burst")
    if b:
        lines.append(f"   bursts: {b['contacts']} contacts x {b['burst']} page views in a row = {b['events']} events: "
                     f"{b['contact_writes']} contact writes, {b['writes_per_event']:.2f} writes/ev, "
                     f"{b['wru_per_event']:.2f} WRU/ev, {b['reads_per_event']:.2f} reads/ev, {b['rru_per_event']:.2f} RRU/ev")
    head = (f"{'segments':>8} {'events':>6} {'seg/ev':>6} {'handler ms/ev':>13} {'app ms/ev':>9} {'ddb ms/ev':>9} "
            f"{'reads/ev':>8} {'writes/ev':>9} {'RRU/ev':>6} {'WRU/ev':>6} {'transitions':>11} {'reloads':>7}")
    lines += [head, "-" * len(head)]
    for r in seg.get("per_event", []):
        lines.append(f"{r['segments']:>8} {r['events']:>6} {r['segments_read_per_event']:>6.2f} "
                     f"{r['handler_ms_per_event']:>13.2f} {r['app_ms_per_event']:>9.2f} {r['dynamodb_ms_per_event']:>9.2f} "
                     f"{r['read_requests_per_event']:>8.2f} {r['write_requests_per_event']:>9.2f} "
                     f"{r['rru_per_event']:>6.2f} {r['wru_per_event']:>6.2f} {r['transitions']:>11} "
                     f"{r['catalog_reloads']:>7}")
    for r in seg.get("per_event", []):
        parts = [f"{t['op']} {t['table']} {t['per']:.3f} ({t['rru']:.2f}/{t['wru']:.2f}; {t['mean_ms']:.1f} ms)"
                 for t in r["per_table"]]
        lines.append(f"   {r['segments']:>5} segments, per event (RRU/WRU per event): " + "; ".join(parts))
        ob = r["stored_outbox"]
        wo = r["without_catalog_reloads"]
        lines.append(f"         membership moves {r['membership_moves']} of which {r['membership_moves_failed']} failed "
                     f"their condition (already done: re-published); internal-event writes "
                     f"{r['internal_event_writes']} for {r['internal_events_distinct']} distinct events; "
                     f"effects left in stored contacts: {ob['non_empty']} of {ob['contacts']}, "
                     f"{ob['mean_entries']:.2f} mean, {ob['max_entries']} max, {ob['mean_json_bytes']:.0f} B JSON mean; "
                     f"without catalog reloads: {wo['read_requests_per_event']:.3f} reads, "
                     f"{wo['write_requests_per_event']:.3f} writes, {wo['rru_per_event']:.3f} RRU, "
                     f"{wo['wru_per_event']:.3f} WRU per event")
        cw = r["contact_item_bytes_written"]
        lines.append(f"         contact item written {cw.get('mean_bytes', 0)} B mean, {cw.get('p50_bytes', 0)} B p50, "
                     f"{cw.get('max_bytes', 0)} B max, {cw.get('over_1kb', 0)} of {cw.get('items', 0)} over 1 KB; "
                     f"{r['contacts']} contacts x {r['history']} past events; defining the segments took "
                     f"{r['define_seconds']:.1f} s; failed records {r['failed_records']}")
    ob = seg.get("outbox")
    if ob:
        lines += ["", f"   one event per contact per round ({ob['contacts']} contacts, each at most once per batch)"]
        head = (f"   {'round':>5} {'moves':>5} {'failed':>6} {'event writes':>12} {'sched puts':>10} {'writes/ev':>9} "
                f"{'RRU/ev':>6} {'WRU/ev':>6} {'contact B':>9} {'stored effects mean/max':>23}")
        lines += [head, "   " + "-" * (len(head) - 3)]
        for r in ob["rounds"]:
            lines.append(f"   {r['round']:>5} {r['membership_moves']:>5} {r['failed_moves']:>6} "
                         f"{r['internal_event_writes']:>12} {r['schedule_puts']:>10} {r['writes_per_event']:>9.2f} "
                         f"{r['rru_per_event']:>6.2f} {r['wru_per_event']:>6.2f} "
                         f"{r['contact_item_bytes'].get('mean_bytes', 0):>9} "
                         f"{r['stored_outbox']['mean_entries']:>18.2f}/{r['stored_outbox']['max_entries']:<4}")
    lines += ["", "   segment work alone (ProfileRules.on_event, in process, no DynamoDB)"]
    head = f"   {'segments':>8} {'catalog build s':>15} {'on_event us/ev':>14} {'segments read/ev':>16}"
    lines += [head, "   " + "-" * (len(head) - 3)]
    for r in seg.get("evaluation_cpu", []):
        lines.append(f"   {r['segments']:>8} {r['catalog_build_seconds']:>15.3f} {r['on_event_us']:>14.1f} "
                     f"{r['segments_read_per_event']:>16.2f}")
    lines += ["", "   catalog load (cold container or cache expiry) and the scheduled job with nothing to do"]
    head = (f"   {'segments':>8} {'load s':>7} {'of which ddb':>12} {'reqs':>5} {'RRU':>6} {'KB read':>7} "
            f"{'recheck reqs/RRU/WRU':>20} {'backfills reqs/RRU/WRU, s':>26} {'put one: s, reqs, RRU':>22}")
    lines += [head, "   " + "-" * (len(head) - 3)]
    for r in seg.get("per_event", []):
        cl, j = r["catalog_load"], r["idle_jobs"]
        rc, bf = j["recheck_due"], j["run_backfills"]
        lines.append(f"   {r['segments']:>8} {cl['seconds']:>7.3f} {cl['dynamodb_seconds']:>12.3f} {cl['requests']:>5} "
                     f"{cl['rru']:>6.1f} {cl['bytes_read'] / 1024:>7.0f} "
                     f"{rc['read_requests'] + rc['write_requests']:>7}/{rc['rru']:.1f}/{rc['wru']:.0f}{'':>6} "
                     f"{bf['read_requests'] + bf['write_requests']:>9}/{bf['rru']:.1f}/{bf['wru']:.0f}, "
                     f"{bf['seconds']:.2f}   {r['add_one_segment']['seconds']:.3f}, "
                     f"{r['add_one_segment']['read_requests'] + r['add_one_segment']['write_requests']}, "
                     f"{r['add_one_segment']['rru']:.1f}")

    lines += ["", "5. Segments: recheck job (SegmentJobs.recheck_due at a fixed clock, default limit 1,000 per call)"]
    head = (f"{'contacts':>8} {'due':>5} {'stale':>5} {'calls':>5} {'checked':>7} {'changed':>7} {'seconds':>7} "
            f"{'contact reads':>13} {'reads':>6} {'writes':>6} {'RRU':>7} {'WRU':>7} {'RRU/flip':>8} {'WRU/flip':>8}")
    lines += [head, "-" * len(head)]
    for r in seg.get("recheck", []):
        lines.append(f"{r['contacts']:>8} {r['flips_seeded']:>5} {r['stale_seeded']:>5} {len(r['calls']):>5} "
                     f"{r['checked']:>7} {r['changed']:>7} {r['seconds']:>7.1f} {r['contact_get_requests']:>13} "
                     f"{r['read_requests']:>6} {r['write_requests']:>6} {r['rru']:>7.1f} {r['wru']:>7.0f} "
                     f"{r['rru'] / max(1, r['changed']):>8.2f} {r['wru'] / max(1, r['changed']):>8.2f}")
    for r in seg.get("recheck", []):
        parts = [f"{t['op']} {t['table']} {t['requests']} ({t['mean_ms']:.1f} ms)" for t in r["per_table"]]
        lines.append(f"   {r['contacts']} contacts: " + "; ".join(parts))
        fu = r["follow_up"]
        if fu:
            lines.append(f"      then the stream ({fu['records']} records: the Segment Entered events and their "
                         f"re-writes): {fu['read_requests']} reads, {fu['write_requests']} writes, {fu['rru']:.0f} RRU, "
                         f"{fu['wru']:.0f} WRU, {fu['failed_moves']} membership moves re-published, "
                         f"{fu['handler_seconds']:.1f} s in the handler")
        lines.append(f"      contact item written {r['contact_item_bytes_written'].get('mean_bytes', 0)} B mean; "
                     f"empty call after: {r['empty_call']['seconds'] * 1000:.0f} ms; seeding took "
                     f"{r['seed_seconds']:.0f} s ({r['seeded']['contacts']} contacts, "
                     f"{r['seeded']['schedule_entries']} recheck entries)")

    bf = seg.get("backfill")
    if bf:
        lines += ["", (f"6. Segments: a new segment over {bf['contacts']} existing contacts "
                       f"({bf['history']} stored events each): preview, then back-fill")]
        head = (f"{'segment':<18} {'job':<9} {'contacts':>8} {'members':>7} {'seconds':>7} {'contacts/s':>10} "
                f"{'reads/c':>7} {'writes/c':>8} {'RRU/c':>6} {'WRU/c':>6} {'ddb share':>9}")
        lines += [head, "-" * len(head)]
        for run in bf["runs"]:
            for job in ("preview", "backfill"):
                j = run[job]
                n = max(1, j["scanned"])
                members = j.get("size", j.get("members"))
                lines.append(f"{run['segment']:<18} {job:<9} {j['scanned']:>8} {members:>7} {j['seconds']:>7.1f} "
                             f"{j['contacts_per_s']:>10.0f} {j['read_requests'] / n:>7.2f} "
                             f"{j.get('write_requests', 0) / n:>8.2f} {j['rru'] / n:>6.2f} {j.get('wru', 0) / n:>6.2f} "
                             f"{j['dynamodb_seconds'] / j['seconds']:>9.0%}")
        for run in bf["runs"]:
            for job in ("preview", "backfill"):
                parts = [f"{t['op']} {t['table']} {t['per']:.2f} ({t['mean_ms']:.1f} ms)" for t in run[job]["per_table"]]
                j = run[job]
                app_ms = 1000 * (j["seconds"] - j["dynamodb_seconds"]) / max(1, j["scanned"])
                lines.append(f"   {run['segment']} {job}, requests per contact: " + "; ".join(parts)
                             + f"; app time (job minus DynamoDB calls) {app_ms:.2f} ms/contact")
            lines.append(f"   {run['segment']}: {run['label']}; preview complete: {run['preview']['complete']}; "
                         f"back-fill in {run['backfill']['calls']} call(s)")
    return lines


def verdicts(seg: dict) -> list[str]:
    out = []
    rows = sorted(seg.get("per_event", []), key=lambda r: r["segments"])
    if len(rows) >= 2:
        low, high = rows[0], rows[-1]
        keys = ("read_requests_per_event", "write_requests_per_event", "rru_per_event", "wru_per_event")
        lo, hi = low["without_catalog_reloads"], high["without_catalog_reloads"]
        flat = all(abs(hi[k] - lo[k]) <= max(0.02, 0.02 * lo[k]) for k in keys)
        out.append(f"{'HELD  ' if flat else 'FAILED'} per-event DynamoDB cost flat from {low['segments']} to "
                   f"{high['segments']} segments (within 2% or 0.02; catalog reloads apart): "
                   + ", ".join(f"{k.replace('_per_event', '').replace('_requests', ' reqs')} "
                               f"{lo[k]:.3f} -> {hi[k]:.3f}" for k in keys))
    rounds = seg.get("outbox", {}).get("rounds", [])
    if len(rounds) >= 2:
        first, last = rounds[0], rounds[-1]

        def share(r):
            return r["failed_moves"] / r["membership_moves"] if r["membership_moves"] else 0.0

        def stored(r):
            return r["stored_outbox"]["mean_entries"]

        # Accumulation shows as effects piling up in the stored contacts and as a growing
        # share of membership moves that were already done (a second publication is 1/2).
        grows = stored(last) > stored(first) + 0.5 or share(last) > 0.6
        wru = [r["wru_per_event"] for r in rounds]
        out.append(f"{'FAILED' if grows else 'HELD  '} per-event cost flat as a contact's events go by "
                   f"({len(rounds)} rounds of one event per contact): WRU/event {min(wru):.2f}-{max(wru):.2f}, "
                   f"membership moves already done {share(first):.0%} -> {share(last):.0%}, effects left in "
                   f"each stored contact {stored(first):.1f} -> {stored(last):.1f}")
    cpu = sorted(seg.get("evaluation_cpu", []), key=lambda r: r["segments"])
    largest = max((r["segments"] for r in rows), default=0)
    if len(cpu) >= 2:
        low = cpu[0]
        high = next((r for r in cpu if r["segments"] == largest), cpu[-1])
        ratio = high["on_event_us"] / low["on_event_us"] if low["on_event_us"] else 0.0
        out.append(f"{'HELD  ' if ratio <= 1.25 else 'FAILED'} segment work per event (ProfileRules.on_event, in "
                   f"process) flat from {low['segments']} to {high['segments']} segments (at most +25%): "
                   f"{low['on_event_us']:.0f} -> {high['on_event_us']:.0f} us/event; "
                   + ", ".join(f"{r['segments']}: {r['on_event_us']:.0f} us" for r in cpu if r["segments"] > largest))
    for r in seg.get("recheck", []):
        due = r["flips_seeded"] + r["stale_seeded"]
        ok = r["checked"] == due and r["contact_get_requests"] <= due + r["changed"] and r["contact_scans"] == 0
        out.append(f"{'HELD  ' if ok else 'FAILED'} recheck over {r['contacts']} contacts reads only the due ones: "
                   f"{r['checked']} checked ({due} due), {r['contact_get_requests']} contact reads, "
                   f"{r['contact_scans']} scans, {r['changed']} flipped, {r['seconds']:.1f} s")
    return out
