"""What a journey does for one enrollment: the node semantics, as pure functions.

`advance` runs every consecutive non-waiting node from where the enrollment stands and
returns the actions to take (sends, profile updates, notifications), the next wait (until a
moment, or for an event with a deadline) and a trace entry per node. `react` says what an
arriving event does to an enrollment (an exit, the goal, the awaited event).

Everything is a function of its inputs: a retried Advance with the same enrollment, contact
and `now` returns the same actions with the same ids (`<enrollment>:<node>:<visit>`), so a
sender that keeps the ids it has sent never sends twice. Random splits hash the enrollment
id, experiments hash the contact id (sticky across enrollments); nothing is drawn at random.

A schedule trigger's enrollment (`enroll_scheduled`) begins with a wait at SCHEDULE_NODE, until
the trigger's time of day in the contact's zone, and runs the start node when it ends.

Waits are computed in the contact's time zone (`traits.timezone`, else the last context's,
else the default), so "09:00 on weekdays" is 09:00 on the wall clock across DST changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Mapping

from chalicelib.domain.contact import Contact
from chalicelib.domain.journeys.language import (
    WEEKDAYS,
    BranchNode,
    EventMatch,
    ExitNode,
    ExperimentNode,
    Journey,
    NotifyNode,
    SendNode,
    SplitNode,
    UpdateNode,
    WaitForNode,
    WaitNode,
    WaitUntilDateNode,
    WaitUntilNode,
)
from chalicelib.domain.messaging.experiments import BUCKETS, assign, bucket_of
from chalicelib.domain.messaging.policy import first_instant_at_or_after, zone_of
from chalicelib.domain.segments.evaluator import EvaluationContext, evaluate_condition
from chalicelib.domain.segments.filters import lookup_path

# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactView:
    """What the engine may read of the contact; it never changes it."""

    contact: Contact
    score: float = 0.0
    default_zone: str = "UTC"

    @property
    def zone_name(self) -> str | None:
        for candidate in ((self.contact.traits or {}).get("timezone"),
                          (self.contact.last_context or {}).get("timezone")):
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip()
        return None

    def zone(self):
        return zone_of(self.zone_name, self.default_zone)

    def context(self) -> EvaluationContext:
        segments = self.contact.segments or {}
        return EvaluationContext(is_member=lambda s: s in segments, score_now=lambda c, now: self.score,
                                 score_crossing=lambda c, threshold, now: None,
                                 campaign_group=lambda c, campaign: None)


@dataclass(frozen=True)
class TraceEntry:
    at: datetime
    node: str
    decision: str  # sent, waiting, resumed, branched, split, arm, updated, notified, exited, goal, completed
    reason: str

    def to_record(self) -> dict:
        return {"at": self.at.isoformat(), "node": self.node, "decision": self.decision, "reason": self.reason}


@dataclass(frozen=True)
class WaitUntil:
    until: datetime


@dataclass(frozen=True)
class WaitForEvent:
    event: str
    key: str | None  # the enrollment's key the event must carry, when the node matches keys
    deadline: datetime


@dataclass(frozen=True)
class Enrollment:
    id: str
    journey_id: str
    contact_id: str
    entered_at: datetime
    node: str  # the node to run next, or the node waited at
    key: str | None = None
    waiting: WaitUntil | WaitForEvent | None = None
    arms: Mapping[str, str] = field(default_factory=dict)  # experiment id -> arm
    trace: tuple[TraceEntry, ...] = ()
    status: str = "active"  # active | exited | completed
    converted_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status != "active"


def enroll(journey: Journey, enrollment_id: str, contact_id: str, now: datetime, key: str | None = None) -> Enrollment:
    return Enrollment(id=enrollment_id, journey_id=journey.id, contact_id=contact_id, entered_at=now,
                      node=journey.start, key=key)


# Where a schedule-triggered enrollment waits for its moment before the journey's start. Not a
# node of the journey (node ids cannot begin with "@"): resuming from it moves to the start.
SCHEDULE_NODE = "@schedule"


def enroll_scheduled(journey: Journey, enrollment_id: str, contact_id: str, now: datetime, view: ContactView,
                     key: str | None = None) -> Enrollment:
    """An enrollment of a schedule trigger (`schedule: {at, weekdays}`): it begins waiting at
    SCHEDULE_NODE until the trigger's time of day, on an allowed weekday, in the contact's zone
    (the next such moment at or after `now`); when that wait ends it runs the start node."""
    trigger = journey.trigger
    if trigger.kind != "schedule" or trigger.at is None:
        raise ValueError(f"journey {journey.id} has no schedule trigger")
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    now = now.astimezone(timezone.utc)
    zone = view.zone()
    until = next_local_time(now, trigger.at, trigger.weekdays, zone)
    days = f" on {', '.join(WEEKDAYS[d] for d in trigger.weekdays)}" if trigger.weekdays else ""
    entry = TraceEntry(now, SCHEDULE_NODE, "waiting", f"the schedule: until {trigger.at:%H:%M}{days} in {zone.key} "
                                                      f"(until {until.isoformat()})")
    return Enrollment(id=enrollment_id, journey_id=journey.id, contact_id=contact_id, entered_at=now,
                      node=SCHEDULE_NODE, key=key, waiting=WaitUntil(until), trace=(entry,))


def next_local_time(now: datetime, at, weekdays: tuple[int, ...], zone) -> datetime:
    """The first moment at or after `now` at which the wall clock of `zone` reads `at`, on one
    of `weekdays` (Monday 0; empty: any day), in UTC."""
    day = now.astimezone(zone).date()
    for offset in range(8):
        candidate_day = day + timedelta(days=offset)
        if weekdays and candidate_day.weekday() not in weekdays:
            continue
        moment = first_instant_at_or_after(candidate_day, at, zone, now)
        if moment >= now:
            return moment
    raise AssertionError("a week holds every weekday")  # pragma: no cover


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendAction:
    id: str
    node: str
    template: str
    channel: str
    coupon: str | None = None  # the pool to claim a personal code from (claimed under the action's id)


@dataclass(frozen=True)
class ProfileUpdate:
    id: str
    node: str
    traits: Mapping[str, object]
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    score: float | None


@dataclass(frozen=True)
class Notification:
    id: str
    node: str
    destination: str


@dataclass(frozen=True)
class Step:
    enrollment: Enrollment
    actions: tuple = ()
    trace: tuple[TraceEntry, ...] = ()  # the entries this step added

    @property
    def wait(self) -> WaitUntil | WaitForEvent | None:
        return self.enrollment.waiting


# --- advancing -------------------------------------------------------------------------------


def advance(journey: Journey, enrollment: Enrollment, view: ContactView, now: datetime,
            event: dict | None = None) -> Step:
    """Resume a waiting enrollment (`event`: the awaited event arrived; without it, the wait
    has elapsed or timed out) and run its nodes until the next wait or the end."""
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    if enrollment.finished:
        return Step(enrollment)
    run = _Run(journey, enrollment, view, now)
    if enrollment.waiting is not None:
        run.resume(event)
    run.go()
    return run.step()


class _Run:
    def __init__(self, journey: Journey, enrollment: Enrollment, view: ContactView, now: datetime):
        self.journey, self.view, self.now = journey, view, now.astimezone(timezone.utc)
        self.state = enrollment
        self.actions: list = []
        self.added: list[TraceEntry] = []

    def note(self, node: str, decision: str, reason: str) -> None:
        self.added.append(TraceEntry(self.now, node, decision, reason))

    def visit(self, node: str) -> int:
        """How many times the node ran before (loops through a wait send again, with new ids)."""
        return sum(1 for t in (*self.state.trace, *self.added) if t.node == node and t.decision != "waiting"
                   and t.decision != "resumed")

    def action_id(self, node: str) -> str:
        return f"{self.state.id}:{node}:{self.visit(node)}"

    def move(self, target: str | None, **changes) -> None:
        if target is None:
            self.note(self.state.node, "completed", "the journey ends after this node")
            self.state = replace(self.state, status="completed", waiting=None, **changes)
        else:
            self.state = replace(self.state, node=target, waiting=None, **changes)

    def resume(self, event: dict | None) -> None:
        if self.state.node == SCHEDULE_NODE:
            self.note(SCHEDULE_NODE, "resumed", f"the scheduled time has come: to {self.journey.start}")
            self.move(self.journey.start)
            return
        node = self.journey.node(self.state.node)
        if isinstance(node, WaitForNode):
            if event is not None:
                self.note(node.id, "resumed", f"{node.match.event} arrived")
                self.move(node.on_event)
            else:
                self.note(node.id, "resumed", f"no {node.match.event} within {_words(node.timeout)}: timed out")
                self.move(node.on_timeout)
            return
        self.note(node.id, "resumed", "the wait is over")
        self.move(getattr(node, "next", None))

    def go(self) -> None:
        for _ in range(len(self.journey.nodes) + 1):  # validation refuses loops that never wait
            if self.state.finished:
                return
            node = self.journey.node(self.state.node)
            if not getattr(self, f"_{node.kind}")(node):
                return  # waiting
        raise AssertionError("a journey's loops wait")  # pragma: no cover

    def step(self) -> Step:
        enrollment = replace(self.state, trace=self.state.trace + tuple(self.added))
        return Step(enrollment, tuple(self.actions), tuple(self.added))

    def wait_until(self, node, until: datetime, reason: str) -> bool:
        self.state = replace(self.state, waiting=WaitUntil(until))
        self.note(node.id, "waiting", f"{reason} (until {until.isoformat()})")
        return False

    # node kinds: each returns True to go on, False when the enrollment now waits

    def _wait(self, node: WaitNode) -> bool:
        return self.wait_until(node, self.now + node.duration, f"wait {_words(node.duration)}")

    def _wait_until(self, node: WaitUntilNode) -> bool:
        zone = self.view.zone()
        moment = next_local_time(self.now, node.at, node.weekdays, zone)
        return self.wait_until(node, moment, f"until {node.at:%H:%M} in {zone.key}")

    def _wait_until_date(self, node: WaitUntilDateNode) -> bool:
        raw = (self.view.contact.traits or {}).get(node.trait)
        day = _date_of(raw)
        if day is None:
            self.note(node.id, "exited", f"trait {node.trait} is {'missing' if raw is None else 'not a date'}: "
                                         "no date to wait for")
            self.state = replace(self.state, status="exited", waiting=None)
            return True
        zone = self.view.zone()
        if node.yearly:
            today = self.now.astimezone(zone).date()
            for year in (today.year, today.year + 1):
                moment = _at_date(_anniversary(day, year), node, zone)
                if moment >= self.now:
                    return self.wait_until(node, moment, f"until {node.trait} ({_anniversary(day, year)}) "
                                                         f"at {node.at:%H:%M} in {zone.key}")
            raise AssertionError("next year's anniversary is ahead")  # pragma: no cover
        moment = _at_date(day, node, zone)
        if moment < self.now:
            self.note(node.id, "passed", f"{node.trait} ({day}) has passed: going on at once")
            self.move(node.next)
            return True
        return self.wait_until(node, moment, f"until {node.trait} ({day}) at {node.at:%H:%M} in {zone.key}")

    def _wait_for(self, node: WaitForNode) -> bool:
        key = self.state.key if node.match.match_key else None
        deadline = self.now + node.timeout
        self.state = replace(self.state, waiting=WaitForEvent(node.match.event, key, deadline))
        keyed = f" for {key}" if key is not None else ""
        self.note(node.id, "waiting", f"for {node.match.event}{keyed}, at most {_words(node.timeout)} "
                                      f"(until {deadline.isoformat()})")
        return False

    def _branch(self, node: BranchNode) -> bool:
        context = self.view.context()
        for path in node.paths:
            if evaluate_condition(path.condition, self.view.contact, self.now, context).member:
                self.note(node.id, "branched", f"{path.text} holds: to {path.next}")
                self.move(path.next)
                return True
        self.note(node.id, "branched", f"no condition holds: otherwise to {node.otherwise}")
        self.move(node.otherwise)
        return True

    def _split(self, node: SplitNode) -> bool:
        bucket, upper = bucket_of(f"{self.journey.id}:{node.id}", self.state.id), 0
        for percent, target in node.shares:
            upper += int(percent * 100)
            if bucket < upper or upper >= BUCKETS:
                self.note(node.id, "split", f"drawn into the {percent.normalize():f}% share: to {target}")
                self.move(target)
                return True
        raise AssertionError("shares sum to 100")  # pragma: no cover

    def _experiment(self, node: ExperimentNode) -> bool:
        experiment = node.experiment
        arm = self.state.arms.get(experiment.id) or assign(experiment, self.state.contact_id)
        target = dict(node.next_by_arm)[arm]
        self.note(node.id, "arm", f"arm {arm} of {experiment.id} (sticky for the contact): to {target}")
        self.move(target, arms={**self.state.arms, experiment.id: arm})
        return True

    def _send(self, node: SendNode) -> bool:
        self.actions.append(SendAction(self.action_id(node.id), node.id, node.template, node.channel, node.coupon))
        coupon = f" with a coupon from pool {node.coupon}" if node.coupon else ""
        self.note(node.id, "sent", f"{node.channel} {node.template}{coupon} requested "
                                   "(the send policy decides delivery)")
        self.move(node.next)
        return True

    def _update(self, node: UpdateNode) -> bool:
        self.actions.append(ProfileUpdate(self.action_id(node.id), node.id, dict(node.traits), node.add_tags,
                                          node.remove_tags, node.score))
        parts = [f"traits {', '.join(node.traits)}" if node.traits else "",
                 f"tags +{', +'.join(node.add_tags)}" if node.add_tags else "",
                 f"tags -{', -'.join(node.remove_tags)}" if node.remove_tags else "",
                 f"score {node.score:+g}" if node.score is not None else ""]
        self.note(node.id, "updated", "; ".join(p for p in parts if p))
        self.move(node.next)
        return True

    def _notify(self, node: NotifyNode) -> bool:
        self.actions.append(Notification(self.action_id(node.id), node.id, node.destination))
        self.note(node.id, "notified", f"posted to {node.destination}")
        self.move(node.next)
        return True

    def _exit(self, node: ExitNode) -> bool:
        self.note(node.id, "exited", node.reason)
        self.state = replace(self.state, status="exited", waiting=None)
        return True


# --- events ----------------------------------------------------------------------------------


def key_of(journey: Journey, event: dict) -> str | None:
    """The enrollment key an event carries (the trigger's key path), as text."""
    if journey.trigger.key is None:
        return None
    found, value = lookup_path(event, journey.trigger.key)
    return None if not found or value is None or isinstance(value, (dict, list)) else str(value)


def matches(journey: Journey, match: EventMatch, enrollment: Enrollment, event: dict) -> bool:
    if event.get("event") != match.event or not all(f.matches(event) for f in match.where):
        return False
    return not match.match_key or (enrollment.key is not None and key_of(journey, event) == enrollment.key)


def triggers(journey: Journey, event: dict) -> bool:
    trigger = journey.trigger
    return (trigger.kind == "event" and event.get("event") == trigger.event
            and all(f.matches(event) for f in trigger.where)
            and (trigger.key is None or key_of(journey, event) is not None))


def react(journey: Journey, enrollment: Enrollment, view: ContactView, event: dict, now: datetime) -> Step | None:
    """What an event does to a running enrollment: an exit criterion ends it at once; the goal
    records a conversion (within its window) and, by default, ends it; the event a wait_for
    awaits resumes it. None when the event concerns it not."""
    if enrollment.finished:
        return None
    now = now.astimezone(timezone.utc)
    for criterion in journey.exits:
        if criterion.match is not None and matches(journey, criterion.match, enrollment, event):
            entry = TraceEntry(now, enrollment.node, "exited", f"{event['event']} arrived: an exit criterion")
            return Step(replace(enrollment, status="exited", waiting=None, trace=enrollment.trace + (entry,)),
                        trace=(entry,))
    goal = journey.goal
    if goal is not None and goal.match is not None and matches(journey, goal.match, enrollment, event):
        if goal.within is not None and now - enrollment.entered_at > goal.within:
            late = TraceEntry(now, enrollment.node, "goal-late",
                              f"{event['event']} arrived after the {_words(goal.within)} conversion window")
            enrollment = replace(enrollment, trace=enrollment.trace + (late,))
            if not goal.exit:
                return Step(enrollment, trace=(late,))
        else:
            entry = TraceEntry(now, enrollment.node, "goal", f"{event['event']} arrived: the goal is reached"
                               + ("; the journey ends" if goal.exit else ""))
            state = replace(enrollment, converted_at=enrollment.converted_at or now, trace=enrollment.trace + (entry,))
            if goal.exit:
                state = replace(state, status="exited", waiting=None)
            if goal.exit or not isinstance(enrollment.waiting, WaitForEvent):
                return Step(state, trace=(entry,))
            enrollment = state
    waiting = enrollment.waiting
    if isinstance(waiting, WaitForEvent):
        node = journey.node(enrollment.node)
        if isinstance(node, WaitForNode) and matches(journey, node.match, enrollment, event) and now <= waiting.deadline:
            return advance(journey, enrollment, view, now, event=event)
    return None


def segment_changed(journey: Journey, enrollment: Enrollment, segment_id: str, entered: bool,
                    now: datetime) -> Step | None:
    """A segment change: leaving an exit segment ends the enrollment; entering a goal segment
    is the goal."""
    if enrollment.finished:
        return None
    if not entered and any(c.segment_exited == segment_id for c in journey.exits):
        entry = TraceEntry(now, enrollment.node, "exited", f"left segment {segment_id}: an exit criterion")
        return Step(replace(enrollment, status="exited", waiting=None, trace=enrollment.trace + (entry,)),
                    trace=(entry,))
    goal = journey.goal
    if entered and goal is not None and goal.segment == segment_id:
        if goal.within is not None and now - enrollment.entered_at > goal.within:
            return None
        entry = TraceEntry(now, enrollment.node, "goal", f"entered segment {segment_id}: the goal is reached")
        state = replace(enrollment, converted_at=enrollment.converted_at or now, trace=enrollment.trace + (entry,))
        if goal.exit:
            state = replace(state, status="exited", waiting=None)
        return Step(state, trace=(entry,))
    return None


def may_enter(journey: Journey, view: ContactView, previous: tuple[Enrollment, ...], now: datetime,
              key: str | None = None) -> tuple[bool, str]:
    """The entry rules, against the contact's earlier enrollments in this journey. With a keyed
    trigger, re-entry counts per key (a second cart is a new enrollment)."""
    rules = journey.entry
    if rules.segment is not None and rules.segment not in (view.contact.segments or {}):
        return False, f"not in the entry segment {rules.segment}"
    running = [e for e in previous if not e.finished]
    if any(e.node == SCHEDULE_NODE for e in running):
        # A scheduled entry waits for the next allowed moment: another would wait for the same one.
        return False, "already waiting for the schedule's next moment"
    if key is not None and any(e.key == key for e in running):
        return False, f"already enrolled for {key}"
    if len(running) >= rules.max_concurrent:
        return False, f"already in {len(running)} enrollment(s), at most {rules.max_concurrent} at once"
    same = [e for e in previous if e.key == key]
    if same and rules.re_entry == "never":
        return False, "entered before; this journey is entered once"
    if same and rules.re_entry == "after":
        last = max(e.entered_at for e in same)
        if now - last < rules.re_entry_after:
            return False, f"entered {_words(now - last)} ago; re-entry after {_words(rules.re_entry_after)}"
    return True, "entry rules met"


# --- time helpers ----------------------------------------------------------------------------


def _words(span: timedelta) -> str:
    from chalicelib.domain.durations import format_duration
    return format_duration(span)


def _date_of(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _anniversary(day: date, year: int) -> date:
    """The date's day in `year`; 29 February falls on 28 February in other years."""
    try:
        return day.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def _at_date(day: date, node: WaitUntilDateNode, zone) -> datetime:
    """The node's local time on `day`, moved by its offset (a fixed length of time)."""
    return first_instant_at_or_after(day, node.at, zone, datetime.min.replace(tzinfo=timezone.utc)) + node.offset
