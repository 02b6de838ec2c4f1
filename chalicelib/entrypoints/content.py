"""On-site content, public like the tracking routes: `GET /v1/content?slot=hero&anonymousId=…`
answers this visitor's variant of a slot as `{slot, variant, html}`. The write key (Basic
auth user name or `?writeKey=`) and the allowed origins are those of the tracking routes; the
route only reads."""
from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from chalice import Blueprint, Response

from chalicelib import config
from chalicelib.entrypoints.http import json_response
from chalicelib.entrypoints.runtime import metrics, services
from chalicelib.services.content import BadContentRequest, ContentRequest, SlotNotFound, SlotUnavailable
from chalicelib.services.ingest import OriginNotAllowed, Unauthorized

content_api = Blueprint(__name__)


def _cors(origin: str | None) -> dict:
    # Personal content: never kept by a shared cache, and told apart per origin.
    headers = {"Cache-Control": "private, no-store", "Vary": "Origin"}
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
    return headers


def _preflight() -> Response:
    origin = content_api.current_request.headers.get("origin")
    headers = {"Access-Control-Allow-Methods": "GET, OPTIONS", "Access-Control-Allow-Headers": "Authorization",
               "Access-Control-Max-Age": "86400", "Vary": "Origin"}
    if origin and any(s.allows_origin(origin) for s in config.settings().sources):
        headers["Access-Control-Allow-Origin"] = origin
    return Response(body="", status_code=204, headers=headers)


@content_api.route("/v1/content", methods=["GET", "OPTIONS"])
def content():
    request = content_api.current_request
    if request.method == "OPTIONS":
        return _preflight()
    query = request.query_params or {}
    origin = request.headers.get("origin")
    asked = ContentRequest(slot=query.get("slot"), anonymous_id=query.get("anonymousId"),
                           user_id=query.get("userId"), write_key=query.get("writeKey"),
                           authorization=request.headers.get("authorization"), origin=origin,
                           locale=query.get("locale"))
    headers = _cors(origin)
    try:
        shown = services().content_service.show(asked)
    except (Unauthorized, OriginNotAllowed) as exc:
        metrics.add_metric(name="RequestsUnauthorized", unit=MetricUnit.Count, value=1)
        return json_response(exc.status, {"error": str(exc)}, headers)
    except (BadContentRequest, SlotNotFound, SlotUnavailable) as exc:
        return json_response(exc.status, {"error": str(exc)}, headers)
    metrics.add_metric(name="ContentShown", unit=MetricUnit.Count, value=1)
    return json_response(200, shown.to_dict(), headers)
