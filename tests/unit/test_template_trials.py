"""Previews for a real contact and test sends (services/template_trials.py) over the real
MessagingService with in-memory ports; and the push endpoint cleanup of the sender."""
from __future__ import annotations

import email
import email.policy
from datetime import timedelta

import pytest

from chalicelib.domain.messaging.consent import BOUNCED_HARD, COMPLAINED, suppress
from chalicelib.domain.messaging.links import LinkTracker
from chalicelib.services.channel_ports import REJECTED, ChannelResult
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.template_trials import TemplateTrials
from chalicelib.services.templates import TemplateAuthoring
from tests.unit.messaging_fakes import FakeTemplateStore
from tests.unit.test_messaging_service import NOON, SALT, SECRET, TEMPLATES, World, contact
from tests.unit.fakes import FakeDefinitionStore

TRIAL_TEMPLATES = {
    **TEMPLATES,
    "hello.html.j2": "---\nsubject: 'Hello {{ traits.first_name }} ({{ contact.locale }}, {{ data.code }})'\n"
                     "kind: marketing\ntopic: news\nfrom: Bean There <hello@shop.example>\nsample_data:\n  code: SAMPLE\n"
                     "---\n<html><body><p>{{ contact.segments | join(',') }} {{ now | date('long') }}</p>"
                     "<a href=\"{{ links.unsubscribe }}\">Unsubscribe</a></body></html>",
}


class Trials(World):
    def __init__(self):
        super().__init__()
        from chalicelib.domain.messaging.templates import TemplateEngine
        from chalicelib.services.template_store import TemplateLibrary

        self.service.templates = TemplateLibrary(FakeTemplateStore(TRIAL_TEMPLATES), TemplateEngine(), max_age=0)
        authoring = TemplateAuthoring(self.service.templates.store, self.service.templates, FakeDefinitionStore(),
                                      self.clock.now)
        ids = iter(f"t{n}" for n in range(1, 100))
        self.trials = TemplateTrials(authoring, self.service, self.contacts, self.clock,
                                     tracker=lambda: LinkTracker([SECRET], "https://t.shop.example"),
                                     new_id=lambda: next(ids))


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


@pytest.fixture
def w():
    trials = Trials()
    c = contact(first_name="Giulia", locale="it-IT")
    c.segments = {"coffee-lovers": {"since": "2026-11-01T00:00:00.000Z"}}
    trials.add(c)
    return trials


def test_a_preview_for_a_contact_sees_what_its_send_sees(w):
    preview = w.trials.preview_for_contact("hello.html.j2", "c1")
    assert preview.subject == "Hello Giulia (it-IT, SAMPLE)"
    m = w.service.request("c1", "hello", "email", "evt-1", data={"code": "SAMPLE"})
    assert w.service.send(m.id).status == "sent"
    assert w.log.get(m.id).subject == preview.subject  # one variables builder for both
    with pytest.raises(NotFound):
        w.trials.preview_for_contact("hello.html.j2", "nobody")


def test_a_test_send_goes_to_the_given_address_only_marked_as_a_test(w):
    w.contacts.contacts["c1"]["contact"].consent = {}  # no consent: a test is nobody's marketing
    answer = w.trials.test_send("hello.html.j2", "Tester@Example.com", contact_id="c1")
    assert answer["to"] == "tester@example.com" and answer["test"] is True
    outcome = w.service.send(answer["message_id"])
    assert outcome.status == "sent"
    [sent] = w.email.sent
    assert sent["to"] == "tester@example.com"
    assert parsed(sent["raw"])["Subject"] == "[Test] Hello Giulia (it-IT, SAMPLE)"
    assert w.service.messages_of("c1")["messages"] == []  # not on the contact's history (nor its cap)
    again = w.trials.test_send("hello.html.j2", "tester@example.com", sample="it-CH, Zurich")
    assert again["message_id"] != answer["message_id"]  # every test is a new message
    w.service.send(again["message_id"])
    assert parsed(w.email.sent[1]["raw"])["Subject"] == "[Test] Hello Giulia (it-CH, SAMPLE)"


@pytest.mark.parametrize("reason", [BOUNCED_HARD, COMPLAINED])
def test_a_suppressed_test_address_is_skipped(w, reason):
    w.suppressions.add(suppress("email", "tester@example.com", reason, NOON, SALT))
    answer = w.trials.test_send("hello.html.j2", "tester@example.com")
    outcome = w.service.send(answer["message_id"])
    assert outcome.status == "skipped" and outcome.code == "suppressed" and w.email.sent == []


def test_a_test_sms_goes_to_the_given_phone(w):
    answer = w.trials.test_send("offer.sms.j2", "+39 333 765 4321", contact_id="c1")
    assert w.service.send(answer["message_id"]).status == "sent"
    assert w.sms.sent[0][0] == "+393337654321"


@pytest.mark.parametrize("kwargs,words", [
    ({"to": "nope"}, "to:"),
    ({"to": None}, "to is the address"),
    ({"to": "a@example.com", "sample": "nobody"}, "no sample called"),
    ({"to": "a@example.com", "sample": 3}, "sample is the name"),
    ({"to": "a@example.com", "contact_id": 3}, "contact_id"),
    ({"to": "a@example.com", "contact_id": "c1", "sample": "it-CH, Zurich"}, "not both"),
])
def test_a_test_send_refuses_bad_input_clearly(w, kwargs, words):
    with pytest.raises(BadQuery) as refused:
        w.trials.test_send("hello.html.j2", kwargs.pop("to"), **kwargs)
    assert words in str(refused.value) and w.log.messages == {}


def test_a_push_template_has_no_test_send(w):
    with pytest.raises(BadQuery):
        w.trials.test_send("news.push.j2", "a@example.com")


def test_test_data_on_a_real_contacts_message_changes_nothing(w):
    """The mark of a test is its own contact id as well: data from an event cannot redirect a send."""
    m = w.service.request("c1", "welcome", "email", "evt-9", data={"_test": {"to": "attacker@example.com",
                                                                         "file": "welcome.html.j2"}})
    w.service.send(m.id)
    assert w.email.sent[0]["to"] == "ada@example.com"
    assert not parsed(w.email.sent[0]["raw"])["Subject"].startswith("[Test]")


def test_a_disabled_push_endpoint_is_reported_for_removal(w):
    gone = []
    w.service.push_endpoint_gone = lambda cid, endpoint, mid: gone.append((cid, endpoint, mid))
    c = w.contacts.contacts["c1"]["contact"]
    c.traits["push_endpoints"] = ["arn:dead", "arn:alive"]
    c.consent["push"] = {"status": "granted", "at": "2026-11-01T10:00:00.000Z", "source": "app"}
    results = {"arn:dead": ChannelResult(REJECTED, reason="disabled", code="EndpointDisabled")}
    original = w.push.send
    w.push.send = lambda e, *a: results.get(e) or original(e, *a)
    m = w.service.request("c1", "news", "push", "evt-p")
    assert w.service.send(m.id).status == "sent"
    assert gone == [("c1", "arn:dead", m.id)]


def test_a_click_in_a_test_email_is_recorded_on_the_message_but_makes_no_contact():
    from chalicelib.domain.messaging.links import CLICK
    from chalicelib.services.interactions import Interactions, RequestFacts
    from tests.unit.fakes import FakeEventStore

    w = Trials()
    answer = w.trials.test_send("welcome.html.j2", "tester@example.com")
    assert w.service.send(answer["message_id"]).status == "sent"
    events = FakeEventStore()
    tracker = LinkTracker([SECRET], "https://t.shop.example")
    pages = Interactions(lambda: w.log, lambda: w.suppressions, events, w.contacts, tracker, w.clock, SALT)
    w.clock.advance(minutes=5)
    token = tracker.token(CLICK, answer["message_id"], 0, NOON + timedelta(days=1))
    result = pages.click(token, RequestFacts(ip="203.0.113.9", user_agent="Mozilla/5.0 (Macintosh) Safari/605"))
    assert result.destination.startswith("https://shop.example/coffee?mcid=")
    assert w.log.get(answer["message_id"]).status == "clicked" and events.inserted == []
