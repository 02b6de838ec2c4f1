"""The local stack verifies the sending domains and routes their notifications to the
feedback topic, so a send from the shipped templates is accepted by the emulator."""
from __future__ import annotations

from pathlib import Path

import boto3
from moto import mock_aws

from local.ses_identities import prepare_ses, sending_domains

ROOT = Path(__file__).resolve().parents[2]


def test_the_domains_are_those_of_every_template_sender_and_the_default(tmp_path):
    (tmp_path / "a.html.j2").write_text('---\nsubject: Hi\nfrom: "Shop <news@Shop.Example>"\nkind: marketing\n---\n'
                                        "<p>from: not@header.example</p>")
    (tmp_path / "b.sms.j2").write_text("---\nkind: transactional\n---\nHello")
    assert sending_domains(tmp_path, "Mercurio <hello@mercurio.example>") == ["mercurio.example", "shop.example"]
    assert "shop.example" in sending_domains(ROOT / "templates", "x@mercurio.example")


@mock_aws
def test_verified_domains_send_and_their_bounces_reach_the_feedback_topic():
    ses, sns, sqs = (boto3.client(name, region_name="us-east-1") for name in ("ses", "sns", "sqs"))
    topic = sns.create_topic(Name="feedback")["TopicArn"]
    queue = sqs.create_queue(QueueName="feedback")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    prepare_ses(ses, ["shop.example"], topic)
    assert ses.list_identities()["Identities"] == ["shop.example"]
    ses.send_raw_email(Source="news@shop.example", Destinations=["bounce@simulator.amazonses.com"],
                       RawMessage={"Data": b"From: news@shop.example\r\nTo: bounce@simulator.amazonses.com\r\n"
                                           b"Subject: x\r\n\r\nhi"})
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert len(received) == 1 and "bounce" in received[0]["Body"].lower()
