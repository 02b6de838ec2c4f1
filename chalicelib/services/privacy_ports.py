"""Ports of erasure: the deletes that the everyday ports do not offer (events are append-only,
contacts and identities are only ever claimed, saved and merged). Named by role; the DynamoDB
adapters implement them beside their everyday port (adapters/dynamodb_events.py,
adapters/dynamodb_contacts.py)."""
from __future__ import annotations

import abc


class EventErasure(abc.ABC):
    @abc.abstractmethod
    def erase_partition(self, partition: str, limit: int = 500) -> tuple[int, bool]:
        """Delete up to `limit` events of one partition (`user:…`, `anon:…`, `contact:…`);
        (how many were deleted, whether the partition is now empty)."""


class ContactErasure(abc.ABC):
    @abc.abstractmethod
    def forget_identifier(self, identifier: str, contact_id: str) -> bool:
        """Delete the identity if it still points at that contact; True when it was deleted."""

    @abc.abstractmethod
    def delete_contact(self, contact_id: str) -> bool:
        """Delete the contact item (a live or a merged-away one); True when there was one."""


class ExportErasure(abc.ABC):
    """Audience export files (adapters/s3_exports.py): a segment's files hold its members then."""

    @abc.abstractmethod
    def exports_of(self, segment_id: str) -> list[str]:
        """The keys of every export file (and part) written for the segment."""

    @abc.abstractmethod
    def delete(self, keys: list[str]) -> int:
        """Delete these export files; how many were deleted."""
