"""A/B tests on messages: sticky assignment of contacts to arms (and a holdout), and a winner
declared only by a test that stays valid however often its results are looked at.

Assignment. A contact's arm is a pure function of (experiment id, contact id): the first 8
bytes of SHA-256 of both, modulo 10,000, fall into one arm's share of basis points. The same
contact always lands in the same arm (retries, re-sends, other Lambdas), different experiments
shuffle independently, and nothing needs to be stored to stay sticky. Percentages have at most
two decimals and must sum to exactly 100. Changing them after launch moves some contacts:
freeze them at launch.

The winner. Watching a classical test and stopping when p < 0.05 inflates the false-positive
rate far above 5 % (with 20 looks, to roughly 25 %); "the highest rate wins" declares a winner
every time, even between identical arms. We use the mixture sequential probability ratio test
(mSPRT; Robbins 1970; Johari, Koomen, Pekelis & Walsh, "Always Valid Inference", 2017), the
test behind Optimizely's stats engine:

    For arms A and B with n_A, n_B contacts and conversion rates p_A, p_B, let
        theta_hat = p_B - p_A,
        V = p (1 - p) (1/n_A + 1/n_B)     (p: the pooled rate, the variance under "no difference"),
    and mix the alternative over theta ~ N(0, tau^2). The likelihood ratio of
    theta_hat ~ N(theta, V) against theta = 0, integrated over that mixture, is

        Lambda = sqrt(V / (V + tau^2)) * exp( tau^2 * theta_hat^2 / (2 V (V + tau^2)) ).

    Under "no difference" Lambda is a non-negative martingale with mean 1, so by Ville's
    inequality P(Lambda ever reaches 1/alpha) <= alpha, at however many looks, whenever they
    happen. The always-valid p-value is the running minimum of 1/Lambda over the looks.

The normal approximation of the proportions makes the guarantee asymptotic, so nothing is
declared before each arm has `min_exposed` contacts. tau is the size of difference the test is
most sensitive to (default 3 percentage points); any tau keeps the error rate, it only moves
the power. With k arms, all k(k-1)/2 pairs are tested at alpha / pairs (Bonferroni), and an
arm wins only when it beats every other arm. The holdout, which receives nothing, measures the
campaign's lift and never wins. Once declared, a winner stays declared.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import combinations
from typing import Mapping, Sequence

HOLDOUT = "holdout"
BUCKETS = 10_000  # basis points: percentages with up to two decimals
DEFAULT_ALPHA = 0.05
DEFAULT_TAU = 0.03
DEFAULT_MIN_EXPOSED = 100


class ExperimentError(ValueError):
    """An experiment definition that cannot run; the message says what to fix."""


@dataclass(frozen=True)
class Arm:
    name: str
    percent: Decimal


@dataclass(frozen=True)
class Experiment:
    id: str
    arms: tuple[Arm, ...]  # the holdout, if any, is the arm named "holdout"

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ExperimentError("an experiment needs an id")
        names = [arm.name for arm in self.arms]
        if any(not isinstance(n, str) or not n.strip() for n in names):
            raise ExperimentError("every arm needs a name")
        if len(set(names)) != len(names):
            raise ExperimentError(f"arm names must be unique, got {names}")
        if len([n for n in names if n != HOLDOUT]) < 2:
            raise ExperimentError("an experiment needs at least two arms besides the holdout")
        for arm in self.arms:
            if arm.percent < 0 or arm.percent != arm.percent.quantize(Decimal("0.01")):
                raise ExperimentError(f"arm {arm.name!r}: a percentage is between 0 and 100 with at most two decimals")
        total = sum((arm.percent for arm in self.arms), Decimal(0))
        if total != 100:
            raise ExperimentError(f"the arms' percentages must sum to 100, they sum to {total.normalize():f}")


def parse_experiment(experiment_id: str, arms: Mapping[str, object]) -> Experiment:
    """Build an experiment from {"A": 45, "B": 45, "holdout": 10}; percentages as numbers or text."""
    if not isinstance(arms, Mapping):
        raise ExperimentError("arms must be a mapping of arm name to percentage")
    parsed = []
    for name, value in arms.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise ExperimentError(f"arm {name!r}: the percentage must be a number, got {value!r}")
        try:
            percent = Decimal(str(value))
        except InvalidOperation:
            raise ExperimentError(f"arm {name!r}: {value!r} is not a number") from None
        if not percent.is_finite():
            raise ExperimentError(f"arm {name!r}: {value!r} is not a finite number")
        parsed.append(Arm(str(name), percent))
    return Experiment(experiment_id, tuple(parsed))


def bucket_of(experiment_id: str, contact_id: str) -> int:
    digest = hashlib.sha256(f"{experiment_id}\x00{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(experiment: Experiment, contact_id: str) -> str:
    """The contact's arm: the same answer every time, for every caller."""
    bucket, upper = bucket_of(experiment.id, contact_id), 0
    for arm in experiment.arms:
        upper += int(arm.percent * 100)
        if bucket < upper:
            return arm.name
    raise AssertionError("percentages sum to 100, so every bucket has an arm")  # pragma: no cover


# -- the sequential test ----------------------------------------------------------------------


@dataclass(frozen=True)
class ArmResult:
    name: str
    exposed: int  # contacts who received the arm's message (or, for the holdout, would have)
    converted: int

    @property
    def rate(self) -> float:
        return self.converted / self.exposed if self.exposed else 0.0


def log_mixture_likelihood_ratio(a: ArmResult, b: ArmResult, tau: float = DEFAULT_TAU) -> float:
    """log Lambda of the mSPRT for "B converts differently from A" (see the module's docstring)."""
    if a.exposed <= 0 or b.exposed <= 0:
        return 0.0
    pooled = (a.converted + b.converted) / (a.exposed + b.exposed)
    variance = pooled * (1 - pooled) * (1 / a.exposed + 1 / b.exposed)
    if variance <= 0:  # nobody (or everybody) converted in both arms: no evidence either way
        return 0.0
    theta = b.rate - a.rate
    t2 = tau * tau
    return 0.5 * math.log(variance / (variance + t2)) + t2 * theta * theta / (2 * variance * (variance + t2))


def always_valid_p_value(a: ArmResult, b: ArmResult, tau: float = DEFAULT_TAU, previous: float = 1.0) -> float:
    """min(previous, 1 / Lambda): stays valid when recomputed at every look."""
    log_lr = log_mixture_likelihood_ratio(a, b, tau)
    return min(previous, 1.0, math.exp(-log_lr) if log_lr > 0 else 1.0)


@dataclass(frozen=True)
class Verdict:
    winner: str | None
    code: str  # winner, no_winner_yet, too_few
    reason: str
    p_values: Mapping[str, float] = field(default_factory=dict)  # "A|B" -> always-valid p-value


def pair_key(a: str, b: str) -> str:
    return "|".join(sorted((a, b)))


def evaluate(results: Sequence[ArmResult], alpha: float = DEFAULT_ALPHA, tau: float = DEFAULT_TAU,
             min_exposed: int = DEFAULT_MIN_EXPOSED, previous: Verdict | None = None) -> Verdict:
    """Judge the arms at this look. Pass the previous verdict so p-values keep their running
    minimum and a declared winner stays declared."""
    if previous is not None and previous.winner is not None:
        return previous
    arms = [r for r in results if r.name != HOLDOUT]
    if len(arms) < 2:
        return Verdict(None, "too_few", "A test needs at least two arms besides the holdout.")
    earlier = previous.p_values if previous is not None else {}
    short = [r.name for r in arms if r.exposed < min_exposed]
    if short:
        return Verdict(None, "too_few", f"Too early to judge: arm(s) {', '.join(short)} reached fewer than "
                                        f"{min_exposed} contacts.", dict(earlier))
    pairs = list(combinations(arms, 2))
    level = alpha / len(pairs)
    p_values = {pair_key(a.name, b.name): always_valid_p_value(a, b, tau, earlier.get(pair_key(a.name, b.name), 1.0))
                for a, b in pairs}
    for arm in arms:
        others = [o for o in arms if o is not arm]
        if all(arm.rate > o.rate and p_values[pair_key(arm.name, o.name)] <= level for o in others):
            rates = ", ".join(f"{r.name} {r.rate:.2%}" for r in arms)
            return Verdict(arm.name, "winner",
                           f"{arm.name} converts better than every other arm ({rates}); the chance of such a "
                           f"result without a real difference is below {alpha:.0%}, however often it was checked.",
                           p_values)
    best = max(arms, key=lambda r: r.rate)
    return Verdict(None, "no_winner_yet",
                   f"No winner yet: {best.name} leads with {best.rate:.2%}, but the difference is not yet "
                   "larger than chance allows. Keep the test running.", p_values)
