"""Chalice's local HTTP server, made safe for concurrent requests and answering unknown
routes as the deployed API does.

Chalice keeps the request being handled in a plain attribute of the app object. On Lambda
an execution environment handles one request at a time, so that is safe; in the threaded
local server, concurrent requests overwrite each other's request, and the handlers then
store another request's body (events written twice, others never, all answered 200).
Each server thread gets its own request here, as each Lambda environment has its own.

A path no route matches: Chalice's local gateway imitates API Gateway's default answer, a
403 whose message, when the request has an Authorization header, repeats that header (the
admin token included). The deployed API answers 404 with a fixed body instead (the
MISSING_AUTHENTICATION_TOKEN gateway response in infrastructure/), and so does this server.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    LocalDevServer,
    LocalGateway,
    LocalGatewayException,
    ThreadedHTTPServer,
)

from local.ports import serving_on

# The same status and body as the gateway response in infrastructure/single-stack.yaml and
# infrastructure/deploy.sh: nothing of the request is repeated.
NOT_FOUND_BODY = {"error": "no such route"}


class RouteNotFound(LocalGatewayException):
    CODE = 404


class NotFoundGateway(LocalGateway):
    def _generate_lambda_event(self, method, path, headers, body):
        try:
            return super()._generate_lambda_event(method, path, headers, body)
        except ValueError:  # Chalice's "no route matches"
            raise RouteNotFound({"Content-Type": "application/json"},
                                json.dumps(NOT_FOUND_BODY).encode("utf-8")) from None


def per_thread_request(app) -> None:
    if getattr(type(app), "_per_thread_request", False):
        return
    local = threading.local()

    def slot(name):
        return property(lambda self: getattr(local, name, None), lambda self, value: setattr(local, name, value))

    app.__class__ = type(type(app).__name__, (type(app),), {
        "_per_thread_request": True, "current_request": slot("current_request"),
        "lambda_context": slot("lambda_context"),
    })


class QuietHandler(ChaliceRequestHandler):
    # The handler writes a response's headers and body in separate sends; with Nagle's
    # algorithm on, each response then waits for the client's delayed ACK (~40 ms), a cost
    # API Gateway does not have.
    disable_nagle_algorithm = True

    def __init__(self, request, client_address, server, app_object, config):
        # The parent builds Chalice's gateway and then handles the request at once, inside
        # BaseHTTPRequestHandler.__init__: swap the gateway in before that happens.
        self.local_gateway = NotFoundGateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def log_message(self, *args):
        pass


def make_api_server(app, host: str, port: int, project_dir: str, sock=None) -> LocalDevServer:
    """Chalice's local server for `app` on host:port (port 0: one the system picks; the
    port is then `server.server.server_address[1]`), or on `sock`, a socket already
    listening (local/ports.py)."""
    per_thread_request(app)
    config = Config.create(chalice_stage="dev", app_name="mercurio", project_dir=project_dir)
    if sock is None:
        return LocalDevServer(app, config, host, port, handler_cls=QuietHandler)
    return LocalDevServer(app, config, host, port, handler_cls=QuietHandler,
                          server_cls=serving_on(ThreadedHTTPServer, sock))
