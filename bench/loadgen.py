"""HTTP load generator, run in its own process so that it does not share the API's interpreter.

    python -m bench.loadgen --url http://127.0.0.1:8000 --path /v1/batch --bodies bodies.jsonl \
        --clients 8 --write-key KEY

Reads one request body per line (a JSON string), sends them with `--clients` concurrent
keep-alive connections, and prints one JSON object: wall time, per-request latency and
status, and the number of events the API said it accepted.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def run(url: str, path: str, bodies: list[bytes], clients: int, write_key: str, content_type: str) -> dict:
    target = urlsplit(url)
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Content-Type": content_type, "Authorization": auth, "Origin": "https://shop.example.com"}
    lock = threading.Lock()
    position = iter(range(len(bodies)))
    latencies = [0.0] * len(bodies)
    statuses: dict[str, int] = {}
    accepted = [0]
    problems: list[str] = []

    def worker() -> None:
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                break
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=bodies[index], headers=headers)
                response = connection.getresponse()
                payload = response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                payload, status = b"", f"error:{type(exc).__name__}"
            latencies[index] = (time.perf_counter() - started) * 1000
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == "200":
                    accepted[0] += json.loads(payload).get("accepted", 0)
                elif len(problems) < 5:
                    problems.append(f"{status}: {payload[:300]!r}")
        connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "requests": len(bodies), "accepted": accepted[0], "statuses": statuses,
            "latencies_ms": latencies, "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--bodies", required=True, help="file with one JSON-string body per line")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--content-type", default="text/plain")
    args = parser.parse_args(argv)
    with open(args.bodies, encoding="utf-8") as handle:
        bodies = [json.loads(line).encode("utf-8") for line in handle if line.strip()]
    result = run(args.url, args.path, bodies, args.clients, args.write_key, args.content_type)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
