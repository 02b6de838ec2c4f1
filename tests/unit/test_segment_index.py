"""The segment index: which segments an update can change, in what order, with which counters."""
from __future__ import annotations

import pytest

from chalicelib.domain.segments.filters import EventMatcher, parse_filters
from chalicelib.domain.segments.index import SegmentIndex
from chalicelib.domain.segments.language import SegmentDefinition, parse_segment


def seg(segment_id: str, conditions) -> SegmentDefinition:
    return parse_segment({"id": segment_id, "name": segment_id.title(), "conditions": conditions})


COFFEE = ['properties.category == "coffee"']


@pytest.fixture
def index() -> SegmentIndex:
    return SegmentIndex([
        seg("coffee-lovers", {"event": "Product Viewed", "where": COFFEE, "at_least": 3, "within": "30 days"}),
        seg("browsers", {"event": "Product Viewed", "at_least": 10}),
        seg("coffee-buyers", {"all": [{"event": "Order Completed", "where": COFFEE},
                                      {"event": "Product Viewed", "where": ['category == "coffee"']}]}),
        seg("french", {"trait": "address.country", "equals": "FR"}),
        seg("birthday-today", {"all": [{"trait": "birthday", "anniversary": "today"}, {"reachable": "email"}]}),
        seg("mql", {"score": {"gte": 50}}),
        seg("nurture", {"all": [{"stage": "lead"}, {"not": {"segment": "mql"}}, {"consent": "email"}]}),
        seg("nurture-fr", {"all": [{"segment": "nurture"}, {"segment": "french"}]}),
        seg("openers", {"message": "opened", "campaign": "promo-2026-11"}),
        seg("group-3", {"campaign_group": {"campaign": "promo-2026-11", "group": 3}}),
        seg("other-campaign", {"campaign_group": {"campaign": "promo-2026-12", "group": 1}}),
        seg("vip", {"any": [{"tag": "vip"}, {"rfm": "champions"}, {"persona": "barista"}]}),
        seg("sms-ok", {"consent": "sms"}),
    ])


def test_events_find_the_segments_that_read_them(index):
    assert index.affected_by_event("Product Viewed") == {"coffee-lovers", "browsers", "coffee-buyers"}
    assert index.affected_by_event("Order Completed") == {"coffee-buyers"}
    assert index.affected_by_event("Email Opened") == {"openers"}  # message conditions, by their event
    assert index.affected_by_event("Signed Up") == set()


def test_traits_find_the_segments_that_read_them(index):
    assert index.affected_by_traits(["address"]) == {"french"}  # an identify writes address whole
    assert index.affected_by_traits(["address.country"]) == {"french"}
    assert index.affected_by_traits(["birthday", "timezone"]) == {"birthday-today"}
    assert index.affected_by_traits(["email"]) == {"birthday-today"}  # reachable: email
    assert index.affected_by_traits(["plan", "company"]) == set()
    assert index.affected_by_traits([]) == set()


@pytest.mark.parametrize("kind,key,expected", [
    ("score", None, {"mql"}),
    ("stage", None, {"nurture"}),
    ("tag", None, {"vip"}),
    ("rfm", None, {"vip"}),
    ("persona", None, {"vip"}),
    ("consent", None, {"nurture", "birthday-today", "sms-ok"}),
    ("consent", "email", {"nurture", "birthday-today"}),
    ("consent", "sms", {"sms-ok"}),
    ("consent", "push", set()),
    ("campaign", None, {"group-3", "other-campaign"}),
    ("campaign", "promo-2026-11", {"group-3"}),
    ("identifiers", None, {"birthday-today"}),
    ("segment", "mql", {"nurture"}),
    ("unknown", None, set()),
])
def test_other_facts_find_their_segments(index, kind, key, expected):
    assert index.affected_by(kind, key) == expected


def test_dependents_are_transitive(index):
    assert index.dependents(["mql"]) == {"nurture", "nurture-fr"}
    assert index.dependents(["french"]) == {"nurture-fr"}
    assert index.dependents(["nurture-fr"]) == set()
    assert index.dependents([]) == set()


def test_evaluation_order_puts_dependencies_first(index):
    order = index.evaluation_order(["nurture-fr", "nurture", "mql", "french", "vip", "not-a-segment"])
    assert set(order) == {"nurture-fr", "nurture", "mql", "french", "vip"}
    assert order.index("mql") < order.index("nurture") < order.index("nurture-fr")
    assert order.index("french") < order.index("nurture-fr")


def test_evaluation_order_respects_indirect_dependencies():
    chain = SegmentIndex([seg("c", {"segment": "b"}), seg("b", {"segment": "a"}), seg("a", {"tag": "x"}),
                          seg("d", {"all": [{"segment": "a"}, {"segment": "c"}]})])
    assert chain.evaluation_order(["d", "c", "b", "a"]) == ["a", "b", "c", "d"]
    assert chain.evaluation_order(["d", "a"]) == ["a", "d"]  # d reads a through c as well


def test_matchers_for_an_event_are_shared_and_filtered_only(index):
    coffee = EventMatcher("Product Viewed", parse_filters(COFFEE, "w"))
    assert index.matchers_for("Product Viewed") == [coffee]  # two segments, one counter
    assert [m.key for m in index.matchers_for("Order Completed")] == [
        EventMatcher("Order Completed", parse_filters(COFFEE, "w")).key]
    assert [m.event for m in index.matchers_for("Email Opened")] == ["Email Opened"]
    assert index.matchers_for("Signed Up") == []
    index.matchers_for("Product Viewed").clear()
    assert index.matchers_for("Product Viewed") == [coffee]


def test_time_dependent_segments(index):
    assert index.time_dependent_ids == {"coffee-lovers", "birthday-today", "mql"}


def test_catalog_access(index):
    assert len(index) == 13 and "mql" in index and "nope" not in index
    assert index.get("mql").name == "Mql" and index.get("nope") is None
    assert {d.id for d in index} >= {"mql", "vip"}


@pytest.mark.parametrize("catalog,problem", [
    ([seg("a", {"segment": "b"})], 'a: conditions.segment: unknown segment "b"'),
    ([seg("a", {"segment": "b"}), seg("b", {"segment": "a"})], "segments form a cycle: a → b → a"),
    ([seg("a", {"tag": "x"}), seg("a", {"tag": "y"})], 'two definitions have the id "a"'),
])
def test_an_inconsistent_catalog_is_reported_not_fatal(catalog, problem):
    built = SegmentIndex(catalog)
    assert any(problem in p for p in built.problems), built.problems
    assert set(built.evaluation_order([d.id for d in catalog])) == {d.id for d in catalog}


def test_a_consistent_catalog_has_no_problems(index):
    assert index.problems == []


def test_a_stale_reference_still_indexes_the_rest():
    built = SegmentIndex([seg("a", {"all": [{"segment": "gone"}, {"tag": "x"}]}), seg("b", {"segment": "a"})])
    assert built.affected_by("tag") == {"a"}
    assert built.dependents(["a"]) == {"b"} and built.dependents(["gone"]) == {"a", "b"}
    assert built.evaluation_order(["b", "a"]) == ["a", "b"]


def test_a_cycle_still_gets_an_order_and_finite_dependents():
    built = SegmentIndex([seg("a", {"segment": "c"}), seg("b", {"segment": "a"}), seg("c", {"segment": "b"}),
                          seg("d", {"segment": "c"})])
    assert built.dependents(["a"]) == {"a", "b", "c", "d"}
    order = built.evaluation_order(["a", "b", "c", "d"])
    assert sorted(order) == ["a", "b", "c", "d"] and order.index("c") < order.index("d")


def test_duplicate_ids_keep_the_last_definition():
    built = SegmentIndex([seg("a", {"tag": "x"}), seg("a", {"stage": "lead"})])
    assert len(built) == 1 and built.affected_by("stage") == {"a"} and built.affected_by("tag") == set()


def test_an_empty_catalog():
    empty = SegmentIndex([])
    assert empty.affected_by_event("Anything") == set() and empty.evaluation_order(["x"]) == []
    assert empty.time_dependent_ids == set() and len(empty) == 0


def test_with_a_thousand_segments_an_event_touches_only_its_own(monkeypatch):
    catalog = [seg(f"s-{i}", {"event": f"Event {i}", "where": [f"properties.n == {i}"], "within": "7 days"})
               for i in range(1000)]
    catalog += [seg(f"t-{i}", {"trait": f"trait_{i}", "exists": True}) for i in range(1000)]
    built = SegmentIndex(catalog)

    # Lookups answer from the index alone: reading any definition now would fail.
    def untouchable(self, *args, **kwargs):
        raise AssertionError("a lookup scanned the definitions")

    monkeypatch.setattr(SegmentDefinition, "reads", untouchable)
    monkeypatch.setattr(SegmentDefinition, "matchers", untouchable)
    monkeypatch.setattr(SegmentDefinition, "segment_references", untouchable)
    for i in (0, 417, 999):
        assert built.affected_by_event(f"Event {i}") == {f"s-{i}"}
        assert [m.event for m in built.matchers_for(f"Event {i}")] == [f"Event {i}"]
        assert built.affected_by_traits([f"trait_{i}"]) == {f"t-{i}"}
    assert built.affected_by_event("Event 1000") == set()
    assert built.dependents(["s-5"]) == set()
    assert built.evaluation_order(["s-2", "s-1"]) == ["s-1", "s-2"]
    assert len(built.time_dependent_ids) == 1000


def test_counters_keep_the_exact_times_the_largest_windowed_count_needs():
    index = SegmentIndex([
        seg("lists", {"event": "Product List Viewed", "at_least": 3, "within": "30 days"}),
        seg("lists-few", {"event": "Product List Viewed", "at_most": 4, "within": "7 days"}),
        seg("browsers", {"event": "Product Viewed", "within": "7 days"}),
        seg("no-order", {"event": "Order Completed", "within": "2 days", "at_most": 0}),
        seg("ever", {"event": "Signed Up", "at_least": 5}),
        seg("coffee", {"event": "Product Viewed", "where": COFFEE, "at_least": 2, "within": "30 days"}),
    ])
    assert index.retention("counter", "Product List Viewed") == (5, True)  # at most 4: the 5 latest
    assert index.retention("counter", "Product Viewed") == (0, False)  # the latest occurrence settles it
    assert index.retention("counter", "Order Completed") == (0, False)
    assert index.retention("counter", "Signed Up") == (0, False)  # an all-time count reads the total
    assert index.retention("counter", "Page Viewed") == (0, False)  # read by nothing
    coffee = index.matchers_for("Product Viewed")[0]
    assert index.retention("filtered", coffee.key) == (2, True)
