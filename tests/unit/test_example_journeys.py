"""The journeys shipped in chalicelib/definitions/journeys (scenarios 1, 2, 4, 5 and 6): each
parses, what it names exists among the shipped definitions and templates, and the simulator
runs each scenario's timelines to the expected sequence of nodes and decisions."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.domain.definition_errors import load_yaml
from chalicelib.domain.definition_kinds import REGISTRY
from chalicelib.domain.journeys.engine import Notification, SendAction, WaitUntil
from chalicelib.domain.journeys.language import SendNode, parse_journey
from chalicelib.domain.journeys.simulator import Scripted, simulate
from chalicelib.domain.messaging.templates import SAMPLES, TemplateEngine
from chalicelib.services.coupons import POOL_ID
from chalicelib.services.definitions import DefinitionService
from tests.unit.fakes import FakeClock, FakeDefinitionStore

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "chalicelib" / "definitions" / "journeys"
TEMPLATES = ROOT / "templates"
SHIPPED = ("abandoned-cart", "birthday", "lead-nurturing", "welcome-series", "win-back")
FORMAT_OF_CHANNEL = {"email": "html", "sms": "sms", "push": "push"}
UTC = timezone.utc
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
H, D, M = timedelta(hours=1), timedelta(days=1), timedelta(minutes=1)


def journey(name):
    return parse_journey((JOURNEYS / f"{name}.yaml").read_text())


def steps(enrollment) -> list[tuple[str, str]]:
    return [(t.node, t.decision) for t in enrollment.trace]


def timed(enrollment) -> list[tuple[timedelta, str, str]]:
    return [(t.at - enrollment.entered_at, t.node, t.decision) for t in enrollment.trace]


def person(segments=(), consent=(), **traits) -> Contact:
    return Contact(id="c1", created_at="2026-01-01T00:00:00Z", traits={"timezone": "Europe/Paris", **traits},
                   consent={c: {"status": "granted", "at": "2026-01-01T00:00:00Z"} for c in consent},
                   segments={s: {"since": "2026-01-01T00:00:00Z"} for s in segments})


def event(after, name, **properties):
    return Scripted(after, {"event": name, "properties": properties})


def entered(after, segment):
    return Scripted(after, segment=segment, entered=True)


def left(after, segment):
    return Scripted(after, segment=segment, entered=False)


# -- what ships ---------------------------------------------------------------------------------


def test_the_shipped_journeys_are_the_scenarios_each_with_a_header_saying_what_it_does():
    assert tuple(sorted(p.stem for p in JOURNEYS.glob("*.yaml"))) == SHIPPED
    for name in SHIPPED:
        text = (JOURNEYS / f"{name}.yaml").read_text()
        assert re.match(r"# Scenario \d: ", text), name
        assert journey(name).id == name
    assert not (ROOT / "docs" / "examples" / "journeys").exists()
    assert not (ROOT / "chalicelib" / "definitions" / "triggers" / "welcome-email.yaml").exists()


def test_the_shipped_definitions_seed_together_and_every_reference_of_a_journey_resolves():
    service = DefinitionService(FakeDefinitionStore(), FakeClock(START), cache_seconds=0)
    seeded = service.seed_directory(ROOT / "chalicelib" / "definitions")
    assert {r["id"] for r in seeded if r["kind"] == "journey"} == set(SHIPPED)
    assert set(service.catalog().journeys) == set(SHIPPED)
    kind = REGISTRY.get("journey")
    named = set()
    for name in SHIPPED:
        reading = kind.read(load_yaml((JOURNEYS / f"{name}.yaml").read_text()))
        assert reading.ok, reading.problems
        for reference in reading.references:
            assert service.get(reference.kind, reference.name) is not None, (name, reference)
            named.add((reference.kind, reference.name))
    assert {("destination", "crm"), ("segment", "mql"), ("segment", "birthday-today"),
            ("segment", "win-back-or-champions"), ("segment", "win-back"),
            ("segment", "champions-thank-you")} <= named
    assert not any(kind == "trigger" and row["id"] == "welcome-email" for kind, row in
                   ((r["kind"], r) for r in seeded))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_template_a_journey_sends_exists_for_its_channel_and_validates(name):
    engine = TemplateEngine(clock=lambda: START)
    sends = [n for n in journey(name).nodes.values() if isinstance(n, SendNode)]
    assert sends
    for node in sends:
        path = TEMPLATES / f"{node.template}.{FORMAT_OF_CHANNEL[node.channel]}.j2"
        assert path.exists(), f"{name}: {node.id} sends {path.name}, which templates/ lacks"
        source = path.read_text(encoding="utf-8")
        verdict = engine.validate(path.name, source)
        assert verdict.ok and verdict.samples_rendered == len(SAMPLES), str(verdict)
        assert "kind: marketing" in source
        assert "{{ links.unsubscribe }}" in source if node.channel == "email" else "Reply STOP" in source
        # A template that prints the coupon is only sent with one, and the other way round.
        assert ("{{ coupon }}" in source) == (node.coupon is not None), (name, node.id)
        if node.coupon is not None:
            assert POOL_ID.fullmatch(node.coupon)


def test_the_birthday_email_takes_its_coupon_from_the_pool_named_birthday():
    [send] = [n for n in journey("birthday").nodes.values() if isinstance(n, SendNode)]
    assert (send.template, send.channel, send.coupon) == ("birthday", "email", "birthday")


def test_the_cart_reminder_lists_every_product_of_the_cart_from_data_items():
    engine = TemplateEngine(clock=lambda: START)
    compiled = engine.compile("cart-reminder.html.j2", (TEMPLATES / "cart-reminder.html.j2").read_text())
    items = [{"product_id": "coffee-roma", "name": "Espresso Roma", "price": 12.9, "quantity": 2, "currency": "EUR",
              "cart_id": "k1"},
             {"product_id": "grinder-7", "quantity": 1, "cart_id": "k1"}]  # no name, no price
    sample = SAMPLES[0]
    rendered = compiled.render(dict(sample.variables, data={"cart_id": "k1", "items": items}),
                               locale=sample.locale, timezone=sample.timezone, now=START)
    assert "2 × Espresso Roma — €12.90" in rendered.text
    assert "1 × grinder-7\n" in rendered.text + "\n"
    sms = engine.compile("cart-reminder-sms.sms.j2", (TEMPLATES / "cart-reminder-sms.sms.j2").read_text())
    text = sms.render(dict(sample.variables, data={"items": items}), locale=sample.locale,
                      timezone=sample.timezone, now=START).text
    assert "your cart still holds 2 products" in text and "Reply STOP" in text


# -- scenario 1: the welcome series -------------------------------------------------------------

SIGNUP = {"channel": "email", "status": "granted", "source": "newsletter signup"}
WELCOME_START = [("welcome", "sent"), ("two-days", "waiting"), ("two-days", "resumed"), ("onboarding", "sent"),
                 ("three-days", "waiting"), ("three-days", "resumed"), ("active", "branched")]


def test_welcome_series_for_a_contact_who_stays_inactive_sends_welcome_onboarding_and_tips():
    timeline = [event(timedelta(0), "Consent Updated", **SIGNUP), event(D, "Session Started"),
                event(3 * D, "Session Started")]  # two sessions: not active
    run = simulate(journey("welcome-series"), person(), timeline, START)
    [enrollment] = run.enrollments
    assert steps(enrollment) == WELCOME_START + [("tips", "sent"), ("tips", "completed")]
    assert run.sends() == [(START, "email", "welcome"), (START + 2 * D, "email", "onboarding"),
                           (START + 5 * D, "email", "tips")]
    assert enrollment.trace[6].reason == "no condition holds: otherwise to tips"


def test_welcome_series_skips_the_tips_for_a_contact_active_with_three_sessions():
    timeline = [event(timedelta(0), "Consent Updated", **SIGNUP)] + [event(n * D, "Session Started")
                                                                    for n in (1, 3, 4)]
    run = simulate(journey("welcome-series"), person(), timeline, START)
    [enrollment] = run.enrollments
    assert steps(enrollment) == WELCOME_START + [("already-active", "exited")]
    assert [template for _, _, template in run.sends()] == ["welcome", "onboarding"]
    assert enrollment.trace[6].reason.endswith("holds: to already-active")


def test_welcome_series_hears_only_a_granted_email_consent_and_welcomes_once():
    timeline = [event(timedelta(0), "Consent Updated", channel="sms", status="granted"),
                event(H, "Consent Updated", channel="email", status="denied"),
                event(2 * H, "Consent Updated", **SIGNUP),
                event(10 * D, "Consent Updated", **SIGNUP)]  # unsubscribed and subscribed again
    run = simulate(journey("welcome-series"), person(), timeline, START)
    assert [e.entered_at for e in run.enrollments] == [START + 2 * H]
    assert run.refused == [(START + 10 * D, "entered before; this journey is entered once")]


# -- scenario 2: the abandoned cart -------------------------------------------------------------

CART_WAIT = [("wait-for-purchase", "waiting"), ("wait-for-purchase", "resumed"), ("email-reminder", "sent"),
             ("wait-more", "waiting"), ("wait-more", "resumed"), ("sms-consent", "branched")]


def added(after, cart):
    return event(after, "Product Added", cart_id=cart, product_id=f"p-{cart}", quantity=1)


def bought(after, cart):
    return event(after, "Order Completed", cart_id=cart, order_id=f"o-{cart}", revenue=25)


def test_an_abandoned_cart_gets_the_email_after_an_hour_and_the_sms_24_hours_later_with_sms_consent():
    run = simulate(journey("abandoned-cart"), person(consent=["sms"]), [added(timedelta(0), "k1")], START)
    enrollment = run.enrollment("k1")
    assert timed(enrollment) == [(timedelta(0), *CART_WAIT[0]), (H, *CART_WAIT[1]), (H, *CART_WAIT[2]),
                                 (H, *CART_WAIT[3]), (25 * H, *CART_WAIT[4]), (25 * H, *CART_WAIT[5]),
                                 (25 * H, "sms-reminder", "sent"), (25 * H, "sms-reminder", "completed")]
    assert run.sends() == [(START + H, "email", "cart-reminder"), (START + 25 * H, "sms", "cart-reminder-sms")]
    assert enrollment.converted_at is None


def test_without_sms_consent_the_abandoned_cart_gets_the_email_only():
    run = simulate(journey("abandoned-cart"), person(), [added(timedelta(0), "k1")], START)
    enrollment = run.enrollment("k1")
    assert steps(enrollment) == CART_WAIT + [("no-sms", "exited")]
    assert enrollment.trace[-1].reason == "no SMS consent"
    assert run.sends() == [(START + H, "email", "cart-reminder")]


def test_a_cart_bought_within_the_hour_gets_nothing_and_is_a_goal_conversion():
    run = simulate(journey("abandoned-cart"), person(consent=["sms"]),
                   [added(timedelta(0), "k1"), bought(40 * M, "k1")], START)
    enrollment = run.enrollment("k1")
    assert steps(enrollment) == [("wait-for-purchase", "waiting"), ("wait-for-purchase", "goal")]
    assert enrollment.status == "exited" and enrollment.converted_at == START + 40 * M
    assert run.sends() == []


def test_a_cart_bought_after_the_email_gets_no_sms_and_converts():
    run = simulate(journey("abandoned-cart"), person(consent=["sms"]),
                   [added(timedelta(0), "k1"), bought(5 * H, "k1")], START)
    enrollment = run.enrollment("k1")
    assert steps(enrollment) == CART_WAIT[:4] + [("wait-more", "goal")]
    assert run.sends() == [(START + H, "email", "cart-reminder")]
    assert enrollment.converted_at == START + 5 * H


def test_two_carts_run_two_enrollments_and_buying_one_does_not_end_the_other():
    run = simulate(journey("abandoned-cart"), person(consent=["sms"]),
                   [added(timedelta(0), "k1"), added(10 * M, "k2"), added(12 * M, "k2"), bought(30 * M, "k2")],
                   START)
    first, second = run.enrollment("k1"), run.enrollment("k2")
    assert len(run.enrollments) == 2 and first.id != second.id
    assert run.refused == [(START + 12 * M, "already enrolled for k2")]  # more of the same cart: one enrollment
    assert steps(second) == [("wait-for-purchase", "waiting"), ("wait-for-purchase", "goal")]
    assert second.converted_at == START + 30 * M and first.converted_at is None
    assert steps(first) == CART_WAIT + [("sms-reminder", "sent"), ("sms-reminder", "completed")]
    assert run.sends(first.id) == [(START + H, "email", "cart-reminder"),
                                   (START + 25 * H, "sms", "cart-reminder-sms")]
    assert run.sends(second.id) == []


# -- scenario 4: lead nurturing -----------------------------------------------------------------

DOWNLOAD = event(timedelta(0), "Form Submitted", form="white-paper")
NURTURE_1 = [("check-1", "branched"), ("nurture-1", "sent"), ("wait-1", "waiting")]
TO_NURTURE_2 = [("wait-1", "resumed"), ("check-2", "branched"), ("nurture-2", "sent"), ("wait-2", "waiting")]


def notifications(run):
    return [(at, action.destination) for at, _, action in run.actions if isinstance(action, Notification)]


def test_a_lead_who_never_qualifies_gets_the_whole_educational_sequence_and_nothing_goes_to_the_crm():
    run = simulate(journey("lead-nurturing"), person(stage="lead"), [DOWNLOAD], START)
    [enrollment] = run.enrollments
    assert steps(enrollment) == NURTURE_1 + TO_NURTURE_2 + [
        ("wait-2", "resumed"), ("check-3", "branched"), ("nurture-3", "sent"), ("wait-3", "waiting"),
        ("wait-3", "resumed"), ("check-4", "branched"), ("sequence-done", "exited")]
    assert run.sends() == [(START, "email", "nurture-1"), (START + 4 * D, "email", "nurture-2"),
                           (START + 8 * D, "email", "nurture-3")]
    assert enrollment.trace[-1].at == START + 22 * D and notifications(run) == []
    assert enrollment.converted_at is None


def test_becoming_mql_stops_the_sequence_at_once_and_posts_the_lead_to_the_crm():
    timeline = [DOWNLOAD, entered(5 * D, "mql"), event(5 * D, "Stage Changed", **{"from": "lead", "to": "mql"})]
    run = simulate(journey("lead-nurturing"), person(stage="lead"), timeline, START)
    [enrollment] = run.enrollments
    assert steps(enrollment) == NURTURE_1 + TO_NURTURE_2 + [
        ("wait-2", "goal"), ("wait-2", "resumed"), ("tell-crm", "notified"), ("handed-to-sales", "exited")]
    assert enrollment.converted_at == START + 5 * D
    assert notifications(run) == [(START + 5 * D, "crm")]
    assert [template for _, _, template in run.sends()] == ["nurture-1", "nurture-2"]
    assert enrollment.trace[-1].reason == "marketing-qualified, handed to sales"


def test_becoming_mql_without_the_stage_event_stops_the_sequence_before_the_next_email():
    run = simulate(journey("lead-nurturing"), person(stage="lead"), [DOWNLOAD, entered(2 * D, "mql")], START)
    [enrollment] = run.enrollments
    assert timed(enrollment) == [(timedelta(0), *NURTURE_1[0]), (timedelta(0), *NURTURE_1[1]),
                                 (timedelta(0), *NURTURE_1[2]), (2 * D, "wait-1", "goal"),
                                 (4 * D, "wait-1", "resumed"), (4 * D, "check-2", "branched"),
                                 (4 * D, "tell-crm", "notified"), (4 * D, "handed-to-sales", "exited")]
    assert enrollment.trace[5].reason == '{"segment": "mql"} holds: to tell-crm'
    assert [template for _, _, template in run.sends()] == ["nurture-1"]
    assert notifications(run) == [(START + 4 * D, "crm")] and enrollment.converted_at == START + 2 * D


def test_a_lead_already_qualified_when_downloading_goes_to_the_crm_without_any_email():
    run = simulate(journey("lead-nurturing"), person(segments=["mql"], stage="mql"), [DOWNLOAD], START)
    [enrollment] = run.enrollments
    assert steps(enrollment) == [("check-1", "branched"), ("tell-crm", "notified"), ("handed-to-sales", "exited")]
    assert run.sends() == [] and notifications(run) == [(START, "crm")]


def test_only_the_white_paper_form_enrolls_a_lead():
    run = simulate(journey("lead-nurturing"), person(),
                   [event(timedelta(0), "Form Submitted", form="contact-us")], START)
    assert run.enrollments == []


# -- scenario 5: birthday -----------------------------------------------------------------------

BIRTHDAY = [("nine-am", "waiting"), ("nine-am", "resumed"), ("birthday-email", "sent"),
            ("birthday-email", "completed")]


def birthday_run(zone: str, birthday: str, midnight_utc: datetime):
    """The contact enters birthday-today at local midnight of the birthday (what the
    segment's recheck does)."""
    contact = person(timezone=zone, birthday=birthday)
    return simulate(journey("birthday"), contact, [entered(timedelta(0), "birthday-today")], midnight_utc,
                    until=timedelta(days=2))


@pytest.mark.parametrize("zone, birthday, midnight, nine", [
    # Paris moves to summer time at 02:00 on 29 March 2026: midnight is UTC+1, 09:00 is UTC+2.
    ("Europe/Paris", "1990-03-29", datetime(2026, 3, 28, 23, 0, tzinfo=UTC), datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),
    # New York moves to summer time at 02:00 on 8 March 2026: midnight is UTC-5, 09:00 is UTC-4.
    ("America/New_York", "1985-03-08", datetime(2026, 3, 8, 5, 0, tzinfo=UTC), datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
    # Paris back to winter time at 03:00 on 25 October 2026: midnight is UTC+2, 09:00 is UTC+1.
    ("Europe/Paris", "2000-10-25", datetime(2026, 10, 24, 22, 0, tzinfo=UTC), datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),
])
def test_the_birthday_email_goes_at_nine_local_time_across_a_daylight_saving_change(zone, birthday, midnight, nine):
    run = birthday_run(zone, birthday, midnight)
    [enrollment] = run.enrollments
    assert steps(enrollment) == BIRTHDAY
    assert [t.at for t in enrollment.trace] == [midnight, nine, nine, nine]
    assert f"at 09:00 in {zone}" in enrollment.trace[0].reason
    [(at, _, send)] = run.actions
    assert at == nine and isinstance(send, SendAction)
    assert (send.template, send.channel, send.coupon) == ("birthday", "email", "birthday")
    assert enrollment.trace[2].reason == ("email birthday with a coupon from pool birthday requested "
                                          "(the send policy decides delivery)")


def test_the_same_birthday_is_sent_at_each_contacts_own_nine_oclock():
    paris = birthday_run("Europe/Paris", "1990-03-08", datetime(2026, 3, 7, 23, 0, tzinfo=UTC))
    new_york = birthday_run("America/New_York", "1990-03-08", datetime(2026, 3, 8, 5, 0, tzinfo=UTC))
    assert [at for at, _, _ in paris.actions] == [datetime(2026, 3, 8, 8, 0, tzinfo=UTC)]
    assert [at for at, _, _ in new_york.actions] == [datetime(2026, 3, 8, 13, 0, tzinfo=UTC)]


def test_one_birthday_email_per_birthday_and_an_entry_after_nine_waits_for_the_next_birthday():
    contact = person(birthday="1990-03-10")
    midnight = datetime(2026, 3, 9, 23, 0, tzinfo=UTC)
    timeline = [entered(timedelta(0), "birthday-today"), left(D, "birthday-today"),
                entered(2 * D, "birthday-today")]  # e.g. the trait rewritten: no second coupon
    run = simulate(journey("birthday"), contact, timeline, midnight, until=timedelta(days=5))
    assert len(run.enrollments) == 1 and len(run.actions) == 1
    assert run.refused == [(midnight + 2 * D, "entered 2 days ago; re-entry after 300 days")]
    late = simulate(journey("birthday"), contact, [entered(timedelta(0), "birthday-today")],
                    datetime(2026, 3, 10, 12, 0, tzinfo=UTC), until=timedelta(days=5))
    [enrollment] = late.enrollments
    assert late.actions == [] and steps(enrollment) == [("nine-am", "waiting")]
    assert enrollment.waiting == WaitUntil(datetime(2027, 3, 10, 8, 0, tzinfo=UTC))


# -- scenario 6: win-back and champions ---------------------------------------------------------


def test_a_lapsed_regular_gets_the_reactivation_offer_and_a_purchase_within_30_days_converts():
    contact = person(segments=["win-back"])
    run = simulate(journey("win-back"), contact, [entered(timedelta(0), "win-back-or-champions"),
                                                  event(10 * D, "Order Completed", order_id="o1", revenue=40)], START)
    [enrollment] = run.enrollments
    assert steps(enrollment) == [("which-customer", "branched"), ("reactivation-offer", "sent"),
                                 ("conversion-window", "waiting"), ("conversion-window", "goal")]
    assert enrollment.trace[0].reason == '{"segment": "win-back"} holds: to reactivation-offer'
    assert run.sends() == [(START, "email", "win-back-offer")]
    assert enrollment.converted_at == START + 10 * D and enrollment.status == "exited"


def test_a_lapsed_regular_who_does_not_come_back_ends_after_the_30_day_window():
    run = simulate(journey("win-back"), person(segments=["win-back"]),
                   [entered(timedelta(0), "win-back-or-champions")], START)
    [enrollment] = run.enrollments
    assert timed(enrollment) == [(timedelta(0), "which-customer", "branched"),
                                 (timedelta(0), "reactivation-offer", "sent"),
                                 (timedelta(0), "conversion-window", "waiting"),
                                 (30 * D, "conversion-window", "resumed"),
                                 (30 * D, "conversion-window", "completed")]
    assert enrollment.converted_at is None


def test_a_champion_gets_the_thank_you_gift_instead_of_the_offer():
    run = simulate(journey("win-back"), person(segments=["champions-thank-you"]),
                   [entered(timedelta(0), "win-back-or-champions")], START)
    [enrollment] = run.enrollments
    assert steps(enrollment) == [("which-customer", "branched"), ("thank-you", "sent"), ("thank-you", "completed")]
    assert enrollment.trace[0].reason == '{"segment": "champions-thank-you"} holds: to thank-you'
    assert run.sends() == [(START, "email", "champions-thank-you")]


def test_win_back_is_entered_at_most_once_in_90_days_and_not_by_entering_another_segment():
    timeline = [entered(timedelta(0), "win-back"), entered(timedelta(0), "win-back-or-champions"),
                left(40 * D, "win-back-or-champions"), entered(50 * D, "win-back-or-champions")]
    run = simulate(journey("win-back"), person(), timeline, START, until=timedelta(days=80))
    assert [e.entered_at for e in run.enrollments] == [START]
    assert run.refused == [(START + 50 * D, "entered 50 days ago; re-entry after 90 days")]
    assert [template for _, _, template in run.sends()] == ["win-back-offer"]
