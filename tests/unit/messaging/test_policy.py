"""The policy gate: suppression, consent, circuit breaker, frequency caps, quiet hours across DST
changes, the transactional lane and the send-rate budget, with a fixed clock."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time, timedelta, timezone
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from chalicelib.domain.messaging.consent import (
    ADMIN_API,
    ALL_TOPICS,
    BOUNCED_HARD,
    COMPLAINED,
    DENIED,
    DOUBLE_OPT_IN,
    ERASED,
    GRANTED,
    MARKETING,
    PENDING,
    TRANSACTIONAL,
    UNSUBSCRIBED,
    ConsentProof,
    ConsentRecord,
    ConsentState,
    suppress,
)
from chalicelib.domain.messaging.policy import (
    DEFER,
    SEND,
    SKIP,
    BreakerState,
    BreakerThresholds,
    ContactSendState,
    Decision,
    FrequencyCap,
    PastSend,
    PolicySettings,
    QuietHours,
    RateBudget,
    RateState,
    SendCounters,
    SendHistory,
    SendRequest,
    decide,
    quiet_until,
    rate_ready_at,
    take_send,
    tokens_available,
)

UTC = timezone.utc
ROME = ZoneInfo("Europe/Rome")
NEW_YORK = ZoneInfo("America/New_York")
SALT = b"installation-salt-0123456789"
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MIN = timedelta(minutes=1)
# A Wednesday, 12:00 in Rome: outside quiet hours.
NOON = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
PROOF = ConsentProof("Send me offers", "https://shop.example/signup", "203.0.113.7", "UA")


def grant(channel, topic=ALL_TOPICS, status=GRANTED, at=NOON - 30 * DAY, source=ADMIN_API):
    return ConsentRecord(channel, topic, status, at, source, PROOF)


def contact(*records, suppressions=(), tz="Europe/Rome") -> ContactSendState:
    consent = ConsentState()
    for r in records or (grant("email"), grant("sms"), grant("push"), grant("webhook")):
        consent = consent.with_record(r)
    return ContactSendState(consent, tuple(suppressions), tz)


def request(channel="email", lane=MARKETING, topic="offers", requested_at=None, not_after=None, now=NOON):
    return SendRequest("msg-1", channel, lane, topic, requested_at or now, not_after)


def local(zone, *args) -> datetime:
    """An instant given by its wall-clock reading in a zone (fold=0 where ambiguous)."""
    return datetime(*args, tzinfo=zone).astimezone(UTC)


SETTINGS = PolicySettings()
NO_HISTORY = SendHistory()


def judge(req=None, who=None, history=NO_HISTORY, settings=SETTINGS, now=NOON) -> Decision:
    return decide(req or request(now=now), who or contact(), history, settings, now)


def marketing_sends(*moments, channel="email"):
    return tuple(PastSend(m, channel, MARKETING) for m in moments)


# -- the happy path and the request itself ----------------------------------------------------


def test_a_consented_marketing_email_at_noon_is_sent():
    decision = judge()
    assert decision == Decision(SEND)
    assert decision.to_record() == {"outcome": "send", "code": None, "reason": None, "until": None}


@pytest.mark.parametrize("req, text", [
    (request(channel="fax"), "There is no channel called 'fax'."),
    (request(lane="urgent"), "A message is marketing or transactional, not 'urgent'."),
])
def test_an_invalid_request_is_skipped_with_a_reason(req, text):
    decision = judge(req)
    assert decision.outcome == SKIP and decision.reason.code == "invalid_request" and decision.reason.text == text


def test_now_must_be_aware():
    with pytest.raises(ValueError):
        decide(request(), contact(), NO_HISTORY, SETTINGS, datetime(2026, 12, 2, 12))


# -- suppression ------------------------------------------------------------------------------


def test_a_hard_bounce_blocks_even_a_transactional_message():
    bounced = suppress("email", "ada@example.com", BOUNCED_HARD, NOON - DAY, SALT)
    for lane in (MARKETING, TRANSACTIONAL):
        decision = judge(request(lane=lane), contact(suppressions=[bounced]))
        assert decision.outcome == SKIP
        assert decision.reason.code == "suppressed_bounced_hard"
        assert decision.reason.text == ("This email address is suppressed since 2026-12-01 11:00 UTC: "
                                        "the address does not exist (hard bounce).")


@pytest.mark.parametrize("reason", [COMPLAINED, UNSUBSCRIBED, ERASED])
def test_complaints_unsubscribes_and_erasures_block_marketing_only(reason):
    entry = suppress("email", "ada@example.com", reason, NOON - DAY, SALT)
    assert judge(who=contact(suppressions=[entry])).reason.code == f"suppressed_{reason}"
    assert judge(request(lane=TRANSACTIONAL), contact(suppressions=[entry])).outcome == SEND


def test_suppression_of_another_channel_does_not_block():
    entry = suppress("sms", "+393331234567", BOUNCED_HARD, NOON - DAY, SALT)
    assert judge(who=contact(suppressions=[entry])).outcome == SEND
    assert judge(request(channel="sms"), contact(suppressions=[entry])).reason.code == "suppressed_bounced_hard"


def test_a_later_confirmed_opt_in_lifts_an_unsubscribe_but_nothing_lifts_a_hard_bounce():
    unsubscribed = suppress("email", "ada@example.com", UNSUBSCRIBED, NOON - 10 * DAY, SALT)
    bounced = suppress("email", "ada@example.com", BOUNCED_HARD, NOON - 10 * DAY, SALT)
    came_back = grant("email", at=NOON - DAY, source=DOUBLE_OPT_IN)
    assert judge(who=contact(came_back, suppressions=[unsubscribed])).outcome == SEND
    assert judge(who=contact(came_back, suppressions=[bounced])).reason.code == "suppressed_bounced_hard"
    imported = grant("email", at=NOON - DAY, source=ADMIN_API)
    assert judge(who=contact(imported, suppressions=[unsubscribed])).reason.code == "suppressed_unsubscribed"


def test_suppression_is_checked_before_consent():
    bounced = suppress("email", "ada@example.com", BOUNCED_HARD, NOON - DAY, SALT)
    assert judge(who=contact(grant("sms"), suppressions=[bounced])).reason.code == "suppressed_bounced_hard"


# -- consent ----------------------------------------------------------------------------------


@pytest.mark.parametrize("records, code, text", [
    ((grant("sms"),), "no_consent", "The contact never agreed to receive marketing by email about offers."),
    ((grant("email", status=DENIED),), "consent_denied", "The contact opted out of email about offers."),
    ((grant("email"), grant("email", "offers", DENIED)), "consent_denied", "The contact opted out of email about offers."),
    ((grant("email", "offers", PENDING),), "consent_pending",
     "The contact has not yet confirmed the subscription to email about offers."),
])
def test_marketing_needs_consent_for_the_channel_and_topic(records, code, text):
    decision = judge(who=contact(*records))
    assert decision.outcome == SKIP and decision.reason.code == code and decision.reason.text == text


def test_a_contact_without_sms_consent_never_gets_a_marketing_sms():
    assert judge(request(channel="sms"), contact(grant("email"))).reason.code == "no_consent"


def test_consent_to_one_topic_allows_that_topic_only():
    who = contact(grant("email", "newsletter"))
    assert judge(request(topic="newsletter"), who).outcome == SEND
    assert judge(request(topic="offers"), who).reason.code == "no_consent"


def test_transactional_email_needs_no_marketing_consent():
    assert judge(request(lane=TRANSACTIONAL, topic=None), contact(grant("email", status=DENIED))).outcome == SEND
    assert judge(request(lane=TRANSACTIONAL, topic=None), contact(grant("sms"))).outcome == SEND


@pytest.mark.parametrize("channel", ["sms", "push"])
def test_transactional_sms_and_push_honour_a_channel_wide_denial(channel):
    decision = judge(request(channel=channel, lane=TRANSACTIONAL, topic=None), contact(grant(channel, status=DENIED)))
    assert decision.outcome == SKIP and decision.reason.code == "consent_denied"
    assert "transactional messages included" in decision.reason.text
    # A denied marketing topic is not a STOP: the receipt still goes.
    topic_only = contact(grant(channel), grant(channel, "offers", DENIED))
    assert judge(request(channel=channel, lane=TRANSACTIONAL, topic=None), topic_only).outcome == SEND


# -- transactional lane bypasses pacing -------------------------------------------------------


def test_the_transactional_lane_bypasses_caps_quiet_hours_and_the_breaker():
    late = local(ROME, 2026, 12, 2, 23, 0)
    history = SendHistory(sends=marketing_sends(late - DAY, late - 2 * DAY, late - 3 * DAY),
                          breakers={"email": _open_breaker()})
    assert judge(request(lane=TRANSACTIONAL, now=late), history=history, now=late).outcome == SEND
    assert judge(request(now=late), history=history, now=late).outcome == DEFER


# -- circuit breaker --------------------------------------------------------------------------


def _open_breaker() -> BreakerState:
    return BreakerState.from_counters(SendCounters(sent=1000, bounced=60, complained=0, window=timedelta(hours=24)))


@pytest.mark.parametrize("sent, bounced, complained, code", [
    (1000, 49, 0, None),
    (1000, 50, 0, "breaker_bounce_rate"),  # 5 % exactly: SES's review threshold is reached
    (1000, 0, 1, "breaker_complaint_rate"),  # 0.1 % exactly
    (2000, 0, 1, None),  # 0.05 %
    (1000, 80, 3, "breaker_complaint_rate"),  # both: the complaint rate is reported first
    (499, 100, 10, None),  # below the minimum volume nothing trips
    (0, 0, 0, None),
])
def test_the_breaker_opens_at_ses_review_thresholds(sent, bounced, complained, code):
    state = BreakerState.from_counters(SendCounters(sent, bounced, complained, timedelta(hours=24)))
    assert state.open is (code is not None)
    assert (state.reason.code if state.reason else None) == code
    assert state.volume == sent


def test_the_breaker_explains_itself():
    state = BreakerState.from_counters(SendCounters(1200, 72, 3, timedelta(hours=24)))
    assert state.bounce_rate == Fraction(6, 100) and state.complaint_rate == Fraction(1, 400)
    assert state.reason.text == ("Marketing email is paused: of the 1,200 sent in the last 24 hours, 0.25 % of them "
                                 "drew a spam complaint (limit 0.1 %) and 6 % of them bounced (limit 5 %). "
                                 "Clean the audience or fix the content before resuming.")
    state = BreakerState.from_counters(SendCounters(100, 10, 0, timedelta(days=7)), "sms",
                                       BreakerThresholds(min_volume=100))
    assert state.reason.text.startswith("Marketing sms is paused: of the 100 sent in the last 7 days, 10 % of them bounced")


def test_an_open_breaker_defers_marketing_on_its_channel_only():
    history = SendHistory(breakers={"email": _open_breaker()})
    decision = judge(history=history)
    assert decision.outcome == DEFER and decision.until == NOON + HOUR
    assert decision.reason.code == "breaker_bounce_rate"
    assert judge(request(channel="sms"), history=history).outcome == SEND


def test_a_breaker_that_stays_open_past_the_horizon_skips():
    history = SendHistory(breakers={"email": _open_breaker()})
    decision = judge(request(requested_at=NOON - 7 * DAY + 30 * MIN), history=history)
    assert decision.outcome == SKIP and decision.reason.code == "breaker_bounce_rate"
    assert decision.reason.text.endswith("That is past this message's limit of 2026-12-02 12:30 Europe/Rome, "
                                         "so it is skipped.")


def test_consent_is_checked_before_the_breaker():
    history = SendHistory(breakers={"email": _open_breaker()})
    assert judge(who=contact(grant("sms")), history=history).reason.code == "no_consent"


# -- frequency cap ----------------------------------------------------------------------------


def test_a_fourth_marketing_message_in_a_week_is_deferred_until_the_oldest_leaves_the_window():
    oldest = local(ROME, 2026, 11, 28, 10, 0)
    history = SendHistory(sends=marketing_sends(oldest, NOON - 2 * DAY, NOON - HOUR))
    decision = judge(history=history)
    assert decision.outcome == DEFER
    assert decision.until == oldest + 7 * DAY
    assert decision.reason.code == "frequency_cap"
    assert decision.reason.text == ("The contact already reached the limit of 3 marketing messages per 7 days; "
                                    "this message waits until 2026-12-05 10:00 Europe/Rome.")
    assert judge(history=history, now=decision.until, req=request(requested_at=NOON)).outcome == SEND


def test_the_cap_counts_every_channel_but_not_transactional_messages():
    mixed = (PastSend(NOON - DAY, "sms", MARKETING), PastSend(NOON - 2 * DAY, "push", MARKETING),
             PastSend(NOON - 3 * DAY, "email", MARKETING))
    assert judge(history=SendHistory(sends=mixed)).reason.code == "frequency_cap"
    receipts = tuple(PastSend(NOON - i * HOUR, "email", TRANSACTIONAL) for i in range(1, 6))
    assert judge(history=SendHistory(sends=receipts + mixed[:2])).outcome == SEND


def test_sends_older_than_the_period_do_not_count():
    history = SendHistory(sends=marketing_sends(NOON - 7 * DAY, NOON - 8 * DAY, NOON - DAY, NOON - 2 * DAY))
    assert judge(history=history).outcome == SEND  # a send exactly 7 days ago has just left the window


def test_a_capped_message_lands_after_quiet_hours_when_the_cap_frees_at_night():
    freed_at_night = local(ROME, 2026, 11, 26, 23, 30)
    history = SendHistory(sends=marketing_sends(freed_at_night, NOON - DAY, NOON - 2 * DAY))
    decision = judge(history=history)
    assert decision.outcome == DEFER and decision.reason.code == "frequency_cap"
    assert decision.until == local(ROME, 2026, 12, 4, 8, 0)
    assert decision.reason.text.endswith("waits until 2026-12-04 08:00 Europe/Rome, then after quiet hours (21:00-08:00).")


def test_several_caps_all_hold():
    settings = replace(SETTINGS, caps=(FrequencyCap(1, DAY), FrequencyCap(3, 7 * DAY)))
    history = SendHistory(sends=marketing_sends(NOON - 2 * HOUR))
    decision = judge(history=history, settings=settings)
    assert decision.reason.code == "frequency_cap" and decision.until == NOON - 2 * HOUR + DAY
    assert "1 marketing message per 24 hours" in decision.reason.text
    # The daily cap frees at 10:00 tomorrow, but the weekly one only on Friday at 10:00.
    history = SendHistory(sends=marketing_sends(NOON - 2 * HOUR - 5 * DAY, NOON - 2 * HOUR - 3 * DAY, NOON - 2 * HOUR))
    assert judge(history=history, settings=settings).until == NOON - 2 * HOUR + 2 * DAY


def test_a_cap_beyond_the_horizon_skips_with_that_reason():
    history = SendHistory(sends=marketing_sends(NOON - HOUR, NOON - 2 * HOUR, NOON - 3 * HOUR))
    settings = replace(SETTINGS, defer_horizon=3 * DAY)
    decision = judge(history=history, settings=settings)
    assert decision.outcome == SKIP and decision.reason.code == "frequency_cap"
    assert "past this message's limit of 2026-12-05 12:00 Europe/Rome" in decision.reason.text


def test_a_message_that_expires_sooner_than_the_horizon_skips_sooner():
    history = SendHistory(sends=marketing_sends(NOON - 6 * DAY, NOON - 2 * HOUR, NOON - 3 * HOUR))
    assert judge(history=history).outcome == DEFER  # the cap frees tomorrow
    flash_sale = request(not_after=NOON + 6 * HOUR)
    assert judge(flash_sale, history=history).outcome == SKIP


def test_the_horizon_counts_from_the_first_request_so_deferrals_cannot_repeat_forever():
    history = SendHistory(sends=marketing_sends(NOON - 6 * DAY, NOON - 2 * HOUR, NOON - 3 * HOUR))
    assert judge(request(requested_at=NOON - 6 * DAY), history=history).outcome == DEFER  # frees at the limit
    assert judge(request(requested_at=NOON - 6 * DAY - HOUR), history=history).outcome == SKIP


def test_caps_and_quiet_hours_leave_webhooks_and_on_site_content_alone():
    late = local(ROME, 2026, 12, 2, 23, 0)
    history = SendHistory(sends=marketing_sends(late - HOUR, late - 2 * HOUR, late - 3 * HOUR))
    assert judge(request(channel="webhook", now=late), history=history, now=late).outcome == SEND
    assert judge(request(channel="onsite", now=late), contact(grant("onsite")), history, now=late).outcome == SEND


# -- quiet hours ------------------------------------------------------------------------------


def test_a_send_at_23_in_the_contacts_zone_waits_until_morning():
    late = local(ROME, 2026, 12, 2, 23, 0)
    decision = judge(request(now=late), now=late)
    assert decision.outcome == DEFER and decision.reason.code == "quiet_hours"
    assert decision.until == local(ROME, 2026, 12, 3, 8, 0)
    assert decision.reason.text == ("It is quiet hours (21:00-08:00) in the contact's time zone; "
                                    "this message waits until 2026-12-03 08:00 Europe/Rome.")
    assert decision.to_record()["until"] == "2026-12-03T07:00:00+00:00"


@pytest.mark.parametrize("wall, expected", [
    ((20, 59), None), ((21, 0), (2026, 12, 3, 8, 0)), ((0, 30), (2026, 12, 2, 8, 0)),
    ((7, 59), (2026, 12, 2, 8, 0)), ((8, 0), None),
])
def test_quiet_hours_boundaries(wall, expected):
    now = local(ROME, 2026, 12, 2, *wall)
    decision = judge(request(now=now), now=now)
    if expected is None:
        assert decision.outcome == SEND
    else:
        assert decision.until == local(ROME, *expected)


def test_quiet_hours_follow_the_contacts_own_zone():
    now = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)  # 03:00 in Rome, 21:00 in New York
    assert judge(request(now=now), contact(tz="Europe/Rome"), now=now).until == local(ROME, 2026, 12, 2, 8, 0)
    assert judge(request(now=now), contact(tz="America/New_York"), now=now).until == local(NEW_YORK, 2026, 12, 2, 8, 0)
    assert judge(request(now=now), contact(tz="Asia/Tokyo"), now=now).outcome == SEND  # 11:00 there


def test_an_unknown_zone_falls_back_to_the_installation_default():
    now = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)
    for tz in ("Mars/Olympus", "../../etc/passwd", "", None):
        assert judge(request(now=now), contact(tz=tz), now=now).until == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    settings = replace(SETTINGS, default_time_zone="Asia/Tokyo")  # 08:00 there: daytime
    assert judge(request(now=now), contact(tz="Mars/Olympus"), settings=settings, now=now).outcome == SEND


def test_a_daytime_window_that_does_not_cross_midnight():
    settings = replace(SETTINGS, quiet_hours=QuietHours(time(12, 0), time(14, 0)))  # a siesta
    now = local(ROME, 2026, 12, 2, 13, 0)
    assert judge(request(now=now), settings=settings, now=now).until == local(ROME, 2026, 12, 2, 14, 0)
    now = local(ROME, 2026, 12, 2, 23, 0)
    assert judge(request(now=now), settings=settings, now=now).outcome == SEND


def test_no_quiet_hours_and_invalid_windows():
    now = local(ROME, 2026, 12, 2, 23, 0)
    assert judge(request(now=now), settings=replace(SETTINGS, quiet_hours=None), now=now).outcome == SEND
    with pytest.raises(ValueError):
        QuietHours(time(8), time(8))
    with pytest.raises(ValueError):
        FrequencyCap(0, DAY)


# Change days in 2026: Rome springs forward on 29 March (02:00 CET -> 03:00 CEST) and falls back
# on 25 October (03:00 CEST -> 02:00 CET); New York on 8 March (02:00 EST -> 03:00 EDT) and
# 1 November (02:00 EDT -> 01:00 EST).
@pytest.mark.parametrize("zone, evening, morning_utc", [
    (ROME, (2026, 3, 28, 23, 0), datetime(2026, 3, 29, 6, 0, tzinfo=UTC)),  # 08:00 CEST: a 8-hour wall wait lasts 7
    (ROME, (2026, 10, 24, 23, 0), datetime(2026, 10, 25, 7, 0, tzinfo=UTC)),  # 08:00 CET: it lasts 10
    (NEW_YORK, (2026, 3, 7, 23, 0), datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),  # 08:00 EDT
    (NEW_YORK, (2026, 10, 31, 23, 0), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),  # 08:00 EST
])
def test_the_night_before_a_dst_change_ends_at_8_local(zone, evening, morning_utc):
    now = local(zone, *evening)
    decision = judge(request(now=now), contact(tz=zone.key), now=now)
    assert decision.until == morning_utc
    assert decision.until.astimezone(zone).hour == 8
    assert judge(request(now=now), contact(tz=zone.key), now=decision.until).outcome == SEND


@pytest.mark.parametrize("zone, now, until", [
    # A window ending at 02:30, a wall time the spring-forward day skips: it ends at the jump.
    (ROME, datetime(2026, 3, 29, 0, 30, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
    (NEW_YORK, datetime(2026, 3, 8, 6, 30, tzinfo=UTC), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
    # The fall-back day shows 02:30 (Rome) or 01:30 (New York) twice: each pass waits for its own.
    (ROME, datetime(2026, 10, 25, 0, 10, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    (ROME, datetime(2026, 10, 25, 1, 10, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
])
def test_windows_ending_inside_a_dst_gap_or_overlap(zone, now, until):
    quiet = QuietHours(time(22, 0), time(2, 30))
    assert quiet_until(quiet, zone, now) == until


def test_a_window_ending_in_new_yorks_repeated_hour():
    quiet = QuietHours(time(22, 0), time(1, 30))
    first_pass = datetime(2026, 11, 1, 5, 15, tzinfo=UTC)  # 01:15 EDT
    second_pass = datetime(2026, 11, 1, 6, 15, tzinfo=UTC)  # 01:15 EST
    assert quiet_until(quiet, NEW_YORK, first_pass) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert quiet_until(quiet, NEW_YORK, second_pass) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert quiet_until(quiet, NEW_YORK, datetime(2026, 11, 1, 5, 45, tzinfo=UTC)) is None  # 01:45 EDT


def test_a_window_starting_inside_the_gap():
    quiet = QuietHours(time(2, 30), time(6, 0))
    assert quiet_until(quiet, ROME, datetime(2026, 3, 29, 0, 59, tzinfo=UTC)) is None  # 01:59 CET
    assert quiet_until(quiet, ROME, datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize("zone, day", [(ROME, (2026, 3, 29)), (ROME, (2026, 10, 25)),
                                       (NEW_YORK, (2026, 3, 8)), (NEW_YORK, (2026, 11, 1))])
@pytest.mark.parametrize("window", [(time(21), time(8)), (time(22), time(2, 30)), (time(1, 30), time(2, 30)),
                                    (time(0, 0), time(3, 0))])
def test_across_change_days_the_wait_ends_at_the_first_moment_outside_quiet_hours(zone, day, window):
    quiet = QuietHours(*window)
    start = datetime(*day, tzinfo=UTC) - DAY
    for step in range(0, 3 * 24 * 4):  # every 15 minutes over three days around the change
        now = start + step * 15 * MIN
        until = quiet_until(quiet, zone, now)
        is_quiet = quiet.contains(now.astimezone(zone).time())
        if until is None:
            assert not is_quiet
            continue
        assert is_quiet and until > now
        assert not quiet.contains(until.astimezone(zone).time()), (now, until)
        assert quiet.contains((until - timedelta(seconds=1)).astimezone(zone).time()), (now, until)


# -- send rate --------------------------------------------------------------------------------


def test_the_token_bucket_spends_its_burst_then_refills_at_the_quota():
    budget = RateBudget(per_second=2, burst=2)
    state = RateState()
    assert tokens_available(budget, state, NOON) == 2
    taken, state = take_send(budget, state, TRANSACTIONAL, NOON)
    assert taken and tokens_available(budget, state, NOON) == 1
    taken, state = take_send(budget, state, TRANSACTIONAL, NOON)
    assert taken and tokens_available(budget, state, NOON) == 0
    taken, after = take_send(budget, state, TRANSACTIONAL, NOON)
    assert not taken and after == state
    assert rate_ready_at(budget, state, TRANSACTIONAL, NOON) == NOON + timedelta(milliseconds=500)
    assert tokens_available(budget, state, NOON + timedelta(milliseconds=500)) == 1
    assert tokens_available(budget, state, NOON + timedelta(seconds=60)) == 2  # never more than the burst


def test_the_bucket_never_exceeds_the_quota_over_a_long_run():
    budget = RateBudget(per_second=14, burst=14)  # SES's default production rate
    state, sent = RateState(), 0
    moment = NOON
    for _ in range(10_000):  # try every millisecond for ten seconds
        taken, state = take_send(budget, state, MARKETING, moment)
        sent += taken
        moment += timedelta(milliseconds=1)
    assert 14 * 10 <= sent <= 14 * 10 + 14  # the quota per second, plus one burst


def test_marketing_leaves_the_transactional_reserve_untouched():
    budget = RateBudget(per_second=10, burst=10, transactional_reserve=2)
    state = RateState()
    marketing = 0
    while take_send(budget, state, MARKETING, NOON)[0]:
        state = take_send(budget, state, MARKETING, NOON)[1]
        marketing += 1
    assert marketing == 8
    for _ in range(2):
        taken, state = take_send(budget, state, TRANSACTIONAL, NOON)
        assert taken
    assert not take_send(budget, state, TRANSACTIONAL, NOON)[0]


def test_a_busy_channel_defers_briefly_and_a_receipt_goes_first():
    budget = RateBudget(per_second=10, burst=10, transactional_reserve=2)
    state = RateState()
    for _ in range(8):
        state = take_send(budget, state, MARKETING, NOON)[1]
    settings = replace(SETTINGS, rates={"email": budget})
    history = SendHistory(rates={"email": state})
    decision = judge(history=history, settings=settings)
    assert decision.outcome == DEFER and decision.reason.code == "send_rate"
    assert decision.until == NOON + timedelta(milliseconds=100)
    assert decision.reason.text == "The email sending rate (10 per second) is in use; this message goes out in a moment."
    assert judge(request(lane=TRANSACTIONAL), history=history, settings=settings).outcome == SEND


def test_a_fractional_quota_rounds_the_interval_up():
    assert RateBudget(per_second=3).interval_us() == 333_334
    assert RateBudget(per_second=0.5).interval_us() == 2_000_000


# -- reading a stored contact, and the module's purity ----------------------------------------


def test_the_gate_reads_a_stored_contacts_consent_and_time_zone():
    from chalicelib.domain.contact import Contact

    stored = Contact(id="c1", created_at="2026-01-01T00:00:00.000Z",
                     consent={"email": {"status": "granted", "at": "2026-11-01T00:00:00.000Z", "source": "form"}},
                     last_context={"timezone": "America/New_York"})
    state = ContactSendState.of(stored)
    assert state.time_zone == "America/New_York" and state.suppressions == ()
    assert state.consent.effective("email", "offers").granted
    stored.traits["timezone"] = "Europe/Rome"
    assert ContactSendState.of(stored).time_zone == "Europe/Rome"
    late = local(ROME, 2026, 12, 2, 23, 0)
    assert judge(request(now=late), ContactSendState.of(stored), now=late).reason.code == "quiet_hours"
    assert judge(request(channel="sms"), ContactSendState.of(stored)).reason.code == "no_consent"


def test_requested_at_must_be_aware():
    with pytest.raises(ValueError):
        decide(replace(request(), requested_at=datetime(2026, 12, 2, 12)), contact(), NO_HISTORY, SETTINGS, NOON)


def test_the_messaging_domain_imports_no_aws_and_reads_no_clock():
    import ast
    import sys
    from pathlib import Path

    package = Path(__file__).resolve().parents[3] / "chalicelib" / "domain" / "messaging"
    for name in ("consent.py", "policy.py", "sms.py", "experiments.py"):
        tree = ast.parse((package / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                roots = [node.module.split(".")[0]]
            elif isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            else:
                roots = []
            for root in roots:
                assert root in sys.stdlib_module_names or root in ("chalicelib", "__future__"), (name, root)
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("now", "utcnow", "today", "time_ns"), (name, node.attr)


@pytest.mark.parametrize("per_second, burst, reserve", [(0, 1, 0), (-1, 1, 0), (float("nan"), 1, 0), (1, 0, 0),
                                                        (10, 10, 10), (10, 10, -1)])
def test_an_impossible_rate_budget_is_refused(per_second, burst, reserve):
    with pytest.raises(ValueError, match="a send rate is positive"):
        RateBudget(per_second, burst, reserve)


def test_the_cap_wait_is_the_first_allowed_moment_against_a_brute_force_count():
    import random

    from chalicelib.domain.messaging.policy import cap_ready_at

    rng = random.Random(1202)
    caps = (FrequencyCap(2, DAY), FrequencyCap(4, 7 * DAY))

    def allowed(sends, t):
        return all(sum(1 for s in sends if t - cap.period < s <= t) < cap.max_messages for cap in caps)

    for _ in range(200):
        sends = [NOON - rng.randrange(1, 8 * 24 * 60) * MIN for _ in range(rng.randrange(0, 7))]
        ready, _ = cap_ready_at(caps, sends, NOON)
        assert allowed(sends, ready)
        # Being allowed changes only when a send leaves a window: check every such moment
        # before `ready`, now, and the instant just before `ready`.
        moments = {NOON, ready - timedelta(microseconds=1)} | {s + cap.period for s in sends for cap in caps}
        for moment in sorted(m for m in moments if NOON <= m < ready):
            assert not allowed(sends, moment), (sends, moment, ready)
