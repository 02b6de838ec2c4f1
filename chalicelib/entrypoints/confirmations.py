"""Admin route of double opt-in (services/confirmations.py):

    POST /v1/admin/contacts/{id}/confirmations/resend   {"channel": "email", "topic": null}
         202 the confirmation goes out again; 429 too soon or too many; 409 nothing to resend
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.entrypoints.http import Accepted, admin_call, json_body, json_response
from chalicelib.entrypoints.runtime import services
from chalicelib.services.confirmations import ResendRefused

confirmations_api = Blueprint(__name__)
ANY = ["*/*"]


@confirmations_api.route("/v1/admin/contacts/{contact_id}/confirmations/resend", methods=["POST"],
                         content_types=ANY)
def resend_confirmation(contact_id):
    refused = {}

    def act(request):
        body = json_body(request) if request.raw_body else {}
        try:
            return Accepted(services().confirmations.resend(contact_id, body.get("channel", "email"),
                                                            body.get("topic")))
        except ResendRefused as exc:
            refused["error"] = exc
            return {}

    response = admin_call(confirmations_api.current_request, act)
    if "error" in refused:
        exc = refused["error"]
        return json_response(exc.status, {"error": str(exc), "code": exc.code})
    return response
