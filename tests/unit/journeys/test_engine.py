"""Node semantics: waits in the contact's zone across DST, deterministic ids and draws, events."""
from datetime import datetime, timedelta, timezone

from chalicelib.domain.contact import Contact
from chalicelib.domain.journeys.engine import (
    ContactView,
    Notification,
    ProfileUpdate,
    SendAction,
    WaitForEvent,
    WaitUntil,
    advance,
    enroll,
    react,
)
from chalicelib.domain.journeys.language import parse_journey

UTC = timezone.utc


def contact(**traits):
    return Contact(id="c1", created_at="2026-01-01T00:00:00Z", traits={"timezone": "Europe/Paris", **traits})


def journey(nodes: str, trigger="trigger: {event: Signed Up}", extra=""):
    return parse_journey(f"id: j\n{trigger}\n{extra}\nstart: first\nnodes:\n{nodes}")


def run(j, now, c=None, enrollment_id="e1"):
    return advance(j, enroll(j, enrollment_id, "c1", now), ContactView(c or contact()), now)


def test_wait_until_a_time_of_day_is_on_the_wall_clock_across_the_spring_change():
    j = journey("  first: {wait_until: {time: '09:00'}, next: mail}\n  mail: {send: {template: hello}}\n")
    # Saturday 28 March 2026 10:00 Paris (UTC+1); Paris moves to UTC+2 on Sunday 29 March.
    step = run(j, datetime(2026, 3, 28, 9, 0, tzinfo=UTC))
    assert step.wait == WaitUntil(datetime(2026, 3, 29, 7, 0, tzinfo=UTC))  # 09:00 CEST


def test_wait_until_respects_weekdays():
    j = journey("  first: {wait_until: {time: '09:00', weekdays: [mon]}, next: mail}\n"
                "  mail: {send: {template: hello}}\n")
    step = run(j, datetime(2026, 3, 28, 9, 0, tzinfo=UTC))  # a Saturday
    assert step.wait == WaitUntil(datetime(2026, 3, 30, 7, 0, tzinfo=UTC))


def test_wait_until_a_birthday_at_nine_local_with_an_offset():
    j = journey("  first: {wait_until_date: {trait: birthday, time: '09:00', yearly: true, offset: '-1 day'},"
                " next: mail}\n  mail: {send: {template: hello}}\n")
    step = run(j, datetime(2026, 3, 1, tzinfo=UTC), contact(birthday="1990-07-14"))
    assert step.wait == WaitUntil(datetime(2026, 7, 13, 7, 0, tzinfo=UTC))
    missing = run(j, datetime(2026, 3, 1, tzinfo=UTC))
    assert missing.enrollment.status == "exited" and "birthday is missing" in missing.trace[-1].reason


def test_a_retried_advance_returns_the_same_actions_with_the_same_ids():
    j = journey("  first: {send: {template: hello}, next: tag}\n"
                "  tag: {update: {tags: {add: [welcomed]}, score: 5}, next: crm}\n"
                "  crm: {notify: {destination: crm-hook}, next: pause}\n"
                "  pause: {wait: 1 day, next: first}\n")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    first, again = run(j, now), run(j, now)
    assert first.actions == again.actions
    assert first.actions == (SendAction("e1:first:0", "first", "hello", "email"),
                             ProfileUpdate("e1:tag:0", "tag", {}, ("welcomed",), (), 5.0),
                             Notification("e1:crm:0", "crm", "crm-hook"))
    later = advance(j, first.enrollment, ContactView(contact()), now + timedelta(days=1))
    assert [a.id for a in later.actions] == ["e1:first:1", "e1:tag:1", "e1:crm:1"]  # a loop sends anew


def test_a_send_with_a_coupon_pool_carries_the_pool_and_the_trace_names_it():
    j = journey("  first: {send: {template: birthday, coupon: birthday}, next: plain}\n"
                "  plain: {send: {template: thanks, channel: sms}}\n")
    step = run(j, datetime(2026, 3, 1, tzinfo=UTC))
    assert step.actions == (SendAction("e1:first:0", "first", "birthday", "email", "birthday"),
                            SendAction("e1:plain:0", "plain", "thanks", "sms", None))
    assert [t.reason for t in step.trace if t.decision == "sent"] == [
        "email birthday with a coupon from pool birthday requested (the send policy decides delivery)",
        "sms thanks requested (the send policy decides delivery)"]


def test_split_is_fixed_per_enrollment_and_follows_the_shares():
    j = journey("  first: {split: [{percent: 50, next: a}, {percent: 50, next: b}]}\n"
                "  a: {exit: a}\n  b: {exit: b}\n")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    outcomes = [run(j, now, enrollment_id=f"e{i}").enrollment.trace[-1].node for i in range(200)]
    assert outcomes == [run(j, now, enrollment_id=f"e{i}").enrollment.trace[-1].node for i in range(200)]
    assert 70 < outcomes.count("a") < 130


def test_experiment_arms_are_sticky_per_contact_and_recorded():
    j = journey("  first: {experiment: subject, arms: {A: 45, B: 45, holdout: 10},"
                " next: {A: a, B: b, holdout: h}}\n  a: {exit: a}\n  b: {exit: b}\n  h: {exit: h}\n")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    arms = {run(j, now, enrollment_id=f"e{i}").enrollment.arms["subject"] for i in range(5)}
    assert len(arms) == 1  # the contact, not the enrollment, decides


def test_wait_for_event_with_a_key_resumes_on_that_key_only_and_times_out_otherwise():
    j = journey("  first: {wait_for: {event: Order Completed, match_key: true}, timeout: 1 hour,"
                " on_event: paid, on_timeout: remind}\n  paid: {exit: bought}\n  remind: {send: {template: remind}}\n",
                trigger="trigger: {event: Product Added, key: properties.cart_id}")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    waiting = advance(j, enroll(j, "e1", "c1", now, key="k1"), ContactView(contact()), now)
    assert waiting.wait == WaitForEvent("Order Completed", "k1", now + timedelta(hours=1))
    other = {"event": "Order Completed", "properties": {"cart_id": "k2"}}
    assert react(j, waiting.enrollment, ContactView(contact()), other, now + timedelta(minutes=5)) is None
    same = {"event": "Order Completed", "properties": {"cart_id": "k1"}}
    resumed = react(j, waiting.enrollment, ContactView(contact()), same, now + timedelta(minutes=5))
    assert resumed.enrollment.status == "exited" and resumed.trace[-1].reason == "bought"
    timed_out = advance(j, waiting.enrollment, ContactView(contact()), now + timedelta(hours=1))
    assert [a.template for a in timed_out.actions] == ["remind"]
    assert timed_out.trace[0].reason == "no Order Completed within 1 hour: timed out"


def test_an_exit_event_ends_the_enrollment_at_once():
    j = journey("  first: {wait: 3 days, next: mail}\n  mail: {send: {template: hello}}\n",
                extra="exit:\n  - event: Account Deleted\n")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    waiting = run(j, now)
    step = react(j, waiting.enrollment, ContactView(contact()), {"event": "Account Deleted"}, now + timedelta(hours=2))
    assert step.enrollment.status == "exited" and step.enrollment.waiting is None
    assert advance(j, step.enrollment, ContactView(contact()), now + timedelta(days=3)).actions == ()


def test_branch_reads_segment_conditions_first_match_wins():
    j = journey("  first:\n    branch:\n      - {when: {segment: vips}, next: v}\n"
                "      - {when: {trait: plan, equals: pro}, next: p}\n    otherwise: o\n"
                "  v: {exit: v}\n  p: {exit: p}\n  o: {exit: o}\n")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    pro = contact(plan="pro")
    assert run(j, now, pro).enrollment.trace[-1].node == "p"
    pro.segments = {"vips": {"since": "2026-01-01T00:00:00Z"}}
    assert run(j, now, pro).enrollment.trace[-1].node == "v"
    assert run(j, now).enrollment.trace[-1].node == "o"
