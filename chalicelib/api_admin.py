"""The admin API, under /v1/admin/: bearer token only (a write key never works here).

Routes parse the request, call one service, and map domain errors to 4xx answers.
"""
from __future__ import annotations

import json

from chalice import Blueprint, Response

from chalicelib import bootstrap
from chalicelib.admin_auth import is_admin
from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.definitions import DefinitionInUse, DefinitionNotFound
from chalicelib.services.imports import ImportRejected
from chalicelib.services.ports import ConcurrentUpdate
from chalicelib.services.segment_jobs import JobError

admin_api = Blueprint(__name__)
ANY = ["*/*"]
JOBS = ("recheck", "backfills", "rfm", "uploads")


def _json(status: int, body: dict, headers: dict | None = None) -> Response:
    return Response(body=json.dumps(body, default=str), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def _admin(action):
    request = admin_api.current_request
    if not is_admin(request.headers.get("authorization")):
        return _json(401, {"error": "admin endpoints need Authorization: Bearer <admin token>"},
                     {"WWW-Authenticate": 'Bearer realm="mercurio-admin"'})
    try:
        return _json(200, action(request))
    except (DefinitionInUse, ConcurrentUpdate) as exc:
        problems = getattr(exc, "problems", [str(exc)])
        return _json(409, {"error": "; ".join(problems), "problems": problems})
    except DefinitionError as exc:
        return _json(400, {"error": "; ".join(exc.problems), "problems": exc.problems})
    except (BadQuery, ImportRejected, JobError) as exc:
        return _json(400, {"error": str(exc)})
    except (NotFound, DefinitionNotFound) as exc:
        return _json(404, {"error": str(exc)})


def _query(request, name: str) -> str | None:
    return (request.query_params or {}).get(name)


def _json_body(request) -> dict:
    try:
        body = json.loads(request.raw_body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadQuery(f"body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise BadQuery("body must be a JSON object")
    return body


def _limit(request, default: int = 100, most: int = 1000) -> int:
    raw = _query(request, "limit")
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        raise BadQuery(f"limit {raw!r} is not a whole number") from None
    if not 1 <= value <= most:
        raise BadQuery(f"limit must be between 1 and {most}")
    return value


# -- contacts ---------------------------------------------------------------------------------

@admin_api.route("/v1/admin/contacts", methods=["GET"])
def admin_contact_by_identifier():
    return _admin(lambda r: bootstrap.contact_queries().by_identifier(_query(r, "identifier")))


@admin_api.route("/v1/admin/contacts/{contact_id}", methods=["GET"])
def admin_contact(contact_id):
    return _admin(lambda r: bootstrap.contact_queries().by_id(contact_id))


@admin_api.route("/v1/admin/contacts/{contact_id}/events", methods=["GET"])
def admin_contact_events(contact_id):
    return _admin(lambda r: bootstrap.contact_queries().timeline(
        contact_id, limit=_query(r, "limit"), cursor=_query(r, "cursor"), kind=_query(r, "kind")))


@admin_api.route("/v1/admin/imports", methods=["POST"], content_types=ANY)
def admin_import():
    def run(request):
        try:
            body = json.loads(request.raw_body or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ImportRejected(f"body is not valid JSON ({exc})") from None
        return bootstrap.contact_importer().run(body)

    return _admin(run)


# -- segment members and exports (the definitions themselves: api_definitions.py) ---------------

@admin_api.route("/v1/admin/segments/{segment_id}/members", methods=["GET"])
def admin_segment_members(segment_id):
    def members(request):
        if bootstrap.definitions().get("segment", segment_id) is None:
            raise NotFound(f"no segment {segment_id!r}")
        cursor = _query(request, "cursor")
        try:
            rows, next_cursor = bootstrap.membership_store().members(segment_id, _limit(request), cursor)
        except (ValueError, KeyError, TypeError):
            raise BadQuery("cursor is not one this API returned") from None
        page = {"segment_id": segment_id, "members": rows}
        if next_cursor:
            page["next_cursor"] = next_cursor
        return page

    return _admin(members)


@admin_api.route("/v1/admin/segments/{segment_id}/exports", methods=["POST"], content_types=ANY)
def admin_segment_export(segment_id):
    def export(request):
        body = _json_body(request)
        return bootstrap.audience_exports().export(segment_id, body.get("format", "csv"), body.get("traits") or [])

    return _admin(export)


@admin_api.route("/v1/admin/campaigns/{campaign_id}/groups", methods=["GET"])
def admin_campaign_groups(campaign_id):
    return _admin(lambda r: bootstrap.segment_jobs().campaign_groups(campaign_id))


@admin_api.route("/v1/admin/jobs/{job}", methods=["POST"], content_types=ANY)
def admin_run_job(job):
    """Run a scheduled job now (operators; tests)."""
    def run(request):
        jobs = bootstrap.segment_jobs()
        if job == "recheck":
            return jobs.recheck_due()
        if job == "backfills":
            return {"backfills": jobs.run_backfills()}
        if job == "rfm":
            return jobs.recompute_rfm()
        if job == "uploads":
            return bootstrap.definitions().sync_uploads(bootstrap.definition_uploads())
        raise NotFound(f"no job {job!r} (jobs: {', '.join(JOBS)})")

    return _admin(run)
