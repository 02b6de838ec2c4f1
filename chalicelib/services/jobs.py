"""Long-running admin work as resumable jobs with visible progress.

An HTTP request on API Gateway has 29 seconds; recomputing RFM over every customer,
classifying every recipient of a campaign, exporting a large segment, stopping a journey's
running enrollments or entering a schedule journey's segment can take far longer. Such work runs as a job: it is started by the admin API (which runs a first slice
and answers 202 with the job), the
scheduled jobs Lambda continues it slice by slice, and `GET /v1/admin/jobs/{id}` shows its
progress and, once done, its result. Each slice keeps its cursor and its partial result in
the job's record, so a crash or a time-out loses at most one slice of work.
"""
from __future__ import annotations

import time
import uuid
from typing import Callable

from chalicelib.domain.events import iso
from chalicelib.services.ports import Clock, DefinitionStore

RUNNING = "jobs-running"  # state row listing the ids of unfinished jobs
KINDS = ("rfm", "campaign-groups", "segment-sizes", "audience-export", "broadcast-launch", "journey-stop",
         "journey-schedule")
JOURNEY_KINDS = ("journey-stop", "journey-schedule")  # services/journey_admin.py


class JobError(ValueError):
    """A request for a job that cannot run (unknown kind, unknown campaign, bad parameters)."""


class JobNotFound(LookupError):
    pass


def _state_name(job_id: str) -> str:
    return f"job:{job_id}"


class JobRunner:
    """Starts, advances and reports jobs; the work of one slice is SegmentJobs'."""

    def __init__(self, store: DefinitionStore, work, clock: Clock, new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
                 monotonic: Callable[[], float] = time.monotonic, exports=None, broadcasts=None, journeys=None):
        self.store = store
        self.work = work  # SegmentJobs: rfm_slice, campaign_groups_slice, segment_sizes_slice
        self.exports = exports  # AudienceExports: check_export, export_slice
        self.broadcasts = broadcasts  # Broadcasts: check_job, launch_slice (services/broadcasts.py)
        # JourneyAdmin: check_job, stop_slice (a stopped journey's running enrollments, a stop
        # signal each), schedule_slice (a schedule journey's entry segment, an enroll signal each)
        self.journeys = journeys
        self.clock = clock
        self.new_id = new_id
        self.monotonic = monotonic

    # -- starting and reading -------------------------------------------------------------

    def start(self, kind: str, params: dict | None = None, budget_seconds: float = 20.0) -> dict:
        params = dict(params or {})
        if kind not in KINDS:
            raise JobError(f"no job kind {kind!r} (kinds: {', '.join(KINDS)})")
        if kind == "campaign-groups":
            campaign_id = params.get("campaign")
            if not isinstance(campaign_id, str) or not campaign_id:
                raise JobError("campaign-groups needs the campaign id")
            self.work.check_campaign(campaign_id)
        if kind == "audience-export":
            if self.exports is None:
                raise JobError("audience exports are not configured")
            params = self.exports.check_export(params)  # 404 unknown segment, 400 bad format or traits
        if kind == "broadcast-launch":
            if self.broadcasts is None:
                raise JobError("broadcasts are not configured")
            params = self.broadcasts.check_job(params)
        if kind in JOURNEY_KINDS:
            if self.journeys is None:
                raise JobError("journeys are not configured")
            params = self.journeys.check_job(kind, params)
        now = iso(self.clock.now())
        job = {"id": f"{kind}-{self.new_id()}", "kind": kind, "params": params, "status": "running",
               "started_at": now, "updated_at": now, "slices": 0, "progress": {}, "cursor": None, "partial": None}
        self._save(job)
        running = self.store.get_state(RUNNING) or {"ids": []}
        running["ids"] = [*running["ids"], job["id"]][-100:]
        self.store.put_state(RUNNING, running)
        self.store.put_state(_latest_name(kind, params), {"id": job["id"]})
        return self.advance(job["id"], budget_seconds)

    def get(self, job_id: str) -> dict:
        job = self.store.get_state(_state_name(job_id))
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return self.view(job)

    def latest(self, kind: str, params: dict) -> dict | None:
        """The newest job of this kind and parameters (finished or not), if any is known."""
        index = self.store.get_state(_latest_name(kind, params))
        if index is None:
            return None
        job = self.store.get_state(_state_name(index["id"]))
        return self.view(job) if job is not None else None

    @staticmethod
    def view(job: dict) -> dict:
        return {k: v for k, v in job.items() if k not in ("cursor", "partial")}

    # -- running ----------------------------------------------------------------------------

    def advance(self, job_id: str, budget_seconds: float) -> dict:
        """Run slices of one job until it is done or the budget is spent."""
        job = self.store.get_state(_state_name(job_id))
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        started = self.monotonic()
        while job["status"] == "running":
            try:
                step = self._slice(job)
            except JobError as exc:
                job.update(status="failed", error=str(exc))
                break
            job["slices"] += 1
            job["cursor"], job["partial"], job["progress"] = step["cursor"], step["partial"], step["progress"]
            if step.get("result") is not None:
                job.update(status="done", result=step["result"], finished_at=iso(self.clock.now()))
            job["updated_at"] = iso(self.clock.now())
            self._save(job)
            if self.monotonic() - started > budget_seconds:
                break
        self._save(job)
        if job["status"] != "running":
            self._finished(job)
        return self.view(job)

    def resume(self, budget_seconds: float = 100.0) -> list[dict]:
        """Continue unfinished jobs (the scheduled jobs Lambda calls this)."""
        started = self.monotonic()
        reports = []
        for job_id in list((self.store.get_state(RUNNING) or {"ids": []})["ids"]):
            left = budget_seconds - (self.monotonic() - started)
            if left <= 0:
                break
            try:
                reports.append(self.advance(job_id, left))
            except JobNotFound:
                self._forget(job_id)
        return reports

    def _slice(self, job: dict) -> dict:
        if job["kind"] == "rfm":
            return self.work.rfm_slice(job["cursor"], job["partial"])
        if job["kind"] == "segment-sizes":
            return self.work.segment_sizes_slice(job["cursor"], job["partial"])
        if job["kind"] == "audience-export":
            return self.exports.export_slice(job["id"], job["params"], job["cursor"], job["partial"])
        if job["kind"] == "broadcast-launch":
            return self.broadcasts.launch_slice(job["params"], job["cursor"], job["partial"])
        if job["kind"] == "journey-stop":
            return self.journeys.stop_slice(job["params"], job["cursor"], job["partial"])
        if job["kind"] == "journey-schedule":
            return self.journeys.schedule_slice(job["params"], job["cursor"], job["partial"])
        return self.work.campaign_groups_slice(job["params"]["campaign"], job["cursor"], job["partial"])

    def _save(self, job: dict) -> None:
        self.store.put_state(_state_name(job["id"]), job)

    def _finished(self, job: dict) -> None:
        self._forget(job["id"])

    def _forget(self, job_id: str) -> None:
        running = self.store.get_state(RUNNING) or {"ids": []}
        if job_id in running["ids"]:
            running["ids"] = [i for i in running["ids"] if i != job_id]
            self.store.put_state(RUNNING, running)


def _latest_name(kind: str, params: dict) -> str:
    return f"jobs-latest:{kind}:" + ",".join(f"{k}={params[k]}" for k in sorted(params))
