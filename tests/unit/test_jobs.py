"""Resumable jobs (RFM recompute, campaign reports) and the composition root."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.bootstrap import bootstrap
from chalicelib.domain import rfm
from chalicelib.services.jobs import JobError, JobRunner
from tests.unit.fakes import FakeClock, FakeDefinitionStore

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


class CountingWork:
    """A job kind's work: `pages` slices, each summing one page of numbers."""

    def __init__(self, pages: int, fail_at: int | None = None):
        self.pages = pages
        self.fail_at = fail_at
        self.calls = 0

    def rfm_slice(self, cursor, partial):
        self.calls += 1
        page = int(cursor or 0)
        if self.fail_at == page:
            raise JobError("no rfm definition")
        total = (partial or {"total": 0})["total"] + page
        step = {"cursor": str(page + 1) if page + 1 < self.pages else None, "partial": {"total": total},
                "progress": {"pages": page + 1}}
        if step["cursor"] is None:
            step["result"] = {"total": total}
        return step

    def check_campaign(self, campaign_id):
        if campaign_id != "known":
            raise JobError(f"no campaign {campaign_id!r} is defined")


class Ticks:
    """A monotonic clock that moves one second per reading."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 1.0
        return self.t


def runner(work, store=None):
    ids = iter(range(1000))
    return JobRunner(store or FakeDefinitionStore(), work, FakeClock(NOW), new_id=lambda: f"n{next(ids)}",
                     monotonic=Ticks())


def test_a_job_runs_slices_within_its_budget_and_the_schedule_finishes_it():
    work = CountingWork(pages=10)
    jobs = runner(work)
    started = jobs.start("rfm", budget_seconds=2.5)
    assert started["status"] == "running" and 0 < started["progress"]["pages"] < 10
    assert "cursor" not in started and "partial" not in started  # internals stay internal
    reports = jobs.resume(budget_seconds=1000)
    assert [r["status"] for r in reports] == ["done"]
    done = jobs.get(started["id"])
    assert done["result"] == {"total": sum(range(10))} and done["progress"] == {"pages": 10}
    assert done["slices"] == 10 and work.calls == 10
    assert jobs.resume() == []  # nothing left to continue


def test_a_failing_slice_ends_the_job_with_its_reason():
    jobs = runner(CountingWork(pages=5, fail_at=2))
    job = jobs.start("rfm", budget_seconds=1000)
    assert job["status"] == "failed" and job["error"] == "no rfm definition"
    assert jobs.resume() == []


def test_unknown_kinds_and_campaigns_are_refused_before_anything_is_stored():
    store = FakeDefinitionStore()
    jobs = runner(CountingWork(pages=1), store)
    with pytest.raises(JobError, match="no job kind"):
        jobs.start("nope")
    with pytest.raises(JobError, match="no campaign 'other'"):
        jobs.start("campaign-groups", {"campaign": "other"})
    with pytest.raises(JobError, match="needs the campaign"):
        jobs.start("campaign-groups", {})
    assert store.get_state("jobs-running") is None


def test_latest_names_the_newest_job_of_a_kind_and_parameters():
    jobs = runner(CountingWork(pages=1))
    assert jobs.latest("rfm", {}) is None
    first = jobs.start("rfm")
    second = jobs.start("rfm")
    assert jobs.latest("rfm", {})["id"] == second["id"] != first["id"]


def test_unknown_job_ids_are_not_found():
    with pytest.raises(LookupError):
        runner(CountingWork(pages=1)).get("rfm-missing")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_distribution_gives_the_exact_quintiles_on_whole_numbers(seed):
    generator = random.Random(seed)
    config = rfm.parse_rfm({})
    customers = []
    for _ in range(generator.randint(1, 400)):
        customers.append({"orders": generator.randint(1, 40), "revenue": generator.randint(1, 900),
                          "last_purchase": (NOW - timedelta(days=generator.randint(0, 700))).strftime(
                              "%Y-%m-%dT%H:%M:%S.000Z")})
    exact = rfm.compute_thresholds(config, customers, NOW)
    distribution = rfm.RfmDistribution()
    for c in customers[: len(customers) // 2]:
        distribution.add(c, NOW)
    distribution = rfm.RfmDistribution.from_dict(distribution.to_dict())  # as a job stores it between slices
    for c in customers[len(customers) // 2:]:
        distribution.add(c, NOW)
    sliced = distribution.thresholds(config, NOW)
    assert (sliced.recency, sliced.frequency, sliced.monetary, sliced.customers) == \
        (exact.recency, exact.frequency, exact.monetary, exact.customers)


def test_the_distribution_ignores_contacts_that_never_bought():
    distribution = rfm.RfmDistribution()
    distribution.add({}, NOW)
    distribution.add(None, NOW)
    assert distribution.customers == 0
    assert distribution.thresholds(rfm.parse_rfm({}), NOW).recency is None


def test_bootstrap_uses_overrides_and_refuses_unknown_names():
    from chalicelib import config

    clock = FakeClock(NOW)
    store = FakeDefinitionStore()
    settings = config.Settings(stage="t", events_table="e", contacts_table="c", identities_table="i",
                               definitions_table="d", memberships_table="m", schedule_table="s", data_bucket="b",
                               sources=(), admin_token=None, admin_token_parameter=None, event_ttl_days=1,
                               ip_truncate=False, counter_days=90, definitions_cache_seconds=0,
                               webhooks_allow_private=False)
    services = bootstrap(settings, clock=clock, definition_store=store)
    assert services.definitions.store is store and services.definitions.clock is clock
    assert services.jobs.store is store
    assert bootstrap(settings) is not bootstrap(settings)  # nothing is shared between two roots
    with pytest.raises(TypeError, match="nothing called colck"):
        bootstrap(settings, colck=clock)
