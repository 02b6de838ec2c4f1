"""A/B tests: sticky assignment, and winners declared only by a test valid under repeated looks.

The simulations use fixed seeds, so they are deterministic: the bounds are loose enough to hold
for any reasonable seed, and the exact counts never change between runs.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from decimal import Decimal

import pytest

from chalicelib.domain.messaging.experiments import (
    HOLDOUT,
    Arm,
    ArmResult,
    Experiment,
    ExperimentError,
    always_valid_p_value,
    assign,
    evaluate,
    log_mixture_likelihood_ratio,
    parse_experiment,
)


def test_assignment_is_sticky_and_independent_of_the_caller():
    experiment = parse_experiment("welcome-subject", {"A": 45, "B": 45, HOLDOUT: 10})
    first = [assign(experiment, f"contact-{i}") for i in range(500)]
    again = [assign(parse_experiment("welcome-subject", {"A": 45, "B": 45, HOLDOUT: 10}), f"contact-{i}")
             for i in range(500)]
    assert first == again


def test_assignment_follows_the_percentages():
    experiment = parse_experiment("welcome-subject", {"A": 45, "B": 45, HOLDOUT: 10})
    counts = Counter(assign(experiment, f"contact-{i}") for i in range(20_000))
    assert abs(counts["A"] / 20_000 - 0.45) < 0.02
    assert abs(counts["B"] / 20_000 - 0.45) < 0.02
    assert abs(counts[HOLDOUT] / 20_000 - 0.10) < 0.01


def test_two_experiments_shuffle_contacts_independently():
    one = parse_experiment("one", {"A": 50, "B": 50})
    two = parse_experiment("two", {"A": 50, "B": 50})
    same = sum(assign(one, f"c{i}") == assign(two, f"c{i}") for i in range(10_000))
    assert abs(same / 10_000 - 0.5) < 0.03  # an unrelated shuffle agrees half the time


def test_fractional_percentages_and_a_zero_arm():
    experiment = parse_experiment("thirds", {"A": "33.33", "B": "33.33", "C": "33.34", "D": 0})
    counts = Counter(assign(experiment, f"c{i}") for i in range(9_000))
    assert counts["D"] == 0
    assert all(abs(counts[arm] / 9_000 - 1 / 3) < 0.03 for arm in "ABC")


@pytest.mark.parametrize("arms, message", [
    ({"A": 50, "B": 40}, "sum to 100, they sum to 90"),
    ({"A": 60, "B": 50}, "sum to 100, they sum to 110"),
    ({"A": 100}, "at least two arms"),
    ({"A": 90, HOLDOUT: 10}, "at least two arms"),
    ({"A": "33.333", "B": "66.667"}, "at most two decimals"),
    ({"A": -10, "B": 110}, "between 0 and 100"),
    ({"A": "half", "B": 50}, "is not a number"),
    ({"A": True, "B": 50}, "must be a number"),
    ({"A": "NaN", "B": 50}, "not a finite number"),
    ({"": 50, "B": 50}, "needs a name"),
])
def test_invalid_percentages_are_refused_with_a_reason(arms, message):
    with pytest.raises(ExperimentError, match=message):
        parse_experiment("x", arms)


def test_duplicate_arm_names_are_refused():
    with pytest.raises(ExperimentError, match="unique"):
        Experiment("x", (Arm("A", Decimal(50)), Arm("A", Decimal(50))))


def test_the_likelihood_ratio_matches_the_closed_form():
    a, b = ArmResult("A", 1000, 100), ArmResult("B", 1000, 130)
    pooled = 230 / 2000
    v = pooled * (1 - pooled) * (2 / 1000)
    tau2 = 0.03 ** 2
    expected = math.sqrt(v / (v + tau2)) * math.exp(tau2 * 0.03 ** 2 / (2 * v * (v + tau2)))
    assert math.exp(log_mixture_likelihood_ratio(a, b, tau=0.03)) == pytest.approx(expected)
    assert log_mixture_likelihood_ratio(a, b) == log_mixture_likelihood_ratio(b, a)  # symmetric in theta


def test_no_conversions_anywhere_is_no_evidence():
    assert log_mixture_likelihood_ratio(ArmResult("A", 500, 0), ArmResult("B", 500, 0)) == 0
    assert always_valid_p_value(ArmResult("A", 500, 0), ArmResult("B", 500, 0)) == 1.0


def test_the_p_value_keeps_its_running_minimum():
    strong = always_valid_p_value(ArmResult("A", 2000, 200), ArmResult("B", 2000, 300))
    weak_now = always_valid_p_value(ArmResult("A", 4000, 400), ArmResult("B", 4000, 410), previous=strong)
    assert weak_now == strong


def test_highest_rate_alone_never_wins():
    verdict = evaluate([ArmResult("A", 1000, 100), ArmResult("B", 1000, 110)])
    assert verdict.winner is None
    assert verdict.code == "no_winner_yet"
    assert "B leads with 11.00%" in verdict.reason


def test_too_early_to_judge():
    verdict = evaluate([ArmResult("A", 99, 1), ArmResult("B", 500, 300)])
    assert verdict.winner is None and verdict.code == "too_few" and "A" in verdict.reason


def test_a_clear_difference_wins_and_stays_declared():
    verdict = evaluate([ArmResult("A", 3000, 300), ArmResult("B", 3000, 450), ArmResult(HOLDOUT, 600, 40)])
    assert verdict.winner == "B" and verdict.code == "winner"
    assert "B converts better than every other arm" in verdict.reason
    later = evaluate([ArmResult("A", 6000, 700), ArmResult("B", 6000, 700)], previous=verdict)
    assert later.winner == "B"


def test_the_holdout_never_wins():
    verdict = evaluate([ArmResult("A", 3000, 300), ArmResult("B", 3000, 310), ArmResult(HOLDOUT, 3000, 900)])
    assert verdict.winner is None


def test_with_three_arms_the_winner_must_beat_both_others():
    # B is clearly better than A, but not distinguishable from C.
    results = [ArmResult("A", 3000, 300), ArmResult("B", 3000, 450), ArmResult("C", 3000, 440)]
    assert evaluate(results).winner is None
    results = [ArmResult("A", 3000, 300), ArmResult("B", 3000, 450), ArmResult("C", 3000, 300)]
    assert evaluate(results).winner == "B"


def _simulate(rate_a: float, rate_b: float, seed: int, experiments: int = 300, looks: int = 20,
              step: int = 250) -> tuple[Counter, int]:
    """Run `experiments` A/B tests, each looked at after every `step` contacts per arm.
    Returns the winners declared by `evaluate`, and how many a naive z-test at each look
    would have declared (to show the repeated-looks problem the sequential test avoids)."""
    rng = random.Random(seed)
    winners: Counter = Counter()
    naive = 0
    for _ in range(experiments):
        conv_a = conv_b = exposed = 0
        verdict = None
        naive_declared = False
        for _ in range(looks):
            conv_a += sum(rng.random() < rate_a for _ in range(step))
            conv_b += sum(rng.random() < rate_b for _ in range(step))
            exposed += step
            verdict = evaluate([ArmResult("A", exposed, conv_a), ArmResult("B", exposed, conv_b)], previous=verdict)
            pooled = (conv_a + conv_b) / (2 * exposed)
            se = math.sqrt(pooled * (1 - pooled) * 2 / exposed)
            naive_declared |= se > 0 and abs(conv_b - conv_a) / exposed / se > 1.96
        if verdict.winner:
            winners[verdict.winner] += 1
        naive += naive_declared
    return winners, naive


def test_without_a_real_difference_repeated_looks_keep_the_false_positive_rate_near_alpha():
    winners, naive = _simulate(0.10, 0.10, seed=20261202)
    false_positive_rate = sum(winners.values()) / 300
    assert false_positive_rate <= 0.08  # alpha is 0.05; mSPRT is conservative in practice
    # The same data judged by a classical test at every look "finds" a winner far more often.
    assert naive / 300 >= 0.15


def test_a_real_large_difference_is_detected_for_the_right_arm():
    winners, _ = _simulate(0.10, 0.15, seed=7, experiments=100)
    assert winners["B"] >= 95
    assert winners["A"] == 0

