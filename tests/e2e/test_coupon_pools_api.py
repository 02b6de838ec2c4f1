"""Coupon pools through the app (chalice.test.Client on moto): codes uploaded as text, CSV or
JSON, counted, claimed once each by the service the journey runtime calls; a bad line
refuses the whole upload with every problem named; the admin token is required."""
from __future__ import annotations

import json

import boto3
import pytest

ADMIN = {"Authorization": "Bearer test-admin-token-1"}


@pytest.fixture
def pools_app(app_client, app_env):
    """The enrollments table holds the pools. It comes with the journey runtime's resources;
    it is made here when this tree's template does not declare it yet."""
    from chalicelib.config import settings

    ddb = boto3.client("dynamodb")
    table = settings().enrollments_table
    if table not in ddb.list_tables()["TableNames"]:
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}])
    return app_client


def put(client, pool: str, body: str, content_type: str, headers=ADMIN):
    response = client.http.put(f"/v1/admin/coupon-pools/{pool}", body=body,
                               headers={**headers, "Content-Type": content_type})
    return response.status_code, json.loads(response.body)


def get(client, pool: str, headers=ADMIN):
    response = client.http.get(f"/v1/admin/coupon-pools/{pool}", headers=headers)
    return response.status_code, json.loads(response.body)


def test_codes_uploaded_as_text_csv_and_json_are_counted_and_claimed_once_each(pools_app):
    from chalicelib.entrypoints import runtime

    assert put(pools_app, "birthday", "BDAY-1\nBDAY-2\n\nBDAY-1\n", "text/plain; charset=utf-8") == (200, {
        "pool": "birthday", "added": 2, "duplicates": 1, "problems": [], "free": 2, "claimed": 0})
    assert put(pools_app, "birthday", "code\r\nBDAY-3\r\nBDAY-2\r\n", "text/csv") == (200, {
        "pool": "birthday", "added": 1, "duplicates": 1, "problems": [], "free": 3, "claimed": 0})
    status, body = put(pools_app, "birthday", json.dumps({"codes": ["BDAY-4", "BDAY-5"]}), "application/json")
    assert status == 200 and (body["added"], body["free"]) == (2, 5)

    pools = runtime.services().coupon_pools  # what the journey runtime calls before a send
    first = pools.claim("birthday", "enr-1:birthday-email:0")
    assert pools.claim("birthday", "enr-1:birthday-email:0") == first
    assert pools.claim("birthday", "enr-2:birthday-email:0") not in (None, first)
    assert get(pools_app, "birthday") == (200, {"pool": "birthday", "free": 3, "claimed": 2})
    assert get(pools_app, "nothing-yet") == (200, {"pool": "nothing-yet", "free": 0, "claimed": 0})


def test_a_bad_line_refuses_the_upload_with_every_problem_named_and_adds_nothing(pools_app):
    assert put(pools_app, "gifts", "GIFT-1\n", "text/plain")[0] == 200
    status, body = put(pools_app, "gifts", "GIFT-2\nTWO WORDS\nGIFT-3\n" + "X" * 65 + "\n", "text/plain")
    assert status == 400, body
    assert body["problems"] == ['line 2: "TWO WORDS" contains a space: one code per line, without spaces',
                                f'line 4: "{"X" * 20}…" is longer than 64 characters']
    assert body["error"].startswith("nothing was added: line 2") and (body["added"], body["free"]) == (0, 1)
    status, body = put(pools_app, "gifts", json.dumps({"codes": ["OK", 3]}), "application/json")
    assert status == 400 and body["problems"] == ["codes[1]: expected a code (text), got 3"]
    status, body = put(pools_app, "gifts", "A,B\n", "text/csv")
    assert status == 400 and body["problems"] == ['line 1: "A,B" has 2 columns: one code per row']
    assert get(pools_app, "gifts")[1]["free"] == 1


@pytest.mark.parametrize("pool, body, content_type, reason", [
    ("Birthday Pool", "X\n", "text/plain", "is not a pool name"),
    ("gifts", "X\n", "application/xml", "Content-Type application/xml is not accepted"),
    ("gifts", '{"code": ["X"]}', "application/json", 'the JSON body is {"codes"'),
    ("gifts", "{", "application/json", "not valid JSON"),
    ("gifts", b"\xff\xfe", "text/plain", "UTF-8"),
    ("gifts", "too large", "text/plain", "at most 1024 KB"),
], ids=["pool name", "content type", "json shape", "json syntax", "utf-8", "size"])
def test_an_unreadable_upload_answers_400_with_the_reason(pools_app, pool, body, content_type, reason):
    if body == "too large":
        body = "X\n" * 600_000
    status, answer = put(pools_app, pool, body, content_type)
    assert status == 400 and reason in answer["error"], answer


def test_the_routes_need_the_admin_token(pools_app):
    assert put(pools_app, "birthday", "X\n", "text/plain", headers={})[0] == 401
    assert put(pools_app, "birthday", "X\n", "text/plain", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert get(pools_app, "birthday", headers={})[0] == 401
    assert get(pools_app, "birthday")[1]["free"] == 0  # nothing was added without the token
