"""Mercurio's Chalice app: routes and event handlers wired to chalicelib services, nothing more."""
from __future__ import annotations

import json
from pathlib import Path

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from chalice import Chalice, Rate, Response

from chalicelib import bootstrap, config
from chalicelib.api_admin import admin_api
from chalicelib.api_definitions import definitions_api
from chalicelib.adapters.dynamodb_events import EventStoreUnavailable
from chalicelib.domain.events import SHORT_PATHS, RequestError
from chalicelib.services.ingest import OriginNotAllowed, TrackingRequest, Unauthorized
from chalicelib.stream import handle_stream

app = Chalice(app_name="mercurio", configure_logs=False)
logger = Logger(service="mercurio")
metrics = Metrics(namespace="Mercurio", service="mercurio")
tracer = Tracer(service="mercurio")

SNIPPET = Path(__file__).parent / "chalicelib" / "web" / "mercurio.js"
ANY = ["*/*"]


@app.middleware("http")
def observe_http(event, get_response):
    request_id = (event.context or {}).get("requestId")
    logger.set_correlation_id(request_id)
    try:
        response = get_response(event)
        logger.info("request", extra={"method": event.method, "path": event.path, "status": response.status_code})
        return response
    finally:
        _flush_metrics()


def _flush_metrics() -> None:
    if metrics.metric_set:
        metrics.flush_metrics()
        metrics.clear_metrics()  # a disabled Metrics (local runs) flushes without clearing


# -- helpers: request → service arguments, service errors → HTTP ---------------------------

def _json(status: int, body: dict, headers: dict | None = None) -> Response:
    return Response(body=json.dumps(body), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def _cors_headers(origin: str | None) -> dict:
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _preflight() -> Response:
    origin = app.current_request.headers.get("origin")
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
    request = app.current_request
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
        result = bootstrap.ingest_service().ingest(tracking)
    except (Unauthorized, OriginNotAllowed) as exc:
        metrics.add_metric(name="RequestsUnauthorized", unit=MetricUnit.Count, value=1)
        return _json(exc.status, {"success": False, "error": str(exc)}, cors)
    except RequestError as exc:
        metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
        return _json(exc.status, {"success": False, "error": str(exc)}, cors)
    except EventStoreUnavailable as exc:
        logger.warning("event store throttled", extra={"reason": str(exc)})
        return _json(503, {"success": False, "error": "busy, retry later"}, {**cors, "Retry-After": "1"})
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=result.accepted)
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=len(result.rejected))
    if result.rejected:
        logger.info("events rejected", extra={"source": result.source.name, "rejected": result.rejected[:10]})
    return _json(result.status, result.response(), cors)


def _route_tracking(path: str, event_type: str | None):
    def view():
        return _track(event_type)

    view.__name__ = "track_" + path.strip("/").replace("/", "_")
    app.route(path, methods=["POST", "OPTIONS"], content_types=ANY)(view)


for _type in ("identify", "track", "page", "screen", "group", "alias"):
    _route_tracking(f"/v1/{_type}", _type)
for _short, _type in SHORT_PATHS.items():
    _route_tracking(f"/v1/{_short}", _type)
_route_tracking("/v1/batch", None)
_route_tracking("/v1/b", None)
_route_tracking("/v1/import", None)  # Segment's older name for batch


@app.route("/v1/mercurio.js", methods=["GET"])
def snippet():
    return Response(body=SNIPPET.read_text(encoding="utf-8"), status_code=200, headers={
        "Content-Type": "application/javascript; charset=utf-8",
        "Cache-Control": "public, max-age=300",
        "Access-Control-Allow-Origin": "*",
    })


@app.route("/health", methods=["GET"])
def health():
    return _json(200, {"status": "ok", "stage": config.settings().stage})


# -- admin API (bearer token only) and scheduled jobs ------------------------------------------

app.register_blueprint(admin_api)
app.register_blueprint(definitions_api)


# -- stream processing ------------------------------------------------------------------------

@app.on_dynamodb_record(stream_arn=config.events_stream_arn(), batch_size=100,
                        starting_position="TRIM_HORIZON", name="process_events")
@tracer.capture_method(capture_response=False)
def process_events(event):
    logger.append_keys(stream_records=len(event.to_dict().get("Records", [])))
    try:
        return handle_stream(event.to_dict(), event.context, bootstrap.event_processor(), logger, metrics)
    finally:
        logger.remove_keys(["stream_records"])
        _flush_metrics()


@app.schedule(Rate(config.recheck_minutes(), unit=Rate.MINUTES), name="segment_jobs")
def segment_jobs(event):
    """Time-based segment rechecks, back-fills of new definitions, uploaded definitions."""
    jobs = bootstrap.segment_jobs()
    report = {"uploads": bootstrap.definitions().sync_uploads(bootstrap.definition_uploads()),
              "recheck": jobs.recheck_due(), "backfills": jobs.run_backfills()}
    logger.info("segment jobs", extra={"recheck": report["recheck"], "backfills": report["backfills"],
                                       "uploads_applied": len(report["uploads"]["applied"]),
                                       "uploads_rejected": report["uploads"]["rejected"]})
    return report


@app.schedule(Rate(1, unit=Rate.DAYS), name="rfm_thresholds")
def rfm_thresholds(event):
    """RFM quintiles from the current distribution, then every customer's class."""
    report = bootstrap.segment_jobs().recompute_rfm()
    logger.info("rfm recomputed", extra={k: v for k, v in report.items() if k != "thresholds"})
    return report
