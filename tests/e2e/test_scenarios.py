"""Scenarios 4, 5 and 6 and the audiences, end to end through the app with the shipped
example definitions, a controllable clock and moto."""
from __future__ import annotations

import csv
import hashlib
import hmac
import http.server
import io
import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest

from tests.e2e.test_segments_api import contact, run_jobs
from tests.unit.fakes import FakeClock

ADMIN = {"Authorization": "Bearer test-admin-token-1"}


@pytest.fixture
def shipped(app_client, monkeypatch):
    from chalicelib.entrypoints import runtime

    monkeypatch.setenv("MERCURIO_WEBHOOKS_ALLOW_PRIVATE", "true")
    runtime.reset()
    fake = FakeClock(datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc))
    runtime.use_clock(fake)
    runtime.services().definitions.seed_directory(Path("chalicelib/definitions"))
    yield fake
    runtime.use_clock(None)


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def crm():
    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/mercurio"
    server.shutdown()


def test_scenario_4_lead_scoring_to_mql_posts_to_the_crm(app_client, shipped, crm):
    boto3.client("ssm").put_parameter(Name="/mercurio/test/destinations/crm", Value="crm-signing-secret",
                                      Type="SecureString")
    destination = {"id": "crm", "name": "CRM", "url": crm, "secret_parameter": "/mercurio/test/destinations/crm",
                   "segments": ["mql"]}
    response = app_client.http.put("/v1/admin/definitions/destination/crm", body=json.dumps(destination),
                                   headers={**ADMIN, "Content-Type": "application/json"})
    assert response.status_code == 200, response.body
    steps = [("page", {"properties": {"path": "/pricing"}}),
             ("track", {"event": "Form Submitted", "properties": {"form": "white-paper"}}),
             ("track", {"event": "Webinar Registered"}),
             ("identify", {"traits": {"email": "lead@b2b.example", "job_title": "VP Sales", "company_size": 500}})]
    for kind, fields in steps:
        shipped.advance(minutes=5)
        app_client.post("/v1/batch", {"batch": [{"type": kind, "anonymousId": "b2b-visitor", **fields}]})
        app_client.drain()
    lead = contact(app_client, "anon:b2b-visitor")
    assert lead["score"] == pytest.approx(45, abs=0.1) and lead["stage"] == "lead"
    assert "educational-sequence" in lead["segments"]
    assert lead["grade"] == "A" and "white-paper-reader" in lead["tags"]

    shipped.advance(minutes=5)
    app_client.post("/v1/track", {"anonymousId": "b2b-visitor", "event": "Page Viewed", "properties": {"path": "/pricing/enterprise"}})
    app_client.post("/v1/page", {"anonymousId": "b2b-visitor", "properties": {"path": "/pricing"}})
    app_client.drain()
    lead = contact(app_client, "anon:b2b-visitor")
    assert lead["stage"] == "mql" and lead["score"] >= 50
    assert "mql" in lead["segments"] and "educational-sequence" not in lead["segments"]
    assert Receiver.received == []  # the stream handler makes no outbound call: the queue's consumer does
    app_client.drain_effects()
    assert len(Receiver.received) == 1
    headers, body = Receiver.received[0]
    payload = json.loads(body)
    assert payload["type"] == "segment.entered" and payload["segment_id"] == "mql"
    assert payload["contact"]["id"] == lead["id"]
    assert payload["contact"]["score"] == lead["score"] and payload["contact"]["stage"] == "mql"
    status, log = app_client.admin("/v1/admin/destinations/crm/deliveries")
    assert status == 200 and [d["status"] for d in log["deliveries"]] == ["delivered"]
    assert log["deliveries"][0]["delivery_id"] == headers["X-Mercurio-Delivery"]
    signature = headers["X-Mercurio-Signature"].split("=", 1)[1]
    expected = hmac.new(b"crm-signing-secret", headers["X-Mercurio-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)

    # The score halves every 30 days; the stage does not go back.
    shipped.advance(days=30)
    later = contact(app_client, "anon:b2b-visitor")
    assert later["score"] == pytest.approx(lead["score"] / 2, rel=0.01) and later["stage"] == "mql"


def test_scenario_5_birthday_today_in_the_contacts_own_time_zone(app_client, shipped):
    app_client.post("/v1/identify", {"userId": "tokyo", "traits": {"email": "t@example.jp", "birthday": "1990-11-23",
                                                                   "timezone": "Asia/Tokyo"}})
    app_client.post("/v1/identify", {"userId": "la", "traits": {"email": "l@example.com", "birthday": "1990-11-23",
                                                                "timezone": "America/Los_Angeles"}})
    app_client.drain()
    assert "birthday-today" not in contact(app_client, "user:tokyo")["segments"]
    # 2026-11-22T15:01Z is already 23 November, 00:01, in Tokyo; still the 22nd in Los Angeles.
    shipped.advance(hours=5, minutes=1)
    run_jobs(app_client)
    assert "birthday-today" in contact(app_client, "user:tokyo")["segments"]
    assert "birthday-today" not in contact(app_client, "user:la")["segments"]
    shipped.advance(hours=17)  # 08:01Z on the 23rd: midnight has passed in Los Angeles too
    run_jobs(app_client)
    assert "birthday-today" in contact(app_client, "user:la")["segments"]
    shipped.advance(hours=16)  # the 24th in Tokyo
    run_jobs(app_client)
    assert "birthday-today" not in contact(app_client, "user:tokyo")["segments"]


def test_scenario_6_win_back_and_champions_from_rfm(app_client, shipped):
    orders = {"champion": [1, 3, 5, 8, 12, 20, 30], "regular": [70, 80, 90, 100, 110], "once": [65]}
    start = shipped.current
    events = []
    for user, days_ago in orders.items():
        for i, ago in enumerate(days_ago):
            when = (start - timedelta(days=ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            events.append({"type": "track", "userId": user, "event": "Order Completed", "timestamp": when,
                           "properties": {"order_id": f"{user}-{i}", "revenue": 40}})
    app_client.post("/v1/batch", {"batch": events})
    app_client.drain()
    response = app_client.http.post("/v1/admin/jobs/rfm", headers=ADMIN, body="")
    job = json.loads(response.body)
    assert response.status_code == 200 and job["status"] == "done" and job["result"]["customers"] == 3
    status, seen = app_client.admin(f"/v1/admin/jobs/{job['id']}")
    assert status == 200 and seen["result"] == job["result"] and seen["progress"]["phase"] == "classify"
    app_client.drain()
    champion, regular, once = (contact(app_client, f"user:{u}") for u in ("champion", "regular", "once"))
    assert champion["rfm"]["class"] == "champions"
    assert "champions-thank-you" in champion["segments"] and "win-back" not in champion["segments"]
    assert regular["rfm"]["class"] in ("loyal", "need_attention", "at_risk", "hibernating")
    assert "win-back" in regular["segments"]
    assert "win-back" not in once["segments"]  # a one-time buyer was never a frequent one
    # The win-back journey's audience (journeys/win-back.yaml branches on the two segments).
    assert "win-back-or-champions" in champion["segments"] and "win-back-or-champions" in regular["segments"]
    assert "win-back-or-champions" not in once["segments"]


def test_audience_exports_csv_and_hashed_with_signed_links(app_client, shipped):
    for i, drink in enumerate(["coffee", "coffee", "tea"]):
        app_client.post("/v1/identify", {"userId": f"fan{i}", "traits": {"email": f"Fan.{i}@Gmail.com",
                                                                         "first_name": f"=Fan{i}"}})
        for n in range(3):
            app_client.post("/v1/track", {"userId": f"fan{i}", "event": "Product Viewed",
                                          "properties": {"category": drink, "product_id": f"p{n}"}})
    app_client.drain()
    response = app_client.http.post("/v1/admin/segments/coffee-lovers/exports",
                                    body=json.dumps({"format": "csv", "traits": ["email", "first_name"]}),
                                    headers={**ADMIN, "Content-Type": "application/json"})
    assert response.status_code == 200, response.body
    export = json.loads(response.body)
    assert export["rows"] == 2 and export["key"].startswith("exports/coffee-lovers/")
    assert export["key"].endswith(".csv") and not export["key"].endswith(".csv.csv"), export["key"]
    s3 = boto3.client("s3")
    bucket = export["url"].split("//")[1].split(".")[0] if "amazonaws" in export["url"].split("/")[2] else None
    body = s3.get_object(Bucket=bucket or _bucket(), Key=export["key"])["Body"].read().decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["id", "email", "phone", "first_name"]  # email asked for: still one column
    assert sorted(r[1] for r in rows[1:]) == ["fan.0@gmail.com", "fan.1@gmail.com"]
    assert all(r[-1].startswith("'=") for r in rows[1:])  # no formula injection
    hashed = json.loads(app_client.http.post("/v1/admin/segments/coffee-lovers/exports",
                                             body=json.dumps({"format": "audience"}),
                                             headers={**ADMIN, "Content-Type": "application/json"}).body)
    assert hashed["rows"] == 2 and not hashed["key"].endswith(".csv.csv"), hashed["key"]
    body = s3.get_object(Bucket=_bucket(), Key=hashed["key"])["Body"].read().decode()
    digests = {r[0] for r in list(csv.reader(io.StringIO(body)))[1:]}
    assert hashlib.sha256(b"fan0@gmail.com").hexdigest() in digests  # gmail: dots dropped, lower-cased
    assert "X-Amz-Signature=" in hashed["url"]
    bad = app_client.http.post("/v1/admin/segments/coffee-lovers/exports", body=json.dumps({"format": "xls"}),
                               headers={**ADMIN, "Content-Type": "application/json"})
    assert bad.status_code == 400


def test_a_large_audience_export_answers_202_and_the_schedule_finishes_it(app_client, shipped, monkeypatch):
    from chalicelib.entrypoints import runtime
    from chalicelib.services import audiences

    for i in range(3):
        app_client.post("/v1/identify", {"userId": f"big{i}", "traits": {"email": f"big{i}@example.com"}})
        for n in range(3):  # coffee-lovers: at least three coffee products viewed
            app_client.post("/v1/track", {"userId": f"big{i}", "event": "Product Viewed",
                                          "properties": {"category": "coffee", "product_id": f"p{n}"}})
    app_client.drain()
    runtime.services().membership_store.enter("coffee-lovers", "no-such-contact", "2026-11-01T00:00:00.000Z")
    monkeypatch.setattr(audiences, "PAGE_SIZE", 1)  # one member per slice: "large" with three members
    jobs = runtime.services().jobs
    ticks = iter(range(0, 10**6, 30))
    monkeypatch.setattr(jobs, "monotonic", lambda: next(ticks))  # each slice seems to take 30 s of the 20 s budget
    response = app_client.http.post("/v1/admin/segments/coffee-lovers/exports",
                                    body=json.dumps({"format": "audience"}),
                                    headers={**ADMIN, "Content-Type": "application/json"})
    assert response.status_code == 202, response.body
    job = json.loads(response.body)["job"]
    assert job["status"] == "running" and job["kind"] == "audience-export" and job["progress"]["members_read"] == 1
    assert job["params"] == {"segment": "coffee-lovers", "format": "audience", "traits": []}
    monkeypatch.setattr(jobs, "monotonic", lambda: 0.0)  # the schedule's budget is not the test's concern
    assert [(j["id"], j["status"]) for j in jobs.resume()] == [(job["id"], "done")]  # as the segment_jobs schedule does
    status, done = app_client.admin(f"/v1/admin/jobs/{job['id']}")
    assert status == 200 and done["status"] == "done"
    export = done["result"]
    assert export["rows"] == 3 and export["skipped_without_identifier"] == 0 and "X-Amz-Signature=" in export["url"]
    body = boto3.client("s3").get_object(Bucket=_bucket(), Key=export["key"])["Body"].read().decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["email_sha256", "phone_sha256"] and len(rows) == 4
    assert {r[0] for r in rows[1:]} == {hashlib.sha256(f"big{i}@example.com".encode()).hexdigest() for i in range(3)}


def test_an_export_of_an_unknown_segment_or_with_bad_traits_is_refused(app_client, shipped):
    missing = app_client.http.post("/v1/admin/segments/nope/exports", body=json.dumps({"format": "csv"}),
                                   headers={**ADMIN, "Content-Type": "application/json"})
    assert missing.status_code == 404 and "no segment 'nope'" in json.loads(missing.body)["error"]
    bad = app_client.http.post("/v1/admin/segments/coffee-lovers/exports", body=json.dumps({"traits": "email"}),
                               headers={**ADMIN, "Content-Type": "application/json"})
    assert bad.status_code == 400 and "traits must be a list" in json.loads(bad.body)["error"]


def _bucket() -> str:
    from chalicelib import config

    return config.settings().data_bucket


def test_uploaded_definitions_apply_and_a_bad_upload_keeps_the_good_version(app_client, shipped):
    s3 = boto3.client("s3")
    good = "id: vip\nname: VIP\nconditions:\n  trait: plan\n  equals: vip\n"
    s3.put_object(Bucket=_bucket(), Key="definitions/segments/vip.yaml", Body=good.encode())
    run_jobs(app_client)
    status, segment = app_client.admin("/v1/admin/segments/vip")
    assert status == 200 and segment["version"] == 1
    s3.put_object(Bucket=_bucket(), Key="definitions/segments/vip.yaml",
                  Body=b"id: vip\nname: VIP\nconditions:\n  trait: plan\n  equalz: vip\n")
    report = run_jobs(app_client)
    assert report["uploads"]["rejected"][0]["key"] == "definitions/segments/vip.yaml"
    status, segment = app_client.admin("/v1/admin/segments/vip")
    assert segment["version"] == 1 and segment["document"]["conditions"]["equals"] == "vip"
    assert "equalz" in segment["last_upload"]["problems"][0]


def test_personas_are_assigned_on_first_identify_and_again_when_rules_change(app_client, shipped):
    app_client.post("/v1/identify", {"userId": "p1", "traits": {"company_size": 10, "company": "Tiny"}})
    app_client.drain()
    assert contact(app_client, "user:p1")["persona"] == "small-business"
    rules = {"personas": [{"id": "everyone", "name": "Everyone", "when": []}]}
    response = app_client.http.put("/v1/admin/definitions/personas/default", body=json.dumps(rules),
                                   headers={**ADMIN, "Content-Type": "application/json"})
    assert response.status_code == 200 and json.loads(response.body)["backfill"]["status"] == "pending"
    run_jobs(app_client)
    assert contact(app_client, "user:p1")["persona"] == "everyone"
