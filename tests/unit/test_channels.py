"""Push devices and double opt-in through the stream processor with in-memory ports: the
processor only records what it saw, the message bus's handlers only enqueue or request, the
queue-side services call the provider and report back as events the processor applies."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import partial

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.domain.contact_events import ConfirmationRequested, PushTokenSeen
from chalicelib.domain.deliveries import DeliveryMessage, RetryPolicy
from chalicelib.domain.messaging import push_devices
from chalicelib.domain.messaging.consent import ConsentForm, SiteConsentPolicy, ALL_TOPICS
from chalicelib.domain.messaging.links import CONFIRM, LinkTracker
from chalicelib.domain.messaging.messages import message_id
from chalicelib.services.catalog import Catalog
from chalicelib.services.confirmations import Confirmations, ResendRefused
from chalicelib.services.effects import EffectsPublisher
from chalicelib.services.handlers import (
    CONFIRMATION_TEMPLATE,
    PUSH_REGISTRATION,
    enqueue_push_registration,
    request_confirmation,
)
from chalicelib.services.interactions import Interactions, RequestFacts
from chalicelib.services.messagebus import MessageBus
from chalicelib.services.process_events import EventProcessor
from chalicelib.services.push_devices import PermanentRegistrationError, PushDevices
from chalicelib.services.segmentation import ProfileRules
from tests.unit.effects_fakes import FakeEffectsQueue
from tests.unit.fakes import FakeClock, FakeContactRepository, FakeEventStore, FakeMembershipStore, \
    FakeRecheckSchedule
from tests.unit.messaging_fakes import FakeMessageLog, FakeSuppressionStore
from chalicelib.domain.messaging.messages import Message, StatusChange, SENT

SECRET = b"s" * 32
SALT = b"salt-of-sixteen-bytes"
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
FORM = ConsentForm("newsletter", "Send me the newsletter.", frozenset({("email", ALL_TOPICS),
                                                                      ("email", "newsletter")}))


# -- the domain: devices on the contact ---------------------------------------------------------

@pytest.mark.parametrize("device,expected", [
    ({"token": "t1", "type": "ios"}, ("ios", "t1")),
    ({"token": " t2 ", "type": "Android"}, ("android", "t2")),
    ({"token": "t3", "type": "web"}, None),
    ({"token": "", "type": "ios"}, None),
    ({"token": 7, "type": "ios"}, None),
    ({"type": "ios"}, None),
    ("not a device", None),
])
def test_a_device_token_is_read_as_segment_sends_it(device, expected):
    found = push_devices.device_of({"context": {"device": device}})
    assert (found.platform, found.token) == expected if expected else found is None


def test_the_contact_keeps_the_newest_devices_once_each_and_drops_a_removed_one():
    traits: dict = {}
    for n in range(7):
        push_devices.with_endpoint(traits, f"arn:e{n}", "ios", f"d{n}", f"2026-11-2{n}T00:00:00Z")
    assert traits["push_endpoints"] == ["arn:e6", "arn:e5", "arn:e4", "arn:e3", "arn:e2"]
    assert push_devices.with_endpoint(traits, "arn:e3", "ios", "d3", "2026-11-30T00:00:00Z")  # seen again
    assert traits["push_endpoints"][0] == "arn:e3" and len(traits["push_devices"]) == 5
    assert not push_devices.with_endpoint(traits, "arn:e3", "ios", "d3", "2026-12-01T00:00:00Z")
    assert push_devices.without_endpoint(traits, "arn:e5")
    assert "arn:e5" not in traits["push_endpoints"] and not push_devices.without_endpoint(traits, "arn:e5")


# -- the stream side ----------------------------------------------------------------------------

class World:
    """The processor with the real handlers of these features on its bus, and the
    queue-side services they feed."""

    def __init__(self, forms=(FORM,)):
        self.clock = FakeClock(NOON)
        self.events = FakeEventStore()
        self.contacts = FakeContactRepository()
        self.effects = FakeEffectsQueue()
        self.requested: list[tuple] = []
        self.tracker = LinkTracker([SECRET], "https://t.shop.example/v1/m")
        bus = MessageBus({
            PushTokenSeen: [partial(enqueue_push_registration, queue=self.effects, now=lambda: NOON.isoformat())],
            ConfirmationRequested: [partial(request_confirmation, request=self._request,
                                            confirm_url=lambda mid, exp: self.tracker.page_url(CONFIRM, mid, exp))],
        })
        publisher = EffectsPublisher(FakeMembershipStore(), self.events, FakeRecheckSchedule(), bus,
                                     lambda c, now: 0.0)
        policy = SiteConsentPolicy(forms={f.id: f for f in forms})
        self.processor = EventProcessor(self.contacts, self.clock, sleep=lambda s: None, publisher=publisher,
                                        rules=ProfileRules(lambda: Catalog.of(), site_consent=lambda: policy))
        self.registered: list[tuple] = []
        self.devices = PushDevices(self._register, self.events, self.clock, RetryPolicy(first_retry=60.0))
        self.applied = 0
        self.n = 0

    def _register(self, platform, token, contact_id):
        self.registered.append((platform, token, contact_id))
        return f"arn:aws:sns:us-east-1:1:endpoint/{platform}/{token}"

    def _request(self, contact_id, template, channel, cause, **kwargs):
        # An outbox may be published more than once; the real request is idempotent by cause.
        if all(r[3] != cause for r in self.requested):
            self.requested.append((contact_id, template, channel, cause, kwargs))

    def track(self, event="App Opened", properties=None, context=None, user="u1"):
        self.n += 1
        body = {"type": "track", "event": event, "userId": user, "properties": properties or {},
                "context": context or {}, "messageId": f"m-{self.n}", "timestamp": self.clock.now().isoformat(),
                "receivedAt": self.clock.now().isoformat()}
        self.processor.process(body)
        return self.catch_up()

    def catch_up(self) -> Contact:
        """Apply the events appended since (internal ones, reports of the queue side)."""
        while self.applied < len(self.events.inserted):
            stored = self.events.inserted[self.applied]
            self.applied += 1
            if stored.body.get("source") == "mercurio" and stored.body["event"] not in (
                    "Push Endpoint Registered", "Push Endpoint Removed", "Consent Updated",
                    "Confirmation Resend Requested"):
                continue  # what the processor emitted itself is already applied
            self.processor.process(stored.body)
        return self.contact()

    def contact(self) -> Contact:
        cid = self.contacts.identities.get("user:u1")
        return self.contacts.get(cid)


def jobs(w: World) -> list[DeliveryMessage]:
    """The distinct registrations enqueued (an outbox published twice enqueues the same one)."""
    return list({job.delivery_id: job for job in w.effects.sent}.values())


def test_a_new_token_is_only_enqueued_then_registered_and_reported_back_to_the_contact():
    w = World()
    w.track(context={"device": {"token": "tok-1", "type": "ios"}})
    assert w.registered == []  # the stream side never calls SNS
    [job] = jobs(w)
    assert job.destination_id == PUSH_REGISTRATION and job.payload["token"] == "tok-1"
    assert w.devices.register(job).status == "delivered"
    assert w.devices.register(job).status == "delivered"  # redelivered: the same report, stored once
    contact = w.catch_up()
    assert contact.traits["push_endpoints"] == ["arn:aws:sns:us-east-1:1:endpoint/ios/tok-1"]
    assert [d["token"] for d in contact.traits["push_devices"]] == [push_devices.token_digest("tok-1")]
    w.track(context={"device": {"token": "tok-1", "type": "ios"}})
    assert len(jobs(w)) == 1  # a known device is not registered again


def test_the_write_key_cannot_add_or_remove_endpoints():
    w = World()
    w.track(event="Push Endpoint Registered", properties={"endpoint": "arn:evil", "platform": "ios"})
    assert "push_endpoints" not in w.contact().traits


def test_a_disabled_endpoint_report_removes_it():
    w = World()
    w.track(context={"device": {"token": "tok-2", "type": "android"}})
    w.devices.register(w.effects.sent[0])
    contact = w.catch_up()
    w.devices.endpoint_disabled(contact.id, contact.traits["push_endpoints"][0], "msg-1")
    assert w.catch_up().traits["push_endpoints"] == []


def test_a_registration_that_cannot_succeed_is_parked_and_a_passing_failure_retries_with_back_off():
    clock = FakeClock(NOON)
    job = DeliveryMessage("m-1:~push-registration", PUSH_REGISTRATION,
                          {"contact_id": "c1", "platform": "ios", "token": "t"}, NOON.isoformat())

    def unknown(*args):
        raise PermanentRegistrationError("no platform application for 'ios'")

    def throttled(*args):
        raise RuntimeError("Throttling")

    parked = PushDevices(unknown, FakeEventStore(), clock, RetryPolicy(first_retry=60.0)).register(job)
    assert parked.status == "parked" and parked.done and "no platform application" in parked.reason
    retry = PushDevices(throttled, FakeEventStore(), clock, RetryPolicy(first_retry=60.0)).register(job, attempts=2)
    assert retry.status == "retrying" and not retry.done and retry.retry_in == 120.0
    clock.advance(days=2)
    gave_up = PushDevices(throttled, FakeEventStore(), clock, RetryPolicy(first_retry=60.0)).register(job, attempts=9)
    assert gave_up.status == "parked" and "gave up" in gave_up.reason
    bad = PushDevices(throttled, FakeEventStore(), clock, RetryPolicy()).register(
        DeliveryMessage("x", PUSH_REGISTRATION, {"platform": "web"}, NOON.isoformat()))
    assert bad.status == "parked"


# -- double opt-in ------------------------------------------------------------------------------

def ask(w: World, form_id="newsletter", channel="email", topic="newsletter"):
    return w.track(event="Consent Updated", properties={"channel": channel, "topic": topic, "status": "pending",
                                                        "form_id": form_id},
                   context={"ip": "203.0.113.9", "userAgent": "Browser/1", "page": {"url": "https://shop.example/"}})


def test_a_signup_through_a_form_is_pending_and_asks_for_one_confirmation_email():
    w = World()
    contact = ask(w)
    record = contact.consent["email/newsletter"]
    assert record["status"] == "pending" and record["source"] == "write_key"
    assert record["proof"] == {"shown": "Send me the newsletter.", "where": "https://shop.example/",
                               "ip": "203.0.113.9", "user_agent": "Browser/1"}
    [(cid, template, channel, cause, kwargs)] = w.requested
    assert (cid, template, channel) == (contact.id, CONFIRMATION_TEMPLATE, "email")
    token_id = record["confirmation"]["token_id"]
    assert cause == f"opt-in:{token_id}:1"
    assert kwargs["data"]["channel"] == "email" and kwargs["data"]["topic"] == "newsletter"
    # the link is bound to the confirmation message's own id, and expires with the request
    mid = message_id(cause, contact.id, CONFIRMATION_TEMPLATE, "email")
    token = kwargs["data"]["confirm_url"].rsplit("/", 1)[1]
    assert w.tracker.read_page(token, CONFIRM, NOON).message_id == mid
    assert w.tracker.read_page(token, CONFIRM, NOON + timedelta(days=8)).reason == "expired"
    ask(w)  # the same form submitted again: nothing more is sent
    assert len(w.requested) == 1


@pytest.mark.parametrize("form_id,channel", [("unknown", "email"), (None, "email"), ("newsletter", "sms")])
def test_the_write_key_asks_for_nothing_a_registered_form_does_not_collect(form_id, channel):
    w = World()
    contact = ask(w, form_id=form_id, channel=channel)
    assert contact.consent == {} and w.requested == []


def test_a_write_key_cannot_grant_through_a_forged_double_opt_in_or_ask_for_a_resend():
    w = World()
    ask(w)
    w.track(event="Confirmation Resend Requested", properties={"channel": "email", "topic": "newsletter"})
    assert len(w.requested) == 1


def confirmation_world():
    w = World()
    contact = ask(w)
    messages = FakeMessageLog()
    _, template, channel, cause, kwargs = w.requested[0]
    mid = message_id(cause, contact.id, template, channel)
    messages.create(Message(id=mid, contact_id=contact.id, channel="email", template=template, lane="transactional",
                            topic=None, cause=cause, requested_at=NOON, data=kwargs["data"], status=SENT,
                            timeline=(StatusChange(SENT, NOON),)))
    pages = Interactions(lambda: messages, lambda: FakeSuppressionStore(), w.events, w.contacts, w.tracker,
                         w.clock, SALT)
    return w, pages, kwargs["data"]["confirm_url"].rsplit("/", 1)[1]


def test_the_confirmation_link_grants_with_proof_once():
    w, pages, token = confirmation_world()
    w.clock.advance(hours=1)
    person = RequestFacts(ip="198.51.100.7", user_agent="Mail/2")
    result = pages.confirm(token, person)
    assert result.reason is None and result.done
    record = w.catch_up().consent["email/newsletter"]
    assert record["status"] == "granted" and record["source"] == "double_opt_in"
    assert record["proof"]["ip"] == "198.51.100.7" and record["proof"]["shown"] == "Send me the newsletter."
    assert record["confirmation"]["confirmed_at"].startswith("2026-11-22T13:00")
    before = len(w.events.inserted)
    again = pages.confirm(token, person)
    assert again.reason is None and again.done and len(w.events.inserted) == before


def test_an_expired_confirmation_link_says_so():
    w, pages, token = confirmation_world()
    w.clock.advance(days=8)
    assert pages.confirm(token, RequestFacts()).reason == "expired"
    assert pages.confirm("forged", RequestFacts()).reason == "malformed token"


def test_resends_are_limited_in_number_and_spacing():
    w = World()
    contact = ask(w)
    service = Confirmations(w.contacts, w.events, w.clock)
    with pytest.raises(ResendRefused) as refused:
        service.resend(contact.id, "email", "newsletter")
    assert refused.value.code == "resend_too_soon" and refused.value.status == 429
    for n in range(2, 6):
        w.clock.advance(minutes=6)
        assert service.resend(contact.id, "email", "newsletter")["send_number"] == n
        w.catch_up()
        assert w.requested[-1][3].endswith(f":{n}")
    w.clock.advance(minutes=6)
    with pytest.raises(ResendRefused) as refused:
        service.resend(contact.id, "email", "newsletter")
    assert refused.value.code == "resend_limit"
    with pytest.raises(ResendRefused) as refused:
        service.resend(contact.id, "email", "other")
    assert refused.value.code == "not_pending" and refused.value.status == 409


# -- settings -----------------------------------------------------------------------------------

def test_push_platforms_and_consent_forms_settings_are_read_or_refused_clearly():
    from chalicelib.config import _consent_forms, _push_platforms
    from chalicelib.domain.sources import SourceConfigError

    assert _push_platforms('{"ios": "arn:aws:sns:us-east-1:1:app/APNS/x"}') == (
        ("ios", "arn:aws:sns:us-east-1:1:app/APNS/x"),)
    assert _push_platforms(None) == ()
    forms = _consent_forms('{"newsletter": {"shown": "Yes please", "collects": ["email", "email/News"]}}')
    assert forms["newsletter"].covers("email", "news") and forms["newsletter"].shown == "Yes please"
    for bad in ('{"web": "arn:x"}', '{"ios": "not-an-arn"}', "[1]", "{nope"):
        with pytest.raises(SourceConfigError):
            _push_platforms(bad)
    for bad in ('{"f": {"shown": "", "collects": ["email"]}}', '{"f": {"shown": "x", "collects": ["fax"]}}',
                '{"f": {"shown": "x"}}'):
        with pytest.raises(SourceConfigError):
            _consent_forms(bad)


def test_opening_the_confirmation_page_records_nothing():
    # Mail scanners and link previews open links: only the page's button (a POST) confirms.
    w, pages, token = confirmation_world()
    before = len(w.events.inserted)
    page = pages.confirm_page(token)
    assert page.reason is None and not page.done and "newsletter" in page.scope
    assert len(w.events.inserted) == before
    assert w.catch_up().consent["email/newsletter"]["status"] == "pending"
    assert pages.confirm_page("forged").reason == "malformed token"
