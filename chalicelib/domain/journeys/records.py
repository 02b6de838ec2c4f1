"""An enrollment as the runtime keeps it: the engine's state plus what running it needs.

The engine (engine.py) decides; the runtime (services/journey_runtime.py) stores this record
in the enrollments table, one item per enrollment, written with optimistic locking on
`version`. Besides the engine's `Enrollment` it holds:

- `journey_version`: the version the enrollment started on (it finishes on it);
- `data`: what the trigger carried (the cart's items), handed to templates as `data`;
- `task_token`: the event wait's Step Functions token, once the wait is registered;
- `pending_event`: an awaited event that arrived before the token was registered;
- `seen`: the last signal ids applied (a signal delivered twice is applied once);
- `last`: the last Advance done — which wait it resumed (`after`), its answer and actions —
  so a retried Advance performs the same idempotent actions and gives the same answer;
- `messages`: the ids of the messages requested, newest last (the goal's attribution).

Ids are deterministic: an enrollment id derives from the journey, the contact, the key and
the signal that caused the entry, so a redelivered signal never enrolls twice. It is also
the Step Functions execution's name (at most 80 characters of `A-Za-z0-9-_`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from chalicelib.domain.journeys.engine import Enrollment, TraceEntry, WaitForEvent, WaitUntil

TRACE_KEPT = 200  # trace entries kept per enrollment; older ones are counted in `trace_dropped`
SEEN_KEPT = 50  # signal ids remembered per enrollment
MESSAGES_KEPT = 20


def enrollment_id(journey_id: str, contact_id: str, key: str | None, cause: str) -> str:
    digest = hashlib.sha256(f"{journey_id}|{contact_id}|{key or ''}|{cause}".encode()).hexdigest()[:32]
    return f"{journey_id[:40]}-{digest}"


def after_key(after: dict) -> str:
    """What identifies the wait an Advance resumes (its outcome included), for idempotency."""
    return hashlib.sha256(json.dumps(after, sort_keys=True, separators=(",", ":"), default=str).encode()
                          ).hexdigest()[:24]


@dataclass(frozen=True)
class EnrollmentRecord:
    enrollment: Enrollment
    journey_version: int
    data: dict = field(default_factory=dict)
    task_token: str | None = None
    pending_event: dict | None = None
    seen: tuple[str, ...] = ()
    last: dict | None = None  # {"after": key, "answer": {...}, "actions": [...]}
    messages: tuple[str, ...] = ()
    execution_arn: str | None = None
    trace_dropped: int = 0
    version: int = 0

    @property
    def id(self) -> str:
        return self.enrollment.id

    @property
    def running(self) -> bool:
        return not self.enrollment.finished

    def with_enrollment(self, enrollment: Enrollment) -> "EnrollmentRecord":
        trace, dropped = enrollment.trace, self.trace_dropped
        if len(trace) > TRACE_KEPT:
            dropped += len(trace) - TRACE_KEPT
            trace = trace[-TRACE_KEPT:]
        return replace(self, enrollment=replace(enrollment, trace=trace), trace_dropped=dropped)

    def saw(self, signal_id: str) -> "EnrollmentRecord":
        return replace(self, seen=(*self.seen, signal_id)[-SEEN_KEPT:])

    def sent(self, message_ids: list[str]) -> "EnrollmentRecord":
        return replace(self, messages=(*self.messages, *message_ids)[-MESSAGES_KEPT:])


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment is not None else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def waiting_doc(waiting) -> dict | None:
    if isinstance(waiting, WaitUntil):
        return {"kind": "until", "until": _iso(waiting.until)}
    if isinstance(waiting, WaitForEvent):
        return {"kind": "event", "event": waiting.event, "key": waiting.key, "deadline": _iso(waiting.deadline)}
    return None


def _waiting(doc: dict | None):
    if not doc:
        return None
    if doc["kind"] == "until":
        return WaitUntil(_moment(doc["until"]))
    return WaitForEvent(doc["event"], doc.get("key"), _moment(doc["deadline"]))


def to_doc(record: EnrollmentRecord) -> dict:
    e = record.enrollment
    return {"id": e.id, "journey_id": e.journey_id, "contact_id": e.contact_id, "entered_at": _iso(e.entered_at),
            "node": e.node, "key": e.key, "waiting": waiting_doc(e.waiting), "arms": dict(e.arms),
            "trace": [t.to_record() for t in e.trace], "status": e.status, "converted_at": _iso(e.converted_at),
            "journey_version": record.journey_version, "data": record.data, "task_token": record.task_token,
            "pending_event": record.pending_event, "seen": list(record.seen), "last": record.last,
            "messages": list(record.messages), "execution_arn": record.execution_arn,
            "trace_dropped": record.trace_dropped}


def from_doc(doc: dict, version: int) -> EnrollmentRecord:
    enrollment = Enrollment(
        id=doc["id"], journey_id=doc["journey_id"], contact_id=doc["contact_id"],
        entered_at=_moment(doc["entered_at"]), node=doc["node"], key=doc.get("key"),
        waiting=_waiting(doc.get("waiting")), arms=dict(doc.get("arms") or {}),
        trace=tuple(TraceEntry(_moment(t["at"]), t["node"], t["decision"], t["reason"]) for t in doc.get("trace", [])),
        status=doc.get("status", "active"), converted_at=_moment(doc.get("converted_at")))
    return EnrollmentRecord(enrollment=enrollment, journey_version=int(doc["journey_version"]),
                            data=doc.get("data") or {}, task_token=doc.get("task_token"),
                            pending_event=doc.get("pending_event"), seen=tuple(doc.get("seen") or ()),
                            last=doc.get("last"), messages=tuple(doc.get("messages") or ()),
                            execution_arn=doc.get("execution_arn"), trace_dropped=int(doc.get("trace_dropped", 0)),
                            version=version)
