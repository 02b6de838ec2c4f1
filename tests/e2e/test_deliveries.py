"""Done means, for effects: a destination whose receiver fails three times and then
recovers receives the delivery; one whose secret appears later receives it after it
appears; a parked delivery is replayed; neither is lost and all are in the delivery log.

Through the app in-process (chalice.test.Client on moto): the events stream and the effects
queue are bridged to the app's own handlers. Back-off waits are the queue's real visibility
timeouts, so these tests start retries at 1 second (MERCURIO_DELIVERY_FIRST_RETRY_SECONDS);
the schedule itself is tested on a fake clock in tests/unit/test_deliveries.py.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

ADMIN = {"Authorization": "Bearer test-admin-token-1", "Content-Type": "application/json"}
SECRET = "whsec-e2e-signing-secret-01"
SEGMENT = "id: vip\nname: VIP\nconditions:\n  trait: plan\n  equals: vip\n"


class Receiver:
    """A CRM on 127.0.0.1 (a port the OS picks) answering with scripted statuses."""

    def __init__(self, *statuses: int):
        self.statuses = list(statuses) or [200]
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mercurio"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def verified(self, secret: str) -> list[dict]:
        """The bodies whose signature checks out with this secret."""
        good = []
        for headers, body in self.requests:
            expected = hmac.new(secret.encode(), headers["X-Mercurio-Timestamp"].encode() + b"." + body,
                                hashlib.sha256).hexdigest()
            if hmac.compare_digest(headers["X-Mercurio-Signature"], f"v1={expected}"):
                good.append(json.loads(body))
        return good


@pytest.fixture
def effects(app_client, monkeypatch):
    from chalicelib.entrypoints import runtime

    monkeypatch.setenv("MERCURIO_WEBHOOKS_ALLOW_PRIVATE", "true")  # the receivers listen on loopback
    monkeypatch.setenv("MERCURIO_DELIVERY_FIRST_RETRY_SECONDS", "1")
    runtime.reset()
    response = app_client.http.put("/v1/admin/segments/vip", body=SEGMENT,
                                   headers={**ADMIN, "Content-Type": "application/yaml"})
    assert response.status_code == 200, response.body
    return app_client


def destination(app_client, destination_id: str, url: str, secret: str | None = SECRET) -> None:
    document = {"id": destination_id, "name": destination_id.upper(), "url": url, "segments": ["vip"],
                "secret_parameter": f"/mercurio/test/destinations/{destination_id}"}
    response = app_client.http.put(f"/v1/admin/definitions/destination/{destination_id}",
                                   body=json.dumps(document), headers=ADMIN)
    assert response.status_code == 200, response.body
    if secret is not None:
        set_secret(app_client, destination_id, secret)


def set_secret(app_client, destination_id: str, secret: str):
    response = app_client.http.put(f"/v1/admin/destinations/{destination_id}/secret",
                                   body=json.dumps({"secret": secret}), headers=ADMIN)
    assert response.status_code == 200, response.body
    assert secret not in response.body.decode()  # write-only
    return json.loads(response.body)


def becomes_vip(app_client) -> str:
    user = f"vip-{uuid.uuid4().hex[:8]}"
    app_client.post("/v1/identify", {"userId": user, "traits": {"email": f"{user}@example.com", "plan": "vip"}})
    app_client.drain()
    return user


def deliveries(app_client, destination_id: str, query: str = "") -> list[dict]:
    status, page = app_client.admin(f"/v1/admin/destinations/{destination_id}/deliveries{query}")
    assert status == 200, page
    return page["deliveries"]


def test_a_receiver_that_fails_three_times_then_recovers_receives_the_delivery(effects):
    with Receiver(500, 502, 503, 200) as crm:
        destination(effects, "flaky-crm", crm.url)
        user = becomes_vip(effects)
        assert crm.requests == []  # nothing is posted by the stream handler
        effects.drain_effects(timeout=60)
    assert len(crm.requests) == 4
    assert len({h["X-Mercurio-Delivery"] for h, _ in crm.requests}) == 1  # one idempotency key
    payload = crm.verified(SECRET)[-1]
    assert payload["type"] == "segment.entered" and payload["segment_id"] == "vip"
    assert f"user:{user}" in payload["contact"]["identifiers"]
    [logged] = deliveries(effects, "flaky-crm")
    assert logged["status"] == "delivered" and logged["attempts"] == 4
    assert [a.get("http_status") for a in logged["attempt_log"]] == [500, 502, 503, 200]
    assert logged["delivery_id"] == crm.requests[0][0]["X-Mercurio-Delivery"]


def test_a_destination_whose_secret_appears_later_receives_the_delivery_after_it_appears(effects):
    with Receiver(200) as crm:
        destination(effects, "late-secret", crm.url, secret=None)
        becomes_vip(effects)
        assert effects.deliver_effects_once() >= 1  # (an outbox published twice enqueues a copy)
        [waiting] = deliveries(effects, "late-secret", "?status=retrying")
        assert "/mercurio/test/destinations/late-secret" in waiting["last_error"]
        assert waiting["next_attempt_at"] and crm.requests == []
        set_secret(effects, "late-secret", "whsec-created-afterwards-01")
        effects.drain_effects(timeout=60)
    assert len(crm.verified("whsec-created-afterwards-01")) == 1
    [logged] = deliveries(effects, "late-secret")
    assert logged["status"] == "delivered" and logged["attempts"] >= 2


def test_a_parked_delivery_is_visible_and_replayed(effects, monkeypatch):
    from chalicelib.entrypoints import runtime

    monkeypatch.setenv("MERCURIO_DELIVERY_HORIZON_SECONDS", "2")  # give up after 2 s of retries
    runtime.reset()
    with Receiver(503) as crm:
        destination(effects, "down-crm", crm.url)
        becomes_vip(effects)
        effects.drain_effects(timeout=60)
        [parked] = deliveries(effects, "down-crm", "?status=parked")
        assert parked["parked_reason"].startswith("gave up after") and "HTTP 503" in parked["parked_reason"]
        assert deliveries(effects, "down-crm", "?status=delivered") == []
        crm.statuses = [200]  # the receiver is back
        response = effects.http.post(f"/v1/admin/destinations/down-crm/deliveries/{parked['delivery_id']}/replay",
                                     headers=ADMIN, body="")
        assert response.status_code == 200, response.body
        assert json.loads(response.body)["status"] == "pending"
        effects.drain_effects(timeout=60)
    [logged] = deliveries(effects, "down-crm")
    assert logged["status"] == "delivered" and logged["replays"] == 1
    again = effects.http.post(f"/v1/admin/destinations/down-crm/deliveries/{parked['delivery_id']}/replay",
                              headers=ADMIN, body="")
    assert again.status_code == 400 and b"only a parked delivery" in again.body


def test_the_webhook_score_is_the_score_the_api_shows(effects):
    """Without scoring points the API says 0.0; the payload said null."""
    with Receiver(204) as crm:
        destination(effects, "score-crm", crm.url)
        user = becomes_vip(effects)
        effects.drain_effects(timeout=30)
    status, person = effects.admin(f"/v1/admin/contacts?identifier=user:{user}")
    [payload] = crm.verified(SECRET)
    assert person["score"] == 0.0 and payload["contact"]["score"] == 0.0


def test_the_delivery_routes_answer_4xx_to_what_clients_can_send(effects):
    for path in ("/v1/admin/destinations/x/deliveries?status=lost", "/v1/admin/destinations/x/deliveries?limit=0",
                 "/v1/admin/destinations/x/deliveries?cursor=garbage"):
        status, body = effects.admin(path)
        assert status == 400 and body["error"], path
    assert effects.admin("/v1/admin/destinations/x/deliveries", token="wrong")[0] == 401
    assert effects.http.post("/v1/admin/destinations/x/deliveries/nope/replay", headers=ADMIN, body="").status_code == 404
    for body in ("not json", json.dumps({"secret": "short"}), json.dumps([1])):
        response = effects.http.put("/v1/admin/destinations/x/secret", body=body, headers=ADMIN)
        assert response.status_code in (400, 404), body
    assert effects.http.put("/v1/admin/destinations/nope/secret", headers=ADMIN,
                            body=json.dumps({"secret": "long-enough-secret-01"})).status_code == 404


def test_a_private_destination_url_is_refused_when_saved_unless_allowed(app_client):
    document = {"id": "meta", "url": "http://169.254.169.254/latest/meta-data/", "segments": ["vip"],
                "secret_parameter": "/mercurio/test/destinations/meta"}
    response = app_client.http.put("/v1/admin/definitions/destination/meta", body=json.dumps(document), headers=ADMIN)
    assert response.status_code == 400
    assert "169.254.169.254" in json.loads(response.body)["error"]
    # The secret route never writes a parameter for a destination that does not exist.
    response = app_client.http.put("/v1/admin/destinations/meta/secret", headers=ADMIN,
                                   body=json.dumps({"secret": "long-enough-secret-01"}))
    assert response.status_code == 404
    names = [p["Name"] for p in boto3.client("ssm").describe_parameters().get("Parameters", [])]
    assert "/mercurio/test/destinations/meta" not in names
