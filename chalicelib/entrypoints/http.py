"""What every HTTP entry point shares: JSON answers, request logging, and the admin guard
that maps domain errors to 4xx answers with a reason."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from chalice import Response

from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.nesting import TooDeeplyNested, load_json
from chalicelib.entrypoints.auth import is_admin
from chalicelib.entrypoints.runtime import flush_metrics, logger
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.definitions import DefinitionInUse, DefinitionNotFound
from chalicelib.services.imports import ImportRejected
from chalicelib.services.jobs import JobError
from chalicelib.services.ports import ConcurrentUpdate


@dataclass(frozen=True)
class Accepted:
    """An admin action that goes on in a job: answered 202 with where to follow it."""

    body: dict


def json_response(status: int, body: dict, headers: dict | None = None) -> Response:
    return Response(body=json.dumps(body, default=str), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def observe_http(event, get_response):
    """Chalice HTTP middleware: correlation id, one log line per request, metrics flushed."""
    request_id = (event.context or {}).get("requestId")
    logger.set_correlation_id(request_id)
    try:
        response = get_response(event)
        logger.info("request", extra={"method": event.method, "path": event.path, "status": response.status_code})
        return response
    finally:
        flush_metrics()


def admin_call(request, action: Callable[[object], "dict | Accepted"], status: int = 200) -> Response:
    """Run an admin action for a request that carries the admin bearer token."""
    if not is_admin(request.headers.get("authorization")):
        return json_response(401, {"error": "admin endpoints need Authorization: Bearer <admin token>"},
                             {"WWW-Authenticate": 'Bearer realm="mercurio-admin"'})
    try:
        result = action(request)
        if isinstance(result, Accepted):
            return json_response(202, result.body)
        return json_response(status, result)
    except (DefinitionInUse, ConcurrentUpdate) as exc:
        problems = getattr(exc, "problems", [str(exc)])
        return json_response(409, {"error": "; ".join(problems), "problems": problems})
    except DefinitionError as exc:
        return json_response(400, {"error": "; ".join(exc.problems), "problems": exc.problems})
    except (BadQuery, ImportRejected, JobError) as exc:
        return json_response(400, {"error": str(exc)})
    except (NotFound, DefinitionNotFound) as exc:
        return json_response(404, {"error": str(exc)})


def query(request, name: str) -> str | None:
    return (request.query_params or {}).get(name)


def json_body(request) -> dict:
    try:
        body = load_json(request.raw_body or b"{}")
    except TooDeeplyNested as exc:
        raise BadQuery(str(exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadQuery(f"body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise BadQuery("body must be a JSON object")
    return body


def limit_param(request, default: int = 100, most: int = 1000) -> int:
    raw = query(request, "limit")
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        raise BadQuery(f"limit {raw!r} is not a whole number") from None
    if not 1 <= value <= most:
        raise BadQuery(f"limit must be between 1 and {most}")
    return value
