"""Scenarios 1 and 2 run on the virtual clock through the engine, asserted on the trace."""
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.domain.journeys.language import parse_journey
from chalicelib.domain.journeys.simulator import Scripted, simulate

EXAMPLES = Path(__file__).resolve().parents[3] / "chalicelib" / "definitions" / "journeys"
START = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


def journey(name):
    return parse_journey((EXAMPLES / f"{name}.yaml").read_text())


def shopper(sms=False):
    consent = {"sms": {"status": "granted", "at": "2026-01-01T00:00:00Z"}} if sms else {}
    return Contact(id="c1", created_at="2026-01-01T00:00:00Z", traits={"timezone": "Europe/Paris"}, consent=consent)


def added(cart, after=timedelta(0)):
    return Scripted(after, {"event": "Product Added", "properties": {"cart_id": cart}})


def bought(cart, after):
    return Scripted(after, {"event": "Order Completed", "properties": {"cart_id": cart}})


def test_cart_without_purchase_gets_the_email_after_an_hour_and_the_sms_a_day_later_with_consent():
    run = simulate(journey("abandoned-cart"), shopper(sms=True), [added("k1")], START)
    assert run.sends() == [(START + H, "email", "cart-reminder"), (START + 25 * H, "sms", "cart-reminder-sms")]
    assert run.enrollment("k1").status == "completed"


def test_without_sms_consent_only_the_email_is_sent_and_the_trace_says_why():
    run = simulate(journey("abandoned-cart"), shopper(sms=False), [added("k1")], START)
    assert run.sends() == [(START + H, "email", "cart-reminder")]
    last = run.enrollment("k1").trace[-1]
    assert (last.node, last.decision, last.reason) == ("no-sms", "exited", "no SMS consent")


def test_buying_the_cart_within_the_hour_sends_nothing_and_is_the_goal():
    run = simulate(journey("abandoned-cart"), shopper(sms=True), [added("k1"), bought("k1", 30 * timedelta(minutes=1))],
                   START)
    assert run.sends() == []
    enrollment = run.enrollment("k1")
    assert enrollment.status == "exited" and enrollment.converted_at == START + timedelta(minutes=30)
    assert [t.decision for t in enrollment.trace] == ["waiting", "goal"]


def test_buying_after_the_email_stops_the_sms():
    run = simulate(journey("abandoned-cart"), shopper(sms=True), [added("k1"), bought("k1", 5 * H)], START)
    assert run.sends() == [(START + H, "email", "cart-reminder")]
    assert run.enrollment("k1").converted_at == START + 5 * H


def test_buying_another_cart_does_not_end_this_one_and_a_second_cart_runs_its_own_enrollment():
    run = simulate(journey("abandoned-cart"), shopper(sms=True),
                   [added("k1"), added("k2", 10 * timedelta(minutes=1)), bought("k2", 20 * timedelta(minutes=1))],
                   START)
    first, second = run.enrollment("k1"), run.enrollment("k2")
    assert second.converted_at == START + 20 * timedelta(minutes=1) and first.converted_at is None
    assert run.sends(first.id) == [(START + H, "email", "cart-reminder"), (START + 25 * H, "sms", "cart-reminder-sms")]
    assert run.sends(second.id) == []


def test_adding_to_the_same_cart_again_does_not_enrol_twice():
    run = simulate(journey("abandoned-cart"), shopper(), [added("k1"), added("k1", 5 * timedelta(minutes=1))], START)
    assert len(run.enrollments) == 1
    assert run.refused == [(START + 5 * timedelta(minutes=1), "already enrolled for k1")]


def signup(after=timedelta(0)):
    return Scripted(after, {"event": "Consent Updated", "properties": {"channel": "email", "status": "granted"}})


def session(after):
    return Scripted(after, {"event": "Session Started"})


def test_welcome_series_sends_welcome_onboarding_and_tips_to_an_inactive_contact():
    run = simulate(journey("welcome-series"), shopper(), [signup(), session(timedelta(days=1))], START)
    assert run.sends() == [(START, "email", "welcome"), (START + timedelta(days=2), "email", "onboarding"),
                           (START + timedelta(days=5), "email", "tips")]
    trace = run.enrollments[0].trace
    assert any(t.node == "active" and t.reason == "no condition holds: otherwise to tips" for t in trace)


def test_welcome_series_skips_tips_after_three_sessions():
    timeline = [signup(), session(timedelta(days=1)), session(timedelta(days=3)), session(timedelta(days=4))]
    run = simulate(journey("welcome-series"), shopper(), timeline, START)
    assert [template for _, _, template in run.sends()] == ["welcome", "onboarding"]
    enrollment = run.enrollments[0]
    assert enrollment.status == "exited"
    assert enrollment.trace[-1].reason == "active already (three sessions)"


def test_welcome_series_is_entered_once():
    run = simulate(journey("welcome-series"), shopper(), [signup(), signup(timedelta(days=10))], START)
    assert len(run.enrollments) == 1 and run.refused[0][1] == "entered before; this journey is entered once"


SEGMENTED = parse_journey("""
id: vip
trigger: {segment_entered: vip}
entry: {re_entry: always}
exit: [{segment_exited: customers}]
goal: {segment: buyers}
start: hello
nodes:
  hello: {send: {template: vip-hello}, next: pause}
  pause: {wait: 3 days, next: check}
  check:
    branch: [{when: {segment: gold}, next: gold-gift}]
    otherwise: thanks
  gold-gift: {send: {template: gold}}
  thanks: {send: {template: thanks}}
""")


def segment(after, name, entered=True):
    return Scripted(after, segment=name, entered=entered)


def test_a_scripted_segment_entry_enrolls_and_later_changes_are_seen_by_branches():
    run = simulate(SEGMENTED, shopper(), [segment(timedelta(0), "other"), segment(H, "vip"),
                                          segment(timedelta(days=1), "gold")], START)
    [enrollment] = run.enrollments
    assert enrollment.entered_at == START + H
    assert [(t.node, t.decision) for t in enrollment.trace] == [
        ("hello", "sent"), ("pause", "waiting"), ("pause", "resumed"), ("check", "branched"), ("gold-gift", "sent"),
        ("gold-gift", "completed")]
    assert [template for _, _, template in run.sends()] == ["vip-hello", "gold"]


def test_scripted_segment_changes_are_the_goal_and_the_exits_of_running_enrollments():
    converted = simulate(SEGMENTED, shopper(), [segment(timedelta(0), "vip"), segment(H, "buyers")], START)
    assert [(t.node, t.decision) for t in converted.enrollments[0].trace][-1] == ("pause", "goal")
    assert converted.enrollments[0].converted_at == START + H
    left = simulate(SEGMENTED, shopper(), [segment(timedelta(0), "customers"), segment(timedelta(0), "vip"),
                                           segment(H, "customers", entered=False), segment(2 * H, "vip", False),
                                           segment(3 * H, "vip")], START)
    first, second = left.enrollments
    assert first.status == "exited" and first.trace[-1].reason == "left segment customers: an exit criterion"
    assert second.entered_at == START + 3 * H  # leaving vip is no trigger; entering it again is


def test_a_scripted_change_that_changes_no_membership_is_no_change():
    already = Contact(id="c1", created_at="2026-01-01T00:00:00Z", segments={"vip": {"since": "2026-01-01"}})
    run = simulate(SEGMENTED, already, [segment(timedelta(0), "vip"), segment(H, "customers", entered=False)], START)
    assert run.enrollments == [] and run.refused == []


def test_a_scripted_step_is_an_event_or_a_segment_change():
    with pytest.raises(ValueError):
        Scripted(H)
    with pytest.raises(ValueError):
        Scripted(H, {"event": "X"}, segment="vip")
