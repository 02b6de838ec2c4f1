"""How hard the property-based tests search, chosen by the Hypothesis profile in use.

`make test` (and CI) runs the `repeatable` profile: derandomised (the same examples on every
machine and every run, so a failure in CI fails the same way on a laptop) and without the
example database (nothing found on one run changes the next). `make test-explore` runs the
`explore` profile: random, with the database (a failure found is replayed first next time),
and `EXPLORE_FACTOR` (default 10) times more examples per test.
"""
from __future__ import annotations

import os

from hypothesis import settings

PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
EXPLORE_FACTOR = int(os.environ.get("EXPLORE_FACTOR", "10"))

settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)


def load_profile() -> str:
    name = os.environ.get(PROFILE_VARIABLE) or "repeatable"
    settings.load_profile(name)  # an unknown name fails loudly (InvalidArgument)
    return name


def examples(count: int) -> int:
    """The examples a test asks for in the repeatable profile, scaled when exploring."""
    return count * EXPLORE_FACTOR if os.environ.get(PROFILE_VARIABLE) == "explore" else count
