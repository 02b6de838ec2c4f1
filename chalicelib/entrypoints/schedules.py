"""Scheduled entry points (EventBridge rules on AWS, a timer in the local runner)."""
from __future__ import annotations

from chalice import Blueprint, Rate

from chalicelib import config
from chalicelib.entrypoints.runtime import flush_metrics, logger, services

scheduled_jobs = Blueprint(__name__)


@scheduled_jobs.schedule(Rate(config.recheck_minutes(), unit=Rate.MINUTES), name="segment_jobs")
def segment_jobs(event):
    """Time-based segment rechecks, back-fills of new definitions, uploaded definitions and
    templates, today's run of each schedule journey, and the next slices of unfinished jobs
    (RFM recomputes, campaign reports, audience exports, journey stops and schedule runs)."""
    wired = services()
    try:
        report = {"uploads": wired.definitions.sync_uploads(), "templates": wired.template_authoring.sync_inbox(),
                  "recheck": wired.segment_jobs.recheck_due(), "backfills": wired.segment_jobs.run_backfills(),
                  "journeys": _journey_schedules(wired),
                  "jobs": [{k: job[k] for k in ("id", "status", "progress")} for job in wired.jobs.resume()],
                  "erasures": _resume_erasures(wired), "broadcasts": _broadcasts_due(wired)}
        logger.info("segment jobs", extra={"recheck": report["recheck"], "backfills": report["backfills"],
                                           "uploads_applied": len(report["uploads"]["applied"]),
                                           "uploads_rejected": report["uploads"]["rejected"],
                                           "templates_accepted": report["templates"]["accepted"],
                                           "templates_refused": report["templates"]["refused"],
                                           "jobs": report["jobs"], "broadcasts": report["broadcasts"],
                                           "journey_schedules": report["journeys"]})
        return report
    finally:
        flush_metrics()


def _resume_erasures(wired) -> list[dict]:
    """Unfinished contact erasures (services/privacy.py), a slice each; a failing one is
    logged and tried again at the next run, never in the way of the segment jobs."""
    import time

    deadline = time.monotonic() + 60.0
    try:
        return [{k: job.get(k) for k in ("id", "status", "step")}
                for job in wired.privacy.resume(lambda: time.monotonic() < deadline)]
    except Exception:  # noqa: BLE001
        logger.exception("erasures could not be continued")
        return []


def _journey_schedules(wired) -> dict:
    """Today's (UTC) run of each live schedule journey, started once (services/journey_admin.py);
    what does not fit goes on as a job. A failure is logged and tried again at the next run."""
    try:
        return wired.journey_admin.run_schedules()
    except Exception:  # noqa: BLE001
        logger.exception("journey schedules could not be started")
        return {"error": "see the log"}


def _broadcasts_due(wired) -> dict:
    """Broadcasts whose first moment has come are launched (once); running A/B tests are
    looked at and the rest is sent its arm (services/broadcasts.py). A failure is logged and
    tried again at the next run."""
    try:
        return wired.broadcasts.run_due()
    except Exception:  # noqa: BLE001
        logger.exception("broadcasts could not be checked")
        return {"error": "see the log"}


@scheduled_jobs.schedule(Rate(1, unit=Rate.DAYS), name="rfm_thresholds")
def rfm_thresholds(event):
    """The daily jobs: RFM quintiles from the current distribution, then every customer's
    class; and every segment's size recounted from its rows (the counters beside them can
    be one off after a crash). Each starts as a job; what does not fit in this invocation
    continues with the segment jobs."""
    try:
        jobs = services().jobs
        report = {"segment_sizes": jobs.start("segment-sizes", budget_seconds=120.0)}
        if services().definitions.catalog().rfm is None:
            report["rfm"] = {"status": "no rfm definition"}
        else:
            report["rfm"] = jobs.start("rfm", budget_seconds=600.0)
        for name, job in report.items():
            logger.info(f"daily job {name}", extra={k: job.get(k) for k in ("id", "status", "progress")})
        return report
    finally:
        flush_metrics()
