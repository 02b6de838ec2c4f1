"""Audience exports as CSV files in S3, and time-limited links to download them.

Rows are written to a spooled temporary file (memory up to `SPOOL_BYTES`, then disk) and
uploaded with `upload_fileobj`, which switches to a multipart upload for large files, so an
export never holds the whole audience in memory. Objects are encrypted at rest (AES256).
The data bucket expires `exports/…` after 7 days; use `exports/` as the key prefix there.

An export too large for one request is written in parts (`write_part`: data rows only, under
`<prefix>/.parts/<export id>/000001.csv`, numbered from 1), one per slice of its job, then
composed (`export_parts`): the header, then each part's bytes read back in order
(`read_part`), go through the same spool and upload as a one-go export. Parts are not deleted: the bucket's
lifecycle expires them with the rest of `exports/`.
"""
from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from chalicelib.services.privacy_ports import ExportErasure
from typing import Callable

SPOOL_BYTES = 8 * 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024
MAX_URL_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExportResult:
    key: str
    rows: int  # data rows, the header excluded
    bytes: int


@dataclass(frozen=True)
class ExportPart:
    """One part of an export written in parts: its data rows only, no header."""

    key: str
    rows: int
    bytes: int


def _safe_name(name: str) -> str:
    safe = _UNSAFE.sub("-", name).strip("-.")
    if not safe:
        raise ValueError(f"{name!r} cannot name an export file")
    return safe


def export_key(key_prefix: str, name: str) -> str:
    """`exports/2026-11`, `Coffee lovers` → `exports/2026-11/Coffee-lovers.csv`."""
    safe = _safe_name(name)
    prefix = key_prefix.strip("/")
    return f"{prefix}/{safe}.csv" if prefix else f"{safe}.csv"


def part_key(key_prefix: str, export_id: str, number: int) -> str:
    """`exports/vip`, `job-1`, 1 → `exports/vip/.parts/job-1/000001.csv`."""
    if not 1 <= number <= 999_999:
        raise ValueError(f"part number {number} is not between 1 and 999999")
    return export_key(f"{key_prefix.strip('/')}/.parts/{_safe_name(export_id)}", f"{number:06d}")


def _write_csv(target: io.RawIOBase, rows: Iterable[list]) -> int:
    """Write the rows as UTF-8 CSV into `target` (left open); return how many were written."""
    text = io.TextIOWrapper(io.BufferedWriter(target), encoding="utf-8", newline="")
    writer = csv.writer(text)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    text.flush()
    text.detach().detach()  # keep the target open; the wrappers are done
    return count


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


class S3AudienceExporter(ExportErasure):
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
        written: list[int] = []
        size = self._upload(key, lambda target: written.append(_write_csv(target, rows)))
        return ExportResult(key=key, rows=max(written[0] - 1, 0), bytes=size)

    def write_part(self, key_prefix: str, export_id: str, number: int, rows: Iterable[list]) -> ExportPart:
        """Write data rows (no header) as part `number` of the export `export_id`; writing the
        same part again replaces it, so a slice that is run twice leaves one copy."""
        key = part_key(key_prefix, export_id, number)
        written: list[int] = []
        size = self._upload(key, lambda target: written.append(_write_csv(target, rows)))
        return ExportPart(key=key, rows=written[0], bytes=size)

    def read_part(self, key: str) -> Iterator[bytes]:
        """The bytes of a part, in chunks (never the whole part in memory)."""
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK_BYTES)
        finally:
            body.close()

    def export_parts(self, key_prefix: str, name: str, header: list, export_id: str, parts: int,
                     rows: int) -> ExportResult:
        """Compose `<key_prefix>/<name>.csv` from the header and parts 1 to `parts` of the
        export `export_id`, in order; `rows` is how many data rows the parts hold (as
        `write_part` counted them)."""
        key = export_key(key_prefix, name)

        def fill(target: io.RawIOBase) -> None:
            _write_csv(target, [header])
            for number in range(1, parts + 1):
                for chunk in self.read_part(part_key(key_prefix, export_id, number)):
                    target.write(chunk)

        size = self._upload(key, fill)
        return ExportResult(key=key, rows=rows, bytes=size)

    def _upload(self, key: str, fill: Callable[[io.RawIOBase], None]) -> int:
        """Spool what `fill` writes, upload it encrypted as a CSV download; return its size."""
        filename = key.rsplit("/", 1)[-1]
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b") as spool:
            counter = _CountingWriter(spool)
            fill(counter)
            spool.seek(0)
            self.client.upload_fileobj(
                spool, self.bucket, key,
                ExtraArgs={
                    "ServerSideEncryption": "AES256",
                    "ContentType": "text/csv; charset=utf-8",
                    "ContentDisposition": f'attachment; filename="{filename}"',
                },
            )
        return counter.count

    def signed_url(self, key: str, expires_seconds: int = 3600) -> str:
        """A presigned GET for the export, valid `expires_seconds` (at most 7 days)."""
        if not 1 <= expires_seconds <= MAX_URL_SECONDS:
            raise ValueError(f"expires_seconds must be between 1 and {MAX_URL_SECONDS}")
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(expires_seconds),
        )

    # -- erasure (services/privacy.py) -------------------------------------------------------

    def exports_of(self, segment_id: str) -> list[str]:
        prefix = f"exports/{segment_id}/"  # where AudienceExports writes a segment's files and parts
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def delete(self, keys: list[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), 1000):  # DeleteObjects' limit
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": key} for key in keys[start:start + 1000]], "Quiet": True})
            failed = answer.get("Errors") or []
            if failed:
                raise RuntimeError(f"{len(failed)} export file(s) not deleted: {failed[0].get('Message')}")
            deleted += len(keys[start:start + 1000])
        return deleted
