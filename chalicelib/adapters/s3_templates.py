"""Templates in the data bucket, under templates/ (the TemplateStore port on S3).

The version of a file is its S3 version id when the bucket keeps versions, else its ETag:
either changes with every upload, which is all the compiled-template cache needs.
"""
from __future__ import annotations

import boto3
from botocore.exceptions import ClientError

from chalicelib.services.template_store import StoredTemplate, TemplateStore

PREFIX = "templates/"
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3TemplateStore(TemplateStore):
    def __init__(self, bucket: str, client=None, prefix: str = PREFIX):
        self.bucket, self.prefix = bucket, prefix
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("s3")
        return self._client

    def _key(self, filename: str) -> str:
        if not isinstance(filename, str) or not filename or "/" in filename or filename.startswith("."):
            raise ValueError(f"{filename!r} is not a template file name")
        return self.prefix + filename

    @staticmethod
    def _version(response: dict) -> str:
        version = response.get("VersionId")
        return version if version and version != "null" else response["ETag"].strip('"')

    def get(self, filename: str) -> StoredTemplate | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(filename))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        source = response["Body"].read().decode("utf-8", errors="replace")
        return StoredTemplate(source, self._version(response))

    def list(self) -> list[str]:
        names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(self.prefix):]
                if name.endswith(".j2") and "/" not in name:
                    names.append(name)
        return sorted(names)

    def versions(self) -> dict[str, str]:
        """From one listing: the ETag of each file (changes with every upload of it)."""
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(self.prefix):]
                if name.endswith(".j2") and "/" not in name:
                    found[name] = item["ETag"].strip('"')
        return found

    def put(self, filename: str, source: str) -> str:
        response = self.client.put_object(Bucket=self.bucket, Key=self._key(filename), Body=source.encode("utf-8"),
                                          ContentType="text/plain; charset=utf-8")
        return self._version(response)
