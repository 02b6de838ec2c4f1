"""Chalice's local HTTP server as `make run` serves it (local/api_server.py), on a port the
operating system picks, against the moto tables."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import ROOT

TOKEN = "test-admin-token-1"


@pytest.fixture
def api_url(app_env):
    import app as mercurio

    from local.api_server import make_api_server

    server = make_api_server(mercurio.app, "127.0.0.1", 0, str(ROOT))
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server.server_address[1]}"
    finally:
        server.shutdown()
        server.server.server_close()
        thread.join(timeout=10)


def _call(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("path,headers", [
    ("/v1/admin/nope", {"Authorization": f"Bearer {TOKEN}"}),
    ("/v1/admin/nope", {}),
    ("/nothing/here?x=1", {"Authorization": "Basic dGVzdC13cml0ZS1rZXktMTo="}),
])
def test_an_unknown_route_is_a_404_that_repeats_nothing(api_url, path, headers):
    status, body = _call(api_url + path, headers=headers)
    assert status == 404, (status, body)
    assert json.loads(body) == {"error": "no such route"}
    assert TOKEN.encode() not in body and b"Authorization" not in body


def test_known_routes_still_answer(api_url):
    assert _call(api_url + "/health")[0] == 200
    status, body = _call(api_url + "/v1/admin/contacts/nobody", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 404 and b"no contact" in body
    assert _call(api_url + "/v1/admin/contacts/nobody")[0] == 401
