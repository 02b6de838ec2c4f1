"""Fakes of the journey runtime's ports: the enrollments table, the journey-events queue, and a
state machine that behaves as infrastructure/enrollment-runner.asl.json does (Advance → Route
→ WaitUntil / WaitForEvent / Done, tokens, timeouts, stops), on a virtual clock.

`FakeMachine.run(runtime, clock, until)` plays the machine and its two queues: it delivers
every task message to the runtime, and when nothing is left to deliver moves the clock to the
next wait's end. Every state entered is in the execution's `history`, so a test can count
transitions as the AWS bill would.
"""
from __future__ import annotations

import copy
import itertools
import json
from datetime import datetime, timedelta, timezone

from chalicelib.domain.journeys.records import EnrollmentRecord
from chalicelib.services.journey_ports import EnrollmentConflict, EnrollmentRunner, EnrollmentStore, JourneyQueue, \
    TokenGone


class FakeEnrollmentStore(EnrollmentStore):
    def __init__(self):
        self.records: dict[str, EnrollmentRecord] = {}
        self.contact_entries: dict[tuple[str, str], dict] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.controls: dict[str, dict] = {}
        self.saves = 0

    def get(self, enrollment_id):
        return copy.deepcopy(self.records.get(enrollment_id))

    def many(self, enrollment_ids):
        return [copy.deepcopy(self.records[i]) for i in dict.fromkeys(enrollment_ids) if i in self.records]

    def entries(self, contact_id):
        return {j: copy.deepcopy(v) for (c, j), v in self.contact_entries.items() if c == contact_id}

    def create(self, record, entries_version):
        e = record.enrollment
        current = self.contact_entries.get((e.contact_id, e.journey_id))
        if e.id in self.records or (current["version"] if current else None) != entries_version:
            raise EnrollmentConflict("exists or moved")
        entries = (current["entries"] if current else []) + [
            {"id": e.id, "key": e.key, "entered_at": e.entered_at.isoformat()}]
        self.contact_entries[(e.contact_id, e.journey_id)] = {"entries": entries, "version": (entries_version or 0) + 1}
        self.records[e.id] = EnrollmentRecord(**{**copy.deepcopy(record).__dict__, "version": 1})

    def move_entries(self, from_contact, to_contact):
        moved = 0
        for (contact, journey), losing in list(self.contact_entries.items()):
            if contact != from_contact:
                continue
            keeping = self.contact_entries.get((to_contact, journey))
            known = {e["id"] for e in (keeping["entries"] if keeping else [])}
            merged = sorted((keeping["entries"] if keeping else []) + [e for e in losing["entries"]
                                                                       if e["id"] not in known],
                            key=lambda e: e["entered_at"])
            self.contact_entries[(to_contact, journey)] = {"entries": merged,
                                                           "version": (keeping["version"] if keeping else 0) + 1}
            del self.contact_entries[(contact, journey)]
            moved += len(losing["entries"])
        return moved

    def save(self, record):
        stored = self.records.get(record.id)
        if stored is None or stored.version != record.version:
            raise EnrollmentConflict("changed")
        saved = EnrollmentRecord(**{**copy.deepcopy(record).__dict__, "version": record.version + 1})
        self.records[record.id] = saved
        self.saves += 1
        return copy.deepcopy(saved)

    def running(self, journey_id, cursor=None, limit=200):
        rows = sorted((r.enrollment.node, r.id) for r in self.records.values()
                      if r.enrollment.journey_id == journey_id and r.running)
        start = int(cursor or 0)
        page = rows[start:start + limit]
        return page, (str(start + limit) if start + limit < len(rows) else None)

    def add_counts(self, journey_id, shard, counts):
        mine = self.counters.setdefault(journey_id, {})
        for name, n in counts.items():
            mine[name] = mine.get(name, 0) + n

    def counts(self, journey_id):
        return dict(self.counters.get(journey_id, {}))

    def control(self, journey_id):
        return copy.deepcopy(self.controls.get(journey_id))

    def set_control(self, journey_id, state, at, reason):
        self.controls[journey_id] = {"state": state, "at": at, "reason": reason}
        return dict(self.controls[journey_id])

    def erase_contact(self, contact_id):
        gone = [k for k in self.contact_entries if k[0] == contact_id]
        ids = [e["id"] for k in gone for e in self.contact_entries[k]["entries"]]
        for k in gone:
            del self.contact_entries[k]
        for i in ids:
            self.records.pop(i, None)
        return len(gone) + len(ids)


class FakeJourneyQueue(JourneyQueue):
    def __init__(self):
        self.sent: list[dict] = []

    def send(self, signals):
        self.sent.extend(copy.deepcopy(signals))


def machine_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


class FakeMachine(EnrollmentRunner):
    """The enrollment runner as its ASL defines it (see the module docstring)."""

    ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:mercurio-test-enrollment-runner"

    def __init__(self, clock):
        self.clock = clock
        self.executions: dict[str, dict] = {}
        self.advance_queue: list[dict] = []
        self.wait_queue: list[dict] = []
        self.tokens: dict[str, tuple[str, str]] = {}  # token -> (execution name, task state)
        self._numbers = itertools.count(1)
        self.starts = 0
        self.late_answers = 0

    def execution_arn(self, name):
        return self.ARN.replace(":stateMachine:", ":execution:") + f":{name}"

    # -- the machine's API ----------------------------------------------------------------------

    def start(self, name, payload):
        self.starts += 1
        existing = self.executions.get(name)
        if existing is not None:
            return existing["arn"]  # same name: found (the adapter treats ExecutionAlreadyExists so)
        execution = {"arn": self.execution_arn(name), "name": name, "status": "RUNNING", "history": [],
                     "state": None, "wait": copy.deepcopy(payload["wait"]), "until": None, "deadline": None,
                     "token": None, "input": payload}
        self.executions[name] = execution
        self._advance(execution)
        return execution["arn"]

    def answer(self, token, output):
        owner = self.tokens.pop(token, None)
        if owner is None:
            self.late_answers += 1
            raise TokenGone("TaskTimedOut")
        execution = self.executions[owner[0]]
        json.dumps(output)  # what Step Functions would refuse
        if owner[1] == "Advance":
            execution["wait"] = copy.deepcopy(output)
            self._route(execution)
        else:
            execution["wait"] = {**execution["wait"], "event": copy.deepcopy(output)}
            self._advance(execution)

    def fail(self, token, error, cause):
        owner = self.tokens.pop(token, None)
        if owner is None:
            raise TokenGone("TaskTimedOut")
        execution = self.executions[owner[0]]
        execution["history"].append("AdvanceFailed" if owner[1] == "Advance" else "EventWaitFailed")
        execution.update(status="FAILED", error=error, cause=cause, state=None)

    def stop(self, execution_arn, cause):
        execution = next((e for e in self.executions.values() if e["arn"] == execution_arn), None)
        if execution is None or execution["status"] != "RUNNING":
            return False
        execution.update(status="ABORTED", state=None, cause=cause)
        for token in [t for t, (name, _) in self.tokens.items() if name == execution["name"]]:
            del self.tokens[token]
        return True

    # -- states ---------------------------------------------------------------------------------

    def _token(self, execution, state):
        token = f"token-{next(self._numbers)}"
        self.tokens[token] = (execution["name"], state)
        execution["token"] = token
        return token

    def _advance(self, execution):
        execution["history"].append("Advance")
        execution["state"] = "Advance"
        token = self._token(execution, "Advance")
        self.advance_queue.append({"enrollment_id": execution["input"]["enrollment_id"],
                                   "execution_arn": execution["arn"], "task_token": token,
                                   "after": copy.deepcopy(execution["wait"])})

    def _route(self, execution):
        execution["history"].append("Route")
        kind = execution["wait"].get("kind")
        if kind == "until":
            execution["history"].append("WaitUntil")
            execution.update(state="WaitUntil", until=machine_time(execution["wait"]["at"]))
        elif kind == "event":
            execution["history"].append("WaitForEvent")
            execution.update(state="WaitForEvent",
                             deadline=self.clock.now() + timedelta(seconds=execution["wait"]["timeout_seconds"]))
            token = self._token(execution, "WaitForEvent")
            self.wait_queue.append({"enrollment_id": execution["input"]["enrollment_id"],
                                    "execution_arn": execution["arn"], "task_token": token,
                                    "wait": copy.deepcopy(execution["wait"])})
        elif kind == "done":
            execution["history"].append("Done")
            execution.update(status="SUCCEEDED", state=None)
        else:
            execution["history"].append("UnknownWait")
            execution.update(status="FAILED", state=None, error="Mercurio.UnknownWait")

    # -- time ------------------------------------------------------------------------------------

    def next_moment(self) -> datetime | None:
        moments = [e["until"] if e["state"] == "WaitUntil" else e["deadline"] for e in self.executions.values()
                   if e["status"] == "RUNNING" and e["state"] in ("WaitUntil", "WaitForEvent")]
        return min(moments) if moments else None

    def tick(self) -> None:
        now = self.clock.now()
        for execution in list(self.executions.values()):
            if execution["status"] != "RUNNING":
                continue
            if execution["state"] == "WaitUntil" and execution["until"] <= now:
                self._advance(execution)
            elif execution["state"] == "WaitForEvent" and execution["deadline"] <= now:
                self.tokens.pop(execution["token"], None)
                execution["wait"] = {**execution["wait"], "timeout": {"Error": "States.Timeout",
                                                                      "Cause": "the task timed out"}}
                self._advance(execution)

    def drain(self, runtime) -> int:
        """Deliver every queued task message to the runtime; how many were delivered."""
        delivered = 0
        while self.advance_queue or self.wait_queue:
            if self.advance_queue:
                runtime.on_advance(self.advance_queue.pop(0))
            else:
                runtime.on_event_wait(self.wait_queue.pop(0))
            delivered += 1
        return delivered

    def run(self, runtime, until: datetime) -> None:
        """Deliver, then let time pass to the next wait's end, up to `until`."""
        while True:
            self.drain(runtime)
            moment = self.next_moment()
            if moment is None or moment > until:
                if self.clock.now() < until:
                    self.clock.current = until
                return
            if moment > self.clock.now():
                self.clock.current = moment
            self.tick()

    def history(self, name: str) -> list[str]:
        return list(self.executions[name]["history"])


class RecordingMessaging:
    """MessagingService.request as the runtime uses it: one message per cause (idempotent)."""

    def __init__(self):
        self.requests: dict[str, dict] = {}
        self.calls = 0

    def request(self, contact_id, template, channel, cause, *, campaign=None, data=None, not_after=None,
                variant=None, not_before=None):
        from chalicelib.domain.messaging.messages import message_id

        self.calls += 1
        mid = message_id(cause, contact_id, template, channel)
        self.requests.setdefault(mid, {"contact_id": contact_id, "template": template, "channel": channel,
                                       "cause": cause, "campaign": campaign, "data": copy.deepcopy(data),
                                       "variant": variant})
        return mid

    def sent(self) -> list[tuple[str, str, str]]:
        return [(r["contact_id"], r["channel"], r["template"]) for r in self.requests.values()]


class RecordingEffects:
    def __init__(self):
        self.sent: list = []

    def send(self, messages):
        self.sent.extend(messages)
