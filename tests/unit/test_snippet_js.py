"""Runs the website snippet's JavaScript unit tests (tests/unit/js/*.test.js) with Node's test runner."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

JS_TESTS = Path(__file__).parent / "js"
REPO = Path(__file__).resolve().parents[2]


def test_snippet_javascript_unit_tests():
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js 18+ is required for the snippet's unit tests: apt-get install -y nodejs", pytrace=False)
    files = sorted(str(p.relative_to(REPO)) for p in JS_TESTS.glob("*.test.js"))
    assert files, f"no *.test.js files under {JS_TESTS}"
    result = subprocess.run(
        [node, "--test", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
