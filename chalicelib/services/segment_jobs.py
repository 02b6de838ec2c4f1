"""Work that does not ride on an incoming event: time-based rechecks, back-fills of new or
edited definitions, size previews, RFM thresholds, campaign reports and audience exports.

Each job is resumable and bounded: it does at most `limit` contacts or `budget` seconds per
call and keeps its cursor in the definition store, so a scheduled Lambda can run it in
slices and a failure resumes where it stopped.
"""
from __future__ import annotations

import copy
import time
from datetime import datetime
from typing import Callable, Iterable

from chalicelib.domain import engagement, personas, rfm
from chalicelib.domain.contact import Contact, bump_counter, counter_name
from chalicelib.domain.definition_kinds.base import DRAFT_ID
from chalicelib.domain.events import iso, parse_timestamp
from chalicelib.domain.identity import kind_of
from chalicelib.domain.segments.evaluator import evaluate
from chalicelib.services.catalog import Catalog
from chalicelib.services.definitions import RFM_THRESHOLDS, DefinitionNotFound, DefinitionService
from chalicelib.services.jobs import JobError
from chalicelib.services.ports import Clock, ConcurrentUpdate, EventStore, MembershipStore, RecheckSchedule
from chalicelib.services.effects import EffectsPublisher
from chalicelib.services.segmentation import CAMPAIGN_AUDIENCE, ProfileRules

MAX_ATTEMPTS = 5


class SegmentJobs:
    def __init__(self, repo, definitions: DefinitionService, rules: ProfileRules, publisher: EffectsPublisher,
                 schedule: RecheckSchedule, memberships: MembershipStore, events: EventStore, clock: Clock,
                 counter_days: int = 90, monotonic: Callable[[], float] = time.monotonic):
        self.repo = repo
        self.definitions = definitions
        self.rules = rules
        self.publisher = publisher
        self.schedule = schedule
        self.memberships = memberships
        self.events = events
        self.clock = clock
        self.counter_days = counter_days
        self.monotonic = monotonic

    # -- one contact, read-modify-write with retries -------------------------------------

    def _update(self, contact_id: str, change: Callable[[Contact], None]) -> Contact | None:
        for _ in range(MAX_ATTEMPTS):
            contact = self.repo.survivor(contact_id)
            if contact is None or contact.merged_into:
                return None
            if contact.outbox:  # the previous write's effects, published before new ones
                self.publisher.publish(contact, self.clock.now())
            before = copy.deepcopy(contact.to_document())
            change(contact)
            try:
                if contact.to_document() != before:
                    self.repo.save(contact)
            except ConcurrentUpdate:
                continue
            if contact.outbox:
                self.publisher.publish(contact, self.clock.now())
            return contact
        raise ConcurrentUpdate(f"contact {contact_id} kept changing during a job")

    # -- time passing ----------------------------------------------------------------------

    def recheck_due(self, limit: int = 1000, budget_seconds: float = 100.0) -> dict:
        """Re-evaluate the contacts whose segments time alone may have changed by now."""
        started = self.monotonic()
        now = self.clock.now()
        checked = changed = 0
        while self.monotonic() - started <= budget_seconds:
            batch = self.schedule.due(now, limit)
            if not batch:
                break
            for slot, contact_id in batch:
                if self.monotonic() - started > budget_seconds:
                    break
                flipped = self._recheck_one(slot, contact_id, now)
                checked += 1
                changed += flipped
        return {"checked": checked, "changed": changed, "at": iso(now)}

    def _recheck_one(self, slot: str, contact_id: str, now: datetime) -> bool:
        """One due entry: evaluate what time may have changed, then drop the entry."""
        flips: list = []

        def recheck(contact: Contact) -> None:
            flips.extend(self.rules.evaluate(contact, now, set(), cause=f"recheck:{slot}"))

        self._update(contact_id, recheck)
        self.schedule.done(slot, contact_id)
        return bool(flips)

    # -- back-fills -------------------------------------------------------------------------

    def pending_backfills(self) -> list[tuple[str, str, dict]]:
        jobs = []
        for kind in (k.name for k in self.definitions.kinds if k.backfill or k.has_members):
            for definition_id, stats in self.definitions.store.all_stats(kind).items():
                progress = stats.get("backfill")
                if progress and progress.get("status") in ("pending", "running"):
                    jobs.append((kind, definition_id, progress))
        return jobs

    def run_backfills(self, page_size: int = 100, budget_seconds: float = 100.0) -> list[dict]:
        started = self.monotonic()
        reports = []
        for kind, definition_id, progress in self.pending_backfills():
            while self.monotonic() - started < budget_seconds:
                progress = self.backfill_page(kind, definition_id, progress, page_size)
                if progress["status"] == "done":
                    break
            reports.append({"kind": kind, "id": definition_id, **progress})
        return reports

    def backfill_page(self, kind: str, definition_id: str, progress: dict, page_size: int) -> dict:
        if progress.get("action") == "remove":
            return self.removal_page(kind, definition_id, progress, page_size)
        catalog = self.definitions.catalog()
        contacts, cursor = self.repo.scan(progress.get("cursor"), page_size)
        now = self.clock.now()
        for contact in contacts:
            if kind == "segment":
                self._update(contact.id, lambda c: self._refresh_segment(c, catalog, definition_id, now))
            else:
                self._update(contact.id, lambda c: self._refresh_persona(c, catalog, now))
        progress = {**progress, "status": "running" if cursor else "done", "cursor": cursor,
                    "scanned": progress.get("scanned", 0) + len(contacts), "updated_at": iso(now)}
        if not cursor:
            progress["finished_at"] = iso(now)
        self.definitions.store.set_stats(kind, definition_id, backfill=progress)
        return progress

    def removal_page(self, kind: str, definition_id: str, progress: dict, page_size: int) -> dict:
        """A deleted segment: its members leave it, each with a Segment Exited event whose
        cause names the deletion. Walks the memberships, not every contact."""
        self.definitions.invalidate()  # the deletion may be newer than this container's catalog
        catalog = self.definitions.catalog()
        now = self.clock.now()
        if definition_id in getattr(catalog, self.definitions.kind(kind).catalog_attribute):
            rows, cursor = [], None  # stored again since: its own back-fill evaluates everyone
        else:
            rows, cursor = self.memberships.members(definition_id, page_size, progress.get("cursor"))
        cause = f"deleted:{definition_id}:{progress.get('version')}"
        for row in rows:
            changes: list = []
            member = self._update(row["contact_id"], lambda c: changes.extend(
                self.rules.evaluate(c, now, set(), cause=cause, catalog=catalog)))
            if member is None or (definition_id, False) not in changes:
                # Merged away, gone, or the contact no longer listed it: only the row is left.
                self.memberships.leave(definition_id, row["contact_id"])
        progress = {**progress, "status": "running" if cursor else "done", "cursor": cursor,
                    "scanned": progress.get("scanned", 0) + len(rows), "updated_at": iso(now)}
        if not cursor:
            progress["finished_at"] = iso(now)
        self.definitions.store.set_stats(kind, definition_id, backfill=progress)
        return progress

    def _refresh_segment(self, contact: Contact, catalog: Catalog, segment_id: str, now: datetime) -> None:
        definition = catalog.segments.get(segment_id)
        if definition is None:
            return
        self.recount(contact, definition.matchers(), now, definition.exact_times())
        self.rules.evaluate(contact, now, {segment_id}, cause=f"backfill:{segment_id}:{catalog.versions.get(('segment', segment_id))}", catalog=catalog)

    def _refresh_persona(self, contact: Contact, catalog: Catalog, now: datetime) -> None:
        if catalog.personas is None:
            return
        assigned = personas.assign(catalog.personas, contact)
        if assigned != contact.persona:
            contact.persona = assigned
            self.rules.evaluate(contact, now, set(catalog.index.affected_by("persona")),
                                cause=f"personas:{catalog.versions.get(('personas', 'default'))}", catalog=catalog)

    def recount(self, contact: Contact, matchers: Iterable, now: datetime,
                exact_times: dict[tuple[str, str], int] | None = None) -> None:
        """Count a new filtered matcher over the contact's stored history. The count is
        as of now: live processing then adds only events received after it.

        `exact_times` (a definition's `exact_times()`) also restores the exact times a
        windowed count needs where the contact's counter keeps fewer than that (they were
        kept as the previous catalog needed): the latest ones are read from the same history
        and joined to those kept, with day buckets beside them. Totals are not touched."""
        exact_times = exact_times or {}
        missing = [m for m in matchers if m.filters and m.key not in contact.filtered and m.event in contact.counters]
        short = {}  # event name -> exact times needed, for unfiltered counters that keep fewer
        for (kind, key), need in exact_times.items():
            entry = contact.counters.get(key) if kind == "counter" else None
            if entry and len(entry.get("recent") or []) < min(need, entry["total"]):
                short[key] = need
        if not missing and not short:
            return
        partitions = [i for i in contact.identifiers if kind_of(i) in ("user", "anon", "email", "phone")]
        partitions += [f"contact:{cid}" for cid in [contact.id, *contact.merged_from]]
        counts: dict = {}
        history: dict = {}  # event name -> its occurrences as a counter (for `short`)
        seen_until: dict[str, str] = {}  # per matcher: the latest receivedAt of the events read
        names = {m.event for m in missing} | set(short)
        before = None
        while True:
            page, before = self.events.timeline(partitions, 200, before)
            for event in page:
                name = counter_name(event)
                if name not in names:
                    continue
                if name in short:
                    bump_counter(history, name, event["timestamp"], self.counter_days, short[name], True)
                for matcher in missing:
                    if matcher.event != name:
                        continue
                    seen_until[matcher.key] = max(seen_until.get(matcher.key, ""), event.get("receivedAt", ""))
                    if matcher.matches(name, event):
                        bump_counter(counts, matcher.key, event["timestamp"], self.counter_days,
                                     max(exact_times.get(("filtered", matcher.key), 0), 1), True)
            if not before:
                break
        stamp = iso(now)
        for matcher in missing:
            entry = counts.get(matcher.key) or {"total": 0, "first": stamp, "last": stamp, "days": {}, "recent": []}
            # Live processing adds only what this count did not read (received later).
            entry["as_of"] = seen_until.get(matcher.key, "")
            contact.filtered[matcher.key] = entry
        for name, need in short.items():
            found = history.get(name)
            if found is None:
                continue
            entry = contact.counters[name]
            read = found.get("recent") or []
            newer = [t for t in entry.get("recent") or [] if not read or t > read[-1]]  # not stored yet when read
            entry["recent"] = sorted(read + newer)[-need:]
            days = entry.setdefault("days", {})
            for day, n in found.get("days", {}).items():
                days[day] = max(days.get(day, 0), n)  # the stored history, or what was kept if more

    # -- previews ---------------------------------------------------------------------------

    def preview(self, document: dict, max_contacts: int = 5000, budget_seconds: float = 20.0) -> dict:
        """How many contacts a segment would hold, without saving it or writing anything. The
        document needs no id or name yet."""
        self.definitions.validate("segment", document)  # every problem, references included
        kind = self.definitions.kind("segment")
        definition = kind.parse(kind.draft({"id": DRAFT_ID, **document}))
        catalog = self.definitions.catalog()
        started = self.monotonic()
        now = self.clock.now()
        members = scanned = 0
        cursor = None
        sample: list[str] = []
        while True:
            contacts, cursor = self.repo.scan(cursor, 200)
            for contact in contacts:
                self.recount(contact, definition.matchers(), now, definition.exact_times())
                if evaluate(definition, contact, now, self.rules.context_for(catalog, contact)).member:
                    members += 1
                    if len(sample) < 10:
                        sample.append(contact.id)
                scanned += 1
            if not cursor or scanned >= max_contacts or self.monotonic() - started > budget_seconds:
                break
        return {"size": members, "scanned": scanned, "complete": cursor is None, "sample": sample}

    # -- RFM (one slice of the `rfm` job at a time) ------------------------------------------

    def rfm_slice(self, cursor: str | None, partial: dict | None, page_size: int = 500) -> dict:
        """Phase `collect` reads a page of contacts into the distribution; when every contact
        has been read, the thresholds are stored and phase `classify` re-classifies a page of
        customers per slice. Returns the job's next cursor and partial state, its progress,
        and its result once done."""
        catalog = self.definitions.catalog()
        if catalog.rfm is None:
            raise JobError("no rfm definition: PUT one at /v1/admin/definitions/rfm/default")
        partial = dict(partial or {"phase": "collect", "now": iso(self.clock.now()), "read": 0,
                                   "reclassified": 0, "distribution": None})
        now = parse_timestamp(partial["now"])
        contacts, cursor = self.repo.scan(cursor, page_size)
        if partial["phase"] == "collect":
            distribution = rfm.RfmDistribution.from_dict(partial["distribution"])
            for contact in contacts:
                distribution.add(contact.rfm, now)
            partial["read"] += len(contacts)
            partial["distribution"] = distribution.to_dict()
            if not cursor:
                thresholds = distribution.thresholds(catalog.rfm, now)
                self.definitions.store.put_state(RFM_THRESHOLDS, thresholds.to_dict())
                self.definitions.invalidate()
                partial.update(phase="classify", thresholds=thresholds.to_dict(), distribution=None)
            return {"cursor": cursor, "partial": partial, "progress": self._rfm_progress(partial)}
        catalog_now = self.definitions.catalog()
        affected = set(catalog_now.index.affected_by("rfm"))
        for contact in contacts:
            if not contact.rfm.get("orders"):
                continue
            fresh = rfm.classify(catalog_now.rfm, contact.rfm, catalog_now.rfm_thresholds, now)
            if any(contact.rfm.get(k) != v for k, v in fresh.items()):
                def apply(c: Contact, fresh=fresh) -> None:
                    c.rfm.update(fresh)
                    self.rules.evaluate(c, now, affected, cause=f"rfm:{partial['now']}", catalog=catalog_now)
                self._update(contact.id, apply)
                partial["reclassified"] += 1
        partial["classified_read"] = partial.get("classified_read", 0) + len(contacts)
        step = {"cursor": cursor, "partial": partial, "progress": self._rfm_progress(partial)}
        if not cursor:
            step["result"] = {"customers": partial["thresholds"]["customers"],
                              "reclassified": partial["reclassified"], "thresholds": partial["thresholds"]}
        return step

    @staticmethod
    def _rfm_progress(partial: dict) -> dict:
        return {"phase": partial["phase"], "contacts_read": partial["read"],
                "contacts_classified": partial.get("classified_read", 0), "reclassified": partial["reclassified"]}

    # -- campaigns (one slice of the `campaign-groups` job at a time) -------------------------

    def check_campaign(self, campaign_id: str) -> None:
        if campaign_id not in self.definitions.catalog().campaigns:
            raise DefinitionNotFound(f"no campaign {campaign_id!r} is defined")

    def campaign_groups_slice(self, campaign_id: str, cursor: str | None, partial: dict | None,
                              page_size: int = 100) -> dict:
        """Classify one page of the campaign's recipients into the six groups; the report is
        the sum of the pages' reports."""
        campaign = self.definitions.catalog().campaigns.get(campaign_id)
        if campaign is None:
            raise JobError(f"no campaign {campaign_id!r} is defined")
        rows, cursor = self.memberships.members(CAMPAIGN_AUDIENCE.format(campaign_id), page_size, cursor)
        summaries = []
        for row in rows:
            contact = self.repo.get(row["contact_id"])
            if contact is not None and campaign_id in contact.campaigns:
                summaries.append(contact.campaigns[campaign_id])
        page = engagement.groups_report(summaries, campaign)
        report = partial or {"recipients": 0, "groups": {g: 0 for g in page["groups"]}, "converted": 0}
        report["recipients"] += page["recipients"]
        report["converted"] += page["converted"]
        for group, n in page["groups"].items():
            report["groups"][group] = report["groups"].get(group, 0) + n
        progress = {"recipients_read": report.get("read", 0) + len(rows)}
        report["read"] = progress["recipients_read"]
        step = {"cursor": cursor, "partial": report, "progress": progress}
        if not cursor:
            step["result"] = {"campaign": campaign_id,
                              **{k: v for k, v in report.items() if k != "read"}}
        return step

    # -- segment sizes (one slice of the `segment-sizes` job at a time) -----------------------

    def segment_sizes_slice(self, cursor: str | None, partial: dict | None) -> dict:
        """Recount one segment's size from its membership rows per slice: sizes are kept in
        counters beside the rows, and a crash between a row's write and its count leaves one
        off. What was corrected is reported."""
        segment_ids = sorted(self.definitions.catalog().segments)
        position = int(cursor or 0)
        partial = partial or {"recounted": 0, "corrected": {}}
        if position < len(segment_ids):
            segment_id = segment_ids[position]
            before = self.memberships.size(segment_id)
            after = self.memberships.recount(segment_id)
            partial["recounted"] += 1
            if after != before:
                partial["corrected"][segment_id] = {"was": before, "now": after}
            position += 1
        step = {"cursor": str(position) if position < len(segment_ids) else None, "partial": partial,
                "progress": {"segments": len(segment_ids), "recounted": partial["recounted"]}}
        if step["cursor"] is None:
            step["result"] = dict(partial)
        return step
