"""RFM: how recently, how often and how much a customer buys, and the class that follows.

Each purchase updates `contact.rfm` (first and last purchase, orders, revenue). A scheduled
job computes quintile cut points over all customers; a contact's scores 1–5 (5 is best)
come from where its values fall, and a class table over the (r, f, m) scores names it
(champions, loyal, at risk…). Contacts who never bought have no scores and no class.

Cut points: with the values sorted, cut k (k = 1..4) is the value at position
ceil(k·n/5). Frequency and monetary score 1 + the number of cuts the value exceeds;
recency (whole days since the last purchase, fewer is better) scores 5 − the number of cuts
it exceeds. Equal values always get equal scores: when most customers bought once, all
one-time buyers share F = 1 and two orders already rank high. With fewer than five
customers the cuts are still defined (the single customer is every cut: R 5, F 1, M 1, a
new customer). A document may fix the cut points of a dimension instead (`cuts:`), e.g.
recency by 7/30/90/180 days, which suits a shop with few customers.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import product
from typing import Iterable

from chalicelib.domain.contact import Contact, counter_name
from chalicelib.domain.definition_errors import (
    expect_duration,
    DefinitionError,
    expect_list,
    expect_mapping,
    expect_name,
    is_number,
    load_document,
    show,
    unknown_fields,
)

DIMENSIONS = ("recency", "frequency", "monetary")
SCORES = (1, 2, 3, 4, 5)
DOCUMENT_FIELDS = ("purchase_event", "revenue_property", "recompute", "cuts", "classes", "description")
CLASS_FIELDS = ("class", "r", "f", "m", "description")
CLASS_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
RANGE = re.compile(r"^\s*([1-5])\s*-\s*([1-5])\s*$")

# The usual recency × frequency grid; the first row that fits wins.
#          F=1             F=2            F=3             F=4        F=5
#   R=5    new             potential      potential       champions  champions
#   R=4    promising       potential      potential       loyal      champions
#   R=3    about_to_sleep  about_to_sleep need_attention  loyal      loyal
#   R=2    hibernating     hibernating    at_risk         at_risk    at_risk
#   R=1    lost            lost           at_risk         at_risk    at_risk
DEFAULT_CLASSES = [
    {"class": "champions", "r": 5, "f": "4-5"},
    {"class": "champions", "r": 4, "f": 5},
    {"class": "loyal", "r": "3-4", "f": "4-5"},
    {"class": "potential_loyalists", "r": "4-5", "f": "2-3"},
    {"class": "new", "r": 5, "f": 1},
    {"class": "promising", "r": 4, "f": 1},
    {"class": "need_attention", "r": 3, "f": 3},
    {"class": "about_to_sleep", "r": 3, "f": "1-2"},
    {"class": "at_risk", "r": "1-2", "f": "3-5"},
    {"class": "hibernating", "r": 2, "f": "1-2"},
    {"class": "lost", "r": 1, "f": "1-2"},
]


@dataclass(frozen=True)
class RfmClass:
    name: str
    r: frozenset[int] = frozenset(SCORES)
    f: frozenset[int] = frozenset(SCORES)
    m: frozenset[int] = frozenset(SCORES)

    def fits(self, r: int, f: int, m: int) -> bool:
        return r in self.r and f in self.f and m in self.m


@dataclass(frozen=True)
class RfmConfig:
    purchase_event: str = "Order Completed"
    revenue_property: str = "revenue"
    recompute: timedelta = timedelta(days=1)
    classes: tuple[RfmClass, ...] = ()
    cuts: dict = field(default_factory=dict)  # dimension -> fixed cut points (4 numbers)


@dataclass(frozen=True)
class Thresholds:
    """Four cut points per dimension (None: no customer yet), from `customers` buyers."""

    recency: tuple[float, ...] | None = None
    frequency: tuple[float, ...] | None = None
    monetary: tuple[float, ...] | None = None
    customers: int = 0
    computed_at: str | None = None

    def to_dict(self) -> dict:
        return {
            "recency": list(self.recency) if self.recency is not None else None,
            "frequency": list(self.frequency) if self.frequency is not None else None,
            "monetary": list(self.monetary) if self.monetary is not None else None,
            "customers": self.customers,
            "computed_at": self.computed_at,
        }

    @classmethod
    def from_dict(cls, data: dict | None) -> "Thresholds":
        data = data or {}

        def cuts(key: str) -> tuple[float, ...] | None:
            values = data.get(key)
            return tuple(float(v) for v in values) if values is not None else None

        return cls(cuts("recency"), cuts("frequency"), cuts("monetary"),
                   int(data.get("customers") or 0), data.get("computed_at"))


# -- parsing ---------------------------------------------------------------------------


def parse_rfm(doc: object) -> RfmConfig:
    """Validate an RFM document (mapping or YAML text); every problem is reported at once."""
    problems: list[str] = []
    data = expect_mapping(load_document(doc), "", problems)
    if data is None:
        raise DefinitionError(problems)
    unknown_fields(data, DOCUMENT_FIELDS, "", problems)
    purchase_event = expect_name(data.get("purchase_event", "Order Completed"), "purchase_event", problems)
    revenue_property = expect_name(data.get("revenue_property", "revenue"), "revenue_property", problems)
    recompute = expect_duration(data.get("recompute", "1 day"), "recompute", problems)
    cuts = _fixed_cuts(data.get("cuts"), problems)
    classes = _classes(data["classes"] if data.get("classes") is not None else DEFAULT_CLASSES, problems)
    if problems:
        raise DefinitionError(problems)
    return RfmConfig(purchase_event, revenue_property, recompute, classes, cuts)


def _fixed_cuts(value: object, problems: list[str]) -> dict:
    if value is None:
        return {}
    entry = expect_mapping(value, "cuts", problems)
    if entry is None:
        return {}
    unknown_fields(entry, DIMENSIONS, "cuts", problems)
    cuts = {}
    for dimension in DIMENSIONS:
        if entry.get(dimension) is None:
            continue
        where = f"cuts.{dimension}"
        points = entry[dimension]
        if (not isinstance(points, list) or len(points) != 4 or not all(is_number(p) for p in points)):
            problems.append(f"{where}: {show(points)} is not a list of 4 numbers")
        elif any(a > b for a, b in zip(points, points[1:])):
            problems.append(f"{where}: {show(points)} must be in increasing order")
        else:
            cuts[dimension] = tuple(float(p) for p in points)
    return cuts


def _classes(value: object, problems: list[str]) -> tuple[RfmClass, ...]:
    items = expect_list(value, "classes", problems)
    if items is None:
        return ()
    classes = []
    for i, item in enumerate(items):
        where = f"classes[{i}]"
        entry = expect_mapping(item, where, problems)
        if entry is None:
            continue
        unknown_fields(entry, CLASS_FIELDS, where, problems)
        name = expect_name(entry.get("class"), f"{where}.class", problems)
        if name is not None and not CLASS_NAME.match(name):
            problems.append(f"{where}.class: {show(name)} must be lower case letters, digits, - or _")
            name = None
        scores = {key: _scores(entry.get(key), f"{where}.{key}", problems) for key in ("r", "f", "m")}
        if name is not None and all(s is not None for s in scores.values()):
            classes.append(RfmClass(name, scores["r"], scores["f"], scores["m"]))
    if len(classes) == len(items):
        uncovered = [(r, f, m) for r, f, m in product(SCORES, SCORES, SCORES)
                     if not any(c.fits(r, f, m) for c in classes)]
        if uncovered:
            shown = ", ".join(f"r={r} f={f} m={m}" for r, f, m in uncovered[:5])
            more = f" and {len(uncovered) - 5} more" if len(uncovered) > 5 else ""
            problems.append(f"classes: no class for {shown}{more} (end with a catch-all class)")
    return tuple(classes)


def _scores(value: object, where: str, problems: list[str]) -> frozenset[int] | None:
    """A score 1–5, a range "2-4", or a list of scores; absent means any score."""
    if value is None:
        return frozenset(SCORES)
    if isinstance(value, str):
        match = RANGE.match(value)
        if match and int(match.group(1)) <= int(match.group(2)):
            return frozenset(range(int(match.group(1)), int(match.group(2)) + 1))
    elif isinstance(value, list) and value and all(v in SCORES and not isinstance(v, bool) for v in value):
        return frozenset(value)
    elif value in SCORES and not isinstance(value, bool):
        return frozenset([value])
    problems.append(f"{where}: {show(value)} is not a score 1-5, a range such as \"4-5\" or a list of scores")
    return None


# -- purchases and classes -------------------------------------------------------------


def record_purchase(config: RfmConfig, contact: Contact, event: dict) -> bool:
    """Fold a purchase into `contact.rfm`; False (and nothing changed) for any other event.

    Call it once per event, after `contact.apply_event` accepted it (redeliveries filtered).
    A missing or non-numeric revenue counts the order with no revenue.
    """
    if counter_name(event) != config.purchase_event:
        return False
    at = event["timestamp"]
    revenue = _revenue((event.get("properties") or {}).get(config.revenue_property))
    rfm = contact.rfm if contact.rfm is not None else {}
    rfm["orders"] = int(rfm.get("orders") or 0) + 1
    rfm["revenue"] = round(float(rfm.get("revenue") or 0) + revenue, 6)
    rfm["first_purchase"] = min(rfm.get("first_purchase") or at, at)
    rfm["last_purchase"] = max(rfm.get("last_purchase") or at, at)
    contact.rfm = rfm
    return True


def _revenue(value: object) -> float:
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else 0.0
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return 0.0
        return number if math.isfinite(number) else 0.0
    return 0.0


def _bought(rfm: dict | None) -> bool:
    return bool(rfm) and int(rfm.get("orders") or 0) > 0 and bool(rfm.get("last_purchase"))


def _days_since(last_purchase: str, now: datetime) -> int:
    moment = datetime.fromisoformat(last_purchase.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max((now - moment) // timedelta(days=1), 0)


def _quintile_cuts(values: list[float]) -> tuple[float, ...] | None:
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)
    return tuple(float(ordered[math.ceil(k * n / 5) - 1]) for k in (1, 2, 3, 4))


def compute_thresholds(config: RfmConfig, rfm_values: Iterable[dict], now: datetime) -> Thresholds:
    """Quintile cut points over every contact that bought; fixed cuts from the document win."""
    recency: list[float] = []
    frequency: list[float] = []
    monetary: list[float] = []
    for rfm in rfm_values:
        if not _bought(rfm):
            continue
        recency.append(_days_since(rfm["last_purchase"], now))
        frequency.append(float(rfm.get("orders") or 0))
        monetary.append(float(rfm.get("revenue") or 0))
    computed = {"recency": _quintile_cuts(recency), "frequency": _quintile_cuts(frequency),
                "monetary": _quintile_cuts(monetary)}
    computed.update(config.cuts)
    stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    return Thresholds(computed["recency"], computed["frequency"], computed["monetary"], len(recency), stamp)


def _significant(value: float, digits: int = 3) -> float:
    """The value rounded to `digits` significant digits: the bin it is counted in."""
    if value == 0:
        return 0.0
    return float(f"{value:.{digits}g}")


@dataclass
class RfmDistribution:
    """How customers spread over recency, frequency and money, kept as counts per value
    rounded to three significant digits, so that a recompute over millions of customers
    can run in slices with a state of bounded size. Quintile cuts taken from it differ from
    exact ones by at most the rounding (0.5 %)."""

    recency: dict = field(default_factory=dict)  # rounded value (as text) -> customers
    frequency: dict = field(default_factory=dict)
    monetary: dict = field(default_factory=dict)
    customers: int = 0

    def add(self, rfm: dict | None, now: datetime) -> None:
        if not _bought(rfm):
            return
        self.customers += 1
        for counts, value in ((self.recency, _days_since(rfm["last_purchase"], now)),
                              (self.frequency, float(rfm.get("orders") or 0)),
                              (self.monetary, float(rfm.get("revenue") or 0))):
            key = repr(_significant(value))
            counts[key] = counts.get(key, 0) + 1

    @staticmethod
    def _cuts(counts: dict) -> tuple[float, ...] | None:
        n = sum(counts.values())
        if not n:
            return None
        ordered = sorted((float(k), c) for k, c in counts.items())
        cuts = []
        for k in (1, 2, 3, 4):
            rank, seen = math.ceil(k * n / 5), 0
            for value, count in ordered:
                seen += count
                if seen >= rank:
                    cuts.append(value)
                    break
        return tuple(cuts)

    def thresholds(self, config: RfmConfig, now: datetime) -> Thresholds:
        computed = {"recency": self._cuts(self.recency), "frequency": self._cuts(self.frequency),
                    "monetary": self._cuts(self.monetary)}
        computed.update(config.cuts)
        stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        return Thresholds(computed["recency"], computed["frequency"], computed["monetary"], self.customers, stamp)

    def to_dict(self) -> dict:
        return {"recency": self.recency, "frequency": self.frequency, "monetary": self.monetary,
                "customers": self.customers}

    @classmethod
    def from_dict(cls, data: dict | None) -> "RfmDistribution":
        data = data or {}
        return cls(dict(data.get("recency") or {}), dict(data.get("frequency") or {}),
                   dict(data.get("monetary") or {}), int(data.get("customers") or 0))


def thresholds_due(config: RfmConfig, thresholds: Thresholds | None, now: datetime) -> bool:
    """Whether the cut points are older than the document's `recompute` interval."""
    if thresholds is None or not thresholds.computed_at:
        return True
    computed = datetime.fromisoformat(thresholds.computed_at.replace("Z", "+00:00"))
    return now - computed >= config.recompute


def _higher_is_better(value: float, cuts: tuple[float, ...]) -> int:
    return 1 + sum(1 for c in cuts if value > c)


def _lower_is_better(value: float, cuts: tuple[float, ...]) -> int:
    return 5 - sum(1 for c in cuts if value > c)


def classify(config: RfmConfig, rfm: dict | None, thresholds: Thresholds, now: datetime) -> dict:
    """Scores 1–5 and the class; all None for a contact who never bought.

    A dimension without cut points (no customer when they were computed) treats the
    contact as the whole distribution: a first customer is a new customer.
    """
    if not _bought(rfm):
        return {"r": None, "f": None, "m": None, "class": None}
    days = _days_since(rfm["last_purchase"], now)
    orders = float(rfm.get("orders") or 0)
    revenue = float(rfm.get("revenue") or 0)
    r = _lower_is_better(days, config.cuts.get("recency") or thresholds.recency or (days,) * 4)
    f = _higher_is_better(orders, config.cuts.get("frequency") or thresholds.frequency or (orders,) * 4)
    m = _higher_is_better(revenue, config.cuts.get("monetary") or thresholds.monetary or (revenue,) * 4)
    name = next((c.name for c in config.classes if c.fits(r, f, m)), None)
    return {"r": r, "f": f, "m": m, "class": name}
