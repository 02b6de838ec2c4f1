"""Simulating a stored journey for one contact: what it would do, on a virtual clock, sending nothing.

Journeys are not executed yet (definition_kinds/journey.py): this is how a marketer checks
one before it is. The body names the contact (described, or an existing one read without
changing it), a timeline of events and the span to simulate:

    {"contact": {"traits": {...}, "segments": [...], "timezone": "Europe/Paris", "consent": ["sms"]},
     "timeline": [{"at": "2026-03-02T10:00:00Z", "event": {"event": "Product Added", "properties": {...}}},
                  {"at": "2026-03-04T08:00:00Z", "segment_entered": "mql"}],
     "start": "2026-03-02T10:00:00Z", "until": "2026-03-05T10:00:00Z"}

A timeline entry is an event or a segment change (`segment_entered` / `segment_exited`: the
simulator does not compute segments, the timeline says when the contact's membership changes).

Every problem of the body is named at once (DefinitionError: a 400 with `problems`). The
work is bounded: at most MAX_TIMELINE events, a span of at most MAX_SPAN, MAX_STEPS steps.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.domain.contact import Contact
from chalicelib.domain.contact_state import iso_ms
from chalicelib.domain.definition_errors import DefinitionError, show
from chalicelib.domain.journeys.engine import Enrollment, Notification, ProfileUpdate, SendAction, WaitForEvent, \
    WaitUntil
from chalicelib.domain.journeys.simulator import Scripted, Simulation, simulate
from chalicelib.domain.segments.language import SEGMENT_ID
from chalicelib.services.contacts import NotFound
from chalicelib.services.ports import Clock

MAX_TIMELINE = 200  # scripted events
MAX_SPAN = timedelta(days=90)  # from start to until
DEFAULT_SPAN = timedelta(days=30)
MAX_STEPS = 2000  # resumed waits and scripted events
BODY_FIELDS = ("contact", "contact_id", "timeline", "start", "until")
CONTACT_FIELDS = ("id", "traits", "segments", "timezone", "consent", "tags", "score", "stage", "persona")
ENTRY_FIELDS = ("at", "event", "segment_entered", "segment_exited")
EVENT_FIELDS = ("type", "event", "properties", "context")
SIMULATED_CONTACT = "simulated-contact"


class JourneySimulations:
    def __init__(self, definitions, contacts, clock: Clock, score_of=None):
        self.definitions = definitions  # DefinitionService: the stored journey
        self.contacts = contacts  # ContactQueries: an existing contact, read only
        self.clock = clock
        self.score_of = score_of  # (contact, now) -> decayed lead score

    def simulate(self, journey_id: str, body: dict) -> dict:
        row = self.definitions.get("journey", journey_id)
        if row is None:
            raise NotFound(f"no journey {journey_id}")
        reading = self.definitions.kinds.read_row(row)
        if not reading.ok:
            raise DefinitionError([f"journey {journey_id} (version {row.get('version')}) no longer parses: {p}"
                                   for p in reading.problems])
        journey = reading.value
        problems: list[str] = []
        if not isinstance(body, dict):
            raise DefinitionError([f"body: expected a JSON object, got {show(body)}"])
        problems.extend(f"{key}: unknown field (fields: {', '.join(BODY_FIELDS)})"
                        for key in body if key not in BODY_FIELDS)
        start = _moment(body.get("start"), "start", problems) if body.get("start") is not None \
            else self.clock.now().astimezone(timezone.utc)
        until = _moment(body.get("until"), "until", problems) if body.get("until") is not None \
            else (start + DEFAULT_SPAN if start else None)
        if start and until:
            if until <= start:
                problems.append("until: must be after start")
            elif until - start > MAX_SPAN:
                problems.append(f"until: at most {MAX_SPAN.days} days after start")
        timeline = self._timeline(body.get("timeline", []), start, until, problems)
        contact, score = self._contact(body, start, problems)
        if problems:
            raise DefinitionError(problems)
        run = simulate(journey, contact, timeline, start, until - start, score=score, max_steps=MAX_STEPS)
        return {"journey": {"id": journey.id, "version": row.get("version")}, "contact": {"id": contact.id},
                "start": iso_ms(start), "until": iso_ms(until), "sent": "nothing: this is a simulation",
                "stopped_at": iso_ms(run.stopped_at) if run.stopped_at else None,
                **_trace(run)}

    # -- the body ----------------------------------------------------------------------------

    def _timeline(self, value, start, until, problems: list[str]) -> list[Scripted]:
        if not isinstance(value, list):
            problems.append(f"timeline: expected a list of {{at, event}} or {{at, segment_entered}}, got {show(value)}")
            return []
        if len(value) > MAX_TIMELINE:
            problems.append(f"timeline: at most {MAX_TIMELINE} events, got {len(value)}")
            return []
        scripted = []
        for i, entry in enumerate(value):
            where = f"timeline[{i}]"
            if not isinstance(entry, dict):
                problems.append(f"{where}: expected {{at, event}} or {{at, segment_entered}}, got {show(entry)}")
                continue
            problems.extend(f"{where}.{key}: unknown field (fields: {', '.join(ENTRY_FIELDS)})" for key in entry
                            if key not in ENTRY_FIELDS)
            at = _moment(entry.get("at"), f"{where}.at", problems)
            if at and start and until and not start <= at <= until:
                problems.append(f"{where}.at: {iso_ms(at)} is outside the simulated span "
                                f"({iso_ms(start)} to {iso_ms(until)})")
                at = None
            given = [key for key in ("event", "segment_entered", "segment_exited") if key in entry]
            if len(given) != 1:
                problems.append(f"{where}: give exactly one of event, segment_entered, segment_exited "
                                f"({'found ' + ', '.join(given) if given else 'none given'})")
                continue
            if given[0] == "event":
                event = _event(entry["event"], f"{where}.event", problems)
                if at and start and event is not None:
                    scripted.append(Scripted(at - start, event))
                continue
            segment = entry[given[0]]
            if not isinstance(segment, str) or not SEGMENT_ID.fullmatch(segment):
                problems.append(f"{where}.{given[0]}: expected a segment id such as mql, got {show(segment)}")
            elif at and start:
                scripted.append(Scripted(at - start, segment=segment, entered=given[0] == "segment_entered"))
        return scripted

    def _contact(self, body: dict, start, problems: list[str]) -> tuple[Contact, float]:
        described, contact_id = body.get("contact"), body.get("contact_id")
        if (described is None) == (contact_id is None):
            problems.append("contact: give either a contact (traits, segments, timezone…) or a contact_id, not both "
                            "or neither")
            return Contact(id=SIMULATED_CONTACT, created_at=""), 0.0
        if contact_id is not None:
            if not isinstance(contact_id, str) or not contact_id.strip() or len(contact_id) > 200:
                problems.append(f"contact_id: expected a contact id, got {show(contact_id)}")
                return Contact(id=SIMULATED_CONTACT, created_at=""), 0.0
            try:
                contact = self.contacts.contact(contact_id.strip())
            except NotFound:
                problems.append(f"contact_id: no contact {show(contact_id)}")
                return Contact(id=SIMULATED_CONTACT, created_at=""), 0.0
            score = self.score_of(contact, start) if self.score_of is not None and start else 0.0
            return contact, score
        return _described(described, start, problems)


def _described(value, start, problems: list[str]) -> tuple[Contact, float]:
    at = iso_ms(start) if start else ""
    contact = Contact(id=SIMULATED_CONTACT, created_at=at)
    if not isinstance(value, dict):
        problems.append(f"contact: expected a mapping (traits, segments, timezone…), got {show(value)}")
        return contact, 0.0
    problems.extend(f"contact.{key}: unknown field (fields: {', '.join(CONTACT_FIELDS)})"
                    for key in value if key not in CONTACT_FIELDS)
    if "id" in value:
        if isinstance(value["id"], str) and value["id"].strip() and len(value["id"]) <= 200:
            contact.id = value["id"].strip()
        else:
            problems.append(f"contact.id: expected text, got {show(value['id'])}")
    traits = value.get("traits", {})
    if isinstance(traits, dict):
        contact.traits = dict(traits)
    else:
        problems.append(f"contact.traits: expected a mapping, got {show(traits)}")
    zone = value.get("timezone")
    if zone is not None:
        try:
            ZoneInfo(zone) if isinstance(zone, str) and zone.strip() else ZoneInfo("")
            contact.traits["timezone"] = zone.strip()
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            problems.append(f"contact.timezone: {show(zone)} is not a time zone (Europe/Paris, America/New_York…)")
    for field, target in (("segments", "segments"), ("consent", "consent"), ("tags", "tags")):
        names = value.get(field, [])
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            problems.append(f"contact.{field}: expected a list of names, got {show(names)}")
            continue
        if target == "segments":
            contact.segments = {n.strip(): {"since": at} for n in names}
        elif target == "consent":  # the channels the contact granted
            contact.consent = {n.strip(): {"status": "granted", "at": at, "source": "simulation"} for n in names}
        else:
            contact.tags = list(dict.fromkeys(n.strip() for n in names))
    for field in ("stage", "persona"):
        if value.get(field) is not None:
            if isinstance(value[field], str) and value[field].strip():
                setattr(contact, field, value[field].strip())
            else:
                problems.append(f"contact.{field}: expected text, got {show(value[field])}")
    score = value.get("score", 0)
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        problems.append(f"contact.score: expected a number, got {show(score)}")
        score = 0
    return contact, float(score)


def _moment(value, where: str, problems: list[str]) -> datetime | None:
    if isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None:
            return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    problems.append(f"{where}: expected an ISO-8601 date-time such as \"2026-03-02T10:00:00Z\", got {show(value)}")
    return None


def _event(value, where: str, problems: list[str]) -> dict | None:
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a mapping with event and properties, got {show(value)}")
        return None
    found = len(problems)
    problems.extend(f"{where}.{key}: unknown field (fields: {', '.join(EVENT_FIELDS)})"
                    for key in value if key not in EVENT_FIELDS)
    if value.get("type", "track") != "track":
        problems.append(f"{where}.type: only track events are simulated, got {show(value.get('type'))}")
    name = value.get("event")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        problems.append(f"{where}.event: expected an event name such as \"Order Completed\", got {show(name)}")
    for key in ("properties", "context"):
        if key in value and not isinstance(value[key], dict):
            problems.append(f"{where}.{key}: expected a mapping, got {show(value[key])}")
    if len(problems) > found:
        return None
    return {"type": "track", "event": name.strip(), "properties": dict(value.get("properties") or {}),
            "context": dict(value.get("context") or {})}


# -- the answer ------------------------------------------------------------------------------

def _trace(run: Simulation) -> dict:
    return {"enrollments": [_enrollment(e) for e in run.enrollments],
            "actions": [{"at": iso_ms(at), "enrollment": eid, **_action(action)} for at, eid, action in run.actions],
            "refused": [{"at": iso_ms(at), "reason": reason} for at, reason in run.refused]}


def _enrollment(enrollment: Enrollment) -> dict:
    waiting = enrollment.waiting
    if isinstance(waiting, WaitUntil):
        waiting = {"until": iso_ms(waiting.until)}
    elif isinstance(waiting, WaitForEvent):
        waiting = {"event": waiting.event, "key": waiting.key, "deadline": iso_ms(waiting.deadline)}
    return {"id": enrollment.id, "key": enrollment.key, "entered_at": iso_ms(enrollment.entered_at),
            "status": enrollment.status, "node": enrollment.node, "waiting": waiting,
            "converted_at": iso_ms(enrollment.converted_at) if enrollment.converted_at else None,
            "arms": dict(enrollment.arms),
            "trace": [{**t.to_record(), "at": iso_ms(t.at)} for t in enrollment.trace]}


def _action(action) -> dict:
    if isinstance(action, SendAction):
        return {"kind": "send", "id": action.id, "node": action.node, "template": action.template,
                "channel": action.channel, "coupon": action.coupon}
    if isinstance(action, ProfileUpdate):
        return {"kind": "update", "id": action.id, "node": action.node, "traits": dict(action.traits),
                "add_tags": list(action.add_tags), "remove_tags": list(action.remove_tags), "score": action.score}
    if isinstance(action, Notification):
        return {"kind": "notify", "id": action.id, "node": action.node, "destination": action.destination}
    return {"kind": type(action).__name__}
