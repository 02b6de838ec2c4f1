"""The public tracking API: Segment's HTTP Tracking API (and analytics.js' short paths),
the snippet, and the health check. The write key only appends events."""
from __future__ import annotations

from pathlib import Path

from aws_lambda_powertools.metrics import MetricUnit
from chalice import Blueprint, Response

from chalicelib import config
from chalicelib.domain.events import SHORT_PATHS, RequestError
from chalicelib.entrypoints.http import json_response
from chalicelib.entrypoints.runtime import logger, metrics, services, tracer
from chalicelib.services.ingest import OriginNotAllowed, TrackingRequest, Unauthorized
from chalicelib.services.ports import EventStoreUnavailable

tracking_api = Blueprint(__name__)
SNIPPET = Path(__file__).resolve().parent.parent / "web" / "mercurio.js"
ANY = ["*/*"]


def _cors_headers(origin: str | None) -> dict:
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _preflight() -> Response:
    origin = tracking_api.current_request.headers.get("origin")
    allowed = any(s.allows_origin(origin) for s in config.settings().sources)
    headers = {"Access-Control-Allow-Methods": "POST, OPTIONS",
               # analytics-next adds X-Retry-Count to its retries.
               "Access-Control-Allow-Headers": "Content-Type, Authorization, X-Retry-Count",
               "Access-Control-Max-Age": "86400", "Vary": "Origin"}
    if origin and allowed:
        headers["Access-Control-Allow-Origin"] = origin
    return Response(body="", status_code=204, headers=headers)


@tracer.capture_method(capture_response=False)
def _track(event_type: str | None) -> Response:
    request = tracking_api.current_request
    if request.method == "OPTIONS":
        return _preflight()
    headers = request.headers
    origin = headers.get("origin")
    tracking = TrackingRequest(
        body=request.raw_body,
        content_type=headers.get("content-type"),
        authorization=headers.get("authorization"),
        origin=origin,
        ip=(request.context.get("identity") or {}).get("sourceIp"),
        user_agent=headers.get("user-agent"),
        event_type=event_type,
        content_encoding=headers.get("content-encoding"),
    )
    cors = _cors_headers(origin)
    try:
        result = services().ingest.ingest(tracking)
    except (Unauthorized, OriginNotAllowed) as exc:
        metrics.add_metric(name="RequestsUnauthorized", unit=MetricUnit.Count, value=1)
        return json_response(exc.status, {"success": False, "error": str(exc)}, cors)
    except RequestError as exc:
        metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
        return json_response(exc.status, {"success": False, "error": str(exc)}, cors)
    except EventStoreUnavailable as exc:
        logger.warning("event store throttled", extra={"reason": str(exc)})
        return json_response(503, {"success": False, "error": "busy, retry later"}, {**cors, "Retry-After": "1"})
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=result.accepted)
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=len(result.rejected))
    if result.rejected:
        logger.info("events rejected", extra={"source": result.source.name, "rejected": result.rejected[:10]})
    return json_response(result.status, result.response(), cors)


def _route_tracking(path: str, event_type: str | None):
    def view():
        return _track(event_type)

    view.__name__ = "track_" + path.strip("/").replace("/", "_")
    tracking_api.route(path, methods=["POST", "OPTIONS"], content_types=ANY)(view)


for _type in ("identify", "track", "page", "screen", "group", "alias"):
    _route_tracking(f"/v1/{_type}", _type)
for _short, _type in SHORT_PATHS.items():
    _route_tracking(f"/v1/{_short}", _type)
_route_tracking("/v1/batch", None)
_route_tracking("/v1/b", None)
_route_tracking("/v1/import", None)  # Segment's older name for batch


@tracking_api.route("/v1/mercurio.js", methods=["GET"])
def snippet():
    return Response(body=SNIPPET.read_text(encoding="utf-8"), status_code=200, headers={
        "Content-Type": "application/javascript; charset=utf-8",
        "Cache-Control": "public, max-age=300",
        "Access-Control-Allow-Origin": "*",
    })


@tracking_api.route("/health", methods=["GET"])
def health():
    return json_response(200, {"status": "ok", "stage": config.settings().stage})
