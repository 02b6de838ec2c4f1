"""Audience exports as CSV files in S3, and time-limited links to download them.

Rows are written to a spooled temporary file (memory up to `SPOOL_BYTES`, then disk) and
uploaded with `upload_fileobj`, which switches to a multipart upload for large files, so an
export never holds the whole audience in memory. Objects are encrypted at rest (AES256).
The data bucket expires `exports/…` after 7 days; use `exports/` as the key prefix there.
"""
from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

SPOOL_BYTES = 8 * 1024 * 1024
MAX_URL_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExportResult:
    key: str
    rows: int  # data rows, the header excluded
    bytes: int


def export_key(key_prefix: str, name: str) -> str:
    """`exports/2026-11`, `Coffee lovers` → `exports/2026-11/Coffee-lovers.csv`."""
    safe = _UNSAFE.sub("-", name).strip("-.")
    if not safe:
        raise ValueError(f"{name!r} cannot name an export file")
    prefix = key_prefix.strip("/")
    return f"{prefix}/{safe}.csv" if prefix else f"{safe}.csv"


class _CountingWriter(io.RawIOBase):
    """Counts the bytes written through it into the underlying file."""

    def __init__(self, target):
        self.target = target
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.target.write(data)
        self.count += len(data)
        return len(data)


class S3AudienceExporter:
    def __init__(self, bucket: str, client=None):
        self.bucket = bucket
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            # SigV4 presigned URLs (the legacy query signature is deprecated).
            self._client = boto3.client("s3", config=Config(signature_version="s3v4"))
        return self._client

    def export(self, key_prefix: str, name: str, rows: Iterable[list]) -> ExportResult:
        """Write the rows (header first) as UTF-8 CSV to `<key_prefix>/<name>.csv`."""
        key = export_key(key_prefix, name)
        filename = key.rsplit("/", 1)[-1]
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b") as spool:
            counter = _CountingWriter(spool)
            text = io.TextIOWrapper(io.BufferedWriter(counter), encoding="utf-8", newline="")
            writer = csv.writer(text)
            count = -1
            for row in rows:
                writer.writerow(row)
                count += 1
            text.flush()
            text.detach().detach()  # keep the spool open; the wrappers are done
            spool.seek(0)
            self.client.upload_fileobj(
                spool, self.bucket, key,
                ExtraArgs={
                    "ServerSideEncryption": "AES256",
                    "ContentType": "text/csv; charset=utf-8",
                    "ContentDisposition": f'attachment; filename="{filename}"',
                },
            )
        return ExportResult(key=key, rows=max(count, 0), bytes=counter.count)

    def signed_url(self, key: str, expires_seconds: int = 3600) -> str:
        """A presigned GET for the export, valid `expires_seconds` (at most 7 days)."""
        if not 1 <= expires_seconds <= MAX_URL_SECONDS:
            raise ValueError(f"expires_seconds must be between 1 and {MAX_URL_SECONDS}")
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(expires_seconds),
        )
