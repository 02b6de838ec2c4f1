"""The admin routes of a person's rights (scenario 10): the export of everything about a
contact, and its erasure as a job whose status can be followed. Bearer token only."""
from __future__ import annotations

import time

from chalice import Blueprint

from chalicelib.entrypoints.http import Accepted, admin_call
from chalicelib.entrypoints.runtime import services

privacy_api = Blueprint(__name__)
ERASURE_BUDGET_SECONDS = 20.0  # API Gateway answers within 29 s; the rest continues on schedule


def _admin(action, status: int = 200):
    return admin_call(privacy_api.current_request, action, status)


def within(seconds: float):
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() < deadline


@privacy_api.route("/v1/admin/contacts/{contact_id}/export", methods=["GET"])
def admin_contact_export(contact_id):
    return _admin(lambda r: services().privacy.export(contact_id))


@privacy_api.route("/v1/admin/contacts/{contact_id}", methods=["DELETE"])
def admin_contact_erase(contact_id):
    """Starts the erasure: 202 with the job while it runs on, 200 when it finished within
    the request; either way `GET /v1/admin/erasures/{id}` shows it."""
    def erase(request):
        job = services().privacy.start_erasure(contact_id, within(ERASURE_BUDGET_SECONDS))
        return Accepted(job) if job["status"] == "running" else job

    return _admin(erase)


@privacy_api.route("/v1/admin/erasures/{erasure_id}", methods=["GET"])
def admin_erasure(erasure_id):
    return _admin(lambda r: services().privacy.erasure(erasure_id))
