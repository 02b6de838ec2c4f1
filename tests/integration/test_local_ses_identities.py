"""The local stack's SES: the sending domains are verified (so the shipped templates' senders
are accepted), and each accepted email's events are published as a configuration set's event
destination would, simulator addresses included."""
from __future__ import annotations

from pathlib import Path

import boto3
from moto import mock_aws

from chalicelib.services.feedback import parse_record
from local.ses_events import events_for
from local.ses_identities import sending_domains, verify_domains

ROOT = Path(__file__).resolve().parents[2]


def test_the_domains_are_those_of_every_template_sender_and_the_default(tmp_path):
    (tmp_path / "a.html.j2").write_text('---\nsubject: Hi\nfrom: "Shop <news@Shop.Example>"\nkind: marketing\n---\n'
                                        "<p>from: not@header.example</p>")
    (tmp_path / "b.sms.j2").write_text("---\nkind: transactional\n---\nHello")
    assert sending_domains(tmp_path, "Mercurio <hello@mercurio.example>") == ["mercurio.example", "shop.example"]
    assert "shop.example" in sending_domains(ROOT / "templates", "x@mercurio.example")


@mock_aws
def test_a_verified_domain_sends():
    ses = boto3.client("ses", region_name="us-east-1")
    verify_domains(ses, ["shop.example"])
    assert ses.list_identities()["Identities"] == ["shop.example"]
    ses.send_raw_email(Source="news@shop.example", Destinations=["someone@example.com"],
                       RawMessage={"Data": b"From: news@shop.example\r\nTo: someone@example.com\r\nSubject: x\r\n\r\nhi"})


AT = "2026-12-02T10:00:00.000Z"


def test_each_accepted_email_becomes_its_documented_events():
    sent = {"id": "ses-1", "source": "hello@shop.example",
            "destinations": ["ada@example.com", "bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com"]}
    records = [parse_record(r) for r in events_for(sent, AT)]
    assert [r.kind for r in records] == ["Delivery", "Bounce", "Complaint"]
    assert all(r.ses_message_id == "ses-1" for r in records)
    delivery, bounce, complaint = (r.body for r in records)
    assert delivery["recipients"] == ["ada@example.com", "complaint@simulator.amazonses.com"]
    assert bounce["bounceType"] == "Permanent"
    assert bounce["bouncedRecipients"][0]["emailAddress"] == "bounce@simulator.amazonses.com"
    assert complaint["complainedRecipients"] == [{"emailAddress": "complaint@simulator.amazonses.com"}]
    assert [r["eventType"] for r in events_for({"id": "ses-2", "source": "a@b.example",
                                               "destinations": ["success@simulator.amazonses.com"]}, AT)] == ["Delivery"]
