"""Shared fixtures: the repository root on sys.path and a clean, offline AWS environment."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Never reach a real AWS account from a test, whatever the developer's shell has.
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
    os.environ.pop(_name, None)
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
})


import pytest  # noqa: E402

from tests.property_runs import load_profile  # noqa: E402

HYPOTHESIS_PROFILE = load_profile()


def pytest_report_header(config):
    return f"hypothesis profile: {HYPOTHESIS_PROFILE}"


@pytest.fixture
def aws_tables():
    """moto in-process with every resource of infrastructure/template.yaml created."""
    from moto import mock_aws

    from local.provision import provision

    with mock_aws():
        yield provision("test")


@pytest.fixture
def app_env(aws_tables, monkeypatch):
    """Environment for importing the Chalice app against the moto tables."""
    from chalicelib.entrypoints import runtime

    monkeypatch.setenv("MERCURIO_STAGE", "test")
    monkeypatch.setenv("MERCURIO_WRITE_KEY", "test-write-key-1")
    monkeypatch.setenv("MERCURIO_ADMIN_TOKEN", "test-admin-token-1")
    monkeypatch.setenv("MERCURIO_EVENTS_STREAM_ARN", aws_tables["EventsTable.StreamArn"])
    runtime.reset()
    yield aws_tables
    runtime.reset()
