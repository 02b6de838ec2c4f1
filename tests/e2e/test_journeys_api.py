"""Journeys through the app on moto: stored and validated with the generic definition routes,
simulated for one contact with POST /v1/admin/journeys/{id}/simulate (a trace, nothing sent),
and operated: entered through the API, seen per contact and per node, counted, paused,
resumed and stopped (the stop job's signals end the executions), previewed before a new
version, entered on a schedule, and erased with the contact.

moto's in-process Step Functions records executions without running them: the tests deliver
the journey-events queue to its consumer (`journey_events`) and play the machine's Advance task
(`journey_advance`) where a step must run; stopping an execution is moto's StopExecution."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest

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


# -- operating journeys -------------------------------------------------------------------------

WELCOME = {
    "name": "VIP welcome", "trigger": {"api": True}, "entry": {"re_entry": "always", "max_concurrent": 3},
    "goal": {"event": "Order Completed"}, "start": "subject-test",
    "nodes": {
        "subject-test": {"experiment": "subject", "arms": {"A": 50, "B": 50}, "next": {"A": "send-a", "B": "send-b"}},
        "send-a": {"send": {"template": "welcome-a", "channel": "email"}, "next": "pause"},
        "send-b": {"send": {"template": "welcome-b", "channel": "email"}, "next": "pause"},
        "pause": {"wait": "2 days", "next": "done"},
        "done": {"exit": "the welcome is over"},
    },
}


class Journeys:
    """The app's journey consumers on moto, driven by the test (see the module docstring)."""

    def __init__(self, app_client, app_env):
        from local.queue_bridge import QueueBridge, to_lambda_record

        self.client = app_client
        self.invoke = app_client.client.lambda_.invoke
        self.signals = QueueBridge(app_env["JourneyEventsQueue"], lambda e: self.invoke("journey_events", e).payload)
        self.advance_arn = boto3.client("sqs").get_queue_attributes(
            QueueUrl=app_env["JourneyAdvanceQueue"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.runner = app_env["EnrollmentRunner"]
        self._record = to_lambda_record
        self._tokens = 0

    def deliver(self) -> int:
        return self.signals.drain(timeout=30)

    def advance(self, enrollment_id: str) -> dict:
        """The machine's first Advance task for the enrollment, as its queue consumer receives it."""
        self._tokens += 1
        body = {"enrollment_id": enrollment_id, "execution_arn": self.execution(enrollment_id),
                "task_token": f"token-{self._tokens}", "after": {"kind": "start"}}
        message = {"MessageId": f"advance-{self._tokens}", "ReceiptHandle": f"r-{self._tokens}",
                   "Body": json.dumps(body), "Attributes": {"ApproximateReceiveCount": "1"}}
        return self.invoke("journey_advance", {"Records": [self._record(message, self.advance_arn, "us-east-1")]}
                           ).payload

    def execution(self, enrollment_id: str) -> str:
        return self.runner.replace(":stateMachine:", ":execution:", 1) + f":{enrollment_id}"

    def status(self, enrollment_id: str) -> str:
        return boto3.client("stepfunctions").describe_execution(executionArn=self.execution(enrollment_id))["status"]


@pytest.fixture
def journeys(app_client, app_env, monkeypatch):
    monkeypatch.setenv("MERCURIO_ENROLLMENT_RUNNER_ARN", app_env["EnrollmentRunner"])
    monkeypatch.setenv("MERCURIO_SUPPRESSION_SALT", "a-salt-of-at-least-16-bytes")  # for the erasure
    return Journeys(app_client, app_env)


def known_contact(app_client, user_id: str, **traits) -> dict:
    app_client.post("/v1/identify", {"userId": user_id, "traits": {"email": f"{user_id}@example.com", **traits}})
    app_client.drain()
    return contact(app_client, f"user:{user_id}")


def test_an_api_entry_is_seen_counted_paused_resumed_and_stopped(app_client, journeys):
    assert call(app_client, "PUT", "/v1/admin/journeys/vip-welcome", WELCOME)[0] == 200
    ada = known_contact(app_client, "ada")
    status, entry = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/enrollments",
                         {"user_id": "ada", "key": "gold", "data": {"tier": "gold"}, "id": "crm-1"})
    assert status == 202, entry
    assert entry["contact_id"] == ada["id"] and entry["status"] == "queued"
    eid = entry["enrollment_id"]
    assert journeys.deliver() == 1
    assert journeys.status(eid) == "RUNNING"  # the execution was started, named by the enrollment
    journeys.advance(eid)  # the first Advance: the experiment, the send, then the 2-day wait

    status, view = call(app_client, "GET", "/v1/admin/journeys/vip-welcome")
    assert status == 200, view
    assert view["state"]["state"] == "live" and view["waiting_now"]["pause"] == 1 and view["waiting_total"] == 1

    status, seen = app_client.admin(f"/v1/admin/journeys/vip-welcome/enrollments?contact={ada['id']}")
    assert status == 200, seen
    (enrollment,) = seen["enrollments"]
    assert (enrollment["id"], enrollment["status"], enrollment["node"], enrollment["key"], enrollment["version"]) == (
        eid, "active", "pause", "gold", 1)
    assert enrollment["data"] == {"tier": "gold"} and enrollment["waiting"]["kind"] == "until"
    arm = enrollment["arms"]["subject"]
    assert [(t["node"], t["decision"]) for t in enrollment["trace"]] == [
        ("subject-test", "arm"), (f"send-{arm.lower()}", "sent"), ("pause", "waiting")]
    (message,) = enrollment["messages"]
    _, logged = app_client.admin(f"/v1/admin/contacts/{ada['id']}/messages")
    (logged_message,) = logged["messages"]
    assert (message["id"], message["node"], message["template"], message["status"]) == (
        logged_message["id"], f"send-{arm.lower()}", f"welcome-{arm.lower()}", logged_message["status"])

    status, stats = app_client.admin("/v1/admin/journeys/vip-welcome/stats")
    assert status == 200, stats
    nodes = {n["node"]: n for n in stats["nodes"]}
    assert stats["totals"]["entered"] == 1 and nodes["pause"]["waiting_now"] == 1
    assert nodes[f"send-{arm.lower()}"]["entered"] == 1
    assert nodes[f"send-{arm.lower()}"]["messages"]["totals"]["requested"] == 1
    assert nodes["subject-test"]["paths"][0]["count"] + nodes["subject-test"]["paths"][1]["count"] == 1
    (experiment,) = stats["experiments"]
    assert {a["arm"]: a["entered"] for a in experiment["arms"]}[arm] == 1
    assert experiment["verdict"]["code"] == "too_few"

    status, paused = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/pause", {"reason": "new copy"})
    assert status == 200 and paused["state"]["state"] == "paused" and paused["state"]["reason"] == "new copy"
    status, refused = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/enrollments", {"user_id": "ada"})
    assert status == 409 and "paused" in refused["error"]
    status, resumed = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/resume")
    assert status == 200 and resumed["state"]["state"] == "live" and resumed["was"] == "paused"

    status, stopped = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/stop", {"reason": "wrong offer"})
    assert status == 200, stopped  # one page: the sweep finished within the request
    assert stopped["state"]["state"] == "stopped" and stopped["job"]["kind"] == "journey-stop"
    status, job = app_client.admin(f"/v1/admin/jobs/{stopped['job']['id']}")
    assert status == 200 and job["status"] == "done" and job["result"]["signalled"] == 1
    assert journeys.deliver() == 1  # the stop signal: the consumer ends the execution
    assert journeys.status(eid) == "ABORTED"
    _, seen = app_client.admin(f"/v1/admin/journeys/vip-welcome/enrollments?contact={ada['id']}")
    assert seen["enrollments"][0]["status"] == "stopped"
    assert seen["enrollments"][0]["trace"][-1]["reason"] == "wrong offer"
    _, view = call(app_client, "GET", "/v1/admin/journeys/vip-welcome")
    assert view["state"]["state"] == "stopped" and view["waiting_total"] == 0

    status, again = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/stop")
    assert status == 200 and again["already_stopped"] and again["job"]["result"]["signalled"] == 0
    status, refused = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/enrollments", {"user_id": "ada"})
    assert status == 409 and "stopped" in refused["error"]
    assert call(app_client, "POST", "/v1/admin/journeys/vip-welcome/resume")[0] == 200
    assert call(app_client, "POST", "/v1/admin/journeys/vip-welcome/enrollments", {"user_id": "ada"})[0] == 202


def test_preview_says_where_running_enrollments_stand_against_a_new_version(app_client, journeys):
    assert call(app_client, "PUT", "/v1/admin/journeys/vip-welcome", WELCOME)[0] == 200
    for user in ("ada", "bob"):
        known_contact(app_client, user)
        assert call(app_client, "POST", "/v1/admin/journeys/vip-welcome/enrollments", {"user_id": user})[0] == 202
    journeys.deliver()
    changed = json.loads(json.dumps(WELCOME))
    changed["start"] = "send-a"
    del changed["nodes"]["subject-test"], changed["nodes"]["send-b"]
    status, preview = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/preview", changed)
    assert status == 200, preview
    assert preview["current_version"] == 1 and preview["running"] == {"counted": 2, "complete": True}
    assert preview["nodes"] == [{"node": "subject-test", "running": 2, "in_new_version": False,
                                 "kind_now": "experiment"}]
    assert preview["changes"]["removed"] == ["send-b", "subject-test"]
    assert "finish on the version they started on" in preview["versions"]
    assert call(app_client, "GET", "/v1/admin/journeys/vip-welcome")[1]["version"] == 1  # nothing stored
    status, body = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/preview",
                        {**changed, "start": "nowhere"})
    assert status == 400 and any(p.startswith("start:") for p in body["problems"]), body
    status, body = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/preview", "{")
    assert status == 400 and "not valid YAML or JSON" in body["error"]


def test_a_schedule_journey_enrolls_its_segment_once_a_day(app_client, journeys):
    assert call(app_client, "PUT", "/v1/admin/segments/vips", {
        "name": "VIPs", "conditions": {"trait": "vip", "equals": True}})[0] == 200
    assert call(app_client, "PUT", "/v1/admin/journeys/daily-tip", {
        "name": "Daily tip", "trigger": {"schedule": {"at": "09:00"}}, "entry": {"segment": "vips",
                                                                                 "re_entry": "always"},
        "start": "tip", "nodes": {"tip": {"send": {"template": "tip", "channel": "email"}}}})[0] == 200
    vip = known_contact(app_client, "vera", vip=True, timezone="Asia/Tokyo")
    known_contact(app_client, "nora", vip=False)
    from chalicelib.entrypoints import runtime

    from tests.unit.fakes import FakeClock

    runtime.services().definitions.invalidate()
    # The day the schedule runs for, fixed (the runtime waits on the real clock).
    runtime.services().journey_admin.clock = FakeClock(datetime(2026, 3, 2, 0, 5, tzinfo=timezone.utc))
    event = app_client.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                                       detail={}, resources=[])
    report = app_client.client.lambda_.invoke("segment_jobs", event).payload
    (started,) = report["journeys"]["started"]
    assert started["status"] == "done" and started["progress"]["signalled"] == 1
    assert journeys.deliver() == 1
    status, seen = app_client.admin(f"/v1/admin/journeys/daily-tip/enrollments?contact={vip['id']}")
    (enrollment,) = seen["enrollments"]
    assert enrollment["node"] == "@schedule" and enrollment["waiting"]["kind"] == "until"
    assert "until 09:00 in Asia/Tokyo" in enrollment["trace"][0]["reason"]
    assert call(app_client, "GET", "/v1/admin/journeys/daily-tip")[1]["waiting_now"]["@schedule"] == 1
    again = app_client.client.lambda_.invoke("segment_jobs", event).payload
    assert again["journeys"]["started"] == []  # once a day
    status, job = app_client.admin(f"/v1/admin/jobs/{started['id']}")
    assert status == 200 and job["params"] == {"journey": "daily-tip", "day": "2026-03-02"}


def test_erasing_a_contact_stops_its_journeys_then_deletes_its_enrollments(app_client, journeys):
    from chalicelib.entrypoints import runtime

    assert call(app_client, "PUT", "/v1/admin/journeys/vip-welcome", WELCOME)[0] == 200
    ada = known_contact(app_client, "ada")
    _, entry = call(app_client, "POST", "/v1/admin/journeys/vip-welcome/enrollments", {"user_id": "ada"})
    journeys.deliver()
    journeys.advance(entry["enrollment_id"])
    response = app_client.http.delete(f"/v1/admin/contacts/{ada['id']}", headers=ADMIN)
    erasure = json.loads(response.body)
    assert response.status_code == 202 and erasure["step"] == "journeys", erasure
    assert erasure["counts"]["journeys_stopped"] == 1
    assert journeys.deliver() == 1  # the stop signal
    assert journeys.status(entry["enrollment_id"]) == "ABORTED"
    [report] = runtime.services().privacy.resume()  # the scheduled segment jobs continue erasures
    assert report["status"] == "done" and report["counts"]["enrollments"] == 2
    store = runtime.services().enrollment_store
    assert store.get(entry["enrollment_id"]) is None and store.entries(ada["id"]) == {}


def test_every_bad_request_to_the_journey_routes_gets_a_4xx_with_the_reason(app_client, journeys):
    assert put_example(app_client).status_code == 200
    assert call(app_client, "PUT", "/v1/admin/journeys/vip-welcome", WELCOME)[0] == 200
    known_contact(app_client, "ada")
    cases = [
        ("GET", "/v1/admin/journeys/vip-welcome/enrollments", None, 400, "contact is required"),
        ("GET", "/v1/admin/journeys/nowhere/enrollments?contact=x", None, 404, "no journey 'nowhere'"),
        ("GET", "/v1/admin/journeys/vip-welcome/enrollments?contact=ghost", None, 404, "no contact 'ghost'"),
        ("GET", "/v1/admin/journeys/nowhere/stats", None, 404, "no journey"),
        ("POST", "/v1/admin/journeys/nowhere/pause", None, 404, "no journey"),
        ("POST", "/v1/admin/journeys/nowhere/resume", None, 404, "no journey"),
        ("POST", "/v1/admin/journeys/nowhere/stop", None, 404, "no journey"),
        ("POST", "/v1/admin/journeys/vip-welcome/pause", {"reason": 7}, 400, "reason: expected text"),
        ("POST", "/v1/admin/journeys/vip-welcome/stop", {"why": "x"}, 400, "why: unknown field"),
        ("POST", "/v1/admin/journeys/vip-welcome/resume", "[1]", 400, "JSON object"),
        ("POST", "/v1/admin/journeys/vip-welcome/enrollments", {}, 400, "give exactly one of"),
        ("POST", "/v1/admin/journeys/vip-welcome/enrollments", {"email": "nope"}, 400, "not an email address"),
        ("POST", "/v1/admin/journeys/vip-welcome/enrollments", {"user_id": "nobody"}, 404, "no contact is known"),
        ("POST", "/v1/admin/journeys/vip-welcome/enrollments", {"user_id": "ada", "data": 3}, 400, "data:"),
        ("POST", "/v1/admin/journeys/abandoned-cart/enrollments", {"user_id": "ada"}, 409, "event trigger"),
        ("POST", "/v1/admin/journeys/nowhere/enrollments", {"user_id": "ada"}, 404, "no journey"),
        ("POST", "/v1/admin/journeys/vip-welcome/preview", {**WELCOME, "id": "other"}, 400, "the document says"),
    ]
    for method, path, body, expected, reason in cases:
        status, answer = call(app_client, method, path, body)
        assert status == expected, (method, path, answer)
        assert reason in answer["error"], (method, path, answer)
    for method, path in (("GET", "/v1/admin/journeys/vip-welcome/enrollments?contact=x"),
                         ("POST", "/v1/admin/journeys/vip-welcome/enrollments"),
                         ("GET", "/v1/admin/journeys/vip-welcome/stats"),
                         ("POST", "/v1/admin/journeys/vip-welcome/pause"),
                         ("POST", "/v1/admin/journeys/vip-welcome/resume"),
                         ("POST", "/v1/admin/journeys/vip-welcome/stop"),
                         ("POST", "/v1/admin/journeys/vip-welcome/preview")):
        response = app_client.http.request(method, path, headers={"Content-Type": "application/json"}, body=b"{}")
        assert response.status_code == 401, (method, path)
    assert call(app_client, "GET", "/v1/admin/journeys/vip-welcome")[1]["state"]["state"] == "live"
