"""Journeys: the admin routes beside the generic definition routes (definitions.py), which store,
validate and list journeys and serve GET /v1/admin/journeys/{id} (with the journey's state and
who waits at each node: services/journey_admin.py's definition_view).

    POST /v1/admin/journeys/{journey_id}/simulate               the trace of what it would do; sends nothing
    POST /v1/admin/journeys/{journey_id}/preview                a new version checked, and where running ones stand
    GET  /v1/admin/journeys/{journey_id}/enrollments?contact=   a contact's enrollments, traces and messages
    POST /v1/admin/journeys/{journey_id}/enrollments            the API trigger: 202 with the enrollment id to come
    GET  /v1/admin/journeys/{journey_id}/stats                  per node, per send funnel, per experiment arm
    POST /v1/admin/journeys/{journey_id}/pause | resume | stop  body optional: {"reason": "..."}

Stop answers 202 with the job that signals each running enrollment while it runs (followed at
GET /v1/admin/jobs/{id}), 200 once it is done. All need the admin bearer token.
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.entrypoints.http import Accepted, admin_call, json_body, query
from chalicelib.entrypoints.runtime import services

journeys_api = Blueprint(__name__)
ANY = ["*/*"]
STOP_BUDGET_SECONDS = 20.0  # API Gateway answers within 29 s; the rest continues on schedule


def _admin(action):
    return admin_call(journeys_api.current_request, action)


@journeys_api.route("/v1/admin/journeys/{journey_id}/simulate", methods=["POST"], content_types=ANY)
def admin_journey_simulate(journey_id):
    return _admin(lambda r: services().journey_simulations.simulate(journey_id, json_body(r)))


@journeys_api.route("/v1/admin/journeys/{journey_id}/preview", methods=["POST"], content_types=ANY)
def admin_journey_preview(journey_id):
    return _admin(lambda r: services().journey_admin.preview(journey_id, r.raw_body))


@journeys_api.route("/v1/admin/journeys/{journey_id}/enrollments", methods=["GET", "POST"], content_types=ANY)
def admin_journey_enrollments(journey_id):
    def act(request):
        admin = services().journey_admin
        if request.method == "POST":
            return Accepted(admin.enroll(journey_id, json_body(request)))
        return admin.enrollments(journey_id, query(request, "contact"))

    return _admin(act)


@journeys_api.route("/v1/admin/journeys/{journey_id}/stats", methods=["GET"])
def admin_journey_stats(journey_id):
    return _admin(lambda r: services().journey_admin.stats(journey_id))


@journeys_api.route("/v1/admin/journeys/{journey_id}/pause", methods=["POST"], content_types=ANY)
def admin_journey_pause(journey_id):
    return _admin(lambda r: services().journey_admin.pause(journey_id, json_body(r)))


@journeys_api.route("/v1/admin/journeys/{journey_id}/resume", methods=["POST"], content_types=ANY)
def admin_journey_resume(journey_id):
    return _admin(lambda r: services().journey_admin.resume(journey_id, json_body(r)))


@journeys_api.route("/v1/admin/journeys/{journey_id}/stop", methods=["POST"], content_types=ANY)
def admin_journey_stop(journey_id):
    def stop(request):
        answer = services().journey_admin.stop(journey_id, json_body(request), STOP_BUDGET_SECONDS)
        return Accepted(answer) if answer["job"]["status"] == "running" else answer

    return _admin(stop)
