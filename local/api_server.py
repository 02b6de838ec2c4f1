"""Chalice's local HTTP server, made safe for concurrent requests.

Chalice keeps the request being handled in a plain attribute of the app object. On Lambda
an execution environment handles one request at a time, so that is safe; in the threaded
local server, concurrent requests overwrite each other's request, and the handlers then
store another request's body (events written twice, others never, all answered 200).
Each server thread gets its own request here, as each Lambda environment has its own.
"""
from __future__ import annotations

import threading

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer


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

    def log_message(self, *args):
        pass


def make_api_server(app, host: str, port: int, project_dir: str) -> LocalDevServer:
    per_thread_request(app)
    config = Config.create(chalice_stage="dev", app_name="mercurio", project_dir=project_dir)
    return LocalDevServer(app, config, host, port, handler_cls=QuietHandler)
