"""End-to-end fixtures.

`local_stack`: the real local system (`python -m local.run`) in a subprocess on free
loopback ports — moto server, the stream bridge, the HTTP API and the demo shop.
`app_client`: the Chalice app in-process through `chalice.test.Client`, on moto, with a
`drain()` that runs the stream handler over what the events stream holds and a
`drain_effects()` that runs the effects queue's consumer until the queue is empty.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Debian's Chromium (a test tool's own browser download is not reachable from every machine),
# with the flags that keep it off the network it has no business reaching.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WRITE_KEY = "e2e-write-key-0001"
ADMIN_TOKEN = "e2e-admin-token-0001"


@dataclass
class Stack:
    api_url: str
    shop_url: str
    write_key: str
    admin_token: str
    process: subprocess.Popen
    log_path: Path

    def admin_get(self, path: str):
        import json

        request = urllib.request.Request(self.api_url + path,
                                         headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def wait_for_contact(self, identifier: str, predicate=lambda c: True, timeout: float = 60.0) -> dict:
        """Poll until the contact satisfies `predicate`: returns as soon as it does; the
        deadline only bounds a failure (processing is asynchronous, the machine may be busy)."""
        from urllib.parse import quote

        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            status, body = self.admin_get(f"/v1/admin/contacts?identifier={quote(identifier)}")
            last = (status, body)
            if status == 200 and predicate(body):
                return body
            time.sleep(0.2)
        raise AssertionError(f"contact {identifier} not as expected within {timeout}s; last answer {last}")


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    # Port 0 everywhere: the runner binds the ports the system picks and reports them in the
    # ready file once everything answers, so no two stacks (or tests) can race for a port.
    workdir = tmp_path_factory.mktemp("local-stack")
    log_path, ready_path = workdir / "run.log", workdir / "ready.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"MERCURIO_WRITE_KEY": WRITE_KEY, "MERCURIO_ADMIN_TOKEN": ADMIN_TOKEN, "PYTHONUNBUFFERED": "1"})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.run", "--port", "0", "--shop-port", "0", "--ready-file", str(ready_path)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while not ready_path.exists():  # written after the runner saw its own /health answer
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"local stack did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.1)
    urls = json.loads(ready_path.read_text())
    stack = Stack(urls["api_url"], urls["shop_url"], WRITE_KEY, ADMIN_TOKEN, process, log_path)
    yield stack
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


class AppClient:
    """chalice.test.Client plus the stream bridge, so tests see processing happen."""

    def __init__(self, client, stream_arn: str, effects_queue_url: str):
        from local.queue_bridge import QueueBridge
        from local.stream_bridge import StreamBridge

        self.client = client
        self.http = client.http
        self.bridge = StreamBridge(stream_arn, lambda event: client.lambda_.invoke("process_events", event).payload)
        self.effects = QueueBridge(effects_queue_url,
                                   lambda event: client.lambda_.invoke("deliver_effects", event).payload)

    def drain(self) -> int:
        return self.bridge.drain(timeout=30)

    def drain_effects(self, timeout: float = 30) -> int:
        """Run the effects queue's consumer until the queue is empty, waiting out the
        back-off of failed deliveries (real seconds: the queue's visibility)."""
        return self.effects.drain(timeout=timeout)

    def deliver_effects_once(self, wait_seconds: int = 1) -> int:
        """One receive of the effects queue and one consumer call; how many messages it got."""
        return self.effects.poll_once(wait_seconds)

    def post(self, path: str, body, key: str = "test-write-key-1", headers: dict | None = None):
        import base64
        import json

        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        all_headers = {"Content-Type": "application/json"}
        if key is not None:
            all_headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        all_headers.update(headers or {})
        return self.http.post(path, headers=all_headers, body=data)

    def admin(self, path: str, token: str = "test-admin-token-1"):
        import json

        response = self.http.get(path, headers={"Authorization": f"Bearer {token}"})
        return response.status_code, (json.loads(response.body) if response.body else None)


@pytest.fixture
def app_client(app_env):
    from chalice.test import Client

    import app as mercurio

    # A stage absent from .chalice/config.json: only the moto tables of this test apply.
    with Client(mercurio.app, stage_name="test") as client:
        yield AppClient(client, app_env["EventsTable.StreamArn"], app_env["EffectsQueue"])


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven by Playwright; missing Chromium is a failure, not a skip."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is required for the browser tests but {CHROMIUM} does not exist: "
                    "`make test` installs it (apt-get install -y chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
