"""On-site content: the `content` definition kind and the service that picks and renders a
slot's variant for a visitor, with fakes (no AWS)."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from chalicelib.domain.contact import Contact
from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.definition_kinds import REGISTRY
from chalicelib.domain.definition_kinds.content import SlotContent, parse_content
from chalicelib.domain.sources import Source
from chalicelib.services.content import (
    BadContentRequest,
    ContentRequest,
    ContentService,
    SlotNotFound,
    SlotUnavailable,
)
from chalicelib.services.ingest import OriginNotAllowed, Unauthorized
from chalicelib.services.template_store import StoredTemplate, TemplateLibrary, TemplateStore
from tests.unit.fakes import FakeClock, FakeContactRepository

ROOT = Path(__file__).resolve().parents[3]
KEY = "site-write-key-1"
SOURCES = (Source("site", KEY, ("https://shop.example",)),)


class MemoryTemplateStore(TemplateStore):
    def __init__(self, files: dict[str, str] | None = None):
        self.files = {}
        self.gets = 0
        for name, source in (files or {}).items():
            self.put(name, source)

    def get(self, filename):
        self.gets += 1
        return StoredTemplate(*self.files[filename]) if filename in self.files else None

    def list(self):
        return sorted(self.files)

    def put(self, filename, source):
        version = str(len(self.files) + self.gets + 1)
        self.files[filename] = (source, version)
        return version


def shipped_templates(*names) -> dict[str, str]:
    return {n: (ROOT / "templates" / n).read_text(encoding="utf-8") for n in names}


HERO_DEFINITION = parse_content(yaml.safe_load((ROOT / "chalicelib/definitions/content/hero.yaml").read_text()))


def make_service(files=None, slots=None, contacts=None):
    store = MemoryTemplateStore(files if files is not None else shipped_templates("hero.slot.j2", "hero-coffee.slot.j2"))
    contacts = contacts or FakeContactRepository()
    service = ContentService(contacts, lambda: slots if slots is not None else {"hero": HERO_DEFINITION},
                             TemplateLibrary(store), SOURCES, FakeClock())
    return service, contacts, store


def add_contact(repo: FakeContactRepository, contact_id: str, identifiers, segments=(), traits=None,
                merged_into=None) -> Contact:
    contact = Contact(id=contact_id, created_at="2026-11-01T00:00:00Z", traits=traits or {},
                      segments={s: {"since": "2026-11-01T00:00:00Z"} for s in segments},
                      identifiers=list(identifiers))
    repo.create(contact)
    if merged_into:
        stored = repo.get(contact_id)
        stored.merged_into = merged_into
        repo.save(stored)
    for identifier in identifiers:
        repo.claim(identifier, contact_id)
    return contact


def ask(service, **fields):
    fields.setdefault("write_key", KEY)
    fields.setdefault("slot", "hero")
    return service.show(ContentRequest(**fields))


# ---------------------------------------------------------------------------- the definition


def test_the_shipped_hero_definition_names_a_segment_and_two_templates():
    assert HERO_DEFINITION == SlotContent(slot="hero", default="hero", name="Home page hero",
                                          rules=HERO_DEFINITION.rules)
    assert HERO_DEFINITION.variant_for({"coffee-lovers": {}}) == "hero-coffee"
    assert HERO_DEFINITION.variant_for({"win-back": {}}) == "hero"
    reading = REGISTRY.get("content").read({"id": "hero", "rules": [{"segment": "coffee-lovers",
                                                                     "template": "hero-coffee"}]})
    assert reading.ok and [r.name for r in reading.references] == ["coffee-lovers"]


def test_the_first_matching_rule_wins_and_the_default_defaults_to_the_slot():
    content = parse_content({"id": "banner", "rules": [{"segment": "vip", "template": "banner-vip"},
                                                       {"segment": "coffee-lovers", "template": "banner-coffee"}]})
    assert content.default == "banner"
    assert content.variant_for({"coffee-lovers", "vip"}) == "banner-vip"
    assert content.variant_for({"coffee-lovers"}) == "banner-coffee"


def test_a_bad_definition_lists_every_problem_with_its_place():
    with pytest.raises(DefinitionError) as caught:
        parse_content({"id": "hero", "rulez": [], "default": "Hero!",
                       "rules": [{"segment": "Coffee Lovers", "template": "hero-coffee"}, "x",
                                 {"segment": "vip", "templat": "a"}]})
    assert caught.value.problems == [
        'rulez: unknown field (did you mean "rules"?)',
        "default: 'Hero!' must be a slot template's name, e.g. hero for templates/hero.slot.j2",
        "rules[0].segment: 'Coffee Lovers' must be a segment id",
        "rules[1]: must be a mapping like {segment: coffee-lovers, template: hero-coffee}",
        'rules[2].templat: unknown field (did you mean "template"?)',
        "rules[2].template: None must be a slot template's name, e.g. hero-coffee for templates/hero-coffee.slot.j2",
    ]


def test_a_rule_naming_an_unknown_segment_is_refused_by_the_registry():
    from chalicelib.domain.definition_kinds.base import Reading

    content = REGISTRY.get("content")
    current = {("segment", "coffee-lovers"): Reading(object(), [], ())}
    changes = {("content", "hero"): content.read({"id": "hero", "rules": [{"segment": "coffee-lover",
                                                                          "template": "hero-coffee"}]})}
    problems = REGISTRY.check_changes(current, changes)[("content", "hero")]
    assert problems == ['rules[0].segment: unknown segment "coffee-lover" (did you mean "coffee-lovers"?)']


# ---------------------------------------------------------------------------- the service


def test_a_coffee_lover_sees_the_coffee_variant_personalised():
    service, repo, _ = make_service()
    add_contact(repo, "c-1", ["anon:a-1"], segments=["coffee-lovers"], traits={"first_name": "Ada <b>"})
    shown = ask(service, anonymous_id="a-1")
    assert (shown.slot, shown.variant) == ("hero", "hero-coffee")
    assert "Ada &lt;b&gt;, your next roast is ready" in shown.html  # autoescaped
    assert shown.to_dict().keys() == {"slot", "variant", "html"}


def test_others_and_unknown_visitors_see_the_default():
    service, repo, _ = make_service()
    add_contact(repo, "c-2", ["anon:a-2"], segments=["win-back"])
    for visitor in ({"anonymous_id": "a-2"}, {"anonymous_id": "never-seen"}, {"user_id": "u-unknown"}):
        shown = ask(service, **visitor)
        assert shown.variant == "hero" and "Small-batch coffee" in shown.html


def test_the_user_id_wins_over_the_anonymous_id_and_merges_are_followed():
    service, repo, _ = make_service()
    add_contact(repo, "c-survivor", ["user:u-9"], segments=["coffee-lovers"])
    add_contact(repo, "c-anon", ["anon:a-9"], merged_into="c-survivor")
    add_contact(repo, "c-other", ["anon:a-10"])
    assert ask(service, anonymous_id="a-9").variant == "hero-coffee"
    assert ask(service, anonymous_id="a-10", user_id="u-9").variant == "hero-coffee"


def test_the_route_only_reads():
    service, repo, _ = make_service()
    add_contact(repo, "c-1", ["anon:a-1"], segments=["coffee-lovers"])
    before = dict(repo.calls)
    ask(service, anonymous_id="a-1")
    ask(service, anonymous_id="nobody")
    writes = {k: repo.calls.get(k, 0) - before.get(k, 0) for k in ("create", "save", "claim", "repoint", "merge")}
    assert writes == dict.fromkeys(writes, 0)


def test_the_write_key_and_origin_are_checked_like_the_tracking_routes():
    service, _, _ = make_service()
    with pytest.raises(Unauthorized, match="missing write key"):
        ask(service, write_key=None, anonymous_id="a")
    with pytest.raises(Unauthorized, match="unknown write key"):
        ask(service, write_key="wrong-key-000", anonymous_id="a")
    with pytest.raises(OriginNotAllowed):
        ask(service, anonymous_id="a", origin="https://evil.example")
    basic = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert ask(service, write_key=None, authorization=basic, anonymous_id="a",
               origin="https://shop.example").variant == "hero"


@pytest.mark.parametrize("fields, reason", [
    ({"slot": None, "anonymous_id": "a"}, "slot is required"),
    ({"slot": "Hero!", "anonymous_id": "a"}, "is not a slot name"),
    ({}, "anonymousId or userId is required"),
    ({"anonymous_id": "x" * 300}, "anonymousId: is longer than"),
])
def test_missing_or_bad_parameters_are_400_with_the_reason(fields, reason):
    service, _, _ = make_service()
    with pytest.raises(BadContentRequest, match=reason):
        ask(service, **fields)


def test_an_unknown_slot_is_not_found_and_a_slot_without_definition_shows_its_template():
    service, _, _ = make_service(files={**shipped_templates("hero.slot.j2", "hero-coffee.slot.j2"),
                                        "footer.slot.j2": "<p>Free shipping over €30</p>"})
    with pytest.raises(SlotNotFound, match="no slot 'sidebar'"):
        ask(service, slot="sidebar", anonymous_id="a")
    shown = ask(service, slot="footer", anonymous_id="a")
    assert (shown.variant, shown.html) == ("footer", "<p>Free shipping over €30</p>")


def test_the_locale_variant_is_chosen_from_the_contact_then_the_browser():
    files = {**shipped_templates("hero.slot.j2", "hero-coffee.slot.j2"), "hero.it.slot.j2": "<p>Caffè</p>"}
    service, repo, _ = make_service(files=files)
    add_contact(repo, "c-it", ["anon:a-it"], traits={"locale": "it-CH"})
    assert ask(service, anonymous_id="a-it").html == "<p>Caffè</p>"
    assert ask(service, anonymous_id="new", locale="it").html == "<p>Caffè</p>"
    assert "Small-batch" in ask(service, anonymous_id="new", locale="de-DE").html


def test_a_variant_that_is_missing_or_fails_falls_back_to_the_default():
    failing = "<p>{{ traits.missing_trait }}</p>"
    service, repo, _ = make_service(files={**shipped_templates("hero.slot.j2"), "hero-coffee.slot.j2": failing})
    add_contact(repo, "c-1", ["anon:a-1"], segments=["coffee-lovers"])
    assert ask(service, anonymous_id="a-1").variant == "hero"
    service, repo, _ = make_service(files=shipped_templates("hero.slot.j2"))
    add_contact(repo, "c-1", ["anon:a-1"], segments=["coffee-lovers"])
    assert ask(service, anonymous_id="a-1").variant == "hero"


def test_a_slot_whose_templates_are_all_unusable_is_422_with_the_reasons():
    service, _, _ = make_service(files={"hero.slot.j2": "<p>{{ traits.nope }}</p>"})
    with pytest.raises(SlotUnavailable) as caught:
        ask(service, anonymous_id="a")
    assert "hero.slot.j2: line 1: 'dict object' has no attribute 'nope'" in str(caught.value)
    assert caught.value.status == 422


def test_compiled_templates_are_reused_across_requests():
    service, _, store = make_service()
    ask(service, anonymous_id="a")
    gets = store.gets
    for _ in range(5):
        ask(service, anonymous_id="a")
    assert store.gets == gets
