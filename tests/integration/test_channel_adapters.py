"""The channel adapters against moto (SES v2, SNS) and botocore's Stubber (End User
Messaging SMS, which moto lacks)."""
from __future__ import annotations

import email
import json
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from chalicelib.adapters.ses_email import SesEmailSender
from chalicelib.adapters.sms_senders import EndUserMessagingSmsSender, SnsSmsSender
from chalicelib.adapters.sns_push import SnsPushSender, UnknownPlatform

REGION = "us-east-1"


@pytest.fixture
def aws():
    with mock_aws():
        yield


def _mime(sender: str, to: str) -> bytes:
    message = MIMEMultipart("alternative")
    message["From"], message["To"], message["Subject"] = sender, to, "Welcome, Ada"
    message["List-Unsubscribe"] = "<https://mercurio.example/u/abc>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.attach(MIMEText("Hello Ada", "plain", "utf-8"))
    message.attach(MIMEText("<p>Hello <b>Ada</b></p>", "html", "utf-8"))
    return message.as_bytes()


def _sent_raw_messages():
    from moto.ses.models import ses_backends

    return ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages


def test_ses_sends_the_mime_message_exactly_as_built(aws):
    boto3.client("sesv2", region_name=REGION).create_email_identity(EmailIdentity="news@shop.example")
    sender = SesEmailSender(configuration_set="mercurio-test")
    raw = _mime("Shop <news@shop.example>", "ada@example.com")
    result = sender.send_raw(raw, "news@shop.example", "ada@example.com",
                             tags={"campaign": "spring sale!", "message_id": "m-1"})
    assert result.accepted and result.provider_id
    stored = [m for m in _sent_raw_messages() if getattr(m, "raw_data", None)]
    # moto adds the To header's addresses to the destinations a second time; SES delivers once.
    assert len(stored) == 1 and set(stored[0].destinations) == {"ada@example.com"}
    parsed = email.message_from_string(stored[0].raw_data)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [p.get_content_type() for p in parsed.walk() if not p.is_multipart()] == ["text/plain", "text/html"]


def test_ses_refusal_is_a_rejected_outcome_with_the_reason(aws):
    result = SesEmailSender().send_raw(_mime("x@unverified.example", "ada@example.com"), "x@unverified.example",
                                       "ada@example.com")
    assert result.status == "rejected" and result.code == "MessageRejected"
    assert "unverified.example" in result.reason


def test_ses_throttling_is_retried_not_rejected():
    client = boto3.client("sesv2", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("send_email", service_error_code="TooManyRequestsException",
                              service_message="Maximum sending rate exceeded.", http_status_code=429)
        result = SesEmailSender(client=client).send_raw(b"From: a@b.c\r\n\r\nx", "a@b.c", "d@e.f")
    assert result.status == "retry" and "Maximum sending rate" in result.reason


def test_ses_quota_from_get_account_or_the_v1_quota(aws):
    client = boto3.client("sesv2", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_response("get_account", {"SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0,
                                                        "SentLast24Hours": 12.0}})
        quota = SesEmailSender(client=client).quota()
    assert (quota.max_per_second, quota.max_24_hours, quota.sent_24_hours) == (14.0, 50000.0, 12.0)
    # moto has no GetAccount: the same account quota comes from SES v1.
    fallback = SesEmailSender().quota()
    assert fallback is not None and fallback.max_per_second > 0


def test_sns_sms_publishes_with_the_message_type(aws):
    result = SnsSmsSender(sender_id="SHOP").send("+393471234567", "Your cart misses you", False, "m-2")
    assert result.accepted
    from moto.sns.models import sns_backends

    sms = sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages
    assert [(number, text) for number, text in sms.values()] == [("+393471234567", "Your cart misses you")]


def test_sns_sms_to_an_opted_out_number_is_rejected_before_publishing(aws):
    # moto treats numbers ending in 99 as opted out at the carrier.
    result = SnsSmsSender().send("+393471234599", "Hello", True, "m-3")
    assert result.status == "rejected" and "opted out" in result.reason
    from moto.sns.models import sns_backends

    assert sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages == {}


def test_end_user_messaging_sms_sends_and_reports_opt_outs():
    client = boto3.client("pinpoint-sms-voice-v2", region_name=REGION)
    sender = EndUserMessagingSmsSender("+12065550100", configuration_set="mercurio", client=client)
    with Stubber(client) as stub:
        stub.add_response("send_text_message", {"MessageId": "eum-1"}, {
            "DestinationPhoneNumber": "+393471234567", "OriginationIdentity": "+12065550100",
            "MessageBody": "Hi", "MessageType": "PROMOTIONAL", "ConfigurationSetName": "mercurio",
            "Context": {"mercurio_message_id": "m-4"}})
        stub.add_client_error("send_text_message", service_error_code="ConflictException",
                              service_message="Conflict", http_status_code=400,
                              response_meta={}, modeled_fields={"Reason": "DESTINATION_PHONE_NUMBER_OPTED_OUT",
                                                                "ResourceType": "opt-out-list", "ResourceId": "x"})
        stub.add_client_error("send_text_message", service_error_code="ThrottlingException",
                              service_message="Rate exceeded", http_status_code=429)
        sent = sender.send("+393471234567", "Hi", False, "m-4")
        opted_out = sender.send("+393471234567", "Hi", False, "m-5")
        throttled = sender.send("+393471234567", "Hi", True, "m-6")
    assert sent.accepted and sent.provider_id == "eum-1"
    assert opted_out.status == "rejected" and "DESTINATION_PHONE_NUMBER_OPTED_OUT" in opted_out.reason
    assert throttled.status == "retry"


def test_push_registers_once_sends_and_removes_a_disabled_endpoint(aws):
    sns = boto3.client("sns", region_name=REGION)
    app = sns.create_platform_application(Name="shop-ios", Platform="APNS",
                                          Attributes={"PlatformCredential": "k", "PlatformPrincipal": "c"})
    sender = SnsPushSender({"apns": app["PlatformApplicationArn"]})
    endpoint = sender.register("apns", "device-token-1", "contact-1")
    assert sender.register("apns", "device-token-1", "contact-1") == endpoint
    result = sender.send(endpoint, "Back in stock", "Your tea is back", {"url": "/tea"}, "m-7")
    assert result.accepted
    from moto.sns.models import sns_backends

    stored = sns_backends[DEFAULT_ACCOUNT_ID][REGION].platform_endpoints[endpoint].messages
    payload = json.loads(json.loads(next(iter(stored.values())))["APNS"])
    assert payload["aps"]["alert"] == {"title": "Back in stock", "body": "Your tea is back"}
    assert payload["mercurio_message_id"] == "m-7"

    sns.set_endpoint_attributes(EndpointArn=endpoint, Attributes={"Enabled": "false"})
    disabled = sender.send(endpoint, "Hello", "again", None, "m-8")
    assert disabled.status == "rejected" and "disabled" in disabled.reason
    assert endpoint not in sns_backends[DEFAULT_ACCOUNT_ID][REGION].platform_endpoints


def test_push_re_registering_a_disabled_token_re_enables_its_endpoint(aws):
    sns = boto3.client("sns", region_name=REGION)
    app = sns.create_platform_application(Name="shop-android", Platform="GCM",
                                          Attributes={"PlatformCredential": "k"})
    sender = SnsPushSender({"fcm": app["PlatformApplicationArn"]})
    endpoint = sender.register("fcm", "token-2", "contact-2")
    sns.set_endpoint_attributes(EndpointArn=endpoint, Attributes={"Enabled": "false"})
    assert sender.register("fcm", "token-2", "contact-3") == endpoint
    attributes = sns.get_endpoint_attributes(EndpointArn=endpoint)["Attributes"]
    assert attributes["Enabled"] == "true" and attributes["CustomUserData"] == "contact-3"
    with pytest.raises(UnknownPlatform, match="configured: fcm"):
        sender.register("apns", "token-3", "contact-2")
