"""The foundation's acceptance: an anonymous visitor browses, adds to cart, then identifies
with an email; the admin API shows one contact, reachable by every identifier, with all
four events on its timeline — through the real local stack over HTTP."""
from __future__ import annotations

import json
import urllib.request
import uuid


def _post(stack, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        stack.api_url + path, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_anonymous_visitor_becomes_one_known_contact(local_stack):
    anon = f"anon-{uuid.uuid4()}"
    user = f"user-{uuid.uuid4().hex[:8]}"
    key = local_stack.write_key
    _post(local_stack, "/v1/p", {"writeKey": key, "anonymousId": anon, "name": "Home",
                                 "properties": {"path": "/", "url": "http://shop.test/"}})
    _post(local_stack, "/v1/t", {"writeKey": key, "anonymousId": anon, "event": "Product Viewed",
                                 "properties": {"product_id": "p1"}})
    _post(local_stack, "/v1/t", {"writeKey": key, "anonymousId": anon, "event": "Product Added",
                                 "properties": {"product_id": "p1", "cart_id": "c1"}})
    _post(local_stack, "/v1/i", {"writeKey": key, "anonymousId": anon, "userId": user,
                                 "traits": {"email": "Grace.Hopper@Example.com", "first_name": "Grace"}})

    contact = local_stack.wait_for_contact(f"email:grace.hopper@example.com")
    for identifier in (f"anon:{anon}", f"user:{user}", "email:GRACE.HOPPER@example.com"):
        assert local_stack.wait_for_contact(identifier)["id"] == contact["id"]
    assert set(contact["identifiers"]) >= {f"anon:{anon}", f"user:{user}", "email:grace.hopper@example.com"}
    assert contact["traits"]["first_name"] == "Grace"
    assert contact["first_seen"] <= contact["last_seen"]

    status, page = local_stack.admin_get(f"/v1/admin/contacts/{contact['id']}/events")
    assert status == 200
    kinds = [(e["type"], e.get("event") or e.get("name")) for e in page["events"]]
    assert kinds == [("identify", None), ("track", "Product Added"), ("track", "Product Viewed"), ("page", "Home")]
    assert all(e["messageId"] and e["timestamp"] for e in page["events"])
