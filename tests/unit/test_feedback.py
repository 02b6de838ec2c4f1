"""SES feedback (services/feedback.py and its queue consumer) with the payloads AWS documents
for configuration-set event publishing ("eventType") and identity notifications
("notificationType"), on the in-memory message ports."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.domain.messaging.consent import GRANTED, ConsentState, suppression_key
from chalicelib.domain.messaging.messages import SENT, Message, StatusChange
from chalicelib.entrypoints.feedback import handle_feedback
from chalicelib.services.catalog import Catalog
from chalicelib.services.effects import EffectsPublisher
from chalicelib.services.feedback import SesFeedback, UnreadableFeedback, parse_record, parse_sqs_body
from chalicelib.services.messagebus import MessageBus
from chalicelib.services.process_events import EventProcessor
from chalicelib.services.segmentation import ProfileRules
from tests.unit.fakes import FakeClock, FakeContactRepository, FakeEventStore, FakeMembershipStore, \
    FakeRecheckSchedule
from tests.unit.messaging_fakes import FakeChannelStats, FakeMessageLog, FakeSuppressionStore

SALT = b"feedback-salt-0123456789"
SES_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
MAIL = {
    "timestamp": "2026-11-22T11:00:02.012Z",
    "source": "Sender Name <sender@example.com>",
    "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
    "sendingAccountId": "123456789012",
    "messageId": SES_ID,
    "destination": ["recipient@example.com"],
    "headersTruncated": False,
    "headers": [{"name": "From", "value": "Sender Name <sender@example.com>"},
                {"name": "To", "value": "recipient@example.com"}],
    "commonHeaders": {"from": ["Sender Name <sender@example.com>"], "to": ["recipient@example.com"],
                      "messageId": SES_ID, "subject": "Message sent from Amazon SES"},
    "tags": {"ses:configuration-set": ["mercurio-test"], "ses:source-ip": ["192.0.2.0"],
             "ses:from-domain": ["example.com"], "ses:caller-identity": ["ses_user"],
             "mercurio_message": ["msg_1"]},
}
# Configuration-set event publishing (SES Developer Guide, "Examples of event data that
# Amazon SES publishes to Amazon SNS").
BOUNCE_EVENT = {"eventType": "Bounce", "mail": MAIL, "bounce": {
    "bounceType": "Permanent", "bounceSubType": "General",
    "bouncedRecipients": [{"emailAddress": "recipient@example.com", "action": "failed", "status": "5.1.1",
                           "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
    "timestamp": "2026-11-22T11:01:02.669Z",
    "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
    "reportingMTA": "dsn; mta.example.com"}}
COMPLAINT_EVENT = {"eventType": "Complaint", "mail": MAIL, "complaint": {
    "complainedRecipients": [{"emailAddress": "recipient@example.com"}],
    "timestamp": "2026-11-22T11:05:00.000Z",
    "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000001",
    "userAgent": "Mozilla/5.0", "complaintFeedbackType": "abuse",
    "arrivalDate": "2026-11-22T11:04:59.000Z"}}
DELIVERY_EVENT = {"eventType": "Delivery", "mail": MAIL, "delivery": {
    "timestamp": "2026-11-22T11:00:03.000Z", "processingTimeMillis": 546,
    "recipients": ["recipient@example.com"], "smtpResponse": "250 ok:  Message 64111812 accepted",
    "reportingMTA": "a8-70.smtp-out.amazonses.com"}}
REJECT_EVENT = {"eventType": "Reject", "mail": MAIL, "reject": {"reason": "Bad content"}}
DELAY_EVENT = {"eventType": "DeliveryDelay", "mail": MAIL, "deliveryDelay": {
    "timestamp": "2026-11-22T11:30:00.000Z", "delayType": "MailboxFull",
    "expirationTime": "2026-11-22T23:00:00.000Z",
    "delayedRecipients": [{"emailAddress": "recipient@example.com", "status": "4.2.2"}]}}
TRANSIENT_EVENT = {"eventType": "Bounce", "mail": MAIL, "bounce": {
    "bounceType": "Transient", "bounceSubType": "MailboxFull",
    "bouncedRecipients": [{"emailAddress": "recipient@example.com", "status": "4.2.2"}],
    "timestamp": "2026-11-22T11:02:00.000Z", "feedbackId": "transient-0001"}}
# Identity notifications (SES Developer Guide, "Amazon SNS notification examples"): no tags.
IDENTITY_MAIL = {k: v for k, v in MAIL.items() if k != "tags"}
IDENTITY_BOUNCE = {"notificationType": "Bounce", "mail": IDENTITY_MAIL, "bounce": {
    "bounceType": "Permanent", "bounceSubType": "General",
    "bouncedRecipients": [{"status": "5.0.0", "action": "failed", "diagnosticCode": "smtp; 550 user unknown",
                           "emailAddress": "recipient@example.com"}],
    "reportingMTA": "example.com", "timestamp": "2026-11-22T11:01:00.605Z",
    "feedbackId": "000001378603176d-5a4b5ad9-6f30-4198-a8c3-b1eb0c270a1d-000000",
    "remoteMtaIp": "127.0.2.0"}}
IDENTITY_DELIVERY = {"notificationType": "Delivery", "mail": IDENTITY_MAIL, "delivery": {
    "timestamp": "2026-11-22T11:00:03.184Z", "processingTimeMillis": 546,
    "recipients": ["recipient@example.com"], "smtpResponse": "250 ok", "reportingMTA": "a8-70.smtp-out.amazonses.com",
    "remoteMtaIp": "127.0.2.0"}}


def sns_envelope(record: dict) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
                       "TopicArn": "arn:aws:sns:us-east-1:123456789012:mercurio-test-ses-feedback",
                       "Message": json.dumps(record), "Timestamp": "2026-11-22T11:01:03.000Z"})


class World:
    def __init__(self, tagged=True):
        self.clock = FakeClock()
        self.messages, self.suppressions = FakeMessageLog(), FakeSuppressionStore()
        self.stats, self.events, self.contacts = FakeChannelStats(), FakeEventStore(), FakeContactRepository()
        self.service = SesFeedback(self.messages, self.suppressions, self.stats, self.events, self.clock, SALT)
        contact = Contact(id="c1", identifiers=["email:recipient@example.com"], created_at="2026-10-01T00:00:00.000Z")
        contact.consent = {"email": {"status": GRANTED, "at": "2026-10-01T00:00:00.000Z", "source": "admin_api"},
                           "email/newsletter": {"status": GRANTED, "at": "2026-10-02T00:00:00.000Z",
                                                "source": "preference_centre"}}
        self.contacts.create(contact)
        sent = datetime(2026, 11, 22, 11, 0, 2, tzinfo=timezone.utc)
        self.messages.create(Message(id="msg_1", contact_id="c1", channel="email", template="promo", lane="marketing",
                                     topic="newsletter", cause="t", requested_at=sent, status=SENT,
                                     address="recipient@example.com", provider_id=SES_ID,
                                     timeline=(StatusChange(SENT, sent),)))
        publisher = EffectsPublisher(FakeMembershipStore(), self.events, FakeRecheckSchedule(), MessageBus({}),
                                     lambda c, now: 0.0)
        self.processor = EventProcessor(self.contacts, self.clock, sleep=lambda s: None,
                                        rules=ProfileRules(lambda: Catalog.of()), publisher=publisher)

    def handle(self, record):
        return self.service.handle(parse_record(copy.deepcopy(record)))

    def process(self) -> Contact:
        for stored in list(self.events.inserted):
            self.processor.process(stored.body)
        return self.contacts.get("c1")


@pytest.fixture
def world():
    return World()


HASH = suppression_key("email", "recipient@example.com", SALT)


def test_a_permanent_bounce_suppresses_the_address_at_once_and_counts_for_the_breaker(world):
    outcome = world.handle(BOUNCE_EVENT)
    assert outcome.status == "applied" and outcome.suppressed == 1
    [entry] = world.suppressions.find("email", HASH)
    assert entry.reason == "bounced_hard" and "550" in entry.detail
    message = world.messages.get("msg_1")
    assert message.status == "bounced" and message.timeline[-1].detail["bounce_type"] == "Permanent"
    assert world.stats.window("email", world.clock.now(), 24).bounced == 1


def test_a_redelivered_record_changes_nothing_twice(world):
    world.handle(BOUNCE_EVENT)
    assert world.handle(BOUNCE_EVENT).status == "duplicate"
    assert world.stats.window("email", world.clock.now(), 24).bounced == 1
    assert [c.status for c in world.messages.get("msg_1").timeline].count("bounced") == 1
    assert len(world.suppressions.entries) == 1


def test_a_transient_bounce_is_only_recorded(world):
    outcome = world.handle(TRANSIENT_EVENT)
    assert outcome.status == "applied" and outcome.suppressed == 0
    assert world.suppressions.entries == {}
    last = world.messages.get("msg_1").timeline[-1]
    assert last.status == "delivery_delayed" and last.detail["bounce_type"] == "Transient"
    assert world.stats.window("email", world.clock.now(), 24).bounced == 0


def test_a_complaint_suppresses_and_withdraws_all_marketing_email_consent(world):
    world.handle(COMPLAINT_EVENT)
    [entry] = world.suppressions.find("email", HASH)
    assert entry.reason == "complained"
    assert world.messages.get("msg_1").status == "complained"
    assert world.stats.window("email", world.clock.now(), 24).complained == 1
    contact = world.process()
    record = contact.consent["email"]
    assert record["status"] == "denied" and record["source"] == "feedback"
    assert "abuse" in record["proof"]["shown"] and record["proof"]["where"] == "message:msg_1"
    state = ConsentState.from_document(contact.consent)
    assert not state.effective("email", "newsletter").granted  # the later channel-wide denial wins


@pytest.mark.parametrize("record,status", [
    (DELIVERY_EVENT, "delivered"), (REJECT_EVENT, "failed"), (DELAY_EVENT, "delivery_delayed"),
    (IDENTITY_DELIVERY, "delivered"),
])
def test_each_outcome_moves_the_timeline(world, record, status):
    assert world.handle(record).status == "applied"
    assert world.messages.get("msg_1").timeline[-1].status == status


def test_an_identity_notification_finds_the_message_by_the_ses_message_id(world):
    assert world.handle(IDENTITY_BOUNCE).message_id == "msg_1"
    assert world.messages.get("msg_1").status == "bounced"


def test_feedback_for_an_unknown_message_still_suppresses_a_hard_bounce(world):
    record = copy.deepcopy(IDENTITY_BOUNCE)
    record["mail"]["messageId"] = "someone-elses"
    outcome = world.handle(record)
    assert outcome.status == "unknown_message" and outcome.suppressed == 1


@pytest.mark.parametrize("kind", ["Send", "Open", "Click", "Subscription"])
def test_send_open_click_and_subscription_are_tolerated_and_ignored(world, kind):
    outcome = world.handle({"eventType": kind, "mail": MAIL, kind.lower(): {}})
    assert outcome.status == "ignored" and world.messages.get("msg_1").status == SENT


@pytest.mark.parametrize("body,words", [
    ("not json", "not JSON"),
    ("[1,2]", "JSON object"),
    (json.dumps({"eventType": "Bounce"}), "mail object"),
    (json.dumps({"eventType": "Bounce", "mail": MAIL}), "bounce object"),
    (json.dumps({"eventType": "Teleport", "mail": MAIL}), "unknown SES event type"),
    (json.dumps({"Type": "SubscriptionConfirmation", "Token": "x"}), "SubscriptionConfirmation"),
    (json.dumps({"Type": "Notification", "Message": "{oops"}), "not JSON"),
])
def test_unreadable_records_are_refused_with_a_reason(body, words):
    with pytest.raises(UnreadableFeedback, match=words):
        parse_sqs_body(body)


def test_both_the_sns_envelope_and_raw_delivery_are_read():
    assert parse_sqs_body(sns_envelope(BOUNCE_EVENT)).kind == "Bounce"
    assert parse_sqs_body(json.dumps(BOUNCE_EVENT)).tags["mercurio_message"] == ["msg_1"]


def sqs_event(*bodies):
    return {"Records": [{"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": body, "attributes": {},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}
                        for i, body in enumerate(bodies)]}


def test_the_consumer_acknowledges_unreadable_records_and_reports_only_transient_failures(world, monkeypatch):
    response = handle_feedback(sqs_event("garbage", sns_envelope(DELIVERY_EVENT)), None, world.service)
    assert response == {"batchItemFailures": []}
    assert world.messages.get("msg_1").status == "delivered"

    def store_down(*args, **kwargs):
        raise ConnectionError("DynamoDB unavailable")

    monkeypatch.setattr(world.suppressions, "add", store_down)
    response = handle_feedback(sqs_event(json.dumps(DELAY_EVENT), json.dumps(BOUNCE_EVENT)), None, world.service)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


@pytest.mark.parametrize("salt", [b"", b"short"])
def test_a_missing_or_short_salt_is_refused_at_once_not_at_the_first_bounce(salt):
    from chalicelib.domain.messaging.consent import ConsentError

    with pytest.raises(ConsentError, match="MERCURIO_SUPPRESSION_SALT"):
        SesFeedback(FakeMessageLog(), FakeSuppressionStore(), FakeChannelStats(), FakeEventStore(), FakeClock(), salt)


@pytest.mark.parametrize("record,event,extra", [
    (BOUNCE_EVENT, "Email Bounced", {"bounce_type": "hard"}),
    (TRANSIENT_EVENT, "Email Bounced", {"bounce_type": "soft"}),
    (COMPLAINT_EVENT, "Email Complained", {}),
])
def test_feedback_becomes_the_email_event_on_the_contact_once(world, record, event, extra):
    world.handle(record)
    world.handle(record)  # redelivered: nothing twice
    found = [e.body for e in world.events.inserted if e.body.get("event") == event]
    assert len(found) == 1
    assert found[0]["contactId"] == "c1"
    assert found[0]["properties"] == {"message_id": "msg_1", "campaign_id": None, "campaign": None,
                                      "template": "promo", "template_id": "promo", "channel": "email", **extra}
    assert world.process().counters[event]["total"] == 1


def test_a_delivery_is_recorded_on_the_message_and_appends_no_event_to_the_contact(world):
    # Nothing reads "Email Delivered" on a contact (segments' message: conditions, the six
    # groups); one per email cost an event write and a contact read and write in the stream.
    assert world.handle(DELIVERY_EVENT).status == "applied"
    assert world.messages.get("msg_1").status == "delivered"
    assert world.events.inserted == []


def test_the_tag_the_sender_sets_is_the_one_feedback_reads(world):
    # The sender tags each email with its message id (services/messaging.py); SES hands the
    # tags back in every event's mail.tags. A record found by its tag needs no lookup by SES's id.
    from chalicelib.services.message_events import MESSAGE_TAG

    looked_up = []
    world.messages.by_provider_id = lambda provider_id: looked_up.append(provider_id)
    record = copy.deepcopy(DELIVERY_EVENT)
    record["mail"]["tags"] = {MESSAGE_TAG: ["msg_1"]}
    assert world.handle(record).status == "applied" and looked_up == []


def test_a_tagged_delivery_is_recorded_once_without_reading_the_message_first(world):
    from chalicelib.services.message_events import MESSAGE_TAG

    record = copy.deepcopy(DELIVERY_EVENT)
    record["mail"]["tags"] = {MESSAGE_TAG: ["msg_1"]}
    world.messages.get = None  # the delivery path must not read the message itself (the log may)
    asked = []
    real = type(world.messages).record_once

    def record_once(mid, change):
        asked.append(mid)
        world.messages.get = type(world.messages).get.__get__(world.messages)
        try:
            return real(world.messages, mid, change)
        finally:
            world.messages.get = None

    world.messages.record_once = record_once
    assert world.handle(record).status == "applied"
    assert world.handle(record).status == "duplicate"  # redelivered by SQS
    assert asked == ["msg_1", "msg_1"]
    del world.messages.get
    delivered = [c for c in world.messages.get("msg_1").timeline if c.status == "delivered"]
    assert len(delivered) == 1 and delivered[0].detail["smtpResponse"].startswith("250")


def test_a_delivery_whose_tag_names_no_message_is_found_by_the_ses_id(world):
    from chalicelib.services.message_events import MESSAGE_TAG

    record = copy.deepcopy(DELIVERY_EVENT)
    record["mail"]["tags"] = {MESSAGE_TAG: ["msg_gone"]}
    assert world.handle(record).status == "applied"
    assert world.messages.get("msg_1").status == "delivered"
