"""The schedule trigger: an enrollment waits until the trigger's time of day, on an allowed
weekday, in the contact's zone (across DST changes), then runs the start node; the simulator
shows that wait for a schedule journey."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.domain.journeys.engine import SCHEDULE_NODE, ContactView, SendAction, WaitUntil, advance, \
    enroll_scheduled, next_local_time
from chalicelib.domain.journeys.language import parse_journey
from chalicelib.domain.journeys.simulator import simulate

UTC = timezone.utc


def journey(schedule: str = "{at: '09:00'}", entry: str = "{segment: members, re_entry: always}"):
    return parse_journey(f"id: daily\ntrigger: {{schedule: {schedule}}}\nentry: {entry}\nstart: hello\n"
                         "nodes:\n  hello: {send: {template: daily-tip}, next: pause}\n"
                         "  pause: {wait: 2 hours, next: bye}\n  bye: {send: {template: bye}}\n")


def view(zone: str | None = "Europe/Paris", segments=("members",)) -> ContactView:
    traits = {"timezone": zone} if zone else {}
    return ContactView(Contact(id="c1", created_at="2026-01-01T00:00:00Z", traits=traits,
                               segments={s: {"since": "2026-01-01T00:00:00Z"} for s in segments}))


def test_a_scheduled_enrollment_waits_for_nine_local_then_runs_the_start_node():
    j = journey()
    now = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # Monday 07:00 in Paris (UTC+1)
    enrollment = enroll_scheduled(j, "e1", "c1", now, view())
    assert enrollment.node == SCHEDULE_NODE and enrollment.waiting == WaitUntil(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    (entry,) = enrollment.trace
    assert (entry.node, entry.decision) == (SCHEDULE_NODE, "waiting")
    assert "until 09:00 in Europe/Paris" in entry.reason
    step = advance(j, enrollment, view(), datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    assert [(t.node, t.decision) for t in step.trace] == [(SCHEDULE_NODE, "resumed"), ("hello", "sent"),
                                                          ("pause", "waiting")]
    (send,) = step.actions
    assert isinstance(send, SendAction) and send.template == "daily-tip" and send.id == "e1:hello:0"


def test_past_the_time_today_it_waits_for_tomorrow():
    enrollment = enroll_scheduled(journey(), "e1", "c1", datetime(2026, 3, 2, 9, 0, tzinfo=UTC), view())
    assert enrollment.waiting.until == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("now, expected", [
    # Saturday 28 March 2026 (UTC+1); Paris moves to UTC+2 on Sunday 29 March: 09:00 CEST is 07:00 UTC.
    (datetime(2026, 3, 28, 9, 0, tzinfo=UTC), datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),
    # Saturday 24 October 2026 (UTC+2); back to UTC+1 on Sunday 25 October: 09:00 CET is 08:00 UTC.
    (datetime(2026, 10, 24, 8, 0, tzinfo=UTC), datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),
])
def test_the_schedule_is_on_the_wall_clock_across_dst_changes(now, expected):
    assert enroll_scheduled(journey(), "e1", "c1", now, view()).waiting.until == expected


def test_only_allowed_weekdays_count():
    j = journey("{at: '09:00', weekdays: [mon, fri]}")
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    enrollment = enroll_scheduled(j, "e1", "c1", saturday, view())
    assert enrollment.waiting.until == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # Monday, CEST
    assert "on mon, fri" in enrollment.trace[0].reason
    friday_early = datetime(2026, 3, 27, 6, 0, tzinfo=UTC)  # Friday 07:00 in Paris
    assert enroll_scheduled(j, "e1", "c1", friday_early, view()).waiting.until == \
        datetime(2026, 3, 27, 8, 0, tzinfo=UTC)
    friday_late = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)  # Friday 10:00: the next is Monday
    assert enroll_scheduled(j, "e1", "c1", friday_late, view()).waiting.until == \
        datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def test_the_weekday_is_the_contacts_local_one():
    j = journey("{at: '09:00', weekdays: [mon]}")
    # Sunday 1 March 2026 20:00 UTC is already Monday 05:00 in Tokyo: 09:00 Tokyo that Monday.
    now = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
    assert enroll_scheduled(j, "e1", "c1", now, view("Asia/Tokyo")).waiting.until == \
        datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    # ...and still Sunday in New York (15:00): Monday 09:00 EST is 14:00 UTC.
    assert enroll_scheduled(j, "e1", "c1", now, view("America/New_York")).waiting.until == \
        datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def test_a_time_skipped_by_the_spring_change_fires_when_the_clock_jumps():
    j = journey("{at: '02:30'}")
    now = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # Sunday 29 March 00:00 in Paris
    # 02:30 never shows in Paris that night: the clock jumps from 02:00 CET (01:00 UTC) to 03:00 CEST.
    assert enroll_scheduled(j, "e1", "c1", now, view()).waiting.until == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_next_local_time_is_now_when_the_clock_reads_it():
    from zoneinfo import ZoneInfo

    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert next_local_time(now, datetime(2026, 1, 1, 9).time(), (), ZoneInfo("Europe/Paris")) == now


def test_only_a_schedule_journey_enrolls_on_a_schedule():
    j = parse_journey("id: j\ntrigger: {event: Signed Up}\nstart: a\nnodes:\n  a: {send: {template: x}}\n")
    with pytest.raises(ValueError, match="no schedule trigger"):
        enroll_scheduled(j, "e1", "c1", datetime(2026, 3, 2, tzinfo=UTC), view())


def test_the_simulator_enrolls_a_schedule_journey_at_its_start_and_shows_the_wait():
    contact = Contact(id="c1", created_at="2026-01-01T00:00:00Z", traits={"timezone": "Europe/Paris"},
                      segments={"members": {"since": "2026-01-01T00:00:00Z"}})
    start = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    run = simulate(journey(), contact, [], start, until=timedelta(days=1))
    (enrollment,) = run.enrollments
    assert [(t.at, t.node, t.decision) for t in enrollment.trace] == [
        (start, SCHEDULE_NODE, "waiting"),
        (datetime(2026, 3, 2, 8, 0, tzinfo=UTC), SCHEDULE_NODE, "resumed"),
        (datetime(2026, 3, 2, 8, 0, tzinfo=UTC), "hello", "sent"),
        (datetime(2026, 3, 2, 8, 0, tzinfo=UTC), "pause", "waiting"),
        (datetime(2026, 3, 2, 10, 0, tzinfo=UTC), "pause", "resumed"),
        (datetime(2026, 3, 2, 10, 0, tzinfo=UTC), "bye", "sent"),
        (datetime(2026, 3, 2, 10, 0, tzinfo=UTC), "bye", "completed"),
    ]
    assert [t for _, _, t in run.sends()] == ["daily-tip", "bye"]


def test_the_simulator_refuses_a_contact_outside_the_entry_segment():
    contact = Contact(id="c1", created_at="2026-01-01T00:00:00Z")
    start = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    run = simulate(journey(), contact, [], start, until=timedelta(days=1))
    assert run.enrollments == [] and run.refused == [(start, "not in the entry segment members")]


def test_the_runtime_runs_a_schedule_entry_after_its_wait_and_counts_the_wait():
    from chalicelib.domain.contact_state import iso_ms
    from tests.unit.journeys.test_journey_runtime import NOW, World  # Monday 2 March 2026, 10:00 UTC

    doc = {"id": "daily", "name": "Daily", "trigger": {"schedule": {"at": "09:00"}},
           "entry": {"segment": "vip", "re_entry": "always"}, "start": "hello",
           "nodes": {"hello": {"send": {"template": "daily-tip", "channel": "email"}}}}
    world = World(doc)
    world.contact(traits={"timezone": "Europe/Paris", "vip": True}, segments={"vip": {"since": iso_ms(NOW)}})
    world.runtime.on_signal({"kind": "enroll", "id": "schedule:daily:2026-03-02", "journey_id": "daily",
                             "contact_id": "c1", "key": None, "data": {}, "at": iso_ms(NOW)})
    world.machine.drain(world.runtime)
    record = world.only()
    assert record.enrollment.node == SCHEDULE_NODE
    assert record.enrollment.waiting.until == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)  # 11:00 in Paris now: tomorrow
    assert world.store.counts("daily")["waiting_now:@schedule"] == 1
    world.run(hours=21, minutes=59)
    assert world.messaging.sent() == []
    world.run(minutes=2)
    assert world.messaging.sent() == [("c1", "email", "daily-tip")]
    assert world.decisions() == [(SCHEDULE_NODE, "waiting"), (SCHEDULE_NODE, "resumed"), ("hello", "sent"),
                                 ("hello", "completed")]
    counts = world.store.counts("daily")
    assert counts["waiting_now:@schedule"] == 0 and counts["entered"] == 1 and counts["sent:hello"] == 1
    assert world.machine.history(record.id) == ["Advance", "Route", "WaitUntil", "Advance", "Route", "Done"]


def test_a_second_scheduled_entry_is_refused_while_the_first_waits_for_the_same_moment():
    from chalicelib.domain.journeys.engine import may_enter

    j = parse_journey("id: daily\ntrigger: {schedule: {at: '09:00', weekdays: [mon]}}\n"
                      "entry: {segment: members, re_entry: always, max_concurrent: 5}\nstart: hello\n"
                      "nodes:\n  hello: {send: {template: daily-tip}}\n")
    first = enroll_scheduled(j, "e1", "c1", datetime(2026, 3, 3, 6, 0, tzinfo=UTC), view())  # a Tuesday
    assert may_enter(j, view(), (first,), datetime(2026, 3, 4, 6, 0, tzinfo=UTC)) == (
        False, "already waiting for the schedule's next moment")
    done = advance(j, first, view(), first.waiting.until).enrollment
    assert done.finished
    assert may_enter(j, view(), (done,), datetime(2026, 3, 10, 6, 0, tzinfo=UTC)) == (True, "entry rules met")
