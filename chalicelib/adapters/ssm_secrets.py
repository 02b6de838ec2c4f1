"""Signing secrets in SSM Parameter Store (SecureString), read with a short cache.

A missing parameter is not cached: a secret created after a failed attempt is found by the
next one. A value found is cached for `max_age` seconds per container (a rotated secret
takes at most that long to be used), except in the container that stored it.
"""
from __future__ import annotations

import time

import boto3
from botocore.exceptions import ClientError

from chalicelib.services.effect_ports import SecretMissing, SecretStore


class SsmSecretStore(SecretStore):
    def __init__(self, client=None, max_age: float = 300.0, monotonic=time.monotonic):
        self._client = client
        self.max_age = max_age
        self.monotonic = monotonic
        self._cache: dict[str, tuple[float, str]] = {}

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("ssm")
        return self._client

    def get(self, name: str) -> str:
        cached = self._cache.get(name)
        if cached is not None and self.monotonic() - cached[0] < self.max_age:
            return cached[1]
        try:
            value = self.client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ParameterNotFound":
                self._cache.pop(name, None)
                raise SecretMissing(f"the signing secret {name} is not set") from None
            raise
        self._cache[name] = (self.monotonic(), value)
        return value

    def put(self, name: str, value: str) -> None:
        self.client.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True,
                                  Description="Mercurio destination signing secret")
        self._cache.pop(name, None)
