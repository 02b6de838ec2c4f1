"""Nothing a client or an operator sends may produce a 5xx: generated inputs against every route."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.property_runs import examples

TRACKING_PATHS = ["/v1/track", "/v1/t", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias",
                  "/v1/batch", "/v1/b"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
field_values = st.one_of(json_values, st.sampled_from(["2026-11-22T10:00:00Z", "u1", "", " ", "E"]))
event_like = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "bogus"]) | field_values,
    "userId": field_values, "anonymousId": field_values, "event": field_values, "messageId": field_values,
    "timestamp": field_values, "sentAt": field_values, "originalTimestamp": field_values,
    "properties": field_values, "traits": field_values, "context": field_values, "groupId": field_values,
    "previousId": field_values, "name": field_values, "integrations": field_values,
    "writeKey": st.sampled_from(["test-write-key-1", "nope"]) | field_values,
})
bodies = st.one_of(
    event_like.map(json.dumps),
    st.fixed_dictionaries({"batch": st.lists(event_like, max_size=5) | field_values,
                           "writeKey": st.just("test-write-key-1")}).map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=200),
)
headers = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/plain", "text/plain;charset=UTF-8", "", "*/*",
                                     "application/xml", "multipart/form-data"]),
    "Authorization": st.sampled_from(["Basic dGVzdC13cml0ZS1rZXktMTo=", "Basic !!!", "Basic", "Bearer x",
                                      "Basic " + "A" * 50, ""]),
    "Origin": st.sampled_from(["https://shop.example", "null", "", "not a url"]),
})


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(TRACKING_PATHS), body=bodies, hdrs=headers)
def test_tracking_routes_never_answer_5xx(app_client, path, body, hdrs):
    response = app_client.http.post(path, headers=hdrs, body=body)
    assert response.status_code < 500, (path, body, hdrs, response.body)


admin_paths = st.one_of(
    st.text(max_size=30).map(lambda t: "/v1/admin/contacts?identifier=" + t.replace("#", "").replace("&", "")),
    st.sampled_from(["/v1/admin/contacts/abc", "/v1/admin/contacts/abc/events?limit=-1",
                     "/v1/admin/contacts/abc/events?cursor=%%%", "/v1/admin/contacts?identifier=phone:+1"]),
)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=admin_paths)
def test_admin_reads_never_answer_5xx(app_client, path):
    response = app_client.http.get(path, headers={"Authorization": "Bearer test-admin-token-1"})
    assert response.status_code < 500, (path, response.body)


import_bodies = st.one_of(
    st.fixed_dictionaries({"csv": st.text(max_size=200) | field_values}, optional={
        "mapping": st.dictionaries(st.text(max_size=8), st.sampled_from(["email", "userId", "traits.x", "x"]) | field_values, max_size=3),
        "default_region": field_values, "as_of": field_values, "source": field_values}).map(json.dumps),
    st.binary(max_size=100),
)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=import_bodies)
def test_imports_never_answer_5xx(app_client, body):
    response = app_client.http.post("/v1/admin/imports", headers={"Authorization": "Bearer test-admin-token-1"},
                                    body=body)
    assert response.status_code < 500, (body, response.body)


def test_processing_survives_whatever_ingest_accepted(app_client):
    """Everything the fuzzers got accepted must also process without a failed record."""
    app_client.post("/v1/batch", {"batch": [
        {"type": "identify", "userId": 0, "traits": {"email": "not-an-email", "phone": "garbage"}},
        {"type": "identify", "anonymousId": "a", "traits": {"email": None, "phone": 12345678901}},
        {"type": "alias", "userId": "x", "previousId": 7},
        {"type": "group", "userId": "x", "groupId": 1.5, "traits": {}},
        {"type": "track", "anonymousId": "  padded  ", "event": " Spaced "},
    ]})
    app_client.drain()
    assert app_client.bridge.dropped == []


condition_like = st.recursive(
    st.fixed_dictionaries({}, optional={
        "trait": st.sampled_from(["plan", "birthday", "a.b"]) | field_values,
        "event": st.sampled_from(["Order Completed", "Page Viewed"]) | field_values,
        "equals": field_values, "in": field_values, "within": st.sampled_from(["30 days", "P1D", "0 days"]) | field_values,
        "at_least": field_values, "at_most": field_values, "where": field_values, "before": field_values,
        "anniversary": field_values, "segment": field_values, "score": field_values, "rfm": field_values,
        "campaign_group": field_values, "message": field_values, "exists": field_values}),
    lambda children: st.one_of(st.fixed_dictionaries({"all": st.lists(children, max_size=3)}),
                               st.fixed_dictionaries({"any": st.lists(children, max_size=3)}),
                               st.fixed_dictionaries({"not": children})),
    max_leaves=6,
)
segment_docs = st.one_of(
    st.fixed_dictionaries({"id": st.sampled_from(["fuzz", "other"]) | field_values,
                           "name": field_values, "conditions": condition_like | field_values}).map(json.dumps),
    st.sampled_from([
        "id: fuzz\nname: F\nconditions:\n  trait: birthday\n  before: 2026-01-31\n",
        "id: fuzz\nname: F\nconditions: !!python/object:os.system {}\n",
        "id: fuzz\nname: 2026-11-22\nconditions:\n  trait: x\n  equals: 2026-11-22T10:00:00Z\n",
        "- just\n- a list\n", "{", ": :", "id: fuzz\nname: [unclosed\n",
    ]),
    st.text(max_size=120),
    st.binary(max_size=80),
)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=segment_docs, kind=st.sampled_from(["segments/fuzz", "segments/preview", "definitions/scoring/default",
                                                "definitions/rfm/default", "definitions/personas/default",
                                                "definitions/campaign/fuzz", "definitions/destination/fuzz",
                                                "definitions/bogus/x", "segments/fuzz/exports", "segments/validate",
                                                "definitions/segment/validate", "scoring/validate", "personas",
                                                "campaigns/fuzz", "destinations/validate", "rfm"]),
       delete=st.booleans())
def test_definition_routes_never_answer_5xx(app_client, body, kind, delete):
    method = "POST" if kind.endswith(("preview", "exports", "validate")) else "DELETE" if delete else "PUT"
    response = app_client.http.request(method, f"/v1/admin/{kind}", body=body,
                                       headers={"Authorization": "Bearer test-admin-token-1",
                                                "Content-Type": "application/yaml"})
    assert response.status_code < 500, (kind, body, response.body)


# -- depth bombs: a body nested far past any limit parses to a 400, never a RecursionError ----

DEEP = 1000


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


DEPTH_BOMBS = {
    "track, deep properties": ("/v1/track", '{"userId":"u1","event":"E","properties":' + _nested_object(DEEP) + "}"),
    "track, deep list": ("/v1/track", _nested(DEEP)),
    "batch, deep event": ("/v1/batch", '{"batch":[{"type":"track","userId":"u1","event":"E","properties":{"x":'
                          + _nested(DEEP) + "}}]}"),
    "batch, deep context": ("/v1/batch", '{"batch":[{"type":"track","userId":"u1","event":"E"}],"context":'
                            + _nested_object(DEEP) + "}"),
    "short path, text/plain": ("/v1/t", '{"writeKey":"test-write-key-1","userId":"u1","event":"E","properties":'
                               + _nested_object(DEEP) + "}"),
}


def test_depth_bombs_on_tracking_routes_answer_400(app_client):
    for label, (path, body) in DEPTH_BOMBS.items():
        response = app_client.post(path, body)
        assert response.status_code == 400, (label, response.status_code, response.body[:300])
        assert b"nested" in response.body, (label, response.body[:300])


def test_a_batch_context_nested_past_the_limit_is_refused_like_a_deep_event(app_client):
    # 13 levels: parses, but would be copied into every stored event.
    response = app_client.post("/v1/batch", '{"batch":[{"type":"track","userId":"u1","event":"E"}],"context":'
                               + _nested_object(13) + "}")
    assert response.status_code == 400 and b"nested" in response.body, response.body


ADMIN = {"Authorization": "Bearer test-admin-token-1"}


def test_depth_bombs_on_admin_routes_answer_400(app_client):
    cases = [
        ("POST", "/v1/admin/imports", _nested(DEEP), "application/json"),
        ("POST", "/v1/admin/imports", '{"csv":"email\\na@b.co","mapping":' + _nested_object(DEEP) + "}",
         "application/json"),
        ("POST", "/v1/admin/segments/coffee/exports", '{"traits":' + _nested(DEEP) + "}", "application/json"),
        ("POST", "/v1/admin/segments/coffee/exports", _nested_object(DEEP), "application/json"),
        ("PUT", "/v1/admin/segments/deep", _nested(DEEP), "application/json"),
        ("PUT", "/v1/admin/segments/deep", '{"id":"deep","name":"D","conditions":' + _nested_object(DEEP) + "}",
         "application/json"),
        ("POST", "/v1/admin/segments/preview", '{"conditions":' + _nested_object(DEEP) + "}", "application/json"),
        # YAML nests by indentation and by flow collections; both are refused the same way.
        ("PUT", "/v1/admin/segments/deep", "id: deep\nname: D\nconditions:\n  x: " + _nested(DEEP),
         "application/yaml"),
        ("PUT", "/v1/admin/definitions/scoring/default", _nested_object(DEEP), "application/yaml"),
        ("PUT", "/v1/admin/segments/deep", "id: deep\nname: D\nconditions:\n" + "".join(
            " " * (2 * i + 2) + "not:\n" for i in range(300)) + " " * 602 + "trait: plan\n", "application/yaml"),
    ]
    for method, path, body, content_type in cases:
        response = app_client.http.request(method, path, body=body, headers={**ADMIN, "Content-Type": content_type})
        assert response.status_code == 400, (path, body[:80], response.status_code, response.body[:300])
        assert b"nested" in response.body, (path, body[:80], response.body[:300])


def test_depth_bombs_inside_strings_answer_400(app_client):
    """JSON nested inside a text field: a filter's literal, a page cursor."""
    filter_bomb = json.dumps({"id": "deep", "name": "D", "conditions": {
        "event": "Product Viewed", "where": ["properties.category in " + _nested(DEEP, '"x"')]}})
    response = app_client.http.put("/v1/admin/segments/deep", body=filter_bomb,
                                   headers={**ADMIN, "Content-Type": "application/json"})
    assert response.status_code == 400 and b"nested" in response.body, (response.status_code, response.body[:300])

    saved = app_client.http.put("/v1/admin/segments/viewers", body="id: viewers\nname: V\nconditions:\n  event: E\n",
                                headers={**ADMIN, "Content-Type": "application/yaml"})
    assert saved.status_code == 200, saved.body
    from urllib.parse import quote

    response = app_client.http.get("/v1/admin/segments/viewers/members?cursor=" + quote(_nested(DEEP)),
                                   headers=ADMIN)
    assert response.status_code == 400, (response.status_code, response.body[:300])
