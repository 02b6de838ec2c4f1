"""What the live journeys listen to, so the stream signals only what concerns one of them.

An event concerns a journey when it can enroll (its trigger), end (an exit criterion), convert
(the goal) or resume (a wait_for) an enrollment; a segment change when the trigger, an exit
or the goal names the segment. Everything else never reaches the journey-events queue.
"""
from __future__ import annotations

from typing import Iterable

from chalicelib.domain.journeys.language import Journey, WaitForNode

JOURNEY_PROFILE_UPDATED = "Journey Profile Updated"  # the internal event a journey's update node records


def events_heard(journeys: Iterable[Journey]) -> set[str]:
    names: set[str] = set()
    for journey in journeys:
        if journey.trigger.kind == "event" and journey.trigger.event:
            names.add(journey.trigger.event)
        names.update(c.match.event for c in journey.exits if c.match is not None)
        if journey.goal is not None and journey.goal.match is not None:
            names.add(journey.goal.match.event)
        names.update(n.match.event for n in journey.nodes.values() if isinstance(n, WaitForNode))
    return names


def segments_heard(journeys: Iterable[Journey]) -> set[str]:
    names: set[str] = set()
    for journey in journeys:
        if journey.trigger.kind in ("segment_entered", "segment_exited") and journey.trigger.segment:
            names.add(journey.trigger.segment)
        names.update(c.segment_exited for c in journey.exits if c.segment_exited)
        if journey.goal is not None and journey.goal.segment:
            names.add(journey.goal.segment)
    return names


def signal_of(contact_id: str, event: dict) -> dict:
    """The journey-events queue's signal for an event of this contact."""
    return {"kind": "event", "id": event["messageId"], "contact_id": contact_id,
            "event": {k: event[k] for k in ("type", "event", "properties", "timestamp", "messageId") if k in event}}
