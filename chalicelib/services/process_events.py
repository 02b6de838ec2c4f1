"""Process events: resolve who an event belongs to, merge profiles, and update the contact.

Driven by the event store's stream (at-least-once, in order per partition). Safe to run
twice on the same event (the contact remembers recently applied messageIds) and safe to run
concurrently on events of the same person (every write is conditional; a lost race re-reads
and tries again).

The guarantee: whatever the interleaving of workers processing one person's events, the
person ends with exactly one live contact (not `merged_into` another), and every event is
counted on it exactly once. It needs nothing from the store but that each request is
atomic (DynamoDB's conditional writes and transactions), and holds by these rules:

1. Every contact write is conditional on the version read (a creation, on the contact not
   existing). A worker whose contact changed since it read it writes nothing, forgets what
   it read (`BatchCache.forget`) and resolves the event again from the store.
2. A merge is one transaction (`ContactRepository.merge`): the survivor, holding every
   loser's counters, identifiers and applied-message digests, and each loser marked
   `merged_into` the survivor, all conditional on the versions read. A loser is therefore
   absorbed once (a second merge of it holds a stale version and is refused), and an event
   written to a loser after the merge read it cancels the merge rather than being lost.
3. A merged contact is never written again: `_follow` only returns live contacts, and a
   write to a merged one fails its version condition (rule 1). Its counts live on only in
   its survivor.
4. Identifiers are claimed by a conditional put (one owner at a time per identifier) and are
   re-pointed after the merge's transaction, each one conditionally from the loser to the
   survivor. Until then, or for good if the worker stops in between, an identifier leads to
   the merged loser, whose `merged_into` chain readers follow (`_follow`) and heal
   (`_load_owners`); a pointer only moves forward along that chain, never back.
5. The survivor is the oldest profile, ties broken by the smaller id (`choose_survivor`): a
   total order, so workers that see the same profiles choose the same survivor. Workers that
   see different profiles may choose differently; rule 2 lets one merge commit and the
   others re-resolve against its result.

Counted once: an event is written together with its digest among the contact's recently
applied messages (`Contact.recent`), and merges carry those digests to the survivor, so an
event retried or redelivered after it was written is recognised wherever it landed.
tests/unit/test_merge_interleavings.py forces the interleavings these rules answer, and
runs the racing scenario under seeded schedules.
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from chalicelib.domain.contact import (
    Contact,
    alias_candidates,
    apply_event,
    can_merge,
    choose_survivor,
    event_identifiers,
    merge_contacts,
)
from chalicelib.domain.contact_state import MergeContext
from chalicelib.domain.events import iso
from chalicelib.domain.events import parse_timestamp
from chalicelib.services.ports import Clock, ConcurrentUpdate, ContactRepository, RecheckSchedule

MAX_ATTEMPTS = 8
MAX_POINTER_HOPS = 8
# Contact writes whose outbox this process published whole, remembered by id and version:
# the same container processes a stream shard's batches one after the other, so the next
# batch reading one of these contacts knows without a read. 10,000 entries take ~1 MB.
PUBLISHED_MEMORY = 10_000


class ProcessingConflict(Exception):
    """Still losing races after MAX_ATTEMPTS: let the stream retry the record later."""


@dataclass
class Outcome:
    contact_id: str
    applied: bool
    created: bool = False
    merged: list[str] = field(default_factory=list)
    attempts: int = 1
    written: bool = True  # False: applied in memory, left for the batch's single write


@dataclass
class BatchCache:
    """What one invocation already knows; dropped on any conflict.

    `dirty` names the contacts changed in memory and not written yet (a coalesced batch):
    when the cache is dropped, their events are applied again from the stored contact
    before the write (`EventProcessor.process_batch`)."""

    owners: dict[str, str] = field(default_factory=dict)
    contacts: dict[str, Contact] = field(default_factory=dict)
    dirty: set = field(default_factory=set)

    def forget(self) -> None:
        self.owners.clear()
        self.contacts.clear()
        self.dirty.clear()


@dataclass
class BatchResult:
    """Per event of a batch: its outcome, or the error that failed it (None: not attempted)."""

    outcomes: list
    errors: list
    contact_writes: int = 0

    def failed(self) -> list[int]:
        return [i for i, e in enumerate(self.errors) if e is not None]


class EventProcessor:
    def __init__(
        self,
        repo: ContactRepository,
        clock: Clock,
        counter_days: int = 90,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        sleep: Callable[[float], None] = time.sleep,
        rules=None,
        publisher=None,
        schedule: RecheckSchedule | None = None,
    ):
        self.repo = repo
        self.clock = clock
        self.counter_days = counter_days
        self.new_id = new_id
        self.sleep = sleep
        self.rules = rules  # ProfileRules: scoring, RFM, personas, engagement, segments
        self.publisher = publisher  # EffectsPublisher: the contact's outbox, after each write
        self.schedule = schedule  # recheck entries, written before the contact (see _schedule_before_write)
        self._published: OrderedDict[tuple[str, str, int | None], None] = OrderedDict()
        self._published_lock = threading.Lock()

    def process(self, event: dict, cache: BatchCache | None = None, defer: bool = False) -> Outcome:
        """Apply one event. With `defer`, a plain update stays in memory (the contact is named
        in `cache.dirty`) for `process_batch` to write once; merges are still written at once."""
        cache = cache if cache is not None else BatchCache()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            consistent = attempt > 1
            try:
                outcome = self._process_once(event, cache, consistent, defer)
                outcome.attempts = attempt
                return outcome
            except ConcurrentUpdate:
                cache.forget()
                self.sleep(min(0.2, 0.005 * 2**attempt) * random.random())
        raise ProcessingConflict(f"event {event.get('messageId')} lost {MAX_ATTEMPTS} races in a row")

    # -- a batch: events of one contact applied in memory, written once ----------------

    def process_batch(self, events: list[dict], cache: BatchCache | None = None) -> BatchResult:
        """Apply a stream batch, writing each changed contact once.

        Events are applied in order. The first event that fails stops the batch: it and every
        later event are reported failed (the stream redelivers them in order). Then each
        changed contact is written once; if that write fails, every event applied to that
        contact fails, and so does every event after the earliest of them (a redelivered
        event that was written already is recognised by its digest and not counted twice).
        """
        cache = cache if cache is not None else BatchCache()
        n = len(events)
        result = BatchResult(outcomes=[None] * n, errors=[None] * n)
        pending: dict[str, list[int]] = {}  # contact id -> events applied in memory, not written yet
        stopped_at = n
        for i, event in enumerate(events):
            try:
                outcome = self.process(event, cache, defer=True)
            except Exception as exc:  # noqa: BLE001 - reported per record, the stream retries it
                result.errors[i] = exc
                stopped_at = i
                break
            result.outcomes[i] = outcome
            if not outcome.written:
                pending.setdefault(outcome.contact_id, []).append(i)
        for contact_id, indices in pending.items():
            try:
                result.contact_writes += self._flush(contact_id, [events[j] for j in indices], cache)
                for j in indices:
                    result.outcomes[j].written = True
            except Exception as exc:  # noqa: BLE001
                for j in indices:
                    result.errors[j] = exc
        failed = result.failed()
        first = min(failed + [stopped_at]) if failed or stopped_at < n else n
        for j in range(first, n):
            if result.errors[j] is None:
                result.errors[j] = ProcessingConflict("an earlier event of this batch failed: retried in order")
        return result

    def _flush(self, contact_id: str, events: list[dict], cache: BatchCache) -> int:
        """Write one contact's coalesced events; returns the writes made (0 or 1).

        A contact no longer held in memory (a lost race dropped the cache, or a merge wrote
        it) is read again and its events applied again: those already stored are recognised
        by their digests, and if none is left there is nothing to write."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                contact = cache.contacts.get(contact_id) if contact_id in cache.dirty else None
                if contact is None:
                    contact = self._follow(contact_id, cache, consistent=True)
                    self._publish_stored(contact)
                    changed = False
                    for event in events:
                        if apply_event(contact, event, self.counter_days, self._retention()):
                            changed = True
                            if self.rules is not None:
                                self.rules.on_event(contact, event, self.clock.now())
                    if not changed:
                        return 0
                if contact.version is None:
                    self._schedule_before_write(contact)
                    self.repo.create(contact)
                else:
                    self._schedule_before_write(contact)
                    self.repo.save(contact)
                cache.dirty.discard(contact_id)
                cache.contacts[contact.id] = contact
                self._publish(contact)
                return 1
            except ConcurrentUpdate:
                cache.contacts.pop(contact_id, None)
                cache.dirty.discard(contact_id)
                self.sleep(min(0.2, 0.005 * 2**attempt) * random.random())
        raise ProcessingConflict(f"contact {contact_id} lost {MAX_ATTEMPTS} races in a row")

    def _retention(self):
        """What each counter keeps: as the catalog's segments need (`SegmentIndex.retention`)."""
        return self.rules.counter_retention() if self.rules is not None else None

    # -- one attempt -------------------------------------------------------------------

    def _process_once(self, event: dict, cache: BatchCache, consistent: bool, defer: bool = False) -> Outcome:
        if event.get("contactId"):
            linked = self._as_linking(event, cache, consistent)
            if linked is None:
                return self._process_internal(event, cache, consistent, defer)
            event = linked
        identifiers = event_identifiers(event)
        optional = alias_candidates(event) if event["type"] == "alias" else []
        owners = self._lookup(identifiers + optional, cache, consistent)
        if optional and not any(i in owners for i in optional):
            identifiers.append(optional[1])  # an unknown previousId is taken as the anonymous id
        linked = [i for i in identifiers + optional if i in owners or i in identifiers]

        contacts = self._load_owners({i: owners[i] for i in linked if i in owners}, cache, consistent)
        owners.update({i: cache.owners[i] for i in linked if i in cache.owners})
        primary = identifiers[0]
        if event.get("userId") is not None and event["type"] != "alias":
            # A profile that already belongs to another userId is another person (a shared
            # device): the event's identifiers it holds stay with it.
            me = f"user:{event['userId']}"
            others = {cid for cid, c in contacts.items() if c.user_ids() - {me}}
            if others:
                contacts = {cid: c for cid, c in contacts.items() if cid not in others}
                linked = [i for i in linked if owners.get(i) not in others]
        created = False
        if not contacts:
            contact = self._create_for(primary, cache)
            created = True
            contacts = {contact.id: contact}

        losers: list[Contact] = []
        stage_before: str | None = None
        if len(contacts) > 1 and (event["type"] == "alias" or can_merge(list(contacts.values()))):
            contact = choose_survivor(list(contacts.values()))
            losers = sorted((c for c in contacts.values() if c.id != contact.id), key=lambda c: c.id)
            context = self.rules.merge_context(self.clock.now()) if self.rules is not None \
                else MergeContext(now=self.clock.now())
            stage_before = contact.stage
            for loser in losers:
                merge_contacts(contact, loser, context)
        elif len(contacts) > 1:
            # Conflicting userIds: keep the people apart and attach the event to the owner
            # of the identifier the event itself is stored under.
            owner_id = owners.get(primary)
            contact = contacts[owner_id] if owner_id in contacts else choose_survivor(list(contacts.values()))
            linked = [i for i in linked if owners.get(i) in (None, contact.id)]
        else:
            contact = next(iter(contacts.values()))

        for identifier in linked:
            if not contact.has(identifier) and owners.get(identifier) in (None, contact.id):
                owner = self.repo.claim(identifier, contact.id)
                if owner != contact.id:
                    raise ConcurrentUpdate(f"{identifier} was claimed by {owner} meanwhile")
                cache.owners[identifier] = contact.id
                contact.add_identifier(identifier)

        if contact.id not in cache.dirty:
            # What the previous write left to publish, once, before new effects. After a
            # merge the outbox holds the losers' effects too, which no proof covers.
            if losers:
                self._publish(contact)
            else:
                self._publish_stored(contact)
        applied = apply_event(contact, event, self.counter_days, self._retention())
        if applied and self.rules is not None:
            for loser in losers:
                self.rules.forget_merged(contact, loser)
            if losers and contact.stage != stage_before:
                self.rules.announce_stage(contact, stage_before, self.clock.now(), event["messageId"])
            self.rules.on_event(contact, event, self.clock.now(), full=bool(losers))
        written = True
        if losers:
            if self.rules is not None:
                self.rules.announce_merge(contact, losers, self.clock.now(), event["messageId"])
            self._merge(contact, losers, cache)  # the event lands in the same write as the merge
            for loser in losers:
                cache.dirty.discard(loser.id)
            cache.dirty.discard(contact.id)
        elif defer and (applied or contact.version is None):
            cache.dirty.add(contact.id)
            written = False
        elif contact.version is None:
            self._schedule_before_write(contact)
            self.repo.create(contact)  # fails if a concurrent reader healed the claim first
        elif applied:
            self._schedule_before_write(contact)
            self.repo.save(contact)
        cache.contacts[contact.id] = contact
        if written:
            self._publish(contact)
        return Outcome(contact_id=contact.id, applied=applied, created=created,
                       merged=[c.id for c in losers], written=written)

    def _as_linking(self, event: dict, cache: BatchCache, consistent: bool) -> dict | None:
        """An email click links its recipient to the visit it starts (`click:<id>`, which the
        visitor's events carry as context.clickId): it is resolved like a visitor's event —
        the click identifier claimed for the recipient, or the two profiles merged when the
        visit reached the stream first — naming the recipient by one of its own identifiers.
        None for every other internal event (and a recipient with no identifier left)."""
        if not any(i.startswith("click:") for i in event_identifiers(event)):
            return None
        contact = self._follow(event["contactId"], cache, consistent)
        own = [i for i in contact.identifiers if not i.startswith("click:")]
        if not own:
            return None
        return {k: v for k, v in event.items() if k != "contactId"} | {"partition": own[0]}

    def _process_internal(self, event: dict, cache: BatchCache, consistent: bool, defer: bool = False) -> Outcome:
        """Events Mercurio emits about a contact (Segment Entered…): counted on the contact
        they name, and seen by the segments that read them."""
        contact = self._follow(event["contactId"], cache, consistent)
        if contact.id not in cache.dirty:
            self._settle_published(contact, event)
        if contact.id not in cache.dirty:
            self._publish_stored(contact)
        applied = apply_event(contact, event, self.counter_days, self._retention())
        written = True
        if applied:
            if self.rules is not None:
                self.rules.on_event(contact, event, self.clock.now())
            if defer:
                cache.dirty.add(contact.id)
                written = False
            else:
                self._schedule_before_write(contact)
                self.repo.save(contact)
        cache.contacts[contact.id] = contact
        if written:
            self._publish(contact)
        return Outcome(contact_id=contact.id, applied=applied, written=written)

    def _schedule_before_write(self, contact: Contact) -> None:
        """File the contact's recheck entry before the contact is written, not through the
        outbox: an entry whose write then fails only makes the job look at the contact once
        for nothing, so it needs no outbox, and is never published a second time. Of the
        entries a coalesced batch asked for, only the contact's final next check matters."""
        if self.schedule is None or not any(e.get("kind") == "schedule" for e in contact.outbox):
            return
        contact.outbox = [e for e in contact.outbox if e.get("kind") != "schedule"]
        if contact.next_check:
            self.schedule.schedule(contact.id, parse_timestamp(contact.next_check))

    @staticmethod
    def _settle_published(contact: Contact, event: dict) -> None:
        """An internal event arriving from the stream was published from this contact's
        outbox. The publisher writes memberships and recheck entries before it appends
        events, so they were published too: drop them and this event from the stored outbox
        instead of publishing them again (other events stay: a batch append may have been
        cut short)."""
        mine = event.get("messageId")
        if not any(e.get("kind") == "event" and e["event"].get("messageId") == mine for e in contact.outbox):
            return
        contact.outbox = [e for e in contact.outbox if e.get("kind") == "event" and e["event"].get("messageId") != mine]

    def _publish(self, contact: Contact) -> None:
        """Publish the contact's outbox (idempotent effects) and empty it in memory.

        A stored contact keeps the effects of its last write: if that write's publishing
        was cut short, they are published again (`_publish_stored`), before the next write
        replaces them; the next write then stores only its own effects, so the outbox never
        accumulates. A write published whole is remembered by its version."""
        if self.publisher is None or not contact.outbox:
            return
        self.publisher.publish(contact, self.clock.now())
        if contact.version is not None:
            key = self._write_key(contact)
            with self._published_lock:
                self._published[key] = None
                self._published.move_to_end(key)
                while len(self._published) > PUBLISHED_MEMORY:
                    self._published.popitem(last=False)

    @staticmethod
    def _write_key(contact: Contact) -> tuple[str, str, int | None]:
        """One write of one contact: its id and version, and its creation time (a contact
        erased and written again under the same id starts its versions again)."""
        return contact.id, contact.created_at, contact.version

    def _publish_stored(self, contact: Contact) -> None:
        """Publish the outbox a contact was read back with, unless that write's publishing
        is known to have finished: this process published it (remembered by version: a
        version is written once), or its internal events are all in the event store
        (`EffectsPublisher.publish_stored`: one read). So a contact whose next event comes
        before the Segment Entered its last write emitted does not repeat that write's
        membership moves and event appends. The outbox must be the stored one, as read."""
        if self.publisher is None or not contact.outbox:
            return
        with self._published_lock:
            known = self._write_key(contact) in self._published
        if known:
            contact.outbox.clear()
        else:
            self.publisher.publish_stored(contact, self.clock.now())

    def _lookup(self, identifiers: list[str], cache: BatchCache, consistent: bool) -> dict[str, str]:
        owners = {i: cache.owners[i] for i in identifiers if i in cache.owners}
        missing = [i for i in identifiers if i not in owners]
        if missing:
            found = self.repo.lookup(missing, consistent=consistent)
            cache.owners.update(found)
            owners.update(found)
        return owners

    def _load_owners(self, owners: dict[str, str], cache: BatchCache, consistent: bool) -> dict[str, Contact]:
        """Load each owning contact, following merge pointers and healing stale identifiers."""
        contacts: dict[str, Contact] = {}
        for identifier, contact_id in owners.items():
            contact = self._follow(contact_id, cache, consistent)
            if contact.id != contact_id:
                self.repo.repoint(identifier, contact_id, contact.id)
                cache.owners[identifier] = contact.id
            contacts[contact.id] = contact
        return contacts

    def _follow(self, contact_id: str, cache: BatchCache, consistent: bool) -> Contact:
        current = contact_id
        for _ in range(MAX_POINTER_HOPS):
            contact = cache.contacts.get(current) or self.repo.get(current, consistent=consistent)
            if contact is None:
                # The identifier was claimed but the profile not written yet (a concurrent
                # creator, or one that crashed in between): write it now, conditionally.
                contact = Contact(id=current, created_at=iso(self.clock.now()))
                self.repo.create(contact)
            cache.contacts[contact.id] = contact
            if not contact.merged_into:
                return contact
            current = contact.merged_into
        raise ConcurrentUpdate(f"merge chain from {contact_id} is longer than {MAX_POINTER_HOPS}")

    def _create_for(self, identifier: str, cache: BatchCache) -> Contact:
        contact = Contact(id=self.new_id(), created_at=iso(self.clock.now()))
        owner = self.repo.claim(identifier, contact.id)
        if owner != contact.id:
            raise ConcurrentUpdate(f"{identifier} was claimed by {owner} meanwhile")
        contact.add_identifier(identifier)
        cache.owners[identifier] = contact.id
        return contact  # written once, after the event is applied

    def _merge(self, survivor: Contact, losers: list[Contact], cache: BatchCache) -> None:
        """One transaction saves the combined survivor and fences every loser (rule 2 of the
        module docstring); identifiers are re-pointed after, each only if it still points
        at its loser (rule 4: a reader meanwhile follows the losers' merge pointers)."""
        self._schedule_before_write(survivor)
        self.repo.merge(survivor, losers)
        for loser in losers:
            cache.contacts.pop(loser.id, None)
        for loser in losers:
            for identifier in loser.identifiers:
                self.repo.repoint(identifier, loser.id, survivor.id)
                cache.owners[identifier] = survivor.id
