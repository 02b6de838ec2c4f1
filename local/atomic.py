"""DynamoDB requests applied one at a time by the emulator, as DynamoDB applies each atomically.

moto's threaded server holds no lock in its DynamoDB backend: two conditional puts on the same
version can both pass their check (the check and the write are two steps), and a cancelled
TransactWriteItems puts back a copy of the whole table taken when it started, undoing what
other requests committed meanwhile. Mercurio's guarantees (services/process_events.py) rest on
DynamoDB's per-request atomicity, so the local stack, the benchmarks and the concurrency tests
serve DynamoDB (and its streams) one request at a time; requests still interleave in any
order. Other services are left concurrent: an SQS long poll waits inside its request and must
not hold up the rest.
"""
from __future__ import annotations

import threading


class OneDynamoDBRequestAtATime:
    """A WSGI wrapper around moto's application. `on_queued` is called when a DynamoDB request
    has to wait for the one in progress (tests use it to force interleavings)."""

    def __init__(self, app, on_queued=None):
        self.app = app
        self.on_queued = on_queued
        self.lock = threading.Lock()

    @staticmethod
    def is_dynamodb(environ) -> bool:
        return environ.get("HTTP_X_AMZ_TARGET", "").startswith(("DynamoDB_", "DynamoDBStreams_"))

    def __call__(self, environ, start_response):
        if not self.is_dynamodb(environ):
            return self.app(environ, start_response)
        if not self.lock.acquire(blocking=False):
            if self.on_queued is not None:
                self.on_queued()
            self.lock.acquire()
        try:
            # The response is built (and the backend changed) within the call; the server
            # only sends it afterwards.
            return self.app(environ, start_response)
        finally:
            self.lock.release()
