"""Trigger definitions: how they are read (with precise problems), and how a triggering event
becomes one message request through the outbox and the message bus, never a send."""
from __future__ import annotations

import pytest

from chalicelib.domain.contact_events import MessageTriggered, SegmentEntered, from_internal_event
from chalicelib.domain.contact_events import ContactSnapshot
from chalicelib.domain.definition_errors import DefinitionError, load_yaml
from chalicelib.domain.definition_kinds import REGISTRY
from chalicelib.domain.definition_kinds.trigger import parse_trigger
from chalicelib.services.handlers import EVENT_HANDLERS, request_triggered_messages

# A welcome email at newsletter signup, as a trigger (the shipped welcome series is a journey:
# chalicelib/definitions/journeys/welcome-series.yaml).
WELCOME = """
id: welcome-email
name: Welcome email at newsletter signup
when:
  event: Consent Updated
  where:
    - properties.channel == "email"
    - properties.status == "granted"
send:
  template: welcome
  channel: email
once: true
"""


def consent_event(channel="email", status="granted", message_id="m-1") -> dict:
    return {"type": "track", "event": "Consent Updated", "messageId": message_id,
            "properties": {"channel": channel, "status": status, "source": "newsletter signup"}}


def test_a_welcome_trigger_hears_the_demo_shops_newsletter_consent():
    trigger = parse_trigger(load_yaml(WELCOME))
    assert (trigger.template, trigger.channel, trigger.once) == ("welcome", "email", True)
    assert trigger.hears_event("Consent Updated", consent_event())
    assert not trigger.hears_event("Consent Updated", consent_event(status="denied"))
    assert not trigger.hears_event("Consent Updated", consent_event(channel="sms"))
    assert trigger.cause("m-1") == trigger.cause("m-2") == "trigger:welcome-email"  # once per contact


def test_a_trigger_is_a_registered_kind_of_definition():
    assert REGISTRY.get("triggers") is REGISTRY.get("trigger")
    reading = REGISTRY.get("trigger").read({"id": "x", "when": {"segment_entered": "vip"},
                                             "send": {"template": "vip-welcome"}})
    assert reading.ok and [r.name for r in reading.references] == ["vip"]
    assert reading.value.cause("evt-9") == "trigger:x:evt-9" and reading.value.channel == "email"


@pytest.mark.parametrize("document, problem", [
    ({"id": "x", True: {"event": "A"}, "send": {"template": "w"}}, "on: write `when:` instead"),
    ({"id": "x", "when": {}, "send": {"template": "w"}}, "when: name either an event or a segment_entered"),
    ({"id": "x", "when": {"event": "A", "segment_entered": "s"}, "send": {"template": "w"}}, "not both"),
    ({"id": "x", "when": {"event": "A", "where": ["revenue >> 3"]}, "send": {"template": "w"}}, "when.where[0]"),
    ({"id": "x", "when": {"event": "A"}, "send": {"template": "w", "channel": "fax"}}, 'send.channel: "fax"'),
    ({"id": "x", "when": {"event": "A"}, "send": {"template": "Welcome Mail"}}, "send.template"),
    ({"id": "x", "when": {"event": "A"}, "send": {"template": "w"}, "once": "yes"}, "once: true or false"),
    ({"id": "x", "when": {"event": "A"}, "sned": {"template": "w"}}, 'sned: unknown field (did you mean "send"?)'),
])
def test_a_bad_trigger_is_refused_with_the_reason(document, problem):
    with pytest.raises(DefinitionError) as caught:
        parse_trigger(document)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_a_message_triggered_event_requests_its_message_and_a_segment_entry_requests_its_triggers():
    contact = ContactSnapshot(id="c1")
    internal = {"event": "Message Triggered", "messageId": "mercurio-abc", "timestamp": "2026-11-22T12:00:00.000Z",
                "properties": {"trigger_id": "welcome-email", "template": "welcome", "channel": "email",
                               "message_cause": "trigger:welcome-email", "data": {"source": "newsletter signup"}}}
    typed = from_internal_event(internal, contact)
    assert isinstance(typed, MessageTriggered)
    assert request_triggered_messages in EVENT_HANDLERS[MessageTriggered]
    asked = []
    request = lambda *args, **kwargs: asked.append((args, kwargs))  # noqa: E731
    assert request_triggered_messages(typed, triggers=lambda: [], request=request) == 1
    assert asked == [(("c1", "welcome", "email", "trigger:welcome-email"),
                      {"campaign": None, "data": {"source": "newsletter signup"}})]
    vip = parse_trigger({"id": "vip-hello", "when": {"segment_entered": "vip"}, "send": {"template": "vip"}})
    entered = SegmentEntered(cause="mercurio-def", at="2026-11-22T12:00:00.000Z", contact=contact, segment_id="vip")
    asked.clear()
    assert request_triggered_messages(entered, triggers=lambda: [vip], request=request) == 1
    assert asked[0][0] == ("c1", "vip", "email", "trigger:vip-hello:mercurio-def")
    other = SegmentEntered(cause="mercurio-x", at="2026-11-22T12:00:00.000Z", contact=contact, segment_id="other")
    assert request_triggered_messages(other, triggers=lambda: [vip], request=request) == 0


def test_the_profile_rules_record_a_message_triggered_on_the_outbox_for_a_matching_event():
    from datetime import datetime, timezone

    from chalicelib.domain.contact import Contact
    from chalicelib.services.catalog import Catalog
    from chalicelib.services.segmentation import ProfileRules

    trigger = parse_trigger(load_yaml(WELCOME))
    rules = ProfileRules(lambda: Catalog.of(triggers={"welcome-email": trigger}))
    now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    contact = Contact(id="c1", created_at="2026-11-22T11:00:00.000Z", traits={"email": "ada@example.com"})
    event = {**consent_event(), "timestamp": "2026-11-22T12:00:00.000Z", "receivedAt": "2026-11-22T12:00:00.000Z"}
    rules.on_event(contact, event, now)
    emitted = [e["event"] for e in contact.outbox if e["kind"] == "event"]
    [triggered] = [e for e in emitted if e["event"] == "Message Triggered"]
    assert triggered["properties"]["message_cause"] == "trigger:welcome-email"
    assert triggered["properties"]["template"] == "welcome" and triggered["contactId"] == "c1"
    assert contact.consent["email"]["status"] == "granted"
    denied = Contact(id="c2", created_at="2026-11-22T11:00:00.000Z")
    rules.on_event(denied, {**event, "properties": {"channel": "email", "status": "denied"}}, now)
    assert not [e for e in denied.outbox if e["kind"] == "event" and e["event"]["event"] == "Message Triggered"]
