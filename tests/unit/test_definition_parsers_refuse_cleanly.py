"""Whatever a marketer writes, the definition parsers answer with problems that name the place
in the document, never with another exception (which the admin API would turn into a 500),
and never accept a comparison that silently never matches."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.property_runs import examples
from chalicelib.domain import engagement, personas, rfm, scoring
from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.definition_kinds.trigger import parse_trigger
from chalicelib.domain.destinations import parse_destination
from chalicelib.domain.durations import parse_duration
from chalicelib.domain.segments.filters import FilterError, parse_filter
from chalicelib.domain.segments.language import FIELDS, parse_segment


def segment(conditions) -> dict:
    return {"id": "s", "name": "S", "conditions": conditions}


def problems(document) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_segment(document)
    return caught.value.problems


@pytest.mark.parametrize("conditions,place", [
    ({"message": []}, "conditions.message"),
    ({"message": {}}, "conditions.message"),
    ({"reachable": []}, "conditions.reachable"),
    ({"reachable": {"email": True}}, "conditions.reachable"),
    ({"all": [{"tag": "x"}, {"message": ["opened"]}]}, "conditions.all[1].message"),
])
def test_a_list_or_mapping_where_a_name_belongs_is_a_problem_with_its_place(conditions, place):
    found = problems(segment(conditions))
    assert len(found) == 1 and found[0].startswith(place + ":"), found


@pytest.mark.parametrize("comparison,meant", [
    ('properties.category === "tea"', "=="),
    ('properties.category = "tea"', "=="),
    ('properties.category <> "tea"', "!="),
    ('properties.category !== "tea"', "!="),
    ('properties.revenue => 50', ">="),
    ('properties.category is "tea"', "=="),
    ('properties.path startswith "/p"', "starts_with"),
    ('properties.category not_in ["tea"]', "not in"),
    ('properties.category IN ["tea"]', "in"),
    ('properties.category == = "tea"', "=="),
])
def test_an_operator_is_read_whole_and_an_unknown_one_is_refused_with_a_suggestion(comparison, meant):
    found = problems(segment({"event": "Product Viewed", "where": [comparison]}))
    assert len(found) == 1, found
    assert found[0].startswith("conditions.where[0]: "), found
    assert "is not an operator" in found[0] and f'(did you mean "{meant}"?)' in found[0], found


def test_an_operator_nothing_resembles_lists_the_known_ones():
    with pytest.raises(FilterError) as caught:
        parse_filter('properties.category ~= "tea"', "where[0]")
    assert str(caught.value).startswith('where[0]: "~=" in ')
    assert "use one of ==, !=, >=, <=, >, <, in, not in, contains, starts_with, exists" in str(caught.value)


def test_the_same_operators_are_refused_in_scoring_and_persona_rules():
    with pytest.raises(DefinitionError) as caught:
        scoring.parse_scoring({"rules": [{"id": "r", "event": "E", "where": ['properties.x === 1'], "points": 1}]})
    assert any("rules[0].where[0]" in p and '"==="' in p for p in caught.value.problems), caught.value.problems
    with pytest.raises(DefinitionError) as caught:
        personas.parse_personas({"personas": [{"id": "p", "name": "P", "when": ['traits.size <> 3']}]})
    assert any('"<>"' in p and '"!="' in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("comparison", ["properties.x == NaN", "properties.x > 1e999", "properties.x < -Infinity"])
def test_numbers_that_compare_with_nothing_are_refused(comparison):
    with pytest.raises(FilterError, match="finite number|needs a number"):
        parse_filter(comparison, "w")


@pytest.mark.parametrize("comparison,op,value", [
    ('properties.category == "tea"', "==", "tea"),
    ("revenue>50", ">", 50),
    ('properties.category not in ["tea", "coffee"]', "not in", ["tea", "coffee"]),
    ("properties.tags in[1,2]", "in", [1, 2]),
    ("properties.coupon exists", "exists", None),
    ('traits.job_title contains "VP"', "contains", "VP"),
])
def test_the_documented_operators_still_parse(comparison, op, value):
    parsed = parse_filter(comparison, "w")
    assert (parsed.op, parsed.value) == (op, value)


@pytest.mark.parametrize("text", ["999999999999 days", "P99999999999D", "999999999 weeks 99999999 weeks", "101 years"])
def test_a_duration_beyond_a_century_is_refused_not_an_overflow(text):
    with pytest.raises(ValueError, match="at most 100 years"):
        parse_duration(text)
    found = problems(segment({"event": "Order Completed", "within": text}))
    assert found[0].startswith("conditions.within:"), found
    found = problems(segment({"trait": "signup", "before": f"{text} ago"}))
    assert found[0].startswith("conditions.before:"), found


def test_deeply_nested_conditions_are_a_problem_not_a_stack_overflow():
    conditions: dict = {"tag": "x"}
    for _ in range(600):
        conditions = {"not": conditions}
    found = problems(segment(conditions))
    assert len(found) == 1 and "nest at most" in found[0], found


# -- generated documents ------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.dates()
           | st.sampled_from(["30 days", "now", "30 days ago", "2026-01-01", "today", "email", "sms", "clicked",
                              "coffee", "properties.x == 1", "properties.x === 1", "converted", "99999999999 days"]))
field_names = st.sampled_from(sorted({k for names in FIELDS.values() for k in names} | {
    "id", "name", "conditions", "when", "rules", "points", "stages", "min", "grading", "grade", "tags", "add_on",
    "remove_on", "half_life", "cap", "per", "classes", "class", "r", "f", "m", "cuts", "recency", "personas",
    "offers", "url", "segments", "secret_parameter", "purchase_event", "revenue_property", "recompute",
    "send", "template", "channel", "event", "where", "segment_entered", "once", "enabled", "on"})) \
    | st.text(max_size=5)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(field_names, inner, max_size=4),
                      max_leaves=12)
condition_names = st.sampled_from(sorted({k for names in FIELDS.values() for k in names}))
conditions = st.recursive(st.dictionaries(condition_names, values, min_size=1, max_size=3),
                          lambda inner: st.dictionaries(condition_names, values | inner, min_size=1, max_size=3)
                          | st.lists(inner, max_size=3), max_leaves=8)
segment_documents = st.fixed_dictionaries({"id": st.just("s") | values, "name": st.just("S") | values,
                                           "conditions": conditions | values})
PARSERS = [scoring.parse_scoring, rfm.parse_rfm, personas.parse_personas, engagement.parse_campaign,
           parse_destination, parse_trigger]
other_documents = st.dictionaries(field_names, values | st.lists(st.dictionaries(field_names, values, max_size=5),
                                                                 max_size=3), max_size=6)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=list(HealthCheck))
@given(document=segment_documents)
def test_generated_segments_raise_only_definition_errors(document):
    try:
        parse_segment(document)
    except DefinitionError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=list(HealthCheck))
@given(document=other_documents | values, parser=st.sampled_from(PARSERS))
def test_generated_documents_of_every_kind_raise_only_definition_errors(document, parser):
    try:
        parser(document)
    except DefinitionError as exc:
        assert exc.problems


@settings(max_examples=examples(300), deadline=None)
@given(text=st.text(max_size=40) | st.from_regex(r"(properties|traits)\.[a-z]{1,3} ?[=<>!~a-zA-Z_ ]{1,9} ?.{0,10}",
                                                 fullmatch=True))
def test_generated_comparisons_raise_only_filter_errors(text):
    try:
        parsed = parse_filter(text, "w")
    except FilterError:
        return
    # What is accepted is an operator read whole: never a value that starts with one.
    assert not (isinstance(parsed.value, str) and parsed.value[:1] in "=<>!"), parsed


def test_yaml_aliases_are_refused_before_they_unfold():
    """Nine levels of nested aliases in 450 bytes unfold into 9**9 nodes: the depth and size
    checks do not see them, so the loader refuses aliases outright (a definition needs none)."""
    from chalicelib.services.definitions import decode_document

    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        previous, current = chr(ord("a") + i - 1), chr(ord("a") + i)
        levels.append(f"{current}: &{current} [" + ", ".join([f"*{previous}"] * 9) + "]")
    bomb = "\n".join(levels + ["id: laughs", "name: Laughs"]).encode()
    with pytest.raises(DefinitionError, match=r"line 2, column \d+: .*aliases \(\*a\) are not accepted"):
        decode_document(bomb)
    # An anchor alone is harmless and still reads.
    assert decode_document(b"id: plain\nname: &n Plain\n")["name"] == "Plain"
