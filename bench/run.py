"""Mercurio's benchmark: ingest and stream-processing throughput, segmentation, with DynamoDB
request units.

    make bench                                   # the default run (core suite), on moto server
    .venv/bin/python -m bench.run --suite segments   # segmentation (bench/segments.py), about 7 minutes
    .venv/bin/python -m bench.run --suite journeys   # journeys (bench/journeys.py), about 4 minutes
    .venv/bin/python -m bench.run --suite all    # every suite
    .venv/bin/python -m bench.run --events 5000 --json out/bench.json
    .venv/bin/python -m bench.run --target aws   # real DynamoDB: creates and deletes bench-* tables

Two kinds of capacity numbers are printed, and they are not the same thing:

* "computed" RRU/WRU: DynamoDB's documented sizing rules applied to the items each request
  actually read or wrote (captured on the app's own DynamoDB clients). This is what
  on-demand DynamoDB bills, and is the number the budgets are checked against.
* "reported" CU: the ConsumedCapacity the endpoint returned. Real on AWS; on moto it is a
  constant per call (1.0 per write call, 0.5 per read call), whatever the item size.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.harness import ROOT, WRITE_KEY, Harness, Stage
from bench.units import OpStats, TableItems
from bench.workload import Workload

READ_OPS = ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems")
WRITE_OPS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
BUDGET_STEADY_READS = 2.0
BUDGET_STEADY_WRITES = 2.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]  # nearest rank


def compact_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_bytes(event: dict) -> int:
    """An event's size as the API measures it (compact JSON, UTF-8)."""
    return len(compact_json(event))


SIZE_BUCKETS = ((0, 768), (769, 896), (897, 1024), (1025, None))


def size_bucket(size: int) -> str:
    for low, high in SIZE_BUCKETS:
        if high is None or size <= high:
            return f"{low}-{high} B" if high is not None else f"> {low - 1} B"
    raise AssertionError(size)


def summarise_ops(ops: dict[tuple[str, str], OpStats], events: int) -> dict:
    """Totals per operation, and per operation and table, per event."""
    def row(s: OpStats) -> dict:
        return {
            "requests": s.requests, "requests_per_event": s.requests / events if events else 0.0,
            "errors": s.errors, "items_read": s.items_read, "items_written": s.items_written,
            "rru": s.rru, "wru": s.wru, "reported_cu": s.reported,
            "mean_ms": 1000 * s.seconds / s.requests if s.requests else 0.0,
        }

    by_op: dict[str, OpStats] = {}
    for (op, _), s in ops.items():
        by_op.setdefault(op, OpStats()).add(s)
    reads = sum(s.requests for op, s in by_op.items() if op in READ_OPS)
    writes = sum(s.requests for op, s in by_op.items() if op in WRITE_OPS)
    return {
        "per_op": {op: row(s) for op, s in sorted(by_op.items())},
        "per_op_table": {f"{op} {table}": row(s) for (op, table), s in sorted(ops.items())},
        "read_requests_per_event": reads / events if events else 0.0,
        "write_requests_per_event": writes / events if events else 0.0,
        "rru_per_event": sum(s.rru for s in by_op.values()) / events if events else 0.0,
        "wru_per_event": sum(s.wru for s in by_op.values()) / events if events else 0.0,
        "reported_cu_per_event": sum(s.reported for s in by_op.values()) / events if events else 0.0,
        "dynamodb_seconds": sum(s.seconds for s in by_op.values()),
    }


# -- ingest through the HTTP API --------------------------------------------------------

def post(url: str, body: bytes, content_type: str = "application/json") -> dict:
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type, "Authorization": auth})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def ingest_run(h: Harness, stage: Stage, name: str, path: str, requests: list[tuple[bytes, list[dict]]],
               clients: int, content_type: str) -> dict:
    """Send the prepared requests with the load generator; measure latency and request units."""
    sent = {e["messageId"]: event_bytes(e) for _, events in requests for e in events}
    with tempfile.TemporaryDirectory(prefix="mercurio-bench-") as tmp:
        bodies = Path(tmp) / "bodies.jsonl"
        with open(bodies, "w", encoding="utf-8") as handle:
            for body, _ in requests:
                handle.write(json.dumps(body.decode("utf-8")) + "\n")
        h.recorder.reset()
        process = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", "--url", h.api_url, "--path", path, "--bodies", str(bodies),
             "--clients", str(clients), "--write-key", WRITE_KEY, "--content-type", content_type],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{process.stderr[-3000:]}")
    load = json.loads(process.stdout)
    ops, tables = h.recorder.snapshot()
    events_table = stage.created["EventsTable"]
    stored: TableItems = tables.get(events_table, TableItems())
    n = load["accepted"]

    # Per event: its size as sent against the item written for it (matched on messageId).
    small = over = matched = 0
    overhead = []
    buckets: dict[str, dict] = {}
    for key, size in stored.by_key.items():
        message_id = json.loads(key)["sk"]["S"].split("#", 1)[1]
        if message_id not in sent:
            continue
        matched += 1
        overhead.append(size - sent[message_id])
        bucket = buckets.setdefault(size_bucket(sent[message_id]), {"events": 0, "stored_over_1kb": 0})
        bucket["events"] += 1
        bucket["stored_over_1kb"] += size > 1024
        if sent[message_id] <= 1024:
            small += 1
            over += size > 1024
    latencies = load["latencies_ms"]
    summary = summarise_ops(ops, n)
    sent_sizes = sorted(sent.values())
    return {
        "name": name, "path": path, "clients": clients, "requests": load["requests"],
        "events_per_request": len(requests[0][1]), "events_accepted": n, "statuses": load["statuses"],
        "problems": load["problems"], "seconds": load["elapsed_s"],
        "events_per_s": n / load["elapsed_s"] if load["elapsed_s"] else 0.0,
        "requests_per_s": load["requests"] / load["elapsed_s"] if load["elapsed_s"] else 0.0,
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "p99": percentile(latencies, 99), "max": max(latencies, default=0.0)},
        "event_bytes_sent": {"mean": round(sum(sent_sizes) / len(sent_sizes)), "p50": percentile(sent_sizes, 50),
                             "max": sent_sizes[-1], "at_most_1kb": sum(1 for s in sent_sizes if s <= 1024)},
        "event_item_bytes": stored.summary(),
        "item_overhead_bytes_mean": round(sum(overhead) / len(overhead)) if overhead else None,
        "events_not_written": len(sent) - matched,  # integrity: each event sent must be stored once
        "events_at_most_1kb_sent": small, "of_which_stored_over_1kb": over,
        "by_size_as_sent": {size_bucket(low): buckets[size_bucket(low)] for low, _ in SIZE_BUCKETS
                            if size_bucket(low) in buckets},
        **summary,
    }


def ingest_phase(h: Harness, wl: Workload, batch_events: int, batch_size: int, track_requests: int,
                 clients: int) -> list[dict]:
    stage = h.use_stage("ingest")
    h.start_api()
    visitors = [(wl.uuid(), f"user-{i:06d}" if wl.rng.random() < 0.3 else None)
                for i in range(max(10, batch_events // 20))]
    # Warm-up (imports, first connections): not measured.
    for _ in range(3):
        post(h.api_url + "/v1/batch", Workload.batch_body([wl.browsing(*wl.rng.choice(visitors)) for _ in range(5)]))

    def batches(count: int) -> list:
        out = []
        for _ in range(count):
            events = [wl.browsing(*wl.rng.choice(visitors)) for _ in range(batch_size)]
            out.append((Workload.batch_body(events), events))
        return out

    results = [
        ingest_run(h, stage, f"POST /v1/batch ({batch_size} ev), alone", "/v1/batch", batches(20), 1,
                   "text/plain"),
        ingest_run(h, stage, f"POST /v1/batch ({batch_size} ev)", "/v1/batch",
                   batches(max(1, batch_events // batch_size)), clients, "text/plain"),
    ]

    singles = []
    for _ in range(100 + track_requests):
        event = wl.track(*wl.rng.choice(visitors))
        singles.append((json.dumps(event, separators=(",", ":")).encode("utf-8"), [event]))
    results.append(ingest_run(h, stage, "POST /v1/track, alone", "/v1/track", singles[:100], 1,
                              "application/json"))
    results.append(ingest_run(h, stage, "POST /v1/track", "/v1/track", singles[100:], clients,
                              "application/json"))
    return results


# -- stream processing -------------------------------------------------------------------

def append_events(events: list[dict]) -> None:
    """Store events the way the API does (in process: this part is not what is measured)."""
    from chalicelib.entrypoints import runtime
    from chalicelib.services.ingest import TrackingRequest

    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    service = runtime.services().ingest
    for start in range(0, len(events), 100):
        chunk = events[start:start + 100]
        result = service.ingest(TrackingRequest(body=Workload.batch_body(chunk), content_type="application/json",
                                                authorization=auth))
        if result.accepted + result.duplicates != len(chunk):
            raise RuntimeError(f"events rejected while preparing the stream: {result.rejected[:3]}")


def seed_contacts(wl: Workload, count: int, history: int, days: int, created_days_ago: int,
                  known: bool, tag: str) -> list[dict]:
    """Contacts with a past, written straight to the tables (batch writes, not measured):
    a known customer has a userId, an email, its browser's anonymousId and `history` events;
    an anonymous visitor only its anonymousId and its few past events."""
    from chalicelib.entrypoints import runtime
    from chalicelib.domain.contact import Contact, apply_event
    from chalicelib.domain.events import iso

    repo = runtime.services().contact_repository
    now = datetime.now(timezone.utc)
    people = []
    with repo.Contact.batch_write() as contacts, repo.Identity.batch_write() as identities:
        for i in range(count):
            created = now - timedelta(days=created_days_ago, seconds=count - i)
            contact = Contact(id=uuid.UUID(int=wl.rng.getrandbits(128)).hex, created_at=iso(created))
            anon = wl.uuid()
            person = {"contact_id": contact.id, "anonymous_id": anon, "user_id": None, "email": None}
            contact.add_identifier(f"anon:{anon}")
            if known:
                person["user_id"] = f"{tag}-user-{i:06d}"
                person["email"] = f"{tag}.customer{i}@example.com"
                contact.add_identifier(f"user:{person['user_id']}")
                contact.add_identifier(f"email:{person['email']}")
                signup = wl.identify(person["user_id"], anon, person["email"], when=created)
                apply_event(contact, signup)
            wl.history(contact, anon, person["user_id"], history, days, now)
            item = repo._to_item(contact)
            item.version = 1
            contacts.save(item)
            for identifier in contact.identifiers:
                identities.save(repo.Identity(identifier, contact_id=contact.id))
            people.append(person)
    return people


def process_run(h: Harness, stage: Stage, name: str, events: list[dict], note: str) -> dict:
    append_events(events)
    bridge = h.stream_bridge(stage)
    h.recorder.reset()
    started = time.perf_counter()
    bridge.drain(len(events))
    wall = time.perf_counter() - started
    ops, tables = h.recorder.snapshot()
    n = len(events)
    summary = summarise_ops(ops, n)
    contacts = tables.get(stage.created["ContactsTable"], TableItems())
    return {
        "name": name, "note": note, "events": n, "seconds": wall,
        "events_per_s": n / wall if wall else 0.0,
        "handler_seconds": bridge.handler_seconds,
        "handler_events_per_s": n / bridge.handler_seconds if bridge.handler_seconds else 0.0,
        "stream_batches": bridge.batches, "failed_records": bridge.failed_items,
        "dropped_records": len(bridge.bridge.dropped),
        "contact_item_bytes_written": contacts.summary(),
        **summary,
    }


def contact_breakdown(contact_ids: list[str]) -> dict:
    """Where a contact document's bytes go: each field as compact JSON, and the whole document
    as compact JSON and zlib-compressed (the item actually written is measured separately)."""
    from chalicelib.entrypoints import runtime

    repo = runtime.services().contact_repository
    fields: dict[str, list[int]] = {}
    zipped: dict[str, list[int]] = {}
    compact: list[int] = []
    deflated: list[int] = []
    for contact_id in contact_ids:
        contact = repo.get(contact_id)
        if contact is None:
            continue
        doc = contact.to_document()
        compact.append(len(compact_json(doc)))
        deflated.append(len(zlib.compress(compact_json(doc), 6)))
        for name, value in doc.items():
            fields.setdefault(name, []).append(len(compact_json({name: value})) - 2)
        # What each large part adds once compressed: the document with and without it.
        whole = len(zlib.compress(compact_json(doc), 6))
        parts = {name: {k: v for k, v in doc.items() if k != name}
                 for name, value in doc.items() if len(compact_json(value)) > 100}
        for sub in ("days", "recent"):
            parts[f"counters.{sub}"] = {**doc, "counters": {n: {k: v for k, v in c.items() if k != sub}
                                                            for n, c in (doc.get("counters") or {}).items()}}
        for name, without in parts.items():
            zipped.setdefault(name, []).append(whole - len(zlib.compress(compact_json(without), 6)))
        fields.setdefault("recent (entries)", []).append(len(contact.recent))
        fields.setdefault("counters days (entries)", []).append(
            sum(len(c.get("days", {})) for c in contact.counters.values()))
    mean = lambda xs: round(sum(xs) / len(xs)) if xs else 0  # noqa: E731
    return {"contacts": len(compact), "doc_bytes_compact": mean(compact), "doc_bytes_compact_zlib": mean(deflated),
            "fields": {k: mean(v) for k, v in sorted(fields.items(), key=lambda kv: -mean(kv[1]))},
            "compressed_share": {k: mean(v) for k, v in sorted(zipped.items(), key=lambda kv: -mean(kv[1]))}}


def steady_phase(h: Harness, wl: Workload, contacts: int, events: int, history: int) -> dict:
    stage = h.use_stage("steady")
    people = seed_contacts(wl, contacts, history, 60, 90, known=True, tag="steady")
    batch = []
    for _ in range(events):
        p = wl.rng.choice(people)
        batch.append(wl.track(p["anonymous_id"], p["user_id"]))
    result = process_run(h, stage, "a) steady state: known contacts, track", batch,
                         f"{contacts} known contacts with {history} past events each, "
                         f"{events} track events (userId + anonymousId) spread at random over them")
    result["contact_document"] = contact_breakdown([p["contact_id"] for p in people[:50]])
    return result


def new_visitor_phase(h: Harness, wl: Workload, events: int) -> dict:
    stage = h.use_stage("newvisitors")
    batch = [wl.browsing(wl.uuid()) for _ in range(events)]
    return process_run(h, stage, "b) new anonymous visitors", batch,
                       f"{events} first events (page or track), each from a new anonymousId")


def merge_phase(h: Harness, wl: Workload, merges: int, history: int) -> dict:
    stage = h.use_stage("merges")
    known = seed_contacts(wl, merges, history, 60, 90, known=True, tag="merge")
    visitors = seed_contacts(wl, merges, 5, 1, 1, known=False, tag="merge")
    batch = [wl.identify(k["user_id"], v["anonymous_id"], k["email"]) for k, v in zip(known, visitors)]
    return process_run(h, stage, "c) identify merging anonymous into known", batch,
                       f"{merges} identify events, each joining a known contact ({history} past events) "
                       f"and a different anonymous contact (5 past events) into one")


# -- report ------------------------------------------------------------------------------

def verdicts(results: dict) -> list[str]:
    out = []
    for r in results["ingest"]:
        small, over = r["events_at_most_1kb_sent"], r["of_which_stored_over_1kb"]
        ok = over == 0
        out.append(f"{'MET   ' if ok else 'MISSED'} ingest {r['name']}: 1 WRU per event of <= 1 KB — "
                   f"{over} of {small} such events were stored as items over 1 KB (2 WRU); "
                   f"{r['wru_per_event']:.2f} WRU/event over all events; stored item = event as sent "
                   f"{r['item_overhead_bytes_mean']:+d} B on average")
    steady = next((p for p in results["processing"] if p["name"].startswith("a)")), None)
    if steady:
        reqs_ok = (steady["read_requests_per_event"] <= BUDGET_STEADY_READS
                   and steady["write_requests_per_event"] <= BUDGET_STEADY_WRITES)
        units_ok = (steady["rru_per_event"] <= BUDGET_STEADY_READS
                    and steady["wru_per_event"] <= BUDGET_STEADY_WRITES)
        out.append(f"{'MET   ' if reqs_ok else 'MISSED'} steady state, requests: "
                   f"{steady['read_requests_per_event']:.2f} reads and {steady['write_requests_per_event']:.2f} "
                   f"writes per event (budget <= 2 and <= 2)")
        out.append(f"{'MET   ' if units_ok else 'MISSED'} steady state, request units: "
                   f"{steady['rru_per_event']:.2f} RRU and {steady['wru_per_event']:.2f} WRU per event "
                   f"(budget <= 2 and <= 2); contact item written: "
                   f"{steady['contact_item_bytes_written'].get('mean_bytes', 0)} B mean")
    if results.get("segments"):
        from bench import segments

        out += segments.verdicts(results["segments"])
    if results.get("messaging"):
        from bench import messaging

        out += messaging.verdicts(results["messaging"])
    if results.get("journeys"):
        from bench import journeys

        out += journeys.verdicts(results["journeys"])
    return out


def render(results: dict) -> str:
    aws = results["target"] == "aws"
    reported = "rep CU/ev"
    legend = ("rep CU/ev = ConsumedCapacity as returned by the endpoint, per event: "
              + ("real, from DynamoDB." if aws else
                 "moto's, a constant per call (1 per write call, 0.5 per read call), NOT size-based."))
    lines = [f"Mercurio benchmark, {results['date']}, target {results['target']}, {results['cpus']} CPUs, "
             f"Python {results['python']}, code {results['code']}",
             f"command: {results['command']}", ""]

    if results["ingest"]:
        lines += render_ingest(results, reported)
    if results["processing"]:
        lines += render_processing(results, reported)
    if results.get("segments"):
        from bench import segments

        lines += segments.render(results["segments"])
    if results.get("messaging"):
        from bench import messaging

        lines += messaging.render(results["messaging"])
    if results.get("journeys"):
        from bench import journeys

        lines += journeys.render(results["journeys"])
    lines += ["", "Budgets and claims (on computed request units; request counts also checked)"]
    lines += [f"   {v}" for v in results["verdicts"]]
    lines += ["", "WRU/RRU = computed: DynamoDB's documented sizing rules applied to the items each request "
                  "actually read or wrote.", legend,
              f"moto's Query: {results.get('moto_query', 'as shipped')}."]
    return "\n".join(lines)


def render_ingest(results: dict, reported: str) -> list[str]:
    lines = ["1. Ingest through the HTTP API (Chalice's local server in one process, the load generator in another)"]
    head = (f"{'route':<28} {'clients':>7} {'reqs':>5} {'events':>6} {'events/s':>8} {'req/s':>6} "
            f"{'p50 ms':>7} {'p95 ms':>7} {'WRU/ev':>6} {'item B':>6} {reported:>9}")
    lines += [head, "-" * len(head)]
    for r in results["ingest"]:
        lines.append(f"{r['name']:<28} {r['clients']:>7} {r['requests']:>5} {r['events_accepted']:>6} "
                     f"{r['events_per_s']:>8.0f} {r['requests_per_s']:>6.0f} {r['latency_ms']['p50']:>7.1f} "
                     f"{r['latency_ms']['p95']:>7.1f} {r['wru_per_event']:>6.2f} "
                     f"{r['event_item_bytes'].get('mean_bytes', 0):>6} {r['reported_cu_per_event']:>9.3f}")
    for r in results["ingest"]:
        sizes = ", ".join(f"{k} {v['stored_over_1kb']}/{v['events']}" for k, v in r["by_size_as_sent"].items())
        lines.append(f"  {r['name']}: event {r['event_bytes_sent']['mean']} B mean as sent, item "
                     f"{r['event_item_bytes'].get('mean_bytes')} B ({r['item_overhead_bytes_mean']:+d} B); "
                     f"items over 1 KB by size as sent: {sizes}; DynamoDB "
                     f"{1000 * r['dynamodb_seconds'] / max(1, r['requests']):.1f} ms/request; "
                     f"HTTP {r['statuses']}")
        if r["events_not_written"]:
            lines.append(f"  WARNING: {r['events_not_written']} events sent were never written (see harness.py)")
    return lines


def render_processing(results: dict, reported: str) -> list[str]:
    lines = ["", "2. Stream processing (StreamBridge -> app.process_events, batches of 100, one process)"]
    head = (f"{'scenario':<42} {'events':>6} {'events/s':>8} {'reads/ev':>8} {'writes/ev':>9} "
            f"{'RRU/ev':>6} {'WRU/ev':>6} {'contact B':>9} {reported:>9}")
    lines += [head, "-" * len(head)]
    for p in results["processing"]:
        lines.append(f"{p['name']:<42} {p['events']:>6} {p['events_per_s']:>8.0f} "
                     f"{p['read_requests_per_event']:>8.2f} {p['write_requests_per_event']:>9.2f} "
                     f"{p['rru_per_event']:>6.2f} {p['wru_per_event']:>6.2f} "
                     f"{p['contact_item_bytes_written'].get('mean_bytes', 0):>9} "
                     f"{p['reported_cu_per_event']:>9.3f}")
    lines += ["", "   requests per event by operation (computed RRU / WRU per event)"]
    for p in results["processing"]:
        parts = [f"{op} {s['requests_per_event']:.2f} ({s['rru'] / p['events']:.2f} / {s['wru'] / p['events']:.2f}"
                 f"{', %d conditional failures' % s['errors'] if s['errors'] else ''}; {s['mean_ms']:.1f} ms)"
                 for op, s in p["per_op_table"].items()]
        lines.append(f"   {p['name'][:2]} " + "; ".join(parts))
        lines.append(f"      {p['note']}. Handler alone {p['handler_events_per_s']:.0f} events/s, of which "
                     f"{1000 * p['dynamodb_seconds'] / p['events']:.1f} ms/event in DynamoDB calls; "
                     f"failed records {p['failed_records']}.")
    for p in results["processing"]:
        doc = p.get("contact_document")
        if doc:
            fields = ", ".join(f"{k} {v}" for k, v in doc["fields"].items())
            lines.append(f"   contact document after {p['name'][:2]} ({doc['contacts']} sampled): "
                         f"{doc['doc_bytes_compact']} B as compact JSON, {doc['doc_bytes_compact_zlib']} B "
                         f"compact+zlib (item written: 'contact B' above). Per field, compact JSON (B, or "
                         f"entries): {fields}. Bytes each part adds to the compressed document: "
                         + ", ".join(f"{k} {v}" for k, v in doc["compressed_share"].items()))
    return lines


def code_version() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "app.py", "chalicelib"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" + uncommitted changes in app.py/chalicelib" if dirty else "")


def measure(args, h: Harness, wl: Workload, results: dict) -> None:
    n = args.events
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    say(f"starting ({args.target}{', ' + args.endpoint if args.endpoint else ''})…")
    h.start()
    if args.suite in ("all", "core") and not args.skip_ingest:
        say("ingest through the HTTP API…")
        results["ingest"] = ingest_phase(h, wl, n, args.batch_size, args.track_requests or max(50, n // 5),
                                         args.clients)
    if args.suite in ("all", "core") and not args.skip_processing:
        say("processing: steady state…")
        results["processing"].append(steady_phase(h, wl, args.contacts or max(20, n // 10),
                                                  args.steady_events or max(100, n // 2), args.history))
        say("processing: new visitors…")
        results["processing"].append(new_visitor_phase(h, wl, args.new_visitors or max(50, n // 5)))
        say("processing: merges…")
        results["processing"].append(merge_phase(h, wl, args.merges or max(20, n // 10), args.history))
    if args.suite in ("all", "segments"):
        from bench import segments

        results["segments"] = segments.run_suite(h, args, say)
    if args.suite in ("all", "messaging"):
        from bench import messaging

        results["messaging"] = messaging.run_suite(h, args, say)
    if args.suite in ("all", "journeys") and args.target == "moto" and not args.endpoint:
        # last: its latency run starts make run's stack in this process
        from bench import journeys

        results["journeys"] = journeys.run_suite(h, args, say)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mercurio throughput and DynamoDB request-unit benchmark.")
    parser.add_argument("--events", type=int, default=5000,
                        help="scale: events through /v1/batch; the other sizes derive from it (default 5000)")
    parser.add_argument("--batch-size", type=int, default=50, help="events per /v1/batch request (default 50)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    parser.add_argument("--track-requests", type=int, help="single /v1/track requests (default events/5)")
    parser.add_argument("--contacts", type=int, help="known contacts in the steady-state run (default events/10)")
    parser.add_argument("--steady-events", type=int, help="steady-state events (default events/2)")
    parser.add_argument("--new-visitors", type=int, help="new-visitor events (default events/5)")
    parser.add_argument("--merges", type=int, help="merging identify events (default events/10)")
    parser.add_argument("--history", type=int, default=60, help="past events of each known contact (default 60)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--target", choices=("moto", "aws"), default="moto",
                        help="moto (default: started here, or --endpoint) or aws (real DynamoDB and credentials; "
                             "creates bench tables and deletes them at the end; costs money)")
    parser.add_argument("--endpoint", help="use this already running DynamoDB endpoint instead of starting moto")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-processing", action="store_true")
    parser.add_argument("--suite", choices=("core", "segments", "messaging", "journeys", "all"), default="core",
                        help="core (default, about 1 minute): ingest and stream processing; segments (about "
                             "7 minutes): segmentation, bench/segments.py; messaging (about 2 minutes): renders, "
                             "sends and cost per 1,000 emails, bench/messaging.py; journeys (about 4 minutes): "
                             "transitions and cost per enrollment, starts per second, latency, bench/journeys.py; "
                             "all: every suite")
    parser.add_argument("--segment-counts", type=lambda v: [int(x) for x in v.split(",")], default=[10, 100, 1000],
                        help="segments defined in each per-event run (default 10,100,1000)")
    parser.add_argument("--seg-contacts", type=int, default=300,
                        help="contacts in the per-event segment runs (default 300)")
    parser.add_argument("--seg-events", type=int, default=1000,
                        help="track events in each per-event segment run (default 1000)")
    parser.add_argument("--outbox-rounds", type=int, default=6,
                        help="rounds of one event per contact, 100 contacts (default 6; 0 skips)")
    parser.add_argument("--recheck-contacts", type=int, default=100_000,
                        help="contacts in the large recheck run (default 100000; 0 skips it)")
    parser.add_argument("--recheck-small", type=int, default=10_000,
                        help="contacts in the small recheck runs (default 10000; 0 skips them)")
    parser.add_argument("--recheck-due", type=int, default=1000,
                        help="contacts due to flip at the recheck (default 1000)")
    parser.add_argument("--backfill-contacts", type=int, default=2000,
                        help="contacts a new segment is previewed and back-filled over (default 2000; 0 skips)")
    parser.add_argument("--backfill-history", type=int, default=20,
                        help="stored events per contact in the back-fill run (default 20)")
    parser.add_argument("--msg-contacts", type=int, default=400,
                        help="contacts sent one email each in the messaging run (default 400)")
    parser.add_argument("--msg-quiet-share", type=float, default=0.08,
                        help="share of them where it is night now: quiet hours (default 0.08)")
    parser.add_argument("--msg-capped-share", type=float, default=0.07,
                        help="share of them already at the weekly cap (default 0.07)")
    parser.add_argument("--msg-no-consent-share", type=float, default=0.03,
                        help="share of them without email consent (default 0.03)")
    parser.add_argument("--renders", type=int, default=500, help="warm renders per template (default 500)")
    parser.add_argument("--cold-renders", type=int, default=50,
                        help="cold renders (compiled each time) per template (default 50)")
    parser.add_argument("--trickle", type=int, default=50,
                        help="paced requests for the latency through an idle pipeline (default 50)")
    parser.add_argument("--trickle-interval", type=float, default=0.2,
                        help="seconds between paced requests (default 0.2)")
    parser.add_argument("--journey-contacts", type=int, default=3,
                        help="contacts per journey timeline in the per-enrollment run (default 3)")
    parser.add_argument("--journey-starts", type=int, default=200,
                        help="enrollments started through on_signal in the starts run (default 200; 0 skips)")
    parser.add_argument("--journey-latency", type=int, default=10,
                        help="samples of each latency on the local stack (default 10; 0 skips starting it)")
    parser.add_argument("--journey-latency-interval", type=float, default=0.5,
                        help="seconds between latency samples (default 0.5)")
    parser.add_argument("--journey-scale", type=float, default=600.0,
                        help="the journey time scale of the latency run (default 600, make run's)")
    parser.add_argument("--journey-deadline", type=float, default=600.0,
                        help="seconds a journeys run may take before it is reported as unfinished (default 600)")
    parser.add_argument("--plain-moto", action="store_true",
                        help="moto's server as shipped (its Query reads the whole table; see bench/moto_server.py)")
    parser.add_argument("--json", help="also write every number to this JSON file")
    args = parser.parse_args(argv)
    if args.target == "aws" and args.endpoint:
        parser.error("--endpoint and --target aws exclude each other")
    if args.suite == "journeys" and (args.target == "aws" or args.endpoint):
        parser.error("the journeys suite runs on the moto server it starts (Step Functions executing the enrollment "
                     "runner, the journey queues): leave out --target aws and --endpoint")

    run_id = f"bench{time.strftime('%H%M%S')}{random.randint(0, 99):02d}"
    results: dict = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "target": args.target,
        "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "code": code_version(), "ingest": [], "processing": [], "suite": args.suite,
        "moto_query": "as shipped" if args.plain_moto else "partition-indexed (bench/moto_server.py)",
    }
    wl = Workload(args.seed)
    h = Harness(target=args.target, endpoint=args.endpoint, run_id=run_id, plain_moto=args.plain_moto)
    started = time.perf_counter()
    # The app prints (EMF metric lines) on stdout; stdout is kept for the report.
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        try:
            measure(args, h, wl, results)
        finally:
            h.close()
    results["seconds"] = time.perf_counter() - started
    results["verdicts"] = verdicts(results)
    print(render(results))
    print(f"\n(total {results['seconds']:.0f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
