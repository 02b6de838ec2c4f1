"""Segments end to end through the app: definitions over the admin API, real-time
membership in the stream batch, time passing with a controllable clock, back-fills."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from tests.unit.fakes import FakeClock

ADMIN = {"Authorization": "Bearer test-admin-token-1"}

CART_WITHOUT_ORDER = """
id: cart-without-order
name: Added to cart, no order yet
conditions:
  all:
    - event: Product Added
      within: 1 day
    - event: Order Completed
      within: 1 day
      at_most: 0
"""

LAPSED = """
id: lapsed-customers
name: No purchase for 60 days
conditions:
  all:
    - event: Order Completed
    - event: Order Completed
      within: 60 days
      at_most: 0
"""


@pytest.fixture
def clock(app_client):
    from chalicelib.entrypoints import runtime

    fake = FakeClock(datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc))
    runtime.use_clock(fake)
    yield fake
    runtime.use_clock(None)


def run_jobs(app_client):
    """What the schedule does every few minutes on AWS."""
    event = app_client.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                                       detail={}, resources=[])
    return app_client.client.lambda_.invoke("segment_jobs", event).payload


def put_segment(app_client, text: str):
    segment_id = text.split("id:")[1].split()[0]
    return app_client.http.put(f"/v1/admin/segments/{segment_id}", body=text,
                               headers={**ADMIN, "Content-Type": "application/yaml"})


def contact(app_client, identifier: str) -> dict:
    status, body = app_client.admin(f"/v1/admin/contacts?identifier={identifier}")
    assert status == 200, body
    return body


def timeline_names(app_client, contact_id: str) -> list[str]:
    _, page = app_client.admin(f"/v1/admin/contacts/{contact_id}/events?limit=200")
    return [e.get("event") or e["type"] for e in reversed(page["events"])]


def test_a_bad_definition_is_rejected_with_every_problem(app_client):
    response = put_segment(app_client, """
id: broken
name: Broken
conditions:
  all:
    - event: Product Added
      within: 30 dayz
    - trait: plan
      equal: pro
    - segment: nowhere
""")
    assert response.status_code == 400
    problems = json.loads(response.body)["problems"]
    assert any('conditions.all[0].within: "30 dayz" is not a duration' in p for p in problems), problems
    assert any("conditions.all[1]" in p and "equals" in p for p in problems), problems
    assert app_client.admin("/v1/admin/segments/broken")[0] == 404


def test_enter_and_leave_in_the_same_batch(app_client, clock):
    assert put_segment(app_client, CART_WITHOUT_ORDER).status_code == 200
    app_client.post("/v1/batch", {"batch": [
        {"type": "track", "userId": "shopper", "event": "Product Added", "properties": {"cart_id": "c1"}},
        {"type": "track", "userId": "shopper", "event": "Order Completed", "properties": {"cart_id": "c1"}},
    ]})
    app_client.drain()
    person = contact(app_client, "user:shopper")
    assert "cart-without-order" not in person["segments"]
    # Both changes happened while processing this one batch, and were emitted as events.
    assert person["counters"]["Segment Entered"]["total"] == 1
    assert person["counters"]["Segment Exited"]["total"] == 1
    _, page = app_client.admin(f"/v1/admin/contacts/{person['id']}/events?limit=50")
    changes = {e["event"]: e["properties"]["segment_id"] for e in page["events"]
               if e.get("event") in ("Segment Entered", "Segment Exited")}
    assert changes == {"Segment Entered": "cart-without-order", "Segment Exited": "cart-without-order"}
    _, tracked = app_client.admin(f"/v1/admin/contacts/{person['id']}/events?kind=tracked")
    assert sorted(e["event"] for e in tracked["events"]) == ["Order Completed", "Product Added"]
    _, internal = app_client.admin(f"/v1/admin/contacts/{person['id']}/events?kind=internal")
    assert {"Segment Entered", "Segment Exited"} <= {e["event"] for e in internal["events"]}
    assert all(e["context"]["library"]["name"] == "mercurio" for e in internal["events"])
    assert app_client.admin(f"/v1/admin/contacts/{person['id']}/events?kind=bogus")[0] == 400
    status, segment = app_client.admin("/v1/admin/segments/cart-without-order")
    assert status == 200 and segment["size"] == 0


def test_membership_size_and_members_pages(app_client, clock):
    put_segment(app_client, CART_WITHOUT_ORDER)
    for i in range(5):
        app_client.post("/v1/track", {"userId": f"s{i}", "event": "Product Added"})
    app_client.drain()
    _, listing = app_client.admin("/v1/admin/segments")
    listed = {s["id"]: s for s in listing["segments"]}
    assert {k: listed["cart-without-order"][k] for k in ("name", "version", "size")} == \
        {"name": "Added to cart, no order yet", "version": 1, "size": 5}
    assert listing["unreadable"] == []
    _, first = app_client.admin("/v1/admin/segments/cart-without-order/members?limit=3")
    rest = []
    cursor = first.get("next_cursor")
    while cursor:
        from urllib.parse import quote
        _, page = app_client.admin(f"/v1/admin/segments/cart-without-order/members?limit=3&cursor={quote(cursor)}")
        rest += page["members"]
        cursor = page.get("next_cursor")
    ids = {m["contact_id"] for m in first["members"] + rest}
    assert len(ids) == 5
    assert contact(app_client, "user:s0")["id"] in ids


def test_no_purchase_for_60_days_flips_without_any_new_event(app_client, clock):
    assert put_segment(app_client, LAPSED).status_code == 200
    app_client.post("/v1/track", {"userId": "buyer", "event": "Order Completed", "properties": {"revenue": 30}})
    app_client.drain()
    assert "lapsed-customers" not in contact(app_client, "user:buyer")["segments"]

    clock.advance(days=59, hours=23)
    run_jobs(app_client)
    assert "lapsed-customers" not in contact(app_client, "user:buyer")["segments"]

    clock.advance(hours=1, minutes=1)  # 60 days and a minute after the purchase
    run_jobs(app_client)
    app_client.drain()
    person = contact(app_client, "user:buyer")
    assert "lapsed-customers" in person["segments"]
    assert "Segment Entered" in timeline_names(app_client, person["id"])


def test_a_new_segment_is_back_filled_over_existing_contacts(app_client, clock):
    for i in range(7):
        app_client.post("/v1/track", {"userId": f"old{i}", "event": "Product Viewed",
                                      "properties": {"category": "coffee" if i % 2 else "tea"}})
    app_client.drain()
    document = """
id: coffee-viewers
name: Viewed coffee
conditions:
  event: Product Viewed
  where: ['properties.category == "coffee"']
"""
    preview = app_client.http.post("/v1/admin/segments/preview", body=document,
                                   headers={**ADMIN, "Content-Type": "application/yaml"})
    assert preview.status_code == 200
    assert json.loads(preview.body)["size"] == 3
    put = put_segment(app_client, document)
    assert json.loads(put.body)["backfill"]["status"] == "pending"
    run_jobs(app_client)
    app_client.drain()
    status, segment = app_client.admin("/v1/admin/segments/coffee-viewers")
    assert segment["size"] == 3
    assert segment["backfill"]["status"] == "done" and segment["backfill"]["scanned"] == 7
    # The back-filled count keeps working for new events.
    clock.advance(minutes=1)
    app_client.post("/v1/track", {"userId": "old0", "event": "Product Viewed", "properties": {"category": "coffee"}})
    app_client.drain()
    assert "coffee-viewers" in contact(app_client, "user:old0")["segments"]


def test_the_six_groups_of_a_promotional_email(app_client, clock):
    from pathlib import Path

    from chalicelib.entrypoints import runtime

    runtime.services().definitions.seed_directory(Path("chalicelib/definitions"))
    campaign = {"campaign_id": "promo-2026-11"}
    recipients = {f"r{i}": f"r{i}@example.com" for i in range(1, 8)}
    batch = [{"type": "identify", "userId": r, "traits": {"email": e}} for r, e in recipients.items()]
    batch += [{"type": "track", "userId": r, "event": "Message Sent",
               "properties": {**campaign, "channel": "email", "message_id": f"m-{r}"}} for r in recipients]
    batch += [{"type": "track", "userId": r, "event": "Email Opened", "properties": {**campaign, "message_id": f"m-{r}"}}
              for r in ("r2", "r3", "r4", "r5", "r6", "r7")]
    batch += [{"type": "track", "userId": r, "event": "Email Link Clicked",
               "properties": {**campaign, "message_id": f"m-{r}", "link_id": "coffee",
                              "url": "https://shop.example/offers/coffee", "click_id": f"click-{r}"}}
              for r in ("r3", "r4", "r5", "r6", "r7")]
    app_client.post("/v1/batch", {"batch": batch})
    app_client.drain()

    # The visits those clicks open, from browsers the recipients never identified on.
    clock.advance(minutes=1)
    visits = []
    for r in ("r3", "r4", "r5", "r6", "r7"):
        visits.append({"type": "page", "anonymousId": f"visitor-{r}", "properties": {"path": "/offers/coffee"},
                       "context": {"clickId": f"click-{r}"}})
    after = {"r4": {"type": "page", "properties": {"path": "/offers/coffee/arabica"}},
             "r5": {"type": "page", "properties": {"path": "/about"}},
             "r6": {"type": "track", "event": "Product Added", "properties": {"product_id": "arabica"}},
             "r7": {"type": "track", "event": "Order Completed", "properties": {"revenue": 24}}}
    for r, event in after.items():
        visits.append({**event, "anonymousId": f"visitor-{r}", "context": {"clickId": f"click-{r}"}})
    for event in visits:
        clock.advance(seconds=10)
        app_client.post("/v1/batch", {"batch": [event]})
    app_client.drain()

    status, report = app_client.admin("/v1/admin/campaigns/promo-2026-11/groups")
    assert status == 200, report
    assert report["recipients"] == 7
    assert report["groups"] == {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 1}
    assert report["converted"] == 1
    assert report["job"] and report["as_of"]  # computed by a campaign-groups job
    status, unknown = app_client.admin("/v1/admin/campaigns/no-such-campaign/groups")
    assert status == 404 and "no campaign 'no-such-campaign'" in unknown["error"]
    # The visit joined the recipient's profile through the click id.
    r6 = contact(app_client, "email:r6@example.com")
    assert "anon:visitor-r6" in r6["identifiers"]
    assert "promo-2026-11-group-6" in r6["segments"]
    assert "promo-2026-11-group-1" in contact(app_client, "user:r1")["segments"]


def test_reachable_changes_when_an_identify_links_an_email(app_client, clock):
    document = "id: emailable\nname: Emailable\nconditions:\n  reachable: email\n"
    assert put_segment(app_client, document).status_code == 200
    app_client.post("/v1/page", {"anonymousId": "soon-known"})
    app_client.drain()
    assert "emailable" not in contact(app_client, "anon:soon-known")["segments"]
    app_client.post("/v1/identify", {"anonymousId": "soon-known", "traits": {"mail_opt_in": True, "email": "k@x.io"}})
    app_client.drain()
    assert "emailable" in contact(app_client, "anon:soon-known")["segments"]


def test_a_window_that_moved_later_still_flips_when_its_time_comes(app_client, clock):
    """Each event pushes the window's end later without writing a new recheck entry; the
    earlier entry, when it fires, hands over to the new moment."""
    document = ("id: active-today\nname: Active in the last day\nconditions:\n"
                "  event: Page Viewed\n  within: 1 day\n")
    assert put_segment(app_client, document).status_code == 200
    app_client.post("/v1/page", {"userId": "regular", "properties": {"path": "/"}})
    app_client.drain()
    assert "active-today" in contact(app_client, "user:regular")["segments"]
    clock.advance(hours=12)
    app_client.post("/v1/page", {"userId": "regular", "properties": {"path": "/news"}})
    app_client.drain()
    clock.advance(hours=12, minutes=1)  # the first entry fires: the person is still active
    run_jobs(app_client)
    assert "active-today" in contact(app_client, "user:regular")["segments"]
    clock.advance(hours=12)  # a day after the last page view
    run_jobs(app_client)
    app_client.drain()
    person = contact(app_client, "user:regular")
    assert "active-today" not in person["segments"]
    assert person["counters"]["Segment Exited"]["total"] == 1


def test_a_new_count_on_an_event_kept_without_exact_times_is_recounted_from_history(app_client, clock):
    """No segment counted `Article Read` over a window, so profiles kept its total and latest
    time only. A segment asking for 3 within 7 days gets the exact times it needs from each
    contact's stored events: in its preview and in its back-fill."""
    for days_later, reads in ((0, (2, 2, 2, 2)), (10, (2, 3, 2, 3))):  # 2 each, then 2 or 3 ten days later
        clock.advance(days=days_later)
        for i, count in enumerate(reads):
            for _ in range(count):
                clock.advance(minutes=1)
                app_client.post("/v1/track", {"userId": f"reader{i}", "event": "Article Read"})
        app_client.drain()
    kept = contact(app_client, "user:reader1")["counters"]["Article Read"]
    assert kept["total"] == 5 and set(kept) == {"total", "first", "last"}  # no exact times, no day buckets
    document = """
id: keen-readers
name: Read 3 articles this week
conditions:
  event: Article Read
  at_least: 3
  within: 7 days
"""
    preview = app_client.http.post("/v1/admin/segments/preview", body=document,
                                   headers={**ADMIN, "Content-Type": "application/yaml"})
    assert preview.status_code == 200 and json.loads(preview.body)["size"] == 2
    put_segment(app_client, document)
    run_jobs(app_client)
    app_client.drain()
    status, segment = app_client.admin("/v1/admin/segments/keen-readers")
    assert segment["size"] == 2 and segment["backfill"]["status"] == "done"
    assert "keen-readers" in contact(app_client, "user:reader3")["segments"]
    assert "keen-readers" not in contact(app_client, "user:reader2")["segments"]
    # From now on each contact keeps the 3 latest times: one more read makes reader0 a member.
    clock.advance(minutes=1)
    app_client.post("/v1/track", {"userId": "reader0", "event": "Article Read"})
    app_client.drain()
    assert "keen-readers" in contact(app_client, "user:reader0")["segments"]
    # ... and a week after the second of the three, reader1 leaves when the recheck runs.
    clock.advance(days=7)
    run_jobs(app_client)
    app_client.drain()
    assert "keen-readers" not in contact(app_client, "user:reader1")["segments"]
