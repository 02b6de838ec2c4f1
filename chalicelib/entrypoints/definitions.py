"""Admin routes for every kind of definition, the same for each (definition_kinds):

    GET    /v1/admin/{plural}                 list (with the stored rows that no longer parse)
    POST   /v1/admin/{plural}/validate        check a document without saving it (no id or name needed)
    GET    /v1/admin/{plural}/{id}[?version=N] one definition, every version
    PUT    /v1/admin/{plural}/{id}            store a new version (YAML or JSON)
    DELETE /v1/admin/{plural}/{id}            delete (refused, naming them, while others use it)

A kind with one definition (scoring, rfm, personas) has GET, PUT and DELETE on
/v1/admin/{plural} itself. The same routes answer under /v1/admin/definitions/{kind}/…,
and GET /v1/admin/definitions says which kinds exist and which stored rows no longer parse.
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.entrypoints.http import admin_call
from chalicelib.entrypoints.runtime import services
from chalicelib.domain.definition_kinds import REGISTRY
from chalicelib.services.contacts import BadQuery

definitions_api = Blueprint(__name__)
ANY = ["*/*"]


def _admin(action):
    return admin_call(definitions_api.current_request, action)


def _version(request) -> int | None:
    raw = (request.query_params or {}).get("version")
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 10**9:
        raise BadQuery(f"version {raw!r} is not a version number (1, 2, …)")
    return int(raw)


def _one(kind: str, definition_id: str):
    """GET, PUT or DELETE of one definition."""
    def act(request):
        service = services().definitions
        if request.method == "PUT":
            result = service.put(kind, definition_id, request.raw_body, request.headers.get("content-type"))
            return {**service.view(kind, definition_id), **result}
        if request.method == "DELETE":
            return service.delete(kind, definition_id)
        return service.view(kind, definition_id, _version(request))

    return _admin(act)


def _validate(kind: str, definition_id: str | None = None):
    def act(request):
        stated = definition_id or (request.query_params or {}).get("id")
        return services().definitions.validate(kind, request.raw_body, stated)

    return _admin(act)


def _list(kind: str):
    return _admin(lambda r: services().definitions.list(kind))


def _route(path: str, methods: list[str], view) -> None:
    view.__name__ = "admin_" + "_".join(p.strip("{}") for p in path.split("/")[3:]).replace("-", "_") + \
                    "_" + "_".join(m.lower() for m in methods)
    definitions_api.route(path, methods=methods, content_types=ANY)(view)


def _register(kind) -> None:
    base = f"/v1/admin/{kind.plural}"
    if kind.singleton:
        _route(base, ["GET", "PUT", "DELETE"], lambda: _one(kind.name, "default"))
        _route(f"{base}/validate", ["POST"], lambda: _validate(kind.name, "default"))
        return
    variable = f"{kind.name}_id"  # as the kind's other routes name it (segment_id, campaign_id)
    _route(base, ["GET"], lambda: _list(kind.name))
    _route(f"{base}/validate", ["POST"], lambda: _validate(kind.name))
    _route(f"{base}/{{{variable}}}", ["GET", "PUT", "DELETE"], lambda **ids: _one(kind.name, ids[variable]))


for _kind in REGISTRY:
    _register(_kind)


@definitions_api.route("/v1/admin/definitions", methods=["GET"])
def admin_definitions_overview():
    return _admin(lambda r: services().definitions.overview())


@definitions_api.route("/v1/admin/definitions/{kind}", methods=["GET"])
def admin_definitions_of_kind(kind):
    return _list(kind)


@definitions_api.route("/v1/admin/definitions/{kind}/validate", methods=["POST"], content_types=ANY)
def admin_definition_validate(kind):
    return _validate(kind)


@definitions_api.route("/v1/admin/definitions/{kind}/{definition_id}", methods=["GET", "PUT", "DELETE"],
                       content_types=ANY)
def admin_definition(kind, definition_id):
    return _one(kind, definition_id)


@definitions_api.route("/v1/admin/segments/preview", methods=["POST"], content_types=ANY)
def admin_segment_preview():
    """How many contacts a segment would hold (a bounded scan); id and name not needed."""
    from chalicelib.services.definitions import decode_document

    return _admin(lambda r: services().segment_jobs.preview(decode_document(r.raw_body)))
