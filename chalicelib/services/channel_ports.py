"""Ports of the channels a message leaves by: email, SMS and mobile push.

A send's outcome is a value, not an exception: `accepted` (the provider took it, with its
id), `retry` (try again later: throttling, a paused account, a provider error) or
`rejected` (it will never go as it is: a refused address, an opted-out number, a disabled
device; the reason says why). The sending service records every outcome on the message.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

ACCEPTED, RETRY, REJECTED = "accepted", "retry", "rejected"


@dataclass(frozen=True)
class ChannelResult:
    status: str
    provider_id: str | None = None
    reason: str = ""
    code: str = ""  # the provider's error code, when there is one
    retry_after: float | None = None

    @property
    def accepted(self) -> bool:
        return self.status == ACCEPTED


@dataclass(frozen=True)
class SendQuota:
    """What the provider allows: messages per second and per rolling 24 hours."""

    max_per_second: float
    max_24_hours: float
    sent_24_hours: float


class EmailSender(abc.ABC):
    @abc.abstractmethod
    def send_raw(self, raw: bytes, from_address: str, to_address: str, tags: dict[str, str] | None = None,
                 ) -> ChannelResult:
        """Send one MIME message exactly as built (headers, parts) to one recipient."""

    @abc.abstractmethod
    def quota(self) -> SendQuota | None:
        """The account's sending quota, or None where the provider does not tell."""


class SmsSender(abc.ABC):
    @abc.abstractmethod
    def send(self, phone: str, text: str, transactional: bool, reference: str) -> ChannelResult:
        """One text message to an E.164 number; `reference` is Mercurio's message id."""


class PushSender(abc.ABC):
    @abc.abstractmethod
    def register(self, platform: str, token: str, contact_id: str) -> str:
        """The endpoint for a device token on a platform (`apns`, `fcm`…): created once."""

    @abc.abstractmethod
    def send(self, endpoint: str, title: str, body: str, data: dict | None, reference: str) -> ChannelResult:
        """One notification to a device endpoint; a disabled endpoint is removed and rejected."""
