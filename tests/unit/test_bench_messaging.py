"""The messaging benchmark's pure arithmetic: billed Lambda time, index write units, the
cost per 1,000 emails and the budget verdict, the AWS duration model, the zone picker."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bench.messaging import (
    PerEmail,
    Prices,
    billed_seconds,
    cost_per_1000,
    index_units_of_write,
    lambda_estimate_seconds,
    percentile,
    zone_at_local_hours,
)


def test_lambda_bills_each_invocation_rounded_up_to_the_millisecond():
    assert billed_seconds([0.0101, 0.002, 0.0]) == pytest.approx(0.011 + 0.002 + 0.0)


BY_CONTACT = {"IndexName": "by_contact", "KeySchema": [{"AttributeName": "contact_id"}, {"AttributeName": "at"}],
              "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["lane", "sent_at"]}}
BY_PROVIDER = {"IndexName": "by_provider", "KeySchema": [{"AttributeName": "provider_id"}],
               "Projection": {"ProjectionType": "KEYS_ONLY"}}
ALL = {**BY_CONTACT, "Projection": {"ProjectionType": "ALL"}}


def item(**attrs):
    return {"id": {"S": "m1"}, "contact_id": {"S": "c1"}, "at": {"S": "t"}, **{k: {"S": v} for k, v in attrs.items()}}


def test_an_index_is_written_only_when_the_write_changes_what_it_projects():
    queued, claimed = item(lane="m", status="queued"), item(lane="m", status="sending", body="x" * 2000)
    sent = item(lane="m", status="sent", body="x" * 2000, sent_at="t2", provider_id="p1")
    assert index_units_of_write(None, queued, BY_CONTACT, ["id"]) == 1  # the item appears
    assert index_units_of_write(queued, claimed, BY_CONTACT, ["id"]) == 0  # nothing projected changed
    assert index_units_of_write(claimed, sent, BY_CONTACT, ["id"]) == 1  # sent_at appears
    assert index_units_of_write(claimed, sent, BY_PROVIDER, ["id"]) == 1  # sparse: the key appears
    assert index_units_of_write(queued, claimed, BY_PROVIDER, ["id"]) == 0
    # ALL: every change rewrites the index item, by its size (2,0xx bytes: 2 WRU)
    assert index_units_of_write(queued, claimed, ALL, ["id"]) == 2
    # a changed index key: the old index item deleted and a new one put
    moved = {**queued, "contact_id": {"S": "c2"}}
    assert index_units_of_write(queued, moved, BY_CONTACT, ["id"]) == 2
    assert index_units_of_write(queued, None, BY_CONTACT, ["id"]) == 1  # deleted


def test_cost_per_1000_adds_each_service_at_its_price():
    prices = Prices()
    per = PerEmail(rru=8.0, wru=4.0, index_wru=4.0, sqs_requests=1.5, invocations=0.1, lambda_seconds=0.05,
                   s3_gets=0.01, sns_publishes=1.0)
    cost = cost_per_1000(per, 512, prices)
    parts = cost["parts"]
    assert parts["dynamodb_reads"] == pytest.approx(8 * 1000 * 0.125 / 1e6)
    assert parts["dynamodb_writes"] == pytest.approx(8 * 1000 * 0.625 / 1e6)
    assert parts["sqs"] == pytest.approx(1.5 * 1000 * 0.40 / 1e6)
    assert parts["lambda_requests"] == pytest.approx(0.1 * 1000 * 0.20 / 1e6)
    assert parts["lambda_duration"] == pytest.approx(0.05 * 0.5 * 0.0000133334 * 1000)  # 512 MB = 0.5 GB, arm64
    assert parts["s3_gets"] == pytest.approx(0.01 * 1000 * 0.0004 / 1000)
    assert parts["sns"] == pytest.approx(1000 * 0.50 / 1e6)
    assert cost["total"] == pytest.approx(sum(parts.values()))
    assert cost["share_of_ses"] == pytest.approx(cost["total"] / 0.10)


def test_x86_lambda_time_costs_more_than_arm64():
    per = PerEmail(lambda_seconds=0.1)
    arm, x86 = cost_per_1000(per, 512), cost_per_1000(per, 512, x86=True)
    assert x86["parts"]["lambda_duration"] == pytest.approx(0.1 * 0.5 * 0.0000166667 * 1000)
    assert x86["total"] > arm["total"]


def test_the_budget_is_a_tenth_of_ses_and_is_strict():
    prices = Prices()
    assert prices.budget_per_1000 == pytest.approx(0.01)
    # 16 WRU per email = $0.01 per 1,000 exactly: not under the budget.
    assert not cost_per_1000(PerEmail(wru=16.0), 512, prices)["within_budget"]
    assert cost_per_1000(PerEmail(wru=15.9), 512, prices)["within_budget"]


def test_duration_model_stretches_cpu_by_the_memory_share_and_adds_round_trips():
    seconds = lambda_estimate_seconds(0.010, {"dynamodb": 10, "ses": 1}, 512, {"dynamodb": 5.0, "ses": 30.0})
    assert seconds == pytest.approx(0.010 * 1769 / 512 + 0.050 + 0.030)
    # At a full vCPU or more, CPU time is not stretched.
    assert lambda_estimate_seconds(0.010, {}, 3008, {}) == pytest.approx(0.010)


def test_percentile_is_nearest_rank():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([1.0, 2.0], 95) == 2.0
    assert percentile([], 50) == 0.0


def test_zone_picker_finds_a_zone_at_the_asked_local_hours():
    noon_utc = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
    assert zone_at_local_hours(noon_utc, (12,), ("Asia/Tokyo", "Europe/London")) == "Europe/London"
    assert zone_at_local_hours(noon_utc, (21,), ("Europe/London", "Asia/Tokyo")) == "Asia/Tokyo"
    with pytest.raises(LookupError):
        zone_at_local_hours(noon_utc, (3,), ("Europe/London",))
