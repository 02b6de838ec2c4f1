"""The admin API, under /v1/admin/: bearer token only (a write key never works here).

Routes parse the request, call one service, and map domain errors to 4xx answers.
"""
from __future__ import annotations


from chalice import Blueprint

from chalicelib.entrypoints.http import Accepted, admin_call, json_body, limit_param, query
from chalicelib.entrypoints.runtime import services
from chalicelib.services.contacts import NotFound

admin_api = Blueprint(__name__)
ANY = ["*/*"]


def _admin(action, status: int = 200):
    return admin_call(admin_api.current_request, action, status)


# -- contacts ---------------------------------------------------------------------------------

@admin_api.route("/v1/admin/contacts", methods=["GET"])
def admin_contact_by_identifier():
    return _admin(lambda r: services().contact_queries.by_identifier(query(r, "identifier")))


@admin_api.route("/v1/admin/contacts/{contact_id}", methods=["GET"])
def admin_contact(contact_id):
    return _admin(lambda r: services().contact_queries.by_id(contact_id))


@admin_api.route("/v1/admin/contacts/{contact_id}/events", methods=["GET"])
def admin_contact_events(contact_id):
    return _admin(lambda r: services().contact_queries.timeline(
        contact_id, limit=query(r, "limit"), cursor=query(r, "cursor"), kind=query(r, "kind")))


@admin_api.route("/v1/admin/contacts/{contact_id}/messages", methods=["GET"])
def admin_contact_messages(contact_id):
    """The contact's messages newest first, each with its status, timeline and, for a skip or
    deferral, the reason."""
    return _admin(lambda r: services().messaging.messages_of(
        contact_id, limit=limit_param(r, default=50, most=200), cursor=query(r, "cursor")))


@admin_api.route("/v1/admin/imports", methods=["POST"], content_types=ANY)
def admin_import():
    return _admin(lambda r: services().contact_importer.run_upload(r.raw_body, r.headers.get("content-type"),
                                                                   r.query_params))


# -- segment members and exports (the definitions themselves: entrypoints/definitions.py) -------

@admin_api.route("/v1/admin/segments/{segment_id}/members", methods=["GET"])
def admin_segment_members(segment_id):
    return _admin(lambda r: services().audience_exports.members_page(segment_id, limit_param(r), query(r, "cursor")))


@admin_api.route("/v1/admin/segments/{segment_id}/exports", methods=["POST"], content_types=ANY)
def admin_segment_export(segment_id):
    """Export a segment as an `audience-export` job: the export (key, rows, bytes, signed
    link) when the job finishes within the request (200), otherwise 202 with the running
    job, to follow at /v1/admin/jobs/{id} until its result holds the export."""
    def export(request):
        body = json_body(request)
        job = services().jobs.start("audience-export", {"segment": segment_id, "format": body.get("format", "csv"),
                                                        "traits": body.get("traits") or []})
        if job["status"] == "done":
            return {**job["result"], "job": job["id"]}
        if job["status"] == "failed":
            raise NotFound(job.get("error", "the export could not be written"))
        return Accepted({"job": job})

    return _admin(export)


@admin_api.route("/v1/admin/campaigns/{campaign_id}/groups", methods=["GET"])
def admin_campaign_groups(campaign_id):
    """The six groups of a campaign's recipients, computed by a `campaign-groups` job: the
    answer is the fresh report when the job finishes within the request (200), otherwise
    202 with the running job and the last finished report, if any."""
    jobs = services().jobs
    params = {"campaign": campaign_id}

    def report(request):
        latest = jobs.latest("campaign-groups", params)
        job = latest if latest is not None and latest["status"] == "running" else \
            jobs.start("campaign-groups", params)
        if job["status"] == "done":
            return {**job["result"], "as_of": job["finished_at"], "job": job["id"]}
        if job["status"] == "failed":
            raise NotFound(job.get("error", "the report could not be computed"))
        answer = {"job": job}
        if latest is not None and latest["status"] == "done":
            answer["last_report"] = {**latest["result"], "as_of": latest["finished_at"]}
        return Accepted(answer)

    return _admin(report)


INLINE_JOBS = ("recheck", "backfills", "uploads")


@admin_api.route("/v1/admin/jobs/{job}", methods=["GET", "POST"], content_types=ANY)
def admin_job(job):
    """POST runs a job now: the bounded ones (recheck, backfills, uploads) inline; `rfm` and
    `campaign-groups` (body `{"campaign": id}`) start a resumable job, answered 200 when it
    finished within the request and 202 while it runs on. GET shows a job by its id."""
    runner = services().jobs

    def act(request):
        if request.method == "GET":
            try:
                return runner.get(job)
            except LookupError as exc:
                raise NotFound(str(exc)) from None
        jobs = services().segment_jobs
        if job == "recheck":
            return jobs.recheck_due()
        if job == "backfills":
            return {"backfills": jobs.run_backfills()}
        if job == "uploads":
            return services().definitions.sync_uploads()
        if job in ("rfm", "campaign-groups", "segment-sizes"):
            params = json_body(request) if job == "campaign-groups" else {}
            started = runner.start(job, {k: params[k] for k in ("campaign",) if k in params})
            if started["status"] == "running":
                return Accepted(started)
            return started
        raise NotFound(f"no job {job!r} (jobs: {', '.join(INLINE_JOBS + ('rfm', 'campaign-groups', 'segment-sizes'))})")

    return _admin(act)
