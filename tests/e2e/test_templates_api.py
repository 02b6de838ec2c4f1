"""The template library through the admin API: uploads judged before they replace anything,
verdicts with line numbers, previews that send nothing, and the S3 inbox."""
from __future__ import annotations

import json

import boto3

from chalicelib import config

ADMIN = {"Authorization": "Bearer test-admin-token-1", "Content-Type": "text/plain"}

GOOD = """---
subject: "Hello {{ traits.first_name | default('friend') }}"
kind: marketing
topic: newsletter
---
<html><body><p>Hi {{ traits.first_name | default('friend') }}</p>
<a href="{{ links.unsubscribe }}">Unsubscribe</a></body></html>
"""
BAD = GOOD.replace("<p>Hi", "<p>{% for %}Hi")


def call(app_client, method, path, body=b"", headers=ADMIN):
    response = app_client.http.request(method, path, headers=headers, body=body)
    return response.status_code, json.loads(response.body) if response.body else None


def test_a_good_upload_is_accepted_and_a_bad_one_refused_with_its_line(app_client):
    status, body = call(app_client, "PUT", "/v1/admin/templates/hello.html.j2", GOOD.encode())
    assert status == 200, body
    assert body["verdict"]["ok"] and body["kind"] == "marketing" and body["topic"] == "newsletter"

    status, body = call(app_client, "PUT", "/v1/admin/templates/hello.html.j2", BAD.encode())
    assert status == 422, body
    assert "line 6" in body["error"] and body["verdict"]["problems"][0]["line"] == 6

    status, body = call(app_client, "GET", "/v1/admin/templates/hello.html.j2")
    assert status == 200 and "<p>Hi" in body["source"] and body["last_upload"]["ok"] is False

    status, body = call(app_client, "POST", "/v1/admin/templates/hello.html.j2/preview",
                        json.dumps({"sample": "it-CH, Zurich"}).encode())
    assert status == 200, body
    assert body["rendered"]["subject"] == "Hello Giulia" and "Giulia" in body["rendered"]["text"]

    status, body = call(app_client, "GET", "/v1/admin/templates")
    assert status == 200 and [t["template"] for t in body["templates"]] == ["hello.html.j2"]


def test_validate_stores_nothing_and_bad_requests_are_4xx(app_client):
    status, body = call(app_client, "POST", "/v1/admin/templates/hello.html.j2/validate", BAD.encode())
    assert status == 200 and body["verdict"]["ok"] is False
    assert call(app_client, "GET", "/v1/admin/templates/hello.html.j2")[0] == 404
    assert call(app_client, "PUT", "/v1/admin/templates/hello.txt", GOOD.encode())[0] == 422
    assert call(app_client, "PUT", "/v1/admin/templates/hello.html.j2", b"\xff\xfe")[0] == 400
    assert call(app_client, "POST", "/v1/admin/templates/nothing.html.j2/preview", b"{}")[0] == 404
    call(app_client, "PUT", "/v1/admin/templates/hello.html.j2", GOOD.encode())
    assert call(app_client, "POST", "/v1/admin/templates/hello.html.j2/preview", b"[1]")[0] == 400
    assert call(app_client, "POST", "/v1/admin/templates/hello.html.j2/preview",
                json.dumps({"sample": "nobody"}).encode())[0] == 400
    assert call(app_client, "GET", "/v1/admin/templates", headers={})[0] == 401


def test_an_s3_upload_is_judged_by_the_schedule_and_a_bad_one_replaces_nothing(app_client):
    from chalicelib.entrypoints.runtime import services

    s3 = boto3.client("s3")
    bucket = config.settings().data_bucket
    s3.put_object(Bucket=bucket, Key="templates/hello.html.j2", Body=GOOD.encode())
    report = services().template_authoring.sync_inbox()
    assert report["accepted"] == ["hello.html.j2"]
    s3.put_object(Bucket=bucket, Key="templates/hello.html.j2", Body=BAD.encode())
    report = services().template_authoring.sync_inbox()
    assert report["refused"][0]["template"] == "hello.html.j2"
    status, body = call(app_client, "GET", "/v1/admin/templates/hello.html.j2")
    assert "<p>Hi" in body["source"] and body["last_upload"]["origin"] == "s3 upload"
