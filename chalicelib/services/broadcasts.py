"""Broadcasts: launch (snapshot the segment, fan out through SQS), the A/B test's verdict,
the rest sent the winner (or the fallback), and the campaign's stats.

Launch. `launch(id)` (the admin API, or the scheduled jobs Lambda once the broadcast's first
moment has come) freezes the definition as it is now in the state row `broadcast:<id>` and
starts a `broadcast-launch` job (services/jobs.py). Each slice reads one page of the segment's
members (PAGE_SIZE), stores that page as snapshot page n (`broadcast-snapshot:<id>:<n>`, so the
rest can later be sent to exactly the members of launch time) and puts the page on the fan-out
queue in batches of FANOUT_BATCH contact ids. The fan-out consumer (`fan_out`) reads the batch's
contacts in one batched read and, for each, asks MessagingService.request for the planned
message (domain/messaging/broadcasts.plan_for: arm, template, moment in the contact's zone),
with cause `broadcast:<id>`, campaign = the broadcast's campaign or its id, variant = the arm,
and `not_before` = the contact's moment (the message waits as `deferred`, code `scheduled`;
the gate decides at that moment).

Throttling. A fan-out queue message holds at most 100 contacts; its consumer takes one queue
message per invocation with at most FANOUT_CONCURRENCY invocations at a time (the event source
mapping's maximum concurrency), so a launch adds at most about 2 × 100 requests per second
per invocation to the messages queue, whose consumer is itself held to SES's send rate by the
gate. A slow launch never delays the sends already due.

Exactly once. Message ids are deterministic (cause, contact, template, channel) and created
by a conditional write; the send claims the message conditionally before the provider call.
A launch slice that dies after fanning out its page runs again from the same cursor, rewrites
the same snapshot page and enqueues the same batches; a redelivered fan-out batch asks for the
same ids: nobody is asked twice, and nobody is skipped because the job's cursor only moves
once the page is out.

Holdout. A holdout contact is sent nothing but is recorded: a message (id from the cause,
the contact and the template slot `holdout`) created directly `skipped` with reason code
`holdout`, variant `holdout`, in the broadcast's campaign. It shows on the contact, is counted
in the funnel (`skipped:holdout`), is never counted against a frequency cap, and is the
holdout's exposure for the campaign's lift.

The test and the rest. Exposure of an arm is its `sent` count, its successes the first
entries into the experiment's metric (opened, clicked or converted), both from the campaign
counters. The verdict is experiments.evaluate (mSPRT, valid at every look); the scheduled
check keeps its running p-values in the state row. With `test_percent`, the contacts outside
the test share wait (nothing is requested for them at launch); once a winner is declared, or
when `decide_by` has passed since the launch without one (the `fallback` arm, and the reason
recorded), a second `broadcast-launch` job in phase `rest` walks the snapshot pages and fans
them out again with that arm: variant `rest`, the chosen arm's template.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.events import iso, parse_timestamp
from chalicelib.domain.messaging.broadcasts import REST, Broadcast, parse_broadcast, plan_for
from chalicelib.domain.messaging.experiments import HOLDOUT, ArmResult, Verdict, evaluate
from chalicelib.domain.messaging.messages import SKIPPED, Message, StatusChange, message_id
from chalicelib.domain.messaging.policy import ContactSendState
from chalicelib.services.broadcast_ports import CampaignStats, FanOutQueue
from chalicelib.services.campaign_stats import funnel
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.jobs import JobError
from chalicelib.services.message_ports import MessageLog
from chalicelib.services.ports import Clock, ConcurrentUpdate, ContactRepository, DefinitionStore, MembershipStore

KIND = "broadcast-launch"
PAGE_SIZE = 500  # members per launch slice (one snapshot page)
FANOUT_BATCH = 100  # contacts per fan-out queue message: one batched contact read
FANOUT_CONCURRENCY = 2  # fan-out consumers at a time (the queue mapping's maximum concurrency)
LAUNCH, REST_PHASE = "launch", "rest"


class AlreadyLaunched(ConcurrentUpdate):
    """A broadcast launches once (409)."""


def _state(broadcast_id: str) -> str:
    return f"broadcast:{broadcast_id}"


def _page(broadcast_id: str, number: int) -> str:
    return f"broadcast-snapshot:{broadcast_id}:{number}"


def verdict_document(verdict: Verdict) -> dict:
    return {"winner": verdict.winner, "code": verdict.code, "reason": verdict.reason,
            "p_values": dict(verdict.p_values)}


def _verdict(doc: dict | None) -> Verdict | None:
    if not doc:
        return None
    return Verdict(doc.get("winner"), doc["code"], doc.get("reason", ""), dict(doc.get("p_values") or {}))


class Broadcasts:
    def __init__(self, store: DefinitionStore, memberships: MembershipStore, contacts: ContactRepository, messaging,
                 log: MessageLog, fanout: FanOutQueue, stats: CampaignStats, clock: Clock, start_job,
                 latest_job=None, default_zone: str = "UTC"):
        self.store = store
        self.memberships = memberships
        self.contacts = contacts
        self.messaging = messaging  # MessagingService: request and the template library
        self.log = log
        self.fanout = fanout
        self.stats = stats
        self.clock = clock
        self.start_job = start_job  # JobRunner.start
        self.latest_job = latest_job  # JobRunner.latest (the campaign-groups report)
        self.default_zone = default_zone
        self.page_size = PAGE_SIZE

    # -- definitions -----------------------------------------------------------------------

    def _definition(self, broadcast_id: str) -> tuple[Broadcast, int]:
        row = self.store.get("broadcast", broadcast_id)
        if row is None:
            raise NotFound(f"no broadcast {broadcast_id!r}")
        try:
            return parse_broadcast({**row["document"], "id": broadcast_id}), row["version"]
        except DefinitionError as exc:
            raise BadQuery(f"broadcast {broadcast_id!r} no longer parses: {'; '.join(exc.problems)}") from None

    def _frozen(self, state: dict) -> Broadcast:
        return parse_broadcast({**state["document"], "id": state["id"]})

    def state(self, broadcast_id: str) -> dict | None:
        return self.store.get_state(_state(broadcast_id))

    # -- launch ----------------------------------------------------------------------------

    def launch(self, broadcast_id: str, budget_seconds: float = 20.0, by: str = "admin") -> dict:
        """Freeze the definition and start the fan-out job; 409 when already launched."""
        existing = self.state(broadcast_id)
        if existing is not None:
            raise AlreadyLaunched(f"broadcast {broadcast_id!r} was launched at {existing['launched_at']} "
                                  f"(job {existing['job']}); a broadcast launches once")
        broadcast, version = self._definition(broadcast_id)
        if self.store.get("segment", broadcast.segment) is None:
            raise BadQuery(f"broadcast {broadcast_id!r}: no segment {broadcast.segment!r}")
        missing = [t for t in broadcast.templates()
                   if self.messaging.templates.find(t, broadcast.template_format, None) is None]
        if missing:
            raise BadQuery(f"broadcast {broadcast_id!r}: no {broadcast.channel} template "
                           + ", ".join(f"{t}.{broadcast.template_format}.j2" for t in missing))
        row = self.store.get("broadcast", broadcast_id)
        state = {"id": broadcast_id, "version": version, "document": row["document"],
                 "launched_at": iso(self.clock.now()), "launched_by": by, "status": "launching", "job": None,
                 "pages": 0, "members": 0, "rest": None}
        self.store.put_state(_state(broadcast_id), state)
        job = self.start_job(KIND, {"broadcast": broadcast_id, "phase": LAUNCH}, budget_seconds=0.0)
        state["job"] = job["id"]
        self.store.put_state(_state(broadcast_id), {**self.state(broadcast_id), "job": job["id"]})
        return {"broadcast": broadcast_id, "job": job, "state": self.view(broadcast_id)}

    def check_job(self, params: dict) -> dict:
        broadcast_id, phase = params.get("broadcast"), params.get("phase", LAUNCH)
        if not isinstance(broadcast_id, str) or phase not in (LAUNCH, REST_PHASE):
            raise JobError("broadcast-launch needs the broadcast id and the phase (launch or rest)")
        if self.state(broadcast_id) is None:
            raise JobError(f"broadcast {broadcast_id!r} has not been launched")
        return {"broadcast": broadcast_id, "phase": phase}

    def launch_slice(self, params: dict, cursor, partial: dict | None) -> dict:
        """One slice of a `broadcast-launch` job. Launch phase: one page of members → snapshot
        page n → fan-out batches. Rest phase: snapshot page n → fan-out batches with the arm."""
        broadcast_id, phase = params["broadcast"], params.get("phase", LAUNCH)
        state = self.state(broadcast_id)
        if state is None:
            raise JobError(f"broadcast {broadcast_id!r} has no launch record")
        broadcast = self._frozen(state)
        partial = dict(partial or {"pages": 0, "members": 0})
        number = partial["pages"] + 1
        if phase == LAUNCH:
            rows, next_cursor = self.memberships.members(broadcast.segment, self.page_size, cursor)
            ids = [row["contact_id"] for row in rows]
            self.store.put_state(_page(broadcast_id, number), {"contacts": ids})
        else:
            page = self.store.get_state(_page(broadcast_id, number)) or {"contacts": []}
            ids = page["contacts"]
            next_cursor = str(number) if number < state["pages"] else None
        batches = [{"broadcast": broadcast_id, "phase": phase, "page": number, "contacts": ids[i:i + FANOUT_BATCH]}
                   for i in range(0, len(ids), FANOUT_BATCH)]
        if batches:
            self.fanout.send(batches)
        partial["pages"], partial["members"] = number, partial["members"] + len(ids)
        step = {"cursor": next_cursor, "partial": partial, "progress": dict(partial)}
        if next_cursor is None:
            latest = self.state(broadcast_id)
            if phase == LAUNCH:
                latest.update(status="launched", pages=partial["pages"], members=partial["members"])
            else:
                latest["rest"] = {**(latest.get("rest") or {}), "status": "sent", "members": partial["members"]}
            self.store.put_state(_state(broadcast_id), latest)
            step["result"] = {"broadcast": broadcast_id, "phase": phase, **partial}
        return step

    # -- the fan-out consumer --------------------------------------------------------------

    def fan_out(self, batch: dict) -> dict:
        """One fan-out queue message: its contacts read in one batch, each one's message
        requested (or its holdout recorded). Safe to run again (deterministic ids)."""
        broadcast_id, phase = batch.get("broadcast"), batch.get("phase", LAUNCH)
        ids = batch.get("contacts")
        if not isinstance(broadcast_id, str) or not isinstance(ids, list) or len(ids) > FANOUT_BATCH:
            raise ValueError("a fan-out batch names its broadcast and at most 100 contact ids")
        state = self.state(broadcast_id)
        if state is None:
            raise ValueError(f"broadcast {broadcast_id!r} has no launch record")
        broadcast = self._frozen(state)
        winner = (state.get("rest") or {}).get("arm") if phase == REST_PHASE else None
        if phase == REST_PHASE and winner is None:
            raise ValueError(f"broadcast {broadcast_id!r}: the rest has no arm yet")
        now = self.clock.now()
        contacts = self.contacts.get_many(ids)
        counts = {"requested": 0, "holdout": 0, "waiting": 0, "missing": 0}
        campaign = broadcast.campaign or broadcast.id
        for contact_id in ids:
            contact = contacts.get(contact_id)
            if contact is not None and contact.merged_into:
                contact_id, contact = contact.merged_into, self.contacts.get(contact.merged_into)
            if contact is None:
                counts["missing"] += 1
                continue
            zone = ContactSendState.of(contact).time_zone
            plan = plan_for(broadcast, contact_id, zone, winner, default_zone=self.default_zone)
            if plan.arm == REST and phase == LAUNCH:
                counts["waiting"] += 1  # in the snapshot, sent once the rest is decided
                continue
            if plan.arm == HOLDOUT:
                self._record_holdout(broadcast, campaign, contact_id, now)
                counts["holdout"] += 1
                continue
            self.messaging.request(contact_id, plan.template, broadcast.channel, broadcast.cause, campaign=campaign,
                                   not_after=broadcast.not_after, variant=plan.arm,
                                   not_before=plan.at if plan.at > now else None,
                                   data={"broadcast_id": broadcast.id})
            counts["requested"] += 1
        return counts

    def _record_holdout(self, broadcast: Broadcast, campaign: str, contact_id: str, now: datetime) -> None:
        reason = {"outcome": "skip", "code": "holdout",
                  "reason": f"In the holdout group of broadcast {broadcast.id!r}: sent nothing, so the "
                            "campaign's effect can be measured against it."}
        self.log.create(Message(id=message_id(broadcast.cause, contact_id, HOLDOUT, broadcast.channel),
                                contact_id=contact_id, channel=broadcast.channel, template="", lane="marketing",
                                topic=None, cause=broadcast.cause, requested_at=now, status=SKIPPED,
                                campaign=campaign, variant=HOLDOUT,
                                timeline=(StatusChange(SKIPPED, now, reason),)))

    # -- the test, the rest and the schedule -------------------------------------------------

    def arm_results(self, broadcast: Broadcast) -> list[ArmResult]:
        exp = broadcast.experiment
        rows = self.stats.read(broadcast.campaign or broadcast.id)
        results = []
        for arm in exp.experiment.arms:
            mine = [r for r in rows if r.get("variant") == arm.name]
            if arm.name == HOLDOUT:
                exposed = sum(int(r["counts"].get(f"{SKIPPED}:holdout", 0)) for r in mine)
            else:
                exposed = sum(int(r["counts"].get("sent", 0)) for r in mine)
            results.append(ArmResult(arm.name, exposed, sum(int(r["counts"].get(exp.metric, 0)) for r in mine)))
        return results

    def verdict(self, broadcast: Broadcast, state: dict | None) -> Verdict:
        previous = _verdict((state or {}).get("verdict"))
        return evaluate(self.arm_results(broadcast), previous=previous)

    def run_due(self, budget_seconds: float = 20.0) -> dict:
        """The scheduled check: launch broadcasts whose first moment has come (once), look at
        the running tests, and send the rest its arm once there is a winner or `decide_by`."""
        now = self.clock.now()
        report = {"launched": [], "rest": [], "errors": []}
        for row in self.store.current("broadcast"):
            broadcast_id = row["id"]
            try:
                broadcast = parse_broadcast({**row["document"], "id": broadcast_id})
            except DefinitionError:
                continue  # the definitions service reports unreadable definitions
            state = self.state(broadcast_id)
            try:
                if state is None:
                    if broadcast.first_moment() <= now and (broadcast.not_after is None or broadcast.not_after > now):
                        self.launch(broadcast_id, budget_seconds, by="schedule")
                        report["launched"].append(broadcast_id)
                    continue
                if self._check_rest(state, now, budget_seconds):
                    report["rest"].append(broadcast_id)
            except (BadQuery, NotFound, JobError) as exc:
                report["errors"].append({"broadcast": broadcast_id, "reason": str(exc)})
        return report

    def _check_rest(self, state: dict, now: datetime, budget_seconds: float) -> bool:
        broadcast = self._frozen(state)
        exp = broadcast.experiment
        if exp is None or state.get("status") != "launched":
            return False
        verdict = self.verdict(broadcast, state)
        state["verdict"] = verdict_document(verdict)
        if exp.test_percent is None or state.get("rest"):
            self.store.put_state(_state(broadcast.id), state)
            return False
        if verdict.winner is not None:
            arm, why = verdict.winner, f"winner: {verdict.reason}"
        elif now >= parse_timestamp(state["launched_at"]) + (exp.decide_by or timedelta(0)):
            arm, why = exp.fallback, (f"fallback: no winner {exp.decide_by} after the launch "
                                      f"({verdict.reason}); the rest receives the fallback arm {exp.fallback!r}")
        else:
            self.store.put_state(_state(broadcast.id), state)
            return False
        state["rest"] = {"arm": arm, "template": exp.templates[arm], "reason": why, "decided_at": iso(now),
                         "status": "sending"}
        self.store.put_state(_state(broadcast.id), state)
        job = self.start_job(KIND, {"broadcast": broadcast.id, "phase": REST_PHASE}, budget_seconds=budget_seconds)
        latest = self.state(broadcast.id)
        latest["rest"] = {**latest["rest"], "job": job["id"]}
        self.store.put_state(_state(broadcast.id), latest)
        return True

    # -- reading -----------------------------------------------------------------------------

    def view(self, broadcast_id: str) -> dict:
        """The launch record, the funnel of its campaign and, with an experiment, each arm's
        exposure and successes and the sequential test's verdict."""
        state = self.state(broadcast_id)
        if state is None:
            broadcast, _ = self._definition(broadcast_id)
            return {"id": broadcast_id, "status": "not launched", "first_moment": iso(broadcast.first_moment())}
        broadcast = self._frozen(state)
        view = {k: state.get(k) for k in ("id", "version", "status", "launched_at", "launched_by", "job", "pages",
                                          "members", "rest")}
        view["campaign"] = broadcast.campaign or broadcast.id
        view["funnel"] = funnel(self.stats.read(view["campaign"]))
        if broadcast.experiment is not None:
            view["experiment"] = self._experiment_view(broadcast, state)
        return view

    def _experiment_view(self, broadcast: Broadcast, state: dict) -> dict:
        exp = broadcast.experiment
        results = self.arm_results(broadcast)
        verdict = self.verdict(broadcast, state)
        return {"metric": exp.metric, "test_percent": exp.test_percent,
                "arms": [{"arm": r.name, "template": exp.templates.get(r.name), "exposed": r.exposed,
                          exp.metric: r.converted, "rate": round(r.rate, 6)} for r in results],
                "verdict": verdict_document(verdict),
                "method": "mixture sequential probability ratio test (always valid at every look)"}

    def campaign_stats(self, campaign_id: str) -> dict:
        """The funnel of a campaign (per template and variant), the A/B verdict of the
        broadcasts that report to it, and the six-groups report's conversions when computed."""
        rows = self.stats.read(campaign_id)
        broadcasts = []
        for row in self.store.current("broadcast"):
            doc = row["document"] or {}
            if (doc.get("campaign") or row["id"]) != campaign_id:
                continue
            state = self.state(row["id"])
            if state is None:
                continue
            entry = {"broadcast": row["id"], "status": state.get("status"), "rest": state.get("rest")}
            broadcast = self._frozen(state)
            if broadcast.experiment is not None:
                entry["experiment"] = self._experiment_view(broadcast, state)
            broadcasts.append(entry)
        if not rows and not broadcasts and self.store.get("campaign", campaign_id) is None:
            raise NotFound(f"no campaign {campaign_id!r} and no message counted for it")
        answer = {"campaign": campaign_id, "funnel": funnel(rows), "broadcasts": broadcasts}
        if self.latest_job is not None:
            report = self.latest_job("campaign-groups", {"campaign": campaign_id})
            if report is not None:
                answer["groups_report"] = {k: report.get(k) for k in ("id", "status", "finished_at", "result")}
        return answer
