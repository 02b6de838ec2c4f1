"""The SendMessage use case with in-memory ports: request → queue → send through the policy
gate, and every outcome (sent, deferred, skipped, failed, retried) recorded on the message."""
from __future__ import annotations

import email
import email.policy
from datetime import datetime, time, timedelta, timezone

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.domain.messaging.consent import suppress
from chalicelib.domain.messaging.links import LinkTracker
from chalicelib.domain.messaging.policy import FrequencyCap, PolicySettings, QuietHours, RateBudget
from chalicelib.services.channel_ports import REJECTED, RETRY, ChannelResult
from chalicelib.services.messaging import MessagingService
from tests.unit.fakes import FakeClock, FakeContactRepository, FakeEventStore
from tests.unit.messaging_fakes import (
    FakeChannelStats,
    FakeEmailSender,
    FakeMessageLog,
    FakeMessageQueue,
    FakePushSender,
    FakeSendRate,
    FakeSmsSender,
    FakeSuppressionStore,
    FakeTemplateStore,
)

from chalicelib.domain.messaging.templates import TemplateEngine  # noqa: E402
from chalicelib.services.template_store import TemplateLibrary  # noqa: E402

NOON = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
SALT = b"salt-for-tests-0123456789"
SECRET = b"link-secret-for-tests-0123"
TEMPLATES = {
    "welcome.html.j2": "---\nsubject: 'Welcome, {{ traits.first_name | default(\"friend\") }}'\nkind: marketing\ntopic: news\n"
                       "from: Bean There <hello@shop.example>\n---\n<html><body><p>Hi!</p>"
                       "<a href=\"https://shop.example/coffee\">Coffee</a>"
                       "<a href=\"{{ links.unsubscribe }}\">Unsubscribe</a></body></html>",
    "welcome.it.html.j2": "---\nsubject: 'Benvenuto'\nkind: marketing\ntopic: news\nfrom: Bean There <hello@shop.example>\n---\n"
                          "<html><body><p>Ciao!</p><a href=\"{{ links.unsubscribe }}\">Disiscriviti</a></body></html>",
    "receipt.html.j2": "---\nsubject: 'Your order {{ data.order_id }}'\nkind: transactional\n"
                       "from: Bean There <orders@shop.example>\n---\n<html><body><p>Thanks</p></body></html>",
    "offer.sms.j2": "---\nkind: marketing\ntopic: news\n---\nBean There: 20% off today, {{ traits.first_name }}. Reply STOP to opt out.",
    "long.sms.j2": "---\nkind: marketing\ntopic: news\n---\n{{ 'x' * 600 }}",
    "news.push.j2": "---\nkind: marketing\ntopic: news\ntitle: News\n---\nNew beans are in.",
}


def contact(cid="c1", email_consent=True, sms_consent=False, tz="Europe/Rome", **traits) -> Contact:
    consent = {}
    if email_consent:
        consent["email"] = {"status": "granted", "at": "2026-11-01T10:00:00.000Z", "source": "newsletter signup"}
    if sms_consent:
        consent["sms"] = {"status": "granted", "at": "2026-11-01T10:00:00.000Z", "source": "checkout"}
    base = {"email": "ada@example.com", "first_name": "Ada", "phone": "+393331234567", "timezone": tz}
    return Contact(id=cid, created_at="2026-11-01T10:00:00.000Z", traits={**base, **traits}, consent=consent)


class World:
    def __init__(self, start=NOON, policy: PolicySettings | None = None, email_results=None):
        self.clock = FakeClock(start)
        self.log, self.queue = FakeMessageLog(), FakeMessageQueue()
        self.suppressions, self.stats, self.rate = FakeSuppressionStore(), FakeChannelStats(), FakeSendRate()
        self.contacts = FakeContactRepository()
        self.email, self.sms, self.push = FakeEmailSender(email_results), FakeSmsSender(), FakePushSender()
        self.counted: list[tuple[str, str | None]] = []
        self.events = FakeEventStore()
        self.service = MessagingService(
            log=self.log, suppressions=self.suppressions, stats=self.stats, rate=self.rate,
            templates=TemplateLibrary(FakeTemplateStore(TEMPLATES), TemplateEngine(), max_age=0),
            contacts=self.contacts, queue=self.queue, clock=self.clock,
            email=self.email, sms=self.sms, push=self.push,
            tracker=lambda: LinkTracker([SECRET], "https://t.shop.example"), salt=lambda: SALT,
            policy=policy or PolicySettings(), count=lambda outcome, code: self.counted.append((outcome, code)),
            events=self.events)

    def add(self, c: Contact) -> Contact:
        self.contacts.create(c)
        return c

    def request(self, cause="evt-1", template="welcome", channel="email", cid="c1", **kw):
        return self.service.request(cid, template, channel, cause, **kw)

    def status(self, mid):
        return self.log.get(mid).status


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_a_request_is_queued_once_and_sent_once_on_replay():
    w = World()
    w.add(contact())
    first = w.request()
    again = w.request()  # the replayed stream batch asks for the same cause: no second message
    assert again.id == first.id and len(w.log.messages) == 1
    # still queued: enqueued again (the first enqueue may have failed); the claim keeps it to one send
    assert w.queue.enqueued == [(first.id, "marketing", 0)] * 2
    outcome = w.service.send(first.id)
    assert outcome.status == "sent" and outcome.done
    assert w.service.send(first.id).done and len(w.email.sent) == 1  # the queue message delivered twice
    w.request()  # and the stream replayed after the send
    assert len(w.queue.enqueued) == 2 and len(w.email.sent) == 1
    sent = w.log.get(first.id)
    assert sent.status == "sent" and sent.provider_id == "ses-1" and sent.links == ("https://shop.example/coffee",)
    assert sent.subject == "Welcome, Ada" and sent.address == "ada@example.com"
    assert [c.status for c in sent.timeline] == ["queued", "sending", "sent"]
    assert w.stats.window("email", NOON, 1).sent == 1
    # "Message Sent" on the contact, once: segments (`message: received`) and the six groups read it.
    [event] = [e.body for e in w.events.inserted if e.body.get("event") == "Message Sent"]
    assert event["contactId"] == "c1" and event["properties"]["message_id"] == first.id
    assert event["properties"]["channel"] == "email" and event["properties"]["template_id"] == "welcome"


def test_a_sent_message_stays_sent_when_its_event_cannot_be_stored():
    w = World()
    w.add(contact())
    w.events.append = lambda rows: (_ for _ in ()).throw(ConnectionError("DynamoDB unavailable"))
    first = w.request()
    assert w.service.send(first.id).status == "sent"
    assert w.log.get(first.id).status == "sent" and ("event_not_recorded", "message_sent") in w.counted


def test_the_email_carries_one_click_unsubscribe_tracked_links_and_tags():
    w = World()
    w.add(contact())
    m = w.request(campaign="promo-2026-11")
    w.service.send(m.id)
    sent = w.email.sent[0]
    message = parsed(sent["raw"])
    assert sent["from"] == "hello@shop.example" and sent["to"] == "ada@example.com"
    assert sent["tags"] == {"mercurio_message": m.id, "template": "welcome", "lane": "marketing", "campaign": "promo-2026-11"}
    assert message["List-Unsubscribe"].startswith("<https://t.shop.example/u/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()
    assert "https://t.shop.example/c/" in html and 'href="https://shop.example/coffee"' not in html
    assert "https://t.shop.example/o/" in html  # the open pixel
    unsubscribe = message["List-Unsubscribe"].strip("<>")
    assert f'href="{unsubscribe}"' in html  # the unsubscribe link is left as written, untracked
    tracker = LinkTracker([SECRET], "https://t.shop.example")
    assert tracker.read_page(unsubscribe.rsplit("/", 1)[1], "u", NOON).message_id == m.id


def test_the_locale_variant_is_chosen_with_a_fallback():
    w = World()
    w.add(contact("it", locale="it-CH"))
    w.add(contact("fr", locale="fr-FR", email="fr@example.com"))
    it, fr = w.request(cid="it"), w.request(cid="fr")
    w.service.send(it.id)
    w.service.send(fr.id)
    assert parsed(w.email.sent[0]["raw"])["Subject"] == "Benvenuto"
    assert parsed(w.email.sent[1]["raw"])["Subject"] == "Welcome, Ada"


def test_at_23_local_time_a_marketing_email_is_deferred_until_8_and_goes_then():
    w = World(start=datetime(2026, 11, 22, 22, 0, tzinfo=timezone.utc))  # 23:00 in Rome
    w.add(contact())
    m = w.request()
    outcome = w.service.send(m.id)
    eight = datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)  # 08:00 in Rome
    assert outcome.status == "deferred" and not outcome.done and outcome.code == "quiet_hours"
    assert outcome.retry_in == (eight - w.clock.now()).total_seconds()
    stored = w.log.get(m.id)
    assert stored.status == "deferred" and stored.timeline[-1].detail["until"].startswith("2026-11-23T07:00")
    assert "quiet hours" in stored.timeline[-1].detail["reason"]
    assert ("deferred", "quiet_hours") in w.counted and w.email.sent == []
    w.clock.advance(hours=4)  # an early wake (a queue message back too soon): no write, back to sleep
    writes = w.log.writes
    early = w.service.send(m.id)
    assert early.status == "deferred" and w.log.writes == writes and early.retry_in == 5 * 3600
    w.clock.current = eight
    assert w.service.send(m.id).status == "sent" and len(w.email.sent) == 1


def test_a_fourth_marketing_message_in_seven_days_is_deferred():
    w = World(policy=PolicySettings(caps=(FrequencyCap(3, timedelta(days=7)),), quiet_hours=None))
    w.add(contact())
    for day in range(3):
        m = w.request(cause=f"evt-{day}")
        assert w.service.send(m.id).status == "sent"
        w.clock.advance(days=1)
    fourth = w.request(cause="evt-3")
    outcome = w.service.send(fourth.id)
    assert outcome.status == "deferred" and outcome.code == "frequency_cap"
    assert w.log.get(fourth.id).timeline[-1].detail["until"].startswith("2026-11-29T12:00")
    assert len(w.email.sent) == 3


def test_no_sms_without_sms_consent():
    w = World(policy=PolicySettings(quiet_hours=None))
    w.add(contact())
    m = w.request(template="offer", channel="sms")
    outcome = w.service.send(m.id)
    assert outcome.status == "skipped" and outcome.code == "no_consent" and w.sms.sent == []
    assert w.log.get(m.id).timeline[-1].detail["reason"].startswith("The contact never agreed")
    assert ("skipped", "no_consent") in w.counted
    w.add(contact("c2", sms_consent=True, email="b@example.com"))
    ok = w.request(template="offer", channel="sms", cid="c2")
    assert w.service.send(ok.id).status == "sent"
    assert w.sms.sent == [("+393331234567", "Bean There: 20% off today, Ada. Reply STOP to opt out.", False, ok.id)]


def test_an_sms_over_the_segment_cap_fails_with_the_reason():
    w = World(policy=PolicySettings(quiet_hours=None))
    w.add(contact(sms_consent=True))
    m = w.request(template="long", channel="sms")
    outcome = w.service.send(m.id)
    assert outcome.status == "failed" and outcome.code == "sms_too_long" and w.sms.sent == []


def test_a_suppressed_address_is_skipped_with_the_reason():
    w = World()
    w.add(contact(email="Ada@Example.com"))
    w.suppressions.add(suppress("email", "ada@example.com", "bounced_hard", NOON - timedelta(days=1), SALT))
    m = w.request()
    outcome = w.service.send(m.id)
    assert outcome.status == "skipped" and outcome.code == "suppressed_bounced_hard"
    assert "hard bounce" in w.log.get(m.id).timeline[-1].detail["reason"] and w.email.sent == []
    receipt = w.request(cause="order-1", template="receipt")  # a hard bounce blocks every lane
    assert w.service.send(receipt.id).code == "suppressed_bounced_hard"


def test_the_transactional_lane_has_its_own_queue_and_bypasses_caps_and_quiet_hours():
    w = World(start=datetime(2026, 11, 22, 22, 30, tzinfo=timezone.utc),
              policy=PolicySettings(caps=(FrequencyCap(1, timedelta(days=7)),)))
    w.add(contact(email_consent=False))
    receipt = w.request(cause="order-1", template="receipt", data={"order_id": "A-42"})
    assert w.queue.enqueued[-1] == (receipt.id, "transactional", 0) and receipt.lane == "transactional"
    assert w.service.send(receipt.id).status == "sent"
    second = w.request(cause="order-2", template="receipt", data={"order_id": "A-43"})
    assert w.service.send(second.id).status == "sent"  # no cap, no quiet hours, no marketing consent needed
    assert parsed(w.email.sent[1]["raw"])["Subject"] == "Your order A-43"
    assert parsed(w.email.sent[0]["raw"])["List-Unsubscribe"] is None


def test_a_provider_retry_backs_off_then_sends():
    w = World(policy=PolicySettings(quiet_hours=None),
              email_results=[ChannelResult(RETRY, reason="SES Throttling: slow down", code="Throttling")])
    w.add(contact())
    m = w.request()
    outcome = w.service.send(m.id)
    assert outcome.status == "retrying" and not outcome.done and outcome.retry_in == 60.0
    stored = w.log.get(m.id)
    assert stored.status == "deferred" and stored.timeline[-1].detail["code"] == "provider_retry"
    w.clock.advance(seconds=60)
    assert w.service.send(m.id).status == "sent" and len(w.email.sent) == 1


def test_provider_retries_are_bounded_then_the_message_fails_with_the_reason():
    w = World(policy=PolicySettings(quiet_hours=None),
              email_results=[ChannelResult(RETRY, reason="SES Throttling", code="Throttling")] * 200)
    w.add(contact())
    m = w.request()
    outcomes = []
    for _ in range(100):
        outcome = w.service.send(m.id)
        outcomes.append(outcome)
        if outcome.done:
            break
        w.clock.advance(seconds=outcome.retry_in)
    assert outcomes[-1].status == "failed" and outcomes[-1].code == "gave_up"
    assert "gave up after" in w.log.get(m.id).timeline[-1].detail["reason"]
    assert w.status(m.id) == "failed" and len(outcomes) < 100


def test_a_rejected_send_fails_with_the_providers_reason():
    w = World(policy=PolicySettings(quiet_hours=None),
              email_results=[ChannelResult(REJECTED, reason="SES MessageRejected: Email address is not verified",
                                           code="MessageRejected")])
    w.add(contact())
    m = w.request()
    outcome = w.service.send(m.id)
    assert outcome.status == "failed" and outcome.done and outcome.code == "provider_rejected"
    assert "not verified" in w.log.get(m.id).timeline[-1].detail["reason"]
    assert ("failed", "provider_rejected") in w.counted


def test_a_crash_after_the_claim_never_sends_twice():
    w = World(policy=PolicySettings(quiet_hours=None))
    w.add(contact())
    m = w.request()
    lease = w.clock.now() + timedelta(seconds=300)
    from chalicelib.domain.messaging.messages import StatusChange

    w.log.claim(m.id, StatusChange("sending", w.clock.now(), {"lease_until": lease.isoformat()}), lease)
    busy = w.service.send(m.id)  # the queue message back while the dead worker's lease runs
    assert busy.status == "busy" and not busy.done and busy.retry_in == 300
    w.clock.advance(seconds=301)
    outcome = w.service.send(m.id)
    assert outcome.status == "failed" and outcome.code == "outcome_unknown" and w.email.sent == []


def test_a_failure_before_the_provider_call_gives_the_message_back_for_a_retry():
    w = World(policy=PolicySettings(quiet_hours=None))
    w.add(contact())
    m = w.request()
    w.service.salt = lambda: (_ for _ in ()).throw(RuntimeError("SSM throttled"))
    outcome = w.service.send(m.id)
    assert outcome.status == "retrying" and w.status(m.id) == "deferred"
    w.service.salt = lambda: SALT
    w.clock.advance(seconds=outcome.retry_in)
    assert w.service.send(m.id).status == "sent"


def test_a_missing_template_fails_the_request_visibly_and_queues_nothing():
    w = World()
    w.add(contact())
    m = w.request(template="nope")
    assert w.status(m.id) == "failed" and w.queue.enqueued == []
    assert "No email template called 'nope'" in w.log.get(m.id).timeline[-1].detail["reason"]


def test_the_send_rate_defers_for_a_moment():
    w = World(policy=PolicySettings(quiet_hours=None, rates={"email": RateBudget(per_second=1)}))
    w.add(contact())
    w.add(contact("c2", email="b@example.com"))
    a, b = w.request(cid="c1"), w.request(cid="c2")
    assert w.service.send(a.id).status == "sent"
    outcome = w.service.send(b.id)
    assert outcome.status == "deferred" and outcome.code == "send_rate" and outcome.retry_in == 1.0


def test_push_goes_to_the_contacts_device_endpoints_and_no_endpoint_is_a_visible_skip():
    w = World(policy=PolicySettings(quiet_hours=None))
    w.add(contact(push_endpoints=["arn:endpoint/apns/1"]))
    w.contacts.contacts["c1"]["contact"].consent["push"] = {"status": "granted", "at": "2026-11-01T10:00:00.000Z",
                                                            "source": "app"}
    m = w.request(template="news", channel="push")
    assert w.service.send(m.id).status == "sent" and w.push.sent == [("arn:endpoint/apns/1", "News", "New beans are in.")]
    w.add(contact("c2", email="b@example.com"))
    none = w.request(template="news", channel="push", cid="c2")
    assert w.service.send(none.id).code in ("no_address", "no_consent")


def test_every_skip_and_deferral_is_visible_on_the_contact():
    w = World(start=datetime(2026, 11, 22, 22, 0, tzinfo=timezone.utc))
    w.add(contact())
    deferred = w.request(cause="a")
    skipped = w.request(cause="b", template="offer", channel="sms")
    w.service.send(deferred.id)
    w.clock.advance(minutes=1)
    w.service.send(skipped.id)
    page = w.service.messages_of("c1")
    reasons = {m["id"]: m["reason"]["code"] for m in page["messages"]}
    assert reasons == {deferred.id: "quiet_hours", skipped.id: "no_consent"}
    assert "address" not in page["messages"][0]
    from chalicelib.services.contacts import BadQuery, NotFound

    with pytest.raises(NotFound):
        w.service.messages_of("nobody")
    with pytest.raises(BadQuery):
        w.service.messages_of("c1", limit=0)


def test_a_failure_after_the_provider_accepted_is_never_retried_into_a_second_send():
    from chalicelib.services.messaging import OutcomeUnknown

    w = World(policy=PolicySettings(quiet_hours=None))
    w.add(contact())
    m = w.request()
    advance = w.log.advance

    def broken_advance(message_id, change, **fields):
        if change.status == "sent":
            raise RuntimeError("DynamoDB throttled the write")
        return advance(message_id, change, **fields)

    w.log.advance = broken_advance
    with pytest.raises(OutcomeUnknown):
        w.service.send(m.id)
    w.log.advance = advance
    assert len(w.email.sent) == 1 and w.status(m.id) == "sending"
    assert w.service.send(m.id).status == "busy"  # the queue message back within the lease
    w.clock.advance(seconds=301)
    assert w.service.send(m.id).code == "outcome_unknown" and len(w.email.sent) == 1


def test_the_email_rate_is_sess_own_quota_unless_set_and_quiet_hours_can_be_turned_off():
    from dataclasses import replace as changed

    from chalicelib import config
    from chalicelib.bootstrap import bootstrap

    base = config.settings()
    wired = bootstrap(changed(base, email_rate_per_second=None, quiet_hours="off"), email_sender=FakeEmailSender())
    assert wired.send_policy.rates["email"].per_second == 14.0 and wired.send_policy.quiet_hours is None
    fixed = bootstrap(changed(base, email_rate_per_second=2.0, quiet_hours="22:00-07:30"),
                      email_sender=FakeEmailSender())
    assert fixed.send_policy.rates["email"].per_second == 2.0
    assert fixed.send_policy.quiet_hours == QuietHours(time(22, 0), time(7, 30))
    with pytest.raises(ValueError, match="MERCURIO_QUIET_HOURS"):
        bootstrap(changed(base, quiet_hours="late"), email_sender=FakeEmailSender()).send_policy


def test_a_message_asked_for_by_a_segment_entry_is_skipped_once_the_contact_has_left_it():
    # A reminder requested when the contact entered "cart-abandoners" must not go once they
    # bought (and left the segment) before it was sent.
    w = World()
    gone = w.add(contact("c1"))
    still = contact("c2", email="grace@example.com")
    still.segments = {"cart-abandoners": {"since": "2026-11-22T11:00:00.000Z"}}
    w.add(still)
    left = w.request(cid="c1", data={"segment_id": "cart-abandoners"})
    stayed = w.request(cid="c2", data={"segment_id": "cart-abandoners"})
    assert w.service.send(left.id).code == "left_segment" and w.log.get(left.id).status == "skipped"
    assert w.service.send(stayed.id).status == "sent"
    assert gone.id == "c1" and len(w.email.sent) == 1
