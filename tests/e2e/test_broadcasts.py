"""A broadcast through the whole app in-process (chalice.test.Client on moto): PUT of the
definition, launch through the admin API (a job that snapshots the segment and fans it out on
the fan-out queue), the fan-out consumer requesting each member's message, the messages
consumer sending through SES. Every fan-out batch delivered twice and the launch asked again
send nothing twice; the broadcast's and the campaign's stats show the funnel (a broadcast
without a campaign reports under its own id)."""
from __future__ import annotations

import json

import pytest

from tests.e2e.test_messaging import ADMIN, ROOT, messaging, ses_raw_messages, sign_up  # noqa: F401

BROADCAST = """
name: December coffee promotion
segment: coffee-lovers
channel: email
template: welcome
send_at: 2020-12-10T09:00:00Z
"""


@pytest.fixture
def broadcasting(messaging):  # noqa: F811
    from local.queue_bridge import QueueBridge

    fanned: list[dict] = []

    def fan_out(event):
        fanned.append(event)
        return messaging.client.lambda_.invoke("broadcast_fanout", event).payload

    messaging.fanout = QueueBridge(messaging.app_env_queues["FanOutQueue"], fan_out)
    messaging.fanned = fanned
    return messaging


@pytest.fixture(autouse=True)
def _queues_on_client(app_client, app_env):
    app_client.app_env_queues = app_env


def test_a_launched_broadcast_reaches_every_member_once_and_reports_its_funnel(broadcasting):
    from chalicelib.domain.definition_errors import load_yaml
    from chalicelib.entrypoints import runtime

    client = broadcasting
    addresses = [f"member{i}@example.com" for i in range(3)]
    for address in addresses:
        sign_up(client, address)
    client.messages.drain(timeout=30)
    welcomes = len(ses_raw_messages())
    segment = load_yaml((ROOT / "chalicelib/definitions/segments/coffee-lovers.yaml").read_text())
    assert client.http.put("/v1/admin/segments/coffee-lovers", body=json.dumps(segment),
                           headers=ADMIN).status_code == 200
    wired = runtime.services()
    members = []
    for address in addresses:
        status, contact = client.admin(f"/v1/admin/contacts?identifier=email:{address}")
        assert status == 200, contact
        wired.membership_store.enter("coffee-lovers", contact["id"], "2020-12-01T00:00:00Z")
        members.append(contact["id"])

    assert client.http.post("/v1/admin/broadcasts/december/launch", headers=ADMIN).status_code == 404
    response = client.http.put("/v1/admin/broadcasts/december", body=BROADCAST,
                               headers={**ADMIN, "Content-Type": "application/yaml"})
    assert response.status_code == 200, response.body
    response = client.http.post("/v1/admin/broadcasts/december/launch", headers=ADMIN)
    assert response.status_code == 202, response.body
    launched = json.loads(response.body)
    assert launched["job"]["kind"] == "broadcast-launch" and launched["state"]["members"] == 3
    again = client.http.post("/v1/admin/broadcasts/december/launch", headers=ADMIN)
    assert again.status_code == 409 and "launches once" in json.loads(again.body)["error"]

    assert client.fanout.drain(timeout=30) >= 1
    for event in list(client.fanned):  # every fan-out batch delivered a second time
        client.client.lambda_.invoke("broadcast_fanout", event)
    client.messages.drain(timeout=30)
    client.messages.drain(timeout=30)

    broadcast_mail = ses_raw_messages()[welcomes:]
    import email
    import email.policy

    recipients = sorted(email.message_from_string(m.raw_data, policy=email.policy.default)["To"]
                        for m in broadcast_mail)
    assert recipients == sorted(addresses)
    for contact_id in members:
        status, page = client.admin(f"/v1/admin/contacts/{contact_id}/messages")
        mine = [m for m in page["messages"] if m.get("campaign") == "december"]
        assert len(mine) == 1 and mine[0]["status"] == "sent", page

    status, stats = client.admin("/v1/admin/broadcasts/december/stats")
    assert status == 200, stats
    assert stats["status"] == "launched" and stats["funnel"]["totals"]["requested"] == 3
    assert stats["funnel"]["totals"]["sent"] == 3
    status, campaign = client.admin("/v1/admin/campaigns/december/stats")
    assert status == 200 and campaign["funnel"]["totals"]["sent"] == 3
    assert campaign["broadcasts"][0]["broadcast"] == "december"
    assert client.admin("/v1/admin/campaigns/nothing-here/stats")[0] == 404
    assert client.admin("/v1/admin/campaigns/december/stats", token="wrong")[0] == 401
