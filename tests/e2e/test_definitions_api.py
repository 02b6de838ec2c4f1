"""The same admin routes for every kind of definition, through the app: list, get with
versions, put, delete, validate without saving; 4xx with reasons for whatever is wrong."""
from __future__ import annotations

import json

import pytest

from tests.e2e.test_segments_api import contact, run_jobs

ADMIN = {"Authorization": "Bearer test-admin-token-1", "Content-Type": "application/json"}

# kind, its path, an id (None: the one definition of the kind), two valid versions
KINDS = [
    ("segment", "/v1/admin/segments", "coffee-fans",
     {"name": "Coffee fans", "conditions": {"trait": "drink", "equals": "coffee"}},
     {"name": "Coffee fans", "conditions": {"trait": "drink", "in": ["coffee", "espresso"]}}),
    ("campaign", "/v1/admin/campaigns", "promo-12",
     {"name": "December promotion", "attribution_window": "2 days"},
     {"name": "December promotion", "attribution_window": "3 days"}),
    ("destination", "/v1/admin/destinations", "crm",
     {"name": "CRM", "url": "https://crm.example.com/hooks/mercurio",
      "secret_parameter": "/mercurio/test/destinations/crm", "segments": ["base"]},
     {"name": "CRM", "url": "https://crm.example.com/hooks/v2",
      "secret_parameter": "/mercurio/test/destinations/crm", "segments": ["base"]}),
    ("broadcast", "/v1/admin/broadcasts", "december",
     {"name": "December promotion", "segment": "base", "template": "coffee-offer", "send_at": "2026-12-10T09:00:00Z"},
     {"name": "December promotion", "segment": "base", "template": "coffee-offer",
      "local_time": {"date": "2026-12-10", "time": "09:00"}}),
    ("scoring", "/v1/admin/scoring", None,
     {"half_life": "30 days", "rules": [{"id": "pricing", "event": "Page Viewed", "points": 5}]},
     {"half_life": "14 days", "rules": [{"id": "pricing", "event": "Page Viewed", "points": 5}]}),
    ("rfm", "/v1/admin/rfm", None,
     {"purchase_event": "Order Completed", "classes": [{"class": "champions", "r": 5, "f": "4-5"}, {"class": "others"}]},
     {"purchase_event": "Order Completed", "classes": [{"class": "champions", "r": "4-5", "f": "4-5"},
                                                       {"class": "others"}]}),
    ("personas", "/v1/admin/personas", None,
     {"personas": [{"id": "everyone", "name": "Everyone", "when": []}]},
     {"personas": [{"id": "buyer", "name": "Buyer", "when": ["traits.orders >= 1"]},
                   {"id": "everyone", "name": "Everyone", "when": []}]}),
    ("journey", "/v1/admin/journeys", "welcome",
     {"name": "Welcome", "trigger": {"event": "Signed Up"}, "start": "hello",
      "nodes": {"hello": {"send": {"template": "welcome", "channel": "email"}}}},
     {"name": "Welcome", "trigger": {"event": "Signed Up"}, "start": "pause",
      "nodes": {"pause": {"wait": "1 hour", "next": "hello"}, "hello": {"send": {"template": "welcome"}}}}),
]


def call(app_client, method: str, path: str, body=None):
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    response = app_client.http.request(method, path, headers=ADMIN, body=data or b"")
    return response.status_code, (json.loads(response.body) if response.body else None)


@pytest.fixture
def base_segment(app_client):
    """The segment the destination names."""
    status, body = call(app_client, "PUT", "/v1/admin/segments/base",
                        {"name": "Everyone with an email", "conditions": {"trait": "email", "exists": True}})
    assert status == 200, body


@pytest.mark.parametrize("kind,path,definition_id,first,second", KINDS, ids=[k[0] for k in KINDS])
def test_every_kind_lists_gets_versions_puts_validates_and_deletes(app_client, base_segment, kind, path,
                                                                   definition_id, first, second):
    one = f"{path}/{definition_id}" if definition_id else path

    # validate without saving, without id or name
    draft = {k: v for k, v in first.items() if k != "name"}
    status, body = call(app_client, "POST", f"{path}/validate", draft)
    assert status == 200 and body["valid"] is True, body
    assert call(app_client, "GET", one)[0] == 404  # nothing was stored

    status, body = call(app_client, "PUT", one, first)
    assert status == 200 and body["version"] == 1 and body["changed"] is True, body
    status, body = call(app_client, "PUT", one, second)
    assert status == 200 and body["version"] == 2, body
    assert body["backfill"]["status"] == "pending" if kind in ("segment", "personas") else "backfill" not in body

    status, body = call(app_client, "GET", one)
    assert status == 200 and body["version"] == 2 and body["current"] is True, body
    assert [v["version"] for v in body["versions"]] == [1, 2]
    status, old = call(app_client, "GET", f"{one}?version=1")
    assert status == 200 and old["current"] is False
    assert {k: old["document"][k] for k in first} == first

    if definition_id:
        status, listing = call(app_client, "GET", path)
        assert status == 200 and listing["kind"] == kind and listing["unreadable"] == []
        assert definition_id in [item["id"] for item in listing[path.rsplit("/", 1)[1]]]
    status, listing = call(app_client, "GET", f"/v1/admin/definitions/{kind}")
    assert status == 200 and (definition_id or "default") in [i["id"] for i in listing[path.rsplit("/", 1)[1]]]

    # the old generic path keeps working for every kind
    status, body = call(app_client, "GET", f"/v1/admin/definitions/{kind}/{definition_id or 'default'}")
    assert status == 200 and body["version"] == 2

    status, body = call(app_client, "DELETE", one)
    assert status == 200 and body["deleted"] is True and body["version"] == 3, body
    status, body = call(app_client, "GET", one)
    assert status == 404 and "deleted at version 3" in body["error"]
    assert call(app_client, "GET", f"{one}?version=2")[0] == 200
    assert call(app_client, "DELETE", one)[0] == 404


@pytest.mark.parametrize("kind,path,definition_id,first,second", KINDS, ids=[k[0] for k in KINDS])
def test_bad_documents_answer_400_with_every_problem(app_client, kind, path, definition_id, first, second):
    one = f"{path}/{definition_id}" if definition_id else path
    bad = {**first, "unknown_field": 1}
    for method, target in (("POST", f"{path}/validate"), ("PUT", one)):
        status, body = call(app_client, method, target, bad)
        assert status == 400, (method, target, body)
        assert any("unknown_field" in p for p in body["problems"]), body
    for text in ("{", "- a list\n", "", "a: " + "[" * 100 + "]" * 100):
        status, body = call(app_client, "PUT", one, text)
        assert status == 400 and body["problems"], (text, body)


def test_a_missing_segment_is_named_with_the_other_problems(app_client):
    document = {"name": "Broken", "conditions": {"all": [
        {"event": "Product Added", "within": "30 dayz"},
        {"event": "Product Viewed", "where": ['properties.category === "tea"']},
        {"message": []},
        {"reachable": []},
        {"segment": "nowhere"},
    ]}}
    for method, path in (("PUT", "/v1/admin/segments/broken"), ("POST", "/v1/admin/segments/validate")):
        status, body = call(app_client, method, path, document)
        assert status == 400, body
        places = [p.split(":", 1)[0] for p in body["problems"]]
        assert places == ["conditions.all[0].within", "conditions.all[1].where[0]", "conditions.all[2].message",
                          "conditions.all[3].reachable", "conditions.all[4].segment"], body
        assert '(did you mean "=="?)' in body["problems"][1]


def test_deleting_a_segment_others_use_is_refused_naming_them(app_client, base_segment):
    status, body = call(app_client, "PUT", "/v1/admin/segments/not-base",
                        {"name": "Not base", "conditions": {"not": {"segment": "base"}}})
    assert status == 200, body
    status, body = call(app_client, "DELETE", "/v1/admin/segments/base")
    assert status == 409
    assert body["problems"] == ['segment "base" is used by segment not-base (conditions.not.segment): '
                                'change or delete that first']
    assert call(app_client, "GET", "/v1/admin/segments/base")[0] == 200


def test_a_deleted_segments_members_leave_it(app_client):
    status, _ = call(app_client, "PUT", "/v1/admin/segments/tea-drinkers",
                     {"name": "Tea drinkers", "conditions": {"trait": "drink", "equals": "tea"}})
    assert status == 200
    for i in range(3):
        app_client.post("/v1/identify", {"userId": f"t{i}", "traits": {"drink": "tea"}})
    app_client.drain()
    from chalicelib.entrypoints import runtime
    # A membership row whose contact is gone (merged away since): removed all the same.
    runtime.services().membership_store.enter("tea-drinkers", "no-such-contact", "2026-11-01T00:00:00.000Z")
    assert call(app_client, "GET", "/v1/admin/segments/tea-drinkers")[1]["size"] == 4
    status, body = call(app_client, "DELETE", "/v1/admin/segments/tea-drinkers")
    assert status == 200 and body["backfill"] == {"status": "pending", "action": "remove", "version": 2,
                                                  "scanned": 0, "started_at": body["backfill"]["started_at"]}
    report = run_jobs(app_client)
    assert [(b["id"], b["action"], b["status"], b["scanned"]) for b in report["backfills"]] == \
        [("tea-drinkers", "remove", "done", 4)]
    app_client.drain()
    person = contact(app_client, "user:t0")
    assert "tea-drinkers" not in person["segments"]
    assert person["counters"]["Segment Exited"]["total"] == 1
    status, members = app_client.admin("/v1/admin/segments/tea-drinkers/members")
    assert status == 404  # the segment is gone, and so are its memberships:
    assert runtime.services().membership_store.members("tea-drinkers", 10, None)[0] == []
    assert runtime.services().membership_store.size("tea-drinkers") == 0


def test_a_stored_definition_that_no_longer_parses_is_listed_and_counted(app_client):
    from chalicelib.entrypoints import runtime

    # Written by an older release whose parser read `===` as `==`.
    runtime.services().definition_store.put("segment", "old-tea", {
        "id": "old-tea", "name": "Old", "conditions": {"event": "Product Viewed",
                                                       "where": ['properties.category === "tea"']}}, "2026-01-01")
    status, listing = call(app_client, "GET", "/v1/admin/segments")
    assert status == 200
    assert [(u["id"], u["version"]) for u in listing["unreadable"]] == [("old-tea", 1)]
    assert '"===" in' in listing["unreadable"][0]["problems"][0]
    status, overview = call(app_client, "GET", "/v1/admin/definitions")
    assert status == 200 and [u["id"] for u in overview["unreadable"]] == ["old-tea"]
    assert {k["kind"]: k["count"] for k in overview["kinds"]}["segment"] == 1
    status, body = call(app_client, "GET", "/v1/admin/segments/old-tea")
    assert status == 200 and body["problems"]
    # Each catalog load counts them in a metric (flushed by the entry point that loaded it).
    from aws_lambda_powertools import Metrics

    runtime.services().definitions.invalidate()
    runtime.services().definitions.catalog()
    assert Metrics(namespace="Mercurio").metric_set["DefinitionsUnreadable"]["Value"][-1] == 1.0
    # The fix is a new version, which the current parser accepts.
    status, body = call(app_client, "PUT", "/v1/admin/segments/old-tea", {
        "name": "Old", "conditions": {"event": "Product Viewed", "where": ['properties.category == "tea"']}})
    assert status == 200 and body["version"] == 2 and "problems" not in body
    assert call(app_client, "GET", "/v1/admin/segments")[1]["unreadable"] == []


def test_a_size_preview_needs_no_id_or_name(app_client):
    app_client.post("/v1/identify", {"userId": "p1", "traits": {"plan": "pro"}})
    app_client.drain()
    response = app_client.http.post("/v1/admin/segments/preview", headers=ADMIN,
                                    body=json.dumps({"conditions": {"trait": "plan", "equals": "pro"}}))
    assert response.status_code == 200, response.body
    assert json.loads(response.body)["size"] == 1
    response = app_client.http.post("/v1/admin/segments/preview", headers=ADMIN,
                                    body=json.dumps({"conditions": {"segment": "nowhere"}}))
    assert response.status_code == 400
    assert json.loads(response.body)["problems"] == ['conditions.segment: unknown segment "nowhere"']


@pytest.mark.parametrize("method,path,status,reason", [
    ("GET", "/v1/admin/definitions/bogus", 404, "no kind of definition 'bogus'"),
    ("PUT", "/v1/admin/definitions/bogus/x", 404, "kinds: segment, campaign, destination, scoring, rfm, personas"),
    ("GET", "/v1/admin/segments/none-such", 404, "no segment 'none-such'"),
    ("GET", "/v1/admin/segments/base?version=abc", 400, "not a version number"),
    ("GET", "/v1/admin/segments/base?version=0", 400, "not a version number"),
    ("GET", "/v1/admin/segments/base?version=7", 404, "has no version 7 (versions: 1)"),
    ("PUT", "/v1/admin/segments/Bad_Id", 400, "must be 1 to 64 lower-case letters"),
    ("PUT", "/v1/admin/definitions/segment/validate", 405, ""),
    ("PUT", "/v1/admin/definitions/scoring/other", 400, "scoring has one definition, with id 'default'"),
    ("DELETE", "/v1/admin/segments/none-such", 404, "no segment 'none-such'"),
])
def test_wrong_requests_answer_4xx_with_a_reason(app_client, base_segment, method, path, status, reason):
    answer, body = call(app_client, method, path, {"name": "x", "conditions": {"tag": "x"}})
    assert answer == status, body
    assert reason in json.dumps(body, ensure_ascii=False), body


def test_an_id_in_the_document_must_match_the_path(app_client):
    status, body = call(app_client, "PUT", "/v1/admin/segments/one", {"id": "two", "name": "x",
                                                                       "conditions": {"tag": "x"}})
    assert status == 400 and body["problems"] == ["id: the document says 'two' but is stored as 'one'"]


def test_admin_definition_routes_need_the_admin_token(app_client):
    for method, path in (("GET", "/v1/admin/definitions"), ("GET", "/v1/admin/campaigns"),
                         ("DELETE", "/v1/admin/segments/x"), ("POST", "/v1/admin/scoring/validate")):
        response = app_client.http.request(method, path, headers={"Authorization": "Bearer wrong"}, body=b"{}")
        assert response.status_code == 401, (method, path)


def test_the_segment_sizes_job_repairs_a_counter_left_one_off(app_client):
    """Sizes are counters beside the membership rows; a crash between a row's write and its
    count leaves the size one off, and the daily `segment-sizes` job recounts it."""
    from chalicelib.adapters.dynamodb_memberships import shard_of
    from chalicelib.entrypoints import runtime

    status, _ = call(app_client, "PUT", "/v1/admin/segments/tea-fans",
                     {"name": "Tea fans", "conditions": {"trait": "drink", "equals": "tea"}})
    assert status == 200
    for i in range(2):
        app_client.post("/v1/identify", {"userId": f"tf{i}", "traits": {"drink": "tea"}})
    app_client.drain()
    store = runtime.services().membership_store
    assert store.size("tea-fans") == 2
    # A row written whose count never was (the crash): the size says 2, the rows 3.
    store.members_table.table.put_item(Item={"pk": f"tea-fans#{shard_of('lost-count')}", "sk": "lost-count",
                                             "since": "2026-11-01T00:00:00.000Z"})
    assert store.size("tea-fans") == 2
    status, job = call(app_client, "POST", "/v1/admin/jobs/segment-sizes")
    assert status == 200 and job["status"] == "done", job
    assert job["result"]["corrected"] == {"tea-fans": {"was": 2, "now": 3}}
    assert job["result"]["recounted"] == job["progress"]["segments"] >= 1
    assert store.size("tea-fans") == 3
    assert call(app_client, "GET", "/v1/admin/segments/tea-fans")[1]["size"] == 3
