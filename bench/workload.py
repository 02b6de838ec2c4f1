"""Realistic traffic: events shaped like the ones analytics.js sends from a shop's pages.

Each event carries the context a browser sends (library, page, user agent, client hints,
locale, timezone, campaign): about 600 bytes of JSON, which is what makes an event's size.
Everything is seeded, so two runs send the same bytes.
"""
from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone

from chalicelib.domain.contact import Contact, apply_event
from chalicelib.domain.events import iso

PRODUCTS = [
    ("espresso-machine-pro", "Espresso Machine Pro", "Machines", 649.0),
    ("burr-grinder-64", "Burr Grinder 64", "Grinders", 289.0),
    ("milk-jug-600", "Milk Jug 600 ml", "Accessories", 24.9),
    ("single-origin-ethiopia", "Single Origin Ethiopia 1 kg", "Coffee", 32.5),
    ("tamper-58", "Tamper 58 mm", "Accessories", 39.0),
    ("descaler-pack", "Descaler, pack of 3", "Care", 14.9),
]
TRACK_EVENTS = ("Product Viewed", "Product Added", "Product List Viewed", "Cart Viewed",
                "Checkout Started", "Order Completed", "Products Searched", "Promotion Clicked")
TRACK_WEIGHTS = (40, 12, 20, 8, 5, 3, 8, 4)
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
]
LOCALES = [("fr-FR", "Europe/Paris"), ("en-GB", "Europe/London"), ("de-DE", "Europe/Berlin"),
           ("en-US", "America/New_York")]
SITE = "https://shop.example.com"


class Workload:
    def __init__(self, seed: int = 7):
        self.rng = random.Random(seed)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def message_id(self) -> str:
        return "ajs-next-" + uuid.UUID(int=self.rng.getrandbits(128), version=4).hex

    # -- pieces ------------------------------------------------------------------------

    def context(self, product: tuple | None = None) -> dict:
        """About 600 bytes once serialised, like analytics.js' context on a product page."""
        ua = self.rng.choice(USER_AGENTS)
        mobile = "Mobile" in ua
        locale, tz = self.rng.choice(LOCALES)
        slug = product[0] if product else "collections/coffee"
        path = f"/products/{slug}" if product else f"/{slug}"
        context = {
            "library": {"name": "analytics.js", "version": "npm:next-1.72.0"},
            "page": {"path": path, "referrer": "https://www.google.com/", "search": "",
                     "title": (product[1] if product else "Coffee") + " | Example Coffee Shop",
                     "url": SITE + path},
            "userAgent": ua,
            "userAgentData": {"brands": [{"brand": "Chromium", "version": "124"},
                                         {"brand": "Not-A.Brand", "version": "99"}],
                              "mobile": mobile, "platform": "Android" if mobile else "Windows"},
            "locale": locale,
            "timezone": tz,
        }
        if self.rng.random() < 0.3:
            context["campaign"] = {"name": "spring-sale", "source": "newsletter", "medium": "email"}
        return context

    def _stamps(self, when: datetime | None) -> dict:
        when = when or datetime.now(timezone.utc)
        return {"timestamp": iso(when), "sentAt": iso(when + timedelta(milliseconds=self.rng.randint(5, 400)))}

    # -- events ------------------------------------------------------------------------

    def properties(self, name: str, product: tuple) -> dict:
        """Segment's e-commerce spec, as a shop sends it for each event."""
        pid, title, category, price = product
        if name in ("Product Viewed", "Product Added"):
            props = {"product_id": pid, "name": title, "category": category, "price": price, "currency": "EUR"}
            if name == "Product Added":
                props["quantity"] = self.rng.randint(1, 3)
            return props
        if name == "Product List Viewed":
            return {"list_id": category.lower(), "category": category}
        if name == "Cart Viewed":
            return {"cart_id": self.uuid()[:13]}
        if name == "Products Searched":
            return {"query": self.rng.choice(["grinder", "espresso beans", "milk jug", "descaler"])}
        if name == "Promotion Clicked":
            return {"promotion_id": "spring-sale", "creative": "banner-top"}
        order = {"order_id": f"o-{self.rng.randint(10**6, 10**7)}", "value": price, "revenue": price,
                 "currency": "EUR"}
        if name == "Order Completed":
            order["products"] = [{"product_id": pid, "price": price, "quantity": 1}]
        return order

    def track(self, anonymous_id: str, user_id: str | None = None, when: datetime | None = None,
              name: str | None = None) -> dict:
        product = self.rng.choice(PRODUCTS)
        name = name or self.rng.choices(TRACK_EVENTS, TRACK_WEIGHTS)[0]
        event = {
            "type": "track", "event": name, "messageId": self.message_id(), "anonymousId": anonymous_id,
            "properties": self.properties(name, product), "context": self.context(product),
            **self._stamps(when),
        }
        if user_id:
            event["userId"] = user_id
        return event

    def page(self, anonymous_id: str, user_id: str | None = None, when: datetime | None = None) -> dict:
        product = self.rng.choice(PRODUCTS)
        context = self.context(product)
        event = {
            "type": "page", "name": product[1], "messageId": self.message_id(), "anonymousId": anonymous_id,
            "properties": dict(context["page"]), "context": context, **self._stamps(when),
        }
        if user_id:
            event["userId"] = user_id
        return event

    def identify(self, user_id: str, anonymous_id: str, email: str, when: datetime | None = None) -> dict:
        first = self.rng.choice(["Camille", "Louis", "Emma", "Noah", "Lea", "Hugo"])
        return {
            "type": "identify", "messageId": self.message_id(), "userId": user_id, "anonymousId": anonymous_id,
            "traits": {"email": email, "firstName": first, "lastName": "Martin", "plan": "member",
                       "newsletter": True},
            "context": self.context(), **self._stamps(when),
        }

    def browsing(self, anonymous_id: str, user_id: str | None = None) -> dict:
        """One analytics.js call: mostly product tracking, some page views."""
        if self.rng.random() < 0.25:
            return self.page(anonymous_id, user_id)
        return self.track(anonymous_id, user_id)

    @staticmethod
    def batch_body(events: list[dict]) -> bytes:
        """analytics.js' batch: the events plus sentAt (the write key goes in Basic auth)."""
        sent = max(e.get("sentAt", "") for e in events)
        return json.dumps({"batch": events, "sentAt": sent}, separators=(",", ":")).encode("utf-8")

    # -- history for seeded contacts ---------------------------------------------------

    def history(self, contact: Contact, anonymous_id: str, user_id: str | None, events: int,
                days: int, now: datetime) -> None:
        """Fold `events` past events over `days` days into a contact, the way processing would."""
        stamps = sorted(now - timedelta(seconds=self.rng.randint(3600, days * 86400)) for _ in range(events))
        for when in stamps:
            raw = self.browsing(anonymous_id, user_id) if self.rng.random() < 0.9 else self.page(anonymous_id, user_id)
            raw.update({"timestamp": iso(when), "receivedAt": iso(when)})
            raw.pop("sentAt", None)
            if raw["type"] == "page":
                raw.setdefault("name", "Page")
            apply_event(contact, raw)
