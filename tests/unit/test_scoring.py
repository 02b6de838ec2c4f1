"""Lead scoring: parsing, decay on read, caps, grades, lifecycle stages and tags."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from chalicelib.domain.contact import Contact
from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.scoring import (
    apply_event,
    grade,
    parse_scoring,
    score_crossing,
    score_now,
)

DEFINITIONS = Path(__file__).resolve().parents[2] / "chalicelib" / "definitions"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)  # a Friday
DAY = timedelta(days=1)

BASIC = {
    "half_life": "30 days",
    "rules": [
        {"id": "pricing", "event": "Page Viewed", "where": ['properties.path starts_with "/pricing"'], "points": 10},
        {"id": "webinar", "event": "Webinar Registered", "points": 20},
        {"id": "white-paper", "event": "Form Submitted", "where": ['properties.form == "white-paper"'],
         "points": 15},
        {"id": "click", "event": "Email Link Clicked", "points": 3},
        {"id": "big", "event": "Demo Requested", "points": 40},
        {"id": "unsubscribed", "event": "Unsubscribed", "points": -10},
    ],
    "stages": [
        {"stage": "subscriber", "min": 0},
        {"stage": "lead", "min": 10},
        {"stage": "mql", "min": 50},
        {"stage": "sql", "min": 100},
        {"stage": "customer", "on_event": "Order Completed"},
    ],
}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_ids = itertools.count()


def track(name: str, at: datetime, **properties) -> dict:
    return {"type": "track", "event": name, "properties": properties, "context": {},
            "timestamp": iso(at), "messageId": f"m{next(_ids)}"}


def page(path: str, at: datetime) -> dict:
    return {"type": "page", "name": "Pricing", "properties": {"path": path}, "context": {},
            "timestamp": iso(at), "messageId": f"m{next(_ids)}"}


def identify(at: datetime, **traits) -> dict:
    return {"type": "identify", "traits": traits, "context": {}, "timestamp": iso(at), "messageId": f"m{next(_ids)}"}


def contact(**kw) -> Contact:
    return Contact(id="c1", created_at=iso(T0 - 10 * DAY), **kw)


def run(config, person: Contact, event: dict, now: datetime | None = None) -> list[dict]:
    return apply_event(config, person, event, now or datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")))


def names(emitted: list[dict]) -> list[str]:
    return [e["event"] for e in emitted]


def problems_of(doc) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_scoring(doc)
    return caught.value.problems


# -- the example definition ------------------------------------------------------------


def test_the_shipped_example_parses_and_scores_scenario_four():
    config = parse_scoring((DEFINITIONS / "scoring.yaml").read_text(encoding="utf-8"))
    assert config.half_life == timedelta(days=30)
    assert [s.name for s in config.stages] == ["subscriber", "lead", "mql", "sql", "customer"]
    assert {r.id: r.points for r in config.rules}["pricing-page"] == 10
    person = contact()
    run(config, person, page("/pricing/enterprise", T0))
    run(config, person, track("Webinar Registered", T0 + timedelta(minutes=5)))
    run(config, person, track("Form Submitted", T0 + timedelta(minutes=10), form="white-paper"))
    run(config, person, track("Email Link Clicked", T0 + timedelta(minutes=15)))
    assert person.stage == "lead"
    # 48 points, less the few thousandths the first ones lost in a quarter of an hour.
    assert score_now(config, person, T0 + timedelta(minutes=15)) == pytest.approx(48, abs=0.01)
    emitted = run(config, person, track("Email Link Clicked", T0 + timedelta(minutes=20)))
    assert {"event": "Stage Changed", "properties": {"from": "lead", "to": "mql"}} in emitted
    assert person.tags == ["white-paper-reader"]
    # Thirty days of silence halve the score; the lead stays marketing-qualified.
    assert score_now(config, person, T0 + timedelta(days=30, minutes=20)) == pytest.approx(25.5, abs=0.02)
    run(config, person, track("Email Link Clicked", T0 + 30 * DAY + timedelta(hours=1)))
    assert person.stage == "mql"


def test_the_shipped_example_is_plain_yaml():
    doc = yaml.safe_load((DEFINITIONS / "scoring.yaml").read_text(encoding="utf-8"))
    assert parse_scoring(doc) == parse_scoring((DEFINITIONS / "scoring.yaml").read_text(encoding="utf-8"))


# -- validation ------------------------------------------------------------------------


def test_every_problem_is_reported_with_its_place():
    problems = problems_of({
        "half_life": "30 dayz",
        "rule": [],
        "rules": [
            {"id": "a", "event": "Page Viewed", "pointz": 10},
            {"id": "b", "event": "X", "points": 5, "where": ["properties.plan ~ 3"]},
            {"id": "c", "event": "Y", "points": "ten"},
            {"id": "a", "event": "Z", "points": 1, "cap": {"points": 0, "per": "a fortnight"}},
            {"id": "loop", "event": "Score Changed", "points": 1},
            {"event": "W", "points": 1},
        ],
        "grading": [{"id": "g", "where": ['job_title contains "VP"'], "grade": "E"}],
        "stages": [{"stage": "lead", "min": 10}, {"stage": "subscriber", "min": 0},
                   {"stage": "odd"}, {"stage": "mql", "min": 50, "allow_backward": True}],
        "tags": [{"tag": "x"}],
    })
    assert 'half_life: "30 dayz" is not a duration: unknown unit "dayz" (did you mean "days"?)' in problems
    assert 'rule: unknown field (did you mean "rules"?)' in problems
    assert 'rules[0].pointz: unknown field (did you mean "points"?)' in problems
    assert "rules[0].points: is required" in problems
    assert any(p.startswith("rules[1].where[0]:") for p in problems)
    assert 'rules[2].points: "ten" is not a number' in problems
    assert "rules[3].cap.points: 0 is not a positive number" in problems
    assert any(p.startswith('rules[3].cap.per: "a fortnight" is not a duration') for p in problems)
    assert "rules[4].event: a rule on 'Score Changed' would feed on its own points" in problems
    assert "rules[5].id: is required" in problems
    assert any(p.startswith("grading[0].where[0]: 'properties.job_title' is not part of the profile "
                            "(use traits.job_title") for p in problems)
    assert 'grading[0].grade: "E" is not one of A, B, C, D' in problems
    assert any("'subscriber' (min 0) comes after 'lead' (min 10)" in p for p in problems)
    assert "stages[2]: needs min (a score) or on_event (an event name), or both" in problems
    assert "stages[3].allow_backward: only an on_event stage may move a contact back" in problems
    assert any(p.startswith("tags[0].add_on: is required") for p in problems)


def test_duplicate_ids_are_refused():
    problems = problems_of({"rules": [{"id": "a", "event": "X", "points": 1}, {"id": "a", "event": "Y", "points": 2}],
                            "stages": [{"stage": "lead", "min": 1}, {"stage": "lead", "on_event": "Z"}]})
    assert "rules: id 'a' is defined twice" in problems
    assert "stages: stage 'lead' is defined twice" in problems


@pytest.mark.parametrize("doc,expected", [
    ("rules: [", "document: line"),
    ("- just\n- a list", "document: expected a mapping"),
    ({"rules": {"id": "a"}}, 'rules: expected a list, got {"id": "a"}'),
    ({"rules": [{"id": "a", "event": "X", "points": True}]}, "rules[0].points: true is not a number"),
    ({"rules": [{"id": "a", "event": "X", "points": 0}]}, "rules[0].points: 0 points changes nothing"),
    ({"rules": [{"id": "a b", "event": "X", "points": 1}]}, 'rules[0].id: "a b" must be letters, digits'),
    ({"rules": [{"id": "a", "event": "X", "points": 1, "cap": {"points": 5}}]}, "rules[0].cap.per: is required"),
    ({"stages": [{"stage": "s", "min": "ten"}]}, 'stages[0].min: "ten" is not a number'),
    ({"stages": [{"stage": "s", "min": 1, "where": ["properties.a == 1"]}]}, "stages[0].where: only applies with"),
    ({"tags": [{"tag": "t", "add_on": {"event": "X", "wher": []}}]},
     'tags[0].add_on.wher: unknown field (did you mean "where"?)'),
    ({"half_life": "1 month"}, 'half_life: "1 month" is not a duration: months differ in length'),
    ({"half_life": 30}, 'half_life: 30 is not a duration'),
])
def test_single_problems_say_what_is_wrong(doc, expected):
    assert any(p.startswith(expected) for p in problems_of(doc)), problems_of(doc)


def test_an_empty_document_scores_nothing():
    config = parse_scoring({})
    person = contact()
    assert run(config, person, track("Anything", T0)) == []
    assert person.score == {} and person.stage is None and person.tags == []
    assert config.matchers() == () and config.event_names() == frozenset()


def test_event_names_cover_rules_stages_and_tags():
    config = parse_scoring({**BASIC, "tags": [{"tag": "t", "add_on": "Newsletter Subscribed",
                                               "remove_on": [{"event": "Unsubscribed"}]}]})
    assert {"Page Viewed", "Order Completed", "Newsletter Subscribed", "Unsubscribed"} <= config.event_names()
    assert config.matchers() == ()  # the score keeps its own state: no counters needed


# -- points and decay ------------------------------------------------------------------


def test_points_are_added_and_announced():
    config = parse_scoring(BASIC)
    person = contact()
    emitted = run(config, person, page("/pricing", T0))
    assert emitted[0] == {"event": "Score Changed", "properties": {"points": 10.0, "delta": 10.0, "rule": "pricing"}}
    assert person.score["points"] == 10.0 and person.score["at"] == iso(T0)
    assert run(config, person, page("/blog", T0 + timedelta(minutes=1))) == []  # no rule: nothing changes
    assert run(config, person, track("Form Submitted", T0, form="newsletter")) == []


def test_page_events_count_as_page_viewed_and_match_their_path():
    config = parse_scoring(BASIC)
    person = contact()
    run(config, person, page("/PRICING/teams", T0))
    assert score_now(config, person, T0) == 10.0


def test_the_score_halves_every_half_life_without_a_rewrite():
    config = parse_scoring(BASIC)
    person = contact()
    run(config, person, track("Demo Requested", T0))
    stored = dict(person.score)
    assert score_now(config, person, T0 + 30 * DAY) == 20.0
    assert score_now(config, person, T0 + 60 * DAY) == 10.0
    assert score_now(config, person, T0 + 15 * DAY) == pytest.approx(28.28, abs=0.01)
    assert person.score == stored  # reading never writes


def test_new_points_fold_in_the_decay_so_far():
    config = parse_scoring(BASIC)
    person = contact()
    run(config, person, track("Demo Requested", T0))
    emitted = run(config, person, track("Webinar Registered", T0 + 30 * DAY))
    assert emitted[0]["properties"] == {"points": 40.0, "delta": 20.0, "rule": "webinar"}
    assert person.score == {"points": 40.0, "at": iso(T0 + 30 * DAY)}


def test_without_a_half_life_the_score_never_decays():
    config = parse_scoring({"rules": BASIC["rules"]})
    person = contact()
    run(config, person, track("Demo Requested", T0))
    assert score_now(config, person, T0 + 3650 * DAY) == 40.0
    assert score_crossing(config, person, 30, T0) is None


def test_late_events_give_the_same_score_whatever_the_order():
    config = parse_scoring(BASIC)
    events = [track("Demo Requested", T0), track("Webinar Registered", T0 + 10 * DAY),
              track("Email Link Clicked", T0 + 40 * DAY), track("Unsubscribed", T0 + 20 * DAY)]
    now = T0 + 41 * DAY
    results = set()
    for order in itertools.permutations(events):
        person = contact()
        for event in order:
            apply_event(config, person, event, now)
        results.add(score_now(config, person, now))
        assert person.score["at"] == iso(T0 + 40 * DAY)
    expected = 40 * 0.5 ** (41 / 30) + 20 * 0.5 ** (31 / 30) + 3 * 0.5 ** (1 / 30) - 10 * 0.5 ** (21 / 30)
    assert results == {round(expected, 2)}


def test_an_event_stamped_in_the_future_counts_from_now():
    config = parse_scoring(BASIC)
    person = contact()
    apply_event(config, person, track("Demo Requested", T0 + 5 * DAY), T0)
    assert person.score["at"] == iso(T0)
    assert score_now(config, person, T0 + 30 * DAY) == 20.0


def test_scores_compare_to_the_cent_so_points_earned_minutes_apart_add_up():
    config = parse_scoring(BASIC)
    person = contact()
    run(config, person, page("/pricing", T0))
    emitted = run(config, person, track("Demo Requested", T0 + timedelta(minutes=10)))
    assert score_now(config, person, T0 + timedelta(minutes=10)) == 50.0
    assert {"event": "Stage Changed", "properties": {"from": "lead", "to": "mql"}} in emitted


def test_negative_points_lower_the_score_below_zero_and_decay_towards_zero():
    config = parse_scoring(BASIC)
    person = contact()
    run(config, person, track("Unsubscribed", T0))
    assert score_now(config, person, T0) == -10.0
    assert score_now(config, person, T0 + 30 * DAY) == -5.0
    assert score_crossing(config, person, -20, T0) is None  # rising towards zero, never below


# -- caps ------------------------------------------------------------------------------

CAPPED = {
    "half_life": "30 days",
    "rules": [
        {"id": "pricing", "event": "Page Viewed", "points": 10, "cap": {"points": 20, "per": "1 day"}},
        {"id": "click", "event": "Email Link Clicked", "points": 10, "cap": {"points": 15, "per": "1 week"}},
        {"id": "complaint", "event": "Complained", "points": -30, "cap": {"points": 50, "per": "1 day"}},
    ],
}


def test_a_daily_cap_stops_points_until_the_next_utc_day():
    config = parse_scoring(CAPPED)
    person = contact()
    late = datetime(2026, 11, 20, 23, 0, tzinfo=timezone.utc)
    deltas = [[e["properties"]["delta"] for e in run(config, person, page("/p", late + timedelta(minutes=i)))]
              for i in range(3)]
    assert deltas == [[10.0], [10.0], []]
    assert person.score["caps"]["pricing"] == {"period": "2026-11-20T00:00:00.000Z", "points": 20.0}
    # Two hours later it is another UTC day: a new period.
    assert names(run(config, person, page("/p", late + timedelta(hours=2)))) == ["Score Changed"]
    assert person.score["caps"]["pricing"] == {"period": "2026-11-21T00:00:00.000Z", "points": 10.0}


def test_a_weekly_cap_follows_iso_weeks_and_grants_what_is_left():
    config = parse_scoring(CAPPED)
    person = contact()
    monday = datetime(2026, 11, 16, 9, 0, tzinfo=timezone.utc)
    sunday = monday + timedelta(days=6, hours=13)  # Sunday 22:00
    next_monday = monday + 7 * DAY
    deltas = []
    for moment in (monday, sunday, sunday + timedelta(hours=1), next_monday):
        deltas.append([e["properties"]["delta"] for e in run(config, person, track("Email Link Clicked", moment))])
    assert deltas == [[10.0], [5.0], [], [10.0]]
    assert person.score["caps"]["click"]["period"] == "2026-11-23T00:00:00.000Z"


def test_a_late_event_counts_against_the_period_on_record():
    config = parse_scoring(CAPPED)
    person = contact()
    today = datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)
    run(config, person, page("/p", today))
    run(config, person, page("/p", today))
    # Yesterday's views replayed today must not escape the cap.
    assert run(config, person, page("/p", today - DAY), now=today) == []
    assert person.score["caps"]["pricing"]["period"] == "2026-11-21T00:00:00.000Z"


def test_a_cap_bounds_negative_rules_too():
    config = parse_scoring(CAPPED)
    person = contact()
    deltas = [[e["properties"]["delta"] for e in run(config, person, track("Complained", T0 + timedelta(minutes=i)))]
              for i in range(3)]
    assert deltas == [[-30.0], [-20.0], []]


def test_caps_of_rules_that_no_longer_exist_are_dropped():
    person = contact()
    run(parse_scoring(CAPPED), person, page("/p", T0))
    assert "pricing" in person.score["caps"]
    run(parse_scoring({"rules": [CAPPED["rules"][1]]}), person, track("Email Link Clicked", T0))
    assert set(person.score["caps"]) == {"click"}


# -- stages ----------------------------------------------------------------------------


def test_stages_advance_with_the_score_and_announce_each_move():
    config = parse_scoring(BASIC)
    person = contact()
    assert run(config, person, identify(T0, email="a@example.com")) == [
        {"event": "Stage Changed", "properties": {"from": None, "to": "subscriber"}}]
    emitted = run(config, person, page("/pricing", T0 + timedelta(minutes=1)))
    assert names(emitted) == ["Score Changed", "Stage Changed"]
    assert emitted[1]["properties"] == {"from": "subscriber", "to": "lead"}
    assert run(config, person, track("Email Link Clicked", T0 + timedelta(minutes=2)))[-1]["event"] == "Score Changed"
    assert person.stage == "lead"


def test_a_jump_over_several_thresholds_is_one_move():
    config = parse_scoring(BASIC)
    person = contact()
    run(config, person, track("Demo Requested", T0))
    emitted = run(config, person, track("Webinar Registered", T0))
    assert [e["properties"] for e in emitted if e["event"] == "Stage Changed"] == [{"from": "lead", "to": "mql"}]
    person2 = contact()
    run(config, person2, track("Demo Requested", T0))
    run(config, person2, track("Demo Requested", T0))
    assert person2.stage == "mql"
    run(config, person2, track("Webinar Registered", T0))
    assert person2.stage == "sql"


def test_a_decaying_score_never_demotes_a_stage():
    config = parse_scoring(BASIC)
    person = contact()
    run(config, person, track("Demo Requested", T0))
    run(config, person, page("/pricing", T0))
    assert person.stage == "mql"
    later = T0 + 120 * DAY
    assert score_now(config, person, later) < 10
    assert run(config, person, track("Email Link Clicked", later))[-1]["event"] == "Score Changed"
    assert person.stage == "mql"
    run(config, person, track("Unsubscribed", later))
    assert score_now(config, person, later) < 0 and person.stage == "mql"


def test_an_event_stage_moves_forward_from_anywhere_but_never_back():
    config = parse_scoring({**BASIC, "stages": BASIC["stages"] + [
        {"stage": "advocate", "on_event": "Review Posted", "where": ["properties.rating >= 4"]}]})
    person = contact()
    emitted = run(config, person, track("Order Completed", T0))
    assert emitted == [{"event": "Stage Changed", "properties": {"from": None, "to": "customer"}}]
    run(config, person, track("Review Posted", T0, rating=2))
    assert person.stage == "customer"
    run(config, person, track("Review Posted", T0, rating=5))
    assert person.stage == "advocate"
    assert run(config, person, track("Order Completed", T0 + DAY)) == []
    assert person.stage == "advocate"


def test_allow_backward_lets_a_rule_demote_explicitly():
    config = parse_scoring({
        "half_life": "30 days",
        "rules": BASIC["rules"] + [{"id": "disqualified", "event": "Lead Disqualified", "points": -100}],
        "stages": [
            {"stage": "subscriber", "min": 0}, {"stage": "lead", "min": 10},
            {"stage": "recycled", "on_event": "Lead Disqualified", "allow_backward": True},
            {"stage": "mql", "min": 50}, {"stage": "sql", "min": 100}],
    })
    person = contact()
    run(config, person, track("Demo Requested", T0))
    run(config, person, track("Demo Requested", T0))
    assert person.stage == "mql"
    emitted = run(config, person, track("Lead Disqualified", T0 + DAY))
    assert {"event": "Stage Changed", "properties": {"from": "mql", "to": "recycled"}} in emitted
    assert person.stage == "recycled"
    # Points earned again promote again, from the recycled stage.
    for i in range(4):
        run(config, person, track("Demo Requested", T0 + DAY + timedelta(minutes=i)))
    assert person.stage == "sql"


def test_a_stage_that_no_longer_exists_is_replaced():
    config = parse_scoring(BASIC)
    person = contact(stage="prospect")
    emitted = run(config, person, track("Email Link Clicked", T0))
    assert emitted[-1] == {"event": "Stage Changed", "properties": {"from": "prospect", "to": "subscriber"}}


# -- grades ----------------------------------------------------------------------------

GRADED = {
    **BASIC,
    "grading": [
        {"id": "vp-large", "where": ['traits.job_title contains "VP"', "traits.company_size >= 200"], "grade": "A"},
        {"id": "vp", "where": ['traits.job_title contains "VP"'], "grade": "B"},
        {"id": "french", "where": ['context.locale starts_with "fr"'], "grade": "C"},
    ],
}


def test_the_first_grading_rule_that_fits_gives_the_grade():
    config = parse_scoring(GRADED)
    assert grade(config, contact(traits={"job_title": "VP Sales", "company_size": 500})) == "A"
    assert grade(config, contact(traits={"job_title": "vp marketing", "company_size": 20})) == "B"
    assert grade(config, contact(traits={"job_title": "Engineer"}, last_context={"locale": "fr-FR"})) == "C"
    assert grade(config, contact(traits={"job_title": "Engineer"})) is None


def test_the_grade_is_kept_on_the_score_and_follows_trait_changes():
    config = parse_scoring(GRADED)
    person = contact(traits={"job_title": "VP Sales", "company_size": 20})
    run(config, person, identify(T0))
    assert person.score == {"grade": "B"}
    person.traits["company_size"] = 400
    run(config, person, page("/pricing", T0))
    assert person.score["grade"] == "A" and person.score["points"] == 10.0
    person.traits["job_title"] = "Engineer"
    run(config, person, identify(T0))
    assert "grade" not in person.score


# -- tags ------------------------------------------------------------------------------

TAGGED = {
    "tags": [
        {"tag": "coffee-buyer", "add_on": {"event": "Order Completed", "where": ['properties.category == "coffee"']},
         "remove_on": {"event": "Order Refunded"}},
        {"tag": "newsletter", "add_on": ["Newsletter Subscribed", {"event": "Form Submitted",
                                                                    "where": ['properties.form == "newsletter"']}],
         "remove_on": "Unsubscribed"},
        {"tag": "both", "add_on": "Ping", "remove_on": "Ping"},
    ],
}


def test_tags_are_added_and_removed_by_events():
    config = parse_scoring(TAGGED)
    person = contact()
    assert run(config, person, track("Order Completed", T0, category="tea")) == []
    assert run(config, person, track("Order Completed", T0, category="Coffee")) == [
        {"event": "Tag Added", "properties": {"tag": "coffee-buyer"}}]
    assert run(config, person, track("Order Completed", T0, category="coffee")) == []  # already there
    run(config, person, track("Form Submitted", T0, form="newsletter"))
    assert person.tags == ["coffee-buyer", "newsletter"]
    assert run(config, person, track("Order Refunded", T0)) == [
        {"event": "Tag Removed", "properties": {"tag": "coffee-buyer"}}]
    assert run(config, person, track("Order Refunded", T0)) == []
    run(config, person, track("Unsubscribed", T0))
    assert person.tags == []


def test_an_event_that_both_adds_and_removes_a_tag_leaves_it_on():
    config = parse_scoring(TAGGED)
    person = contact()
    assert names(run(config, person, track("Ping", T0))) == ["Tag Added"]
    assert run(config, person, track("Ping", T0)) == []
    assert person.tags == ["both"]


def test_tags_set_elsewhere_are_kept():
    config = parse_scoring(TAGGED)
    person = contact(tags=["vip"])
    run(config, person, track("Newsletter Subscribed", T0))
    assert person.tags == ["newsletter", "vip"]


# -- when a score falls below a threshold ----------------------------------------------


def test_score_crossing_is_the_first_millisecond_below_the_threshold():
    config = parse_scoring(BASIC)
    person = contact()
    run(config, person, track("Demo Requested", T0))
    run(config, person, track("Webinar Registered", T0))
    now = T0 + 5 * DAY
    crossing = score_crossing(config, person, 50, now)
    # 60 points fall to 50 after 30 days * log2(60/50) ≈ 7.89 days.
    assert T0 + timedelta(days=7.8) < crossing < T0 + timedelta(days=8)
    assert score_now(config, person, crossing) < 50
    assert score_now(config, person, crossing - timedelta(milliseconds=1)) >= 50
    assert crossing.microsecond % 1000 == 0


def test_score_crossing_when_the_score_sits_on_the_threshold():
    config = parse_scoring(BASIC)
    person = contact()
    run(config, person, track("Demo Requested", T0))
    run(config, person, page("/pricing", T0))
    crossing = score_crossing(config, person, 50, T0)
    assert T0 < crossing < T0 + timedelta(hours=1)
    assert score_now(config, person, crossing) < 50 <= score_now(config, person, crossing - timedelta(milliseconds=1))


def test_score_crossing_is_none_when_already_below_or_never():
    config = parse_scoring(BASIC)
    person = contact()
    assert score_crossing(config, person, 10, T0) is None  # no score at all
    run(config, person, track("Demo Requested", T0))
    assert score_crossing(config, person, 50, T0) is None  # already below
    assert score_crossing(config, person, 0, T0) is None  # decays towards zero, never below
    assert score_crossing(config, person, -5, T0) is None
    small = score_crossing(config, person, 0.004, T0)
    assert small is not None and score_now(config, person, small) == 0.0
