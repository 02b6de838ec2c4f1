"""Admin routes of destinations' deliveries: the delivery log, replaying a parked delivery,
and setting a destination's signing secret (write-only). Bearer token only, through the
admin API's own wrapper."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.entrypoints.http import admin_call, json_body, limit_param, query
from chalicelib.entrypoints.runtime import services

deliveries_api = Blueprint(__name__)
ANY = ["*/*"]


def _admin(action):
    return admin_call(deliveries_api.current_request, action)


@deliveries_api.route("/v1/admin/destinations/{destination_id}/deliveries", methods=["GET"])
def admin_destination_deliveries(destination_id):
    return _admin(lambda r: services().delivery_service.deliveries(
        destination_id, query(r, "status"), limit_param(r, default=50, most=500), query(r, "cursor")))


@deliveries_api.route("/v1/admin/destinations/{destination_id}/deliveries/{delivery_id}", methods=["GET"])
def admin_destination_delivery(destination_id, delivery_id):
    return _admin(lambda r: services().delivery_service.delivery(destination_id, delivery_id))


@deliveries_api.route("/v1/admin/destinations/{destination_id}/deliveries/{delivery_id}/replay", methods=["POST"],
                      content_types=ANY)
def admin_replay_delivery(destination_id, delivery_id):
    return _admin(lambda r: services().delivery_service.replay(destination_id, delivery_id))


@deliveries_api.route("/v1/admin/destinations/{destination_id}/secret", methods=["PUT"], content_types=ANY)
def admin_destination_secret(destination_id):
    return _admin(lambda r: services().delivery_service.set_secret(destination_id, json_body(r).get("secret")))
