"""Journeys: the admin route that simulates a stored journey for one contact (services/journeys.py).

    POST /v1/admin/journeys/{journey_id}/simulate   the trace of what it would do; sends nothing

Storing, validating and listing journeys are the generic definition routes (definitions.py).
Journeys are not executed yet: nothing else here.
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.entrypoints.http import admin_call, json_body
from chalicelib.entrypoints.runtime import services

journeys_api = Blueprint(__name__)


@journeys_api.route("/v1/admin/journeys/{journey_id}/simulate", methods=["POST"], content_types=["*/*"])
def admin_journey_simulate(journey_id):
    return admin_call(journeys_api.current_request,
                      lambda r: services().journey_simulations.simulate(journey_id, json_body(r)))
