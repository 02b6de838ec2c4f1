"""Audience exports to S3 (moto) and signed webhook deliveries to a local HTTP server."""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from moto import mock_aws

from chalicelib.adapters import s3_exports
from chalicelib.adapters.s3_exports import S3AudienceExporter, export_key
from chalicelib.adapters.webhooks import USER_AGENT, WebhookAttempt, WebhookSender, verify_signature
from chalicelib.domain.audiences import csv_rows, hashed_audience_rows
from chalicelib.domain.contact import Contact

BUCKET = "mercurio-test-exports"


def person(i: int) -> Contact:
    return Contact(id=f"c{i}", created_at="2026-11-01T00:00:00.000Z",
                   traits={"email": f"user{i}@example.com", "first_name": f"=Name{i}"},
                   identifiers=[f"email:user{i}@example.com"])


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", config=Config(signature_version="s3v4"))
        client.create_bucket(Bucket=BUCKET)
        yield client


# ---------------------------------------------------------------------------- S3 exports

def test_export_writes_an_encrypted_csv_and_signs_a_download_link(s3):
    exporter = S3AudienceExporter(BUCKET, client=s3)
    result = exporter.export("exports/2026-11/", "Coffee lovers", csv_rows([person(1), person(2)], ["first_name"]))
    assert result.key == "exports/2026-11/Coffee-lovers.csv"
    assert result.rows == 2

    obj = s3.get_object(Bucket=BUCKET, Key=result.key)
    body = obj["Body"].read()
    assert obj["ServerSideEncryption"] == "AES256"
    assert obj["ContentType"] == "text/csv; charset=utf-8"
    assert len(body) == result.bytes
    assert list(csv.reader(io.StringIO(body.decode("utf-8")))) == [
        ["id", "email", "phone", "first_name"],
        ["c1", "user1@example.com", "", "'=Name1"],
        ["c2", "user2@example.com", "", "'=Name2"],
    ]

    url = exporter.signed_url(result.key, expires_seconds=600)
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path.endswith("/exports/2026-11/Coffee-lovers.csv")
    assert query["X-Amz-Expires"] == ["600"] and "X-Amz-Signature" in query
    download = requests.get(url, timeout=5)
    assert download.status_code == 200 and download.content == body


def test_a_large_export_streams_through_a_disk_spool_and_is_uploaded_in_parts(s3, monkeypatch):
    monkeypatch.setattr(s3_exports, "SPOOL_BYTES", 1024)  # past 1 KB the spool is a file on disk
    contacts = (person(i) for i in range(200_000))  # a generator: never a list in memory
    audience = hashed_audience_rows(contacts)
    result = S3AudienceExporter(BUCKET, client=s3).export("exports", "all", audience)
    assert result.rows == audience.rows == 200_000 and audience.skipped == 0
    head = s3.head_object(Bucket=BUCKET, Key=result.key)
    assert head["ContentLength"] == result.bytes > 8 * 1024 * 1024  # past the multipart threshold
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ETag"].strip('"').split("-")[1] == "2"  # a multipart upload of two parts
    first = s3.get_object(Bucket=BUCKET, Key=result.key, Range="bytes=0-200")["Body"].read().decode()
    lines = first.splitlines()
    assert lines[0] == "email_sha256,phone_sha256"
    assert lines[1] == hashlib.sha256(b"user0@example.com").hexdigest() + ","


def test_an_empty_audience_is_a_header_only_file(s3):
    result = S3AudienceExporter(BUCKET, client=s3).export("exports", "nobody", csv_rows([], []))
    assert result.rows == 0
    assert s3.get_object(Bucket=BUCKET, Key=result.key)["Body"].read() == b"id,email,phone\r\n"


def test_parts_are_written_read_back_and_composed_after_one_header(s3, monkeypatch):
    monkeypatch.setattr(s3_exports, "READ_CHUNK_BYTES", 64)  # parts are copied in many small chunks
    exporter = S3AudienceExporter(BUCKET, client=s3)
    pages = [[person(i) for i in range(0, 40)], [person(i) for i in range(40, 41)], [person(i) for i in range(41, 90)]]
    parts = []
    for number, page in enumerate(pages, start=1):
        data = list(csv_rows(page, ["first_name"]))[1:]  # data rows only: the header comes once, at the end
        parts.append(exporter.write_part("exports/vip", "audience-export-7", number, data))
    assert [p.key for p in parts] == [f"exports/vip/.parts/audience-export-7/00000{n}.csv" for n in (1, 2, 3)]
    assert [p.rows for p in parts] == [40, 1, 49]
    head = s3.head_object(Bucket=BUCKET, Key=parts[1].key)
    assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == parts[1].bytes
    assert b"".join(exporter.read_part(parts[1].key)) == b"c40,user40@example.com,,'=Name40\r\n"

    result = exporter.export_parts("exports/vip", "vip-csv-20261122T120000000Z", ["id", "email", "phone", "first_name"],
                                   "audience-export-7", parts=3, rows=90)
    assert result.key == "exports/vip/vip-csv-20261122T120000000Z.csv" and result.rows == 90
    obj = s3.get_object(Bucket=BUCKET, Key=result.key)
    body = obj["Body"].read()
    assert obj["ServerSideEncryption"] == "AES256" and obj["ContentType"] == "text/csv; charset=utf-8"
    assert len(body) == result.bytes == len(b"id,email,phone,first_name\r\n") + sum(p.bytes for p in parts)
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    assert rows[0] == ["id", "email", "phone", "first_name"] and len(rows) == 91
    assert [r[0] for r in rows[1:]] == [f"c{i}" for i in range(90)]


def test_a_part_written_again_replaces_the_first_copy(s3):
    exporter = S3AudienceExporter(BUCKET, client=s3)
    exporter.write_part("exports/vip", "job", 1, [["old"]])
    again = exporter.write_part("exports/vip", "job", 1, [["new"]])
    assert b"".join(exporter.read_part(again.key)) == b"new\r\n"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/vip/.parts/job/")["Contents"]
    assert [o["Key"] for o in listed] == ["exports/vip/.parts/job/000001.csv"]


def test_part_numbers_are_checked():
    from chalicelib.adapters.s3_exports import part_key

    assert part_key("exports/vip/", "a b", 12) == "exports/vip/.parts/a-b/000012.csv"
    for bad in (0, 1_000_000):
        with pytest.raises(ValueError):
            part_key("exports", "job", bad)


def test_export_names_and_link_lifetimes_are_checked():
    assert export_key("", "a/../b c") == "a-..-b-c.csv"
    with pytest.raises(ValueError):
        export_key("exports", "///")
    exporter = S3AudienceExporter(BUCKET, client=object())
    for bad in (0, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError):
            exporter.signed_url("exports/x.csv", expires_seconds=bad)


def test_the_default_client_is_created_lazily():
    exporter = S3AudienceExporter(BUCKET)
    assert exporter._client is None
    with mock_aws():
        assert exporter.client.meta.service_model.service_name == "s3"
        url = exporter.signed_url("exports/x.csv")
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["3600"]


# ---------------------------------------------------------------------------- webhooks

class Receiver:
    """A local HTTP endpoint answering with the scripted statuses, recording each request."""

    def __init__(self, statuses, headers=None):
        self.statuses = list(statuses)
        self.extra_headers = headers or {}
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": self.rfile.read(length)})
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                for name, value in receiver.extra_headers.get(status, {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/crm"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


SECRET = "whsec_test_1"
LEAD = {"event": "lead.qualified", "contact": {"id": "c1", "email": "ada@example.com", "score": 55}}


def _post(url, sender=None, delivery_id="d-1", **kw):
    return (sender or WebhookSender()).attempt(url, LEAD, SECRET, delivery_id, **kw)


def test_a_delivery_is_signed_and_verifiable():
    with Receiver([200]) as receiver:
        result = _post(receiver.url, allow_private=True)
    assert result == WebhookAttempt(True, 200, "HTTP 200", retryable=False)
    request = receiver.requests[0]
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/hooks/crm"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == USER_AGENT == "Mercurio-Webhooks/1"
    assert headers["X-Mercurio-Delivery"] == "d-1"
    assert json.loads(body) == LEAD
    timestamp, signature = headers["X-Mercurio-Timestamp"], headers["X-Mercurio-Signature"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == f"v1={expected}"
    assert verify_signature(SECRET, timestamp, body, signature)
    assert not verify_signature("other-secret", timestamp, body, signature)
    assert not verify_signature(SECRET, timestamp, body + b" ", signature)
    assert not verify_signature(SECRET, timestamp, body, signature, now=int(timestamp) + 301)


def test_one_attempt_is_one_post_and_server_errors_are_retryable():
    """The effects queue retries (services/deliveries.py); an attempt never sleeps or loops."""
    with Receiver([500, 503, 200]) as receiver:
        outcomes = [_post(receiver.url, allow_private=True) for _ in range(3)]
    assert [(o.delivered, o.http_status, o.retryable) for o in outcomes] == \
        [(False, 500, True), (False, 503, True), (True, 200, False)]
    deliveries = {r["headers"]["X-Mercurio-Delivery"] for r in receiver.requests}
    assert len(receiver.requests) == 3 and deliveries == {"d-1"}  # one id for every attempt


def test_retry_after_is_reported_on_429():
    with Receiver([429], headers={429: {"Retry-After": "2"}}) as receiver:
        result = _post(receiver.url, allow_private=True)
    assert not result.delivered and result.http_status == 429 and result.retryable and result.retry_after == 2.0


def test_a_client_error_is_reported_with_its_status():
    with Receiver([400]) as receiver:
        result = _post(receiver.url, allow_private=True)
    assert not result.delivered and result.http_status == 400 and "400" in result.reason
    assert len(receiver.requests) == 1


def test_redirects_are_not_followed():
    with Receiver([302], headers={302: {"Location": "http://169.254.169.254/latest/meta-data/"}}) as receiver:
        result = _post(receiver.url, allow_private=True)
    assert not result.delivered and result.http_status == 302 and "redirect" in result.reason
    assert len(receiver.requests) == 1


def test_network_errors_are_retryable():
    with Receiver([200]) as receiver:
        url = receiver.url
    result = _post(url, WebhookSender(timeout=1), allow_private=True)  # the server is gone: refused
    assert not result.delivered and result.http_status is None and result.retryable
    assert "network error" in result.reason


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook",
    "http://localhost:9/hook",
    "http://10.1.2.3/hook",
    "http://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
])
def test_private_destinations_are_refused(url):
    with Receiver([200]) as receiver:
        result = _post(url)
        local = _post(receiver.url)
    for outcome in (result, local):
        assert not outcome.sent and not outcome.delivered and not outcome.retryable
        assert outcome.http_status is None and outcome.reason.startswith("refused: ")
    assert receiver.requests == []


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch):
    """DNS rebinding: a name that answers a public address, then a private one, is not followed."""
    from chalicelib.adapters import webhooks

    answers = iter(["127.0.0.1"])  # checked (and taken for public below), then the name rebinds
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "rebind.test":
            address = next(answers, "10.255.255.1")
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(webhooks, "_is_public", lambda address: address == "127.0.0.1")
    with Receiver([200]) as receiver:
        url = receiver.url.replace("127.0.0.1", "rebind.test")
        result = _post(url, WebhookSender(timeout=2))
    assert result.delivered
    assert receiver.requests[0]["headers"]["Host"].startswith("rebind.test:")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/",
                                 "http://user:pw@example.com/", "http:///nohost", "http://example.com:99999/"])
def test_only_plain_http_urls_are_accepted(url):
    result = _post(url)
    assert not result.sent and not result.retryable and result.reason.startswith("refused: ")


def test_an_injected_opener_replaces_the_http_client():
    seen = []

    class Response:
        status = 204

        def read(self, n=-1):
            return b""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class Opener:
        def open(self, request, timeout):
            seen.append((request.full_url, request.get_method(), timeout, request.data))
            return Response()

    result = WebhookSender(opener=Opener(), timeout=2).attempt("http://127.0.0.1/x", {"a": 1}, SECRET, "d-2",
                                                               allow_private=True)
    assert result == WebhookAttempt(True, 204, "HTTP 204", retryable=False)
    assert seen == [("http://127.0.0.1/x", "POST", 2, b'{"a":1}')]


def test_a_segments_export_files_are_listed_and_deleted_for_an_erasure(s3):
    exporter = S3AudienceExporter(BUCKET, client=s3)
    for key in ("exports/vip/vip-csv-1.csv", "exports/vip/.parts/j1/000001.csv", "exports/vips/x.csv"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"id\n")
    keys = exporter.exports_of("vip")
    assert sorted(keys) == ["exports/vip/.parts/j1/000001.csv", "exports/vip/vip-csv-1.csv"]
    assert exporter.delete(keys) == 2 and exporter.exports_of("vip") == []
    assert exporter.exports_of("vips") == ["exports/vips/x.csv"]  # another segment's files stay
