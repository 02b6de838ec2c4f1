"""The simulate use case: a stored journey run for a described or an existing contact, read
only, with every problem of the body named at once and the work bounded."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.domain.contact import Contact
from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.journeys.language import parse_journey
from chalicelib.domain.journeys.simulator import Scripted, simulate
from chalicelib.services.contacts import ContactQueries, NotFound
from chalicelib.services.definitions import DefinitionService
from chalicelib.services.journeys import MAX_STEPS, JourneySimulations
from tests.property_runs import examples
from tests.unit.fakes import FakeClock, FakeDefinitionStore

EXAMPLES = Path(__file__).resolve().parents[3] / "chalicelib" / "definitions" / "journeys"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
LOOP = {"id": "nagging", "name": "Nagging", "trigger": {"event": "Signed Up"}, "start": "pause",
        "nodes": {"pause": {"wait": "1 minute", "next": "nag"},
                  "nag": {"send": {"template": "nag", "channel": "email"}, "next": "pause"}}}


class Contacts:
    """ContactQueries' read of one contact, over a dict."""

    def __init__(self, *contacts: Contact):
        self.known = {c.id: c for c in contacts}

    def contact(self, contact_id: str) -> Contact:
        if contact_id not in self.known:
            raise NotFound(f"no contact {contact_id}")
        return self.known[contact_id]


@pytest.fixture
def definitions():
    service = DefinitionService(FakeDefinitionStore(), FakeClock(NOW), cache_seconds=0)
    service.put("journey", "abandoned-cart", yaml.safe_load((EXAMPLES / "abandoned-cart.yaml").read_text()))
    service.put("journey", "nagging", LOOP)
    return service


def added(at: str, cart: str) -> dict:
    return {"at": at, "event": {"event": "Product Added", "properties": {"cart_id": cart}}}


def test_an_existing_contact_is_read_and_left_unchanged(definitions):
    shopper = Contact(id="c1", created_at="2026-01-01T00:00:00Z", traits={"timezone": "Europe/Paris"},
                      consent={"sms": {"status": "granted", "at": "2026-01-01T00:00:00Z"}})
    before = repr(shopper)
    result = JourneySimulations(definitions, Contacts(shopper), FakeClock(NOW)).simulate(
        "abandoned-cart", {"contact_id": "c1", "timeline": [added("2026-03-02T10:00:00Z", "k1")]})
    assert [(a["channel"], a["template"]) for a in result["actions"]] == [("email", "cart-reminder"),
                                                                         ("sms", "cart-reminder-sms")]
    assert result["start"] == "2026-03-02T10:00:00.000Z" and result["until"] == "2026-04-01T10:00:00.000Z"
    assert repr(shopper) == before


def test_the_contact_reader_is_the_contact_queries_one(definitions):
    from tests.unit.fakes import FakeContactRepository

    repo = FakeContactRepository()
    repo.create(Contact(id="new", created_at=""))
    old = Contact(id="old", created_at="")
    repo.create(old)
    old.merged_into = "new"
    repo.save(old)
    queries = ContactQueries(repo, None, FakeClock(NOW))
    result = JourneySimulations(definitions, queries, FakeClock(NOW)).simulate("abandoned-cart", {"contact_id": "old"})
    assert result["contact"] == {"id": "new"}  # followed to where it was merged


def test_a_loop_through_a_short_wait_stops_after_max_steps(definitions):
    result = JourneySimulations(definitions, Contacts(), FakeClock(NOW)).simulate("nagging", {
        "contact": {}, "timeline": [{"at": "2026-03-02T10:00:00Z", "event": {"event": "Signed Up"}}],
        "until": "2026-05-31T10:00:00Z"})
    assert result["stopped_at"] is not None
    assert len(result["actions"]) == MAX_STEPS - 1  # the event, then one nag per resumed wait


def test_the_simulator_stops_at_max_steps_and_says_when():
    run = simulate(parse_journey(LOOP), Contact(id="c", created_at=""), [], NOW, timedelta(days=1), max_steps=0)
    assert run.stopped_at is None  # nothing to do: no step was needed
    signed_up = [Scripted(timedelta(0), {"event": "Signed Up"})]
    run = simulate(parse_journey(LOOP), Contact(id="c", created_at=""), signed_up, NOW, timedelta(days=1), max_steps=3)
    assert run.stopped_at == NOW + timedelta(minutes=3) and len(run.sends()) == 2


def test_every_problem_of_the_body_is_named(definitions):
    with pytest.raises(DefinitionError) as caught:
        JourneySimulations(definitions, Contacts(), FakeClock(NOW)).simulate("abandoned-cart", {
            "contact": {"score": "high", "tags": [1]}, "until": "2026-03-01T00:00:00Z",
            "timeline": [{"at": "later", "event": {"event": "X", "properties": []}}]})
    places = [p.split(":", 1)[0] for p in caught.value.problems]
    assert places == ["until", "timeline[0].at", "timeline[0].event.properties", "contact.tags", "contact.score"]


def test_the_timeline_may_script_segment_changes_and_sends_show_their_coupon_pool(definitions):
    for segment in ("vip", "buyers"):
        definitions.put("segment", segment, {"id": segment, "name": segment, "conditions": {"tag": segment}})
    definitions.put("journey", "gift", {
        "id": "gift", "trigger": {"segment_entered": "vip"}, "goal": {"segment": "buyers"}, "start": "hello",
        "nodes": {"hello": {"send": {"template": "gift", "coupon": "gifts"}, "next": "pause"},
                  "pause": {"wait": "3 days"}}})
    simulations = JourneySimulations(definitions, Contacts(), FakeClock(NOW))
    result = simulations.simulate("gift", {"contact": {}, "timeline": [
        {"at": "2026-03-02T11:00:00Z", "segment_entered": "vip"},
        {"at": "2026-03-03T11:00:00Z", "segment_entered": "buyers"}]})
    [enrollment] = result["enrollments"]
    assert enrollment["entered_at"] == "2026-03-02T11:00:00.000Z"
    assert enrollment["converted_at"] == "2026-03-03T11:00:00.000Z"
    assert [(t["node"], t["decision"]) for t in enrollment["trace"]] == [
        ("hello", "sent"), ("pause", "waiting"), ("pause", "goal")]
    assert [(a["kind"], a["template"], a["coupon"]) for a in result["actions"]] == [("send", "gift", "gifts")]
    cart = simulations.simulate("abandoned-cart", {"contact": {}, "timeline": [added("2026-03-02T10:00:00Z", "k1")]})
    assert [a["coupon"] for a in cart["actions"]] == [None]


def test_a_bad_segment_change_in_the_timeline_is_named(definitions):
    with pytest.raises(DefinitionError) as caught:
        JourneySimulations(definitions, Contacts(), FakeClock(NOW)).simulate("abandoned-cart", {
            "contact": {}, "timeline": [
                {"at": "2026-03-02T11:00:00Z", "segment_entered": "VIP People"},
                {"at": "2026-03-02T11:00:00Z", "segment_exited": "vip", "event": {"event": "X"}},
                {"at": "2026-03-02T11:00:00Z"},
                {"at": "2026-03-02T11:00:00Z", "segment": "vip"}]})
    assert caught.value.problems == [
        'timeline[0].segment_entered: expected a segment id such as mql, got "VIP People"',
        "timeline[1]: give exactly one of event, segment_entered, segment_exited (found event, segment_exited)",
        "timeline[2]: give exactly one of event, segment_entered, segment_exited (none given)",
        "timeline[3].segment: unknown field (fields: at, event, segment_entered, segment_exited)",
        "timeline[3]: give exactly one of event, segment_entered, segment_exited (none given)"]


def test_an_unknown_journey_is_not_found(definitions):
    with pytest.raises(NotFound):
        JourneySimulations(definitions, Contacts(), FakeClock(NOW)).simulate("nowhere", {"contact": {}})


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | \
    st.sampled_from(["", "2026-03-02T10:00:00Z", "2026-03-03T10:00:00+02:00", "Europe/Paris", "sms", "k1",
                     "Product Added", "Order Completed", "track", "identify", "later"]) | st.text(max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["at", "event", "properties", "cart_id", "traits", "segments", "timezone", "consent", "tags",
                     "score", "stage", "id", "type", "context", "segment_entered", "segment_exited"]), inner,
    max_size=4), max_leaves=12)
bodies = st.dictionaries(st.sampled_from(["contact", "contact_id", "timeline", "start", "until", "other"]), values,
                         max_size=5) | values


@settings(max_examples=examples(200), deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_any_body_gives_a_trace_or_named_problems(definitions, body):
    simulations = JourneySimulations(definitions, Contacts(Contact(id="k1", created_at="")), FakeClock(NOW))
    try:
        result = simulations.simulate("abandoned-cart", body)
    except DefinitionError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
    else:
        assert isinstance(result["enrollments"], list)
