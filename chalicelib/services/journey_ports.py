"""Ports of the journey runtime: the enrollments table, the enrollment runner (Step Functions)
and the journey-events queue. Named by role; AWS adapters in chalicelib/adapters/, fakes in
tests/unit/journey_fakes.py."""
from __future__ import annotations

import abc

from chalicelib.domain.journeys.records import EnrollmentRecord


class EnrollmentConflict(Exception):
    """Another writer changed the enrollment (or the contact's entries) first: read again."""


class EnrollmentStore(abc.ABC):
    @abc.abstractmethod
    def get(self, enrollment_id: str) -> EnrollmentRecord | None:
        """The enrollment, read consistently."""

    @abc.abstractmethod
    def many(self, enrollment_ids: list[str]) -> list[EnrollmentRecord]:
        """These enrollments (those that exist), read consistently."""

    @abc.abstractmethod
    def entries(self, contact_id: str) -> dict[str, dict]:
        """Per journey id, the contact's entries: {"entries": [{"id", "key", "entered_at"}], "version"}."""

    @abc.abstractmethod
    def create(self, record: EnrollmentRecord, entries_version: int | None) -> None:
        """Store a new enrollment and add it to the contact's entries of its journey, at once;
        `entries_version` is the version of those entries read for the entry rules (None: none
        existed). EnrollmentConflict when the enrollment exists or the entries moved."""

    @abc.abstractmethod
    def move_entries(self, from_contact: str, to_contact: str) -> int:
        """A merge: the merged contact's entries join the survivor's (per journey, at once);
        how many entries moved. EnrollmentConflict when either side moved meanwhile."""

    @abc.abstractmethod
    def save(self, record: EnrollmentRecord) -> EnrollmentRecord:
        """Write the enrollment if nobody did since it was read (its `version`); the record
        written, with the next version. EnrollmentConflict otherwise."""

    @abc.abstractmethod
    def running(self, journey_id: str, cursor: str | None = None, limit: int = 200) -> tuple[list[tuple[str, str]], str | None]:
        """A page of the journey's running enrollments as (node, enrollment id), and the next cursor."""

    @abc.abstractmethod
    def add_counts(self, journey_id: str, shard: int, counts: dict[str, int]) -> None:
        """Add to the journey's counters (atomic)."""

    @abc.abstractmethod
    def counts(self, journey_id: str) -> dict[str, int]:
        """The journey's counters, summed over its shards."""

    @abc.abstractmethod
    def control(self, journey_id: str) -> dict | None:
        """{"state": live|paused|stopped, "at", "reason"}, or None (live)."""

    @abc.abstractmethod
    def set_control(self, journey_id: str, state: str, at: str, reason: str) -> dict: ...

    @abc.abstractmethod
    def erase_contact(self, contact_id: str) -> int:
        """Delete the contact's entries and enrollments; how many items went."""


class TokenGone(Exception):
    """The task token is no longer valid (its wait timed out, or the execution ended)."""


class EnrollmentRunner(abc.ABC):
    """The Step Functions state machine that runs one execution per enrollment."""

    @abc.abstractmethod
    def start(self, name: str, payload: dict) -> str:
        """Start (or find, for the same name and input) the execution; its ARN."""

    @abc.abstractmethod
    def answer(self, token: str, output: dict) -> None:
        """SendTaskSuccess; TokenGone when the token no longer waits."""

    @abc.abstractmethod
    def fail(self, token: str, error: str, cause: str) -> None:
        """SendTaskFailure; TokenGone when the token no longer waits."""

    @abc.abstractmethod
    def stop(self, execution_arn: str, cause: str) -> bool:
        """StopExecution; False when there is no such execution (stopping one that ended is
        harmless)."""


class JourneyQueue(abc.ABC):
    """The journey-events queue (FIFO per contact): signals for the runtime."""

    @abc.abstractmethod
    def send(self, signals: list[dict]) -> None:
        """Enqueue these signals (each with `id`, and `contact_id` or `enrollment_id`); raises
        when any could not be enqueued."""
