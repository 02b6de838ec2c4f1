"""Identifiers, and how events change a contact and contacts merge."""
from __future__ import annotations

from datetime import date

import pytest

from chalicelib.domain.contact import (
    Contact,
    apply_event,
    can_merge,
    choose_survivor,
    counters_view,
    event_identifiers,
    merge_contacts,
    message_digest,
)
from chalicelib.domain.identity import InvalidIdentifier, normalise_phone, parse_identifier


@pytest.mark.parametrize("text,expected", [
    ("email:Ada@Example.COM", "email:ada@example.com"),
    ("EMAIL: ada@example.com ", "email:ada@example.com"),
    ("phone:+33 6 12 34 56 78", "phone:+33612345678"),
    ("phone: 33612345678", "phone:+33612345678"),  # '+' decoded as a space in a query string
    ("user:42", "user:42"),
    ("anon:9f1c", "anon:9f1c"),
])
def test_identifiers_are_normalised(text, expected):
    assert parse_identifier(text) == expected


@pytest.mark.parametrize("text,reason", [
    ("42", "must look like <type>:<value>"),
    ("fax:123", "unknown identifier type 'fax'"),
    ("email:not-an-email", "is not an email address"),
    ("phone:12", "is not a phone number"),
    ("user:", "is empty"),
])
def test_malformed_identifiers_say_why(text, reason):
    with pytest.raises(InvalidIdentifier, match=reason):
        parse_identifier(text)


def test_national_phone_numbers_need_a_region():
    assert normalise_phone("06 12 34 56 78", "FR") == "+33612345678"
    assert normalise_phone("0033 6 12 34 56 78") == "+33612345678"
    with pytest.raises(InvalidIdentifier, match="no country code and no region"):
        normalise_phone("06 12 34 56 78")


def ev(mid: str, etype: str = "track", ts: str = "2026-11-20T10:00:00.000Z", **kw) -> dict:
    base = {"type": etype, "messageId": mid, "timestamp": ts, "receivedAt": ts, "context": kw.pop("context", {})}
    if etype == "track":
        base["event"] = kw.pop("event", "Clicked")
    base.update(kw)
    return base


def test_identify_identifiers_include_normalised_email_and_phone_from_traits():
    event = ev("m", "identify", userId="u1", anonymousId="a1",
               traits={"email": " Ada@X.io", "phone": "06 12 34 56 78"}, context={"locale": "fr-FR"})
    assert event_identifiers(event) == ["user:u1", "anon:a1", "email:ada@x.io", "phone:+33612345678"]


def test_traits_latest_write_wins_per_trait():
    c = Contact(id="c", created_at="t")
    apply_event(c, ev("m1", "identify", ts="2026-11-20T10:00:00.000Z", traits={"plan": "pro", "city": "Paris"}))
    # An older event arriving late changes nothing it lost, but adds what is new.
    apply_event(c, ev("m2", "identify", ts="2026-11-19T10:00:00.000Z", traits={"plan": "free", "age": 40}))
    assert c.traits == {"plan": "pro", "city": "Paris", "age": 40}
    apply_event(c, ev("m3", "identify", ts="2026-11-21T10:00:00.000Z", traits={"city": "Lyon"}))
    assert c.traits["city"] == "Lyon"


def test_email_trait_is_stored_normalised():
    c = Contact(id="c", created_at="t")
    apply_event(c, ev("m1", "identify", traits={"email": "Ada@Example.COM"}))
    assert c.traits["email"] == "ada@example.com"


def test_applying_the_same_message_twice_changes_nothing():
    c = Contact(id="c", created_at="t")
    assert apply_event(c, ev("m1")) is True
    assert apply_event(c, ev("m1")) is False
    assert c.counters["Clicked"]["total"] == 1


def test_counters_keep_windows_and_first_last_seen():
    c = Contact(id="c", created_at="t")
    for i, day in enumerate(["2026-07-01", "2026-11-01", "2026-11-20", "2026-11-20"]):
        apply_event(c, ev(f"m{i}", ts=f"{day}T10:00:00.000Z", event="Order Completed"), keep_days=90)
    apply_event(c, ev("p", "page", ts="2026-11-21T08:00:00.000Z"))
    entry = c.counters["Order Completed"]
    assert entry["total"] == 4
    assert "2026-07-01" not in entry["days"]  # outside the 90-day window
    view = counters_view(c.counters, date(2026, 11, 22))
    assert view["Order Completed"]["last_7d"] == 2
    assert view["Order Completed"]["last_30d"] == 3
    assert view["Page Viewed"]["total"] == 1
    assert c.first_seen == "2026-07-01T10:00:00.000Z"
    assert c.last_seen == "2026-11-21T08:00:00.000Z"


def test_last_context_keeps_locale_timezone_device_and_campaign():
    c = Contact(id="c", created_at="t")
    apply_event(c, ev("m", "page", context={
        "locale": "fr-FR", "timezone": "Europe/Paris", "clickId": "clk1",
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
        "campaign": {"name": "black-friday", "source": "newsletter"}}))
    assert c.last_context["locale"] == "fr-FR"
    assert c.last_context["timezone"] == "Europe/Paris"
    assert c.last_context["device"] == "mobile"
    assert c.last_context["campaign"]["name"] == "black-friday"
    assert c.last_context["clickId"] == "clk1"


def test_imported_rows_are_not_activity():
    c = Contact(id="c", created_at="t")
    apply_event(c, ev("m", "identify", traits={"plan": "gold"},
                      context={"library": {"name": "mercurio-import"}}))
    assert c.traits == {"plan": "gold"}
    assert c.first_seen is None and c.last_seen is None


def test_merge_combines_everything():
    a = Contact(id="a", created_at="2026-01-01", identifiers=["anon:x"])
    b = Contact(id="b", created_at="2026-02-01", identifiers=["user:1", "email:e@x.io"])
    apply_event(a, ev("m1", ts="2026-11-01T00:00:00.000Z", event="Viewed"))
    apply_event(a, ev("m2", "identify", ts="2026-11-01T00:00:00.000Z", traits={"name": "old", "color": "red"}))
    apply_event(b, ev("m3", ts="2026-11-02T00:00:00.000Z", event="Viewed"))
    apply_event(b, ev("m4", "identify", ts="2026-11-03T00:00:00.000Z", traits={"name": "new"}))
    survivor = choose_survivor([b, a])
    assert survivor is a
    merged = merge_contacts(a, b)
    assert merged.identifiers == ["anon:x", "email:e@x.io", "user:1"]
    assert merged.traits == {"name": "new", "color": "red"}
    assert merged.counters["Viewed"]["total"] == 2
    assert merged.counters["Viewed"]["days"] == {"2026-11-01": 1, "2026-11-02": 1}
    assert merged.first_seen == "2026-11-01T00:00:00.000Z" and merged.last_seen == "2026-11-03T00:00:00.000Z"
    assert merged.merged_from == ["b"]
    assert set(merged.recent) == {message_digest(m) for m in ("m1", "m2", "m3", "m4")}


def test_two_user_ids_are_two_people():
    a = Contact(id="a", created_at="t", identifiers=["user:1", "anon:x"])
    b = Contact(id="b", created_at="t", identifiers=["user:2"])
    c = Contact(id="c", created_at="t", identifiers=["anon:y"])
    assert not can_merge([a, b])
    assert can_merge([a, c])


def test_a_counter_kept_without_day_buckets_shows_no_windows_rather_than_zeros():
    contact = Contact(id="c", created_at="2026-11-01T00:00:00.000Z")
    event = {"type": "track", "event": "Page Scrolled", "messageId": "m1", "timestamp": "2026-11-20T10:00:00.000Z",
             "context": {}}
    assert apply_event(contact, event, retention=lambda name: (0, False))
    assert contact.counters["Page Scrolled"] == {"total": 1, "first": "2026-11-20T10:00:00.000Z",
                                                 "last": "2026-11-20T10:00:00.000Z"}
    view = counters_view(contact.counters, date(2026, 11, 20))
    assert view["Page Scrolled"] == {"total": 1, "first": "2026-11-20T10:00:00.000Z",
                                     "last": "2026-11-20T10:00:00.000Z"}


def test_an_identify_cannot_set_the_traits_only_mercurio_writes():
    from chalicelib.domain.contact import Contact, apply_event

    contact = Contact(id="c1", created_at="2026-11-01T00:00:00.000Z")
    applied = apply_event(contact, {
        "type": "identify", "messageId": "m-forged", "timestamp": "2026-11-02T00:00:00.000Z",
        "traits": {"first_name": "Eve", "push_endpoints": ["arn:aws:sns:us-east-1:1:endpoint/APNS/x/evil"],
                   "push_devices": [{"endpoint": "arn:aws:sns:us-east-1:1:endpoint/APNS/x/evil"}]}})
    assert applied and contact.traits.get("first_name") == "Eve"
    assert "push_endpoints" not in contact.traits and "push_devices" not in contact.traits


def test_the_survivor_follows_merge_pointers_and_stops_on_a_cycle():
    from chalicelib.domain.contact import Contact
    from tests.unit.fakes import FakeContactRepository

    repo = FakeContactRepository()
    for cid, into in (("a", "b"), ("b", "c"), ("c", None), ("x", "y"), ("y", "x")):
        contact = Contact(id=cid, created_at="2026-11-01T00:00:00.000Z")
        repo.create(contact)
        if into:
            contact.merged_into = into
            repo.save(contact)
    assert repo.survivor("a").id == "c" and repo.survivor("c").id == "c"
    assert repo.survivor("nobody") is None
    assert repo.survivor("x").merged_into is not None  # a cycle ends, still merged, for the caller to judge
    assert repo.survivor("a", max_hops=1).id == "b"
