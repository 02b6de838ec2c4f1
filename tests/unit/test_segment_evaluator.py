"""Segment evaluation: membership now and the next moment time alone could change it."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.domain.contact import Contact, bump_counter
from chalicelib.domain.segments.evaluator import (
    Evaluation,
    EvaluationContext,
    contact_timezone,
    evaluate,
    local_midnight,
)
from chalicelib.domain.segments.filters import EventMatcher, parse_filters
from chalicelib.domain.segments.language import parse_segment
from tests.property_runs import examples

UTC = timezone.utc
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def counter(*moments: datetime, keep_days: int = 400) -> dict:
    """A counter entry built the way event processing builds it."""
    entries: dict = {}
    for moment in moments:
        bump_counter(entries, "e", iso(moment), keep_days)
    return entries["e"]


def segment(conditions):
    return parse_segment({"id": "s", "name": "S", "conditions": conditions})


def context(members=(), score=0.0, crossings=None, groups=None, calls=None) -> EvaluationContext:
    def crossing(contact, threshold, now):
        if calls is not None:
            calls.append(threshold)
        return (crossings or {}).get(threshold)

    return EvaluationContext(
        is_member=lambda segment_id: segment_id in members,
        score_now=lambda contact, now: score,
        score_crossing=crossing,
        campaign_group=lambda contact, campaign_id: (groups or {}).get(campaign_id),
    )


def person(**fields) -> Contact:
    return Contact(id="c1", created_at="2026-01-01T00:00:00.000Z", **fields)


def check(conditions, contact: Contact, now: datetime = NOW, **ctx) -> Evaluation:
    return evaluate(segment(conditions), contact, now, context(**ctx))


def member(conditions, contact: Contact, now: datetime = NOW, **ctx) -> bool:
    return check(conditions, contact, now, **ctx).member


# --- traits ----------------------------------------------------------------------------------

@pytest.mark.parametrize("condition,expected", [
    ({"trait": "country", "equals": "fr"}, True),
    ({"trait": "country", "equals": " FR "}, True),
    ({"trait": "country", "equals": "DE"}, False),
    ({"trait": "country", "not_equals": "DE"}, True),
    ({"trait": "country", "not_equals": "fr"}, False),
    ({"trait": "missing", "not_equals": "x"}, True),
    ({"trait": "missing", "equals": "x"}, False),
    ({"trait": "country", "in": ["de", "Fr"]}, True),
    ({"trait": "country", "in": ["de", "es"]}, False),
    ({"trait": "country", "not_in": ["de", "es"]}, True),
    ({"trait": "country", "not_in": ["de", "FR"]}, False),
    ({"trait": "missing", "not_in": ["x"]}, True),
    ({"trait": "missing", "in": ["x"]}, False),
    ({"trait": "bio", "contains": "COFFEE"}, True),
    ({"trait": "bio", "contains": "tea"}, False),
    ({"trait": "interests", "contains": "Espresso"}, True),
    ({"trait": "interests", "contains": "decaf"}, False),
    ({"trait": "age", "gt": 41}, True),
    ({"trait": "age", "gt": 42}, False),
    ({"trait": "age", "gte": 42}, True),
    ({"trait": "age", "lt": 42.5}, True),
    ({"trait": "age", "lte": 41}, False),
    ({"trait": "revenue", "gte": 100}, True),  # numeric text compares as a number
    ({"trait": "country", "gt": 1}, False),
    ({"trait": "missing", "lt": 1}, False),
    ({"trait": "country", "exists": True}, True),
    ({"trait": "missing", "exists": True}, False),
    ({"trait": "missing", "exists": False}, True),
    ({"trait": "empty", "exists": False}, True),
    ({"trait": "nothing", "exists": False}, True),
    ({"trait": "vip", "equals": True}, True),
    ({"trait": "vip", "equals": False}, False),
    ({"trait": "address.city", "equals": "lyon"}, True),
    ({"trait": "address.zip", "exists": True}, False),
    ({"trait": "plan.tier", "equals": "gold"}, True),  # a literal dotted key wins
])
def test_trait_comparisons(condition, expected):
    contact = person(traits={"country": "FR", "bio": "Loves coffee", "interests": ["espresso", "latte"],
                             "age": 42, "revenue": "120.5", "empty": "", "nothing": None, "vip": True,
                             "address": {"city": "Lyon"}, "plan.tier": "gold"})
    assert member(condition, contact) is expected


def test_date_traits_compared_with_absolute_dates():
    contact = person(traits={"signup": "2026-03-01T10:00:00Z"})
    assert member({"trait": "signup", "after": "2026-02-28"}, contact)
    assert not member({"trait": "signup", "after": "2026-03-01"}, contact)  # after a day: from the next day on
    assert not member({"trait": "signup", "before": "2026-03-01"}, contact)
    assert member({"trait": "signup", "before": "2026-03-02"}, contact)
    assert member({"trait": "signup", "before": "2026-03-01T10:00:01Z"}, contact)
    assert not member({"trait": "signup", "before": "2026-03-01T10:00:00Z"}, contact)
    assert member({"trait": "signup", "after": "2026-03-01T09:59:59Z"}, contact)
    assert check({"trait": "signup", "after": "2026-02-28"}, contact).next_change is None


def test_calendar_days_are_read_in_the_contacts_time_zone():
    # 03:00 UTC on 1 January is still New Year's Eve in New York.
    in_new_york = person(traits={"signup": "2026-01-01T03:00:00Z", "timezone": "America/New_York"})
    in_utc = person(traits={"signup": "2026-01-01T03:00:00Z"})
    assert member({"trait": "signup", "before": "2026-01-01"}, in_new_york)
    assert not member({"trait": "signup", "before": "2026-01-01"}, in_utc)
    # A date trait is a day too: the same day is neither before nor after it.
    day = person(traits={"renewal": "2026-01-01", "timezone": "Asia/Tokyo"})
    assert not member({"trait": "renewal", "before": "2026-01-01"}, day)
    assert not member({"trait": "renewal", "after": "2026-01-01"}, day)
    assert member({"trait": "renewal", "after": "2025-12-31"}, day)


def test_within_last_holds_until_the_date_is_older_than_the_window():
    signup = NOW - 10 * DAY
    contact = person(traits={"signup": iso(signup)})
    result = check({"trait": "signup", "within_last": "30 days"}, contact)
    assert result == Evaluation(True, signup + 30 * DAY)
    assert member({"trait": "signup", "within_last": "30 days"}, contact, signup + 30 * DAY - timedelta(seconds=1))
    assert check({"trait": "signup", "within_last": "30 days"}, contact, signup + 30 * DAY) == Evaluation(False, None)


def test_more_than_ago_becomes_true_once_the_date_is_old_enough():
    signup = NOW - 10 * DAY
    contact = person(traits={"signup": iso(signup)})
    assert check({"trait": "signup", "more_than_ago": "2 weeks"}, contact) == Evaluation(False, signup + 14 * DAY)
    assert check({"trait": "signup", "more_than_ago": "2 weeks"}, contact, signup + 14 * DAY) == Evaluation(True, None)


def test_relative_bounds_in_the_future():
    trial_end = NOW + 10 * DAY
    contact = person(traits={"trial_ends": iso(trial_end)})
    ending_soon = {"trait": "trial_ends", "before": "in 7 days"}
    assert check(ending_soon, contact) == Evaluation(False, trial_end - 7 * DAY)
    assert check(ending_soon, contact, trial_end - 7 * DAY) == Evaluation(True, None)
    assert check({"trait": "trial_ends", "after": "now"}, contact) == Evaluation(True, trial_end)


@pytest.mark.parametrize("value,expected", [
    ("2026-11-20", True),
    ("2026-11-20T23:59:59+01:00", True),
    ("2026-11-20T10:00:00", True),  # no zone: UTC
    (int((NOW - 2 * DAY).timestamp()), True),  # epoch seconds
    (int((NOW - 2 * DAY).timestamp() * 1000), True),  # epoch milliseconds
    (int((NOW - 40 * DAY).timestamp()), False),
    ("not a date", False),
    ("2026-13-45", False),
    (True, False),
    (None, False),
    (["2026-11-20"], False),
])
def test_date_trait_formats(value, expected):
    result = check({"trait": "seen", "within_last": "30 days"}, person(traits={"seen": value}))
    assert result.member is expected
    if not expected:
        assert result.next_change is None


def test_a_missing_date_trait_is_not_time_dependent():
    assert check({"trait": "seen", "more_than_ago": "30 days"}, person()) == Evaluation(False, None)


# --- anniversaries ---------------------------------------------------------------------------

def birthday(value: str, tz: str | None = None, context_tz: str | None = None) -> Contact:
    traits = {"birthday": value}
    if tz:
        traits["timezone"] = tz
    return person(traits=traits, last_context={"timezone": context_tz} if context_tz else {})


BIRTHDAY = {"trait": "birthday", "anniversary": "today"}


def test_birthday_today_in_utc_until_midnight():
    result = check(BIRTHDAY, birthday("1990-11-22"))
    assert result == Evaluation(True, datetime(2026, 11, 23, tzinfo=UTC))


def test_birthday_later_this_year_wakes_up_on_the_day():
    assert check(BIRTHDAY, birthday("1985-12-25")) == Evaluation(False, datetime(2026, 12, 25, tzinfo=UTC))


def test_birthday_already_passed_this_year_waits_for_next_year():
    assert check(BIRTHDAY, birthday("1985-03-02")) == Evaluation(False, datetime(2027, 3, 2, tzinfo=UTC))


@pytest.mark.parametrize("value", ["1990-11-22T00:00:00.000Z", "1990-11-22T23:00:00-05:00", "--11-22", "11-22"])
def test_birthday_formats_keep_the_written_day(value):
    assert member(BIRTHDAY, birthday(value))


@pytest.mark.parametrize("value", ["", "1990-02-30", "1990-13-01", "soon", None, True])
def test_unusable_birthdays_never_match(value):
    assert check(BIRTHDAY, birthday(value)) == Evaluation(False, None)


def test_birthday_uses_the_contacts_own_time_zone():
    now = datetime(2026, 5, 16, 23, 30, tzinfo=UTC)
    # Paris is already at 01:30 on 17 May (CEST, +2).
    paris = check(BIRTHDAY, birthday("1990-05-17", "Europe/Paris"), now)
    assert paris == Evaluation(True, datetime(2026, 5, 17, 22, 0, tzinfo=UTC))
    # Los Angeles is still at 16:30 on 16 May (PDT, -7).
    los_angeles = check(BIRTHDAY, birthday("1990-05-17", "America/Los_Angeles"), now)
    assert los_angeles == Evaluation(False, datetime(2026, 5, 17, 7, 0, tzinfo=UTC))
    assert check(BIRTHDAY, birthday("1990-05-17"), now) == Evaluation(False, datetime(2026, 5, 17, tzinfo=UTC))


def test_time_zone_from_the_last_context_and_the_trait_first():
    now = datetime(2026, 5, 16, 23, 30, tzinfo=UTC)
    assert member(BIRTHDAY, birthday("1990-05-17", context_tz="Europe/Paris"), now)
    assert not member(BIRTHDAY, birthday("1990-05-17", tz="America/Los_Angeles", context_tz="Europe/Paris"), now)
    assert member(BIRTHDAY, birthday("1990-05-17", tz="Not/AZone", context_tz="Europe/Paris"), now)
    assert not member(BIRTHDAY, birthday("1990-05-17", tz="Not/AZone"), now)  # UTC


def test_contact_timezone_defaults_to_utc():
    assert contact_timezone(person()) == UTC
    assert contact_timezone(person(traits={"timezone": 5})) == UTC
    assert contact_timezone(person(traits={"timezone": "Asia/Kolkata"})) == ZoneInfo("Asia/Kolkata")


@pytest.mark.parametrize("now,expected", [
    (datetime(2027, 2, 28, 12, tzinfo=UTC), Evaluation(True, datetime(2027, 3, 1, tzinfo=UTC))),
    (datetime(2027, 3, 1, 12, tzinfo=UTC), Evaluation(False, datetime(2028, 2, 29, tzinfo=UTC))),
    (datetime(2028, 2, 28, 12, tzinfo=UTC), Evaluation(False, datetime(2028, 2, 29, tzinfo=UTC))),
    (datetime(2028, 2, 29, 12, tzinfo=UTC), Evaluation(True, datetime(2028, 3, 1, tzinfo=UTC))),
    (datetime(2026, 11, 22, 12, tzinfo=UTC), Evaluation(False, datetime(2027, 2, 28, tzinfo=UTC))),
])
def test_leap_day_birthdays_fall_on_28_february_in_common_years(now, expected):
    assert check(BIRTHDAY, birthday("2000-02-29"), now) == expected


def test_next_local_midnight_across_spring_forward_in_paris():
    # 29 March 2026: Paris goes from +1 to +2 at 02:00.
    on_the_28th = check(BIRTHDAY, birthday("1990-03-28", "Europe/Paris"), datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert on_the_28th == Evaluation(True, datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
    on_the_29th = check(BIRTHDAY, birthday("1990-03-29", "Europe/Paris"), datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert on_the_29th == Evaluation(True, datetime(2026, 3, 29, 22, 0, tzinfo=UTC))  # a 23-hour day


def test_next_local_midnight_across_fall_back_in_new_york():
    # 1 November 2026: New York goes from -4 to -5 at 02:00; the day lasts 25 hours.
    result = check(BIRTHDAY, birthday("1990-11-01", "America/New_York"), datetime(2026, 11, 1, 12, tzinfo=UTC))
    assert result == Evaluation(True, datetime(2026, 11, 2, 5, 0, tzinfo=UTC))
    assert member(BIRTHDAY, birthday("1990-11-01", "America/New_York"), datetime(2026, 11, 2, 4, 59, tzinfo=UTC))
    assert not member(BIRTHDAY, birthday("1990-11-01", "America/New_York"), datetime(2026, 11, 2, 5, 0, tzinfo=UTC))


def test_a_day_whose_midnight_does_not_exist_starts_at_the_end_of_the_gap():
    # Santiago skips from 00:00 to 01:00 on 6 September 2026: the day starts at 01:00 -03 = 04:00 UTC.
    contact = birthday("1990-09-06", "America/Santiago")
    before = check(BIRTHDAY, contact, datetime(2026, 9, 5, 20, tzinfo=UTC))
    assert before == Evaluation(False, datetime(2026, 9, 6, 4, 0, tzinfo=UTC))
    assert not member(BIRTHDAY, contact, datetime(2026, 9, 6, 3, 59, 59, tzinfo=UTC))
    on_the_day = check(BIRTHDAY, contact, datetime(2026, 9, 6, 4, 0, tzinfo=UTC))
    assert on_the_day == Evaluation(True, datetime(2026, 9, 7, 3, 0, tzinfo=UTC))  # now at -03


def test_local_midnight_of_an_ordinary_day():
    assert local_midnight(date(2026, 7, 1), ZoneInfo("Asia/Kolkata")) == datetime(2026, 6, 30, 18, 30, tzinfo=UTC)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tz=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "America/Santiago", "Australia/Lord_Howe",
                        "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kathmandu"]),
    born=st.dates(min_value=date(1950, 1, 1), max_value=date(2008, 12, 31)),
    offset_minutes=st.integers(min_value=0, max_value=4 * 366 * 24 * 60),
)
def test_anniversary_changes_exactly_at_the_announced_moment(tz, born, offset_minutes):
    now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=offset_minutes)
    contact = birthday(born.isoformat(), tz)
    first = check(BIRTHDAY, contact, now)
    assert first.next_change is not None and first.next_change > now
    assert first.next_change - now <= timedelta(days=367)
    just_before = first.next_change - timedelta(seconds=1)
    if just_before > now:
        assert member(BIRTHDAY, contact, just_before) is first.member
    assert member(BIRTHDAY, contact, first.next_change) is not first.member
    # The membership truly follows the local calendar.
    local = now.astimezone(ZoneInfo(tz)).date()
    expected_day = (born.month, born.day)
    if expected_day == (2, 29) and local.year % 4:
        expected_day = (2, 28)
    assert first.member is ((local.month, local.day) == expected_day)


# --- events ----------------------------------------------------------------------------------

def test_no_counter_means_never_performed():
    contact = person()
    assert check({"event": "Order Completed"}, contact) == Evaluation(False, None)
    assert check({"event": "Order Completed", "at_most": 0, "within": "60 days"}, contact) == Evaluation(True, None)
    assert check({"event": "Order Completed", "performed": False}, contact) == Evaluation(True, None)


def test_all_time_counts_use_the_total():
    contact = person(counters={"Order Completed": counter(NOW - 400 * DAY, NOW - 300 * DAY, NOW - DAY)})
    assert member({"event": "Order Completed", "at_least": 3}, contact)
    assert not member({"event": "Order Completed", "at_least": 4}, contact)
    assert member({"event": "Order Completed", "exactly": 3}, contact)
    assert check({"event": "Order Completed", "at_most": 3}, contact) == Evaluation(True, None)


def test_unfiltered_conditions_read_counters_and_filtered_ones_their_matcher():
    coffee = EventMatcher("Product Viewed", parse_filters(['properties.category == "coffee"'], "w"))
    contact = person(counters={"Product Viewed": counter(NOW - DAY, NOW - DAY, NOW - DAY)},
                     filtered={coffee.key: counter(NOW - DAY)})
    assert member({"event": "Product Viewed", "at_least": 3}, contact)
    assert not member({"event": "Product Viewed", "where": ['category == "coffee"'], "at_least": 3}, contact)
    assert member({"event": "Product Viewed", "where": ['category == "coffee"'], "exactly": 1}, contact)
    assert not member({"event": "Product Viewed", "where": ['category == "tea"']}, contact)


def test_sliding_window_is_exact_and_announces_when_an_occurrence_leaves_it():
    t1, t2, t3 = NOW - 20 * DAY, NOW - 10 * DAY, NOW - 2 * DAY
    contact = person(counters={"Product Viewed": counter(NOW - 45 * DAY, t1, t2, t3)})
    three = {"event": "Product Viewed", "at_least": 3, "within": "30 days"}
    assert check(three, contact) == Evaluation(True, t1 + 30 * DAY)
    assert member(three, contact, t1 + 30 * DAY - timedelta(seconds=1))
    assert check(three, contact, t1 + 30 * DAY) == Evaluation(False, None)  # counts only decrease
    two = {"event": "Product Viewed", "at_least": 2, "within": "30 days"}
    assert check(two, contact) == Evaluation(True, t2 + 30 * DAY)
    four = {"event": "Product Viewed", "at_least": 4, "within": "30 days"}
    assert check(four, contact) == Evaluation(False, None)


def test_did_not_perform_within_a_window():
    last = NOW - 50 * DAY
    contact = person(counters={"Order Completed": counter(NOW - 200 * DAY, NOW - 120 * DAY, last)})
    no_purchase = {"event": "Order Completed", "at_most": 0, "within": "60 days"}
    assert check(no_purchase, contact) == Evaluation(False, last + 60 * DAY)
    assert check(no_purchase, contact, last + 60 * DAY) == Evaluation(True, None)


def test_exactly_changes_more_than_once():
    times = [NOW - 5 * DAY, NOW - 4 * DAY, NOW - 3 * DAY]
    contact = person(counters={"Login": counter(*times)})
    exactly_two = {"event": "Login", "exactly": 2, "within": "1 week"}
    assert check(exactly_two, contact) == Evaluation(False, times[0] + 7 * DAY)
    assert check(exactly_two, contact, times[0] + 7 * DAY) == Evaluation(True, times[1] + 7 * DAY)
    assert check(exactly_two, contact, times[1] + 7 * DAY) == Evaluation(False, None)


def test_first_and_last_occurrence_bounds():
    contact = person(counters={"Order Completed": counter(datetime(2025, 6, 1, tzinfo=UTC), NOW - 70 * DAY)})
    lapsed = {"event": "Order Completed", "last": {"before": "60 days ago"}}
    assert check(lapsed, contact) == Evaluation(True, None)
    assert check(lapsed, contact, NOW - 15 * DAY) == Evaluation(False, NOW - 10 * DAY)  # last + 60 days
    customer_since_2025 = {"event": "Order Completed", "first": {"after": "2024-12-31", "before": "2026-01-01"}}
    assert member(customer_since_2025, contact)
    assert not member({"event": "Order Completed", "first": {"after": "2025-06-01"}}, contact)
    assert not member(lapsed, person())


def test_an_empty_counter_has_no_first_or_last_occurrence():
    empty = {"total": 0, "first": iso(NOW - 90 * DAY), "last": iso(NOW - 90 * DAY), "days": {}, "recent": []}
    contact = person(counters={"Order Completed": empty})
    assert check({"event": "Order Completed", "last": {"before": "60 days ago"}}, contact) == Evaluation(False, None)
    assert check({"event": "Order Completed", "at_most": 0, "within": "60 days"}, contact) == Evaluation(True, None)


def test_last_occurrence_within_a_relative_range():
    last = NOW - 3 * DAY
    contact = person(counters={"Session": counter(last)})
    active_recently = {"event": "Session", "last": {"after": "7 days ago"}}
    assert check(active_recently, contact) == Evaluation(True, last + 7 * DAY)


def recent_only(entry: dict) -> dict:
    """The entry with its daily buckets emptied: proves an answer came from the exact times."""
    return {**entry, "days": {}}


def test_beyond_the_exact_times_a_decided_answer_still_uses_them():
    # 25 views, one an hour: only the 20 latest exact times are kept.
    times = [NOW - timedelta(hours=h) for h in range(25, 0, -1)]
    entry = counter(*times)
    assert len(entry["recent"]) == 20 and entry["total"] == 25
    contact = person(counters={"Product Viewed": recent_only(entry)})
    result = check({"event": "Product Viewed", "at_least": 3, "within": "7 days"}, contact)
    # True count drops below 3 when the 23rd oldest view leaves the window.
    assert result == Evaluation(True, times[22] + 7 * DAY)
    at_most = check({"event": "Product Viewed", "at_most": 10, "within": "7 days"}, contact)
    assert at_most == Evaluation(False, times[14] + 7 * DAY)  # 10 left once the 15th oldest leaves


def test_all_occurrences_inside_the_window_count_exactly():
    times = [NOW - timedelta(hours=h) for h in range(25, 0, -1)]
    contact = person(counters={"Product Viewed": recent_only(counter(*times))})
    result = check({"event": "Product Viewed", "at_least": 22, "within": "7 days"}, contact)
    assert result.member is True
    # Conservative: the oldest occurrence's exact time is known (first); the true change is later.
    assert result.next_change == times[0].replace(microsecond=0) + 7 * DAY
    assert result.next_change <= times[3] + 7 * DAY
    assert check({"event": "Product Viewed", "exactly": 25, "within": "7 days"}, contact).member
    assert not check({"event": "Product Viewed", "exactly": 24, "within": "7 days"}, contact).member


def test_falls_back_to_daily_buckets_beyond_the_exact_times():
    old = [NOW - 40 * DAY] * 5
    middle = [NOW - 25 * DAY] * 5
    latest = [NOW - timedelta(hours=h) for h in range(20, 0, -1)]
    contact = person(counters={"Product Viewed": counter(*old, *middle, *latest)})
    twenty_three = {"event": "Product Viewed", "at_least": 23, "within": "30 days"}
    result = check(twenty_three, contact)
    assert result.member is True  # 5 + 20 inside the window
    # Never late: the 5 views of 25 days ago leave in 5 days; the next day boundary is sooner.
    assert result.next_change <= NOW + 5 * DAY
    assert result.next_change == datetime(2026, 10, 24, tzinfo=UTC) + 30 * DAY
    assert not member({"event": "Product Viewed", "at_least": 26, "within": "30 days"}, contact)


def test_daily_buckets_count_the_whole_first_day_of_the_window():
    # Day granularity beyond the exact times: 2 hours before the cut-off, same UTC day, still counted.
    early = [datetime(2026, 10, 23, 8, tzinfo=UTC)] * 5  # cut-off is 2026-10-23T12:00Z
    latest = [NOW - timedelta(hours=h) for h in range(20, 0, -1)]
    contact = person(counters={"Product Viewed": counter(*early, *latest)})
    result = check({"event": "Product Viewed", "at_least": 25, "within": "30 days"}, contact)
    # That first day leaves the window at its next midnight + 30 days.
    assert result == Evaluation(True, datetime(2026, 11, 23, tzinfo=UTC))


def test_counters_without_exact_times_use_first_and_daily_buckets():
    legacy = {"total": 3, "first": iso(NOW - 10 * DAY), "last": iso(NOW - DAY),
              "days": {(NOW - 10 * DAY).date().isoformat(): 1, (NOW - DAY).date().isoformat(): 2}}
    contact = person(counters={"Session": legacy})
    result = check({"event": "Session", "at_least": 3, "within": "30 days"}, contact)
    assert result == Evaluation(True, NOW - 10 * DAY + 30 * DAY)
    older = {**legacy, "first": iso(NOW - 50 * DAY), "days": {(NOW - 50 * DAY).date().isoformat(): 1,
                                                              (NOW - DAY).date().isoformat(): 2}}
    assert not member({"event": "Session", "at_least": 3, "within": "30 days"}, person(counters={"Session": older}))
    assert member({"event": "Session", "at_least": 2, "within": "30 days"}, person(counters={"Session": older}))


def true_next_change(times: list[int], now: int, span: int, lo: int, hi: int | None) -> tuple[bool, int | None]:
    def ok(at: int) -> bool:
        n = sum(1 for t in times if t > at - span)
        return n >= lo and (hi is None or n <= hi)

    current = ok(now)
    for expiry in sorted({t + span for t in times if t + span > now}):
        if ok(expiry) != current:
            return current, expiry
    return current, None


@settings(max_examples=examples(300), deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=120 * 86400), min_size=0, max_size=20),
    span_hours=st.integers(min_value=1, max_value=90 * 24),
    count=st.sampled_from(["at_least", "at_most", "exactly"]),
    n=st.integers(min_value=0, max_value=8),
)
def test_windows_over_exact_times_match_a_brute_force_count(offsets, span_hours, count, n):
    now = int(NOW.timestamp())
    times = sorted(now - o for o in offsets)
    contact = person(counters={"E": counter(*(datetime.fromtimestamp(t, UTC) for t in times))} if times else {})
    result = check({"event": "E", count: n, "within": f"{span_hours} hours"}, contact)
    lo, hi = {"at_least": (n, None), "at_most": (0, n), "exactly": (n, n)}[count]
    expected_member, expected_change = true_next_change(times, now, span_hours * 3600, lo, hi)
    assert result.member is expected_member
    assert result.next_change == (datetime.fromtimestamp(expected_change, UTC) if expected_change else None)


@settings(max_examples=examples(150), deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=80 * 86400), min_size=21, max_size=45),
    span_days=st.integers(min_value=1, max_value=60),
    count=st.sampled_from(["at_least", "at_most", "exactly"]),
    n=st.integers(min_value=0, max_value=45),
)
def test_windows_beyond_the_exact_times_are_never_late(offsets, span_days, count, n):
    """Whatever the estimate, nothing changes before the announced moment."""
    now = int(NOW.timestamp())
    times = sorted(now - o for o in offsets)
    contact = person(counters={"E": counter(*(datetime.fromtimestamp(t, UTC) for t in times))})
    condition = {"event": "E", count: n, "within": f"{span_days} days"}
    first = check(condition, contact)
    span = span_days * 86400
    midnights = [int(datetime.combine(datetime.fromtimestamp(t, UTC).date() + timedelta(days=1),
                                      datetime.min.time(), tzinfo=UTC).timestamp()) + span for t in times]
    moments = sorted({m for t in times for m in (t + span - 1, t + span)} | set(midnights) | {m - 1 for m in midnights})
    end = first.next_change.timestamp() if first.next_change else float("inf")
    for moment in moments:
        if now < moment < end:
            assert member(condition, contact, datetime.fromtimestamp(moment, UTC)) is first.member, moment


def test_windows_are_fixed_lengths_across_daylight_saving_changes():
    # Paris springs forward on 29 March 2026: "1 day" is still 24 hours, not a calendar day.
    viewed = datetime(2026, 3, 28, 12, tzinfo=UTC)
    contact = person(traits={"timezone": "Europe/Paris"}, counters={"E": counter(viewed)})
    condition = {"event": "E", "within": "1 day"}
    assert check(condition, contact, viewed + timedelta(hours=1)) == Evaluation(True, viewed + DAY)
    assert member(condition, contact, viewed + DAY - timedelta(seconds=1))
    assert not member(condition, contact, viewed + DAY)


def test_message_engagement_reads_the_messaging_events():
    clicked = EventMatcher("Email Link Clicked", parse_filters(
        ['properties.campaign_id == "promo-2026-11"', 'properties.link_id == "offer-2"'], "w"))
    opened = EventMatcher("Email Opened", parse_filters(['properties.campaign_id == "promo-2026-11"'], "w"))
    contact = person(filtered={clicked.key: counter(NOW - DAY), opened.key: counter(NOW - 2 * DAY, NOW - DAY)})
    assert member({"message": "clicked", "campaign": "promo-2026-11", "link": "offer-2"}, contact)
    assert not member({"message": "clicked", "campaign": "promo-2026-11", "link": "offer-1"}, contact)
    assert check({"message": "opened", "campaign": "promo-2026-11", "at_least": 2, "within": "3 days"},
                 contact) == Evaluation(True, NOW + DAY)
    assert not member({"message": "opened", "campaign": "promo-2026-12"}, contact)


# --- other facts ---------------------------------------------------------------------------------

def test_segment_references_ask_the_context():
    assert member({"segment": "mql"}, person(), members={"mql"})
    assert not member({"segment": "mql"}, person(), members={"vip"})


def test_score_thresholds_and_their_crossing_time():
    calls: list = []
    crossing = NOW + 12 * DAY
    result = check({"score": {"gte": 50}}, person(), score=60, crossings={50.0: crossing}, calls=calls)
    assert result == Evaluation(True, crossing) and calls == [50.0]
    assert check({"score": {"gte": 50}}, person(), score=49.9) == Evaluation(False, None)
    assert member({"score": {"gt": 10, "lte": 20}}, person(), score=20)
    assert not member({"score": {"gt": 10, "lte": 20}}, person(), score=10)
    assert member({"score": {"lt": 10}}, person(), score=3)
    both = check({"score": {"gt": 10, "lte": 20}}, person(), score=25,
                 crossings={10.0: NOW + 30 * DAY, 20.0: NOW + 5 * DAY})
    assert both == Evaluation(False, NOW + 5 * DAY)
    stale = check({"score": {"gte": 50}}, person(), score=60, crossings={50.0: NOW - DAY})
    assert stale.next_change is None


@pytest.mark.parametrize("condition,expected", [
    ({"stage": "lead"}, True),
    ({"stage": "LEAD"}, True),
    ({"stage": "mql"}, False),
    ({"stage": {"in": ["customer", "Lead"]}}, True),
    ({"tag": "vip"}, True),
    ({"tag": "churned"}, False),
    ({"consent": "email"}, True),
    ({"consent": "sms"}, False),
    ({"consent": "push"}, False),
    ({"reachable": "email"}, True),
    ({"reachable": "sms"}, False),  # consent denied
    ({"rfm": "at_risk"}, True),
    ({"rfm": {"in": ["loyal", "hibernating"]}}, False),
    ({"persona": "barista"}, True),
    ({"persona": {"in": ["student"]}}, False),
])
def test_facts_on_the_contact(condition, expected):
    contact = person(stage="Lead", tags=["VIP", "newsletter"], persona="Barista", rfm={"class": "at_risk"},
                     consent={"email": {"status": "granted"}, "sms": {"status": "denied"}},
                     identifiers=["email:ada@example.com", "phone:+33612345678"])
    assert member(condition, contact) is expected


@pytest.mark.parametrize("identifiers,consent,expected", [
    (["email:ada@example.com"], {}, True),  # no decision yet: reachable
    (["email:ada@example.com"], {"email": {"status": "granted"}}, True),
    (["email:ada@example.com"], {"email": {"status": "DENIED"}}, False),
    (["user:42"], {"email": {"status": "granted"}}, False),
    ([], {}, False),
])
def test_reachable_needs_an_address_and_no_refusal(identifiers, consent, expected):
    assert member({"reachable": "email"}, person(identifiers=identifiers, consent=consent)) is expected


def test_empty_contact_facts_never_match():
    for condition in ({"stage": "lead"}, {"tag": "vip"}, {"consent": "email"}, {"rfm": "loyal"},
                      {"persona": "barista"}, {"reachable": "sms"}):
        assert check(condition, person()) == Evaluation(False, None)


@pytest.mark.parametrize("group,spec,expected", [
    ("3", 3, True),
    (3, "3", True),
    ("4", 3, False),
    ("converted", "converted", True),
    ("Converted", ["converted", 6], True),
    ("6", [5, 6], True),
    (None, [1, 2, 3, 4, 5, 6], False),
])
def test_campaign_groups(group, spec, expected):
    condition = {"campaign_group": {"campaign": "promo-2026-11", "group": spec}}
    assert member(condition, person(), groups={"promo-2026-11": group}) is expected
    assert not member(condition, person(), groups={"other": group})


# --- combinations ------------------------------------------------------------------------------

def timed(days_left: float, member_now: bool) -> dict:
    """A condition whose answer flips `days_left` days from NOW (by a date trait)."""
    return {"trait": f"t{days_left}", ("within_last" if member_now else "more_than_ago"): "30 days"}


def timed_traits(*spans: float) -> dict:
    return {f"t{d}": iso(NOW - 30 * DAY + d * DAY) for d in spans}


def test_all_true_changes_when_any_part_does():
    contact = person(traits=timed_traits(3, 9), tags=["vip"])
    result = check({"all": [timed(3, True), timed(9, True), {"tag": "vip"}]}, contact)
    assert result == Evaluation(True, NOW + 3 * DAY)


def test_all_false_waits_for_every_false_part():
    contact = person(traits=timed_traits(3, 9))
    assert check({"all": [timed(3, False), timed(9, False)]}, contact) == Evaluation(False, NOW + 9 * DAY)
    # A part time cannot change keeps the whole false for good.
    assert check({"all": [timed(3, False), {"tag": "vip"}]}, contact) == Evaluation(False, None)


def test_any_mirrors_all():
    contact = person(traits=timed_traits(3, 9), tags=["vip"])
    assert check({"any": [timed(3, True), timed(9, True)]}, contact) == Evaluation(True, NOW + 9 * DAY)
    assert check({"any": [timed(3, True), {"tag": "vip"}]}, contact) == Evaluation(True, None)
    assert check({"any": [timed(3, False), timed(9, False)]}, contact) == Evaluation(False, NOW + 3 * DAY)
    assert check({"any": [timed(3, False), {"tag": "other"}]}, contact) == Evaluation(False, NOW + 3 * DAY)


def test_not_inverts_and_keeps_the_moment():
    contact = person(traits=timed_traits(3))
    assert check({"not": timed(3, True)}, contact) == Evaluation(False, NOW + 3 * DAY)
    assert check({"not": {"tag": "vip"}}, contact) == Evaluation(True, None)


def test_combined_answers_are_never_late():
    contact = person(traits=timed_traits(2, 5, 8))
    condition = {"any": [{"all": [timed(2, True), {"not": timed(5, True)}]}, timed(8, False)]}
    first = check(condition, contact)
    step = timedelta(hours=6)
    moment = NOW + step
    while first.next_change and moment < first.next_change:
        assert member(condition, contact, moment) is first.member
        moment += step


def test_now_must_carry_a_time_zone():
    with pytest.raises(ValueError, match="time zone"):
        evaluate(segment({"tag": "vip"}), person(), datetime(2026, 11, 22, 12), context())


def test_now_in_another_zone_is_the_same_instant():
    contact = person(counters={"E": counter(NOW - 2 * DAY)})
    paris_now = NOW.astimezone(ZoneInfo("Europe/Paris"))
    assert check({"event": "E", "within": "3 days"}, contact, paris_now) == Evaluation(True, NOW + DAY)


# --- what a counter keeps: only the exact times the catalog's counts need ---------------------

def _kept(moments, exact: int, buckets: bool) -> dict:
    entries: dict = {}
    for moment in sorted(moments):
        bump_counter(entries, "e", iso(moment), 400, exact, buckets)
    return entries["e"]


@pytest.mark.parametrize("count", [{}, {"at_least": 2}, {"at_least": 3}, {"at_least": 5}, {"at_most": 0},
                                   {"at_most": 1}, {"at_most": 3}, {"exactly": 1}, {"exactly": 2}])
@pytest.mark.parametrize("within_days", [1, 2, 7, 30])
def test_a_count_is_decided_exactly_by_the_times_its_condition_needs(count, within_days):
    """Kept as the catalog keeps it (`exact_times_needed` latest times, no more), a windowed
    count answers what the whole history answers, and flips at the same moment: at the
    boundary of the window and of the count, over seeded random histories."""
    import random

    definition = segment({"event": "e", "within": f"{within_days} days", **count})
    c = definition.condition
    need = c.exact_times_needed
    largest = max(c.at_least, c.at_most + 1 if c.at_most is not None else 0)
    assert need == (largest if largest > 1 else 0)
    rng = random.Random(f"{within_days}{sorted(count.items())}")
    for _ in range(60):
        history = [NOW - timedelta(seconds=rng.randint(60, 40 * 86400)) for _ in range(rng.randint(1, 12))]
        if rng.random() < 0.3:  # occurrences right at the edge of the window
            history.append(NOW - timedelta(days=within_days) + timedelta(seconds=rng.choice([-1, 1])))
        full = person(counters={"e": _kept(history, 1000, True)})
        lean = person(counters={"e": _kept(history, need, need > 0)})
        assert "days" not in lean.counters["e"] or need > 0
        assert len(lean.counters["e"].get("recent", [])) <= need
        for moment in (NOW, NOW + timedelta(hours=rng.randint(1, 24 * within_days))):
            assert evaluate(definition, lean, moment, context()) == evaluate(definition, full, moment, context())


def test_the_latest_occurrence_alone_decides_a_window_without_exact_times():
    contact = person(counters={"e": _kept([NOW - 10 * DAY, NOW - 3 * DAY], 0, False)})
    assert "recent" not in contact.counters["e"] and "days" not in contact.counters["e"]
    assert check({"event": "e", "within": "7 days"}, contact) == Evaluation(True, NOW + 4 * DAY)
    assert check({"event": "e", "within": "2 days", "at_most": 0}, contact) == Evaluation(True, None)
    assert check({"event": "e", "within": "2 days"}, contact) == Evaluation(False, None)


def test_fewer_exact_times_than_a_new_count_needs_fall_back_to_day_buckets():
    """A definition raised the count after these times were kept (until its back-fill
    recounts them): the day buckets still count every occurrence of the window's days."""
    contact = person(counters={"e": _kept([NOW - 5 * DAY, NOW - 4 * DAY, NOW - 3 * DAY, NOW - 2 * DAY], 2, True)})
    assert check({"event": "e", "within": "7 days", "at_least": 4}, contact).member
    assert not check({"event": "e", "within": "7 days", "at_least": 5}, contact).member
