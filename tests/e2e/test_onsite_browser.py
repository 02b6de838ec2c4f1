"""Scenario 8 in real headless Chromium on the local stack: a visitor of the demo shop who
views coffee products enters coffee-lovers, and the home page's hero slot then shows the
coffee banner; a visitor who only looks at machines keeps the default."""
from __future__ import annotations

import pytest

from tests.e2e.test_snippet_browser import PROCESSING_TIMEOUT, Admin, Tab

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture
def tabs(browser, local_stack):
    opened = []

    def make() -> Tab:
        tab = Tab(browser, local_stack, consent_given=True)
        opened.append(tab)
        return tab

    yield make
    for tab in opened:
        tab.close()
    errors = [e for tab in opened for e in tab.errors]
    assert not errors, "the pages reported errors:\n" + "\n".join(errors)


def hero_variant(tab: Tab) -> str:
    tab.open("/index.html")
    tab.page.wait_for_selector("#hero[data-mercurio-variant]")
    return tab.page.get_attribute("#hero", "data-mercurio-variant")


def test_scenario_8_a_visitor_who_views_coffee_sees_the_coffee_banner(tabs, local_stack):
    admin = Admin(local_stack)
    tab = tabs()
    assert hero_variant(tab) == "hero"
    assert "Small-batch coffee" in tab.page.inner_text("#hero")
    anonymous_id = tab.page.evaluate("mercurio.anonymousId()")

    for path in ("/product-roma.html", "/product-ethiopia.html", "/product-colombia.html"):
        tab.open(path)
    contact, events = admin.wait_for(f"anon:{anonymous_id}", lambda c, e: "coffee-lovers" in c["segments"],
                                     "in coffee-lovers after three coffee products", PROCESSING_TIMEOUT)
    viewed = [e for e in events if e.get("event") == "Product Viewed"]
    assert {e["properties"]["category"] for e in viewed} == {"coffee"}
    assert {e["properties"]["product_id"] for e in viewed} == {"coffee-roma", "coffee-ethiopia", "coffee-colombia"}

    assert hero_variant(tab) == "hero-coffee"
    assert "your next roast is ready" in tab.page.inner_text("#hero")
    tab.page.click("#hero a")
    tab.page.wait_for_url("**/product-roma.html")


def test_a_visitor_who_views_machines_keeps_the_default_hero(tabs, local_stack):
    admin = Admin(local_stack)
    tab = tabs()
    tab.open("/product-espresso.html")
    tab.open("/product-grinder.html")
    anonymous_id = tab.page.evaluate("mercurio.anonymousId()")
    contact, events = admin.wait_for(f"anon:{anonymous_id}",
                                     lambda c, e: sum(x.get("event") == "Product Viewed" for x in e) == 2,
                                     "two product views", PROCESSING_TIMEOUT)
    assert "coffee-lovers" not in contact["segments"]
    assert hero_variant(tab) == "hero"
