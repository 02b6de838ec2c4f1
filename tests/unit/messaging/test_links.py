"""Tracked links: only destinations stored at send time, signed tokens, safe pages, bot flags."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.messaging import links
from chalicelib.domain.messaging.links import (
    InteractionFacts,
    LinkTracker,
    UnsafeLink,
    classify_interaction,
    href_action,
    unsafe_links,
)

SECRET = b"k" * 32
BASE = "https://t.shop.example"
SENT = datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc)
EXPIRES = SENT + timedelta(days=365)
HTML = """<html><body>
<p><a href="https://shop.example/coffee?a=1&amp;b=2">Coffee</a></p>
<p><a class="x" href='http://shop.example/plain'>Plain</a> <A HREF=https://shop.example/bare>Bare</A></p>
<p><a href="mailto:hi@shop.example">Write</a> <a href="tel:+390612345">Call</a> <a href="#top">Top</a>
<a href="/relative">Rel</a> <a name="anchor">no href</a></p>
<p><a href="https://t.shop.example/u/abc">Unsubscribe</a></p>
</body></html>"""


@pytest.fixture
def tracker():
    return LinkTracker([SECRET], BASE)


def clicked(tracker, html):
    """The click tokens of the rewritten HTML, in order."""
    return [part.split('"')[0] for part in html.split(f"{BASE}/c/")[1:]]


def forge(token: str, change) -> str:
    """A token whose payload was edited but whose signature was kept."""
    encoded, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    change(payload)
    edited = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{edited}.{signature}"


def test_every_http_link_goes_through_the_redirect_and_its_destination_is_kept(tracker):
    out = tracker.rewrite(HTML, "msg-1", EXPIRES, keep=["https://t.shop.example/u/abc"])
    assert out.links == ("https://shop.example/coffee?a=1&b=2", "http://shop.example/plain",
                         "https://shop.example/bare")
    assert len(clicked(tracker, out.html)) == 3
    for untouched in ('href="mailto:hi@shop.example"', 'href="tel:+390612345"', 'href="#top"', 'href="/relative"',
                      '<a name="anchor">', 'href="https://t.shop.example/u/abc"', 'class="x"'):
        assert untouched in out.html
    assert "shop.example/coffee" not in out.html and "shop.example/bare" not in out.html


def test_a_click_resolves_to_the_stored_destination_only(tracker):
    out = tracker.rewrite(HTML, "msg-1", EXPIRES)
    stored = {"msg-1": list(out.links)}
    tokens = clicked(tracker, out.html)
    for index, token in enumerate(tokens):
        outcome = tracker.resolve(token, stored.get, SENT + timedelta(hours=1))
        assert (outcome.destination, outcome.message_id, outcome.link_index, outcome.reason) == \
            (out.links[index], "msg-1", index, None)
        assert not outcome.safe_page


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda p: p.__setitem__(1, "msg-2"), "bad signature"),  # another message's links
    (lambda p: p.__setitem__(2, 1), "bad signature"),  # another link of the same message
    (lambda p: p.__setitem__(3, p[3] + 10 ** 8), "bad signature"),  # a longer life
    (lambda p: p.__setitem__(0, "o"), "bad signature"),
])
def test_a_tampered_token_lands_on_the_safe_page(tracker, edit, reason):
    out = tracker.rewrite(HTML, "msg-1", EXPIRES)
    looked_up = []
    outcome = tracker.resolve(forge(clicked(tracker, out.html)[0], edit),
                              lambda mid: looked_up.append(mid) or list(out.links), SENT)
    assert outcome.safe_page and outcome.reason == reason and outcome.destination is None
    assert looked_up == []  # nothing stored is read for an unauthenticated token


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.???", "x" * 5000, None, 42, "e30.", ".e30"])
def test_a_malformed_token_lands_on_the_safe_page(tracker, token):
    outcome = tracker.resolve(token, lambda mid: ["https://shop.example"], SENT)
    assert outcome.safe_page and outcome.reason in ("malformed token", "bad signature")


def test_a_flipped_signature_character_is_refused(tracker):
    token = tracker.token("c", "msg-1", 0, EXPIRES)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert tracker.resolve(flipped, lambda mid: ["https://shop.example"], SENT).reason == "bad signature"


def test_signatures_are_compared_in_constant_time(tracker, monkeypatch):
    calls = []
    real = links.hmac.compare_digest
    monkeypatch.setattr(links.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    token = tracker.token("c", "msg-1", 0, EXPIRES)
    assert tracker.resolve(token, lambda mid: ["https://shop.example"], SENT).destination == "https://shop.example"
    assert calls == [1]


def test_expired_unknown_and_unsafe_destinations_land_on_the_safe_page(tracker):
    token = tracker.token("c", "msg-1", 2, SENT + timedelta(days=30))
    stored = {"msg-1": ["https://a.example", "https://b.example", "https://c.example"]}
    assert tracker.resolve(token, stored.get, SENT + timedelta(days=29)).destination == "https://c.example"
    expired = tracker.resolve(token, stored.get, SENT + timedelta(days=30))
    assert (expired.reason, expired.message_id, expired.destination) == ("expired", "msg-1", None)
    assert tracker.resolve(token, {}.get, SENT).reason == "unknown message"
    assert tracker.resolve(token, {"msg-1": ["https://a.example"]}.get, SENT).reason == "unknown link"
    assert tracker.resolve(tracker.token("c", "msg-1", -1, EXPIRES), stored.get, SENT).reason == "unknown link"
    for stored_badly in ("javascript:alert(1)", "data:text/html,x", "//evil.example", None):
        outcome = tracker.resolve(tracker.token("c", "m", 0, EXPIRES), {"m": [stored_badly]}.get, SENT)
        assert outcome.reason == "unsafe destination" and outcome.destination is None


def test_tokens_of_another_key_or_purpose_are_refused_and_keys_rotate(tracker):
    other = LinkTracker([b"o" * 32], BASE)
    stored = {"msg-1": ["https://a.example"]}
    assert tracker.resolve(other.token("c", "msg-1", 0, EXPIRES), stored.get, SENT).reason == "bad signature"
    assert tracker.resolve(tracker.token("o", "msg-1", None, EXPIRES), stored.get, SENT).reason == "wrong token kind"
    rotated = LinkTracker([b"n" * 32, SECRET], BASE)  # new key first, old key still accepted
    assert rotated.resolve(tracker.token("c", "msg-1", 0, EXPIRES), stored.get, SENT).destination == "https://a.example"
    assert tracker.resolve(rotated.token("c", "msg-1", 0, EXPIRES), stored.get, SENT).reason == "bad signature"


@pytest.mark.parametrize("href", ["javascript:alert(1)", " JavaScript:alert(1)", "java\tscript:alert(1)",
                                  "java&#x09;script:alert(1)", "&#106;avascript:alert(1)",
                                  "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox(1)", "file:///etc/passwd"])
def test_script_and_data_links_are_refused_at_send_time(tracker, href):
    html = f'<p><a href="https://ok.example">ok</a><a href="{href}">bad</a></p>'
    assert unsafe_links(html) == [href]
    with pytest.raises(UnsafeLink) as caught:
        tracker.rewrite(html, "msg-1", EXPIRES)
    assert caught.value.hrefs == [href]


def test_links_cannot_hide_behind_quoted_brackets_or_look_alike_attributes(tracker):
    hidden = '<a title="a > b" href="javascript:alert(1)">x</a>'
    assert unsafe_links(hidden) == ["javascript:alert(1)"]
    decoy = '<a data-href="https://decoy.example" title=\'>\' href="https://real.example/x">x</a>'
    out = tracker.rewrite(decoy, "msg-1", EXPIRES)
    assert out.links == ("https://real.example/x",)
    assert 'data-href="https://decoy.example"' in out.html and "real.example" not in out.html


def test_href_actions():
    assert [href_action(h) for h in ("https://a", "HTTP://a", "mailto:x@y", "tel:1", "#a", "/p", "", "ftp://a")] == \
        ["track", "track", "keep", "keep", "keep", "keep", "keep", "refuse"]


def test_the_open_pixel_goes_before_the_closing_body_and_names_its_message(tracker):
    html = tracker.add_open_pixel("<html><body><p>x</p></body></html>", "msg-7", EXPIRES)
    assert html.endswith('style="display:block;width:1px;height:1px;border:0"></body></html>')
    src = html.split('<img src="')[1].split('"')[0]
    assert src.startswith(f"{BASE}/o/") and src.endswith(".gif")
    token = src[len(f"{BASE}/o/"):]
    assert tracker.read_open(token, SENT).message_id == "msg-7" and tracker.read_open(token, SENT).valid
    assert tracker.read_open(token[:-4], SENT).message_id == "msg-7"
    assert tracker.read_open("x" + token, SENT).reason in ("bad signature", "malformed token")
    assert tracker.read_open(tracker.token("c", "msg-7", 0, EXPIRES), SENT).reason == "wrong token kind"
    assert tracker.add_open_pixel("<p>fragment</p>", "m", EXPIRES).startswith("<p>fragment</p><img ")


def test_track_rewrites_and_adds_the_pixel(tracker):
    out = tracker.track(HTML, "msg-1", EXPIRES, keep=["https://t.shop.example/u/abc"])
    assert len(out.links) == 3 and out.html.count(f"{BASE}/o/") == 1 and out.html.count(f"{BASE}/c/") == 3


def test_the_tracker_needs_a_real_secret_and_an_http_base():
    with pytest.raises(ValueError):
        LinkTracker([b"short"], BASE)
    with pytest.raises(ValueError):
        LinkTracker([], BASE)
    with pytest.raises(ValueError):
        LinkTracker([SECRET], "javascript:alert(1)")


# ---------------------------------------------------------------- suspected bots

HUMAN = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/18.1 Mobile/15E148 Safari/604.1")


def test_a_person_reading_and_clicking_is_trusted():
    open_ = InteractionFacts("open", SENT + timedelta(minutes=5), HUMAN, delivered_at=SENT)
    click = InteractionFacts("click", SENT + timedelta(minutes=6), HUMAN, delivered_at=SENT, link_index=1,
                             earlier_clicks=[(SENT + timedelta(minutes=2), 0)], link_count=3)
    assert classify_interaction(open_).suspected_bot is False
    assert classify_interaction(click) == links.InteractionVerdict(False, ())


@pytest.mark.parametrize(("facts", "reason"), [
    (InteractionFacts("click", SENT + timedelta(minutes=1), "Mozilla/5.0 (compatible; BingPreview/1.0b)"),
     "user agent looks like a scanner"),
    (InteractionFacts("click", SENT + timedelta(minutes=1), "python-requests/2.32.3"), "user agent looks like a scanner"),
    (InteractionFacts("open", SENT + timedelta(minutes=1), "Barracuda Sentinel (EE)"), "user agent looks like a scanner"),
    (InteractionFacts("click", SENT + timedelta(minutes=1), ""), "no user agent"),
    (InteractionFacts("click", SENT + timedelta(minutes=1), HUMAN, method="HEAD"), "HEAD request"),
    (InteractionFacts("open", SENT + timedelta(seconds=3), "Mozilla/5.0"), "Apple Mail Privacy Protection"),
    (InteractionFacts("open", SENT + timedelta(hours=3), HUMAN, from_apple_proxy=True), "Apple Mail Privacy Protection"),
    (InteractionFacts("click", SENT + timedelta(seconds=1), HUMAN, delivered_at=SENT), "clicked 1.0 s after delivery"),
    (InteractionFacts("click", SENT + timedelta(minutes=1, seconds=2), HUMAN, delivered_at=SENT, link_index=2,
                      earlier_clicks=[(SENT + timedelta(minutes=1), 0), (SENT + timedelta(minutes=1, seconds=1), 1)],
                      link_count=9), "3 links clicked within 5 s"),
    (InteractionFacts("click", SENT + timedelta(minutes=1, seconds=1), HUMAN, delivered_at=SENT, link_index=1,
                      earlier_clicks=[(SENT + timedelta(minutes=1), 0)], link_count=2), "2 links clicked within 5 s"),
])
def test_automated_looking_requests_are_flagged_with_a_reason(facts, reason):
    verdict = classify_interaction(facts)
    assert verdict.suspected_bot and any(reason in r for r in verdict.reasons), verdict.reasons


def test_clicks_far_apart_are_not_a_burst():
    facts = InteractionFacts("click", SENT + timedelta(minutes=30), HUMAN, delivered_at=SENT, link_index=2,
                             earlier_clicks=[(SENT + timedelta(minutes=1), 0), (SENT + timedelta(minutes=10), 1)],
                             link_count=3)
    assert not classify_interaction(facts).suspected_bot


def test_page_links_read_back_only_as_their_own_kind(tracker):
    t = tracker
    unsubscribe = t.page_url(links.UNSUBSCRIBE, "msg_1", EXPIRES)
    assert unsubscribe.startswith(f"{BASE}/u/")
    token = unsubscribe.rsplit("/", 1)[1]
    assert t.read_page(token, links.UNSUBSCRIBE, SENT).message_id == "msg_1"
    # An unsubscribe token is not a preference-centre token, nor a click token.
    assert t.read_page(token, links.PREFERENCES, SENT).reason == "wrong token kind"
    assert t.resolve(token, lambda _: ["https://shop.example"], SENT).safe_page
    assert t.read_page(token, links.UNSUBSCRIBE, EXPIRES).reason == "expired"
    assert t.read_page(token[:-2] + "xx", links.UNSUBSCRIBE, SENT).reason == "bad signature"
    with pytest.raises(ValueError):
        t.page_url("c", "msg_1", EXPIRES)
