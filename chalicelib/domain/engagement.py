"""Email campaign engagement: what each recipient did with a promotion, in six groups.

Message events (the contract the messaging capability emits)
-------------------------------------------------------------
For every recipient, the messaging capability emits internal `track` events on the
recipient's contact. Every one carries `campaign_id` and `message_id` (the id of the
message that was sent) in `properties`:

=====================  ==========================================================
event                  properties besides campaign_id and message_id
=====================  ==========================================================
Message Sent           channel ("email", "sms"…), journey_id?, template_id?
Email Delivered        – (read if present; deliveries are kept on the message only, see
                       services/feedback.py: nothing here classifies by them)
Email Opened           –
Email Link Clicked     link_id, url, click_id
Email Bounced          bounce_type: "hard" | "soft"
Email Complained       –
Email Unsubscribed     –
=====================  ==========================================================

The click redirect records "Email Link Clicked" and sends the browser to the landing URL
with `mcid=<click_id>` appended. The website snippet keeps that id for the visit and puts
`context.clickId = <click_id>` on every event of the visit; identity resolution attaches
those events to the recipient's contact. This module then attributes the visit to the click.

The campaign document
---------------------
::

    id: promo-2026-11
    name: November promotion
    offers:                          # one entry per link of the email (by link_id)
      coffee: {name: Coffee beans, path_prefix: /offers/coffee}
    attribution_window: 2 days       # how long after a click its visit still counts
    cart_event: Product Added
    purchase_event: Order Completed

A link that `offers` does not list is its own offer: the clicked URL's path is the prefix.
A path belongs to an offer when it equals the prefix or continues it after a `/`
(`/offers/coffee/beans` belongs to `/offers/coffee`; `/offers/coffee-machines` does not);
a prefix written with a trailing `/` matches any path that starts with it.

The summary kept on the contact
-------------------------------
`contact.campaigns[campaign_id]`::

    {"sent": iso, "channel": "email", "delivered": iso, "opened": iso, "opens": n,
     "bounced": "hard"|"soft", "complained": iso, "unsubscribed": iso, "updated": iso,
     "clicks": [{"id": click_id, "link": link_id, "path": clicked path, "prefix": offer path,
                 "at": iso, "landing": {"at": iso, "path": p, "offer": bool},
                 "views": {"offer": n, "other": n}, "cart": iso, "converted": iso}],
     "more_clicks": n}

Only the latest `MAX_CAMPAIGNS` campaigns are kept per contact and the first `MAX_CLICKS`
clicks per campaign (further clicks still count as clicks, their visits are not followed).
`views` counts every attributed page view, the landing included, so the result does not
depend on the order in which events arrive: the landing is the earliest page view of the
click, whenever it is processed.

The groups
----------
Exactly one answer per recipient (`classify`):

1. did not open (and did not click);
2. opened, clicked nothing;
3. clicked and left: no page view after the landing;
4. clicked and viewed other pages of the clicked offer, nothing outside it;
5. clicked and browsed pages outside the offer, without adding to cart;
6. added to cart without buying;
"converted": bought (the purchase event) within the attribution window of a click.

A click implies an open (images are often blocked, so opens are under-reported). When a
recipient clicked several times, the most advanced behaviour over all clicks wins:
converted > 6 > 5 > 4 > 3. A page view counts after the landing even when it is a reload
of the landing page. An event is attributed to a click only through `context.clickId`, and
only from the click's time (less `CLOCK_SKEW`, for device clocks) to the click's time plus
the attribution window; a purchase in a later visit without the click id is not attributed.
The message events are expected to be processed before the visit they lead to (the
redirect records the click before it redirects); a visit event whose click is unknown is
ignored.

Campaign ids without a document are tracked with the default settings (no offers listed,
2 days, Product Added, Order Completed), so a message sent before its document exists still
has a summary.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from chalicelib.domain.definition_errors import (
    DefinitionError,
    expect_mapping,
    expect_name,
    show,
    unknown_fields,
)
from chalicelib.domain.durations import parse_duration

MESSAGE_SENT = "Message Sent"
EMAIL_DELIVERED = "Email Delivered"
EMAIL_OPENED = "Email Opened"
EMAIL_LINK_CLICKED = "Email Link Clicked"
EMAIL_BOUNCED = "Email Bounced"
EMAIL_COMPLAINED = "Email Complained"
EMAIL_UNSUBSCRIBED = "Email Unsubscribed"
MESSAGE_EVENTS = (MESSAGE_SENT, EMAIL_DELIVERED, EMAIL_OPENED, EMAIL_LINK_CLICKED, EMAIL_BOUNCED,
                  EMAIL_COMPLAINED, EMAIL_UNSUBSCRIBED)
PAGE_VIEWED = "Page Viewed"

GROUPS = ("1", "2", "3", "4", "5", "6")
CONVERTED = "converted"
MAX_CAMPAIGNS = 50  # latest campaigns kept per contact
MAX_CLICKS = 10  # clicks followed per campaign and contact
MAX_PATH = 200  # characters of a path kept in the summary
CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_WINDOW = timedelta(days=2)
MAX_WINDOW = timedelta(days=90)
DEFAULT_CART_EVENT = "Product Added"
DEFAULT_PURCHASE_EVENT = "Order Completed"
CAMPAIGN_FIELDS = ("id", "name", "description", "offers", "attribution_window", "cart_event", "purchase_event")
OFFER_FIELDS = ("name", "path_prefix")

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")  # as every definition id
_LINK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_RANK = {"3": 3, "4": 4, "5": 5, "6": 6, CONVERTED: 7}


@dataclass(frozen=True)
class Offer:
    link_id: str
    name: str
    path_prefix: str


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    offers: dict = field(default_factory=dict)  # link_id -> Offer
    attribution_window: timedelta = DEFAULT_WINDOW
    cart_event: str = DEFAULT_CART_EVENT
    purchase_event: str = DEFAULT_PURCHASE_EVENT
    description: str = ""


# ---------------------------------------------------------------------------- documents

def parse_campaign(doc: object) -> Campaign:
    """Validate a campaign document; DefinitionError lists every problem by its path."""
    problems: list[str] = []
    doc = expect_mapping(doc, "", problems)
    if doc is None:
        raise DefinitionError(problems)
    unknown_fields(doc, CAMPAIGN_FIELDS, "", problems)

    campaign_id = expect_name(doc.get("id"), "id", problems)
    if campaign_id is not None and not _ID.match(campaign_id):
        problems.append(f"id: {show(campaign_id)} must be lower-case letters, digits and dashes (at most 64)")
    name = doc.get("name")
    if name is None:
        name = campaign_id or ""
    elif not (isinstance(name, str) and name.strip()):
        problems.append(f"name: {show(name)} is not a name")
    description = doc.get("description") or ""
    if not isinstance(description, str):
        problems.append(f"description: expected text, got {show(description)}")

    offers: dict[str, Offer] = {}
    raw_offers = doc.get("offers")
    if raw_offers is not None and expect_mapping(raw_offers, "offers", problems) is not None:
        for link_id, raw in raw_offers.items():
            where = f"offers.{link_id}"
            if not isinstance(link_id, str) or not _LINK_ID.match(link_id):
                problems.append(f"{where}: the link id must be letters, digits, '.', '_' or '-'")
                continue
            if expect_mapping(raw, where, problems) is None:
                continue
            unknown_fields(raw, OFFER_FIELDS, where, problems)
            offer_name = link_id if raw.get("name") is None else raw["name"]
            if not (isinstance(offer_name, str) and offer_name.strip()):
                problems.append(f"{where}.name: {show(offer_name)} is not a name")
            prefix = raw.get("path_prefix")
            if prefix is None:
                problems.append(f"{where}.path_prefix: is required")
            elif not isinstance(prefix, str) or not prefix.startswith("/"):
                problems.append(f'{where}.path_prefix: must start with "/", got {show(prefix)}')
            elif re.search(r"[\s?#]", prefix):
                problems.append(f"{where}.path_prefix: a path has no spaces, query (?) or fragment (#)")
            else:
                offers[link_id] = Offer(link_id, str(offer_name).strip(), prefix)

    window = DEFAULT_WINDOW
    if doc.get("attribution_window") is not None:
        try:
            window = parse_duration(doc["attribution_window"])
            if window > MAX_WINDOW:
                problems.append("attribution_window: must be at most 90 days")
        except ValueError as exc:
            problems.append(f"attribution_window: {exc}")

    events = {}
    for key, default in (("cart_event", DEFAULT_CART_EVENT), ("purchase_event", DEFAULT_PURCHASE_EVENT)):
        events[key] = expect_name(doc.get(key, default), key, problems)
    if events["cart_event"] and events["cart_event"] == events["purchase_event"]:
        problems.append("purchase_event: must differ from cart_event")

    if problems:
        raise DefinitionError(problems)
    return Campaign(
        id=campaign_id, name=name.strip(), offers=offers, attribution_window=window,
        cart_event=events["cart_event"], purchase_event=events["purchase_event"], description=description,
    )


def default_campaign(campaign_id: str) -> Campaign:
    return Campaign(id=campaign_id, name=campaign_id)


# ---------------------------------------------------------------------------- recording

def _when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(timezone.utc)


def _earliest(a: str | None, b: str) -> str:
    return b if a is None or b < a else a


def _path_of(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    path = urlsplit(value).path if "://" in value else value.split("?")[0].split("#")[0]
    if not path.startswith("/"):
        return None
    return path[:MAX_PATH]


def page_path(event: dict) -> str | None:
    """The viewed path: properties.path, context.page.path, else the path of the page URL."""
    props = event.get("properties") or {}
    page = (event.get("context") or {}).get("page") or {}
    page = page if isinstance(page, dict) else {}
    for value in (props.get("path"), page.get("path"), props.get("url"), page.get("url")):
        path = _path_of(value)
        if path:
            return path
    return None


def in_offer(path: str, prefix: str) -> bool:
    """`/offers/coffee` holds `/offers/coffee` and `/offers/coffee/…`, not `/offers/coffeemachines`."""
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def _event_name(event: dict) -> str | None:
    if event.get("type") == "track":
        return event.get("event")
    if event.get("type") == "page":
        return PAGE_VIEWED
    return None


def record_engagement(campaigns: dict[str, Campaign], contact, event: dict) -> bool:
    """Fold one event into the contact's campaign summaries; True when a summary changed.

    `campaigns` maps campaign id to its parsed document. Call once per new event (the
    contact's own messageId check makes redelivery harmless).
    """
    name = _event_name(event)
    if name is None:
        return False
    props = event.get("properties") or {}
    if name in MESSAGE_EVENTS:
        campaign_id = props.get("campaign_id")
        if not isinstance(campaign_id, str) or not campaign_id:
            return False
        campaign = campaigns.get(campaign_id) or default_campaign(campaign_id)
        return _record_message(contact, campaign, name, props, event["timestamp"])
    click_id = (event.get("context") or {}).get("clickId")
    if not isinstance(click_id, str) or not click_id:
        return False
    found = _find_click(contact.campaigns, click_id)
    if found is None:
        return False
    campaign_id, click = found
    campaign = campaigns.get(campaign_id) or default_campaign(campaign_id)
    at = _when(event["timestamp"])
    clicked = _when(click["at"])
    if not clicked - CLOCK_SKEW <= at <= clicked + campaign.attribution_window:
        return False
    summary = contact.campaigns[campaign_id]
    changed = _record_visit(click, campaign, name, event)
    if changed:
        summary["updated"] = max(summary.get("updated", ""), event["timestamp"])
    return changed


def _find_click(summaries: dict, click_id: str) -> tuple[str, dict] | None:
    for campaign_id, summary in summaries.items():
        for click in summary.get("clicks", ()):
            if click.get("id") == click_id:
                return campaign_id, click
    return None


def _record_message(contact, campaign: Campaign, name: str, props: dict, ts: str) -> bool:
    summaries = contact.campaigns
    summary = summaries.get(campaign.id)
    created = summary is None
    if created:
        summary = {}
    before = repr(summary)
    if name == MESSAGE_SENT:
        summary["sent"] = _earliest(summary.get("sent"), ts)
        if isinstance(props.get("channel"), str):
            summary.setdefault("channel", props["channel"])
    elif name == EMAIL_DELIVERED:
        summary["delivered"] = _earliest(summary.get("delivered"), ts)
    elif name == EMAIL_OPENED:
        summary["opened"] = _earliest(summary.get("opened"), ts)
        summary["opens"] = summary.get("opens", 0) + 1
    elif name == EMAIL_LINK_CLICKED:
        _record_click(summary, campaign, props, ts)
    elif name == EMAIL_BOUNCED:
        kind = "hard" if props.get("bounce_type") == "hard" else "soft"
        if summary.get("bounced") != "hard":
            summary["bounced"] = kind
    elif name == EMAIL_COMPLAINED:
        summary["complained"] = _earliest(summary.get("complained"), ts)
    elif name == EMAIL_UNSUBSCRIBED:
        summary["unsubscribed"] = _earliest(summary.get("unsubscribed"), ts)
    if not created and repr(summary) == before:
        return False
    summary["updated"] = max(summary.get("updated", ""), ts)
    if created:
        summaries[campaign.id] = summary
        _keep_latest(summaries)
        return campaign.id in summaries
    return True


def _record_click(summary: dict, campaign: Campaign, props: dict, ts: str) -> None:
    summary["opened"] = _earliest(summary.get("opened"), ts)  # a click implies an open
    clicks = summary.setdefault("clicks", [])
    click_id = props.get("click_id")
    if isinstance(click_id, str) and any(c["id"] == click_id for c in clicks):
        return
    if not isinstance(click_id, str) or not click_id or len(clicks) >= MAX_CLICKS:
        summary["more_clicks"] = summary.get("more_clicks", 0) + 1
        return
    link_id = props.get("link_id") if isinstance(props.get("link_id"), str) else None
    clicked_path = _path_of(props.get("url"))
    offer = campaign.offers.get(link_id) if link_id else None
    click = {"id": click_id, "link": link_id, "at": ts, "views": {"offer": 0, "other": 0}}
    if isinstance(props.get("message_id"), str) and props["message_id"]:
        click["message"] = props["message_id"]  # the conversion is attributed to this message
    if clicked_path:
        click["path"] = clicked_path
    prefix = offer.path_prefix if offer else clicked_path
    if prefix:
        click["prefix"] = prefix
    clicks.append(click)


def _record_visit(click: dict, campaign: Campaign, name: str, event: dict) -> bool:
    ts = event["timestamp"]
    if name == PAGE_VIEWED:
        path = page_path(event) or ""
        prefix = click.get("prefix")
        offer = bool(prefix and path and in_offer(path, prefix))
        click["views"]["offer" if offer else "other"] += 1
        landing = click.get("landing")
        if landing is None or (ts, path) < (landing["at"], landing["path"]):
            click["landing"] = {"at": ts, "path": path, "offer": offer}
        return True
    if name == campaign.purchase_event:
        previous = click.get("converted")
        click["converted"] = _earliest(previous, ts)
        if click["converted"] != previous:  # the first purchase of the visit: its order and value
            props = event.get("properties") or {}
            revenue = order_revenue(props)
            if revenue is not None:
                click["revenue"] = revenue
            if isinstance(props.get("order_id"), (str, int)) and not isinstance(props.get("order_id"), bool):
                click["order_id"] = str(props["order_id"])
        return previous != click["converted"]
    if name == campaign.cart_event:
        previous = click.get("cart")
        click["cart"] = _earliest(previous, ts)
        return previous != click["cart"]
    return False


def order_revenue(properties: dict) -> float | None:
    """An order's value as Segment's ecommerce spec carries it: `revenue`, else `total`, else `value`."""
    for key in ("revenue", "total", "value"):
        value = properties.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) < 1e12:
            return round(float(value), 2)
    return None


def new_conversions(before: dict, after: dict) -> list[tuple[str, dict]]:
    """The clicks (campaign id, click) that became conversions between two states of a
    contact's campaign summaries."""
    converted_before = {c.get("id") for s in before.values() for c in s.get("clicks", ()) if c.get("converted")}
    return [(campaign_id, click) for campaign_id, summary in after.items() for click in summary.get("clicks", ())
            if click.get("converted") and click.get("id") not in converted_before]


def _keep_latest(summaries: dict) -> None:
    """At most MAX_CAMPAIGNS summaries: the campaigns sent longest ago go first."""
    while len(summaries) > MAX_CAMPAIGNS:
        oldest = min(summaries, key=lambda k: (summaries[k].get("sent") or summaries[k].get("updated", ""), k))
        del summaries[oldest]


# ---------------------------------------------------------------------------- groups

def click_outcome(click: dict) -> str:
    """What one click led to: "3".."6" or "converted"."""
    if click.get("converted"):
        return CONVERTED
    if click.get("cart"):
        return "6"
    views = dict(click.get("views") or {})
    landing = click.get("landing")
    if landing:
        views["offer" if landing.get("offer") else "other"] -= 1  # the landing itself
    if views.get("other", 0) > 0:
        return "5"
    if views.get("offer", 0) > 0:
        return "4"
    return "3"


def decisive_click(summary: dict | None) -> dict | None:
    """The click whose outcome decides the group (the most advanced; the earliest on a tie)."""
    clicks = (summary or {}).get("clicks") or []
    if not clicks:
        return None
    return max(sorted(clicks, key=lambda c: c["at"]), key=lambda c: _RANK[click_outcome(c)])


def classify(summary: dict | None, campaign: Campaign | None = None) -> str | None:
    """The recipient's group "1".."6", "converted", or None when there is no summary.

    Everything the groups need was decided when the events were recorded (offer prefixes,
    attribution window, cart and purchase events), so the summary alone answers; `campaign`
    is accepted for callers that hold it and is not needed.
    """
    if not summary:
        return None
    click = decisive_click(summary)
    if click is not None:
        return click_outcome(click)
    if summary.get("more_clicks"):
        return "3"  # clicked, through clicks whose visits are not followed
    return "2" if summary.get("opened") else "1"


def campaign_group(contact, campaign_id: str) -> str | None:
    """The contact's group in a campaign, for segment conditions; None if not a recipient."""
    return classify(contact.campaigns.get(campaign_id))


def campaign_offer(contact, campaign_id: str) -> str | None:
    """The link id of the offer the contact engaged with most (groups 3 to 6 and buyers)."""
    click = decisive_click(contact.campaigns.get(campaign_id))
    return click.get("link") if click else None


def groups_report(summaries: Iterable[dict], campaign: Campaign | None = None) -> dict:
    """Sizes of the groups over the recipients' summaries."""
    report = {"recipients": 0, "groups": {g: 0 for g in GROUPS}, "converted": 0}
    for summary in summaries:
        group = classify(summary, campaign)
        if group is None:
            continue
        report["recipients"] += 1
        if group == CONVERTED:
            report["converted"] += 1
        else:
            report["groups"][group] += 1
    return report
