"""SES's simulator through moto: a send to bounce@simulator.amazonses.com makes moto publish
an identity notification (the older `notificationType` shape) to the identity's bounce
topic, which the template subscribes the feedback queue to; the queue's messages go through
the ses_feedback consumer.

What moto publishes (moto/ses/feedback.py, 5.2.5): the SES guide's example bounce, whatever
was sent — `notificationType` is the placeholder "Bounce, Complaint, or Delivery.", the mail's
messageId is the example's, and the bounced recipients are recipient1@ (failed) and
recipient2@example.com (delayed)."""
from __future__ import annotations

from datetime import datetime, timezone

import boto3

from chalicelib.domain.messaging.consent import suppression_key
from chalicelib.domain.messaging.messages import SENT, Message, StatusChange
from chalicelib.entrypoints.feedback import handle_feedback
from chalicelib.services.feedback import SesFeedback
from tests.unit.fakes import FakeClock, FakeEventStore
from tests.unit.messaging_fakes import FakeChannelStats, FakeMessageLog, FakeSuppressionStore

SALT = b"integration-salt-0123456789"
MOTO_EXAMPLE_MESSAGE_ID = "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000"


def test_a_simulated_bounce_reaches_the_handler_and_suppresses_the_failed_address(aws_tables):
    ses, sesv2, sqs = boto3.client("ses"), boto3.client("sesv2"), boto3.client("sqs")
    ses.verify_domain_identity(Domain="example.com")
    ses.set_identity_notification_topic(Identity="example.com", NotificationType="Bounce",
                                        SnsTopic=aws_tables["FeedbackTopic"])
    raw = ("From: sender@example.com\r\nTo: bounce@simulator.amazonses.com\r\nSubject: Hello\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello").encode()
    sesv2.send_email(FromEmailAddress="sender@example.com",
                     Destination={"ToAddresses": ["bounce@simulator.amazonses.com"]},
                     Content={"Raw": {"Data": raw}}, EmailTags=[{"Name": "mercurio_message", "Value": "msg_1"}])

    received = sqs.receive_message(QueueUrl=aws_tables["FeedbackQueue"], MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 1
    event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                          "attributes": {}, "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                          "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                          "awsRegion": "us-east-1"} for m in received]}

    log, suppressions, stats = FakeMessageLog(), FakeSuppressionStore(), FakeChannelStats()
    sent = datetime(2026, 11, 22, 11, 0, tzinfo=timezone.utc)
    log.create(Message(id="msg_1", contact_id="c1", channel="email", template="t", lane="marketing", topic=None,
                       cause="x", requested_at=sent, status=SENT, provider_id=MOTO_EXAMPLE_MESSAGE_ID,
                       timeline=(StatusChange(SENT, sent),)))
    service = SesFeedback(log, suppressions, stats, FakeEventStore(), FakeClock(), SALT)
    assert handle_feedback(event, None, service) == {"batchItemFailures": []}

    assert [e.reason for e in suppressions.find("email", suppression_key("email", "recipient1@example.com", SALT))] \
        == ["bounced_hard"]
    assert suppressions.find("email", suppression_key("email", "recipient2@example.com", SALT)) == ()
    assert log.get("msg_1").status == "bounced"
    assert stats.window("email", datetime(2012, 5, 25, 14, tzinfo=timezone.utc), 1).bounced == 1
