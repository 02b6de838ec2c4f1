"""moto's server (the embedded AWS) on a socket the runner has already bound and passed down.

`python -m local.emulator_server --fd N` serves what `python -m moto.server` serves, on the
listening socket inherited as file descriptor N (see local/ports.py for why the runner
binds it). Runs in its own process, as the emulator does on its own.

The process runs on UTC whatever the caller's time zone: moto's Step Functions compares a
Wait state's TimestampPath (a UTC time) with the naive local clock, so elsewhere a journey's
wait would end hours early or late.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time


def run_on_utc() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto's server on an inherited listening socket")
    parser.add_argument("--fd", type=int, required=True, help="file descriptor of a listening TCP socket")
    args = parser.parse_args(argv)
    run_on_utc()

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from moto.server import signal_handler
    from werkzeug.serving import make_server

    probe = socket.socket(fileno=os.dup(args.fd))
    host, port = probe.getsockname()[:2]
    probe.close()
    # What moto.server sets from its --port; moto's Step Functions sends its SQS tasks to
    # localhost:MOTO_PORT, so it must be this server's port whatever the caller's setting.
    os.environ["MOTO_PORT"] = str(port)
    signal.signal(signal.SIGINT, signal_handler)
    signal.signal(signal.SIGTERM, signal_handler)
    from local.atomic import OneDynamoDBRequestAtATime

    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # as moto.server runs it
    # DynamoDB requests one at a time, atomic as on AWS (local/atomic.py says why).
    server = make_server(host, port, OneDynamoDBRequestAtATime(app), threaded=True,
                         request_handler=MotoRequestHandler, fd=args.fd)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
