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


# -- audience exports as jobs --------------------------------------------------------------------

def export_jobs(members: int, budget_store=None):
    from chalicelib.adapters.s3_exports import S3AudienceExporter
    from chalicelib.domain.contact import Contact
    from chalicelib.services.audiences import AudienceExports
    from tests.unit.fakes import FakeContactRepository, FakeMembershipStore, FakeS3Client

    store = budget_store or FakeDefinitionStore()
    store.put("segment", "vip", {"id": "vip", "name": "VIP"}, "2026-11-01T00:00:00.000Z")
    memberships, repo, s3 = FakeMembershipStore(), FakeContactRepository(), FakeS3Client()
    for i in range(members):
        repo.create(Contact(id=f"c{i:05d}", created_at="t", traits={"email": f"u{i}@example.com"}))
        memberships.enter("vip", f"c{i:05d}", "2026-11-01T00:00:00.000Z")
    exports = AudienceExports(memberships, repo, S3AudienceExporter("data", client=s3), store, FakeClock(NOW))
    ids = iter(range(1000))
    jobs = JobRunner(store, CountingWork(pages=1), FakeClock(NOW), new_id=lambda: f"n{next(ids)}",
                     monotonic=Ticks(), exports=exports)
    return jobs, repo, s3


def test_a_small_export_finishes_within_the_first_budget():
    jobs, _, s3 = export_jobs(members=30)
    job = jobs.start("audience-export", {"segment": "vip", "format": "csv", "traits": ["plan"]})
    assert job["status"] == "done" and job["slices"] == 1
    assert job["result"]["rows"] == 30 and job["result"]["key"].startswith("exports/vip/vip-csv-")
    assert job["params"] == {"segment": "vip", "format": "csv", "traits": ["plan"]}
    assert jobs.resume() == []


def test_a_large_export_goes_on_in_the_schedule_and_its_result_is_the_export():
    jobs, repo, s3 = export_jobs(members=2600)
    started = jobs.start("audience-export", {"segment": "vip", "format": "audience"}, budget_seconds=1.5)
    assert started["status"] == "running" and started["progress"] == {"members_read": 1000, "parts": 2, "rows": 1000}
    assert started["id"].startswith("audience-export-")
    assert [r["status"] for r in jobs.resume(budget_seconds=1000)] == ["done"]
    done = jobs.get(started["id"])
    assert done["slices"] == 6 and done["progress"]["members_read"] == 2600
    result = done["result"]
    assert result["rows"] == 2600 and result["skipped_without_identifier"] == 0 and result["format"] == "audience"
    body = s3.objects[("data", result["key"])].decode()
    assert body.splitlines()[0] == "email_sha256,phone_sha256" and len(body.splitlines()) == 2601
    assert s3.keys(f"exports/vip/.parts/{started['id']}/")[-1].endswith("/000006.csv")
    assert repo.calls["get_many"] == 26  # one batched read per 100 members


def test_export_parameters_are_refused_before_anything_is_stored():
    from chalicelib.services.contacts import BadQuery, NotFound

    store = FakeDefinitionStore()
    jobs, *_ = export_jobs(members=1, budget_store=store)
    with pytest.raises(NotFound):
        jobs.start("audience-export", {"segment": "nope", "format": "csv"})
    with pytest.raises(BadQuery, match="format"):
        jobs.start("audience-export", {"segment": "vip", "format": "xls"})
    with pytest.raises(BadQuery, match="traits"):
        jobs.start("audience-export", {"segment": "vip", "format": "csv", "traits": "email"})
    assert store.get_state("jobs-running") is None
    with pytest.raises(JobError, match="not configured"):
        runner(CountingWork(pages=1)).start("audience-export", {"segment": "vip"})
