"""Journeys through the app: stored and validated with the generic definition routes,
simulated for one contact with POST /v1/admin/journeys/{id}/simulate (a trace, nothing sent),
and not executed: an event that would enrol a contact changes nothing."""
from __future__ import annotations

from pathlib import Path

from tests.e2e.test_definitions_api import ADMIN, call
from tests.e2e.test_segments_api import contact

EXAMPLES = Path(__file__).resolve().parents[2] / "chalicelib" / "definitions" / "journeys"
START = "2026-03-02T10:00:00Z"


def put_example(app_client, name: str = "abandoned-cart"):
    response = app_client.http.put(f"/v1/admin/journeys/{name}", body=(EXAMPLES / f"{name}.yaml").read_text(),
                                   headers={**ADMIN, "Content-Type": "application/yaml"})
    return response


def simulate(app_client, body, journey: str = "abandoned-cart"):
    return call(app_client, "POST", f"/v1/admin/journeys/{journey}/simulate", body)


def added(at: str, cart: str) -> dict:
    return {"at": at, "event": {"event": "Product Added", "properties": {"cart_id": cart}}}


def test_the_abandoned_cart_is_stored_listed_and_versioned(app_client):
    response = put_example(app_client)
    assert response.status_code == 200, response.body
    status, body = call(app_client, "GET", "/v1/admin/journeys/abandoned-cart")
    assert status == 200 and body["version"] == 1 and body["document"]["start"] == "wait-for-purchase"
    status, listing = call(app_client, "GET", "/v1/admin/journeys")
    assert status == 200 and [j["id"] for j in listing["journeys"]] == ["abandoned-cart"]


def test_a_broken_journey_answers_400_with_every_problem(app_client):
    broken = {"name": "Broken", "trigger": {"event": "Product Added", "key": "cart_id"},
              "entry": {"re_entry": "sometimes", "segment": "nobody"}, "start": "first",
              "nodes": {"first": {"wait": "3 dayz", "next": "secnd"}, "second": {"send": {"template": "x"}}}}
    for method, path in (("POST", "/v1/admin/journeys/validate"), ("PUT", "/v1/admin/journeys/broken")):
        status, body = call(app_client, method, path, broken)
        assert status == 400, body
        places = {p.split(":", 1)[0] for p in body["problems"]}
        assert {"trigger.key", "entry.re_entry", "nodes.first.wait", "nodes.first.next",
                "entry.segment"} <= places, body["problems"]
    assert call(app_client, "GET", "/v1/admin/journeys/broken")[0] == 404


def test_scenario_2_simulated_for_a_described_contact(app_client):
    assert put_example(app_client).status_code == 200
    status, body = simulate(app_client, {
        "contact": {"traits": {"first_name": "Ada"}, "timezone": "Europe/Paris", "consent": ["sms"]},
        "timeline": [added(START, "k1"), added("2026-03-02T10:10:00Z", "k2"),
                     {"at": "2026-03-02T10:20:00Z", "event": {"event": "Order Completed",
                                                              "properties": {"cart_id": "k2"}}}],
        "start": START, "until": "2026-03-05T10:00:00Z"})
    assert status == 200, body
    assert body["journey"] == {"id": "abandoned-cart", "version": 1}
    first, second = body["enrollments"]
    assert (first["key"], first["status"], first["converted_at"]) == ("k1", "completed", None)
    assert [(t["at"], t["node"], t["decision"]) for t in first["trace"]] == [
        ("2026-03-02T10:00:00.000Z", "wait-for-purchase", "waiting"),
        ("2026-03-02T11:00:00.000Z", "wait-for-purchase", "resumed"),
        ("2026-03-02T11:00:00.000Z", "email-reminder", "sent"),
        ("2026-03-02T11:00:00.000Z", "wait-more", "waiting"),
        ("2026-03-03T11:00:00.000Z", "wait-more", "resumed"),
        ("2026-03-03T11:00:00.000Z", "sms-consent", "branched"),
        ("2026-03-03T11:00:00.000Z", "sms-reminder", "sent"),
        ("2026-03-03T11:00:00.000Z", "sms-reminder", "completed"),
    ]
    assert first["trace"][5]["reason"] == '{"consent": "sms"} holds: to sms-reminder'
    assert (second["key"], second["status"], second["converted_at"]) == ("k2", "exited", "2026-03-02T10:20:00.000Z")
    assert [t["decision"] for t in second["trace"]] == ["waiting", "goal"]
    sends = [(a["at"], a["enrollment"], a["channel"], a["template"]) for a in body["actions"] if a["kind"] == "send"]
    assert sends == [("2026-03-02T11:00:00.000Z", first["id"], "email", "cart-reminder"),
                     ("2026-03-03T11:00:00.000Z", first["id"], "sms", "cart-reminder-sms")]
    assert body["refused"] == [] and body["stopped_at"] is None


def test_an_existing_contact_is_simulated_read_only_and_nothing_executes_the_journey(app_client):
    assert put_example(app_client).status_code == 200
    # The journey's trigger event arrives for real: nothing enrols, nothing is sent.
    app_client.post("/v1/track", {"userId": "shopper", "event": "Product Added", "properties": {"cart_id": "c9"},
                                  "traits": {"timezone": "Europe/Paris"}})
    app_client.drain()
    assert app_client.drain_effects(timeout=5) == 0
    shopper = contact(app_client, "user:shopper")
    status, messages = app_client.admin(f"/v1/admin/contacts/{shopper['id']}/messages")
    assert status == 200 and messages["messages"] == [], messages

    status, body = simulate(app_client, {"contact_id": shopper["id"], "timeline": [added(START, "k1")],
                                         "start": START, "until": "2026-03-04T10:00:00Z"})
    assert status == 200, body
    assert body["contact"] == {"id": shopper["id"]}
    (enrollment,) = body["enrollments"]
    assert enrollment["trace"][-1]["node"] == "no-sms"  # no SMS consent: the email only
    assert [a["template"] for a in body["actions"]] == ["cart-reminder"]
    after = contact(app_client, "user:shopper")
    assert after["counters"] == shopper["counters"] and after["traits"] == shopper["traits"]
    assert app_client.drain_effects(timeout=5) == 0


def test_simulate_answers_404_for_an_unknown_journey_and_400_with_reasons_for_a_bad_body(app_client):
    status, body = simulate(app_client, {"contact": {}}, journey="nowhere")
    assert status == 404 and "nowhere" in body["error"]
    assert put_example(app_client).status_code == 200
    bad_bodies = [
        ("[1]", "JSON object"),
        ("{", "not valid JSON"),
        ({}, "contact: give either"),
        ({"contact": {}, "contact_id": "x"}, "contact: give either"),
        ({"contact_id": "no-such-contact"}, "contact_id: no contact"),
        ({"contact": {"timezone": "Mars/Olympus"}}, "contact.timezone"),
        ({"contact": {"segments": "vip"}}, "contact.segments"),
        ({"contact": {}, "start": "yesterday"}, "start: expected an ISO-8601"),
        ({"contact": {}, "start": START, "until": START}, "until: must be after start"),
        ({"contact": {}, "start": START, "until": "2027-03-02T10:00:00Z"}, "until: at most 90 days"),
        ({"contact": {}, "start": START, "timeline": [added(START, "k")] * 201}, "timeline: at most 200 events"),
        ({"contact": {}, "start": START, "timeline": [added("2026-03-01T10:00:00Z", "k")]},
         "timeline[0].at: 2026-03-01T10:00:00.000Z is outside the simulated span"),
        ({"contact": {}, "start": START, "timeline": [{"at": START, "event": {"event": 3}}]},
         "timeline[0].event.event"),
        ({"contact": {}, "start": START, "timeline": [{"at": START, "event": {"event": "X", "type": "identify"}}]},
         "timeline[0].event.type"),
        ({"contact": {}, "colour": "red"}, "colour: unknown field"),
    ]
    for bad, reason in bad_bodies:
        status, body = simulate(app_client, bad)
        assert status == 400, (bad, body)
        assert reason in body["error"], (bad, body)
    status, body = simulate(app_client, {"contact": {"timezone": "Mars/Olympus"}, "start": "soon", "timeline": 3})
    assert status == 400 and len(body["problems"]) == 3, body


def test_simulate_needs_the_admin_token(app_client):
    response = app_client.http.post("/v1/admin/journeys/abandoned-cart/simulate", body="{}",
                                    headers={"Content-Type": "application/json"})
    assert response.status_code == 401


def test_the_shipped_birthday_journey_is_simulated_from_a_segment_entry_with_its_coupon_pool(app_client):
    segment = (EXAMPLES.parent / "segments" / "birthday-today.yaml").read_text()
    response = app_client.http.put("/v1/admin/segments/birthday-today", body=segment,
                                   headers={**ADMIN, "Content-Type": "application/yaml"})
    assert response.status_code == 200, response.body
    assert put_example(app_client, "birthday").status_code == 200
    # Local midnight of the birthday in New York, the day summer time starts (09:00 is UTC-4).
    status, body = simulate(app_client, {
        "contact": {"traits": {"birthday": "1985-03-08"}, "timezone": "America/New_York"},
        "timeline": [{"at": "2026-03-08T05:00:00Z", "segment_entered": "birthday-today"}],
        "start": "2026-03-08T05:00:00Z", "until": "2026-03-09T05:00:00Z"}, journey="birthday")
    assert status == 200, body
    [enrollment] = body["enrollments"]
    assert [(t["at"], t["node"], t["decision"]) for t in enrollment["trace"]] == [
        ("2026-03-08T05:00:00.000Z", "nine-am", "waiting"),
        ("2026-03-08T13:00:00.000Z", "nine-am", "resumed"),
        ("2026-03-08T13:00:00.000Z", "birthday-email", "sent"),
        ("2026-03-08T13:00:00.000Z", "birthday-email", "completed")]
    assert [(a["at"], a["template"], a["coupon"]) for a in body["actions"]] == [
        ("2026-03-08T13:00:00.000Z", "birthday", "birthday")]
    status, body = simulate(app_client, {"contact": {}, "timeline": [{"at": START, "segment_entered": "Birthday"}],
                                         "start": START}, journey="birthday")
    assert status == 400 and body["problems"] == [
        'timeline[0].segment_entered: expected a segment id such as mql, got "Birthday"']
