"""`make test` installs or names everything the tests need beyond Python, Node.js included."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = (ROOT / "Makefile").read_text()


def _prerequisites(target: str) -> list[str]:
    return re.search(rf"^{re.escape(target)}:(.*)$", MAKEFILE, re.M).group(1).split()


def test_node_and_npm_are_system_packages_of_the_tests():
    tools = dict(entry.split(":") for entry in re.search(r"^SYSTEM_TOOLS := (.*)$", MAKEFILE, re.M).group(1).split())
    assert tools == {"chromium": "chromium", "shellcheck": "shellcheck", "node": "nodejs", "npm": "npm"}
    for target in ("test", "test-unit", "test-e2e", "sdk-deps"):
        assert "system-deps" in _prerequisites(target), target


def test_without_apt_get_the_missing_packages_are_named(tmp_path):
    make = shutil.which("make")
    assert make, "make is required"
    result = subprocess.run([make, "-s", "system-deps", "SYSTEM_TOOLS=no-such-tool:no-such-package"],
                            cwd=ROOT, env={"PATH": str(tmp_path)}, capture_output=True, text=True)
    assert result.returncode != 0
    assert "no-such-package" in result.stderr and "install them" in result.stderr


def test_the_readme_names_what_make_test_needs():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start"):readme.index("```sh", readme.index("## Quick start"))]
    assert "Nothing else" not in quick_start
    assert "Node.js" in quick_start and "npm" in quick_start
