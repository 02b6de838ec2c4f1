"""Run a journey for one described contact against a scripted timeline, on a virtual clock.

Days of journey pass in milliseconds: the clock jumps from one moment to the next (the next
scripted event, or the earliest wait that ends), through the same node semantics as
production (engine.py), sending nothing. Events fold into the contact as the stream would
(`apply_event`), so branch conditions see them; profile updates the journey makes apply too.
The result is every enrollment with its trace and the actions it asked for.

Segment membership is not computed here (no segment definitions run): the timeline says
when the contact enters or leaves a segment, as the segmentation would report it. Such a
change updates the contact's segments (branch conditions see it), is the goal or an exit of
running enrollments (`segment_changed`), and enrolls when it is the journey's trigger.

At one instant, waits that end then are resumed before an event of that instant is applied.

A schedule-triggered journey enrolls the contact once, at the simulation's start (as one run of
its schedule would, when the contact is in the entry segment): the trace shows the wait until the
trigger's time in the contact's zone, then the nodes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chalicelib.domain.contact import Contact, apply_event, set_traits
from chalicelib.domain.contact_state import iso_ms
from chalicelib.domain.journeys.engine import (
    ContactView,
    Enrollment,
    ProfileUpdate,
    Step,
    WaitUntil,
    advance,
    enroll,
    enroll_scheduled,
    key_of,
    may_enter,
    react,
    segment_changed,
    triggers,
)
from chalicelib.domain.journeys.language import Journey


@dataclass(frozen=True)
class Scripted:
    """What happens `after` the simulation's start: an event, or (with `segment`) the contact
    entering (`entered`) or leaving that segment."""

    after: timedelta
    event: dict | None = None  # {"event": "Order Completed", "properties": {...}}; type track by default
    segment: str | None = None
    entered: bool = True

    def __post_init__(self):
        if (self.event is None) == (self.segment is None):
            raise ValueError("a scripted step is either an event or a segment change")


@dataclass
class Simulation:
    enrollments: list[Enrollment] = field(default_factory=list)
    actions: list[tuple[datetime, str, object]] = field(default_factory=list)  # (at, enrollment id, action)
    refused: list[tuple[datetime, str]] = field(default_factory=list)  # entries refused, with the reason
    stopped_at: datetime | None = None  # set when max_steps ended the run before `until`

    def enrollment(self, key: str | None = None) -> Enrollment:
        return next(e for e in self.enrollments if e.key == key)

    def sends(self, enrollment_id: str | None = None) -> list[tuple[datetime, str, str]]:
        """(when, channel, template) of every send requested."""
        return [(at, a.channel, a.template) for at, eid, a in self.actions
                if hasattr(a, "template") and (enrollment_id is None or eid == enrollment_id)]


def simulate(journey: Journey, contact: Contact, timeline: list[Scripted], start: datetime,
             until: timedelta = timedelta(days=60), score: float = 0.0, max_steps: int | None = None) -> Simulation:
    """The journey as it would run for `contact` (left unchanged) from `start` until `start + until`.

    `max_steps` bounds the work (each resumed wait and each scripted event is one step): a
    loop through a short wait over a long span stops there, with `stopped_at` saying when."""
    contact = copy.deepcopy(contact)
    end = start + until
    result = Simulation()
    events = sorted(((start + s.after, i, s) for i, s in enumerate(timeline)), key=lambda t: (t[0], t[1]))
    position = 0
    steps = 0

    def view() -> ContactView:
        return ContactView(contact, score=score)

    def record(step: Step, index: int, at: datetime) -> None:
        result.enrollments[index] = step.enrollment
        for action in step.actions:
            result.actions.append((at, step.enrollment.id, action))
            if isinstance(action, ProfileUpdate):
                _apply_update(contact, action, at)

    if journey.trigger.kind == "schedule":
        _enter_scheduled(journey, contact, start, result, view)

    while True:
        due = [(e.waiting.until if isinstance(e.waiting, WaitUntil) else e.waiting.deadline, i)
               for i, e in enumerate(result.enrollments) if not e.finished and e.waiting is not None]
        next_wait = min(due) if due else None
        next_event = events[position] if position < len(events) else None
        if next_wait is not None and (next_event is None or next_wait[0] <= next_event[0]) and next_wait[0] <= end:
            at, index = next_wait
            if max_steps is not None and steps >= max_steps:
                result.stopped_at = at
                return result
            steps += 1
            record(advance(journey, result.enrollments[index], view(), at), index, at)
            continue
        if next_event is None or next_event[0] > end:
            return result
        at, number, scripted = next_event
        if max_steps is not None and steps >= max_steps:
            result.stopped_at = at
            return result
        steps += 1
        position += 1
        if scripted.segment is not None:
            _change_segment(journey, contact, scripted.segment, scripted.entered, at, result, record, view)
            continue
        event = {"type": "track", "messageId": f"sim-{number}", "timestamp": iso_ms(at), **scripted.event}
        apply_event(contact, event)
        for index, enrollment in enumerate(list(result.enrollments)):
            step = react(journey, enrollment, view(), event, at)
            if step is not None:
                record(step, index, at)
        if triggers(journey, event):
            key = key_of(journey, event)
            allowed, reason = may_enter(journey, view(), tuple(result.enrollments), at, key)
            if not allowed:
                result.refused.append((at, reason))
                continue
            _enter(journey, contact, at, key, result, record, view)


def _enter(journey: Journey, contact: Contact, at: datetime, key, result: Simulation, record, view) -> None:
    enrollment = enroll(journey, f"{journey.id}:{contact.id}:{len(result.enrollments) + 1}", contact.id, at, key)
    result.enrollments.append(enrollment)
    record(advance(journey, enrollment, view(), at), len(result.enrollments) - 1, at)


def _change_segment(journey: Journey, contact: Contact, segment: str, entered: bool, at: datetime,
                    result: Simulation, record, view) -> None:
    """The contact enters or leaves a segment: its membership, the running enrollments' goal
    and exits, then the trigger (a segment_entered or segment_exited journey enrolls). Entering
    a segment the contact is in, or leaving one it is not in, changes nothing: the
    segmentation reports no such change."""
    segments = dict(contact.segments or {})
    if (segment in segments) == entered:
        return
    if entered:
        segments[segment] = {"since": iso_ms(at)}
    else:
        segments.pop(segment)
    contact.segments = segments
    for index, enrollment in enumerate(list(result.enrollments)):
        step = segment_changed(journey, enrollment, segment, entered, at)
        if step is not None:
            record(step, index, at)
    trigger = journey.trigger
    if trigger.segment == segment and trigger.kind == ("segment_entered" if entered else "segment_exited"):
        allowed, reason = may_enter(journey, view(), tuple(result.enrollments), at)
        if not allowed:
            result.refused.append((at, reason))
            return
        _enter(journey, contact, at, None, result, record, view)


def _enter_scheduled(journey: Journey, contact: Contact, at: datetime, result: Simulation, view) -> None:
    allowed, reason = may_enter(journey, view(), (), at)
    if not allowed:
        result.refused.append((at, reason))
        return
    result.enrollments.append(enroll_scheduled(journey, f"{journey.id}:{contact.id}:1", contact.id, at, view()))


def _apply_update(contact: Contact, update: ProfileUpdate, at: datetime) -> None:
    set_traits(contact, dict(update.traits), iso_ms(at))
    tags = [t for t in contact.tags if t not in update.remove_tags]
    contact.tags = tags + [t for t in update.add_tags if t not in tags]

