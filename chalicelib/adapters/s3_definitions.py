"""Definition documents uploaded by marketers to the data bucket under definitions/."""
from __future__ import annotations

import boto3

PREFIX = "definitions/"


class S3DefinitionUploads:
    def __init__(self, bucket: str, client=None):
        self.bucket = bucket
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("s3")
        return self._client

    def listing(self) -> dict[str, str]:
        """key -> ETag of every document under definitions/."""
        found: dict[str, str] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=PREFIX):
            for item in page.get("Contents", []):
                if item["Key"].endswith((".yaml", ".yml", ".json")):
                    found[item["Key"]] = item["ETag"].strip('"')
        return found

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
