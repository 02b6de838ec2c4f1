"""The six groups of a promotional email: campaign documents, attribution and classification."""
from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.contact import Contact
from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.engagement import (
    CONVERTED,
    GROUPS,
    MAX_CAMPAIGNS,
    MAX_CLICKS,
    campaign_group,
    campaign_offer,
    classify,
    groups_report,
    in_offer,
    parse_campaign,
    record_engagement,
)
from chalicelib.domain.events import iso
from tests.property_runs import examples

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "chalicelib" / "definitions" / "campaigns" / "promo-2026-11.yaml"
T0 = datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc)
_ids = itertools.count()

PROMO = parse_campaign({
    "id": "promo", "name": "Promo",
    "offers": {"coffee": {"name": "Coffee", "path_prefix": "/offers/coffee"},
               "tea": {"name": "Tea", "path_prefix": "/offers/tea"}},
    "attribution_window": "2 days", "cart_event": "Product Added", "purchase_event": "Order Completed",
})
CAMPAIGNS = {"promo": PROMO}


def at(minutes: float) -> str:
    return iso(T0 + timedelta(minutes=minutes))


def track(name: str, minutes: float, properties: dict | None = None, click: str | None = None) -> dict:
    event = {"type": "track", "event": name, "properties": properties or {}, "timestamp": at(minutes),
             "messageId": f"m{next(_ids)}", "userId": "u1", "context": {}}
    if click:
        event["context"]["clickId"] = click
    return event


def page(path: str, minutes: float, click: str | None) -> dict:
    event = {"type": "page", "properties": {"path": path, "url": f"https://shop.example{path}"},
             "timestamp": at(minutes), "messageId": f"m{next(_ids)}", "anonymousId": "a1", "context": {}}
    if click:
        event["context"]["clickId"] = click
    return event


def message(name: str, minutes: float = 0, campaign: str = "promo", **props) -> dict:
    return track(name, minutes, {"campaign_id": campaign, "message_id": f"msg-{campaign}", **props})


def sent(minutes: float = 0, campaign: str = "promo") -> dict:
    return message("Message Sent", minutes, campaign, channel="email")


def click(click_id: str, minutes: float = 10, link: str = "coffee", url: str | None = None,
          campaign: str = "promo") -> dict:
    url = url or f"https://shop.example/offers/{link}?utm_source=email"
    return message("Email Link Clicked", minutes, campaign, link_id=link, url=url, click_id=click_id)


def contact_after(*events, campaigns=CAMPAIGNS) -> Contact:
    contact = Contact(id="c1", created_at=at(-1000))
    for event in events:
        record_engagement(campaigns, contact, event)
    return contact


def group_of(*events) -> str | None:
    return campaign_group(contact_after(*events), "promo")


# ---------------------------------------------------------------------------- documents

def test_the_example_campaign_document_is_valid():
    campaign = parse_campaign(yaml.safe_load(EXAMPLE.read_text()))
    assert campaign.id == "promo-2026-11"
    assert campaign.offers["0"].path_prefix == "/products/espresso"  # link ids: the links of coffee-offer.html.j2
    assert campaign.attribution_window == timedelta(days=2)
    assert (campaign.cart_event, campaign.purchase_event) == ("Product Added", "Order Completed")


def test_defaults_for_a_minimal_document():
    campaign = parse_campaign({"id": "spring"})
    assert campaign.name == "spring" and campaign.offers == {}
    assert campaign.attribution_window == timedelta(days=2)
    assert campaign.cart_event == "Product Added" and campaign.purchase_event == "Order Completed"


def test_every_problem_is_reported_with_its_path():
    with pytest.raises(DefinitionError) as caught:
        parse_campaign({
            "name": "x",
            "offers": {"coffee": {"name": "Coffee", "path_prefix": "offers/coffee"},
                       "tea": {"path_prefx": "/offers/tea"}},
            "attribution_window": "two days",
            "purchase_event": "",
            "atribution_window": "2 days",
        })
    problems = caught.value.problems
    assert "id: is required" in problems
    assert any(p.startswith('offers.coffee.path_prefix: must start with "/"') for p in problems)
    assert any(p.startswith("offers.tea.path_prefx: unknown field") and '"path_prefix"' in p for p in problems)
    assert "offers.tea.path_prefix: is required" in problems
    assert any(p.startswith("attribution_window: ") for p in problems)
    assert any(p.startswith("purchase_event: ") for p in problems)
    assert any(p.startswith("atribution_window: unknown field") for p in problems)


@pytest.mark.parametrize("doc, expected", [
    ([], "document: expected a mapping"),
    ({"id": "a b"}, "id: "),
    ({"id": "Promo_2026"}, "id: "),
    ({"id": "x", "offers": ["coffee"]}, "offers: expected a mapping"),
    ({"id": "x", "offers": {"coffee": {"path_prefix": "/offers/coffee?x=1"}}}, "offers.coffee.path_prefix: "),
    ({"id": "x", "attribution_window": "0 days"}, 'attribution_window: "0 days" is not a duration'),
    ({"id": "x", "attribution_window": "120 days"}, "attribution_window: must be at most 90 days"),
    ({"id": "x", "cart_event": "Order Completed"}, "purchase_event: must differ from cart_event"),
])
def test_invalid_documents(doc, expected):
    with pytest.raises(DefinitionError) as caught:
        parse_campaign(doc)
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("text, expected", [
    ("2 days", timedelta(days=2)), ("48 hours", timedelta(hours=48)), ("90 minutes", timedelta(minutes=90)),
    ("1 week", timedelta(weeks=1)), ("36h", timedelta(hours=36)), ("P2D", timedelta(days=2)),
])
def test_attribution_windows(text, expected):
    assert parse_campaign({"id": "x", "attribution_window": text}).attribution_window == expected


@pytest.mark.parametrize("bad", ["2", "days", "2 months", 2, "-1 day"])
def test_bad_attribution_windows(bad):
    with pytest.raises(DefinitionError) as caught:
        parse_campaign({"id": "x", "attribution_window": bad})
    assert caught.value.problems[0].startswith("attribution_window: ")


def test_offer_prefixes_match_whole_path_segments():
    assert in_offer("/offers/coffee", "/offers/coffee")
    assert in_offer("/offers/coffee/arabica", "/offers/coffee")
    assert not in_offer("/offers/coffee-machines", "/offers/coffee")
    assert in_offer("/offers/coffee", "/offers/coffee/")


# ---------------------------------------------------------------------------- message events

def test_message_events_build_the_summary():
    contact = contact_after(
        sent(0), message("Email Delivered", 1), message("Email Opened", 5), message("Email Opened", 50),
        message("Email Bounced", 2, bounce_type="soft"), message("Email Complained", 60),
        message("Email Unsubscribed", 61),
    )
    summary = contact.campaigns["promo"]
    assert summary["sent"] == at(0) and summary["channel"] == "email"
    assert summary["delivered"] == at(1)
    assert summary["opened"] == at(5) and summary["opens"] == 2
    assert summary["bounced"] == "soft"
    assert summary["complained"] == at(60) and summary["unsubscribed"] == at(61)


def test_a_hard_bounce_is_not_downgraded_by_a_later_soft_one():
    contact = contact_after(sent(), message("Email Bounced", 1, bounce_type="hard"),
                            message("Email Bounced", 2, bounce_type="soft"))
    assert contact.campaigns["promo"]["bounced"] == "hard"


def test_events_that_say_nothing_about_a_campaign_change_nothing():
    contact = contact_after(sent())
    before = dict(contact.campaigns["promo"])
    assert not record_engagement(CAMPAIGNS, contact, page("/offers/coffee", 20, None))
    assert not record_engagement(CAMPAIGNS, contact, track("Product Added", 21))
    assert not record_engagement(CAMPAIGNS, contact, track("Email Opened", 22, {"message_id": "x"}))
    assert not record_engagement(CAMPAIGNS, contact, {"type": "identify", "traits": {}, "timestamp": at(23),
                                                      "messageId": "i", "userId": "u1"})
    assert contact.campaigns["promo"] == before


def test_a_campaign_without_a_document_is_tracked_with_the_defaults():
    contact = contact_after(sent(campaign="flash"), click("k1", link="socks", url="https://s.example/socks?a=1",
                                                          campaign="flash"),
                            page("/socks", 11, "k1"), page("/socks/blue", 12, "k1"))
    assert campaign_group(contact, "flash") == "4"
    assert contact.campaigns["flash"]["clicks"][0]["prefix"] == "/socks"


# ---------------------------------------------------------------------------- the groups

def test_group_1_did_not_open():
    assert group_of(sent()) == "1"
    assert group_of(sent(), message("Email Delivered", 1)) == "1"
    assert group_of(sent(), message("Email Bounced", 1, bounce_type="hard")) == "1"


def test_not_a_recipient_has_no_group():
    assert group_of() is None
    assert classify(None) is None and classify({}) is None


def test_group_2_opened_and_clicked_nothing():
    assert group_of(sent(), message("Email Opened", 5)) == "2"


def test_group_3_clicked_and_left_after_the_landing():
    assert group_of(sent(), message("Email Opened", 5), click("k1"), page("/offers/coffee", 11, "k1")) == "3"


def test_group_3_when_the_landing_never_arrived():
    assert group_of(sent(), click("k1")) == "3"


def test_group_4_viewed_other_pages_of_the_offer():
    assert group_of(sent(), click("k1"), page("/offers/coffee", 11, "k1"),
                    page("/offers/coffee/arabica", 12, "k1")) == "4"


def test_a_reload_of_the_landing_is_a_page_after_the_landing():
    assert group_of(sent(), click("k1"), page("/offers/coffee", 11, "k1"), page("/offers/coffee", 12, "k1")) == "4"


def test_a_landing_outside_the_offer_then_the_offer_is_group_4():
    assert group_of(sent(), click("k1"), page("/lp/november", 11, "k1"), page("/offers/coffee", 12, "k1")) == "4"


def test_group_5_browsed_outside_the_offer():
    assert group_of(sent(), click("k1"), page("/offers/coffee", 11, "k1"), page("/offers/tea", 12, "k1")) == "5"
    assert group_of(sent(), click("k1"), page("/offers/coffee", 11, "k1"), page("/offers/coffee/x", 12, "k1"),
                    page("/", 13, "k1")) == "5"


def test_a_similar_prefix_is_outside_the_offer():
    assert group_of(sent(), click("k1"), page("/offers/coffee", 11, "k1"),
                    page("/offers/coffee-machines", 12, "k1")) == "5"


def test_a_page_without_a_path_counts_as_outside_the_offer():
    nameless = page("/x", 12, "k1")
    nameless["properties"] = {}
    assert group_of(sent(), click("k1"), page("/offers/coffee", 11, "k1"), nameless) == "5"


def test_the_path_may_come_from_the_page_context():
    event = page("/x", 12, "k1")
    event["properties"] = {}
    event["context"]["page"] = {"path": "/offers/coffee/robusta"}
    assert group_of(sent(), click("k1"), page("/offers/coffee", 11, "k1"), event) == "4"


def test_group_6_added_to_cart_without_buying():
    assert group_of(sent(), click("k1"), page("/offers/coffee", 11, "k1"),
                    track("Product Added", 12, {"sku": "c1"}, click="k1")) == "6"


def test_buyers_are_converted():
    assert group_of(sent(), click("k1"), page("/offers/coffee", 11, "k1"),
                    track("Product Added", 12, click="k1"), track("Order Completed", 15, click="k1")) == CONVERTED
    assert group_of(sent(), click("k1"), track("Order Completed", 15, click="k1")) == CONVERTED


def test_other_events_of_the_visit_do_not_move_the_group():
    assert group_of(sent(), click("k1"), page("/offers/coffee", 11, "k1"),
                    track("Product Viewed", 12, click="k1")) == "3"


def test_a_link_not_listed_uses_the_clicked_path_as_its_offer():
    events = [sent(), click("k1", link="hero", url="https://shop.example/collections/winter?mcid=k1"),
              page("/collections/winter", 11, "k1")]
    assert group_of(*events, page("/collections/winter/boots", 12, "k1")) == "4"
    assert group_of(*events, page("/about", 12, "k1")) == "5"


def test_the_offer_of_the_link_decides_what_is_an_offer_page():
    events = [sent(), click("k1", link="tea"), page("/offers/tea", 11, "k1")]
    assert group_of(*events, page("/offers/tea/green", 12, "k1")) == "4"
    assert group_of(*events, page("/offers/coffee", 12, "k1")) == "5"


# ---------------------------------------------------------------------------- attribution

def test_only_events_carrying_the_click_id_are_attributed():
    contact = contact_after(sent(), click("k1"), page("/offers/coffee", 11, "k1"))
    assert not record_engagement(CAMPAIGNS, contact, page("/offers/tea", 12, None))
    assert not record_engagement(CAMPAIGNS, contact, page("/offers/tea", 12, "someone-else"))
    assert not record_engagement(CAMPAIGNS, contact, track("Product Added", 13))
    assert campaign_group(contact, "promo") == "3"


def test_a_click_id_attributes_to_its_own_campaign():
    other = parse_campaign({"id": "tea-week", "offers": {"tea": {"path_prefix": "/tea"}}})
    campaigns = {**CAMPAIGNS, "tea-week": other}
    contact = contact_after(sent(), sent(campaign="tea-week"), click("k1"), click("t1", link="tea",
                            url="https://shop.example/tea", campaign="tea-week"),
                            page("/tea", 20, "t1"), page("/tea/green", 21, "t1"), campaigns=campaigns)
    assert campaign_group(contact, "tea-week") == "4"
    assert campaign_group(contact, "promo") == "3"


def test_the_window_runs_from_the_click():
    base = [sent(), click("k1", minutes=60), page("/offers/coffee", 61, "k1")]
    window = 2 * 24 * 60
    assert group_of(*base, track("Product Added", 60 + window, click="k1")) == "6"
    assert group_of(*base, track("Product Added", 60 + window + 0.1, click="k1")) == "3"
    assert group_of(*base, page("/offers/coffee/x", 60 + window + 1, "k1")) == "3"


def test_events_before_the_click_count_only_within_the_clock_skew():
    assert group_of(sent(), click("k1", minutes=60), page("/offers/coffee", 57, "k1"),
                    page("/offers/coffee/x", 58, "k1")) == "4"
    assert group_of(sent(), click("k1", minutes=60), page("/offers/coffee", 30, "k1"),
                    page("/offers/coffee/x", 31, "k1")) == "3"


def test_a_shorter_window_from_the_document():
    campaigns = {"promo": parse_campaign({"id": "promo", "attribution_window": "1 hour"})}
    contact = contact_after(sent(), click("k1"), page("/offers/coffee", 11, "k1"),
                            track("Product Added", 71, click="k1"), campaigns=campaigns)
    assert campaign_group(contact, "promo") == "3"


def test_a_click_without_an_open_event_counts_as_opened():
    contact = contact_after(sent(), click("k1", minutes=30))
    summary = contact.campaigns["promo"]
    assert summary["opened"] == at(30)
    assert classify(summary) == "3"
    assert contact_after(sent(), message("Email Opened", 40), click("k1", minutes=30)).campaigns["promo"]["opened"] \
        == at(30)


def test_the_same_click_recorded_twice_is_one_click():
    contact = contact_after(sent(), click("k1"), click("k1"))
    assert len(contact.campaigns["promo"]["clicks"]) == 1


def test_page_views_arriving_out_of_order_keep_the_earliest_as_landing():
    contact = contact_after(sent(), click("k1"), page("/offers/coffee/x", 12, "k1"), page("/offers/coffee", 11, "k1"))
    landing = contact.campaigns["promo"]["clicks"][0]["landing"]
    assert landing["path"] == "/offers/coffee" and landing["at"] == at(11)
    assert campaign_group(contact, "promo") == "4"


# ---------------------------------------------------------------------------- several clicks

def test_the_most_advanced_click_wins():
    contact = contact_after(
        sent(),
        click("k1", 10, link="coffee"), page("/offers/coffee", 11, "k1"), page("/offers/coffee/a", 12, "k1"),
        click("k2", 100, link="tea"), page("/offers/tea", 101, "k2"),
        click("k3", 200, link="coffee"), page("/offers/coffee", 201, "k3"), track("Product Added", 202, click="k3"),
    )
    assert campaign_group(contact, "promo") == "6"
    assert campaign_offer(contact, "promo") == "coffee"


def test_a_later_plain_click_does_not_undo_an_earlier_visit():
    contact = contact_after(sent(), click("k1", 10, link="tea"), page("/offers/tea", 11, "k1"),
                            page("/", 12, "k1"), click("k2", 100, link="coffee"))
    assert campaign_group(contact, "promo") == "5"
    assert campaign_offer(contact, "promo") == "tea"


def test_on_a_tie_the_first_click_names_the_offer():
    contact = contact_after(sent(), click("k1", 10, link="tea"), click("k2", 20, link="coffee"))
    assert campaign_offer(contact, "promo") == "tea"


def test_clicks_beyond_the_limit_are_counted_not_followed():
    events = [sent()] + [click(f"k{i}", 10 + i) for i in range(MAX_CLICKS + 3)]
    summary = contact_after(*events).campaigns["promo"]
    assert len(summary["clicks"]) == MAX_CLICKS and summary["more_clicks"] == 3
    assert classify(summary) == "3"


def test_only_the_latest_campaigns_are_kept():
    events = [sent(minutes=i, campaign=f"c{i:02d}") for i in range(MAX_CAMPAIGNS + 5)]
    contact = contact_after(*events)
    assert len(contact.campaigns) == MAX_CAMPAIGNS
    assert "c00" not in contact.campaigns and f"c{MAX_CAMPAIGNS + 4:02d}" in contact.campaigns
    assert not record_engagement(CAMPAIGNS, contact, sent(minutes=-10, campaign="ancient"))
    assert "ancient" not in contact.campaigns


# ---------------------------------------------------------------------------- report

def test_groups_report_counts_every_recipient_once():
    histories = [
        [sent()],
        [sent(), message("Email Opened", 5)],
        [sent(), click("a")],
        [sent(), click("b"), page("/offers/coffee", 11, "b"), page("/offers/coffee/x", 12, "b")],
        [sent(), click("c"), page("/offers/coffee", 11, "c"), page("/", 12, "c")],
        [sent(), click("d"), track("Product Added", 12, click="d")],
        [sent(), click("e"), track("Order Completed", 12, click="e")],
        [sent()],
    ]
    summaries = [contact_after(*h).campaigns["promo"] for h in histories] + [None, {}]
    assert groups_report(summaries, PROMO) == {
        "recipients": 8, "groups": {"1": 2, "2": 1, "3": 1, "4": 1, "5": 1, "6": 1}, "converted": 1,
    }


# ---------------------------------------------------------------------------- generated histories

LINKS = {"coffee": "/offers/coffee", "tea": "/offers/tea", "hero": "/collections/winter"}
PATHS = ["/offers/coffee", "/offers/coffee/a", "/offers/tea", "/offers/tea/b", "/collections/winter",
         "/collections/winter/c", "/", "/cart", "/offers/coffee-machines"]
WINDOW = 2 * 24 * 60


def _prefix(link: str) -> str:
    return LINKS[link]


def expected_group(opened: bool, clicks: list[dict], visits: list[tuple]) -> str:
    """The groups as the scenario states them, computed from the raw history."""
    if not clicks:
        return "2" if opened else "1"
    best = 3
    for c in clicks:
        mine = [v for v in visits if v[1] == c["id"] and c["at"] - 5 <= v[2] <= c["at"] + WINDOW]
        if any(v[0] == "buy" for v in mine):
            best = max(best, 7)
            continue
        if any(v[0] == "cart" for v in mine):
            best = max(best, 6)
            continue
        pages = sorted((v[2], v[3]) for v in mine if v[0] == "page")
        after = pages[1:]
        prefix = _prefix(c["link"])
        if any(not in_offer(p, prefix) for _, p in after):
            best = max(best, 5)
        elif after:
            best = max(best, 4)
    return {3: "3", 4: "4", 5: "5", 6: "6", 7: CONVERTED}[best]


history = st.fixed_dictionaries({
    "opened": st.booleans(),
    "clicks": st.lists(st.tuples(st.sampled_from(sorted(LINKS)), st.integers(0, 3 * WINDOW)), max_size=3),
    # (kind, index of the click whose id the event carries, minutes after that click, path)
    "visits": st.lists(st.tuples(st.sampled_from(["page"] * 8 + ["cart", "buy"]), st.integers(0, 3),
                                 st.one_of(st.integers(-10, 60), st.integers(WINDOW - 3, WINDOW + 3),
                                           st.integers(-100, WINDOW + 100)),
                                 st.sampled_from(PATHS)), max_size=8),
    "seed": st.integers(0, 10_000),
})


@settings(max_examples=examples(300), deadline=None)
@given(history)
def test_every_recipient_lands_in_exactly_one_group(h):
    clicks = [{"id": f"k{i}", "link": link, "at": minute} for i, (link, minute) in enumerate(h["clicks"])]
    visits = [(kind, f"k{n}", (clicks[n]["at"] if n < len(clicks) else 0) + after, path)
              for kind, n, after, path in h["visits"]]
    messages = [sent(-1)] + ([message("Email Opened", 0)] if h["opened"] else [])
    messages += [click(c["id"], c["at"], link=c["link"], url=f"https://shop.example{LINKS[c['link']]}?x=1")
                 for c in clicks]
    visit_events = []
    for kind, click_id, minute, path in visits:
        if kind == "page":
            visit_events.append(page(path, minute, click_id))
        else:
            visit_events.append(track("Product Added" if kind == "cart" else "Order Completed", minute,
                                      click=click_id))
    expected = expected_group(h["opened"], clicks, visits)

    groups = set()
    for order in range(2):
        shuffled = list(visit_events)
        random.Random(h["seed"] + order).shuffle(shuffled)  # visits may arrive in any order
        group = group_of(*messages, *shuffled)
        groups.add(group)
        assert group in (*GROUPS, CONVERTED)
        assert group == expected
    assert len(groups) == 1
    report = groups_report([contact_after(*messages, *visit_events).campaigns["promo"]], PROMO)
    assert report["recipients"] == 1 and sum(report["groups"].values()) + report["converted"] == 1
