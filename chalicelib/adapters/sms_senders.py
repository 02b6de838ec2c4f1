"""Text messages: through Amazon SNS (the default), or through AWS End User Messaging SMS
(`pinpoint-sms-voice-v2`: dedicated origination numbers, sender ids, configuration sets).
Amazon Pinpoint's own messaging APIs reached end of support on 2026-10-30 and are not used."""
from __future__ import annotations

import boto3
from botocore.exceptions import ClientError

from chalicelib.services.channel_ports import ACCEPTED, REJECTED, RETRY, ChannelResult, SmsSender

_RETRY = {"Throttling", "ThrottlingException", "ThrottledException", "InternalError", "InternalErrorException",
          "InternalServerException", "ServiceQuotaExceededException", "KMSThrottlingException"}


def _outcome(exc: ClientError, provider: str) -> ChannelResult:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    reason = exc.response.get("Reason") or error.get("Reason") or ""
    status = RETRY if code in _RETRY or exc.response.get("ResponseMetadata", {}).get(
        "HTTPStatusCode", 400) >= 500 else REJECTED
    text = f"{provider} {code}: {error.get('Message', '')}".strip()
    if reason:
        text += f" ({reason})"
    return ChannelResult(status, reason=text, code=code)


class SnsSmsSender(SmsSender):
    """SMS through SNS. A number that opted out at the carrier (replied STOP) is rejected
    before publishing: SNS would accept the message and never deliver it."""

    def __init__(self, sender_id: str | None = None, client=None):
        self.sender_id = sender_id
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("sns")
        return self._client

    def send(self, phone: str, text: str, transactional: bool, reference: str) -> ChannelResult:
        try:
            if self.client.check_if_phone_number_is_opted_out(phoneNumber=phone).get("isOptedOut"):
                return ChannelResult(REJECTED, reason="the number opted out of text messages at the carrier (STOP)",
                                     code="OptedOut")
            attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String",
                                                  "StringValue": "Transactional" if transactional else "Promotional"}}
            if self.sender_id:
                attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": self.sender_id}
            answer = self.client.publish(PhoneNumber=phone, Message=text, MessageAttributes=attributes)
        except ClientError as exc:
            return _outcome(exc, "SNS")
        return ChannelResult(ACCEPTED, provider_id=answer["MessageId"])


class EndUserMessagingSmsSender(SmsSender):
    """SMS through AWS End User Messaging SMS (`pinpoint-sms-voice-v2` SendTextMessage)."""

    def __init__(self, origination_identity: str, configuration_set: str | None = None,
                 max_price: str | None = None, client=None):
        self.origination_identity = origination_identity
        self.configuration_set = configuration_set
        self.max_price = max_price
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("pinpoint-sms-voice-v2")
        return self._client

    def send(self, phone: str, text: str, transactional: bool, reference: str) -> ChannelResult:
        params = {"DestinationPhoneNumber": phone, "OriginationIdentity": self.origination_identity,
                  "MessageBody": text, "MessageType": "TRANSACTIONAL" if transactional else "PROMOTIONAL",
                  "Context": {"mercurio_message_id": reference}}
        if self.configuration_set:
            params["ConfigurationSetName"] = self.configuration_set
        if self.max_price:
            params["MaxPrice"] = self.max_price
        try:
            answer = self.client.send_text_message(**params)
        except ClientError as exc:
            return _outcome(exc, "End User Messaging")
        return ChannelResult(ACCEPTED, provider_id=answer["MessageId"])
