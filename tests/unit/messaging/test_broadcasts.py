"""Broadcasts as marketers write them: every problem named at once, sticky arms, one moment
or each contact's local time (across DST), the rest waiting for a declared winner."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest

from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.definition_kinds import REGISTRY
from chalicelib.domain.messaging.broadcasts import REST, parse_broadcast, plan_for

BASE = {"id": "december", "name": "December promotion", "segment": "coffee-lovers", "channel": "email",
        "template": "coffee-offer", "send_at": "2026-12-10T09:00:00Z"}
AB = {**{k: v for k, v in BASE.items() if k != "template"},
      "experiment": {"arms": {"a": {"percent": 45, "template": "coffee-offer"},
                              "b": {"percent": 45, "template": "coffee-offer-bold"}, "holdout": 10},
                     "metric": "clicked"}}


def test_a_plain_broadcast_sends_its_template_at_its_moment():
    broadcast = parse_broadcast(BASE)
    plan = plan_for(broadcast, "c1", "Asia/Tokyo")
    assert plan.template == "coffee-offer" and plan.arm is None
    assert plan.at == datetime(2026, 12, 10, 9, tzinfo=timezone.utc)
    assert broadcast.cause == "broadcast:december" and broadcast.templates() == ["coffee-offer"]


def test_every_problem_is_named_at_once():
    with pytest.raises(DefinitionError) as refused:
        parse_broadcast({"name": "", "segment": 3, "channel": "fax", "template": "Coffee Offer.html",
                         "send_at": "tomorrow", "local_time": {"date": "2026-13-01", "time": "25:00"}, "colour": "red"})
    text = "; ".join(refused.value.problems)
    for expected in ("unknown field(s) colour", "name: must be text", "segment: must be text", "channel: one of",
                     "template: 'Coffee Offer.html'", "send_at: 'tomorrow'", "local_time.date", "local_time.time",
                     "send_at or local_time: say exactly one"):
        assert expected in text, (expected, text)


def test_local_time_is_each_contacts_own_clock_and_survives_the_dst_gap():
    broadcast = parse_broadcast({**{k: v for k, v in BASE.items() if k != "send_at"},
                                 "local_time": {"date": "2026-03-29", "time": "02:30"}})
    # 02:30 does not exist in Rome on 2026-03-29 (clocks jump 02:00 -> 03:00): the jump's instant.
    assert plan_for(broadcast, "c1", "Europe/Rome").at == datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc)
    assert plan_for(broadcast, "c1", "America/New_York").at == datetime(2026, 3, 29, 6, 30, tzinfo=timezone.utc)
    # Unknown or missing zone: the default zone.
    assert plan_for(broadcast, "c1", None).at == datetime(2026, 3, 29, 2, 30, tzinfo=timezone.utc)
    assert plan_for(broadcast, "c1", "Mars/Olympus").at == datetime(2026, 3, 29, 2, 30, tzinfo=timezone.utc)


def test_arms_are_sticky_and_near_their_shares_and_the_holdout_gets_nothing():
    broadcast = parse_broadcast(AB)
    plans = {f"c{i}": plan_for(broadcast, f"c{i}", None) for i in range(4000)}
    assert all(plan_for(broadcast, cid, "Europe/Rome").arm == plan.arm for cid, plan in list(plans.items())[:200])
    shares = Counter(p.arm for p in plans.values())
    assert 1650 <= shares["a"] <= 1950 and 1650 <= shares["b"] <= 1950 and 300 <= shares["holdout"] <= 500
    assert all(p.template is None for p in plans.values() if p.arm == "holdout")
    assert {p.template for p in plans.values() if p.arm == "b"} == {"coffee-offer-bold"}


def test_with_a_test_share_the_rest_waits_for_the_winner():
    broadcast = parse_broadcast({**AB, "experiment": {**AB["experiment"], "test_percent": 20,
                                                      "decide_by": "1 day", "fallback": "a"}})
    plans = [plan_for(broadcast, f"c{i}", None) for i in range(2000)]
    rest = [p for p in plans if p.arm == REST]
    assert 1500 <= len(rest) <= 1700 and all(p.template is None for p in rest)
    assert all(plan_for(broadcast, f"c{i}", None, winner="b").template == "coffee-offer-bold"
               for i in range(2000) if plans[i].arm == REST)


def test_experiment_problems_are_precise():
    with pytest.raises(DefinitionError) as refused:
        parse_broadcast({**AB, "template": "x", "experiment": {
            "arms": {"a": {"percent": 50, "template": "one"}, "b": {"percent": 40}}, "metric": "revenue",
            "test_percent": 20}})
    text = "; ".join(refused.value.problems)
    for expected in ("experiment.arms.b.template", "experiment.metric", "say decide_by",
                     "template: with an experiment"):
        assert expected in text, (expected, text)
    with pytest.raises(DefinitionError) as refused:
        parse_broadcast({**AB, "experiment": {"arms": {"a": {"percent": 60, "template": "one"},
                                                       "b": {"percent": 60, "template": "two"}}}})
    assert "sum to 100" in str(refused.value)


def test_not_after_must_follow_the_send():
    with pytest.raises(DefinitionError) as refused:
        parse_broadcast({**BASE, "not_after": "2026-12-01T00:00:00Z"})
    assert "not_after: must be after" in str(refused.value)


def test_the_kind_is_registered_and_names_its_references():
    kind = REGISTRY.kind("broadcast") if hasattr(REGISTRY, "kind") else next(k for k in REGISTRY if k.name == "broadcast")
    reading = kind.read({**BASE, "campaign": "promo-12"})
    assert reading.ok and {(r.kind, r.name) for r in reading.references} == {("segment", "coffee-lovers"),
                                                                             ("campaign", "promo-12")}
    bad = kind.read({**BASE, "channel": "fax"})
    assert not bad.ok and ("segment", "coffee-lovers") in {(r.kind, r.name) for r in bad.references}
