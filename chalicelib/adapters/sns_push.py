"""Mobile push through SNS platform endpoints (APNs, FCM): one endpoint per device token,
created once; an endpoint the platform disabled (the app was uninstalled, the token
expired) is removed when a send finds it so."""
from __future__ import annotations

import json
import re

import boto3
from botocore.exceptions import ClientError

from chalicelib.services.channel_ports import ACCEPTED, REJECTED, RETRY, ChannelResult, PushSender

_EXISTING = re.compile(r"Endpoint (arn:aws:sns:[^ ]+) already exists")
_RETRY = {"Throttling", "ThrottledException", "InternalError", "InternalErrorException", "KMSThrottlingException"}


class UnknownPlatform(ValueError):
    pass


class SnsPushSender(PushSender):
    def __init__(self, platform_applications: dict[str, str], client=None):
        self.platform_applications = platform_applications  # device type ("ios", "android") -> platform application ARN
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("sns")
        return self._client

    def register(self, platform: str, token: str, contact_id: str) -> str:
        """CreatePlatformEndpoint is idempotent for the same token and attributes; when the
        token's endpoint exists with other attributes (disabled, another contact), SNS names
        it in the error: that endpoint is re-enabled and given this contact (AWS's documented
        pattern for device token management)."""
        application = self.platform_applications.get(platform)
        if application is None:
            raise UnknownPlatform(f"no platform application for {platform!r} "
                                  f"(configured: {', '.join(sorted(self.platform_applications)) or 'none'})")
        try:
            return self.client.create_platform_endpoint(PlatformApplicationArn=application, Token=token,
                                                        CustomUserData=contact_id)["EndpointArn"]
        except ClientError as exc:
            found = _EXISTING.search(exc.response.get("Error", {}).get("Message", ""))
            if found is None:
                raise
        endpoint = found.group(1)
        self.client.set_endpoint_attributes(EndpointArn=endpoint, Attributes={
            "Token": token, "Enabled": "true", "CustomUserData": contact_id})
        return endpoint

    def send(self, endpoint: str, title: str, body: str, data: dict | None, reference: str) -> ChannelResult:
        extra = dict(data or {})
        extra["mercurio_message_id"] = reference
        message = {
            "default": body,
            "APNS": json.dumps({"aps": {"alert": {"title": title, "body": body}}, **extra}),
            "APNS_SANDBOX": json.dumps({"aps": {"alert": {"title": title, "body": body}}, **extra}),
            "GCM": json.dumps({"notification": {"title": title, "body": body},
                               "data": {k: str(v) for k, v in extra.items()}}),
        }
        try:
            answer = self.client.publish(TargetArn=endpoint, MessageStructure="json", Message=json.dumps(message))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code in ("EndpointDisabled", "EndpointDisabledException"):
                self.client.delete_endpoint(EndpointArn=endpoint)
                return ChannelResult(REJECTED, reason="the device's endpoint is disabled (token no longer valid); "
                                                      "it was removed", code=code)
            status = RETRY if code in _RETRY or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", 400) >= 500 else REJECTED
            return ChannelResult(status, reason=f"SNS {code}: {error.get('Message', '')}".strip(), code=code)
        return ChannelResult(ACCEPTED, provider_id=answer["MessageId"])
