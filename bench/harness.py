"""The system under test: DynamoDB (moto server, another endpoint, or AWS), the tables of
infrastructure/template.yaml, the Chalice app's HTTP API and its stream handler, with every
DynamoDB client the app uses instrumented by a `Recorder`.

Each measurement gets its own stage (its own tables and stream), so that what one leaves
behind never reaches another.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.units import Recorder

ROOT = Path(__file__).resolve().parent.parent
WRITE_KEY = "bench-write-key-0001"
ADMIN_TOKEN = "bench-admin-token-0001"
REGION = "us-east-1"


@dataclass
class Stage:
    name: str
    created: dict
    key_names: dict[str, list[str]] = field(default_factory=dict)

    @property
    def stream_arn(self) -> str:
        return self.created["EventsTable.StreamArn"]


def bench_emulator(port: int, plain: bool = False):
    """local.run.Emulator, unless `plain` with Query reading only the queried partition
    (see bench/moto_server.py)."""
    from local.run import Emulator

    return Emulator(port, module="local.emulator_server" if plain else "bench.moto_server")


class Harness:
    """Owns what the benchmark starts; `close()` stops and removes all of it."""

    def __init__(self, target: str = "moto", endpoint: str | None = None, run_id: str = "bench",
                 plain_moto: bool = False):
        self.target = target
        self.endpoint = endpoint
        self.run_id = run_id
        self.plain_moto = plain_moto  # moto's server as shipped (Query walks the whole table)
        self.emulator = None
        self.recorder = Recorder()
        self.stages: list[Stage] = []
        self.api_server = None
        self.api_url: str | None = None
        self.app = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        self.recorder.watch_new_clients()
        from local.run import configure_environment

        if self.target == "moto" and self.endpoint is None:
            self.emulator = bench_emulator(0, plain=self.plain_moto)  # 0: the system picks, no race
            self.emulator.start()
            self.endpoint = self.emulator.url
        if self.target == "aws":
            for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
                os.environ.pop(name, None)
            os.environ.setdefault("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", REGION))
            os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])
            os.environ.update({"MERCURIO_WRITE_KEY": WRITE_KEY, "MERCURIO_ADMIN_TOKEN": ADMIN_TOKEN,
                               "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
                               "POWERTOOLS_LOG_LEVEL": "WARNING"})
        else:
            # `make run` re-reads definitions every 2 s so that edits show at once; a deployed
            # stage uses the default, 30 s (chalicelib/config.py). Measure what is deployed.
            os.environ.setdefault("MERCURIO_DEFINITIONS_CACHE_SECONDS", "30")
            configure_environment(self.endpoint, WRITE_KEY, ADMIN_TOKEN)
        import app as mercurio

        self.app = mercurio

    def close(self) -> None:
        if self.api_server is not None:
            self.api_server.server.shutdown()
            self.api_server.server.server_close()
        if self.target == "aws":
            for stage in self.stages:
                self._delete(stage)
        if self.emulator is not None:
            self.emulator.stop()

    @property
    def region(self) -> str:
        return os.environ.get("AWS_REGION") or REGION

    # -- stages ------------------------------------------------------------------------

    def use_stage(self, suffix: str) -> Stage:
        """Create a fresh set of tables and point the app (and the recorder) at them."""
        from chalicelib.entrypoints import runtime

        name = f"{self.run_id}-{suffix}"
        created, key_names = self._create_tables(name)
        stage = Stage(name, created, key_names)
        self.stages.append(stage)

        os.environ["MERCURIO_STAGE"] = name
        os.environ["MERCURIO_EVENTS_STREAM_ARN"] = stage.stream_arn
        runtime.reset()
        labels = {table: logical.removesuffix("Table").lower() for logical, table in created.items()
                  if "." not in logical}
        self.recorder.add_tables(key_names, labels)
        self._instrument()
        return stage

    def _create_tables(self, stage: str) -> tuple[dict, dict[str, list[str]]]:
        """Every DynamoDB table of infrastructure/template.yaml for a stage, as provisioned
        for `make run` (the template's other resources are not needed to measure)."""
        import boto3

        from local.provision import load_template, table_names

        template = load_template()
        physical = table_names(stage, template)
        ddb = boto3.client("dynamodb", endpoint_url=self.endpoint if self.target != "aws" else None,
                           region_name=self.region)
        created: dict = {}
        key_names: dict[str, list[str]] = {}
        for logical, table in physical.items():
            props = template["Resources"][logical]["Properties"]
            args = {k: props[k] for k in ("AttributeDefinitions", "KeySchema", "BillingMode",
                                          "GlobalSecondaryIndexes", "LocalSecondaryIndexes") if k in props}
            if "StreamSpecification" in props:
                args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
            description = ddb.create_table(TableName=table, **args)["TableDescription"]
            created[logical] = table
            if description.get("LatestStreamArn"):
                created[f"{logical}.StreamArn"] = description["LatestStreamArn"]
            key_names[table] = [k["AttributeName"] for k in props["KeySchema"]]
        for logical, table in physical.items():
            ddb.get_waiter("table_exists").wait(TableName=table)
            ttl = template["Resources"][logical]["Properties"].get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                ddb.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)
        return created, key_names

    def _instrument(self) -> None:
        """Hook the DynamoDB clients the app's services hold: boto3's for the events table,
        PynamoDB's (one botocore client per model connection, and the repository's own
        connection for transactions) for contacts and identities. Any other DynamoDB client,
        now or later, is hooked when it is created (Recorder.watch_new_clients)."""
        from chalicelib.entrypoints import runtime

        store = runtime.services().event_store
        repo = runtime.services().contact_repository
        for client in (store.client,
                       repo.Contact._get_connection().connection.client,
                       repo.Identity._get_connection().connection.client,
                       repo._connection.client):
            self.recorder.instrument(client)
        runtime.services().ingest
        runtime.services().event_processor

    def _delete(self, stage: Stage) -> None:
        import boto3

        ddb = boto3.client("dynamodb", region_name=self.region)
        for logical, table in stage.created.items():
            if "." not in logical:
                try:
                    ddb.delete_table(TableName=table)
                except ddb.exceptions.ResourceNotFoundException:
                    pass

    # -- HTTP API ----------------------------------------------------------------------

    def start_api(self) -> str:
        from local.api_server import make_api_server
        from local.run import wait_until_up

        self.api_server = make_api_server(self.app.app, "127.0.0.1", 0, str(ROOT))
        port = self.api_server.server.server_address[1]
        threading.Thread(target=self.api_server.server.serve_forever, name="bench-api", daemon=True).start()
        self.api_url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{self.api_url}/health")
        return self.api_url

    # -- stream ------------------------------------------------------------------------

    def stream_bridge(self, stage: Stage) -> "TimedBridge":
        return TimedBridge(self, stage)


class TimedBridge:
    """local.stream_bridge.StreamBridge delivering to the app's `process_events`, with the
    time spent inside the handler kept apart from the time spent reading the stream."""

    def __init__(self, harness: Harness, stage: Stage):
        from chalice.local import LambdaContext

        from chalicelib.entrypoints.stream import process_events
        from local.stream_bridge import StreamBridge

        self.handler_seconds = 0.0
        self.batches = 0
        self.failed_items = 0

        def handler(event: dict) -> dict:
            context = LambdaContext("process_events", memory_size=1024, max_runtime_ms=120_000)
            started = time.perf_counter()
            try:
                result = process_events(event, context) or {}
            finally:
                self.handler_seconds += time.perf_counter() - started
                self.batches += 1
            self.failed_items += len(result.get("batchItemFailures") or [])
            return result

        self.bridge = StreamBridge(stage.stream_arn, handler, endpoint_url=harness.endpoint
                                   if harness.target != "aws" else None, region=harness.region)
        self.target = harness.target

    def drain(self, expected: int, timeout: float = 600.0) -> int:
        """Deliver until `expected` records went through (streams on AWS lag a little)."""
        deadline = time.monotonic() + timeout
        while self.bridge.delivered < expected:
            if self.bridge.poll_once() == 0:
                time.sleep(0.2 if self.target == "aws" else 0.01)
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.bridge.delivered} of {expected} stream records delivered")
        return self.bridge.delivered

    def drain_all(self, idle_polls: int = 3, timeout: float = 600.0) -> int:
        """Deliver until the stream stays empty: processing writes events of its own (Segment
        Entered…), which come back through the stream and are processed in turn."""
        deadline = time.monotonic() + timeout
        idle = 0
        while idle < idle_polls:
            if self.bridge.poll_once() == 0:
                idle += 1
                time.sleep(0.2 if self.target == "aws" else 0.01)
            else:
                idle = 0
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stream was still busy after {timeout:.0f} s")
        return self.bridge.delivered
