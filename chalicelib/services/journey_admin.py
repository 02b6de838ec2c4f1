"""Operating journeys from the admin API (entrypoints/journeys.py): what a journey is doing, who
is where and why, its numbers, and its controls. The runtime (services/journey_runtime.py) runs
the enrollments; this service reads what it keeps and talks to it only through the
journey-events queue, so every Step Functions call stays in that queue's consumer.

- `definition_view`: what GET /v1/admin/journeys/{id} adds to the generic definition view
  (DefinitionService's `views` hook): the journey's state (live, paused or stopped: the
  control item) and how many enrollments wait at each node now (`waiting_now:<node>`).
- `enrollments`: a contact's enrollments in a journey (a merged contact is followed to the one
  it lives on, and the merged-away ids are read too), each with its trace and its messages as
  the message log has them now (skipped or deferred: the gate's reason).
- `stats`: the runtime's counters per node (entered, waiting now, each way out of a branch,
  split or experiment, exits, conversions), the campaign funnel of each send node
  (`journey:<journey>:<node>`, per template and arm), refusals, and per experiment node each
  arm's exposure and conversions with the sequential test's verdict (experiments.evaluate, as
  broadcasts use it; its running p-values are kept per experiment node, so a declared winner
  stays declared).
- `pause`, `resume`, `stop`: the control item. The runtime refuses entries while a journey is
  not live and holds a paused journey's enrollments. Stopping also starts a `journey-stop`
  job (services/jobs.py) that pages the running enrollments (the `running` index) and puts
  one `stop` signal each on the journey-events queue; the consumer ends each execution. A
  stop asked again sweeps again (the signals are idempotent), so nothing stays running.
- `enroll`: the API trigger, one `enroll` signal; the answer names the enrollment id it
  will have (records.enrollment_id of the journey, the contact, the key and the signal id).
- `run_schedules` (the segment jobs, every few minutes): once per UTC day per live schedule
  journey a `journey-schedule` job pages the entry segment's members and enqueues an `enroll`
  signal each (id `schedule:<journey>:<day>`); the enrollment then waits for the trigger's
  time in the contact's zone (engine.enroll_scheduled).
- `preview`: a new version checked as PUT would check it, and where the running enrollments
  stand against it (they finish on their own version; new entries take the new one).
"""
from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import date, timedelta
from typing import Callable

from chalicelib.domain.definition_errors import DefinitionError, show
from chalicelib.domain.events import iso
from chalicelib.domain.identity import InvalidIdentifier, make_identifier
from chalicelib.domain.journeys.engine import SCHEDULE_NODE
from chalicelib.domain.journeys.language import JOURNEY_ID, ExperimentNode, Journey, SendNode
from chalicelib.domain.journeys.records import EnrollmentRecord, enrollment_id, waiting_doc
from chalicelib.domain.messaging.experiments import HOLDOUT, ArmResult, Verdict, evaluate
from chalicelib.domain.messaging.messages import DEFERRED, FAILED, SKIPPED
from chalicelib.services.campaign_stats import funnel
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.definitions import decode_document
from chalicelib.services.jobs import JobError
from chalicelib.services.journey_runtime import LIVE, PAUSED, STOPPED, journey_campaign
from chalicelib.services.ports import ConcurrentUpdate

logger = logging.getLogger(__name__)

STOP_KIND, SCHEDULE_KIND = "journey-stop", "journey-schedule"
STOP_PAGE = 200  # running enrollments per stop slice (one index query, 20 queue batches)
SCHEDULE_PAGE = 500  # entry segment members per schedule slice
PREVIEW_LIMIT = 10_000  # running enrollments counted by a preview
REASON_MAX = 500
KEY_MAX = 200
CONTACT_ID_MAX = 256
DATA_MAX_BYTES = 16 * 1024  # the trigger data an API entry carries, kept on the enrollment
SIGNAL_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
API_FIELDS = ("id", "contact_id", "user_id", "email", "key", "data")
WHO = ("contact_id", "user_id", "email")
# What each kind of node records when it runs (the runtime's `<decision>:<node>` counters).
RUN_DECISIONS = {"wait": ("waiting",), "wait_until": ("waiting",), "wait_for": ("waiting",),
                 "wait_until_date": ("waiting", "passed"), "branch": ("branched",), "split": ("split",),
                 "experiment": ("arm",), "send": ("sent",), "update": ("updated",), "notify": ("notified",),
                 "exit": ("exited",), "schedule": ("waiting",)}
# Counters named `<prefix>:<x>` whose x is not a node, and per-node counters that are not decisions.
NOT_NODE_COUNTERS = ("refused", "path")
NOT_DECISIONS = ("refused", "path", "waiting_now", "converted", "no_coupon")
VERSIONS_NOTE = ("Running enrollments finish on the version they started on (each keeps its version); new "
                 "entries take the new version from the moment it is stored. A node the new version removes "
                 "or changes does not touch the enrollments running through it.")


class JourneyConflict(ConcurrentUpdate):
    """The journey's state or trigger does not allow what was asked (409, with the reason)."""


def stop_signal(enrollment: str, cause: str, reason: str) -> dict:
    """The journey-events queue's signal that ends one enrollment's execution (the runtime's
    `_stop_one`); `cause` keeps signals of different stops apart."""
    return {"kind": "stop", "id": f"{cause}:{enrollment}", "enrollment_id": enrollment, "reason": reason}


class JourneyAdmin:
    def __init__(self, definitions, store, queue, contacts, message_log, campaign_stats, memberships, clock,
                 jobs=None, new_id: Callable[[], str] = lambda: uuid.uuid4().hex):
        self.definitions = definitions  # DefinitionService: rows, versions, validation, the catalog
        self.store = store  # EnrollmentStore
        self.queue = queue  # JourneyQueue (the journey-events FIFO queue)
        self.contacts = contacts  # ContactRepository
        self.message_log = message_log
        self.campaign_stats = campaign_stats  # CampaignStats: the send nodes' funnels
        self.memberships = memberships  # MembershipStore: a schedule's entry segment
        self.clock = clock
        self.jobs = jobs  # JobRunner (set after construction: jobs run this service's slices)
        self.new_id = new_id

    # -- the journey -------------------------------------------------------------------------

    def _journey(self, journey_id: str, current: bool = True) -> tuple[dict, Journey | None]:
        """The journey's current row and parsed value (None when it no longer parses). With
        `current=False` a deleted journey answers with its last stored version: its running
        enrollments go on, and can be seen and stopped."""
        if not isinstance(journey_id, str) or not JOURNEY_ID.fullmatch(journey_id):
            raise NotFound(f"no journey {str(journey_id)[:80]!r} (a journey id is 1 to 64 lowercase letters, "
                           "digits and hyphens)")
        row = self.definitions.get("journey", journey_id)
        if row is None:
            versions = self.definitions.store.versions("journey", journey_id)
            if not versions:
                raise NotFound(f"no journey {journey_id!r}")
            stored = [v for v in versions if not v["deleted"]]
            if current or not stored:
                raise NotFound(f"journey {journey_id!r} was deleted (version {versions[-1]['version']})")
            row = self.definitions.store.get_version("journey", journey_id, stored[-1]["version"])
        reading = self.definitions.kinds.read_row(row)
        return row, (reading.value if reading.ok else None)

    def control(self, journey_id: str) -> dict:
        return self.store.control(journey_id) or {"state": LIVE, "at": None, "reason": None}

    def definition_view(self, journey_id: str, row: dict) -> dict:
        """The fields GET /v1/admin/journeys/{id} adds: state and who waits where now."""
        counts = self.store.counts(journey_id)
        reading = self.definitions.kinds.read_row(row)
        nodes = list(reading.value.nodes) if reading.ok else []
        waiting = {node: counts.get(f"waiting_now:{node}", 0) for node in nodes}
        for name, value in sorted(counts.items()):
            node = name.partition(":")[2]
            if name.startswith("waiting_now:") and node not in waiting and value:
                waiting[node] = value  # a node of an earlier version (or the schedule's wait)
        return {"state": self.control(journey_id), "waiting_now": waiting,
                "waiting_total": sum(waiting.values())}

    # -- a contact's enrollments -------------------------------------------------------------

    def enrollments(self, journey_id: str, contact_id: str | None) -> dict:
        self._journey(journey_id, current=False)
        if not isinstance(contact_id, str) or not contact_id.strip():
            raise BadQuery("contact is required: ?contact=<contact id>")
        if len(contact_id) > CONTACT_ID_MAX:
            raise BadQuery(f"contact: a contact id has at most {CONTACT_ID_MAX} characters")
        contact = self.contacts.survivor(contact_id.strip())
        if contact is None:
            raise NotFound(f"no contact {contact_id.strip()!r}")
        listed: list[dict] = []
        for cid in dict.fromkeys([contact.id, *contact.merged_from]):
            mine = self.store.entries(cid).get(journey_id)
            listed.extend(mine["entries"] if mine else [])
        records = {r.id: r for r in self.store.many([e["id"] for e in listed])} if listed else {}
        shown = []
        for entry in sorted(listed, key=lambda e: e["entered_at"], reverse=True):
            record = records.get(entry["id"])
            if record is None:
                shown.append({"id": entry["id"], "key": entry.get("key"), "entered_at": entry["entered_at"],
                              "status": "expired", "note": "a finished enrollment's record is kept 180 days"})
            else:
                shown.append(self._enrollment(record))
        answer = {"journey": journey_id, "contact": contact.id, "enrollments": shown}
        if contact.id != contact_id.strip():
            answer["merged"] = f"{contact_id.strip()} was merged into {contact.id}"
        return answer

    def _enrollment(self, record: EnrollmentRecord) -> dict:
        e = record.enrollment
        return {"id": e.id, "status": e.status, "node": e.node, "waiting": waiting_doc(e.waiting), "key": e.key,
                "version": record.journey_version, "entered_at": iso(e.entered_at),
                "converted_at": iso(e.converted_at) if e.converted_at else None, "arms": dict(e.arms),
                "data": record.data, "trace": [{**t.to_record(), "at": iso(t.at)} for t in e.trace],
                "trace_dropped": record.trace_dropped,
                "messages": [self._message(mid, e.id) for mid in record.messages]}

    def _message(self, message_id: str, enrollment: str) -> dict:
        message = self.message_log.get(message_id)
        if message is None:
            return {"id": message_id, "status": None, "reason": "not in the message log (erased, or never written)"}
        node = message.cause[len(enrollment) + 1:].rpartition(":")[0] if message.cause.startswith(enrollment + ":") \
            else None
        shown = {"id": message.id, "node": node, "channel": message.channel, "template": message.template,
                 "status": message.status, "requested_at": iso(message.requested_at), "variant": message.variant}
        if message.status in (SKIPPED, DEFERRED, FAILED):
            change = next((c for c in reversed(message.timeline) if c.status == message.status), None)
            detail = change.detail if change is not None else {}
            shown.update({"code": detail.get("code"), "reason": detail.get("reason")})
            if message.status == DEFERRED and detail.get("until"):
                shown["until"] = detail["until"]
        return shown

    # -- statistics --------------------------------------------------------------------------

    def stats(self, journey_id: str) -> dict:
        row, journey = self._journey(journey_id, current=False)
        if journey is None:
            raise JourneyConflict(f"journey {journey_id!r} version {row['version']} no longer parses: its nodes "
                                  "cannot be listed (GET /v1/admin/journeys/{id} shows the problems)")
        counts = self.store.counts(journey_id)
        nodes = []
        if journey.trigger.kind == "schedule":
            nodes.append(self._node_stats(SCHEDULE_NODE, "schedule", counts, ()))
        for node in journey.nodes.values():
            shown = self._node_stats(node.id, node.kind, counts, node.successors())
            if isinstance(node, SendNode):
                shown["messages"] = funnel(self.campaign_stats.read(journey_campaign(journey_id, node.id)))
                if counts.get(f"no_coupon:{node.id}"):
                    shown["no_coupon"] = counts[f"no_coupon:{node.id}"]
            nodes.append(shown)
        known = {n["node"] for n in nodes}
        others = sorted({name.partition(":")[2] for name in counts if name.count(":") == 1
                         and name.partition(":")[0] not in NOT_NODE_COUNTERS} - known)
        totals = {name: counts.get(name, 0) for name in ("entered", "refused", "completed", "exited", "stopped",
                                                          "converted")}
        totals["refused_while"] = {state: counts.get(f"refused:{state}", 0) for state in (PAUSED, STOPPED)}
        return {"journey": journey_id, "version": row["version"], "state": self.control(journey_id),
                "totals": totals, "nodes": nodes,
                "other_nodes": [{"node": n, "note": f"not in version {row['version']} (an earlier version's)",
                                 **self._node_stats(n, None, counts, ())} for n in others],
                "experiments": [self._experiment_stats(journey, node, counts) for node in journey.nodes.values()
                                if isinstance(node, ExperimentNode)]}

    @staticmethod
    def _node_stats(node_id: str, kind: str | None, counts: dict, successors) -> dict:
        decisions = {name.partition(":")[0]: value for name, value in sorted(counts.items())
                     if name.count(":") == 1 and name.partition(":")[2] == node_id
                     and name.partition(":")[0] not in NOT_DECISIONS}
        ran = RUN_DECISIONS.get(kind, ())
        shown = {"node": node_id, "kind": kind, "entered": sum(decisions.get(d, 0) for d in ran),
                 "waiting_now": counts.get(f"waiting_now:{node_id}", 0), "decisions": decisions,
                 "converted": counts.get(f"converted:{node_id}", 0)}
        if kind not in ("exit", None):
            shown["exited_here"] = decisions.get("exited", 0)  # a missing date, an erased contact
        targets: dict[str, list[str]] = {}
        for outcome, target in successors:
            targets.setdefault(target, []).append(outcome)
        if kind in ("branch", "split", "experiment"):
            shown["paths"] = [{"to": target, "outcomes": outcomes, "count": counts.get(f"path:{node_id}>{target}", 0)}
                              for target, outcomes in targets.items()]
        return shown

    def _experiment_stats(self, journey: Journey, node: ExperimentNode, counts: dict) -> dict:
        experiment = node.experiment
        targets = dict(node.next_by_arm)
        single = sum(isinstance(n, ExperimentNode) for n in journey.nodes.values()) == 1
        rows = [r for send in journey.nodes.values() if isinstance(send, SendNode)
                for r in self.campaign_stats.read(journey_campaign(journey.id, send.id))] if single else []
        arms, results = [], []
        for arm in experiment.arms:
            entered = counts.get(f"arm:{node.id}:{arm.name}", 0)
            converted = counts.get(f"converted_arm:{experiment.id}:{arm.name}", 0)
            shown = {"arm": arm.name, "percent": float(arm.percent), "to": targets.get(arm.name),
                     "entered": entered, "converted": converted}
            if single:
                shown["messages"] = funnel([r for r in rows if r.get("variant") == arm.name])["totals"]
            if journey.goal is not None:
                results.append(ArmResult(arm.name, entered, converted))
            elif single:
                results.append(ArmResult(arm.name, shown["messages"]["sent"], shown["messages"]["converted"]))
            if results:
                shown["rate"] = round(results[-1].rate, 6)
            arms.append(shown)
        answer = {"node": node.id, "experiment": experiment.id, "arms": arms,
                  "method": "mixture sequential probability ratio test (always valid at every look)"}
        if journey.goal is not None:
            answer["metric"] = "the journey's goal: enrollments of the arm that converted / enrollments that took it"
        elif single:
            answer["metric"] = "messages of the arm converted / sent (the journey has no goal)"
        else:
            answer["metric"] = None
            answer["verdict"] = {"winner": None, "code": "no_metric", "p_values": {},
                                 "reason": "The journey has no goal and more than one experiment, so its messages "
                                           "cannot be told apart per arm: give the journey a goal to compare arms."}
            return answer
        answer["verdict"] = self._look(journey.id, node.id, experiment.id, results)
        if any(r.name == HOLDOUT for r in results):
            answer["holdout"] = "the holdout takes its path without being sent the test; it never wins"
        return answer

    def _look(self, journey_id: str, node_id: str, experiment_id: str, results: list[ArmResult]) -> dict:
        """One look at the test: its p-values keep their running minimum across looks (kept in a
        state row), so a winner once declared stays declared, however often stats are read."""
        name = f"journey-experiment:{journey_id}:{node_id}:{experiment_id}"
        kept = self.definitions.store.get_state(name)
        previous = Verdict(kept["winner"], kept["code"], kept["reason"], dict(kept.get("p_values") or {})) \
            if kept else None
        verdict = evaluate(results, previous=previous)
        doc = {"winner": verdict.winner, "code": verdict.code, "reason": verdict.reason,
               "p_values": dict(verdict.p_values)}
        if doc != kept:
            self.definitions.store.put_state(name, doc)
        return doc

    # -- controls ----------------------------------------------------------------------------

    def pause(self, journey_id: str, body: dict | None) -> dict:
        self._journey(journey_id, current=False)
        reason = _reason(body, "paused from the admin API")
        state = self.control(journey_id)
        if state["state"] == STOPPED:
            raise JourneyConflict(f"journey {journey_id!r} is stopped: resume it before pausing it")
        changed = state["state"] != PAUSED
        if changed:
            state = self.store.set_control(journey_id, PAUSED, iso(self.clock.now()), reason)
        return {"journey": journey_id, "state": state, "changed": changed,
                "effect": "new entries are refused; running enrollments are held where they stand (looked at "
                          "again every hour) until the journey is resumed"}

    def resume(self, journey_id: str, body: dict | None) -> dict:
        self._journey(journey_id, current=False)
        reason = _reason(body, "resumed from the admin API")
        state = self.control(journey_id)
        before = state["state"]
        if before != LIVE:
            state = self.store.set_control(journey_id, LIVE, iso(self.clock.now()), reason)
        effect = {LIVE: "the journey was live: nothing changed",
                  PAUSED: "new entries are taken again; held enrollments go on at their next look (within the hour)",
                  STOPPED: "new entries are taken again; the enrollments the stop ended stay ended"}[before]
        return {"journey": journey_id, "state": state, "changed": before != LIVE, "was": before, "effect": effect}

    def stop(self, journey_id: str, body: dict | None, budget_seconds: float = 20.0) -> dict:
        """Stop the journey: no new entries, and a sweep that ends every running enrollment.
        Asked again, it answers the sweep under way, or sweeps again (nothing is stopped twice)."""
        self._journey(journey_id, current=False)
        reason = _reason(body, "stopped from the admin API")
        state = self.control(journey_id)
        already = state["state"] == STOPPED
        if not already:
            state = self.store.set_control(journey_id, STOPPED, iso(self.clock.now()), reason)
        latest = self.jobs.latest(STOP_KIND, {"journey": journey_id})
        if already and latest is not None and latest["status"] == "running":
            job = latest
        else:
            job = self.jobs.start(STOP_KIND, {"journey": journey_id}, budget_seconds=budget_seconds)
        return {"journey": journey_id, "state": state, "already_stopped": already, "job": job,
                "effect": "new entries are refused; each running enrollment is sent a stop signal and its "
                          "execution ends (GET /v1/admin/jobs/{id} follows the sweep)"}

    def check_job(self, kind: str, params: dict) -> dict:
        journey_id = params.get("journey")
        if not isinstance(journey_id, str) or not journey_id:
            raise JobError(f"{kind} needs the journey id")
        if kind == STOP_KIND:
            return {"journey": journey_id}
        day = params.get("day")
        try:
            date.fromisoformat(day)
        except (TypeError, ValueError):
            raise JobError(f"{kind} needs the day (YYYY-MM-DD), got {show(day)}") from None
        return {"journey": journey_id, "day": day}

    def stop_slice(self, params: dict, cursor, partial: dict | None) -> dict:
        """One page of the journey's running enrollments, a stop signal each."""
        journey_id = params["journey"]
        partial = dict(partial or {"pages": 0, "signalled": 0})
        control = self.store.control(journey_id)
        if control is None or control["state"] != STOPPED:
            return {"cursor": None, "partial": partial, "progress": dict(partial),
                    "result": {"journey": journey_id, **partial,
                               "interrupted": "the journey was resumed before every enrollment was signalled"}}
        page, next_cursor = self.store.running(journey_id, cursor, STOP_PAGE)
        if page:
            self.queue.send([stop_signal(eid, "stop", control["reason"] or "the journey was stopped")
                             for _, eid in page])
        partial["pages"] += 1
        partial["signalled"] += len(page)
        step = {"cursor": next_cursor, "partial": partial, "progress": dict(partial)}
        if next_cursor is None:
            step["result"] = {"journey": journey_id, **partial}
        return step

    # -- entries: the API trigger and the schedule -------------------------------------------

    def enroll(self, journey_id: str, body: dict) -> dict:
        row, journey = self._journey(journey_id)
        if journey is None:
            raise JourneyConflict(f"journey {journey_id!r} version {row['version']} no longer parses")
        if journey.trigger.kind != "api":
            raise JourneyConflict(f"journey {journey_id!r} is entered by its {journey.trigger.kind} trigger, not "
                                  "through the API (its trigger would be `api: true`)")
        problems = [f"{key}: unknown field (fields: {', '.join(API_FIELDS)})" for key in body if key not in API_FIELDS]
        who = [k for k in WHO if k in body]
        if len(who) != 1:
            problems.append(f"give exactly one of contact_id, user_id, email ({'found ' + ', '.join(who) if who else 'none given'})")
        given = body.get("contact_id")
        if "contact_id" in body and (not isinstance(given, str) or not given.strip() or len(given) > CONTACT_ID_MAX):
            problems.append(f"contact_id: expected a contact id (at most {CONTACT_ID_MAX} characters), got "
                            f"{show(given)}")
        key = body.get("key")
        if key is not None and (not isinstance(key, str) or not key.strip() or len(key) > KEY_MAX):
            problems.append(f"key: expected text of at most {KEY_MAX} characters, got {show(key)}")
        data = body.get("data", {})
        if not isinstance(data, dict):
            problems.append(f"data: expected a JSON object, got {show(data)}")
        elif len(json.dumps(data, default=str)) > DATA_MAX_BYTES:
            problems.append(f"data: larger than {DATA_MAX_BYTES // 1024} KB")
        signal_id = body.get("id")
        if signal_id is not None and (not isinstance(signal_id, str) or not SIGNAL_ID.fullmatch(signal_id)):
            problems.append(f"id: expected 1 to 128 letters, digits or . _ : @ - (the request's idempotency key), "
                            f"got {show(signal_id)}")
        if problems:
            raise DefinitionError(problems)
        contact = self._contact(who[0], body[who[0]])
        state = self.control(journey_id)
        if state["state"] != LIVE:
            raise JourneyConflict(f"journey {journey_id!r} is {state['state']}: entries are refused until it is "
                                  "resumed")
        signal_id = signal_id or self.new_id()
        key = key.strip() if isinstance(key, str) else None
        signal = {"kind": "enroll", "id": signal_id, "journey_id": journey_id, "contact_id": contact.id, "key": key,
                  "data": data, "at": iso(self.clock.now())}
        self.queue.send([signal])
        return {"journey": journey_id, "contact_id": contact.id, "key": key, "signal": signal_id,
                "enrollment_id": enrollment_id(journey_id, contact.id, key, signal_id), "status": "queued",
                "note": "the journey's entry rules decide when the signal is handled; "
                        f"GET /v1/admin/journeys/{journey_id}/enrollments?contact={contact.id} shows the enrollment"}

    def _contact(self, field: str, value):
        if field == "contact_id":
            contact = self.contacts.survivor(value.strip())
            if contact is None:
                raise NotFound(f"no contact {value.strip()!r}")
            return contact
        try:
            identifier = make_identifier("user" if field == "user_id" else "email", value)
        except InvalidIdentifier as exc:
            raise BadQuery(f"{field}: {exc}") from None
        owner = self.contacts.lookup([identifier], consistent=True).get(identifier)
        contact = self.contacts.survivor(owner) if owner else None
        if contact is None:
            raise NotFound(f"no contact is known by {identifier}")
        return contact

    def run_schedules(self, budget_seconds: float = 10.0) -> dict:
        """Start today's (UTC) run of each live schedule journey, once: the segment jobs call
        this every few minutes. A day is run when it, or the next day, is an allowed weekday
        (a contact's local day may be either), every day without weekdays."""
        today = self.clock.now().date()
        report: dict[str, list] = {"started": [], "not_today": [], "not_live": []}
        for journey in sorted((self.definitions.catalog().journeys or {}).values(), key=lambda j: j.id):
            if journey.trigger.kind != "schedule":
                continue
            weekdays = journey.trigger.weekdays
            if weekdays and today.weekday() not in weekdays and (today + timedelta(days=1)).weekday() not in weekdays:
                report["not_today"].append(journey.id)
                continue
            if self.control(journey.id)["state"] != LIVE:
                report["not_live"].append(journey.id)
                continue
            params = {"journey": journey.id, "day": today.isoformat()}
            if self.jobs.latest(SCHEDULE_KIND, params) is not None:
                continue
            job = self.jobs.start(SCHEDULE_KIND, params, budget_seconds=budget_seconds)
            report["started"].append({k: job.get(k) for k in ("id", "status", "progress")})
        return report

    def schedule_slice(self, params: dict, cursor, partial: dict | None) -> dict:
        """One page of the schedule journey's entry segment, an `enroll` signal each."""
        journey_id, day = params["journey"], params["day"]
        partial = dict(partial or {"pages": 0, "signalled": 0})
        journey = (self.definitions.catalog().journeys or {}).get(journey_id)
        if journey is None or journey.trigger.kind != "schedule" or journey.entry.segment is None:
            raise JobError(f"journey {journey_id!r} is not a live schedule journey (deleted or changed since)")
        control = self.store.control(journey_id)
        if control is not None and control["state"] != LIVE:
            return {"cursor": None, "partial": partial, "progress": dict(partial),
                    "result": {"journey": journey_id, "day": day, **partial,
                               "interrupted": f"the journey was {control['state']}"}}
        rows, next_cursor = self.memberships.members(journey.entry.segment, SCHEDULE_PAGE, cursor)
        at = iso(self.clock.now())
        signals = [{"kind": "enroll", "id": f"schedule:{journey_id}:{day}", "journey_id": journey_id,
                    "contact_id": row["contact_id"], "key": None, "data": {}, "at": at} for row in rows]
        if signals:
            self.queue.send(signals)
        partial["pages"] += 1
        partial["signalled"] += len(signals)
        step = {"cursor": next_cursor, "partial": partial, "progress": dict(partial)}
        if next_cursor is None:
            step["result"] = {"journey": journey_id, "day": day, "segment": journey.entry.segment, **partial}
        return step

    # -- before a new version goes live ------------------------------------------------------

    def preview(self, journey_id: str, body) -> dict:
        """The new document checked as PUT checks it, and what becomes of the running enrollments."""
        checked = self.definitions.validate("journey", body, journey_id)
        document = {**decode_document(body), "id": journey_id}
        new = self.definitions.kind("journey").parse(document)
        row = self.definitions.get("journey", journey_id)
        current = None
        if row is not None:
            reading = self.definitions.kinds.read_row(row)
            current = reading.value if reading.ok else None
        at: dict[str, int] = {}
        counted, cursor = 0, None
        while counted < PREVIEW_LIMIT:
            page, cursor = self.store.running(journey_id, cursor, min(STOP_PAGE, PREVIEW_LIMIT - counted))
            for node, _ in page:
                at[node] = at.get(node, 0) + 1
            counted += len(page)
            if cursor is None:
                break
        nodes = []
        for node, n in sorted(at.items(), key=lambda item: (-item[1], item[0])):
            in_new = new.trigger.kind == "schedule" if node == SCHEDULE_NODE else node in new.nodes
            shown = {"node": node, "running": n, "in_new_version": in_new}
            if current is not None and node in current.nodes:
                shown["kind_now"] = current.nodes[node].kind
            if in_new and node in new.nodes:
                shown["kind_new"] = new.nodes[node].kind
            nodes.append(shown)
        running = {"counted": counted, "complete": cursor is None}
        if cursor is not None:
            running["note"] = f"more than {PREVIEW_LIMIT:,} enrollments are running: the first {PREVIEW_LIMIT:,} " \
                              "were counted"
        return {"journey": journey_id, "valid": True, "references": checked["references"],
                "changed": checked.get("changed", True), "current_version": row["version"] if row else None,
                "running": running, "nodes": nodes, "changes": _changes(current, new), "versions": VERSIONS_NOTE}


def _changes(current: Journey | None, new: Journey) -> dict:
    if current is None:
        return {"added": sorted(new.nodes), "removed": [], "changed": [], "trigger_changed": True}
    before = (current.source_doc or {}).get("nodes") or {}
    after = (new.source_doc or {}).get("nodes") or {}
    return {"added": sorted(n for n in new.nodes if n not in current.nodes),
            "removed": sorted(n for n in current.nodes if n not in new.nodes),
            "changed": sorted(n for n in new.nodes if n in current.nodes and before.get(n) != after.get(n)),
            "trigger_changed": (current.source_doc or {}).get("trigger") != (new.source_doc or {}).get("trigger")}


def _reason(body: dict | None, default: str) -> str:
    body = body or {}
    unknown = [k for k in body if k != "reason"]
    if unknown:
        raise BadQuery(f"{', '.join(unknown)}: unknown field (the body is optional: {{\"reason\": \"...\"}})")
    reason = body.get("reason")
    if reason is None:
        return default
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX:
        raise BadQuery(f"reason: expected text of at most {REASON_MAX} characters, got {show(reason)}")
    return reason.strip()

