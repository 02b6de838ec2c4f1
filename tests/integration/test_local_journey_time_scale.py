"""`make run`'s journey clock: waits pass 600 times faster unless the operator chooses
(MERCURIO_JOURNEY_TIME_SCALE, also as `make run MERCURIO_JOURNEY_TIME_SCALE=60`)."""
from __future__ import annotations

import os

import pytest

from chalicelib import config
from local.run import DEFAULT_JOURNEY_TIME_SCALE, configure_environment


@pytest.fixture
def environment(monkeypatch):
    """configure_environment writes the process environment: give it a copy to write."""
    monkeypatch.setattr(os, "environ", dict(os.environ))
    monkeypatch.delenv("MERCURIO_JOURNEY_TIME_SCALE", raising=False)
    config.settings.cache_clear()
    yield os.environ
    config.settings.cache_clear()


def test_the_local_stack_runs_journeys_600_times_faster_by_default(environment):
    configure_environment("http://127.0.0.1:1", "write-key", "admin-token")
    assert environment["MERCURIO_JOURNEY_TIME_SCALE"] == DEFAULT_JOURNEY_TIME_SCALE == "600"
    assert config.settings().journey_time_scale == 600.0


@pytest.mark.parametrize("chosen", ["1", "60"])
def test_the_operator_chooses_the_scale(environment, chosen):
    environment["MERCURIO_JOURNEY_TIME_SCALE"] = chosen
    configure_environment("http://127.0.0.1:1", "write-key", "admin-token")
    assert environment["MERCURIO_JOURNEY_TIME_SCALE"] == chosen
    assert config.settings().journey_time_scale == float(chosen)
