"""The registry of definition kinds and the definition service: references checked with every
other problem, deletions refused while something uses them, versions kept, rows that no
longer parse logged, counted and listed (never skipped silently)."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.domain.definition_errors import DefinitionError, Reference, expect_name
from chalicelib.domain.definition_kinds import REGISTRY, KindRegistry, campaign, destination, personas, rfm, \
    scoring, segment
from chalicelib.domain.definition_kinds.base import DefinitionKind
from chalicelib.services.catalog import build_catalog
from chalicelib.services.definitions import DefinitionInUse, DefinitionNotFound, DefinitionService, kind_and_id
from chalicelib.services.segmentation import ProfileRules
from tests.unit.fakes import FakeClock, FakeDefinitionStore, FakeMembershipStore

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def service():
    return DefinitionService(FakeDefinitionStore(), FakeClock(NOW), cache_seconds=0,
                             memberships=FakeMembershipStore())


def seg(segment_id: str, conditions, name: str = "A segment") -> dict:
    return {"id": segment_id, "name": name, "conditions": conditions}


def problems_of(call, *args) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        call(*args)
    return caught.value.problems


# -- the registry ----------------------------------------------------------------------------

def test_every_kind_is_registered_once_by_name_and_plural():
    assert REGISTRY.names() == ("segment", "campaign", "destination", "scoring", "rfm", "personas", "content",
                                "broadcast", "trigger", "journey")
    assert REGISTRY.get("segments") is REGISTRY.get("segment") is segment.KIND
    assert REGISTRY.get("campaigns") is campaign.KIND and REGISTRY.get("destination") is destination.KIND
    assert {k.name for k in REGISTRY if k.singleton} == {"scoring", "rfm", "personas"}
    assert {k.name for k in REGISTRY if k.backfill} == {"segment", "personas"}
    assert REGISTRY.get("bogus") is None and REGISTRY.get(["segment"]) is None
    assert [REGISTRY.get(k) for k in ("scoring", "rfm", "personas")] == [scoring.KIND, rfm.KIND, personas.KIND]


def test_two_kinds_with_one_name_are_refused():
    class Other(DefinitionKind):
        name, plural = "segment", "others"

    with pytest.raises(ValueError, match="two definition kinds"):
        KindRegistry([segment.KIND, Other()])


class TemplateKind(DefinitionKind):
    """A kind as the next ones will be written: one class and one registration line."""

    name, plural, catalog_attribute = "template", "templates", "templates"
    provides_names = ("template",)

    def parse(self, document):
        problems: list[str] = []
        name = expect_name(document.get("name"), "name", problems)
        if not isinstance(document.get("body"), str):
            problems.append("body: required, the template text")
        if problems:
            raise DefinitionError(problems)
        return (name, document["body"])


def test_a_new_kind_is_one_class_and_one_registration():
    kinds = KindRegistry([*REGISTRY, TemplateKind()])
    service = DefinitionService(FakeDefinitionStore(), FakeClock(NOW), cache_seconds=0, kinds=kinds)
    service.put("template", "welcome", {"name": "Welcome", "body": "Hello {{ first_name }}"})
    assert service.catalog().templates == {"welcome": ("Welcome", "Hello {{ first_name }}")}
    assert service.catalog().segments == {}  # the other kinds are untouched
    assert service.list("templates")["templates"][0]["id"] == "welcome"
    assert problems_of(service.put, "template", "bad", {"name": "Bad"}) == ["body: required, the template text"]
    assert kind_and_id("templates/welcome.yaml", kinds) == ("template", "welcome")


# -- references: checked with every other problem ------------------------------------------------

def test_a_missing_segment_is_named_with_the_other_problems_of_the_document(service):
    found = problems_of(service.put, "segment", "broken", seg("broken", {"all": [
        {"event": "Product Added", "within": "30 dayz"},
        {"segment": "nowhere"},
    ]}))
    assert any(p.startswith('conditions.all[0].within: "30 dayz" is not a duration') for p in found), found
    assert 'conditions.all[1].segment: unknown segment "nowhere"' in found, found
    assert len(found) == 2


def test_a_reference_gets_a_suggestion(service):
    service.put("segment", "coffee-lovers", seg("coffee-lovers", {"tag": "coffee"}))
    found = problems_of(service.put, "segment", "fans", seg("fans", {"segment": "cofee-lovers"}))
    assert found == ['conditions.segment: unknown segment "cofee-lovers" (did you mean "coffee-lovers"?)']


def test_campaigns_personas_rfm_classes_and_stages_must_exist(service):
    found = problems_of(service.put, "segment", "s", seg("s", {"all": [
        {"campaign_group": {"campaign": "promo-x", "group": 6}},
        {"persona": "coffee-lover"},
        {"rfm": {"in": ["champions", "loyal"]}},
        {"stage": "mql"},
    ]}))
    assert found == [
        'conditions.all[0].campaign_group.campaign: unknown campaign "promo-x"',
        'conditions.all[1].persona: unknown persona "coffee-lover" (no personas definition defines any)',
        'conditions.all[2].rfm.in[0]: unknown rfm class "champions" (no rfm definition defines any)',
        'conditions.all[2].rfm.in[1]: unknown rfm class "loyal" (no rfm definition defines any)',
        'conditions.all[3].stage: unknown stage "mql" (no scoring definition defines any)',
    ]
    service.put("personas", "default", {"personas": [{"id": "coffee-lover", "name": "Coffee", "when": []}]})
    service.put("scoring", "default", {"stages": [{"stage": "lead", "min": 0}, {"stage": "MQL", "min": 50}]})
    found = problems_of(service.put, "segment", "s", seg("s", {"all": [{"persona": "coffee-lovers"}, {"stage": "mql"}]}))
    assert found == ['conditions.all[0].persona: unknown persona "coffee-lovers" (did you mean "coffee-lover"?)']


def test_a_destination_names_existing_segments_even_when_its_other_fields_are_wrong(service):
    found = problems_of(service.put, "destination", "crm", {"url": "ftp://x", "segments": ["mql"],
                                                            "secret_parameter": "/mercurio/test/destinations/crm"})
    assert any(p.startswith("url:") for p in found) and 'segments[0]: unknown segment "mql"' in found, found


def test_a_cycle_is_named_at_the_reference_that_closes_it(service):
    service.put("segment", "a", seg("a", {"tag": "x"}))
    service.put("segment", "b", seg("b", {"segment": "a"}))
    found = problems_of(service.put, "segment", "a", seg("a", {"any": [{"tag": "x"}, {"segment": "b"}]}))
    assert found == ["conditions.any[1].segment: segments form a cycle: a → b → a"]
    assert problems_of(service.put, "segment", "c", seg("c", {"segment": "c"})) == \
        ["conditions.segment: segments form a cycle: c → c"]


# -- deleting ------------------------------------------------------------------------------------

def test_deleting_what_others_use_is_refused_naming_them(service):
    service.put("segment", "mql", seg("mql", {"tag": "hot"}))
    service.put("segment", "nurture", seg("nurture", {"not": {"segment": "mql"}}))
    service.put("destination", "crm", {"url": "https://crm.example.com/hook", "segments": ["mql"],
                                       "secret_parameter": "/mercurio/test/destinations/crm"})
    with pytest.raises(DefinitionInUse) as caught:
        service.delete("segment", "mql")
    assert caught.value.problems == ['segment "mql" is used by destination crm (segments[0]), '
                                     'segment nurture (conditions.not.segment): change or delete those first']
    assert service.get("segment", "mql") is not None
    service.delete("destination", "crm")
    service.delete("segment", "nurture")
    result = service.delete("segment", "mql")
    assert result["deleted"] and result["backfill"]["action"] == "remove"  # its members leave it
    assert "mql" not in service.catalog().segments


def test_a_new_version_may_not_take_away_what_others_use(service):
    service.put("personas", "default", {"personas": [
        {"id": "coffee-lover", "name": "Coffee", "when": ['traits.drink == "coffee"']},
        {"id": "tea-lover", "name": "Tea", "when": []}]})
    service.put("segment", "banner", seg("banner", {"persona": "coffee-lover"}))
    found = problems_of(service.put, "personas", "default", {"personas": [{"id": "tea-lover", "name": "T", "when": []}]})
    assert found == ['persona "coffee-lover" would no longer exist but is used by segment banner (conditions.persona)']
    with pytest.raises(DefinitionInUse):
        service.delete("personas", "default")


def test_deleting_nothing_is_not_found(service):
    with pytest.raises(DefinitionNotFound):
        service.delete("segment", "never")
    with pytest.raises(DefinitionNotFound, match="kinds: segment, campaign"):
        service.list("bogus")


# -- versions --------------------------------------------------------------------------------------

def test_versions_survive_a_deletion_and_numbering_continues(service):
    service.put("segment", "vip", seg("vip", {"tag": "vip"}))
    service.put("segment", "vip", seg("vip", {"tag": "vip"}, name="VIPs"))
    service.delete("segment", "vip")
    with pytest.raises(DefinitionNotFound, match="deleted at version 3"):
        service.view("segment", "vip")
    assert service.view("segment", "vip", version=2)["document"]["name"] == "VIPs"
    assert service.put("segment", "vip", seg("vip", {"tag": "vip"}))["version"] == 4
    view = service.view("segment", "vip")
    assert [(v["version"], v["deleted"]) for v in view["versions"]] == [(1, False), (2, False), (3, True), (4, False)]
    assert view["current"] and not service.view("segment", "vip", version=1)["current"]
    with pytest.raises(DefinitionNotFound, match="no version 3"):
        service.view("segment", "vip", version=3)


def test_an_unchanged_document_is_not_a_new_version(service):
    first = service.put("campaign", "promo", {"name": "Promo"})
    again = service.put("campaign", "promo", "name: Promo\n")
    assert (first["version"], first["changed"], again["version"], again["changed"]) == (1, True, 1, False)


# -- validating without saving -------------------------------------------------------------------------

def test_a_draft_needs_no_id_and_no_name(service):
    service.put("segment", "mql", seg("mql", {"tag": "hot"}))
    result = service.validate("segment", {"conditions": {"segment": "mql"}})
    assert result["valid"] and result["id"] is None
    assert result["references"] == [{"kind": "segment", "name": "mql", "at": "conditions.segment"}]
    found = problems_of(service.validate, "segment", {"conditions": {"all": [{"segment": "mq"}, {"message": []}]}})
    assert found == ['conditions.all[1].message: [] is not one of received, opened, clicked, bounced, unsubscribed, '
                     'complained', 'conditions.all[0].segment: unknown segment "mq" (did you mean "mql"?)']
    assert service.store.current() != [] and len(service.store.current()) == 1  # nothing stored


def test_validating_an_edit_sees_what_it_would_break(service):
    service.put("segment", "a", seg("a", {"tag": "x"}))
    service.put("segment", "b", seg("b", {"segment": "a"}))
    assert problems_of(service.validate, "segment", {"conditions": {"segment": "b"}}, "a") == \
        ["conditions.segment: segments form a cycle: a → b → a"]
    assert service.validate("segment", {"conditions": {"tag": "y"}}, "a")["changed"] is True


@pytest.mark.parametrize("definition_id,expected", [
    ("Bad Id", "id: 'Bad Id' must be 1 to 64 lower-case letters"),
    ("validate", "id: 'validate' is reserved"),
])
def test_ids_are_checked_with_the_document(service, definition_id, expected):
    found = problems_of(service.put, "segment", definition_id, {"name": "x", "conditions": {"tag": "x"}})
    assert found[0].startswith(expected), found


def test_a_document_nested_too_deeply_is_a_problem(service):
    deep: object = "x"
    for _ in range(200):
        deep = [deep]
    assert problems_of(service.put, "campaign", "deep", {"name": "D", "offers": deep}) == \
        ["document: nested more than 64 levels deep"]
    assert problems_of(service.put, "campaign", "deep", "offers: " + "[" * 2000 + "]" * 2000) == \
        ["document: nested more than 64 levels deep"]


# -- several at once: files and uploads -------------------------------------------------------------------

def test_files_are_checked_together_whatever_their_order(service, tmp_path):
    (tmp_path / "segments").mkdir()
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "segments" / "group-6.yaml").write_text(
        "name: G6\nconditions:\n  campaign_group: {campaign: promo, group: 6}\n")
    (tmp_path / "campaigns" / "promo.yaml").write_text("name: Promo\n")
    assert [r["kind"] for r in service.seed_directory(tmp_path)] == ["segment", "campaign"]
    (tmp_path / "segments" / "broken.yaml").write_text("name: B\nconditions:\n  segment: nowhere\n")
    assert problems_of(service.seed_directory, tmp_path) == ['segment broken: conditions.segment: unknown segment '
                                                             '"nowhere"']


class Uploads:
    def __init__(self, objects: dict[str, str]):
        self.objects = objects

    def listing(self):
        return {k: str(hash(v)) for k, v in self.objects.items()}

    def read(self, key):
        return self.objects[key].encode()


def test_uploads_are_applied_as_a_set_and_what_relied_on_a_rejected_one_is_rejected_too(service):
    report = service.sync_uploads(Uploads({
        "definitions/segments/group-6.yaml": "name: G6\nconditions:\n  campaign_group: {campaign: promo, group: 6}\n",
        "definitions/campaigns/promo.yaml": "name: Promo\n",
        "definitions/segments/fans.yaml": "name: Fans\nconditions:\n  segment: broken\n",
        "definitions/segments/broken.yaml": "name: Broken\nconditions:\n  tag: [x]\n",
        "definitions/nonsense.yaml": "a: b\n",
    }))
    assert sorted(r["id"] for r in report["applied"]) == ["group-6", "promo"]
    rejected = {r["key"]: r["problems"] for r in report["rejected"]}
    assert set(rejected) == {"definitions/segments/fans.yaml", "definitions/segments/broken.yaml",
                             "definitions/nonsense.yaml"}
    assert rejected["definitions/segments/fans.yaml"] == ['conditions.segment: unknown segment "broken"']
    assert service.store.stats("segment", "fans")["last_upload"]["problems"] == \
        ['conditions.segment: unknown segment "broken"']


# -- rows that no longer parse ---------------------------------------------------------------------------

def test_a_stored_row_that_no_longer_parses_is_logged_counted_and_listed(service, caplog):
    service.put("segment", "good", seg("good", {"tag": "x"}))
    # Stored by an older release whose parser read `===` as `==`.
    service.store.put("segment", "old", seg("old", {"event": "Viewed", "where": ['properties.c === "tea"']}), "t")
    counted: list[list[dict]] = []
    service.on_unreadable = counted.append
    with caplog.at_level(logging.WARNING):
        catalog = service.catalog()
    assert set(catalog.segments) == {"good"}
    assert [(r["kind"], r["id"], r["version"]) for r in catalog.unreadable] == [("segment", "old", 1)]
    assert '"===" in' in catalog.unreadable[0]["problems"][0]
    assert len(counted) == 1 and counted[0] == catalog.unreadable
    assert any("old" in r.getMessage() and "===" in r.getMessage() for r in caplog.records)
    listing = service.list("segment")
    assert listing["unreadable"] == [{"id": "old", "version": 1, "problems": catalog.unreadable[0]["problems"]}]
    assert service.overview()["unreadable"][0]["id"] == "old"
    assert "problems" in service.view("segment", "old")


def test_memberships_of_an_unreadable_segment_are_kept_not_dropped():
    catalog = build_catalog([
        {"kind": "segment", "id": "old", "version": 1, "document": seg("old", {"tag": ["not", "a", "tag"]})},
        {"kind": "segment", "id": "gone-soon", "version": 1, "document": seg("gone-soon", {"tag": "x"})},
    ])
    contact = Contact(id="c1", created_at="2026-11-01T00:00:00.000Z",
                      segments={"old": {"since": "2026-11-01T00:00:00.000Z"},
                                "deleted": {"since": "2026-11-01T00:00:00.000Z"}})
    changes = ProfileRules(lambda: catalog).evaluate(contact, NOW, set(), cause="test")
    assert changes == [("deleted", False)]  # a deleted segment's membership ends
    assert "old" in contact.segments  # an unreadable one's stays until it is fixed or deleted


def test_the_catalog_keeps_its_public_surface():
    catalog = build_catalog([
        {"kind": "segment", "id": "viewers", "version": 3, "document": seg(
            "viewers", {"event": "Product Viewed", "where": ['properties.category == "coffee"']})},
        {"kind": "scoring", "id": "default", "version": 1, "document": {"rules": [
            {"id": "r", "event": "Product Viewed", "where": ['properties.category == "tea"'], "points": 1}]}},
        {"kind": "campaign", "id": "promo", "version": 1, "document": {"id": "promo", "name": "Promo"}},
    ])
    assert set(catalog.segments) == {"viewers"} and "viewers" in catalog.index
    assert set(catalog.campaigns) == {"promo"} and catalog.destinations == {}
    assert catalog.scoring is not None and catalog.rfm is None and catalog.personas is None
    assert catalog.versions[("segment", "viewers")] == 3
    assert [m.filters[0].value for m in catalog.matchers_for("Product Viewed")] == ["coffee"]
    assert catalog.matchers_for("Order Completed") == []


def test_reference_is_a_value():
    assert Reference("segment", "a", "conditions") == Reference("segment", "a", "conditions")


def test_a_stored_row_that_no_longer_parses_blocks_no_other_change(service):
    service.store.put("segment", "old", seg("old", {"tag": ["not", "a", "tag"]}), "t")
    assert service.put("segment", "new", seg("new", {"tag": "x"}))["changed"]
    # It still provides its id: what names it is not refused for that, and it cannot be
    # deleted from under them either.
    assert service.put("segment", "uses-old", seg("uses-old", {"segment": "old"}))["changed"]
    with pytest.raises(DefinitionInUse):
        service.delete("segment", "old")


def test_a_long_chain_of_segments_is_checked_without_exhausting_the_stack(service):
    """Each segment reading the one before: validation, the index and a cycle at the end."""
    from chalicelib.domain.segments.index import SegmentIndex
    from chalicelib.domain.segments.language import parse_segment, validate_catalog

    chain = [seg("s0", {"tag": "x"})] + [seg(f"s{i}", {"segment": f"s{i - 1}"}) for i in range(1, 1500)]
    chain.append(seg("a-head", {"segment": "s1499"}))  # first in id order: checked from the top down
    definitions = [parse_segment(d) for d in chain]
    assert validate_catalog(definitions) == []
    assert SegmentIndex(definitions).evaluation_order(["a-head", "s0"]) == ["s0", "a-head"]
    for d in chain:
        service.store.put("segment", d["id"], d, "t")
    assert service.put("segment", "a-top", seg("a-top", {"segment": "a-head"}))["changed"]
    found = problems_of(service.put, "segment", "s0", seg("s0", {"segment": "a-top"}))
    assert len(found) == 1 and found[0].startswith("conditions.segment: segments form a cycle: s0 → a-top → a-head")
