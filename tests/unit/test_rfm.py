"""RFM: purchases recorded on the contact, quintile cut points, scores and classes."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from chalicelib.domain.contact import Contact
from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.rfm import (
    DEFAULT_CLASSES,
    Thresholds,
    classify,
    compute_thresholds,
    parse_rfm,
    record_purchase,
    thresholds_due,
)

DEFINITIONS = Path(__file__).resolve().parents[2] / "chalicelib" / "definitions"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
_ids = itertools.count()


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def order(at: datetime, name: str = "Order Completed", **properties) -> dict:
    return {"type": "track", "event": name, "properties": properties, "context": {},
            "timestamp": iso(at), "messageId": f"m{next(_ids)}"}


def rfm(days_ago: float, orders: int, revenue: float) -> dict:
    last = NOW - timedelta(days=days_ago)
    return {"first_purchase": iso(last - 400 * DAY), "last_purchase": iso(last), "orders": orders, "revenue": revenue}


def problems_of(doc) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_rfm(doc)
    return caught.value.problems


@pytest.fixture
def config():
    return parse_rfm({})


# -- definitions -----------------------------------------------------------------------


def test_the_shipped_example_parses_with_the_default_grid():
    shipped = parse_rfm(yaml.safe_load((DEFINITIONS / "rfm.yaml").read_text(encoding="utf-8")))
    assert shipped.purchase_event == "Order Completed"
    assert shipped.revenue_property == "revenue"
    assert shipped.recompute == DAY
    assert shipped.classes == parse_rfm({"classes": DEFAULT_CLASSES}).classes == parse_rfm({}).classes
    named = {c.name for c in shipped.classes}
    assert {"champions", "loyal", "potential_loyalists", "at_risk", "hibernating", "lost", "new"} <= named


def test_problems_are_collected_and_placed():
    problems = problems_of({
        "purchase_events": "Order Completed",
        "recompute": "daily",
        "cuts": {"recency": [30, 7, 90, 180], "frequency": [1, 2], "money": [1, 2, 3, 4]},
        "classes": [{"class": "Champions!", "r": 6}, {"class": "x", "f": "5-3"}, {"class": "y", "m": [1, "2"]},
                    {"clas": "z"}],
    })
    assert 'purchase_events: unknown field (did you mean "purchase_event"?)' in problems
    assert any(p.startswith('recompute: "daily" is not a duration') for p in problems)
    assert "cuts.recency: [30, 7, 90, 180] must be in increasing order" in problems
    assert "cuts.frequency: [1, 2] is not a list of 4 numbers" in problems
    assert any(p.startswith("cuts.money: unknown field") for p in problems)
    assert 'classes[0].class: "Champions!" must be lower case letters, digits, - or _' in problems
    assert any(p.startswith("classes[0].r: 6 is not a score 1-5") for p in problems)
    assert any(p.startswith('classes[1].f: "5-3" is not a score 1-5') for p in problems)
    assert any(p.startswith('classes[2].m: [1, "2"] is not a score') for p in problems)
    assert 'classes[3].clas: unknown field (did you mean "class"?)' in problems
    assert "classes[3].class: is required" in problems


def test_a_class_table_with_holes_is_refused():
    problems = problems_of({"classes": [{"class": "best", "r": "4-5"}, {"class": "rest", "r": 1, "f": "1-2"}]})
    assert len(problems) == 1
    assert problems[0].startswith("classes: no class for r=1 f=3 m=1, r=1 f=3 m=2")
    assert "more (end with a catch-all class)" in problems[0]
    assert parse_rfm({"classes": [{"class": "best", "r": 5, "m": [4, 5]}, {"class": "rest"}]})


# -- purchases -------------------------------------------------------------------------


def test_record_purchase_updates_orders_revenue_and_dates(config):
    person = Contact(id="c", created_at="")
    assert record_purchase(config, person, order(NOW - 2 * DAY, revenue=30)) is True
    assert record_purchase(config, person, order(NOW, revenue="12.5")) is True
    assert record_purchase(config, person, order(NOW - 10 * DAY, revenue=0.1)) is True  # arrives late
    assert person.rfm == {"orders": 3, "revenue": 42.6, "first_purchase": iso(NOW - 10 * DAY),
                          "last_purchase": iso(NOW)}


@pytest.mark.parametrize("revenue", [None, "free", True, float("nan"), {"amount": 3}])
def test_an_order_without_a_usable_revenue_still_counts(config, revenue):
    person = Contact(id="c", created_at="")
    props = {} if revenue is None else {"revenue": revenue}
    assert record_purchase(config, person, order(NOW, **props))
    assert person.rfm["orders"] == 1 and person.rfm["revenue"] == 0


def test_other_events_are_not_purchases(config):
    person = Contact(id="c", created_at="", rfm={})
    assert record_purchase(config, person, order(NOW, name="Product Added", revenue=10)) is False
    assert record_purchase(config, person, {"type": "page", "properties": {}, "timestamp": iso(NOW),
                                            "messageId": "p"}) is False
    assert person.rfm == {}


def test_the_purchase_event_and_revenue_property_are_configurable():
    custom = parse_rfm({"purchase_event": "Checkout Finished", "revenue_property": "total"})
    person = Contact(id="c", created_at="")
    assert not record_purchase(custom, person, order(NOW, revenue=10))
    assert record_purchase(custom, person, order(NOW, name="Checkout Finished", total=25, revenue=99))
    assert person.rfm["revenue"] == 25


def test_classes_and_scores_already_on_the_contact_are_kept(config):
    person = Contact(id="c", created_at="", rfm={"orders": 1, "revenue": 5.0, "class": "new", "r": 5, "f": 1,
                                                 "m": 1, "first_purchase": iso(NOW - DAY),
                                                 "last_purchase": iso(NOW - DAY)})
    record_purchase(config, person, order(NOW, revenue=5))
    assert person.rfm["class"] == "new" and person.rfm["orders"] == 2


# -- cut points ------------------------------------------------------------------------


def test_quintile_cut_points_over_distinct_values(config):
    values = [rfm(days_ago=d, orders=d, revenue=10 * d) for d in range(1, 11)]
    thresholds = compute_thresholds(config, values, NOW)
    assert thresholds.recency == (2, 4, 6, 8)
    assert thresholds.frequency == (2, 4, 6, 8)
    assert thresholds.monetary == (20, 40, 60, 80)
    assert thresholds.customers == 10
    assert thresholds.computed_at == iso(NOW)
    scores = [classify(config, v, thresholds, NOW) for v in values]
    assert [s["f"] for s in scores] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [s["m"] for s in scores] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [s["r"] for s in scores] == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]  # fewer days is better


def test_ties_share_a_score_and_one_time_buyers_are_f1(config):
    orders = [1] * 60 + [2] * 20 + [3] * 10 + [4] * 10
    values = [rfm(days_ago=5, orders=n, revenue=10) for n in orders]
    thresholds = compute_thresholds(config, values, NOW)
    assert thresholds.frequency == (1, 1, 1, 2)
    by_orders = {n: classify(config, rfm(5, n, 10), thresholds, NOW)["f"] for n in (1, 2, 3, 4, 9)}
    assert by_orders == {1: 1, 2: 4, 3: 5, 4: 5, 9: 5}
    # Everyone bought five days ago: all share the best recency score.
    assert {classify(config, v, thresholds, NOW)["r"] for v in values} == {5}
    assert {classify(config, v, thresholds, NOW)["m"] for v in values} == {1}


def test_recency_counts_whole_days(config):
    thresholds = Thresholds(recency=(7, 30, 90, 180), frequency=(1, 1, 1, 1), monetary=(0, 0, 0, 0))
    assert classify(config, rfm(7.9, 1, 1), thresholds, NOW)["r"] == 5
    assert classify(config, rfm(8, 1, 1), thresholds, NOW)["r"] == 4
    assert classify(config, rfm(181, 1, 1), thresholds, NOW)["r"] == 1
    future = {**rfm(0, 1, 1), "last_purchase": iso(NOW + DAY)}
    assert classify(config, future, thresholds, NOW)["r"] == 5


def test_a_single_customer_is_a_new_customer(config):
    thresholds = compute_thresholds(config, [rfm(3, 4, 500)], NOW)
    assert thresholds.customers == 1 and thresholds.frequency == (4, 4, 4, 4)
    assert classify(config, rfm(3, 4, 500), thresholds, NOW) == {"r": 5, "f": 1, "m": 1, "class": "new"}


def test_fewer_than_five_customers_still_rank(config):
    values = [rfm(1, 1, 10), rfm(40, 3, 90)]
    thresholds = compute_thresholds(config, values, NOW)
    assert thresholds.frequency == (1, 1, 3, 3)
    assert classify(config, values[0], thresholds, NOW)["class"] == "new"
    recent_repeat = classify(config, rfm(1, 3, 90), thresholds, NOW)
    assert (recent_repeat["r"], recent_repeat["f"]) == (5, 3)


def test_with_no_customer_yet_a_first_buyer_is_new(config):
    thresholds = compute_thresholds(config, [{}, {"orders": 0}, {"orders": 2}], NOW)  # none bought
    assert thresholds == Thresholds(customers=0, computed_at=iso(NOW))
    assert classify(config, rfm(0, 1, 20), thresholds, NOW) == {"r": 5, "f": 1, "m": 1, "class": "new"}
    assert classify(config, rfm(0, 1, 20), Thresholds(), NOW)["class"] == "new"


def test_fixed_cut_points_replace_quintiles():
    fixed = parse_rfm({"cuts": {"recency": [7, 30, 90, 180], "frequency": [1, 2, 4, 8]}})
    values = [rfm(d, 1, 10 * d) for d in range(1, 11)]
    thresholds = compute_thresholds(fixed, values, NOW)
    assert thresholds.recency == (7, 30, 90, 180)
    assert thresholds.frequency == (1, 2, 4, 8)
    assert thresholds.monetary == (20, 40, 60, 80)
    assert classify(fixed, rfm(100, 5, 10), Thresholds(), NOW)["r"] == 2
    assert classify(fixed, rfm(100, 5, 10), Thresholds(), NOW)["f"] == 4


def test_contacts_who_never_bought_have_no_class(config):
    thresholds = compute_thresholds(config, [rfm(1, 1, 1)], NOW)
    empty = {"r": None, "f": None, "m": None, "class": None}
    assert classify(config, {}, thresholds, NOW) == empty
    assert classify(config, None, thresholds, NOW) == empty
    assert classify(config, {"orders": 0, "revenue": 0}, thresholds, NOW) == empty


# -- classes ---------------------------------------------------------------------------

GRID = {  # (r, f) -> class, as the documented grid shows it
    (5, 1): "new", (5, 2): "potential_loyalists", (5, 3): "potential_loyalists", (5, 4): "champions",
    (5, 5): "champions",
    (4, 1): "promising", (4, 2): "potential_loyalists", (4, 3): "potential_loyalists", (4, 4): "loyal",
    (4, 5): "champions",
    (3, 1): "about_to_sleep", (3, 2): "about_to_sleep", (3, 3): "need_attention", (3, 4): "loyal", (3, 5): "loyal",
    (2, 1): "hibernating", (2, 2): "hibernating", (2, 3): "at_risk", (2, 4): "at_risk", (2, 5): "at_risk",
    (1, 1): "lost", (1, 2): "lost", (1, 3): "at_risk", (1, 4): "at_risk", (1, 5): "at_risk",
}


@pytest.mark.parametrize("r,f", sorted(GRID))
def test_the_default_grid(config, r, f):
    # Fixed cuts that put these exact values on score (r, f): days 0..4 per step, orders 1..5.
    thresholds = Thresholds(recency=(0, 1, 2, 3), frequency=(1, 2, 3, 4), monetary=(1, 2, 3, 4))
    result = classify(config, rfm(days_ago=5 - r, orders=f, revenue=1), thresholds, NOW)
    assert (result["r"], result["f"], result["m"]) == (r, f, 1)
    assert result["class"] == GRID[(r, f)]


def test_scenario_six_once_frequent_buyers_gone_quiet_and_champions():
    config = parse_rfm(yaml.safe_load((DEFINITIONS / "rfm.yaml").read_text(encoding="utf-8")))
    customers = [rfm(days_ago=d, orders=o, revenue=40 * o) for d, o in
                 [(2, 9), (5, 7), (10, 1), (15, 2), (20, 1), (30, 1), (45, 3), (70, 8), (120, 1), (200, 1)]]
    thresholds = compute_thresholds(config, customers, NOW)
    quiet_regular = classify(config, rfm(days_ago=70, orders=8, revenue=320), thresholds, NOW)
    assert quiet_regular["class"] == "at_risk" and quiet_regular["f"] >= 4
    assert classify(config, rfm(days_ago=2, orders=9, revenue=360), thresholds, NOW)["class"] == "champions"
    assert classify(config, rfm(days_ago=200, orders=1, revenue=40), thresholds, NOW)["class"] == "lost"


def test_a_custom_table_may_use_monetary_scores():
    config = parse_rfm({"classes": [{"class": "big-spender", "m": 5}, {"class": "everyone"}]})
    thresholds = Thresholds(recency=(0, 1, 2, 3), frequency=(1, 2, 3, 4), monetary=(10, 20, 30, 40))
    assert classify(config, rfm(1, 1, 41), thresholds, NOW)["class"] == "big-spender"
    assert classify(config, rfm(1, 1, 40), thresholds, NOW)["class"] == "everyone"


# -- storage and schedule --------------------------------------------------------------


def test_thresholds_round_trip_through_storage(config):
    thresholds = compute_thresholds(config, [rfm(d, d, d * 1.5) for d in range(1, 8)], NOW)
    stored = thresholds.to_dict()
    assert stored == {"recency": [2.0, 3.0, 5.0, 6.0], "frequency": [2.0, 3.0, 5.0, 6.0],
                      "monetary": [3.0, 4.5, 7.5, 9.0], "customers": 7, "computed_at": iso(NOW)}
    assert Thresholds.from_dict(stored) == thresholds
    assert Thresholds.from_dict(Thresholds().to_dict()) == Thresholds()
    assert Thresholds.from_dict(None) == Thresholds()


def test_thresholds_are_due_after_the_recompute_interval():
    config = parse_rfm({"recompute": "12 hours"})
    thresholds = compute_thresholds(config, [], NOW)
    assert not thresholds_due(config, thresholds, NOW + timedelta(hours=11, minutes=59))
    assert thresholds_due(config, thresholds, NOW + timedelta(hours=12))
    assert thresholds_due(config, None, NOW)
    assert thresholds_due(config, Thresholds(), NOW)
