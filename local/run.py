"""`make run`: the whole of Mercurio on one machine, on the embedded AWS emulator.

1. starts moto in server mode on loopback (its own process, on UTC: the embedded AWS);
2. creates every resource of infrastructure/template.yaml in it (the file deployed on AWS),
   the enrollment runner state machine included, executed by moto's Step Functions;
3. bridges the events table's DynamoDB stream to the app's `process_events` handler, and
   each queue to its consumer (effects, messages, feedback, fan-out, and the journeys'
   signals, Advance tasks and event waits), the way Lambda's event source mappings do
   (partial batch failures and message visibility honoured);
4. serves the Chalice app's HTTP API and a small demo shop that embeds the snippet, with the
   local inbox (/_inbox: every email, SMS and push the emulator received) beside it.

Stops everything it started on Ctrl-C or SIGTERM. Never shipped to Lambda.
"""
from __future__ import annotations

import argparse
import http.server
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from local.ports import PortInUse, claim_port, serving_on

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(__file__).resolve().parent / "demo"
DEFAULT_WRITE_KEY = "mercurio-dev-write-key"
STAGE = "local"
# Journeys locally: the machine's waits pass this many times faster than the journey's (an
# hour's wait takes 6 s), unless MERCURIO_JOURNEY_TIME_SCALE says otherwise (1: real time).
DEFAULT_JOURNEY_TIME_SCALE = "600"
log = logging.getLogger("mercurio.local")


def wait_until_up(url: str, timeout: float = 30.0, alive=lambda: True) -> None:
    """Poll url until it answers; `alive` says whether the server's process still runs, so a
    server that died is reported at once instead of after the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server for {url} exited before answering")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:  # not up yet
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class Emulator:
    """moto's server in its own process, bound to loopback only.

    The port (0: one the system picks) is bound here and the listening socket handed to the
    process (local/emulator_server.py), so `url` is known before the process starts and no
    other process can take the port in between. `module` is the server module run with
    `--fd N` (bench/moto_server.py wraps the same one)."""

    def __init__(self, port: int = 0, module: str = "local.emulator_server", host: str = "127.0.0.1"):
        self.host = host
        self.port = port
        self.module = module
        self.url: str | None = None
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        sock = claim_port(self.host, self.port, "the AWS emulator (--emulator-port)")
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, "--fd", str(sock.fileno())],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(sock.fileno(),),
                # Its own session: Ctrl-C reaches the runner, which stops the emulator last.
                start_new_session=True,
            )
        finally:
            sock.close()  # the process has its own copy
        wait_until_up(f"{self.url}/moto-api/", alive=lambda: self.process.poll() is None)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def demo_shop_handler(api_url: str, write_key: str, inbox=None):
    class DemoShop(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(DEMO), **kwargs)

        def send_head(self):
            if inbox is not None and self.path.split("?")[0] in ("/_inbox", "/_inbox.json"):
                return self.send_inbox()
            path = Path(self.translate_path(self.path))
            if path.is_dir():
                path = path / "index.html"
            if path.suffix == ".html" and path.is_file():
                body = (path.read_text(encoding="utf-8")
                        .replace("__MERCURIO_API__", api_url)
                        .replace("__MERCURIO_WRITE_KEY__", write_key)).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                import io
                return io.BytesIO(body)
            return super().send_head()

        def send_inbox(self):
            """The local inbox (local/inbox.py): what the emulator received, as HTML or JSON."""
            import io

            from local.inbox import CONTENT_SECURITY_POLICY, render_page

            messages = inbox.messages()
            if self.path.split("?")[0].endswith(".json"):
                body, kind = json.dumps({"messages": messages}).encode(), "application/json"
            else:
                body, kind = render_page(messages).encode("utf-8"), "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            self.end_headers()
            return io.BytesIO(body)

        def log_message(self, *args):
            pass

    return DemoShop


def configure_environment(emulator_url: str, write_key: str, admin_token: str) -> None:
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": emulator_url, "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "MERCURIO_STAGE": STAGE, "MERCURIO_WRITE_KEY": write_key, "MERCURIO_ADMIN_TOKEN": admin_token,
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "MERCURIO_DEFINITIONS_CACHE_SECONDS": os.environ.get("MERCURIO_DEFINITIONS_CACHE_SECONDS", "2"),
        # Deliveries locally: retried for 15 minutes, not 24 hours, unless the operator says otherwise.
        "MERCURIO_DELIVERY_HORIZON_SECONDS": os.environ.get("MERCURIO_DELIVERY_HORIZON_SECONDS", "900"),
        "MERCURIO_JOURNEY_TIME_SCALE": os.environ.get("MERCURIO_JOURNEY_TIME_SCALE") or DEFAULT_JOURNEY_TIME_SCALE,
    })
    # MERCURIO_WEBHOOKS_ALLOW_PRIVATE is the operator's choice (a CRM on loopback needs it):
    # inherited from the environment as it is, never turned on here.


def configure_message_pages(api_url: str) -> None:
    """The links in messages point at this API; their signing key and the suppression salt
    are the operator's when set, else made for this run (the emulator forgets everything
    when it stops, so nothing signed or hashed outlives them)."""
    import secrets

    os.environ.setdefault("MERCURIO_PUBLIC_MESSAGES_URL", f"{api_url}/v1/m")
    os.environ.setdefault("MERCURIO_LINK_SECRETS", secrets.token_urlsafe(32))
    os.environ.setdefault("MERCURIO_SUPPRESSION_SALT", secrets.token_urlsafe(32))
    # The demo shop's newsletter form: the write key may ask for email consent through it
    # (a double opt-in: the subscription starts when the confirmation link is clicked).
    os.environ.setdefault("MERCURIO_CONSENT_FORMS", json.dumps({"newsletter": {
        "shown": "Send me the Caffè Mercurio newsletter (about one email a week).",
        "collects": ["email", "email/newsletter"]}}))


def scheduled_event(name: str) -> dict:
    """An EventBridge scheduled event, as Lambda receives it."""
    import uuid
    from datetime import datetime, timezone

    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "000000000000", "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1", "resources": [f"arn:aws:events:us-east-1:000000000000:rule/{name}"],
            "detail": {}}


class ScheduledJobs:
    """What EventBridge schedules do on AWS: call the app's scheduled handlers on a timer."""

    def __init__(self, jobs: dict):
        self.jobs = jobs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_due(self, last_run: dict) -> None:
        from chalice.local import LambdaContext

        for name, (handler, interval) in self.jobs.items():
            if time.monotonic() - last_run.get(name, -1e9) >= interval:
                last_run[name] = time.monotonic()
                try:
                    handler(scheduled_event(name), LambdaContext(name, memory_size=512, max_runtime_ms=300_000))
                except Exception:  # keep scheduling, as EventBridge would
                    log.exception("scheduled job %s failed", name)

    def start(self) -> None:
        def loop():
            last_run: dict = {}
            while not self._stop.wait(1.0):
                self.run_due(last_run)

        self._thread = threading.Thread(target=loop, name="scheduled-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)


class LocalStack:
    def __init__(self, host: str, port: int, shop_port: int, emulator_port: int, write_key: str,
                 admin_token: str, jobs_interval: float = 30.0):
        self.host, self.port, self.shop_port = host, port, shop_port
        self.write_key, self.admin_token = write_key, admin_token
        self.emulator = Emulator(emulator_port, host="127.0.0.1")
        self.api_url = f"http://{host}:{port}"
        self.shop_url = f"http://{host}:{shop_port}"
        self.bridge = None
        self.queue_bridge = None
        self.message_bridges: list = []

        self.feedback_bridge = None
        self.ses_events = None
        self.api_server = None
        self.shop_server = None
        self.jobs = None
        self.jobs_interval = jobs_interval
        self._claimed: list = []  # listening sockets not yet handed to a running server

    def start(self) -> None:
        """Start everything, or raise having stopped what was started (PortInUse names the
        port). The API's and the shop's ports are claimed first, before anything runs."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        api_socket = claim_port(self.host, self.port, "the API (--port, PORT)")
        self._claimed.append(api_socket)
        shop_socket = claim_port(self.host, self.shop_port, "the demo shop (--shop-port)")
        self._claimed.append(shop_socket)
        self.port, self.shop_port = api_socket.getsockname()[1], shop_socket.getsockname()[1]
        self.api_url, self.shop_url = f"http://{self.host}:{self.port}", f"http://{self.host}:{self.shop_port}"

        self.emulator.start()
        configure_environment(self.emulator.url, self.write_key, self.admin_token)
        configure_message_pages(self.api_url)
        sys.path.insert(0, str(ROOT))
        from local.provision import provision

        created = provision(STAGE, endpoint_url=self.emulator.url, execute=True)
        os.environ["MERCURIO_EVENTS_STREAM_ARN"] = created["EventsTable.StreamArn"]
        os.environ["MERCURIO_ENROLLMENT_RUNNER_ARN"] = created["EnrollmentRunner"]
        os.environ["MERCURIO_SES_CONFIGURATION_SET"] = created["SesConfigurationSet"]
        from local.push_platforms import create_push_platforms, push_platforms_setting

        os.environ.setdefault("MERCURIO_PUSH_PLATFORMS",
                              push_platforms_setting(create_push_platforms(endpoint_url=self.emulator.url)))

        import app as mercurio
        from chalicelib.entrypoints.schedules import rfm_thresholds, segment_jobs
        from chalicelib.entrypoints.effects import deliver_effects
        from chalicelib.entrypoints.messages import send_messages, send_transactional_messages
        from chalicelib.entrypoints.stream import process_events
        from chalice.local import LambdaContext

        from local.api_server import make_api_server
        from local.inbox import Inbox
        from local.stream_bridge import StreamBridge

        def invoke_process_events(event: dict) -> dict:
            context = LambdaContext("process_events", memory_size=512, max_runtime_ms=60_000)
            return process_events(event, context)

        self.bridge = StreamBridge(created["EventsTable.StreamArn"], invoke_process_events,
                                   endpoint_url=self.emulator.url)
        self.bridge.start()

        from local.queue_bridge import QueueBridge

        def invoke_deliver_effects(event: dict) -> dict:
            context = LambdaContext("deliver_effects", memory_size=512, max_runtime_ms=60_000)
            return deliver_effects(event, context)

        self.queue_bridge = QueueBridge(created["EffectsQueue"], invoke_deliver_effects, endpoint_url=self.emulator.url)
        self.queue_bridge.start()

        # The messages queues, bridged the same way to their consumers.
        def invoker(name: str, handler):
            def invoke(event: dict) -> dict:
                return handler(event, LambdaContext(name, memory_size=512, max_runtime_ms=60_000))
            return invoke

        self.message_bridges = [
            QueueBridge(created["MessagesQueue"], invoker("send_messages", send_messages),
                        endpoint_url=self.emulator.url),
            QueueBridge(created["TransactionalMessagesQueue"],
                        invoker("send_transactional_messages", send_transactional_messages),
                        endpoint_url=self.emulator.url)]
        # Broadcast fan-out batches (services/broadcasts.py), bridged to their consumer.
        from chalicelib.entrypoints.broadcasts import broadcast_fanout

        self.message_bridges.append(QueueBridge(created["FanOutQueue"], invoker("broadcast_fanout", broadcast_fanout),
                                                endpoint_url=self.emulator.url))
        # The journey runtime: its signals (a FIFO queue, grouped by contact), and the
        # enrollment runner's Advance tasks and event-wait registrations, which the state
        # machine sends to the queues substituted into its definition.
        from chalicelib.entrypoints.journey_runner import journey_advance, journey_event_waits, journey_events

        self.message_bridges += [
            QueueBridge(created["JourneyEventsQueue"], invoker("journey_events", journey_events),
                        endpoint_url=self.emulator.url),
            QueueBridge(created["JourneyAdvanceQueue"], invoker("journey_advance", journey_advance),
                        endpoint_url=self.emulator.url),
            QueueBridge(created["JourneyEventWaitsQueue"], invoker("journey_event_waits", journey_event_waits),
                        endpoint_url=self.emulator.url)]
        for message_bridge in self.message_bridges:
            message_bridge.start()

        # SES feedback (bounces, complaints, deliveries) published to the feedback topic.
        from chalicelib.entrypoints.feedback import ses_feedback

        def invoke_ses_feedback(event: dict) -> dict:
            return ses_feedback(event, LambdaContext("ses_feedback", memory_size=512, max_runtime_ms=60_000))

        self.feedback_bridge = QueueBridge(created["FeedbackQueue"], invoke_ses_feedback,
                                           endpoint_url=self.emulator.url)
        self.feedback_bridge.start()

        # The example definitions (segments, scoring, RFM, personas, campaigns) ship with the
        # app; marketers add theirs through the admin API or the data bucket.
        from chalicelib.entrypoints import runtime

        runtime.services().definitions.seed_directory(ROOT / "chalicelib" / "definitions")
        # The default templates (templates/) are accepted into the data bucket, as a deploy does.
        from local.upload_templates import accept_templates

        accept_templates(runtime.services().template_authoring)
        # SES sends only from verified identities; what happens to each email comes back
        # through the feedback topic, as a configuration set's event destination does on AWS.
        import boto3

        from local.ses_events import SesEventDestination
        from local.ses_identities import sending_domains, verify_domains

        verify_domains(boto3.client("ses", endpoint_url=self.emulator.url),
                       sending_domains(ROOT / "templates", runtime.services().settings.default_from_address))
        self.ses_events = SesEventDestination(self.emulator.url, created["FeedbackTopic"])
        self.ses_events.start()
        self.jobs = ScheduledJobs({
            "segment_jobs": (segment_jobs, self.jobs_interval),
            "rfm_thresholds": (rfm_thresholds, max(self.jobs_interval, 600)),
        })
        self.jobs.start()

        shop = serving_on(http.server.ThreadingHTTPServer, shop_socket)(
            (self.host, self.shop_port), demo_shop_handler(self.api_url, self.write_key, Inbox(self.emulator.url)))
        self._claimed.remove(shop_socket)
        threading.Thread(target=shop.serve_forever, name="demo-shop", daemon=True).start()
        self.shop_server = shop

        api = make_api_server(mercurio.app, self.host, self.port, str(ROOT), sock=api_socket)
        self._claimed.remove(api_socket)
        threading.Thread(target=api.server.serve_forever, name="api", daemon=True).start()
        self.api_server = api
        wait_until_up(f"{self.api_url}/health")

    def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()
        for server in (self.api_server, self.shop_server):
            if server is not None:  # set only once its serve_forever thread runs
                http_server = getattr(server, "server", server)
                http_server.shutdown()
                http_server.server_close()
        self.api_server = self.shop_server = None
        for sock in self._claimed:
            sock.close()
        self._claimed.clear()
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None
        if self.queue_bridge is not None:
            self.queue_bridge.stop()
            self.queue_bridge = None
        for message_bridge in self.message_bridges:
            message_bridge.stop()
        self.message_bridges = []

        if self.ses_events is not None:
            self.ses_events.stop()
            self.ses_events = None
        if self.feedback_bridge is not None:
            self.feedback_bridge.stop()
            self.feedback_bridge = None
        self.emulator.stop()

    def ready(self) -> dict:
        """Where everything listens, for whoever started this runner (--ready-file)."""
        return {"api_url": self.api_url, "shop_url": self.shop_url, "emulator_url": self.emulator.url}

    def banner(self) -> str:
        return "\n".join([
            "",
            "Mercurio is running on the embedded AWS emulator.",
            f"  API            {self.api_url}        (health: {self.api_url}/health)",
            f"  Demo shop      {self.shop_url}",
            f"  Local inbox    {self.shop_url}/_inbox   (every email, SMS and push sent)",
            f"  Snippet        {self.api_url}/v1/mercurio.js",
            f"  Emulator       {self.emulator.url}   (moto; state is in memory and ends with this process)",
            f"  Journeys       waits pass {os.environ.get('MERCURIO_JOURNEY_TIME_SCALE', DEFAULT_JOURNEY_TIME_SCALE)}"
            "x faster than real time (MERCURIO_JOURNEY_TIME_SCALE; 1 for real time)",
            f"  Write key      {self.write_key}",
            f"  Admin token    {self.admin_token}",
            "",
            "Try it:",
            f"  curl -u {self.write_key}: -H 'Content-Type: application/json' \\",
            f"       -d '{{\"anonymousId\":\"visitor-1\",\"event\":\"Product Viewed\"}}' {self.api_url}/v1/track",
            f"  curl -H 'Authorization: Bearer {self.admin_token}' \\",
            f"       '{self.api_url}/v1/admin/contacts?identifier=anon:visitor-1'",
            "",
            "Ctrl-C stops everything.",
            "",
        ])


class StopRequest:
    """The signal handler: it only records the request. It takes no lock, so a second
    signal delivered while the first handler runs (make forwards SIGTERM to its child, and
    a group kill sends one more) cannot deadlock it, as `threading.Event.set` could."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, _frame) -> None:
        self.requested = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Mercurio locally on the embedded AWS emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                        help="API port (default 8000; 0: one the system picks)")
    parser.add_argument("--shop-port", type=int, default=None,
                        help="demo shop port (default: API port + 1, or one the system picks if --port is 0)")
    parser.add_argument("--emulator-port", type=int, default=0, help="moto port (default: one the system picks)")
    parser.add_argument("--jobs-interval", type=float, default=30.0,
                        help="seconds between runs of the scheduled segment jobs (default 30)")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="once everything answers, write the URLs there as JSON (for tests and scripts)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Every new AWS client announces where it found its endpoint: not news on the console.
    logging.getLogger("botocore").setLevel(logging.WARNING)

    stack = LocalStack(
        host=args.host, port=args.port,
        shop_port=args.shop_port if args.shop_port is not None else (args.port + 1 if args.port else 0),
        emulator_port=args.emulator_port,
        write_key=os.environ.get("MERCURIO_WRITE_KEY") or DEFAULT_WRITE_KEY,
        admin_token=os.environ.get("MERCURIO_ADMIN_TOKEN") or secrets.token_urlsafe(24),
        jobs_interval=args.jobs_interval,
    )
    stopping = StopRequest()
    signal.signal(signal.SIGINT, stopping)
    signal.signal(signal.SIGTERM, stopping)
    try:
        stack.start()  # stops what it started before raising
    except PortInUse as exc:
        print(f"Mercurio did not start: {exc}. Stop what uses it, or choose another port "
              f"(make run PORT=8080, or python -m local.run --port/--shop-port/--emulator-port).",
              file=sys.stderr, flush=True)
        return 1
    except Exception:
        log.exception("Mercurio did not start; everything it had started is stopped")
        return 1
    try:
        if args.ready_file is not None:
            partial = args.ready_file.with_name(args.ready_file.name + ".partial")
            partial.write_text(json.dumps(stack.ready()), encoding="utf-8")
            partial.replace(args.ready_file)  # readers never see half a file
        print(stack.banner(), flush=True)
        while not stopping.requested:
            time.sleep(0.2)
    finally:
        print("Stopping Mercurio…", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
