"""Dates at the ends of the calendar, from a client's traits or a marketer's bounds, are
evaluated like any other: never an exception in the stream handler (which would fail the
record on every retry)."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.property_runs import examples
from chalicelib.domain.contact import Contact
from chalicelib.domain.segments.evaluator import EvaluationContext, evaluate
from chalicelib.domain.segments.language import parse_segment

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
CONTEXT = EvaluationContext(lambda s: False, lambda c, n: 0.0, lambda c, t, n: None, lambda c, s: None)
ZONES = ["Pacific/Kiritimati", "Etc/GMT+12", "UTC"]
EDGES = ["9999-12-31", "0001-01-01", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"]
TRAIT_CONDITIONS = [("before", "9999-12-31"), ("after", "9999-12-31"), ("before", "0001-01-01"),
                    ("after", "0001-01-01"), ("within_last", "100 years"), ("more_than_ago", "100 years"),
                    ("before", "in 100 years"), ("after", "100 years ago"), ("anniversary", "today")]


def person(zone: str, value: str) -> Contact:
    return Contact(id="c", created_at="2026-01-01T00:00:00.000Z", traits={"day": value, "timezone": zone},
                   counters={"Order Completed": {"total": 2, "first": value, "last": value}})


def segment(conditions) -> object:
    return parse_segment({"id": "s", "name": "S", "conditions": conditions})


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("value", EDGES)
@pytest.mark.parametrize("op,bound", TRAIT_CONDITIONS)
def test_a_trait_at_the_end_of_the_calendar_is_compared_not_an_overflow(zone, value, op, bound):
    result = evaluate(segment({"trait": "day", op: bound}), person(zone, value), NOW, CONTEXT)
    assert result.member in (True, False)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("bounds", [{"after": "9999-12-31"}, {"before": "0001-01-01"}, {"after": "100 years ago"},
                                    {"before": "in 100 years"}])
@pytest.mark.parametrize("stamp", ["first", "last"])
def test_first_and_last_occurrences_at_the_edges(zone, bounds, stamp):
    for value in EDGES:
        evaluate(segment({"event": "Order Completed", stamp: bounds}), person(zone, value), NOW, CONTEXT)


def test_after_the_last_day_of_the_calendar_is_never():
    result = evaluate(segment({"trait": "day", "after": "9999-12-31"}), person("UTC", "9999-12-31T23:59:59Z"),
                      NOW, CONTEXT)
    assert result.member is False


@settings(max_examples=examples(200), deadline=None)
@given(day=st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)), zone=st.sampled_from(ZONES),
       condition=st.sampled_from(TRAIT_CONDITIONS), as_instant=st.booleans())
def test_generated_trait_dates_evaluate_without_an_exception(day, zone, condition, as_instant):
    value = f"{day.isoformat()}T00:00:00Z" if as_instant else day.isoformat()
    op, bound = condition
    evaluate(segment({"trait": "day", op: bound}), person(zone, value), NOW, CONTEXT)
