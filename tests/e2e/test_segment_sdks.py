"""Segment's own SDKs, unchanged, against Mercurio's HTTP Tracking API.

Each SDK is pointed at the local stack only through its documented host setting, and plays
one visitor: anonymous `page` + `track`, then `identify` with a userId and an email trait.
The admin API must then show ONE contact, reachable by the anonymous id, the user id and the
email, with exactly the messages the SDK sent on its timeline.

- analytics-python (segment-analytics-python, in the virtualenv): its queue + `flush()` (one
  `/v1/batch` carrying several events), `sync_mode`, `alias` and `gzip=True`.
- analytics-node (@segment/analytics-node), run by `tests/sdk/node-driver.js` under node.
- analytics-next (@segment/analytics-next), the browser SDK, bundled here with esbuild from
  `tests/sdk/node_modules` and loaded by a local page in headless Chromium, with its settings
  given inline (`cdnSettings`) so nothing is fetched from Segment's CDN: the default delivery
  (`/v1/p`, `/v1/t`, `/v1/i`, text/plain, CORS) and the batching delivery (`/v1/b`).

Needs `cd tests/sdk && npm ci` (the Makefile does it), node, and Chromium at /usr/bin/chromium
(`apt-get install -y chromium`): anything missing is a failure, not a skip.
"""
from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDK_DIR = ROOT / "tests" / "sdk"
NODE_MODULES = SDK_DIR / "node_modules"
# Deadlines, not durations: a passing test returns as soon as what it waits for shows; the
# margin is for a machine under load.
PROCESSING_TIMEOUT = 60.0  # events reach the timeline through an asynchronous stream
DELIVERY_TIMEOUT = 30.0  # the browser SDK sends in the background

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------------- helpers


def _visitor(sdk: str) -> dict:
    tag = uuid.uuid4().hex[:12]
    return {
        "anon": f"{sdk}-anon-{tag}",
        "user": f"{sdk}-user-{tag}",
        "email": f"{sdk}.{tag}@example.com",
        "marker": f"{sdk}-{tag}",
    }


def _contact(stack, identifier: str):
    status, body = stack.admin_get(f"/v1/admin/contacts?identifier={quote(identifier, safe='')}")
    if status == 404:
        return None
    assert status == 200, f"GET contact {identifier}: HTTP {status} {body}"
    return body


def _events(stack, contact_id: str) -> list[dict]:
    status, body = stack.admin_get(f"/v1/admin/contacts/{quote(contact_id, safe='')}/events?kind=tracked")
    assert status == 200, f"GET events of {contact_id}: HTTP {status} {body}"
    return body["events"]


def wait_for_one_contact(stack, identifiers: list[str], message_ids: set[str], traits: dict,
                         timeout: float = PROCESSING_TIMEOUT) -> tuple[dict, list[dict]]:
    """Poll until every identifier resolves to the same contact, which holds the traits and
    whose timeline holds every message id; return (contact, events). Fails with what the
    backend holds otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        contacts = {i: _contact(stack, i) for i in identifiers}
        ids = {c["id"] if c else None for c in contacts.values()}
        events = []
        if len(ids) == 1 and None not in ids:
            events = _events(stack, ids.pop())
            contact = _contact(stack, identifiers[0])  # read after the events: processing is done
            if (message_ids <= {e.get("messageId") for e in events}
                    and set(identifiers) <= set(contact["identifiers"])
                    and traits.items() <= contact["traits"].items()):
                return contact, events
        if time.monotonic() > deadline:
            summary = {i: (c["id"], c.get("identifiers"), c.get("traits")) if c else None
                       for i, c in contacts.items()}
            timeline = [(e.get("type"), e.get("event") or e.get("name"), e.get("messageId")) for e in events]
            pytest.fail(
                f"after {timeout:.0f} s the SDK's visitor is still not one contact with its events.\n"
                f"contacts by identifier: {summary}\nexpected message ids: {sorted(message_ids)}\n"
                f"timeline (newest first): {timeline}",
                pytrace=False,
            )
        time.sleep(0.25)


def check_visitor(stack, visitor: dict, message_ids: set[str], track_event: str) -> tuple[dict, list[dict]]:
    contact, events = wait_for_one_contact(
        stack,
        [f"anon:{visitor['anon']}", f"user:{visitor['user']}", f"email:{visitor['email']}"],
        message_ids,
        {"email": visitor["email"]},
    )
    mine = [e for e in events if e.get("messageId") in message_ids]
    kinds = sorted(e["type"] for e in mine)
    assert kinds == ["identify", "page", "track"], f"timeline of the SDK's messages: {kinds}"
    track = next(e for e in mine if e["type"] == "track")
    assert track["event"] == track_event
    assert track["properties"]["marker"] == visitor["marker"]
    page = next(e for e in mine if e["type"] == "page")
    assert page["name"] == "Pricing"
    assert page["properties"]["marker"] == visitor["marker"]
    return contact, events


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(handler) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ---------------------------------------------------------------------------- analytics-python


@pytest.fixture
def python_sdk(local_stack, monkeypatch):
    """The module-level analytics-python API pointed at the stack; every HTTP post it makes is
    recorded (observed only: the SDK's own session still sends it)."""
    import segment.analytics as analytics
    from segment.analytics import request as sdk_request

    posts, errors = [], []
    real_post = sdk_request._session.post

    def recording_post(url, **kwargs):
        response = real_post(url, **kwargs)
        posts.append({"url": url, "headers": kwargs.get("headers"), "data": kwargs.get("data"),
                      "status": response.status_code, "answer": response.text})
        return response

    monkeypatch.setattr(sdk_request._session, "post", recording_post)
    saved = {name: getattr(analytics, name) for name in ("write_key", "host", "on_error", "sync_mode", "max_retries")}
    analytics.default_client = None
    analytics.write_key = local_stack.write_key
    analytics.host = local_stack.api_url
    analytics.on_error = lambda error, batch: errors.append((repr(error), batch))
    analytics.sync_mode = False
    analytics.max_retries = 0
    yield analytics, posts, errors
    if analytics.default_client is not None:
        analytics.shutdown()
    analytics.default_client = None
    for name, value in saved.items():
        setattr(analytics, name, value)


def test_analytics_python_batches_a_visitor_into_one_contact(local_stack, python_sdk):
    analytics, posts, errors = python_sdk
    v = _visitor("py")
    sent = [
        analytics.page(anonymous_id=v["anon"], category="Docs", name="Pricing",
                       properties={"marker": v["marker"], "path": "/pricing"}),
        analytics.track(anonymous_id=v["anon"], event="Python SDK Tried",
                        properties={"marker": v["marker"], "plan": "pro"}),
        analytics.identify(v["user"], {"email": v["email"], "name": "Py Visitor"}, anonymous_id=v["anon"]),
    ]
    analytics.flush()  # the consumer thread sends what it queued, and this waits for it

    assert all(ok for ok, _ in sent), sent
    assert not errors, f"the SDK reported errors: {errors}"
    assert posts, "the SDK sent nothing"
    for post in posts:
        assert post["url"] == local_stack.api_url + "/v1/batch"
        assert post["status"] == 200, f"POST /v1/batch answered {post['status']}: {post['answer']}"
    batches = [json.loads(p["data"])["batch"] for p in posts]
    assert max(len(b) for b in batches) > 1, f"expected the queue to batch events, got sizes {[len(b) for b in batches]}"
    assert sum(len(b) for b in batches) == 3

    contact, _ = check_visitor(local_stack, v, {m["messageId"] for _, m in sent}, "Python SDK Tried")
    assert contact["traits"].get("name") == "Py Visitor"


def test_analytics_python_sync_mode_and_alias(local_stack):
    from segment.analytics import Client

    errors = []
    client = Client(local_stack.write_key, host=local_stack.api_url, sync_mode=True, max_retries=0,
                    on_error=lambda error, batch: errors.append((repr(error), batch)))
    v = _visitor("pysync")
    sent = [
        client.page(anonymous_id=v["anon"], category="Docs", name="Pricing", properties={"marker": v["marker"]}),
        client.track(anonymous_id=v["anon"], event="Python Sync Tried", properties={"marker": v["marker"]}),
        client.identify(v["user"], {"email": v["email"]}, anonymous_id=v["anon"]),
    ]
    assert all(ok for ok, _ in sent), sent
    assert not errors, f"the SDK reported errors: {errors}"
    contact, _ = check_visitor(local_stack, v, {m["messageId"] for _, m in sent}, "Python Sync Tried")

    # The person gets a new user id in the customer's system: alias(previousId → userId).
    new_user = v["user"] + "-renamed"
    ok, alias = client.alias(previous_id=v["user"], user_id=new_user)
    assert ok and not errors, errors
    assert alias["type"] == "alias" and alias["previousId"] == v["user"] and alias["userId"] == new_user
    everything = {f"user:{new_user}", f"user:{v['user']}", f"anon:{v['anon']}", f"email:{v['email']}"}
    aliased = local_stack.wait_for_contact(f"user:{new_user}", lambda c: everything <= set(c["identifiers"]),
                                           timeout=PROCESSING_TIMEOUT)
    assert aliased["id"] == contact["id"], "alias must attach the new user id to the same contact"
    for identifier in everything:
        assert _contact(local_stack, identifier)["id"] == contact["id"], identifier


def test_analytics_python_sending_one_messageid_twice_is_one_event(local_stack):
    """Two calls with the same message_id: the SDK stamps each with its own time, so they
    are two rows under two keys; Segment counts one event, and so does Mercurio."""
    from datetime import datetime, timedelta, timezone

    from segment.analytics import Client

    errors = []
    client = Client(local_stack.write_key, host=local_stack.api_url, sync_mode=True, max_retries=0,
                    on_error=lambda error, batch: errors.append((repr(error), batch)))
    v = _visitor("pyresend")
    message_id = f"resent-{v['marker']}"
    # Explicit stamps, two seconds apart, so the two keys differ whatever the machine's speed.
    first = datetime.now(timezone.utc).replace(microsecond=0)
    sent = [client.track(user_id=v["user"], event="Python Resent", message_id=message_id, timestamp=stamp,
                         properties={"marker": v["marker"]}) for stamp in (first, first + timedelta(seconds=2))]
    assert all(ok for ok, _ in sent) and not errors, (sent, errors)
    # Sent after both, to the same partition: once it shows, both resends were processed.
    ok, after = client.track(user_id=v["user"], event="Python After", properties={"marker": v["marker"]})
    assert ok
    contact, events = wait_for_one_contact(local_stack, [f"user:{v['user']}"], {after["messageId"]}, {})
    assert [e["messageId"] for e in events].count(message_id) == 1, events
    assert contact["counters"]["Python Resent"]["total"] == 1


def test_analytics_python_gzip_bodies(local_stack):
    """`gzip=True` is one of analytics-python's documented settings: the batch is sent with
    `Content-Encoding: gzip`."""
    from segment.analytics import Client

    errors = []
    client = Client(local_stack.write_key, host=local_stack.api_url, sync_mode=True, gzip=True, max_retries=0,
                    on_error=lambda error, batch: errors.append((repr(error), batch)))
    v = _visitor("pygzip")
    sent, refused = [], None
    try:
        sent.append(client.page(anonymous_id=v["anon"], category="Docs", name="Pricing",
                                properties={"marker": v["marker"]}))
        sent.append(client.track(anonymous_id=v["anon"], event="Python Gzip Tried",
                                 properties={"marker": v["marker"]}))
        sent.append(client.identify(v["user"], {"email": v["email"]}, anonymous_id=v["anon"]))
    except Exception as exc:  # sync_mode raises the API's answer
        refused = str(exc)
    if refused:
        pytest.fail(
            "analytics-python with gzip=True: POST /v1/batch with Content-Type: application/json, "
            "Content-Encoding: gzip, Authorization: Basic <writeKey:>, body gzip({batch, writeKey, sentAt}) "
            f"was refused: {refused}",
            pytrace=False,
        )
    assert not errors, errors
    check_visitor(local_stack, v, {m["messageId"] for _, m in sent}, "Python Gzip Tried")


# ---------------------------------------------------------------------------- analytics-node


def _require_node_modules() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is required for the Segment SDK tests (install nodejs)", pytrace=False)
    for package in ("@segment/analytics-node", "@segment/analytics-next", "esbuild"):
        if not (NODE_MODULES / package / "package.json").exists():
            pytest.fail(
                f"{NODE_MODULES / package} is missing: run `cd tests/sdk && npm ci` "
                "(`make test` does it) before these tests",
                pytrace=False,
            )


def _pinned_version(package: str) -> str:
    pinned = json.loads((SDK_DIR / "package.json").read_text())["dependencies"][package]
    installed = json.loads((NODE_MODULES / package / "package.json").read_text())["version"]
    assert installed == pinned, f"{package}: {installed} installed, {pinned} pinned: run `cd tests/sdk && npm ci`"
    return installed


def test_analytics_node_sends_a_visitor_as_one_contact(local_stack):
    _require_node_modules()
    version = _pinned_version("@segment/analytics-node")
    v = _visitor("node")
    run = subprocess.run(
        ["node", str(SDK_DIR / "node-driver.js"), local_stack.api_url, local_stack.write_key,
         v["anon"], v["user"], v["email"], v["marker"]],
        cwd=SDK_DIR, capture_output=True, text=True, timeout=60,
    )
    records = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0, (
        f"analytics-node {version} failed (exit {run.returncode}).\nstdout:\n{run.stdout[-4000:]}\n"
        f"stderr:\n{run.stderr[-2000:]}"
    )
    requests_ = [r for r in records if r["kind"] == "request"]
    responses = [r for r in records if r["kind"] == "response"]
    assert requests_ and len(responses) == len(requests_), records
    for request in requests_:
        assert request["method"] == "POST" and request["url"] == local_stack.api_url + "/v1/batch"
        assert request["headers"]["Authorization"].startswith("Basic ")
    assert all(r["status"] == 200 for r in responses), responses
    batch = [event for r in requests_ for event in json.loads(r["body"])["batch"]]
    assert [e["type"] for e in batch] == ["page", "track", "identify"]
    assert all(e["context"]["library"] == {"name": "@segment/analytics-node", "version": version} for e in batch)

    contact, events = check_visitor(local_stack, v, {e["messageId"] for e in batch}, "Node SDK Tried")
    assert contact["traits"].get("name") == "Node Visitor"


# ---------------------------------------------------------------------------- analytics-next (browser)


PAGE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Pricing</title><link rel="icon" href="data:,">
<script src="/analytics-next.js"></script></head>
<body><h1>Pricing</h1></body></html>
"""

# Segment's documented ways to run analytics-next without its CDN: the settings inline
# (`cdnSettings`), and the Segment.io destination's settings in the load options.
LOAD_SNIPPET = """async ([writeKey, segmentio, viaOptions, visitor]) => {
  const cdnSettings = {
    integrations: { 'Segment.io': viaOptions ? { apiKey: writeKey } : { apiKey: writeKey, ...segmentio } },
    metrics: { sampleRate: 0 },
  };
  const options = viaOptions ? { integrations: { 'Segment.io': segmentio } } : {};
  const [analytics] = await AnalyticsBrowser.load({ writeKey, cdnSettings }, options);
  const sent = [];
  sent.push(await analytics.page('Docs', 'Pricing', { marker: visitor.marker }));
  sent.push(await analytics.track('Browser SDK Tried', { marker: visitor.marker, plan: 'pro' }));
  sent.push(await analytics.identify(visitor.user, { email: visitor.email, name: 'Browser Visitor' }));
  return {
    anonymousId: analytics.user().anonymousId(),
    version: window.analyticsNextVersion,
    messageIds: sent.map((ctx) => ctx.event.messageId),
  };
}"""


@pytest.fixture(scope="module")
def sdk_page_dir(tmp_path_factory):
    """analytics-next from node_modules, bundled into one file next to a tiny page."""
    _require_node_modules()
    _pinned_version("@segment/analytics-next")
    out = tmp_path_factory.mktemp("analytics-next-page")
    build = subprocess.run(
        [str(NODE_MODULES / ".bin" / "esbuild"), "browser-entry.js", "--bundle", "--format=iife",
         "--platform=browser", "--target=es2018", '--define:process.env.NODE_ENV="production"',
         f"--outfile={out / 'analytics-next.js'}", "--log-level=warning"],
        cwd=SDK_DIR, capture_output=True, text=True, timeout=60,
    )
    assert build.returncode == 0, f"esbuild failed:\n{build.stdout}\n{build.stderr}"
    (out / "pricing.html").write_text(PAGE_HTML)
    return out


@pytest.fixture(scope="module")
def site(sdk_page_dir):
    """The customer's website: the page and its bundle, on its own loopback origin."""
    server, origin = _serve(functools.partial(QuietHandler, directory=str(sdk_page_dir)))
    yield origin
    server.shutdown()


class Tab:
    """One browser context on the site; records every request (without intercepting any, so
    the browser's own CORS checks apply), console errors and page errors."""

    def __init__(self, browser, site: str, api_url: str):
        self.site, self.api_url = site, api_url
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.requests, self.failed, self.errors = [], [], []
        self.page.on("request", lambda r: self.requests.append(r))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}: {r.failure}"))
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)

    def api_posts(self, api_url: str | None = None):
        base = api_url or self.api_url
        return [r for r in self.requests if r.url.startswith(base) and r.method == "POST"]

    def wait_delivered(self, count: int, api_url: str | None = None) -> list:
        """Wait until `count` POSTs to the API have an answer (or failed); return them."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while True:
            posts = self.api_posts(api_url)
            done = [r for r in posts if r.response() is not None or r.failure is not None]
            if len(done) >= count and len(done) == len(posts):
                return posts
            if time.monotonic() > deadline:
                pytest.fail(self.report(f"the SDK delivered {len(done)} of {count} requests in time"),
                            pytrace=False)
            self.page.wait_for_timeout(100)

    def report(self, headline: str) -> str:
        """What the page sent and what it was answered, for a failure message."""
        lines = [headline]
        for r in self.requests:
            response = r.response() if r.failure is None else None
            if r.method == "GET":
                lines.append(f"  GET {r.url} -> {response.status if response else r.failure}")
                continue
            lines.append(f"  {r.method} {r.url}\n    headers={r.headers}\n    body={(r.post_data or '')[:400]!r}")
            if response is None:
                lines.append(f"    -> {r.failure or 'no answer yet'}")
            else:
                lines.append(f"    -> {response.status} headers={response.headers} body={response.text()[:300]!r}")
        lines += [f"  failed: {f}" for f in self.failed] + [f"  {e}" for e in self.errors]
        return "\n".join(lines)

    def assert_clean(self) -> None:
        outside = [r.url for r in self.requests if not r.url.startswith("http://127.0.0.1:")]
        assert not outside, f"the page reached outside the machine (no CDN allowed): {outside}"
        assert not self.failed and not self.errors, self.report("the page reported failures")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser, site, local_stack):
    tab = Tab(browser, site, local_stack.api_url)
    yield tab
    tab.close()


def _segmentio_settings(api_url: str, **extra) -> dict:
    return {"apiHost": api_url.split("://", 1)[1] + "/v1", "protocol": "http", **extra}


def test_analytics_next_in_a_browser_sends_a_visitor_as_one_contact(local_stack, tab):
    v = _visitor("ajs")
    tab.page.goto(tab.site + "/pricing.html")
    result = tab.page.evaluate(LOAD_SNIPPET, [local_stack.write_key, _segmentio_settings(local_stack.api_url),
                                              False, v])
    assert result["version"] == _pinned_version("@segment/analytics-next")
    posts = tab.wait_delivered(3)
    tab.assert_clean()

    assert [r.url for r in posts] == [local_stack.api_url + p for p in ("/v1/p", "/v1/t", "/v1/i")], tab.report("paths")
    for r in posts:
        assert r.headers["content-type"] == "text/plain", tab.report("content type")
        response = r.response()
        assert response.status == 200, tab.report(f"{r.url} answered {response.status}")
        assert response.headers.get("access-control-allow-origin") == tab.site
        assert json.loads(response.text()).get("success") is True
        assert json.loads(r.post_data)["writeKey"] == local_stack.write_key

    v["anon"] = result["anonymousId"]
    contact, events = check_visitor(local_stack, v, set(result["messageIds"]), "Browser SDK Tried")
    page = next(e for e in events if e["type"] == "page")
    assert page["properties"]["path"] == "/pricing.html"
    assert page["properties"]["url"] == tab.site + "/pricing.html"
    assert page["context"]["library"]["name"] == "analytics.js"


def test_analytics_next_batching_delivery_uses_v1_b(local_stack, tab):
    v = _visitor("ajsb")
    tab.page.goto(tab.site + "/pricing.html")
    segmentio = _segmentio_settings(local_stack.api_url,
                                    deliveryStrategy={"strategy": "batching", "config": {"size": 3, "timeout": 5000}})
    result = tab.page.evaluate(LOAD_SNIPPET, [local_stack.write_key, segmentio, True, v])
    posts = tab.wait_delivered(1)
    tab.assert_clean()

    assert [r.url for r in posts] == [local_stack.api_url + "/v1/b"], tab.report("batching paths")
    request = posts[0]
    assert request.headers["content-type"] == "text/plain"
    assert request.response().status == 200, tab.report("the batch was not accepted")
    body = json.loads(request.post_data)
    assert body["writeKey"] == local_stack.write_key
    assert [e["type"] for e in body["batch"]] == ["page", "track", "identify"]

    v["anon"] = result["anonymousId"]
    check_visitor(local_stack, v, set(result["messageIds"]), "Browser SDK Tried")


class FlakyProxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the API, except that the first POST to /v1/t gets a 500: a transient error
    as any server or load balancer can give. CORS stays the API's own business."""

    upstream = ""
    failed_once = False
    preflights: list = []  # (path, request headers, status, answer headers) of each CORS preflight

    def log_message(self, *args):
        pass

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.command == "POST" and self.path == "/v1/t" and not type(self).failed_once:
            type(self).failed_once = True
            self.send_response(500)
            self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin", "*"))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        request = urllib.request.Request(self.upstream + self.path, data=body, method=self.command, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as exc:
            response = exc
        data = response.read()
        if self.command == "OPTIONS":
            type(self).preflights.append((self.path, dict(self.headers), response.status, dict(response.headers)))
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "server", "date", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_OPTIONS = _forward


def test_analytics_next_retries_after_a_transient_error(local_stack, tab):
    """analytics-next retries a failed event with an `X-Retry-Count` header; from a page on
    another origin that header needs the API's CORS preflight to allow it."""
    proxy_class = type("Proxy", (FlakyProxy,), {"upstream": local_stack.api_url, "preflights": []})
    proxy, proxy_url = _serve(proxy_class)
    try:
        v = _visitor("ajsr")
        tab.page.goto(tab.site + "/pricing.html")
        result = tab.page.evaluate(LOAD_SNIPPET, [local_stack.write_key, _segmentio_settings(proxy_url), False, v])
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while True:
            retried = [r for r in tab.api_posts(proxy_url) if r.url.endswith("/v1/t") and "x-retry-count" in r.headers]
            if any(r.response() is not None and r.response().status == 200 for r in retried):
                break
            if time.monotonic() > deadline:
                preflights = "\n".join(
                    f"  OPTIONS {path} Access-Control-Request-Headers: {h.get('Access-Control-Request-Headers')}"
                    f" -> {status}, Access-Control-Allow-Headers: {a.get('Access-Control-Allow-Headers')}"
                    for path, h, status, a in proxy_class.preflights
                )
                pytest.fail(tab.report("the retried track never reached the API") + "\nCORS preflights:\n"
                            + preflights, pytrace=False)
            tab.page.wait_for_timeout(100)
        v["anon"] = result["anonymousId"]
        check_visitor(local_stack, v, set(result["messageIds"]), "Browser SDK Tried")
    finally:
        proxy.shutdown()
