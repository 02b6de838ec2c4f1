"""The journeys benchmark's pure arithmetic: transitions and waits read from an execution
history (retries billed), the budget verdict, the history and open-execution quotas, the event
source's requests, the cost per 1,000 enrollments, the latency split, the zone picker."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from bench.journeys import (
    JourneyPrices,
    PerEnrollment,
    _cart_latency,
    _events_per_round,
    budget_of,
    cost_per_1000,
    entries_per_day_at_quota,
    event_source_requests,
    history_counts,
    latency_summary,
    open_executions,
    outcome_of,
    rounds_within_history,
    zone_at_hour,
)

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def entered(name: str, kind: str = "Task") -> dict:
    return {"type": f"{kind}StateEntered", "stateEnteredEventDetails": {"name": name}}


def task(name: str, outcome: str = "TaskSucceeded", scheduled: int = 1) -> list[dict]:
    return [entered(name), *[{"type": "TaskScheduled"}, {"type": "TaskStarted"}, {"type": "TaskSubmitted"}] * scheduled,
            {"type": outcome}, {"type": "TaskStateExited"}]


def route() -> list[dict]:
    return [entered("Route", "Choice"), {"type": "ChoiceStateExited"}]


def abandoned_cart_history(advance_attempts: int = 1) -> list[dict]:
    """Start, two event waits that time out, done: the abandoned cart without a purchase."""
    return [{"type": "ExecutionStarted"},
            *task("Advance", scheduled=advance_attempts), *route(), *task("WaitForEvent", "TaskTimedOut"),
            *task("Advance"), *route(), *task("WaitForEvent", "TaskTimedOut"),
            *task("Advance"), *route(), entered("Done", "Succeed"), {"type": "SucceedStateExited"},
            {"type": "ExecutionSucceeded"}]


def test_every_state_entered_is_a_transition_and_the_waits_and_advances_are_counted():
    counts = history_counts(abandoned_cart_history())
    assert counts["states"] == 9 and counts["retries"] == 0 and counts["transitions"] == 9
    assert counts["waits"] == 2 and counts["advances"] == 3
    assert counts["entered"] == {"Advance": 3, "Route": 3, "WaitForEvent": 2, "Done": 1}
    assert counts["history_events"] == len(abandoned_cart_history())


def test_a_task_scheduled_again_in_the_same_state_is_a_retry_and_billed():
    counts = history_counts(abandoned_cart_history(advance_attempts=3))
    assert counts["states"] == 9 and counts["retries"] == 2 and counts["transitions"] == 11


def test_the_budget_is_three_transitions_per_wait_plus_the_start_and_the_end():
    ok = budget_of(history_counts(abandoned_cart_history()), advance_messages=3)
    assert ok["within_transitions"] and ok["transitions_per_wait"] == 3.0 and ok["fixed"] == 3
    assert ok["within_calls"] and ok["calls_per_run"] == 1.0
    retried = budget_of(history_counts(abandoned_cart_history(advance_attempts=2)), advance_messages=3)
    assert not retried["within_transitions"] and retried["transitions_per_wait"] == 3.5
    twice = budget_of(history_counts(abandoned_cart_history()), advance_messages=4)  # one Advance redelivered
    assert not twice["within_calls"] and twice["calls_per_run"] == pytest.approx(4 / 3)
    no_wait = history_counts([*task("Advance"), *route(), entered("Done", "Succeed")])
    assert budget_of(no_wait, 1)["within_transitions"] and no_wait["transitions"] == 3


def test_history_events_per_round_run_from_one_advance_to_the_next():
    history = abandoned_cart_history()
    rounds = _events_per_round(history)
    assert rounds == [14, 14]  # Advance (6), Route (2), the wait task (6)


def test_rounds_within_the_history_quota():
    history = abandoned_cart_history()
    fixed = len(history) - sum(_events_per_round(history))
    assert fixed == 12  # ExecutionStarted, the last Advance (6), Route (2), Done (2), ExecutionSucceeded
    assert rounds_within_history(fixed, 14.0) == (25_000 - 12) // 14 == 1784
    assert rounds_within_history(10, 10.0, limit=100) == 9
    assert rounds_within_history(10, 0.0) == 0


def test_open_executions_follow_entries_times_days_open():
    assert open_executions(10_000, 30) == 300_000
    assert entries_per_day_at_quota(30) == pytest.approx(1_000_000 / 30)
    assert entries_per_day_at_quota(0) == float("inf")


def test_the_event_source_receives_and_deletes_once_per_batch():
    assert event_source_requests(0, 10) == 0
    assert event_source_requests(3, 1) == 6
    assert event_source_requests(3, 10) == 2  # one partial batch
    assert event_source_requests(3, 10, full=True) == pytest.approx(0.6)  # a share of full batches


def test_cost_per_1000_enrollments_adds_each_service_at_its_price():
    prices = JourneyPrices()
    assert prices.sfn_transition == pytest.approx(0.000025) and prices.wru == pytest.approx(0.625 / 1e6)
    per = PerEnrollment(transitions=9, invocations=6, invocations_batched=0.6, lambda_seconds=0.5, sqs_requests=15,
                        sqs_requests_batched=6, sqs_fifo_requests=3, sqs_fifo_requests_batched=1.2, rru=16, wru=26)
    cost = cost_per_1000(per, prices, memory_mb=512)
    parts = cost["parts"]
    assert parts["step_functions"] == pytest.approx(9 * 0.025)
    assert parts["lambda_requests"] == pytest.approx(6 * 0.20 / 1000)
    assert parts["lambda_duration"] == pytest.approx(0.5 * 0.5 * 0.0000133334 * 1000)
    assert parts["sqs"] == pytest.approx(15 * 0.40 / 1000) and parts["sqs_fifo"] == pytest.approx(3 * 0.50 / 1000)
    assert parts["dynamodb_reads"] == pytest.approx(16 * 0.125 / 1000)
    assert parts["dynamodb_writes"] == pytest.approx(26 * 0.625 / 1000)
    assert cost["total"] == pytest.approx(sum(parts.values()))
    batched = cost_per_1000(per, prices, memory_mb=512, batched=True)["parts"]
    assert batched["lambda_requests"] == pytest.approx(0.6 * 0.20 / 1000)
    assert batched["sqs"] == pytest.approx(6 * 0.40 / 1000) and batched["step_functions"] == parts["step_functions"]
    assert PerEnrollment(transitions=1, rru=2).plus(PerEnrollment(transitions=2, wru=1)) == \
        PerEnrollment(transitions=3, rru=2, wru=1)


def test_the_latency_split_takes_the_machines_wait_out():
    def at(seconds: float, kind: str, name: str | None = None) -> dict:
        event = {"type": kind, "timestamp": T0 + timedelta(seconds=seconds)}
        if name:
            event["stateEnteredEventDetails"] = {"name": name}
        return event

    history = [at(0.5, "ExecutionStarted"), at(0.6, "TaskStateEntered", "Advance"),
               at(0.9, "TaskStateEntered", "WaitForEvent"), at(6.9, "TaskTimedOut")]
    t0 = T0.timestamp()
    split = _cart_latency(t0, t0 + 7.4, history)
    assert split["wait"] == pytest.approx(6.0) and split["total"] == pytest.approx(7.4)
    assert split["pipeline"] == pytest.approx(1.4)
    assert split["entry"] == pytest.approx(0.5) and split["first_advance"] == pytest.approx(0.4)
    assert split["after_wait"] == pytest.approx(0.5)


def test_latency_summary_is_in_milliseconds_by_nearest_rank():
    assert latency_summary([]) == {"n": 0}
    summary = latency_summary([0.1, 0.2, 0.3, 0.4, 1.0])
    assert summary == {"n": 5, "p50": pytest.approx(300.0), "p95": pytest.approx(1000.0), "max": pytest.approx(1000.0)}


@pytest.mark.parametrize("hour", range(24))
def test_the_zone_picker_finds_a_zone_at_the_wanted_local_hour(hour):
    now = T0.replace(hour=hour)
    for hours in (range(1, 8), range(10, 21), range(12, 17)):
        assert now.astimezone(ZoneInfo(zone_at_hour(now, hours))).hour in hours


def test_an_outcome_lists_the_nodes_that_acted_in_order():
    trace = [SimpleNamespace(node="wait-for-purchase", decision="waiting"),
             SimpleNamespace(node="email-reminder", decision="sent"),
             SimpleNamespace(node="sms-consent", decision="branched"),
             SimpleNamespace(node="tell-crm", decision="notified")]
    record = SimpleNamespace(enrollment=SimpleNamespace(status="exited", trace=trace, converted_at=T0))
    assert outcome_of(record) == {"status": "exited", "acted": ["email-reminder", "tell-crm"], "converted": True}
