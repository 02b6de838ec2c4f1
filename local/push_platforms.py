"""The local stack's SNS platform applications (one per device type), created in the
emulator at start, so device tokens in events become endpoints as they would on AWS
(where the operator creates them with the APNs and FCM credentials)."""
from __future__ import annotations

import json

import boto3

PLATFORMS = {"ios": ("APNS_SANDBOX", "mercurio-local-ios"), "android": ("GCM", "mercurio-local-android")}


def create_push_platforms(endpoint_url: str | None = None, region: str | None = None) -> dict[str, str]:
    """device type → platform application ARN (creating one again returns the same ARN)."""
    sns = boto3.client("sns", endpoint_url=endpoint_url, region_name=region)
    created = {}
    for device_type, (platform, name) in PLATFORMS.items():
        created[device_type] = sns.create_platform_application(
            Name=name, Platform=platform,
            Attributes={"PlatformCredential": "local-credential", "PlatformPrincipal": "local-principal"},
        )["PlatformApplicationArn"]
    return created


def push_platforms_setting(created: dict[str, str]) -> str:
    return json.dumps(created, sort_keys=True)
