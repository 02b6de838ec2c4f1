"""The shipped example segments validate, form a consistent catalog and mean what they say."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from chalicelib.domain.contact import Contact, bump_counter
from chalicelib.domain.segments.evaluator import EvaluationContext, evaluate
from chalicelib.domain.segments.filters import EventMatcher, parse_filters
from chalicelib.domain.segments.index import SegmentIndex
from chalicelib.domain.segments.language import parse_segment, validate_catalog

EXAMPLES = Path(__file__).resolve().parents[2] / "chalicelib" / "definitions" / "segments"
FILES = sorted(EXAMPLES.glob("*.yaml"))
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def load(path: Path):
    return parse_segment(yaml.safe_load(path.read_text(encoding="utf-8")))


def example(segment_id: str):
    return load(EXAMPLES / f"{segment_id}.yaml")


def context(members=(), score=0.0, groups=None) -> EvaluationContext:
    return EvaluationContext(is_member=lambda s: s in members, score_now=lambda c, now: score,
                             score_crossing=lambda c, threshold, now: None,
                             campaign_group=lambda c, campaign: (groups or {}).get(campaign))


def counter(*moments: datetime) -> dict:
    entries: dict = {}
    for m in moments:
        bump_counter(entries, "e", m.isoformat(timespec="milliseconds").replace("+00:00", "Z"), 400)
    return entries["e"]


def person(**fields) -> Contact:
    return Contact(id="c1", created_at="2026-01-01T00:00:00.000Z", **fields)


def test_examples_are_shipped():
    ids = {p.stem for p in FILES}
    expected = {"coffee-lovers", "mql", "educational-sequence", "birthday-today", "win-back", "champions-thank-you"}
    expected |= {f"promo-2026-11-group-{g}" for g in range(1, 7)}
    assert expected <= ids


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_example_validates(path):
    definition = load(path)
    assert definition.id == path.stem, "the file is named after the segment id"
    assert definition.name and definition.description


def test_the_examples_form_a_consistent_catalog():
    catalog = [load(p) for p in FILES]
    assert validate_catalog(catalog) == []
    assert SegmentIndex(catalog).problems == []


def test_coffee_lovers_viewed_three_coffee_products_within_30_days():
    definition = example("coffee-lovers")
    coffee = EventMatcher("Product Viewed", parse_filters(['properties.category == "coffee"'], "w"))
    assert definition.matchers() == (coffee,)
    three = person(filtered={coffee.key: counter(NOW - 20 * DAY, NOW - 5 * DAY, NOW - DAY)})
    result = evaluate(definition, three, NOW, context())
    assert result.member and result.next_change == NOW + 10 * DAY
    old = person(filtered={coffee.key: counter(NOW - 40 * DAY, NOW - 5 * DAY, NOW - DAY)})
    assert not evaluate(definition, old, NOW, context()).member


def test_each_promotion_group_is_its_own_segment():
    for group in range(1, 7):
        definition = example(f"promo-2026-11-group-{group}")
        assert definition.reads() == {("campaign", "promo-2026-11")}
        for actual in ("1", "2", "3", "4", "5", "6", "converted", None):
            member = evaluate(definition, person(), NOW, context(groups={"promo-2026-11": actual})).member
            assert member is (actual == str(group))


def test_mql_and_the_educational_sequence():
    mql, sequence = example("mql"), example("educational-sequence")
    assert evaluate(mql, person(), NOW, context(score=50)).member
    assert not evaluate(mql, person(), NOW, context(score=49)).member
    lead = person(stage="lead", identifiers=["email:ada@example.com"])
    assert evaluate(sequence, lead, NOW, context()).member
    assert not evaluate(sequence, lead, NOW, context(members={"mql"})).member
    unsubscribed = person(stage="lead", identifiers=["email:ada@example.com"],
                          consent={"email": {"status": "denied"}})
    assert not evaluate(sequence, unsubscribed, NOW, context()).member


def test_birthday_today_in_the_contacts_time_zone():
    definition = example("birthday-today")
    contact = person(traits={"birthday": "1990-11-23", "timezone": "Asia/Tokyo"},
                     identifiers=["email:ada@example.com"])
    result = evaluate(definition, contact, NOW, context())  # 21:00 on 22 November in Tokyo
    assert not result.member and result.next_change == datetime(2026, 11, 22, 15, 0, tzinfo=timezone.utc)
    assert evaluate(definition, contact, result.next_change, context()).member


def test_win_back_and_champions():
    win_back, champions = example("win-back"), example("champions-thank-you")
    lapsed = person(rfm={"class": "at_risk"}, counters={"Order Completed": counter(NOW - 90 * DAY, NOW - 61 * DAY)})
    assert evaluate(win_back, lapsed, NOW, context()).member
    recent = person(rfm={"class": "at_risk"}, counters={"Order Completed": counter(NOW - 90 * DAY, NOW - 10 * DAY)})
    result = evaluate(win_back, recent, NOW, context())
    assert not result.member and result.next_change == NOW + 50 * DAY
    champion = person(rfm={"class": "champions"}, counters={"Order Completed": counter(NOW - 61 * DAY)})
    assert not evaluate(win_back, champion, NOW, context()).member
    assert evaluate(champions, champion, NOW, context()).member
