"""The property-based tests are repeatable unless exploring is asked for."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_profile_is_derandomised_without_a_database():
    if os.environ.get("HYPOTHESIS_PROFILE", "repeatable") != "repeatable":
        return  # `make test-explore` runs this file too
    assert settings.default.derandomize is True
    assert settings.default.database is None


def _draws() -> list:
    seen = []

    @settings(max_examples=20)
    @given(st.integers())
    def probe(value):
        seen.append(value)

    probe()
    return seen


def test_two_runs_draw_the_same_examples():
    if os.environ.get("HYPOTHESIS_PROFILE", "repeatable") != "repeatable":
        return
    assert _draws() == _draws()


def test_make_test_explore_scales_the_examples_and_randomises():
    code = ("from tests.property_runs import examples, load_profile; from hypothesis import settings; "
            "print(load_profile(), examples(150), settings.default.derandomize)")
    env = {**os.environ, "HYPOTHESIS_PROFILE": "explore", "EXPLORE_FACTOR": "4"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["explore", "600", "False"]
    makefile = (ROOT / "Makefile").read_text()
    assert "test-explore:" in makefile and "HYPOTHESIS_PROFILE=explore" in makefile
