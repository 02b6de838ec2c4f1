"""Running journeys: enrollments on the enrollment runner (Step Functions), one per execution.

Three queue consumers call this service (entrypoints/journey_runner.py); nothing here runs in
the stream handler. The stream only puts signals on the journey-events queue (the profile
rules' outbox, services/effects.py).

- `on_signal` (journey-events queue, FIFO per contact): an event, a segment change, an API or
  schedule entry, a stop. It enrolls the contact where a trigger and the entry rules say so
  (the enrollment is stored first, then its execution started, named by the enrollment id:
  a redelivered signal finds both), and applies the event to the contact's running
  enrollments at once: an exit criterion ends one, the goal records a conversion (attributed
  to the enrollment's last message) and by default ends it, the awaited event resumes a
  wait_for (`SendTaskSuccess` with the event on the wait's task token).
- `on_advance` (the machine's Advance task): runs every consecutive non-waiting node through
  the engine (domain/journeys/engine.py), stores the enrollment with the step's actions and
  answer, performs the actions (sends through the messaging service and its policy gate,
  profile updates as internal events on the contact, notifications on the effects queue:
  each keyed by the action's deterministic id, so doing them twice does them once), then
  answers the task with the next wait. A retried Advance (same `after`) finds its step stored
  and only repeats the idempotent actions and the answer: it never sends twice.
- `on_event_wait` (the machine's WaitForEvent task): registers the wait's task token on the
  enrollment, or answers at once with an awaited event that came before the token did.

The machine's waits are the engine's waits divided by `time_scale` (1 on AWS; the local stack
runs an hour in seconds): the one place where time is scaled. The engine's own trace and
checks keep the journey's time.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from chalicelib.domain.contact_events import snapshot
from chalicelib.domain.deliveries import DeliveryMessage, delivery_id
from chalicelib.domain.events import iso
from chalicelib.domain.journeys.engine import (
    ContactView,
    Enrollment,
    Notification,
    ProfileUpdate,
    SendAction,
    Step,
    TraceEntry,
    WaitForEvent,
    WaitUntil,
    advance,
    enroll,
    enroll_scheduled,
    key_of,
    matches,
    may_enter,
    react,
    segment_changed,
    triggers,
)
from chalicelib.domain.journeys.interest import JOURNEY_PROFILE_UPDATED
from chalicelib.domain.journeys.language import ExperimentNode, Journey, WaitForNode
from chalicelib.domain.journeys.records import EnrollmentRecord, after_key, enrollment_id
from chalicelib.domain.messaging.messages import CONVERTED, StatusChange, message_id
from chalicelib.services.journey_ports import EnrollmentConflict, EnrollmentRunner, EnrollmentStore, JourneyQueue, \
    TokenGone

logger = logging.getLogger(__name__)

NOTIFY_TYPE = "journey.notify"
HOLD = timedelta(hours=1)  # a paused journey's enrollments look again this often (journey time)
MAX_MACHINE_WAIT = timedelta(days=364)  # Step Functions: a Wait or a task waits at most a year
ATTEMPTS = 5  # optimistic-lock rounds before the queue's redelivery takes over
DATA_ITEMS_KEPT = 50
DATA_BYTES_KEPT = 32_000  # the items' JSON, oldest dropped first (an enrollment item stays far below 400 KB)
LIVE, PAUSED, STOPPED = "live", "paused", "stopped"


class UnknownJourneyVersion(Exception):
    """An enrollment's journey version can no longer be read: the execution fails, visibly."""


@dataclass(frozen=True)
class Outcome:
    """What one signal or task did, for the consumer's log and metrics."""

    entered: int = 0
    refused: int = 0
    resumed: int = 0
    ended: int = 0
    answered: str | None = None


class JourneyRuntime:
    def __init__(self, *, definitions, store: EnrollmentStore, runner: EnrollmentRunner, queue: JourneyQueue,
                 contacts, messaging, message_log, effects_queue, events, clock, score_of=None, coupons=None,
                 time_scale: float = 1.0, default_zone: str = "UTC", event_ttl_days: int = 395):
        self.definitions = definitions  # DefinitionService: catalog().journeys, versions from its store
        self.store = store
        self.runner = runner
        self.queue = queue
        self.contacts = contacts  # ContactRepository (survivor)
        self.messaging = messaging  # MessagingService.request
        self.message_log = message_log  # the goal converts the last message
        self.effects_queue = effects_queue  # notify nodes' webhook deliveries
        self.events = events  # EventStore: profile updates are internal events on the contact
        self.clock = clock
        self.score_of = score_of
        self.coupons = coupons  # CouponPools, for sends that hand out a code
        self.time_scale = float(time_scale)
        self.default_zone = default_zone
        self.event_ttl_days = event_ttl_days
        self._versions: dict[tuple[str, int], Journey] = {}

    # -- journeys and their versions ---------------------------------------------------------

    def live_journeys(self) -> dict[str, Journey]:
        return dict(getattr(self.definitions.catalog(), "journeys", None) or {})

    def journey(self, journey_id: str, version: int) -> Journey:
        """The journey as it was at `version` (an enrollment finishes on the version it began)."""
        cached = self._versions.get((journey_id, version))
        if cached is not None:
            return cached
        row = self.definitions.store.get_version("journey", journey_id, version)
        reading = self.definitions.kinds.read_row(row) if row is not None else None
        if reading is None or not reading.ok:
            raise UnknownJourneyVersion(f"journey {journey_id} version {version} "
                                        + ("is not stored" if row is None else f"no longer parses: {reading.problems}"))
        self._versions[(journey_id, version)] = reading.value
        return reading.value

    def current_version(self, journey_id: str) -> int | None:
        """The live version (as the catalog, reloaded every few seconds, knows it)."""
        version = self.definitions.catalog().versions.get(("journey", journey_id))
        return int(version) if version is not None else None

    def state(self, journey_id: str) -> str:
        control = self.store.control(journey_id)
        return control["state"] if control else LIVE

    def view(self, contact) -> ContactView:
        now = self.clock.now()
        score = self.score_of(contact, now) if self.score_of is not None else 0.0
        return ContactView(contact, score=score, default_zone=self.default_zone)

    # -- signals -----------------------------------------------------------------------------

    def on_signal(self, signal: dict) -> Outcome:
        kind = signal.get("kind")
        if kind == "stop":
            return self._stop_one(signal["enrollment_id"], signal.get("reason") or "the journey was stopped")
        contact = self.contacts.survivor(signal["contact_id"])
        if contact is None:
            return Outcome()  # erased since: nothing to enroll or to react for
        if kind == "event":
            return self._on_event(contact, signal)
        if kind == "segment":
            return self._on_segment(contact, signal)
        if kind == "merged":
            # The merged contacts' enrollments now answer to the survivor's events (their
            # Advance already follows the merge to the survivor's profile).
            for loser in signal.get("merged") or []:
                if loser != contact.id:
                    self.store.move_entries(loser, contact.id)
            return Outcome()
        if kind == "enroll":
            journey = self.live_journeys().get(signal["journey_id"])
            if journey is None:
                logger.warning("enrollment asked for a journey that is not live", extra={"journey": signal["journey_id"]})
                return Outcome(refused=1)
            return self._enter(journey, contact, signal["id"], signal.get("key"), dict(signal.get("data") or {}),
                               {}, None)
        raise ValueError(f"unknown journey signal kind {kind!r}")

    def _running(self, contact_id: str) -> tuple[dict[str, dict], list[EnrollmentRecord]]:
        entries = self.store.entries(contact_id)
        ids = [e["id"] for journey in entries.values() for e in journey["entries"]]
        return entries, [r for r in self.store.many(ids) if r.running] if ids else []

    def _on_event(self, contact, signal: dict) -> Outcome:
        event = signal["event"]
        now = self.clock.now()
        entries, running = self._running(contact.id)
        outcome = Outcome()
        for record in running:
            if signal["id"] in record.seen:
                continue
            outcome = _plus(outcome, self._apply_event(record, contact, event, signal["id"], now))
        for journey in self.live_journeys().values():
            if triggers(journey, event):
                key = key_of(journey, event)
                data = {"trigger": dict(event.get("properties") or {})}
                outcome = _plus(outcome, self._enter(journey, contact, signal["id"], key, data,
                                                     entries, event))
        return outcome

    def _on_segment(self, contact, signal: dict) -> Outcome:
        segment_id, entered = signal["segment_id"], bool(signal["entered"])
        now = self.clock.now()
        entries, running = self._running(contact.id)
        outcome = Outcome()
        for record in running:
            if signal["id"] in record.seen:
                continue

            def once(current: EnrollmentRecord) -> Outcome:
                journey = self.journey(current.enrollment.journey_id, current.journey_version)
                step = segment_changed(journey, current.enrollment, segment_id, entered, now)
                if step is None:
                    return Outcome()
                if step.enrollment.finished:
                    return self._end(journey, current, step, signal["id"])
                self.store.save(current.with_enrollment(step.enrollment).saw(signal["id"]))
                self._goal(journey, current, step, now)
                return Outcome()

            outcome = _plus(outcome, self._retrying(record, signal["id"], once))
        wanted = "segment_entered" if entered else "segment_exited"
        for journey in self.live_journeys().values():
            if journey.trigger.kind == wanted and journey.trigger.segment == segment_id:
                outcome = _plus(outcome, self._enter(journey, contact, signal["id"], None,
                                                     {"segment_id": segment_id} if entered else {}, entries, None))
        return outcome

    def _retrying(self, record: EnrollmentRecord, signal_id: str, once) -> Outcome:
        """`once(record)` until it writes without meeting another writer (read again each time)."""
        for _ in range(ATTEMPTS):
            try:
                return once(record)
            except EnrollmentConflict:
                record = self.store.get(record.id)
                if record is None or not record.running or signal_id in record.seen:
                    return Outcome()
        raise EnrollmentConflict(f"enrollment {record.id} kept changing")

    # -- entering ----------------------------------------------------------------------------

    def _enter(self, journey: Journey, contact, cause: str, key: str | None, data: dict, entries: dict,
               event: dict | None) -> Outcome:
        now = self.clock.now()
        eid = enrollment_id(journey.id, contact.id, key, cause)
        mine = entries.get(journey.id) if entries else self.store.entries(contact.id).get(journey.id)
        listed = mine["entries"] if mine else []
        if any(e["id"] == eid for e in listed):
            self.runner.start(eid, _start_input(eid))  # a redelivered signal: make sure it runs
            return Outcome()
        state = self.state(journey.id)
        if state != LIVE:
            self._count(journey.id, eid, {"refused": 1, f"refused:{state}": 1})
            return Outcome(refused=1)
        previous = [r.enrollment for r in self.store.many([e["id"] for e in listed])] if listed else []
        allowed, reason = may_enter(journey, self.view(contact), tuple(previous), now, key)
        if not allowed:
            if key is not None and event is not None:
                self._add_item(journey, previous, key, event, cause)
            self._count(journey.id, eid, {"refused": 1})
            logger.info("journey entry refused", extra={"journey": journey.id, "contact": contact.id, "reason": reason})
            return Outcome(refused=1)
        version = self.current_version(journey.id)
        if version is None:
            return Outcome(refused=1)
        if event is not None:
            data = {**data, "items": _bounded_items([dict(event.get("properties") or {})])}
        first = enroll_scheduled(journey, eid, contact.id, now, self.view(contact), key) \
            if journey.trigger.kind == "schedule" else enroll(journey, eid, contact.id, now, key)
        record = EnrollmentRecord(first, journey_version=version, data=data, execution_arn=None)
        try:
            self.store.create(record, mine["version"] if mine else None)
        except EnrollmentConflict:
            if self.store.get(eid) is None:
                raise  # the entries moved under us: the signal is tried again, in order
        self.runner.start(eid, _start_input(eid))
        # A scheduled enrollment begins waiting for its moment: that wait counts as any other.
        self._count(journey.id, eid, {"entered": 1, **_step_counts(first, Step(first, trace=first.trace))})
        return Outcome(entered=1)

    def _add_item(self, journey: Journey, previous: list[Enrollment], key: str, event: dict,
                  signal_id: str) -> None:
        """Another event of a keyed trigger for a running key (a second product in the cart):
        its properties join the enrollment's data, for the templates, once (the signal is
        remembered as seen: a signal delivered again adds nothing)."""
        for enrollment in previous:
            if enrollment.key == key and not enrollment.finished:
                for _ in range(ATTEMPTS):
                    record = self.store.get(enrollment.id)
                    if record is None or not record.running or signal_id in record.seen:
                        return
                    items = list(record.data.get("items") or [])
                    items.append(dict(event.get("properties") or {}))
                    try:
                        self.store.save(replace(record, data={**record.data, "items": _bounded_items(items)}
                                                ).saw(signal_id))
                        return
                    except EnrollmentConflict:
                        continue
                return

    # -- reacting to an event ----------------------------------------------------------------

    def _apply_event(self, record: EnrollmentRecord, contact, event: dict, signal_id: str, now: datetime) -> Outcome:
        view = self.view(contact)

        def once(current: EnrollmentRecord) -> Outcome:
            journey = self.journey(current.enrollment.journey_id, current.journey_version)
            enrollment = current.enrollment
            # react() would also run the resumed nodes; here only exits and the goal are
            # decided: resuming a wait is the machine's (its Advance runs the nodes).
            step = react(journey, replace(enrollment, waiting=None), view, event, now)
            if step is not None and step.enrollment.finished:
                return self._end(journey, current, step, signal_id)
            updated = current
            if step is not None:  # the goal, without ending the journey
                updated = current.with_enrollment(replace(step.enrollment, waiting=enrollment.waiting))
            waiting, node = enrollment.waiting, journey.node(enrollment.node)
            resumes = (isinstance(waiting, WaitForEvent) and isinstance(node, WaitForNode)
                       and matches(journey, node.match, enrollment, event) and now <= waiting.deadline)
            pending = current.pending_event
            if resumes and pending is not None and pending.get("wait") == _wait_id(enrollment):
                resumes = False  # this wait was resumed already (an earlier event)
            if step is None and not resumes:
                return Outcome()
            token = current.task_token
            if resumes:
                updated = replace(updated, task_token=None, pending_event={
                    "wait": _wait_id(enrollment), "event": _small(event), "answered": token is not None})
            self.store.save(updated.saw(signal_id))
            if step is not None:
                self._goal(journey, updated, step, now)
            if resumes and token is not None:
                self._answer(token, _small(event), current.id)
            return Outcome(resumed=1 if resumes else 0)

        return self._retrying(record, signal_id, once)

    def _end(self, journey: Journey, record: EnrollmentRecord, step: Step, signal_id: str) -> Outcome:
        """An exit, or the goal that ends the journey, from outside the machine."""
        updated = replace(record.with_enrollment(step.enrollment).saw(signal_id), task_token=None)
        self.store.save(updated)
        self._goal(journey, updated, step, self.clock.now())
        self._count(journey.id, record.id, _ended_counts(record.enrollment, step.enrollment))
        self._end_execution(record, step.trace[-1].reason if step.trace else "ended")
        return Outcome(ended=1)

    def _goal(self, journey: Journey, record: EnrollmentRecord, step: Step, now: datetime) -> None:
        goal = next((t for t in step.trace if t.decision == "goal"), None)
        if goal is None:
            return
        self._count(journey.id, record.id, {"converted": 1, f"converted:{goal.node}": 1,
                                            **{f"converted_arm:{experiment}:{arm}": 1
                                               for experiment, arm in record.enrollment.arms.items()}})
        if record.messages and self.message_log is not None:
            last = record.messages[-1]
            message = self.message_log.get(last)
            if message is not None and not any(c.status == CONVERTED for c in message.timeline):
                self.message_log.advance(last, StatusChange(CONVERTED, now, {"journey": journey.id,
                                                                              "goal": goal.reason}))

    def _end_execution(self, record: EnrollmentRecord, reason: str) -> None:
        """The enrollment ended outside the machine: a registered event wait is answered (the
        next Advance finds it ended and says done); a timed wait is stopped."""
        if record.task_token:
            self._answer(record.task_token, {"ended": True}, record.id)
        elif isinstance(record.enrollment.waiting, WaitUntil):
            self.runner.stop(self.runner.execution_arn(record.id), reason)
        # Otherwise the machine is between tasks: its next Advance or event wait finds the
        # enrollment ended and ends the execution.

    # -- the machine's tasks -----------------------------------------------------------------

    def on_advance(self, message: dict) -> Outcome:
        eid, token, after = message["enrollment_id"], message["task_token"], message.get("after") or {"kind": "start"}
        key = after_key(after)
        for _ in range(ATTEMPTS):
            record = self.store.get(eid)
            if record is None:
                self._fail(token, "Mercurio.UnknownEnrollment", f"no enrollment {eid}")
                return Outcome(answered="failed")
            if record.last is not None and record.last.get("after") == key:
                return self._finish_advance(record, token, record.last)  # a retried Advance
            if not record.running:
                return self._answer_and_out(token, {"kind": "done"}, eid)
            try:
                return self._advance(record, token, after, key)
            except EnrollmentConflict:
                continue
        raise EnrollmentConflict(f"enrollment {eid} kept changing during Advance")

    def _advance(self, record: EnrollmentRecord, token: str, after: dict, key: str) -> Outcome:
        now = self.clock.now()
        enrollment = record.enrollment
        journey = self.journey(enrollment.journey_id, record.journey_version)
        if after.get("hold"):
            after = after.get("held") or {"kind": "start"}  # back from a pause: what the wait really was
        kind = after.get("kind")
        control = self.state(enrollment.journey_id)
        if control == PAUSED:
            # Hold: nothing runs, nothing is sent; the outcome of the wait that just ended is
            # carried in the answer and taken up by the first Advance after the resume.
            trace = enrollment.trace
            if not trace or trace[-1].decision != "held":
                trace += (TraceEntry(now, enrollment.node, "held",
                                     f"the journey is paused: looking again every {_hours(HOLD)}"),)
            number = _round(record)
            answer = {"kind": "until", "at": self._machine_until(now + HOLD, now), "hold": True,
                      "held": {k: v for k, v in after.items() if k not in ("hold", "held")}, "round": number}
            last = {"after": key, "answer": answer, "actions": [], "round": number}
            self.store.save(replace(record.with_enrollment(replace(enrollment, trace=trace)), last=last))
            return self._finish_advance(record, token, last)
        contact = self.contacts.survivor(enrollment.contact_id)
        if control == STOPPED:
            # Stopping signals each running enrollment (services/journey_admin.py); one that the
            # sweep missed (it entered as the journey stopped) ends at its next Advance.
            gone = TraceEntry(now, enrollment.node, "stopped", "the journey was stopped")
            step = Step(replace(enrollment, status="stopped", waiting=None, trace=enrollment.trace + (gone,)),
                        trace=(gone,))
        elif contact is None:
            gone = TraceEntry(now, enrollment.node, "exited", "the contact no longer exists (erased)")
            step = Step(replace(enrollment, status="exited", waiting=None, trace=enrollment.trace + (gone,)),
                        trace=(gone,))
        elif kind == "until" and after.get("partial") and isinstance(enrollment.waiting, WaitUntil) \
                and enrollment.waiting.until > now + timedelta(seconds=self.time_scale):
            step = Step(enrollment)  # a wait longer than the machine allows, in pieces
        elif kind == "start":
            step = advance(journey, enrollment, self.view(contact), now) if enrollment.waiting is None \
                and not enrollment.trace else Step(enrollment)
        elif enrollment.waiting is None:
            step = Step(enrollment)  # nothing waited: answer where it stands
        elif kind == "event":
            event = after.get("event")
            if isinstance(event, dict) and event.get("ended"):
                step = Step(enrollment)
            elif "timeout" in after or not isinstance(event, dict):
                step = advance(journey, enrollment, self.view(contact), now)
            else:
                step = advance(journey, enrollment, self.view(contact), now, event=event)
        else:
            step = advance(journey, enrollment, self.view(contact), now)
        actions = [_action_doc(a, step.enrollment) for a in step.actions]
        number = _round(record)
        # The answer becomes the machine's `$.wait`, so the next Advance's `after` carries the
        # round: two rounds that end alike (two 1-second timeouts) are never taken for a retry.
        answer = {**self._answer_for(step.enrollment, now), "round": number}
        messages = [message_id(a["id"], enrollment.contact_id, a["template"], a["channel"])
                    for a in actions if a["kind"] == "send"]
        last = {"after": key, "answer": answer, "actions": actions, "round": number}
        updated = record.with_enrollment(step.enrollment).sent(messages)
        updated = replace(updated, last=last, task_token=None,
                          pending_event=record.pending_event if _wait_id(step.enrollment) == _wait_id(enrollment)
                          else None)
        self.store.save(updated)
        self._count(journey.id, record.id, {**_step_counts(enrollment, step), **_arm_counts(journey, step)})
        if step.enrollment.finished and not enrollment.finished:
            ended = _ended_counts(enrollment, step.enrollment)
            if any(t.decision == "resumed" for t in step.trace):
                ended.pop(f"waiting_now:{enrollment.node}", None)  # the step's own counts left the wait
            self._count(journey.id, record.id, ended)
        return self._finish_advance(updated, token, last)

    def _finish_advance(self, record: EnrollmentRecord, token: str, last: dict) -> Outcome:
        for action in last["actions"]:
            self._perform(record, action)
        return self._answer_and_out(token, last["answer"], record.id)

    def _answer_and_out(self, token: str, answer: dict, eid: str) -> Outcome:
        self._answer(token, answer, eid)
        return Outcome(answered=answer["kind"])

    def on_event_wait(self, message: dict) -> Outcome:
        eid, token = message["enrollment_id"], message["task_token"]
        for _ in range(ATTEMPTS):
            record = self.store.get(eid)
            if record is None:
                self._fail(token, "Mercurio.UnknownEnrollment", f"no enrollment {eid}")
                return Outcome(answered="failed")
            if not record.running or not isinstance(record.enrollment.waiting, WaitForEvent):
                self._answer(token, {"ended": True}, eid)  # Advance answers from where it stands
                return Outcome(answered="ended")
            pending = record.pending_event
            if pending is not None and pending.get("wait") == _wait_id(record.enrollment):
                if pending.get("answered"):  # a retried wait task (a new token): the same answer
                    self._answer(token, pending["event"], eid)
                    return Outcome(answered="event")
                try:
                    self.store.save(replace(record, pending_event={**pending, "answered": True}))
                except EnrollmentConflict:
                    continue
                self._answer(token, pending["event"], eid)
                return Outcome(resumed=1, answered="event")
            try:
                self.store.save(replace(record, task_token=token))
                return Outcome(answered="registered")
            except EnrollmentConflict:
                continue
        raise EnrollmentConflict(f"enrollment {eid} kept changing while its wait registered")

    # -- performing --------------------------------------------------------------------------

    def _perform(self, record: EnrollmentRecord, action: dict) -> None:
        enrollment = record.enrollment
        kind = action["kind"]
        if kind == "send":
            data = {**record.data, "journey": {"id": enrollment.journey_id, "node": action["node"],
                                                 "enrollment": enrollment.id}}
            if action.get("coupon"):
                code = self.coupons.claim(action["coupon"], action["id"]) if self.coupons is not None else None
                if code is None:
                    self._count(enrollment.journey_id, enrollment.id, {f"no_coupon:{action['node']}": 1})
                    logger.warning("no coupon left", extra={"pool": action["coupon"], "enrollment": enrollment.id})
                    return
                data["coupon"] = code
            self.messaging.request(enrollment.contact_id, action["template"], action["channel"], action["id"],
                                   campaign=journey_campaign(enrollment.journey_id, action["node"]), data=data,
                                   variant=action.get("variant"))
        elif kind == "update":
            self._record_update(enrollment, action)
        elif kind == "notify":
            contact = self.contacts.survivor(enrollment.contact_id)
            if contact is None:
                return
            now = self.clock.now()
            payload = {"type": NOTIFY_TYPE, "journey_id": enrollment.journey_id, "node": action["node"],
                       "enrollment_id": enrollment.id, "at": iso(now),
                       "contact": snapshot(contact, self.view(contact).score).as_payload()}
            self.effects_queue.send([DeliveryMessage(delivery_id=delivery_id(action["id"], action["destination"]),
                                                     destination_id=action["destination"], payload=payload,
                                                     enqueued_at=iso(now))])

    def _record_update(self, enrollment: Enrollment, action: dict) -> None:
        from chalicelib.services.effects import internal_partition, internal_sort
        from chalicelib.services.ports import StoredEvent
        from chalicelib.services.segmentation import internal_event

        now = self.clock.now()
        properties = {k: action[k] for k in ("traits", "add_tags", "remove_tags", "score") if action.get(k)}
        properties.update({"journey_id": enrollment.journey_id, "node": action["node"]})
        event = internal_event(enrollment.contact_id, JOURNEY_PROFILE_UPDATED, properties, now, action["id"])
        ttl = int((now + timedelta(days=self.event_ttl_days)).timestamp())
        self.events.append([StoredEvent(partition=internal_partition(event), sort=internal_sort(event), body=event,
                                        ttl=ttl)])

    # -- answering the machine ---------------------------------------------------------------

    def _answer_for(self, enrollment: Enrollment, now: datetime) -> dict:
        if enrollment.finished:
            return {"kind": "done"}
        waiting = enrollment.waiting
        if isinstance(waiting, WaitUntil):
            partial = waiting.until - now > MAX_MACHINE_WAIT * self.time_scale
            target = now + MAX_MACHINE_WAIT * self.time_scale if partial else waiting.until
            answer = {"kind": "until", "at": self._machine_until(target, now)}
            return {**answer, "partial": True} if partial else answer
        if isinstance(waiting, WaitForEvent):
            seconds = (waiting.deadline - now).total_seconds() / self.time_scale
            return {"kind": "event", "timeout_seconds": max(1, min(int(math.ceil(seconds)),
                                                                  int(MAX_MACHINE_WAIT.total_seconds())))}
        raise AssertionError("a running enrollment that does not wait after Advance")  # pragma: no cover

    def _machine_until(self, target: datetime, now: datetime) -> str:
        """The machine's moment for a journey moment: scaled from now, rounded up to the second
        (Step Functions' Wait takes whole seconds), in UTC."""
        machine = now + (target - now) / self.time_scale
        seconds = math.ceil(machine.timestamp())
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _answer(self, token: str, output: dict, eid: str) -> None:
        try:
            self.runner.answer(token, output)
        except TokenGone as exc:
            # The wait timed out, or the execution was stopped: what the enrollment does next is
            # decided by the Advance that follows (or nothing, once stopped).
            logger.info("task token no longer waits", extra={"enrollment": eid, "reason": str(exc)})

    def fail_task(self, token: str, error: str, cause: str) -> None:
        """End the execution with this error (an enrollment the runtime cannot run)."""
        self._fail(token, error, cause)

    def _fail(self, token: str, error: str, cause: str) -> None:
        logger.error("enrollment task failed", extra={"error": error, "cause": cause})
        try:
            self.runner.fail(token, error, cause)
        except TokenGone:
            pass

    # -- stopping ----------------------------------------------------------------------------

    def _stop_one(self, eid: str, reason: str) -> Outcome:
        for _ in range(ATTEMPTS):
            record = self.store.get(eid)
            if record is None or not record.running:
                return Outcome()
            now = self.clock.now()
            entry = TraceEntry(now, record.enrollment.node, "stopped", reason)
            ended = replace(record.enrollment, status="stopped", waiting=None,
                            trace=record.enrollment.trace + (entry,))
            try:
                self.store.save(replace(record.with_enrollment(ended), task_token=None))
            except EnrollmentConflict:
                continue
            self._count(record.enrollment.journey_id, eid, _ended_counts(record.enrollment, ended))
            self.runner.stop(self.runner.execution_arn(eid), reason)
            return Outcome(ended=1)
        raise EnrollmentConflict(f"enrollment {eid} kept changing while stopping")

    # -- counting ----------------------------------------------------------------------------

    def _count(self, journey_id: str, eid: str, counts: dict[str, int]) -> None:
        self.store.add_counts(journey_id, _shard(eid), counts)


def journey_campaign(journey_id: str, node: str) -> str:
    """The campaign a journey's send reports under: its funnel per node (and per arm)."""
    return f"journey:{journey_id}:{node}"


def _bounded_items(items: list[dict]) -> list[dict]:
    """The newest items, at most DATA_ITEMS_KEPT and DATA_BYTES_KEPT of JSON."""
    import json

    kept = list(items[-DATA_ITEMS_KEPT:])
    while len(kept) > 1 and len(json.dumps(kept, default=str)) > DATA_BYTES_KEPT:
        kept.pop(0)
    if kept and len(json.dumps(kept, default=str)) > DATA_BYTES_KEPT:
        kept = [{"truncated": True}]
    return kept


def _round(record: EnrollmentRecord) -> int:
    """The number of this Advance in the enrollment (1 for the first)."""
    return int((record.last or {}).get("round", 0)) + 1


def _start_input(eid: str) -> dict:
    return {"enrollment_id": eid, "wait": {"kind": "start"}}


def _wait_id(enrollment: Enrollment) -> str | None:
    waiting = enrollment.waiting
    if isinstance(waiting, WaitForEvent):
        return f"{enrollment.node}@{waiting.deadline.isoformat()}"
    return None


def _small(event: dict) -> dict:
    """What the machine carries of an event (Step Functions' payloads stop at 256 KB)."""
    return {k: event[k] for k in ("type", "event", "properties", "timestamp", "messageId") if k in event}


def _action_doc(action, enrollment: Enrollment) -> dict:
    if isinstance(action, SendAction):
        doc = {"kind": "send", "id": action.id, "node": action.node, "template": action.template,
               "channel": action.channel}
        coupon = getattr(action, "coupon", None)
        if coupon:
            doc["coupon"] = coupon
        if enrollment.arms:
            doc["variant"] = ",".join(f"{v}" for _, v in sorted(enrollment.arms.items()))
        return doc
    if isinstance(action, ProfileUpdate):
        return {"kind": "update", "id": action.id, "node": action.node, "traits": dict(action.traits),
                "add_tags": list(action.add_tags), "remove_tags": list(action.remove_tags), "score": action.score}
    if isinstance(action, Notification):
        return {"kind": "notify", "id": action.id, "node": action.node, "destination": action.destination}
    raise TypeError(f"unknown journey action {action!r}")


def _step_counts(before: Enrollment, step: Step) -> dict[str, int]:
    """Per-node counters of one Advance: every decision at every node, each way taken out of a
    branch, split or experiment, and how many wait at each node now (+1 when a wait begins,
    -1 when it ends)."""
    counts: dict[str, int] = {}

    def add(name: str, n: int = 1) -> None:
        counts[name] = counts.get(name, 0) + n

    entries = step.trace
    for i, entry in enumerate(entries):
        add(f"{entry.decision}:{entry.node}")
        if entry.decision == "waiting":
            add(f"waiting_now:{entry.node}")
        if entry.decision == "resumed":
            add(f"waiting_now:{entry.node}", -1)
        if entry.decision in ("branched", "split", "arm") and i + 1 < len(entries):
            add(f"path:{entry.node}>{entries[i + 1].node}")
    return counts


def _arm_counts(journey: Journey, step: Step) -> dict[str, int]:
    """Each experiment arm taken in this step (`arm:<node>:<arm>`): an arm's exposure in the
    journey's stats, beside the goal's conversions per arm (`converted_arm:<experiment>:<arm>`)."""
    counts: dict[str, int] = {}
    for entry in step.trace:
        node = journey.nodes.get(entry.node) if entry.decision == "arm" else None
        arm = step.enrollment.arms.get(node.experiment.id) if isinstance(node, ExperimentNode) else None
        if arm is not None:
            name = f"arm:{entry.node}:{arm}"
            counts[name] = counts.get(name, 0) + 1
    return counts


def _ended_counts(before: Enrollment, after: Enrollment) -> dict[str, int]:
    counts = {after.status: 1}
    if isinstance(before.waiting, (WaitUntil, WaitForEvent)):
        counts[f"waiting_now:{before.node}"] = -1
    return counts


def _shard(eid: str) -> int:
    return sum(eid.encode()) % 8


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} hour(s)"


def _plus(a: Outcome, b: Outcome) -> Outcome:
    return Outcome(entered=a.entered + b.entered, refused=a.refused + b.refused, resumed=a.resumed + b.resumed,
                   ended=a.ended + b.ended, answered=b.answered or a.answered)
