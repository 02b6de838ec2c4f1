"""The segment definition language: durations, parsing, precise errors, what a definition reads."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
import yaml

from chalicelib.domain.durations import format_duration, parse_duration, parse_relative_time
from chalicelib.domain.segments.filters import EventMatcher, parse_filters
from chalicelib.domain.segments.language import (
    AllOf,
    AnyOf,
    CampaignGroupCondition,
    DefinitionError,
    EventCondition,
    Not,
    ReachableCondition,
    ScoreCondition,
    SegmentCondition,
    TraitCondition,
    parse_segment,
    parse_time_bound,
    validate_catalog,
    validate_segment,
)


def doc(conditions, **extra) -> dict:
    return {"id": extra.pop("id", "test-segment"), "name": extra.pop("name", "Test"), "conditions": conditions,
            **extra}


def problems_of(document) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_segment(document)
    return caught.value.problems


def from_yaml(text: str):
    return parse_segment(yaml.safe_load(text))


# --- durations -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("30 days", timedelta(days=30)),
    ("1 day", timedelta(days=1)),
    ("2 weeks", timedelta(days=14)),
    ("12 hours", timedelta(hours=12)),
    ("15 minutes", timedelta(minutes=15)),
    ("1 year", timedelta(days=365)),
    ("  30   Days ", timedelta(days=30)),
    ("30d", timedelta(days=30)),
    ("1 day 12 hours", timedelta(days=1, hours=12)),
    ("1 day, and 6 hours", timedelta(days=1, hours=6)),
    ("P30D", timedelta(days=30)),
    ("PT12H", timedelta(hours=12)),
    ("P1DT12H", timedelta(days=1, hours=12)),
    ("P2W", timedelta(days=14)),
    ("PT15M", timedelta(minutes=15)),
    ("P1Y", timedelta(days=365)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text,reason", [
    ("30 dayz", '"30 dayz" is not a duration: unknown unit "dayz" (did you mean "days"?)'),
    ("3 months", "months differ in length"),
    ("P1M", "months differ in length"),
    ("0 days", "must be longer than zero"),
    ("PT0S", "must be longer than zero"),
    ("", "is empty"),
    ("30", "write a number and a unit"),
    ("thirty days", "write a number and a unit"),
    ("1.5 hours", "write a number and a unit"),
    ("-3 days", "write a number and a unit"),
    ("30 days later", "write a number and a unit"),
    ("P", "write a number and a unit"),
    ("PT", "not an ISO 8601 duration"),
    ("P1H", "not an ISO 8601 duration"),
    ("30 days ago", 'a duration has no "ago"'),
    (30, "30 is not a duration"),
    (None, "null is not a duration"),
])
def test_bad_durations_say_why(text, reason):
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert reason in str(caught.value)


@pytest.mark.parametrize("text,expected", [
    ("now", timedelta(0)),
    ("30 days ago", -timedelta(days=30)),
    ("in 2 weeks", timedelta(days=14)),
    ("12 hours from now", timedelta(hours=12)),
    ("P30D ago", -timedelta(days=30)),
    ("  30  Days  AGO ", -timedelta(days=30)),
])
def test_relative_times(text, expected):
    assert parse_relative_time(text) == expected


@pytest.mark.parametrize("text,reason", [
    ("30 dayz ago", 'unknown unit "dayz"'),
    ("yesterday", "is not a relative time"),
    ("ago", "is not a relative time"),
])
def test_bad_relative_times(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_relative_time(text)


@pytest.mark.parametrize("span,text", [
    (timedelta(days=30), "30 days"), (timedelta(days=14), "2 weeks"), (timedelta(days=10), "10 days"),
    (timedelta(days=1, hours=6), "1 day 6 hours"), (timedelta(days=365), "1 year"), (timedelta(minutes=1), "1 minute"),
])
def test_durations_read_back(span, text):
    assert format_duration(span) == text
    assert parse_duration(text) == span


@pytest.mark.parametrize("value,kind", [
    ("30 days ago", "offset"), ("now", "offset"), ("in 1 week", "offset"),
    ("2026-01-31", "day"), (date(2026, 1, 31), "day"),
    ("2026-01-31T09:00:00Z", "instant"), ("2026-01-31T09:00:00+01:00", "instant"),
    (datetime(2026, 1, 31, 9, tzinfo=timezone.utc), "instant"),
])
def test_time_bounds(value, kind):
    bound = parse_time_bound(value)
    assert getattr(bound, kind) is not None
    if bound.instant is not None:
        assert bound.instant.tzinfo is not None


def test_a_time_without_zone_is_utc():
    assert parse_time_bound("2026-01-31T09:00:00").instant == datetime(2026, 1, 31, 9, tzinfo=timezone.utc)


@pytest.mark.parametrize("value", ["yesterday", "2026-02-30", "", 42, None, "30 dayz ago"])
def test_bad_time_bounds(value):
    with pytest.raises(ValueError):
        parse_time_bound(value)


# --- documents -----------------------------------------------------------------------------

def test_the_documented_example_parses():
    definition = from_yaml("""
id: coffee-lovers
name: Coffee lovers
description: likes coffee
conditions:
  all:
    - trait: country
      equals: FR
    - event: Product Viewed
      where: ['properties.category == "coffee"']
      at_least: 3
      within: 30 days
    - not:
        event: Order Completed
        within: 60 days
""")
    assert (definition.id, definition.name) == ("coffee-lovers", "Coffee lovers")
    assert definition.description == "likes coffee"
    assert isinstance(definition.condition, AllOf)
    trait, viewed, negated = definition.condition.conditions
    assert trait == TraitCondition("country", "equals", "FR")
    coffee = EventMatcher("Product Viewed", parse_filters(['properties.category == "coffee"'], "w"))
    assert viewed == EventCondition(coffee, at_least=3, within=timedelta(days=30))
    assert isinstance(negated, Not) and negated.condition.within == timedelta(days=60)
    assert definition.source_doc["id"] == "coffee-lovers"


def test_json_documents_are_the_same_language():
    text = json.dumps(doc({"trait": "plan", "in": ["pro", "team"]}))
    assert parse_segment(json.loads(text)).condition == TraitCondition("plan", "in", ("pro", "team"))


def test_a_list_of_conditions_means_all_and_a_single_one_stands_alone():
    two = parse_segment(doc([{"tag": "vip"}, {"stage": "lead"}]))
    assert isinstance(two.condition, AllOf) and len(two.condition.conditions) == 2
    one = parse_segment(doc([{"tag": "vip"}]))
    assert not isinstance(one.condition, AllOf)
    assert parse_segment(doc({"tag": "vip"})).condition == one.condition


def test_the_source_document_is_a_copy():
    source = doc({"tag": "vip"})
    definition = parse_segment(source)
    source["conditions"]["tag"] = "changed"
    assert definition.source_doc["conditions"]["tag"] == "vip"


def test_unknown_fields_get_a_suggestion():
    problems = problems_of(doc({"all": [{"trait": "country", "equal": "FR"}]}))
    assert problems == ["conditions.all[0]: unknown field 'equal' (did you mean 'equals'?)"]


def test_a_bad_duration_names_its_path():
    problems = problems_of(doc({"all": [{"tag": "a"}, {"tag": "b"}, {"event": "Viewed", "within": "30 dayz"}]}))
    assert len(problems) == 1
    assert problems[0].startswith('conditions.all[2].within: "30 dayz" is not a duration')


def test_every_problem_is_reported_at_once():
    problems = problems_of({
        "id": "Bad Id", "nme": "x", "conditions": {"any": [
            {"evnt": "Viewed"},
            {"event": "Viewed", "at_least": -1, "within": "soon", "where": ["bogus"]},
            {"trait": "age", "gt": "old"},
            {"message": "opened", "link": "l1"},
            {"campaign_group": {"campaign": "p", "group": 9}},
            {"score": {"gte": 50, "above": 3}},
        ]}})
    text = "\n".join(problems)
    for expected in [
        "definition: unknown field 'nme' (did you mean 'name'?)",
        'id: "Bad Id" is not a segment id',
        "name: required",
        "conditions.any[0]: unknown field 'evnt' (did you mean 'event'?)",
        "conditions.any[1].at_least: expected a whole number ≥ 0",
        'conditions.any[1].within: "soon" is not a duration',
        'conditions.any[1].where[0]: "bogus" has no operator',
        'conditions.any[2].gt: expected a number, got the text "old"',
        "conditions.any[3].link: only a clicked message has a link",
        "conditions.any[4].campaign_group.group: 9 is not a group",
        "conditions.any[5].score: unknown field 'above'",
    ]:
        assert expected in text, expected
    assert len(problems) == 11


@pytest.mark.parametrize("document,expected", [
    ("not a mapping", "definition: expected a mapping"),
    ({"name": "x", "conditions": {"tag": "a"}}, "id: required"),
    ({"id": "x", "conditions": {"tag": "a"}}, "name: required"),
    ({"id": "x", "name": "  ", "conditions": {"tag": "a"}}, "name: expected text"),
    ({"id": "x", "name": "X"}, "conditions: required"),
    ({"id": "x", "name": "X", "description": 3, "conditions": {"tag": "a"}}, "description: expected text"),
    ({"id": "x", "name": "X", "kind": "journey", "conditions": {"tag": "a"}}, "kind: expected segment"),
    ({"id": "-x", "name": "X", "conditions": {"tag": "a"}}, 'id: "-x" is not a segment id'),
    ({"id": "x" * 65, "name": "X", "conditions": {"tag": "a"}}, "is not a segment id"),
    ({"id": "ok\n", "name": "X", "conditions": {"tag": "a"}}, "is not a segment id"),
    (doc([]), "conditions: expected a non-empty list of conditions, got an empty list"),
    (doc("tag: vip"), "conditions: expected a condition"),
    (doc({}), "conditions: empty condition"),
    (doc({"all": []}), "conditions.all: expected a non-empty list"),
    (doc({"any": {"tag": "a"}}), "conditions.any: expected a non-empty list of conditions, got a mapping"),
    (doc({"not": [{"tag": "a"}]}), "conditions.not: not takes one condition"),
    (doc({"not": {"tagg": "a"}}), "conditions.not: unknown field 'tagg' (did you mean 'tag'?)"),
    (doc({"tag": "a", "stage": "lead"}), "conditions: one condition per mapping, found tag and stage"),
    (doc({"wibble": 1}), "conditions: unknown field 'wibble' (a condition starts with one of"),
    (doc({"trait": "", "equals": 1}), "conditions.trait: expected a trait name"),
    (doc({"trait": "x"}), "exactly one of equals, not_equals"),
    (doc({"trait": "x", "equals": 1, "gt": 0}), "(found equals, gt)"),
    (doc({"trait": "x", "equals": [1, 2]}), "use in: for several values"),
    (doc({"trait": "x", "equals": None}), "use exists: false for a missing trait"),
    (doc({"trait": "x", "in": []}), "conditions.in: expected a non-empty list of values, got an empty list"),
    (doc({"trait": "x", "in": "a"}), "conditions.in: expected a non-empty list of values"),
    (doc({"trait": "x", "not_in": ["a", {"b": 1}]}), "conditions.not_in[1]: expected a value"),
    (doc({"trait": "x", "contains": ["a"]}), "conditions.contains: expected one value"),
    (doc({"trait": "x", "exists": "yes"}), "conditions.exists: expected true or false"),
    (doc({"trait": "x", "gte": True}), "conditions.gte: expected a number"),
    (doc({"trait": "x", "lt": "2026-01-01"}), "use before: or after: for dates"),
    (doc({"trait": "x", "before": "last week"}), 'conditions.before: "last week" is not a date'),
    (doc({"trait": "x", "within_last": "a while"}), 'conditions.within_last: "a while" is not a duration'),
    (doc({"trait": "x", "more_than_ago": "0 days"}), "must be longer than zero"),
    (doc({"trait": "x", "anniversary": "tomorrow"}), 'conditions.anniversary: expected today, got "tomorrow"'),
    (doc({"event": ""}), "conditions.event: expected an event name"),
    (doc({"event": "x" * 201}), "at most 200 characters"),
    (doc({"event": "A", "at_least": 1, "at_most": 3}),
     "give one of at_least, at_most, exactly, performed (found at_least, at_most)"),
    (doc({"event": "A", "at_least": True}), "conditions.at_least: expected a whole number ≥ 0, got true/false"),
    (doc({"event": "A", "exactly": 1.5}), "conditions.exactly: expected a whole number"),
    (doc({"event": "A", "performed": "no"}), "conditions.performed: expected true or false"),
    (doc({"event": "A", "where": []}), "conditions.where: expected a list of comparisons"),
    (doc({"event": "A", "where": ["properties.x ~ 1"]}), "conditions.where[0]:"),
    (doc({"event": "A", "first": "2026-01-01"}), "conditions.first: expected before: and/or after:"),
    (doc({"event": "A", "last": {"befor": "60 days ago"}}),
     "conditions.last: unknown field 'befor' (did you mean 'before'?)"),
    (doc({"event": "A", "last": {"before": "soonish"}}), 'conditions.last.before: "soonish" is not a date'),
    (doc({"message": "read"}), 'conditions.message: "read" is not one of received, opened'),
    (doc({"message": "opend"}), "(did you mean opened?)"),
    (doc({"message": "opened", "campaign": ""}), "conditions.campaign: expected an id"),
    (doc({"message": "opened", "campain": "p"}), "unknown field 'campain' (did you mean 'campaign'?)"),
    (doc({"segment": "Not An Id"}), 'conditions.segment: "Not An Id" is not a segment id'),
    (doc({"score": 50}), "conditions.score: expected a comparison such as {gte: 50}"),
    (doc({"score": {}}), "conditions.score: expected a comparison"),
    (doc({"score": {"gte": "50"}}), "conditions.score.gte: expected a number"),
    (doc({"stage": ["lead"]}), "conditions.stage: expected a stage or {in: [...]}"),
    (doc({"stage": {"in": []}}), "conditions.stage.in: expected a non-empty list of stages"),
    (doc({"stage": {"one_of": ["a"]}}), "conditions.stage: unknown field 'one_of'"),
    (doc({"rfm": {"in": ["ok", None]}}), "conditions.rfm.in[1]: expected an RFM class"),
    (doc({"persona": None}), "conditions.persona: expected a persona"),
    (doc({"tag": ""}), "conditions.tag: expected a tag"),
    (doc({"consent": "e mail"}), "conditions.consent: expected a channel"),
    (doc({"reachable": "push"}), 'conditions.reachable: expected email or sms, got "push"'),
    (doc({"campaign_group": "p"}), "conditions.campaign_group: expected {campaign"),
    (doc({"campaign_group": {"group": 1}}), "conditions.campaign_group.campaign: required"),
    (doc({"campaign_group": {"campaign": "p"}}), "conditions.campaign_group.group: required"),
    (doc({"campaign_group": {"campaign": "p", "group": []}}), "expected a non-empty list of groups"),
    (doc({"campaign_group": {"campaign": "p", "group": [1, "lost"]}}),
     'conditions.campaign_group.group[1]: "lost" is not a group'),
    (doc({"campaign_group": {"campaign": "p", "group": 0}}), "0 is not a group"),
    (doc({"campaign_group": {"campaign": "p", "grp": 1}}), "unknown field 'grp' (did you mean 'group'?)"),
])
def test_invalid_documents_say_where_and_why(document, expected):
    problems = problems_of(document)
    assert any(expected in p for p in problems), problems


def test_nested_paths_are_precise():
    problems = problems_of(doc({"any": [{"tag": "a"}, {"all": [{"tag": "b"}, {"not": {"event": "X",
                                                                                      "within": "2 dayss"}}]}]}))
    assert problems == ['conditions.any[1].all[1].not.within: "2 dayss" is not a duration: unknown unit "dayss" '
                        '(did you mean "days"?)']


def test_validate_segment_returns_problems_instead_of_raising():
    assert validate_segment(doc({"tag": "vip"})) == []
    assert validate_segment(doc({"tagg": "vip"})) == ["conditions: unknown field 'tagg' (did you mean 'tag'?)"]


def test_segment_problems_share_the_definition_error_of_every_kind():
    from chalicelib.domain.definition_errors import DefinitionError as Shared

    with pytest.raises(Shared):
        parse_segment(doc({"tagg": "vip"}))


def test_definition_error_reads_as_one_message():
    error = DefinitionError(["a: one", "b: two"])
    assert str(error) == "a: one; b: two" and error.problems == ["a: one", "b: two"]


# --- condition kinds -------------------------------------------------------------------------

def test_trait_values_from_yaml_dates_are_compared_as_text():
    definition = from_yaml("id: s\nname: S\nconditions:\n  trait: signup\n  equals: 2026-01-31\n")
    assert definition.condition == TraitCondition("signup", "equals", "2026-01-31")
    before = from_yaml("id: s\nname: S\nconditions:\n  trait: signup\n  before: 2026-01-31\n")
    assert before.condition.value.day == date(2026, 1, 31)


@pytest.mark.parametrize("spec,at_least,at_most", [
    ({}, 1, None),
    ({"at_least": 3}, 3, None),
    ({"at_most": 2}, 0, 2),
    ({"exactly": 2}, 2, 2),
    ({"at_most": 0}, 0, 0),
    ({"performed": False}, 0, 0),
    ({"performed": True}, 1, None),
    ({"at_least": 0}, 0, None),
])
def test_event_counts(spec, at_least, at_most):
    condition = parse_segment(doc({"event": "Order Completed", **spec})).condition
    assert (condition.at_least, condition.at_most) == (at_least, at_most)


def test_first_and_last_bounds():
    condition = parse_segment(doc({"event": "Order Completed", "first": {"after": "2026-01-01"},
                                   "last": {"before": "60 days ago", "after": "1 year ago"}})).condition
    assert condition.first.after.day == date(2026, 1, 1) and condition.first.before is None
    assert condition.last.before.offset == -timedelta(days=60)
    assert condition.last.after.offset == -timedelta(days=365)


def test_message_conditions_compile_to_event_conditions_sharing_counters():
    condition = parse_segment(doc({"message": "clicked", "campaign": "promo-2026-11", "link": "offer-2",
                                   "within": "2 days"})).condition
    assert isinstance(condition, EventCondition)
    same = EventMatcher("Email Link Clicked", parse_filters(
        ['properties.link_id == "offer-2"', 'properties.campaign_id == "promo-2026-11"'], "where"))
    assert condition.matcher.key == same.key
    assert condition.within == timedelta(days=2)


@pytest.mark.parametrize("message,event", [
    ("received", "Message Sent"), ("opened", "Email Opened"), ("clicked", "Email Link Clicked"),
    ("bounced", "Email Bounced"), ("unsubscribed", "Email Unsubscribed"), ("complained", "Email Complained"),
])
def test_message_kinds_map_to_internal_events(message, event):
    condition = parse_segment(doc({"message": message})).condition
    assert condition.matcher == EventMatcher(event)


def test_message_with_journey_template_and_extra_filters():
    condition = parse_segment(doc({"message": "opened", "journey": "welcome", "template": "tips",
                                   "where": ["context.channel == \"email\""], "at_least": 2})).condition
    texts = sorted(f.text for f in condition.matcher.filters)
    assert texts == ['context.channel == "email"', 'properties.journey_id == "welcome"',
                     'properties.template_id == "tips"']
    assert condition.at_least == 2


def test_other_kinds():
    parsed = parse_segment(doc({"all": [
        {"segment": "mql"},
        {"score": {"gte": 50, "lt": 100}},
        {"stage": "Lead"},
        {"stage": {"in": ["lead", "MQL"]}},
        {"tag": "VIP"},
        {"consent": "Email"},
        {"reachable": "sms"},
        {"rfm": {"in": ["at_risk", "hibernating"]}},
        {"persona": "barista"},
        {"campaign_group": {"campaign": "promo-2026-11", "group": [3, "4", "converted"]}},
        {"any": [{"tag": "a"}, {"not": {"tag": "b"}}]},
    ]})).condition.conditions
    assert parsed[0] == SegmentCondition("mql")
    assert parsed[1] == ScoreCondition((("gte", 50.0), ("lt", 100.0)))
    assert parsed[2].stages == ("lead",) and parsed[3].stages == ("lead", "mql")
    assert parsed[4].tag == "vip" and parsed[5].channel == "email"
    assert parsed[6] == ReachableCondition("sms")
    assert parsed[7].classes == ("at_risk", "hibernating") and parsed[8].personas == ("barista",)
    assert parsed[9] == CampaignGroupCondition("promo-2026-11", ("3", "4", "converted"))
    assert isinstance(parsed[10], AnyOf) and isinstance(parsed[10].conditions[1], Not)


# --- what a definition reads -----------------------------------------------------------------

def test_reads_lists_every_dependency():
    definition = parse_segment(doc({"all": [
        {"trait": "country", "equals": "FR"},
        {"trait": "address.city", "equals": "Lyon"},
        {"trait": "birthday", "anniversary": "today"},
        {"event": "Product Viewed", "where": ['category == "coffee"']},
        {"message": "opened", "campaign": "p"},
        {"not": {"segment": "mql"}},
        {"score": {"gte": 1}},
        {"any": [{"stage": "lead"}, {"tag": "vip"}, {"consent": "email"}, {"rfm": "loyal"},
                 {"persona": "barista"}, {"campaign_group": {"campaign": "promo", "group": 1}},
                 {"reachable": "sms"}]},
    ]}))
    assert definition.reads() == {
        ("trait", "country"), ("trait", "address.city"), ("trait", "address"), ("trait", "birthday"),
        ("trait", "timezone"), ("event", "Product Viewed"), ("event", "Email Opened"), ("segment", "mql"),
        ("score",), ("stage",), ("tag",), ("consent", "email"), ("rfm",), ("persona",), ("campaign", "promo"),
        ("consent", "sms"), ("trait", "phone"), ("identifiers",),
    }


def test_calendar_day_bounds_on_events_read_the_time_zone():
    assert parse_segment(doc({"event": "A", "first": {"after": "2026-01-01"}})).reads() == {
        ("event", "A"), ("trait", "timezone")}
    assert parse_segment(doc({"event": "A", "last": {"before": "30 days ago"}})).reads() == {("event", "A")}


def test_matchers_are_the_filtered_ones_without_duplicates():
    definition = parse_segment(doc({"any": [
        {"event": "Product Viewed", "where": ['properties.category == "coffee"'], "at_least": 3},
        {"event": "Product Viewed", "where": ['category == "coffee"'], "within": "7 days"},
        {"event": "Product Viewed"},
        {"message": "opened", "campaign": "p"},
    ]}))
    keys = sorted(m.key for m in definition.matchers())
    assert len(keys) == 2
    assert EventMatcher("Product Viewed", parse_filters(['properties.category == "coffee"'], "w")).key in keys
    assert all(m.filters for m in definition.matchers())


@pytest.mark.parametrize("conditions,expected", [
    ({"tag": "vip"}, False),
    ({"event": "A"}, False),
    ({"event": "A", "at_least": 3}, False),
    ({"event": "A", "within": "7 days"}, True),
    ({"event": "A", "last": {"before": "2026-01-01"}}, False),
    ({"event": "A", "last": {"before": "60 days ago"}}, True),
    ({"message": "opened", "within": "2 days"}, True),
    ({"trait": "signup", "before": "2026-01-01"}, False),
    ({"trait": "signup", "before": "30 days ago"}, True),
    ({"trait": "signup", "within_last": "30 days"}, True),
    ({"trait": "signup", "more_than_ago": "30 days"}, True),
    ({"trait": "birthday", "anniversary": "today"}, True),
    ({"score": {"gte": 50}}, True),
    ({"segment": "other"}, False),
    ({"not": {"any": [{"tag": "a"}, {"event": "A", "within": "1 day"}]}}, True),
])
def test_time_dependence(conditions, expected):
    assert parse_segment(doc(conditions)).time_dependent is expected


# --- catalogs ----------------------------------------------------------------------------------

def seg(segment_id: str, conditions) -> object:
    return parse_segment(doc(conditions, id=segment_id))


def test_a_consistent_catalog_has_no_problems():
    catalog = [seg("mql", {"score": {"gte": 50}}),
               seg("nurture", {"all": [{"stage": "lead"}, {"not": {"segment": "mql"}}]})]
    assert validate_catalog(catalog) == []


def test_unknown_segments_are_named_with_their_path():
    catalog = [seg("mql", {"score": {"gte": 50}}),
               seg("nurture", {"all": [{"stage": "lead"}, {"not": {"segment": "mq1"}}]})]
    assert validate_catalog(catalog) == [
        'nurture: conditions.all[1].not.segment: unknown segment "mq1" (did you mean "mql"?)']


def test_cycles_are_named_with_their_path():
    catalog = [seg("a", {"any": [{"tag": "x"}, {"segment": "b"}]}), seg("b", {"segment": "c"}),
               seg("c", {"all": [{"segment": "a"}]}), seg("d", {"segment": "a"})]
    assert validate_catalog(catalog) == ["c: conditions.all[0].segment: segments form a cycle: a → b → c → a"]


def test_a_segment_reading_itself_is_a_cycle():
    assert validate_catalog([seg("a", {"not": {"segment": "a"}})]) == [
        "a: conditions.not.segment: segments form a cycle: a → a"]


def test_two_cycles_are_both_reported():
    catalog = [seg("a", {"segment": "b"}), seg("b", {"segment": "a"}),
               seg("c", {"segment": "d"}), seg("d", {"segment": "c"})]
    problems = validate_catalog(catalog)
    assert len(problems) == 2
    assert "a → b → a" in problems[0] and "c → d → c" in problems[1]


def test_duplicate_ids_are_reported():
    assert validate_catalog([seg("a", {"tag": "x"}), seg("a", {"tag": "y"})]) == [
        'a: id: two definitions have the id "a"']
