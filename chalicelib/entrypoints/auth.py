"""The admin bearer token: from the environment locally, from SSM Parameter Store on AWS."""
from __future__ import annotations

import hmac
import time

from chalicelib import config

_CACHE_SECONDS = 300
_cached: tuple[float, str | None] = (0.0, None)


def _fetch_parameter(name: str) -> str:
    from aws_lambda_powertools.utilities.parameters import get_parameter

    return get_parameter(name, decrypt=True, max_age=_CACHE_SECONDS)


def admin_token() -> str | None:
    global _cached
    settings = config.settings()
    if settings.admin_token:
        return settings.admin_token
    if not settings.admin_token_parameter:
        return None
    fetched_at, token = _cached
    if token is None or time.monotonic() - fetched_at > _CACHE_SECONDS:
        token = _fetch_parameter(settings.admin_token_parameter)
        _cached = (time.monotonic(), token)
    return token


def is_admin(authorization: str | None) -> bool:
    """Only `Authorization: Bearer <token>`; a write key (Basic auth) never passes."""
    if not authorization:
        return False
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    expected = admin_token()
    if not expected:
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())
