"""Personas: ordered profile conditions, first match wins, and a version that follows the rules."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chalicelib.domain.contact import Contact
from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.personas import assign, parse_personas

DEFINITIONS = Path(__file__).resolve().parents[2] / "chalicelib" / "definitions"

DOC = {
    "personas": [
        {"id": "b2b-marketer", "name": "B2B marketer",
         "when": ["traits.company_size >= 50", 'traits.job_title contains "market"']},
        {"id": "french-mobile", "name": "French mobile visitor",
         "when": ['context.locale starts_with "fr"', 'context.device == "mobile"']},
        {"id": "default", "name": "Everyone else", "when": []},
    ],
}


def person(traits: dict | None = None, context: dict | None = None) -> Contact:
    return Contact(id="c", created_at="", traits=traits or {}, last_context=context or {})


def problems_of(doc) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_personas(doc)
    return caught.value.problems


def test_the_shipped_example_parses_and_assigns():
    text = (DEFINITIONS / "personas.yaml").read_text(encoding="utf-8")
    config = parse_personas(yaml.safe_load(text))
    assert config == parse_personas(text)
    assert config.personas[0].id == "b2b-marketer" and config.personas[-1].id == "default"
    assert assign(config, person({"company_size": 120, "job_title": "Head of Marketing"})) == "b2b-marketer"
    assert assign(config, person({"company_size": 120, "job_title": "VP Engineering"})) == "b2b-decision-maker"
    assert assign(config, person({"company": "Bean & Co", "company_size": 4})) == "small-business"
    assert assign(config, person({"favourite_drink": "Coffee"})) == "coffee-lover"
    assert assign(config, person()) == "default"


def test_the_first_matching_persona_wins():
    config = parse_personas(DOC)
    marketer_in_france = person({"company_size": 80, "job_title": "Marketing lead"},
                                {"locale": "fr-FR", "device": "mobile"})
    assert assign(config, marketer_in_france) == "b2b-marketer"
    assert assign(config, person({"company_size": 10, "job_title": "Marketing"},
                                 {"locale": "fr-BE", "device": "mobile"})) == "french-mobile"


def test_every_condition_must_hold_and_missing_traits_do_not_match():
    config = parse_personas(DOC)
    assert assign(config, person({"job_title": "Marketing"})) == "default"
    assert assign(config, person({"company_size": "75", "job_title": "marketing"})) == "b2b-marketer"
    assert assign(config, person({}, {"locale": "fr-FR", "device": "desktop"})) == "default"


def test_no_persona_when_nothing_fits_and_there_is_no_catch_all():
    config = parse_personas({"personas": DOC["personas"][:2]})
    assert assign(config, person({"job_title": "Chef"})) is None
    assert assign(parse_personas({"personas": []}), person()) is None


def test_the_version_follows_what_decides_an_assignment():
    base = parse_personas(DOC).version
    assert parse_personas(DOC).version == base
    renamed = {"personas": [{**p, "name": p["name"] + "!"} for p in DOC["personas"]]}
    assert parse_personas(renamed).version == base  # a display name changes no assignment
    reordered = {"personas": [DOC["personas"][1], DOC["personas"][0], DOC["personas"][2]]}
    assert parse_personas(reordered).version != base
    stricter = {"personas": [{**DOC["personas"][0], "when": ["traits.company_size >= 500"]}] + DOC["personas"][1:]}
    assert parse_personas(stricter).version != base
    assert len(base) == 16


def test_problems_are_collected_and_placed():
    problems = problems_of({
        "persona": [],
        "personas": [
            {"id": "Marketer", "when": ['job_title contains "market"']},
            {"id": "ok", "whne": []},
            {"id": "ok", "when": ["properties.plan == \"pro\""]},
            {"id": "bad-filter", "when": ["traits.size >> 3"]},
            {"name": "nameless"},
            "just-a-string",
        ],
    })
    assert 'persona: unknown field (did you mean "personas"?)' in problems
    assert 'personas[0].id: "Marketer" must be lower case letters, digits, - or _' in problems
    assert ("personas[0].when[0]: 'properties.job_title' is not part of the profile "
            "(use traits.job_title or context.job_title)") in problems
    assert 'personas[1].whne: unknown field (did you mean "when"?)' in problems
    assert 'personas[2].id: "ok" is used twice' in problems
    assert any(p.startswith("personas[2].when[0]: 'properties.plan' is not part of the profile") for p in problems)
    assert any(p.startswith("personas[3].when[0]:") for p in problems)
    assert "personas[4].id: is required" in problems
    assert 'personas[5]: expected a mapping, got "just-a-string"' in problems


def test_a_catch_all_before_other_personas_is_refused():
    problems = problems_of({"personas": [{"id": "default", "when": []}, DOC["personas"][0]]})
    assert problems == ["personas: 'default' has no conditions and matches everyone, so b2b-marketer "
                        "can never apply (put it last)"]


@pytest.mark.parametrize("doc,expected", [
    ({}, "personas: is required"),
    ({"personas": {"id": "x"}}, 'personas: expected a list, got {"id": "x"}'),
    ("personas: [", "document: line"),
    ([1, 2], "document: expected a mapping"),
    ({"personas": [{"id": "x", "when": "traits.a exists", "name": 3}]}, "personas[0].name: 3 is not text"),
])
def test_single_problems(doc, expected):
    assert any(p.startswith(expected) for p in problems_of(doc)), problems_of(doc)


def test_a_single_condition_may_be_written_without_a_list():
    config = parse_personas({"personas": [{"id": "vip", "when": "traits.vip == true"}]})
    assert assign(config, person({"vip": True})) == "vip"
    assert assign(config, person({"vip": False})) is None
