"""A contact's mobile devices for push: what an event says about the device it came from, and
the bounded list of SNS platform endpoints kept on the contact.

Devices arrive as Segment sends them: `context.device.token` with `context.device.type`
(`ios`, `android`). The stream processor only notices a token it has not registered yet
(`Push Token Seen`); a queue consumer creates the endpoint and reports it back as
`Push Endpoint Registered`; a send that finds an endpoint disabled reports
`Push Endpoint Removed`. The contact keeps at most MAX_DEVICES devices, newest first, in two
traits: `push_endpoints` (the ARNs the sender publishes to) and `push_devices` (per endpoint:
platform, a digest of its token, when it was registered). The token itself is not kept on the
contact: its digest is enough to recognise it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

PUSH_TOKEN_SEEN = "Push Token Seen"
PUSH_ENDPOINT_REGISTERED = "Push Endpoint Registered"
PUSH_ENDPOINT_REMOVED = "Push Endpoint Removed"
PLATFORMS = ("ios", "android")
MAX_DEVICES = 5
MAX_TOKEN_CHARS = 4096
ENDPOINTS_TRAIT, DEVICES_TRAIT = "push_endpoints", "push_devices"


@dataclass(frozen=True)
class DeviceToken:
    platform: str
    token: str

    @property
    def digest(self) -> str:
        return token_digest(self.token)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:24]


def device_of(event: dict) -> DeviceToken | None:
    """The push token an event carries, or None (no token, or a platform without push)."""
    context = event.get("context") if isinstance(event, dict) else None
    device = context.get("device") if isinstance(context, dict) else None
    if not isinstance(device, dict):
        return None
    token, platform = device.get("token"), device.get("type")
    if not isinstance(token, str) or not token.strip() or len(token) > MAX_TOKEN_CHARS:
        return None
    platform = platform.strip().lower() if isinstance(platform, str) else ""
    if platform not in PLATFORMS:
        return None
    return DeviceToken(platform, token.strip())


def devices_of(traits: dict) -> list[dict]:
    """The stored devices, newest first; unreadable entries are left out."""
    found = traits.get(DEVICES_TRAIT) if isinstance(traits, dict) else None
    return [d for d in found if isinstance(d, dict) and isinstance(d.get("endpoint"), str)] \
        if isinstance(found, list) else []


def knows_token(traits: dict, token: DeviceToken) -> bool:
    return any(d.get("token") == token.digest and d.get("platform") == token.platform for d in devices_of(traits))


def _store(traits: dict, devices: list[dict]) -> None:
    traits[DEVICES_TRAIT] = devices
    traits[ENDPOINTS_TRAIT] = [d["endpoint"] for d in devices]


def with_endpoint(traits: dict, endpoint: str, platform: str, digest: str, at: str,
                  limit: int = MAX_DEVICES) -> bool:
    """Record a registered endpoint as the newest device (the same endpoint or token again
    moves to the front); the oldest beyond `limit` are dropped. True when something changed."""
    before = devices_of(traits)
    kept = [d for d in before if d["endpoint"] != endpoint and d.get("token") != digest]
    devices = ([{"endpoint": endpoint, "platform": platform, "token": digest, "at": at}] + kept)[:limit]
    if before and before[0].get("endpoint") == endpoint and before[0].get("token") == digest \
            and len(before) == len(devices):
        return False
    _store(traits, devices)
    return True


def without_endpoint(traits: dict, endpoint: str) -> bool:
    before = devices_of(traits)
    legacy = traits.get(ENDPOINTS_TRAIT) if isinstance(traits.get(ENDPOINTS_TRAIT), list) else []
    if endpoint not in [d["endpoint"] for d in before] and endpoint not in legacy:
        return False
    _store(traits, [d for d in before if d["endpoint"] != endpoint])
    return True
