"""The journey kind of definition: read with the journey language, its references checked with
the other definitions (templates are not definitions and are left out), a draft validated
without id or name, catalogued as `journeys`, and nothing that would execute it."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.definition_kinds import REGISTRY
from chalicelib.domain.journeys.language import Journey
from chalicelib.services.catalog import build_catalog
from chalicelib.services.definitions import DefinitionInUse, DefinitionService
from tests.unit.fakes import FakeClock, FakeDefinitionStore

EXAMPLES = Path(__file__).resolve().parents[3] / "chalicelib" / "definitions" / "journeys"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
KIND = REGISTRY.get("journey")


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


@pytest.fixture
def service():
    return DefinitionService(FakeDefinitionStore(), FakeClock(NOW), cache_seconds=0)


def problems_of(call, *args) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        call(*args)
    return caught.value.problems


def test_the_kind_is_registered_under_its_name_and_plural():
    assert REGISTRY.get("journeys") is KIND
    assert (KIND.name, KIND.plural, KIND.catalog_attribute) == ("journey", "journeys", "journeys")
    assert not KIND.singleton


def test_it_is_read_with_the_journey_language_and_template_references_are_left_out():
    reading = KIND.read(example("abandoned-cart"))
    assert reading.ok and isinstance(reading.value, Journey) and reading.value.id == "abandoned-cart"
    assert reading.value.templates() == ("cart-reminder", "cart-reminder-sms")
    assert reading.references == ()  # it names two templates, which no definition provides


def test_segment_and_destination_references_are_kept_even_when_the_journey_has_problems():
    document = {**example("abandoned-cart"), "entry": {"re_entry": "always", "segment": "vip"},
                "start": "nowhere"}
    document["nodes"] = {**document["nodes"], "tell-crm": {"notify": {"destination": "crm"}}}
    reading = KIND.read(document)
    assert not reading.ok and any(p.startswith("start:") for p in reading.problems)
    assert {(r.kind, r.name) for r in reading.references} == {("segment", "vip"), ("destination", "crm")}


def test_storing_the_example_needs_no_template_definition(service):
    result = service.put("journey", "abandoned-cart", example("abandoned-cart"))
    assert result["version"] == 1
    assert "abandoned-cart" in service.catalog().journeys


def test_a_broken_journey_is_refused_with_every_problem_and_its_unknown_segment(service):
    document = {**example("abandoned-cart"), "entry": {"re_entry": "sometimes", "segment": "vipp"},
                "start": "wait-for-purchse", "colour": "red"}
    problems = problems_of(service.put, "journey", "broken", document)
    places = {p.split(":", 1)[0] for p in problems}
    assert {"colour", "entry.re_entry", "start", "entry.segment"} <= places, problems
    assert any('unknown segment "vipp"' in p for p in problems), problems
    assert any('did you mean "wait-for-purchase"' in p for p in problems), problems
    assert service.get("journey", "broken") is None


def test_a_draft_validates_without_id_or_name(service):
    draft = {k: v for k, v in example("welcome-series").items() if k not in ("id", "name")}
    assert KIND.read(KIND.draft(draft)).ok
    result = service.validate("journey", draft)
    assert result["valid"] is True and result["id"] is None
    assert service.get("journey", "draft") is None


def test_a_segment_a_journey_uses_cannot_be_deleted(service):
    service.put("segment", "vip", {"name": "VIP", "conditions": {"trait": "vip", "equals": True}})
    document = {**example("abandoned-cart"), "entry": {"re_entry": "always", "segment": "vip"}}
    service.put("journey", "abandoned-cart", document)
    with pytest.raises(DefinitionInUse) as caught:
        service.delete("segment", "vip")
    assert "journey abandoned-cart (entry.segment)" in caught.value.problems[0]


def test_the_catalog_holds_parsed_journeys_and_nothing_makes_them_run():
    rows = [{"kind": "journey", "id": "abandoned-cart", "version": 1, "document": example("abandoned-cart")}]
    catalog = build_catalog(rows)
    assert isinstance(catalog.journeys["abandoned-cart"], Journey)
    # Not executed yet: no event counters kept for it, no back-fill, no members, and the
    # stream's matchers for its trigger event are none.
    assert list(KIND.matchers(catalog.journeys["abandoned-cart"])) == []
    assert not KIND.backfill and not KIND.has_members
    assert catalog.matchers_for("Product Added") == []


def test_parse_raises_every_problem():
    with pytest.raises(DefinitionError) as caught:
        KIND.parse({"id": "x"})
    assert len(caught.value.problems) >= 3
