"""Email through Amazon SES v2, as raw MIME: what SES sends is exactly the message Mercurio
built (both parts, List-Unsubscribe headers, tracked links), and what the emulator stores is
that same message."""
from __future__ import annotations

import re

import boto3
from botocore.exceptions import ClientError

from chalicelib.services.channel_ports import ACCEPTED, REJECTED, RETRY, ChannelResult, EmailSender, SendQuota

# SES answers these when it is busy or the account is paused: the message is fine, later it goes.
_RETRY = {"TooManyRequestsException", "LimitExceededException", "SendingPausedException",
          "AccountSuspendedException", "Throttling", "ThrottlingException", "ServiceUnavailable",
          "InternalFailure"}
# SES message tags allow only these characters, 256 at most.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _tag(value: str) -> str:
    return _TAG_UNSAFE.sub("_", value)[:256] or "_"


class SesEmailSender(EmailSender):
    def __init__(self, configuration_set: str | None = None, client=None, v1_client=None):
        self.configuration_set = configuration_set
        self._client = client
        self._v1_client = v1_client

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("sesv2")
        return self._client

    @property
    def v1_client(self):
        if self._v1_client is None:
            self._v1_client = boto3.client("ses")
        return self._v1_client

    def send_raw(self, raw: bytes, from_address: str, to_address: str, tags: dict[str, str] | None = None,
                 ) -> ChannelResult:
        params: dict = {"FromEmailAddress": from_address, "Destination": {"ToAddresses": [to_address]},
                        "Content": {"Raw": {"Data": raw}}}
        if self.configuration_set:
            params["ConfigurationSetName"] = self.configuration_set
        if tags:
            params["EmailTags"] = [{"Name": _tag(k), "Value": _tag(str(v))} for k, v in sorted(tags.items())]
        try:
            answer = self.client.send_email(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            status = RETRY if code in _RETRY or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", 400) >= 500 else REJECTED
            return ChannelResult(status, reason=f"SES {code}: {message}".strip(), code=code)
        return ChannelResult(ACCEPTED, provider_id=answer["MessageId"])

    def quota(self) -> SendQuota | None:
        """GetAccount (SES v2); where an endpoint lacks it, GetSendQuota (SES v1), which
        reports the same account quota."""
        try:
            quota = self.client.get_account()["SendQuota"]
        except (ClientError, NotImplementedError):
            try:
                v1 = self.v1_client.get_send_quota()
            except (ClientError, NotImplementedError):
                return None
            return SendQuota(float(v1["MaxSendRate"]), float(v1["Max24HourSend"]), float(v1["SentLast24Hours"]))
        return SendQuota(float(quota["MaxSendRate"]), float(quota["Max24HourSend"]),
                         float(quota["SentLast24Hours"]))
