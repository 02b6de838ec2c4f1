"""Clicks, opens, unsubscribes and the preference centre (services/interactions.py), on fakes,
with the stream processor applying the events they append."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.domain.messaging.consent import (
    DENIED,
    FEEDBACK,
    GRANTED,
    PREFERENCE_CENTRE,
    UNSUBSCRIBED,
    ConsentState,
    suppression_key,
)
from chalicelib.domain.messaging.links import CLICK, PREFERENCES, UNSUBSCRIBE, LinkTracker
from chalicelib.domain.messaging.messages import CLICKED, OPENED, SENT, Message, StatusChange
from chalicelib.services.catalog import Catalog
from chalicelib.services.effects import EffectsPublisher
from chalicelib.services.interactions import BadPreferences, Interactions, RequestFacts
from chalicelib.services.messagebus import MessageBus
from chalicelib.services.process_events import EventProcessor
from chalicelib.services.segmentation import ProfileRules
from tests.unit.fakes import FakeClock, FakeContactRepository, FakeEventStore, FakeMembershipStore, \
    FakeRecheckSchedule
from tests.unit.messaging_fakes import FakeMessageLog, FakeSuppressionStore

SECRET = b"s" * 32
SALT = b"salt-of-sixteen-bytes"
SENT_AT = datetime(2026, 11, 22, 11, 0, tzinfo=timezone.utc)
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0"
PERSON = RequestFacts(ip="203.0.113.9", user_agent=BROWSER)


class World:
    def __init__(self, topic: str | None = "newsletter"):
        self.clock = FakeClock()  # 12:00, an hour after the send
        self.messages = FakeMessageLog()
        self.suppressions = FakeSuppressionStore()
        self.events = FakeEventStore()
        self.contacts = FakeContactRepository()
        self.tracker = LinkTracker([SECRET], "https://mercurio.example/v1/m")
        self.service = Interactions(lambda: self.messages, lambda: self.suppressions, self.events, self.contacts,
                                    self.tracker, self.clock, SALT)
        contact = Contact(id="c1", identifiers=["email:ada@example.com"], created_at="2026-10-01T00:00:00.000Z")
        contact.consent = {"email": {"status": GRANTED, "at": "2026-10-01T00:00:00.000Z", "source": "admin_api"}}
        self.contacts.create(contact)
        self.contacts.claim("email:ada@example.com", "c1")
        self.message = Message(id="msg_1", contact_id="c1", channel="email", template="promo", lane="marketing",
                               topic=topic, cause="test", requested_at=SENT_AT, campaign="black-friday",
                               address="Ada@Example.com",
                               links=("https://shop.example/offer", "https://shop.example/coffee"),
                               timeline=(StatusChange(SENT, SENT_AT),), status=SENT)
        self.messages.create(self.message)
        self.expires = SENT_AT + timedelta(days=90)
        publisher = EffectsPublisher(FakeMembershipStore(), self.events, FakeRecheckSchedule(), MessageBus({}),
                                     lambda c, now: 0.0)
        self.processor = EventProcessor(self.contacts, self.clock, sleep=lambda s: None,
                                        rules=ProfileRules(lambda: Catalog.of()), publisher=publisher)
        self.applied = 0

    def token(self, kind, index=None, message_id="msg_1", expires=None):
        return self.tracker.token(kind, message_id, index, expires or self.expires)

    def process(self) -> Contact:
        """Run the stream processor over what was appended since the last call."""
        for stored in self.events.inserted[self.applied:]:
            self.processor.process(stored.body)
        self.applied = len(self.events.inserted)
        return self.contacts.get("c1")

    def contact_events(self, name):
        return [e.body for e in self.events.inserted if e.body.get("event") == name]


@pytest.fixture
def world():
    return World()


# -- clicks ------------------------------------------------------------------------------------

def test_a_click_redirects_to_the_destination_stored_at_send_time_and_is_recorded(world):
    result = world.service.click(world.token(CLICK, 1), PERSON)
    # The landing URL carries the click's id (`mcid`): the snippet puts it on every event of the
    # visit, and the six groups follow the visit by it.
    assert result.destination.startswith("https://shop.example/coffee?mcid=clk_")
    click_id = result.destination.split("mcid=")[1]
    assert world.messages.get("msg_1").status == CLICKED
    [event] = world.contact_events("Email Link Clicked")
    assert event["contactId"] == "c1"
    assert event["properties"] == {"message_id": "msg_1", "campaign": "black-friday", "campaign_id": "black-friday",
                                   "template": "promo", "template_id": "promo", "channel": "email",
                                   "link_index": 1, "link_id": "1", "click_id": click_id,
                                   "url": "https://shop.example/coffee", "suspected_bot": False, "bot_reason": None}
    contact = world.process()
    assert contact.counters["Email Link Clicked"]["total"] == 1


@pytest.mark.parametrize("token,reason", [
    ("garbage", "malformed token"),
    ("eyJ9.AAAA", "bad signature"),
])
def test_a_bad_click_token_gets_the_safe_page_and_records_nothing(world, token, reason):
    result = world.service.click(token, PERSON)
    assert result.destination is None and result.reason == reason
    assert world.events.inserted == [] and world.messages.get("msg_1").status == SENT


def test_a_tampered_unknown_or_expired_click_never_redirects(world):
    good = world.token(CLICK, 0)
    payload, signature = good.split(".")
    tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + signature
    assert world.service.click(tampered, PERSON).reason in ("bad signature", "malformed token")
    assert world.service.click(world.token(CLICK, 7), PERSON).reason == "unknown link"
    assert world.service.click(world.token(CLICK, 0, message_id="msg_gone"), PERSON).reason == "unknown message"
    expired = world.token(CLICK, 0, expires=world.clock.now() - timedelta(seconds=1))
    assert world.service.click(expired, PERSON) .destination is None
    assert world.events.inserted == []


def test_a_scanner_click_is_recorded_and_flagged(world):
    world.service.click(world.token(CLICK, 0), RequestFacts(ip="198.51.100.1", user_agent="Mimecast Safe Links"))
    [event] = world.contact_events("Email Link Clicked")
    assert event["properties"]["suspected_bot"] is True
    assert "scanner" in event["properties"]["bot_reason"]
    assert world.messages.get("msg_1").timeline[-1].detail["suspected_bot"] is True


def test_a_click_seconds_after_delivery_is_flagged(world):
    world.messages.advance("msg_1", StatusChange("delivered", world.clock.now()))
    world.clock.advance(seconds=1)
    world.service.click(world.token(CLICK, 0), PERSON)
    [event] = world.contact_events("Email Link Clicked")
    assert event["properties"]["suspected_bot"] is True and "after delivery" in event["properties"]["bot_reason"]


def test_a_click_whose_recording_fails_still_redirects(world, monkeypatch):
    def store_down(*args, **kwargs):
        raise ConnectionError("DynamoDB unavailable")

    monkeypatch.setattr(world.events, "append", store_down)
    result = world.service.click(world.token(CLICK, 0), PERSON)
    assert result.destination.startswith("https://shop.example/offer?mcid=clk_") and "unavailable" in result.not_recorded


# -- opens -------------------------------------------------------------------------------------

def test_an_open_is_recorded_and_an_apple_prefetch_is_flagged(world):
    token = world.tracker.open_pixel_url("msg_1", world.expires).rsplit("/", 1)[1]
    assert world.service.open(token, PERSON) is True
    world.clock.advance(minutes=1)
    assert world.service.open(token, RequestFacts(user_agent="Mozilla/5.0")) is True
    first, second = world.contact_events("Email Opened")
    assert first["properties"]["suspected_bot"] is False
    assert second["properties"]["suspected_bot"] is True and "Apple" in second["properties"]["bot_reason"]
    assert world.messages.get("msg_1").status == OPENED


def test_an_open_with_a_bad_token_records_nothing(world):
    assert world.service.open("nope.gif", PERSON) is False
    assert world.service.open(world.token(CLICK, 0) + ".gif", PERSON) is False  # a click token is no pixel
    assert world.events.inserted == []


# -- unsubscribe -------------------------------------------------------------------------------

def test_reading_the_unsubscribe_page_changes_nothing(world):
    page = world.service.unsubscribe_page(world.token(UNSUBSCRIBE))
    assert page.reason is None and page.scope == "email messages about newsletter"
    assert world.events.inserted == [] and world.suppressions.entries == {}


def test_one_click_unsubscribe_withdraws_the_topic_with_proof_at_once_and_once(world):
    token = world.token(UNSUBSCRIBE)
    result = world.service.unsubscribe(token, PERSON)
    assert result.done and result.changed == ("email/newsletter",)
    again = world.service.unsubscribe(token, PERSON)
    assert again.done and again.changed == ()
    assert len(world.contact_events("Consent Updated")) == 1
    contact = world.process()
    record = contact.consent["email/newsletter"]
    assert record["status"] == DENIED and record["source"] == FEEDBACK
    assert record["proof"] == {"shown": "one-click unsubscribe (List-Unsubscribe-Post)", "where": "message:msg_1",
                               "ip": "203.0.113.9", "user_agent": BROWSER}
    state = ConsentState.from_document(contact.consent)
    assert not state.effective("email", "newsletter").granted
    assert state.effective("email", "offers").granted  # only that list
    assert world.suppressions.entries == {}  # a topic unsubscribe is not a global one
    message = world.messages.get("msg_1")
    assert message.status == "unsubscribed"
    assert [c.status for c in message.timeline].count("unsubscribed") == 1


def test_unsubscribing_from_everything_denies_the_channel_and_suppresses_the_hashed_address(world):
    world.service.unsubscribe(world.token(UNSUBSCRIBE), PERSON, everything=True, one_click=False)
    contact = world.process()
    assert contact.consent["email"]["status"] == DENIED
    assert contact.consent["email"]["source"] == PREFERENCE_CENTRE
    [entry] = world.suppressions.entries.values()
    assert entry.reason == UNSUBSCRIBED
    assert entry.address_hash == suppression_key("email", "ada@example.com", SALT)
    assert "ada" not in repr(entry).lower()


def test_a_message_without_topic_unsubscribes_from_the_channel(world):
    w = World(topic=None)
    w.service.unsubscribe(w.token(UNSUBSCRIBE), PERSON)
    assert w.process().consent["email"]["status"] == DENIED
    assert len(w.suppressions.entries) == 1


def test_an_unsubscribe_link_does_not_open_the_preference_centre_or_the_reverse(world):
    assert world.service.unsubscribe(world.token(PREFERENCES), PERSON).reason == "wrong token kind"
    assert world.service.preferences(world.token(UNSUBSCRIBE)).reason == "wrong token kind"
    assert world.events.inserted == []


def test_a_forged_consent_event_from_the_write_key_cannot_set_a_topic_or_proof(world):
    event = {"type": "track", "event": "Consent Updated", "userId": "u9", "messageId": "m-forged",
             "timestamp": "2026-11-22T12:00:00.000Z", "receivedAt": "2026-11-22T12:00:00.000Z",
             "originalTimestamp": "2026-11-22T12:00:00.000Z", "context": {}, "source": "default",
             "properties": {"channel": "email", "topic": "newsletter", "status": "granted",
                            "proof": {"shown": "forged", "where": "x"}}}
    world.processor.process(event)
    forged = world.contacts.get(world.contacts.lookup(["user:u9"])["user:u9"])
    assert "email/newsletter" not in forged.consent and "proof" not in forged.consent["email"]


# -- preference centre -------------------------------------------------------------------------

def test_the_preference_centre_shows_current_choices(world):
    page = world.service.preferences(world.token(PREFERENCES))
    assert ("email", "All email messages", GRANTED) in page.choices
    assert ("email/newsletter", "email: newsletter", GRANTED) in page.choices
    assert ("sms", "All sms messages", None) in page.choices


def test_saving_preferences_records_only_what_changed(world):
    token = world.token(PREFERENCES)
    result = world.service.save_preferences(token, {"email": GRANTED, "email/newsletter": DENIED, "sms": GRANTED},
                                            PERSON)
    assert result.changed == ("email/newsletter", "sms")
    contact = world.process()
    assert contact.consent["email/newsletter"]["status"] == DENIED
    assert contact.consent["sms"] == {"status": GRANTED, "at": "2026-11-22T12:00:00.000Z",
                                      "source": PREFERENCE_CENTRE,
                                      "proof": {"shown": "preference centre: all marketing sms messages",
                                                "where": "message:msg_1", "ip": "203.0.113.9",
                                                "user_agent": BROWSER}}
    assert dict((k, s) for k, _, s in result.choices)["sms"] == GRANTED
    world.clock.advance(minutes=1)
    assert world.service.save_preferences(token, {"sms": GRANTED}, PERSON).changed == ()


@pytest.mark.parametrize("form,words", [
    ({}, "no choice"),
    ({"fax": GRANTED}, "not a channel"),
    ({"webhook": GRANTED}, "not a channel"),
    ({"email": "maybe"}, "granted or denied"),
    ({"email/a/b": DENIED}, "topic"),
])
def test_an_unreadable_preference_form_is_refused_with_a_reason(world, form, words):
    with pytest.raises(BadPreferences, match=words):
        world.service.save_preferences(world.token(PREFERENCES), form, PERSON)
    assert world.events.inserted == []


# -- conversions: a purchase on the visit of a click converts the message ----------------------

def test_a_purchase_on_the_clicks_visit_converts_the_message_once_with_its_revenue():
    from functools import partial

    from chalicelib.domain.contact_events import MessageConverted
    from chalicelib.domain.engagement import parse_campaign
    from chalicelib.services.handlers import record_conversion

    world = World()
    campaign = parse_campaign({"id": "black-friday", "name": "Black Friday", "attribution_window": "2 days"})
    bus = MessageBus({MessageConverted: [partial(record_conversion, messages=world.messages)]})
    world.processor = EventProcessor(
        world.contacts, world.clock, sleep=lambda s: None,
        rules=ProfileRules(lambda: Catalog.of(campaigns={"black-friday": campaign})),
        publisher=EffectsPublisher(FakeMembershipStore(), world.events, FakeRecheckSchedule(), bus,
                                   lambda c, now: 0.0))
    landing = world.service.click(world.token(CLICK, 1), PERSON).destination
    click_id = landing.split("mcid=")[1]
    world.process()

    def visit(event: str, properties: dict, message_id: str) -> None:
        world.processor.process({
            "type": "track", "event": event, "properties": properties, "messageId": message_id,
            "userId": None, "anonymousId": None, "context": {"clickId": click_id, "traits": {}},
            "timestamp": "2026-11-22T12:05:00.000Z", "receivedAt": "2026-11-22T12:05:00.000Z",
            "originalTimestamp": "2026-11-22T12:05:00.000Z", "identifiers": ["email:ada@example.com"],
            "sourceIdentifier": "email:ada@example.com"})

    visit("Order Completed", {"order_id": "o-17", "revenue": 42.5, "currency": "EUR"}, "order-1")
    message = world.messages.get("msg_1")
    assert message.status == "converted"
    assert message.timeline[-1].detail == {"revenue": 42.5, "order_id": "o-17", "click_id": click_id}
    visit("Order Completed", {"order_id": "o-18", "revenue": 10}, "order-2")  # a second order: still one
    assert [c.status for c in world.messages.get("msg_1").timeline].count("converted") == 1
