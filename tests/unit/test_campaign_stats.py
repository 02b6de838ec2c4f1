"""CountingMessageLog over a log whose status writes carry the count-once marks
(MarksOnWrite): counted once per message and status, without asking CountOnce."""
from __future__ import annotations

from datetime import datetime, timezone

from chalicelib.domain.messaging.messages import (
    CLICKED,
    DEFERRED,
    DELIVERED,
    QUEUED,
    SENDING,
    SENT,
    Message,
    StatusChange,
    message_id,
)
from chalicelib.services.broadcast_ports import CountOnce
from chalicelib.services.campaign_stats import CountingMessageLog, MarksOnWrite, marks_of
from tests.unit.messaging_fakes import FakeMessageLog
from tests.unit.test_broadcasts_service import FakeCampaignStats

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc)


class MarkingFakeLog(FakeMessageLog, MarksOnWrite):
    """Marks kept beside each message, added by the status writes themselves."""

    def __init__(self):
        super().__init__()
        self.counted: dict[str, set[str]] = {}

    def create_marked(self, message, marks):
        created = self.create(message)
        if created:
            self.counted[message.id] = set(marks)
        return created

    def _add(self, message_id, marks):
        before = self.counted.setdefault(message_id, set())
        new = set(marks) - before
        before |= set(marks)
        return new

    def advance_marked(self, message_id, change, marks, **fields):
        updated = self.advance(message_id, change, **fields)
        return updated, (self._add(message_id, marks) if updated is not None else set())

    def release_marked(self, message_id, change, marks):
        released = self.release(message_id, change)
        return released, (self._add(message_id, marks) if released is not None else set())

    def record_once_marked(self, message_id, change, marks):
        outcome, message = self.record_once(message_id, change)
        return outcome, message, (self._add(message_id, marks) if outcome == "applied" else set())


class NoCountOnce(CountOnce):
    def first_time(self, message_id, key):
        raise AssertionError("a log that marks on its writes is never asked separately")


def campaign_message(timeline=(StatusChange(QUEUED, NOW),)) -> Message:
    return Message(id=message_id("cause", "c1", "promo", "email"), contact_id="c1", channel="email",
                   template="promo", lane="marketing", topic=None, cause="cause", requested_at=NOW,
                   campaign="dec", status=timeline[-1].status, timeline=timeline)


def counting():
    inner, stats = MarkingFakeLog(), FakeCampaignStats()
    return CountingMessageLog(inner, NoCountOnce(), stats), inner, stats


def test_marks_of_name_the_first_counter_of_each_status_and_a_click_marks_an_open():
    assert marks_of([StatusChange(QUEUED, NOW), StatusChange(DEFERRED, NOW)]) == ["requested", "deferred"]
    assert marks_of([StatusChange(CLICKED, NOW)]) == ["clicked", "opened"]
    assert marks_of([StatusChange(SENDING, NOW)]) == []
    assert marks_of([StatusChange("skipped", NOW, {"code": "holdout"})]) == ["skipped"]


def test_each_status_of_a_campaign_message_counts_once_from_the_writes_own_marks():
    log, inner, stats = counting()
    m = campaign_message()
    assert log.create(m) and not log.create(m)  # the second request writes and counts nothing
    assert inner.counted[m.id] == set()  # `requested` is decided by the conditional create alone
    log.claim(m.id, StatusChange(SENDING, NOW), NOW)
    log.release(m.id, StatusChange(DEFERRED, NOW, {"code": "quiet_hours"}))
    log.claim(m.id, StatusChange(SENDING, NOW), NOW)
    log.release(m.id, StatusChange(DEFERRED, NOW, {"code": "quiet_hours"}))  # deferred twice: once
    log.claim(m.id, StatusChange(SENDING, NOW), NOW)
    log.advance(m.id, StatusChange(SENT, NOW))
    assert log.record_once(m.id, StatusChange(DELIVERED, NOW))[0] == "applied"
    assert log.record_once(m.id, StatusChange(DELIVERED, NOW))[0] == "duplicate"  # a redelivered notification
    log.advance(m.id, StatusChange(DELIVERED, NOW))  # and through advance: counted once all the same
    log.advance(m.id, StatusChange(CLICKED, NOW))  # implies an open
    assert stats.rows[("dec", "promo", None)] == {"requested": 1, "deferred": 1, "sent": 1, "delivered": 1,
                                                  "clicked": 1, "opened": 1}


def test_a_scheduled_request_counts_its_deferral_at_creation_and_not_again_when_released():
    log, inner, stats = counting()
    m = campaign_message((StatusChange(QUEUED, NOW), StatusChange(DEFERRED, NOW, {"code": "scheduled"})))
    log.create(m)
    log.claim(m.id, StatusChange(SENDING, NOW), NOW)
    log.release(m.id, StatusChange(DEFERRED, NOW, {"code": "quiet_hours"}))
    assert stats.rows[("dec", "promo", None)] == {"requested": 1, "deferred": 1}
