"""Admin routes of the template library (services/templates.py):

    GET  /v1/admin/templates                       accepted templates, with their last upload's outcome
    GET  /v1/admin/templates/{file}                 source, version, channel, kind, topic, last verdict
    PUT  /v1/admin/templates/{file}                 upload: accepted (200) or refused with the verdict
                                                     (422); a refused upload replaces nothing
    POST /v1/admin/templates/{file}/validate        the verdict, storing nothing
    POST /v1/admin/templates/{file}/preview         render for a sample contact ({"sample": name}) or a
                                                     real one ({"contact_id": id}), sending nothing
    POST /v1/admin/templates/{file}/test-send       {"to": address, "sample" | "contact_id"}: one email or
                                                     SMS to that address only, through the queue (202)

`{file}` is the template's file name, e.g. `welcome.html.j2` or `welcome.it.html.j2`; the body
of PUT and validate is the file itself (UTF-8 text, any content type).
"""
from __future__ import annotations

import json
from dataclasses import asdict

from chalice import Blueprint

from chalicelib.entrypoints.http import admin_call, json_body, json_response
from chalicelib.entrypoints.runtime import services
from chalicelib.services.contacts import BadQuery

templates_api = Blueprint(__name__)
ANY = ["*/*"]
MAX_SOURCE_BYTES = 256 * 1024  # the template engine's own cap on a source


def _library():
    return services().template_authoring


def _readable(action):
    """Template problems answer 400 naming each problem and its line."""
    def run(request):
        from chalicelib.domain.messaging.templates import TemplateInvalid, TemplateRenderError

        try:
            return action(request)
        except TemplateInvalid as exc:
            raise BadQuery("; ".join(str(p) for p in exc.verdict.problems)) from None
        except TemplateRenderError as exc:
            raise BadQuery(str(exc)) from None

    return run


def _source(request) -> str:
    raw = request.raw_body or b""
    if len(raw) > MAX_SOURCE_BYTES:
        raise BadQuery(f"a template is at most {MAX_SOURCE_BYTES // 1024} KB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadQuery(f"a template is UTF-8 text (byte {exc.start} is not)") from None


@templates_api.route("/v1/admin/templates", methods=["GET"], content_types=ANY)
def list_templates():
    return admin_call(templates_api.current_request, lambda request: {"templates": _library().listing()})


@templates_api.route("/v1/admin/templates/{filename}", methods=["GET", "PUT"], content_types=ANY)
def one_template(filename):
    request = templates_api.current_request
    if request.method == "PUT":
        outcome = {}

        def upload(req):
            verdict = _library().put(filename, _source(req))
            outcome["ok"] = verdict.ok
            return {"verdict": verdict.to_dict(), **(_library().describe(filename) if verdict.ok else {})}

        response = admin_call(request, upload)
        if response.status_code == 200 and outcome.get("ok") is False:
            return _refused(response)
        return response
    return admin_call(request, _readable(lambda req: _library().describe(filename)))


def _refused(response):
    body = json.loads(response.body)
    problems = [p["message"] if not p.get("line") else f"line {p['line']}: {p['message']}"
                for p in body["verdict"]["problems"]]
    return json_response(422, {"error": "the template was refused; the last good version stays in use: "
                                        + "; ".join(problems), **body})


@templates_api.route("/v1/admin/templates/{filename}/validate", methods=["POST"], content_types=ANY)
def validate_template(filename):
    return admin_call(templates_api.current_request,
                      lambda req: {"verdict": _library().validate(filename, _source(req)).to_dict()})


@templates_api.route("/v1/admin/templates/{filename}/preview", methods=["POST"], content_types=ANY)
def preview_template(filename):
    def act(req):
        body = json_body(req) if req.raw_body else {}
        sample, contact_id = body.get("sample"), body.get("contact_id")
        if sample is not None and not isinstance(sample, str):
            raise BadQuery("sample is the name of a sample contact")
        if contact_id is not None:
            if not isinstance(contact_id, str) or not contact_id or sample is not None:
                raise BadQuery("contact_id is the id of a contact (give a contact_id or a sample, not both)")
            rendered = services().template_trials.preview_for_contact(filename, contact_id)
            return {"template": filename, "contact_id": contact_id, "rendered": asdict(rendered)}
        return {"template": filename, "rendered": asdict(_library().preview(filename, sample))}

    return admin_call(templates_api.current_request, _readable(act))


@templates_api.route("/v1/admin/templates/{filename}/test-send", methods=["POST"], content_types=ANY)
def test_send_template(filename):
    def act(req):
        from chalicelib.entrypoints.http import Accepted

        body = json_body(req)
        return Accepted(services().template_trials.test_send(filename, body.get("to"), sample=body.get("sample"),
                                                             contact_id=body.get("contact_id")))

    return admin_call(templates_api.current_request, _readable(act))
