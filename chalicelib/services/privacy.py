"""A person's right of access and to erasure (scenario 10): everything about a contact as one
JSON document, and the erasure of all of it, while an opt-out survives as a hashed
suppression entry.

Erasure runs as a job in steps, each idempotent, so a crash or a time-out resumes where it
stopped (the scheduled segment jobs continue unfinished erasures, `GET /v1/admin/erasures/{id}`
shows where one stands):
1. suppress — every email address and phone number of the contact (identifiers and the
   addresses its messages went to) becomes a suppression entry, reason `erased`: hashed
   with the installation's salt, so nothing readable remains, and nothing marketing is sent
   to that address again unless the person opts in anew;
2. memberships — the contact leaves every segment and campaign audience it is in;
3. messages — its message log entries (and their addresses) are deleted;
4. events — every event stored under its identifiers and under `contact:{id}` is deleted,
   for the contact and the profiles merged into it;
5. identities — each identifier that still points at the contact is deleted;
6. contacts — the contact item, and the merged-away items that pointed at it, are deleted;
7. journeys — the contact's journey enrollments and entries are deleted, once their executions
   have ended: each running one is first sent a stop signal on the journey-events queue (the
   Step Functions call is that queue consumer's, never this job's), and the step looks again
   at the next run until none runs (or JOURNEY_STOP_GRACE has passed: they are deleted anyway,
   and each execution then fails at its next task, which finds no enrollment). It comes after
   `contacts`: with the contact gone nothing can enroll it again, and an Advance that runs in
   between ends the enrollment on its own (the contact no longer exists);
8. exports — the audience export files of every segment the contact was in (a file holds the
   segment's members when it was taken) are deleted: a marketer who still needs one exports
   the segment again, without the person.
The job's record holds the contact id and counts; the partitions still to erase (the
identifiers) are kept only while it runs and dropped when it ends.

Not erased: what left Mercurio before the request (a file a marketer downloaded, a CRM that
received a webhook): the erasure's report names that limit.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Callable

from chalicelib.domain.contact import Contact
from chalicelib.domain.events import iso, parse_timestamp
from chalicelib.domain.identity import kind_of
from chalicelib.domain.messaging.consent import ERASED, ConsentError, ConsentState, suppress
from chalicelib.services.contacts import EVENT_PARTITION_KINDS, NotFound, contact_view
from chalicelib.services.interactions import checked_salt
from chalicelib.services.message_ports import MessageLog, SuppressionStore
from chalicelib.services.ports import Clock, ContactRepository, DefinitionStore, EventStore, MembershipStore
from chalicelib.services.privacy_ports import ContactErasure, EventErasure, ExportErasure
from chalicelib.services.segmentation import CAMPAIGN_AUDIENCE

RUNNING = "erasures-running"
STEPS = ("suppress", "memberships", "messages", "events", "identities", "contacts", "journeys", "exports")
JOURNEY_STOP_GRACE = timedelta(hours=1)  # how long the journeys step waits for the stop signals
MAX_EXPORT_EVENTS = 20_000  # a Lambda answer is at most 6 MB; the export says when it stopped
PAGE = 200
NOT_ERASED = ("copies that left Mercurio before the request: downloaded export files, webhooks a CRM received",)


def _state_name(erasure_id: str) -> str:
    return f"erasure:{erasure_id}"


def _addresses(identifiers: list[str]) -> list[tuple[str, str]]:
    """(channel, address) of each email and phone identifier."""
    found = []
    for identifier in identifiers:
        kind = kind_of(identifier)
        value = identifier.partition(":")[2]
        if kind == "email":
            found.append(("email", value))
        elif kind == "phone":
            found.append(("sms", value))
    return found


class Privacy:
    def __init__(self, contacts: ContactRepository, events: EventStore, memberships: MembershipStore,
                 state: DefinitionStore, clock: Clock, salt: bytes,
                 messages: Callable[[], MessageLog], suppressions: Callable[[], SuppressionStore],
                 score_of=None, new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
                 exports: ExportErasure | None = None, enrollments=None, journey_queue=None):
        self.contacts = contacts
        self.events = events
        self.memberships = memberships
        self.state = state
        self.clock = clock
        self.salt = checked_salt(salt)
        # The message ports are read only when an export or an erasure needs them.
        self._messages = messages
        self._suppressions = suppressions
        self.score_of = score_of
        self.new_id = new_id
        self.exports = exports
        self.enrollments = enrollments  # EnrollmentStore (journeys), and the journey-events queue
        self.journey_queue = journey_queue

    # -- export ----------------------------------------------------------------------------

    def _resolve(self, contact_id: str) -> Contact:
        contact = self.contacts.survivor(contact_id)
        if contact is None:
            raise NotFound(f"no contact {contact_id}")
        return contact

    def _partitions(self, contact: Contact) -> list[str]:
        own = [i for i in contact.identifiers if kind_of(i) in EVENT_PARTITION_KINDS]
        return own + [f"contact:{cid}" for cid in [contact.id, *contact.merged_from]]

    def _all_messages(self, contact: Contact) -> list:
        messages = []
        for cid in [contact.id, *contact.merged_from]:
            cursor = None
            while True:
                page, cursor = self._messages().for_contact(cid, limit=PAGE, cursor=cursor)
                messages += page
                if not cursor:
                    break
        return messages

    def export(self, contact_id: str) -> dict:
        contact = self._resolve(contact_id)
        events: list[dict] = []
        before, truncated = None, False
        partitions = self._partitions(contact)
        while True:
            page, before = self.events.timeline(partitions, PAGE, before)
            events += page
            if not before:
                break
            if len(events) >= MAX_EXPORT_EVENTS:
                truncated = True
                break
        profile = contact_view(contact, self.clock, self.score_of)
        return {
            "exported_at": iso(self.clock.now()),
            "contact_id": contact.id,
            "profile": {k: v for k, v in profile.items() if k not in ("identifiers", "consent")},
            "identifiers": contact.identifiers,
            "merged_from": contact.merged_from,
            "consents": ConsentState.from_document(contact.consent).to_document(),
            "events": events,
            "events_truncated": truncated,
            "messages": [m.to_document() for m in self._all_messages(contact)],
        }

    # -- erasure ---------------------------------------------------------------------------

    def start_erasure(self, contact_id: str, budget: Callable[[], bool] | None = None) -> dict:
        contact = self._resolve(contact_id)
        now = iso(self.clock.now())
        job = {"id": f"erasure-{self.new_id()}", "contact_id": contact.id, "status": "running",
               "requested_at": now, "updated_at": now, "step": STEPS[0], "done_steps": [], "counts": {},
               "not_erased": list(NOT_ERASED),
               "pending": {"contacts": [contact.id, *contact.merged_from], "identifiers": list(contact.identifiers),
                           "partitions": self._partitions(contact),
                           "segments": sorted(contact.segments)
                           + [CAMPAIGN_AUDIENCE.format(c) for c in sorted(contact.campaigns)]}}
        self.state.put_state(_state_name(job["id"]), job)
        running = self.state.get_state(RUNNING) or {"ids": []}
        self.state.put_state(RUNNING, {"ids": [*running["ids"], job["id"]]})
        return self.advance(job["id"], budget)

    def erasure(self, erasure_id: str) -> dict:
        job = self.state.get_state(_state_name(erasure_id))
        if job is None:
            raise NotFound(f"no erasure {erasure_id!r}")
        return _view(job)

    def resume(self, budget: Callable[[], bool] | None = None) -> list[dict]:
        """Continue unfinished erasures (the scheduled segment jobs call this)."""
        reports = []
        for erasure_id in list((self.state.get_state(RUNNING) or {"ids": []})["ids"]):
            if budget is not None and not budget():
                break
            reports.append(self.advance(erasure_id, budget))
        return reports

    def advance(self, erasure_id: str, budget: Callable[[], bool] | None = None) -> dict:
        """Run steps until done or `budget()` says stop; every step is saved when it ends."""
        job = self.state.get_state(_state_name(erasure_id))
        if job is None:
            raise NotFound(f"no erasure {erasure_id!r}")
        while job["status"] == "running":
            finished = getattr(self, f"_step_{job['step']}")(job)
            job["updated_at"] = iso(self.clock.now())
            if finished is None:  # the step waits for something outside the job: the next run looks again
                self.state.put_state(_state_name(erasure_id), job)
                break
            if finished:
                job["done_steps"].append(job["step"])
                index = STEPS.index(job["step"]) + 1
                if index == len(STEPS):
                    job.update(status="done", step=None, finished_at=job["updated_at"])
                    job.pop("pending", None)  # the identifiers go with everything else
                else:
                    job["step"] = STEPS[index]
            self.state.put_state(_state_name(erasure_id), job)
            if budget is not None and not budget():
                break
        if job["status"] != "running":
            running = self.state.get_state(RUNNING) or {"ids": []}
            self.state.put_state(RUNNING, {"ids": [i for i in running["ids"] if i != erasure_id]})
        return _view(job)

    def _count(self, job: dict, name: str, n: int) -> None:
        job["counts"][name] = job["counts"].get(name, 0) + n

    def _step_suppress(self, job: dict) -> bool:
        now: datetime = self.clock.now()
        pending = job["pending"]
        addresses = set(_addresses(pending["identifiers"]))
        contact_ids = pending["contacts"]
        for cid in contact_ids:
            cursor = None
            while True:
                page, cursor = self._messages().for_contact(cid, limit=PAGE, cursor=cursor)
                addresses |= {(m.channel, m.address) for m in page if m.address and m.channel in ("email", "sms")}
                if not cursor:
                    break
        suppressed = 0
        for channel, address in sorted(addresses):
            try:
                self._suppressions().add(suppress(channel, address, ERASED, now, self.salt, detail="erasure request"))
                suppressed += 1
            except ConsentError:
                continue  # not an address that can be hashed: nothing to keep
        job["counts"]["suppressed"] = suppressed
        return True

    def _step_memberships(self, job: dict) -> bool:
        left = 0
        for cid in job["pending"]["contacts"]:
            for segment_id in job["pending"]["segments"]:
                left += int(self.memberships.leave(segment_id, cid))
        self._count(job, "memberships", left)
        return True

    def _step_messages(self, job: dict) -> bool:
        self._count(job, "messages", sum(self._messages().erase_contact(cid) for cid in job["pending"]["contacts"]))
        return True

    def _step_events(self, job: dict) -> bool:
        partitions = job["pending"]["partitions"]
        if not isinstance(self.events, EventErasure):
            raise TypeError("the event store cannot erase events")
        if partitions:
            deleted, empty = self.events.erase_partition(partitions[0])
            self._count(job, "events", deleted)
            if empty:
                partitions.pop(0)
        return not partitions

    def _step_identities(self, job: dict) -> bool:
        if not isinstance(self.contacts, ContactErasure):
            raise TypeError("the contact repository cannot erase identities")
        forgotten = 0
        for identifier in job["pending"]["identifiers"]:
            owner = self.contacts.lookup([identifier], consistent=True).get(identifier)
            if owner in job["pending"]["contacts"]:
                forgotten += int(self.contacts.forget_identifier(identifier, owner))
        self._count(job, "identities", forgotten)
        return True

    def _step_contacts(self, job: dict) -> bool:
        self._count(job, "contacts", sum(int(self.contacts.delete_contact(cid)) for cid in job["pending"]["contacts"]))
        return True

    def _step_journeys(self, job: dict) -> bool | None:
        if self.enrollments is None:
            return True
        pending = job["pending"]
        contact_ids = pending["contacts"]
        ids = [entry["id"] for cid in contact_ids for journey in self.enrollments.entries(cid).values()
               for entry in journey["entries"]]
        running = [r.id for r in self.enrollments.many(ids) if r.running] if ids else []
        if running:
            now = self.clock.now()
            if pending.get("journeys_stopping") is None:
                from chalicelib.services.journey_admin import stop_signal

                self.journey_queue.send([stop_signal(eid, "erase", "the contact was erased") for eid in running])
                pending["journeys_stopping"] = iso(now)
                self._count(job, "journeys_stopped", len(running))
                return None
            if now - parse_timestamp(pending["journeys_stopping"]) < JOURNEY_STOP_GRACE:
                return None
            # The stop signals were not handled in time: the enrollments go anyway; each
            # execution fails at its next task (no enrollment), rather than keep personal data.
            self._count(job, "journeys_not_stopped", len(running))
        self._count(job, "enrollments", sum(self.enrollments.erase_contact(cid) for cid in contact_ids))
        return True

    def _step_exports(self, job: dict) -> bool:
        if self.exports is None:
            return True
        deleted = 0
        for segment_id in job["pending"]["segments"]:
            deleted += self.exports.delete(self.exports.exports_of(segment_id))
        self._count(job, "export_files", deleted)
        return True


def _view(job: dict) -> dict:
    return {k: v for k, v in job.items() if k != "pending"}
