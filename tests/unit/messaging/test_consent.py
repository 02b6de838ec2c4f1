"""Consent per channel and topic with proof, double opt-in, Segment's consent object, merges,
who may change consent, and suppression entries that survive erasure."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.messaging.consent import (
    ADMIN_API,
    ALL_TOPICS,
    BOUNCED_HARD,
    COMPLAINED,
    DENIED,
    DOUBLE_OPT_IN,
    ERASED,
    FEEDBACK,
    GRANTED,
    IMPORT,
    MARKETING,
    PENDING,
    PREFERENCE_CENTRE,
    TRANSACTIONAL,
    UNSUBSCRIBED,
    WRITE_KEY,
    CategoryPreference,
    ConsentChange,
    ConsentError,
    ConsentForm,
    ConsentProof,
    ConsentRecord,
    ConsentState,
    SiteConsentPolicy,
    SuppressionEntry,
    accept_change,
    apply_change,
    apply_segment_consent,
    categories_from_event,
    confirm_opt_in,
    merge_consent,
    request_opt_in,
    resend_confirmation,
    suppress,
    suppression_key,
)

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)
DAY = timedelta(days=1)
SALT = b"installation-salt-0123456789"
PROOF = ConsentProof(shown="Send me the newsletter", where="https://shop.example/signup", ip="203.0.113.7",
                     user_agent="Mozilla/5.0")
NEWSLETTER_FORM = ConsentForm("newsletter", "Yes, send me the weekly coffee newsletter",
                              frozenset({("email", "newsletter")}))
SMS_FORM = ConsentForm("sms-offers", "Text me offers", frozenset({("sms", ALL_TOPICS)}))
SITE = SiteConsentPolicy(forms={"newsletter": NEWSLETTER_FORM, "sms-offers": SMS_FORM})


def record(channel="email", topic=ALL_TOPICS, status=GRANTED, at=NOW, source=ADMIN_API, proof=PROOF):
    return ConsentRecord(channel, topic, status, at, source, proof)


def state(*records) -> ConsentState:
    s = ConsentState()
    for r in records:
        s = s.with_record(r)
    return s


# -- channel and topic ------------------------------------------------------------------------


def test_never_asked_is_not_granted():
    assert ConsentState().effective("email", "newsletter").status is None
    assert not ConsentState().effective("email").granted


def test_a_channel_grant_covers_its_topics():
    s = state(record())
    assert s.effective("email", "newsletter").granted
    assert s.effective("email").granted
    assert not s.effective("sms").granted


def test_a_denied_topic_stays_denied_whatever_broader_grant_comes_later():
    s = state(record(topic="promotions", status=DENIED, at=NOW - DAY), record(at=NOW))
    assert s.effective("email", "promotions").status == DENIED
    assert s.effective("email", "newsletter").granted


def test_a_later_channel_wide_opt_out_beats_an_earlier_topic_grant():
    s = state(record(topic="newsletter", at=NOW - DAY), record(status=DENIED, at=NOW))
    assert s.effective("email", "newsletter").status == DENIED


def test_a_later_topic_opt_in_beats_an_earlier_channel_wide_opt_out():
    s = state(record(status=DENIED, at=NOW - DAY), record(topic="newsletter", at=NOW))
    assert s.effective("email", "newsletter").granted
    assert s.effective("email", "promotions").status == DENIED


def test_records_validate_channel_status_and_time():
    with pytest.raises(ConsentError, match="unknown channel 'fax'"):
        record(channel="fax")
    with pytest.raises(ConsentError, match="granted, denied or pending"):
        record(status="maybe")
    with pytest.raises(ConsentError, match="time zone"):
        record(at=datetime(2026, 1, 1))
    with pytest.raises(ConsentError, match="without '/'"):
        record(topic="a/b")


def test_the_document_round_trips_and_keeps_the_shape_the_evaluator_reads():
    s = state(record(), record(topic="newsletter", status=DENIED, at=NOW + MIN, source=PREFERENCE_CENTRE))
    s = s.with_category(CategoryPreference("Advertising", False, NOW, WRITE_KEY))
    doc = s.to_document()
    assert doc["email"]["status"] == GRANTED and doc["email"]["at"] == "2026-12-02T10:00:00.000Z"
    assert doc["email"]["proof"] == {"shown": "Send me the newsletter", "where": "https://shop.example/signup",
                                     "ip": "203.0.113.7", "user_agent": "Mozilla/5.0"}
    assert doc["email/newsletter"]["status"] == DENIED
    assert doc["data/Advertising"] == {"status": DENIED, "at": "2026-12-02T10:00:00.000Z", "source": WRITE_KEY}
    assert ConsentState.from_document(doc) == s


def test_the_legacy_document_reads_and_unreadable_entries_are_left_out():
    doc = {"email": {"status": "granted", "at": "2026-11-01T00:00:00.000Z", "source": "form"},
           "sms": {"status": "granted", "at": "not a time"}, "fax": {"status": "granted", "at": "2026-11-01T00:00:00Z"},
           "push": "yes"}
    s = ConsentState.from_document(doc)
    assert list(s.records) == ["email"]
    assert s.effective("email").granted and s.effective("email").record.source == "form"


# -- double opt-in ----------------------------------------------------------------------------


def pending(at=NOW):
    return ConsentRecord("email", "newsletter", PENDING, at, WRITE_KEY, PROOF)


def test_double_opt_in_sends_a_confirmation_and_waits():
    outcome = request_opt_in(ConsentState(), pending(), "tok-1", NOW)
    assert outcome.code == "confirmation_sent" and outcome.send_confirmation
    rec = outcome.state.record("email", "newsletter")
    assert rec.status == PENDING and rec.confirmation.token_id == "tok-1"
    assert rec.confirmation.sent == (NOW,) and rec.confirmation.expires_at == NOW + 7 * DAY
    assert not outcome.state.effective("email", "newsletter").granted


def test_a_second_submission_is_idempotent():
    first = request_opt_in(ConsentState(), pending(), "tok-1", NOW)
    second = request_opt_in(first.state, pending(NOW + MIN), "tok-2", NOW + MIN)
    assert second.code == "already_pending" and not second.send_confirmation
    assert second.state == first.state


def test_confirmation_grants_with_proof_of_both_steps():
    first = request_opt_in(ConsentState(), pending(), "tok-1", NOW)
    done = confirm_opt_in(first.state, "email", "newsletter", "tok-1", NOW + 3 * MIN, ip="198.51.100.2",
                          user_agent="Mail/1.0")
    assert done.code == "confirmed"
    rec = done.state.record("email", "newsletter")
    assert rec.status == GRANTED and rec.source == DOUBLE_OPT_IN and rec.at == NOW + 3 * MIN
    assert rec.proof == PROOF  # what was shown at signup, and where
    assert rec.confirmation.confirmed_ip == "198.51.100.2" and rec.confirmation.confirmed_at == NOW + 3 * MIN
    assert done.state.effective("email", "newsletter").granted
    again = confirm_opt_in(done.state, "email", "newsletter", "tok-1", NOW + 4 * MIN)
    assert again.code == "already_confirmed" and again.state == done.state
    resubmitted = request_opt_in(done.state, pending(NOW + 5 * MIN), "tok-3", NOW + 5 * MIN)
    assert resubmitted.code == "already_confirmed" and resubmitted.state == done.state


def test_confirmation_refuses_a_wrong_token_an_expired_request_and_nothing_pending():
    first = request_opt_in(ConsentState(), pending(), "tok-1", NOW)
    assert confirm_opt_in(first.state, "email", "newsletter", "tok-x", NOW + MIN).code == "wrong_token"
    assert confirm_opt_in(first.state, "email", "newsletter", "tok-1", NOW + 7 * DAY).code == "expired"
    assert confirm_opt_in(ConsentState(), "email", "newsletter", "tok-1", NOW).code == "not_pending"


def test_an_expired_request_can_be_submitted_again_with_a_new_token():
    first = request_opt_in(ConsentState(), pending(), "tok-1", NOW)
    later = NOW + 8 * DAY
    again = request_opt_in(first.state, pending(later), "tok-2", later)
    assert again.code == "confirmation_sent" and again.send_confirmation
    assert again.state.record("email", "newsletter").confirmation.token_id == "tok-2"


def test_a_confirmation_can_be_resent_within_limits():
    s = request_opt_in(ConsentState(), pending(), "tok-1", NOW).state
    assert resend_confirmation(s, "email", "newsletter", NOW + MIN).code == "resend_too_soon"
    outcome = resend_confirmation(s, "email", "newsletter", NOW + 6 * MIN)
    assert outcome.code == "resent" and outcome.send_confirmation
    assert outcome.state.record("email", "newsletter").confirmation.sent == (NOW, NOW + 6 * MIN)
    assert outcome.state.record("email", "newsletter").confirmation.token_id == "tok-1"  # any copy works
    s = outcome.state
    for i in range(2, 5):
        s = resend_confirmation(s, "email", "newsletter", NOW + i * 10 * MIN).state
    limited = resend_confirmation(s, "email", "newsletter", NOW + 60 * MIN)
    assert limited.code == "resend_limit" and not limited.send_confirmation
    assert resend_confirmation(s, "email", "newsletter", NOW + 8 * DAY).code == "expired"
    assert resend_confirmation(ConsentState(), "email", "newsletter", NOW).code == "not_pending"


def test_a_pending_record_survives_the_document():
    s = request_opt_in(ConsentState(), pending(), "tok-1", NOW).state
    assert ConsentState.from_document(s.to_document()) == s


# -- who may change consent -------------------------------------------------------------------


def change(status=GRANTED, source=WRITE_KEY, channel="email", topic="newsletter", at=NOW, proof=PROOF,
           form_id="newsletter"):
    return ConsentChange(channel, topic, status, at, source, proof, form_id)


def test_the_write_key_grants_email_only_as_pending_with_the_forms_own_wording():
    acceptance = accept_change(change(proof=ConsentProof("I agree to everything", "https://shop.example/",
                                                         "203.0.113.7", "UA")), SITE, NOW)
    assert acceptance.accepted and acceptance.record.status == PENDING
    assert acceptance.record.proof.shown == "Yes, send me the weekly coffee newsletter"
    assert acceptance.record.proof.where == "https://shop.example/" and acceptance.record.proof.ip == "203.0.113.7"
    outcome = apply_change(ConsentState(), acceptance, token_id="tok-1", now=NOW)
    assert outcome.code == "confirmation_sent" and outcome.send_confirmation
    assert outcome.state.record("email", "newsletter").confirmation.expires_at == NOW + 7 * DAY


def test_a_late_delivered_write_key_grant_is_timed_from_its_receipt():
    acceptance = accept_change(change(at=NOW - 3 * DAY), SITE, NOW)
    assert acceptance.record.at == NOW - 3 * DAY
    outcome = apply_change(ConsentState(), acceptance, token_id="tok-1", now=NOW)
    conf = outcome.state.record("email", "newsletter").confirmation
    assert conf.sent == (NOW,) and conf.expires_at == NOW + 7 * DAY


def test_the_write_key_cannot_grant_beyond_the_form():
    refused = accept_change(change(topic="promotions"), SITE, NOW)
    assert not refused.accepted and refused.code == "beyond_form"
    assert "does not collect consent to email (promotions)" in refused.reason
    assert accept_change(change(channel="sms", topic=None), SITE, NOW).accepted is False
    assert accept_change(change(form_id=None), SITE, NOW).code == "no_form"
    assert accept_change(change(form_id="made-up"), SITE, NOW).code == "no_form"


def test_the_write_key_grants_sms_directly_when_a_form_collects_it_and_sms_needs_no_confirmation():
    acceptance = accept_change(change(channel="sms", topic="weekly", form_id="sms-offers"), SITE, NOW)
    assert acceptance.accepted and acceptance.record.status == GRANTED
    strict = SiteConsentPolicy(forms=SITE.forms, confirm_channels=frozenset({"email", "sms"}))
    assert accept_change(change(channel="sms", topic="weekly", form_id="sms-offers"), strict, NOW).record.status == PENDING


def test_the_write_key_cannot_date_a_change_in_the_future():
    acceptance = accept_change(change(status=DENIED, at=NOW + 365 * DAY), SITE, NOW)
    assert acceptance.accepted and acceptance.record.at == NOW


def test_anyone_may_withdraw():
    for source in (WRITE_KEY, FEEDBACK, PREFERENCE_CENTRE, ADMIN_API, IMPORT, DOUBLE_OPT_IN):
        acceptance = accept_change(change(status=DENIED, source=source, form_id=None, proof=None), SITE, NOW)
        assert acceptance.accepted and acceptance.record.status == DENIED, source


def test_feedback_and_double_opt_in_cannot_grant_here():
    assert accept_change(change(source=FEEDBACK), SITE, NOW).code == "withdraw_only"
    assert accept_change(change(source=DOUBLE_OPT_IN), SITE, NOW).code == "confirm_only"


def test_admin_and_import_grants_need_proof():
    assert accept_change(change(source=ADMIN_API, proof=None), SITE, NOW).code == "no_proof"
    assert accept_change(change(source=IMPORT, proof=ConsentProof("", "crm")), SITE, NOW).code == "no_proof"
    granted = accept_change(change(source=IMPORT, topic="promotions"), SITE, NOW)
    assert granted.accepted and granted.record.status == GRANTED


def test_the_preference_centre_grants_directly():
    acceptance = accept_change(change(source=PREFERENCE_CENTRE, topic="promotions", form_id=None), SITE, NOW)
    assert acceptance.accepted and acceptance.record.status == GRANTED


def test_unknown_sources_channels_and_statuses_are_refused():
    assert accept_change(change(source="partner"), SITE, NOW).code == "unknown_source"
    assert accept_change(change(channel="fax"), SITE, NOW).code == "invalid"
    assert accept_change(change(status="pending"), SITE, NOW).code == "invalid"
    assert accept_change(change(source=ADMIN_API, at=NOW + DAY), SITE, NOW).code == "future"


def test_an_older_change_does_not_overwrite_a_newer_decision():
    s = state(record(topic="newsletter", status=DENIED, at=NOW))
    stale = accept_change(change(source=PREFERENCE_CENTRE, at=NOW - DAY), SITE, NOW)
    outcome = apply_change(s, stale)
    assert outcome.code == "stale" and outcome.state == s
    refused = apply_change(s, accept_change(change(topic="promotions"), SITE, NOW))
    assert refused.code == "beyond_form" and refused.state == s


def test_a_pending_grant_needs_a_token():
    with pytest.raises(ConsentError, match="token"):
        apply_change(ConsentState(), accept_change(change(), SITE, NOW))
    with pytest.raises(ConsentError, match="received"):
        apply_change(ConsentState(), accept_change(change(), SITE, NOW), token_id="tok-1")


# -- merging two contacts ---------------------------------------------------------------------


def test_merge_keeps_the_latest_decision_per_key():
    ours = state(record(at=NOW - DAY), record(topic="promotions", status=DENIED, at=NOW))
    theirs = state(record(status=DENIED, at=NOW), record(topic="promotions", at=NOW - DAY), record(channel="sms"))
    merged = merge_consent(ours, theirs)
    assert merged.record("email").status == DENIED
    assert merged.record("email", "promotions").status == DENIED
    assert merged.record("sms").status == GRANTED
    assert merge_consent(theirs, ours) == merged


def test_a_later_pending_request_does_not_undo_a_confirmed_grant():
    ours = state(record(topic="newsletter", at=NOW - DAY, source=DOUBLE_OPT_IN))
    theirs = state(record(topic="newsletter", status=PENDING, at=NOW, source=WRITE_KEY))
    assert merge_consent(ours, theirs).record("email", "newsletter").status == GRANTED
    assert merge_consent(theirs, ours).record("email", "newsletter").status == GRANTED


def test_a_later_pending_request_replaces_an_older_denial():
    ours = state(record(topic="newsletter", status=DENIED, at=NOW - DAY))
    theirs = state(record(topic="newsletter", status=PENDING, at=NOW))
    assert merge_consent(ours, theirs).record("email", "newsletter").status == PENDING


def test_on_equal_times_the_denial_wins():
    ours = state(record(status=GRANTED))
    theirs = state(record(status=DENIED))
    assert merge_consent(ours, theirs).record("email").status == DENIED
    assert merge_consent(theirs, ours).record("email").status == DENIED


def test_merge_keeps_the_latest_data_collection_choice():
    ours = ConsentState().with_category(CategoryPreference("Advertising", True, NOW - DAY, WRITE_KEY))
    theirs = ConsentState().with_category(CategoryPreference("Advertising", False, NOW, WRITE_KEY))
    assert merge_consent(ours, theirs).category("Advertising") is False
    assert merge_consent(theirs, ours).category("Advertising") is False


# -- Segment's consent object -----------------------------------------------------------------


def segment_event(prefs, at="2026-12-02T10:00:00.000Z", name="Segment Consent Preference Updated"):
    return {"type": "track", "event": name, "timestamp": at,
            "context": {"consent": {"categoryPreferences": prefs}}}


def test_segment_category_preferences_become_data_collection_consent():
    s, changed, problems = apply_segment_consent(ConsentState(), segment_event({"Advertising": False, "Analytics": True}))
    assert changed == ["Advertising", "Analytics"] and problems == []
    assert s.category("Advertising") is False and s.category("Analytics") is True
    assert s.category("Functional") is None
    assert not s.records  # data collection is not permission to message


def test_any_event_carrying_the_consent_object_updates_it_and_older_ones_do_not():
    s, _, _ = apply_segment_consent(ConsentState(), segment_event({"Advertising": False}))
    later, changed, _ = apply_segment_consent(s, segment_event({"Advertising": True}, at="2026-12-02T11:00:00Z",
                                                                name="Order Completed"))
    assert changed == ["Advertising"] and later.category("Advertising") is True
    older, changed, _ = apply_segment_consent(later, segment_event({"Advertising": False}, at="2026-12-01T00:00:00Z"))
    assert changed == [] and older == later
    same, changed, _ = apply_segment_consent(later, segment_event({"Advertising": True}, at="2026-12-03T00:00:00Z"))
    assert changed == [] and same == later  # no change, nothing rewritten


def test_unreadable_consent_objects_are_reported_not_guessed():
    assert categories_from_event({"context": {}}) == ({}, [])
    assert categories_from_event({"context": {"consent": {"categoryPreferences": "yes"}}})[1] == [
        "context.consent.categoryPreferences must be an object of category: true/false"]
    found, problems = categories_from_event(segment_event({"Ads": "true", "": True, "Analytics": True}))
    assert found == {"Analytics": True}
    assert problems == ["category 'Ads' must be true or false, got 'true'", "category name '' is not a short name"]
    s, changed, problems = apply_segment_consent(ConsentState(), segment_event({"Ads": True}, at="yesterday"))
    assert changed == [] and problems and "timestamp" in problems[0]


# -- suppression ------------------------------------------------------------------------------


def test_the_hash_is_stable_across_spellings_and_differs_per_installation():
    key = suppression_key("email", "Ada@Example.com ", SALT)
    assert key == suppression_key("email", "ada@example.com", SALT)
    assert key.startswith("hmac-sha256:") and "ada" not in key
    assert key != suppression_key("email", "ada@example.com", b"another-installation-salt")
    assert suppression_key("sms", "+39 333 123 4567", SALT) == suppression_key("sms", "+393331234567", SALT)
    assert suppression_key("sms", "+393331234567", SALT) != suppression_key("push", "+393331234567", SALT)


def test_the_hash_refuses_a_weak_salt_and_a_bad_address():
    with pytest.raises(ConsentError, match="at least 16"):
        suppression_key("email", "ada@example.com", b"short")
    with pytest.raises(ConsentError, match="cannot suppress email address"):
        suppression_key("email", "not an address", SALT)
    with pytest.raises(ConsentError, match="non-empty"):
        suppression_key("push", "  ", SALT)


def test_suppression_entries_hold_no_address_and_round_trip():
    entry = suppress("email", "ada@example.com", ERASED, NOW, SALT, detail="erasure request 42")
    assert "ada" not in str(entry.to_document())
    assert SuppressionEntry.from_document(entry.to_document()) == entry
    assert entry.sentence() == ("This email address is suppressed since 2026-12-02 10:00 UTC: "
                                "the person asked to be erased.")
    with pytest.raises(ConsentError, match="suppression reason"):
        SuppressionEntry("email", "h", "annoyed", NOW)


@pytest.mark.parametrize("reason, marketing_blocked, transactional_blocked", [
    (BOUNCED_HARD, True, True), (COMPLAINED, True, False), (UNSUBSCRIBED, True, False), (ERASED, True, False),
])
def test_what_each_suppression_blocks(reason, marketing_blocked, transactional_blocked):
    entry = suppress("email", "ada@example.com", reason, NOW, SALT)
    assert entry.blocks(MARKETING) is marketing_blocked
    assert entry.blocks(TRANSACTIONAL) is transactional_blocked


def test_only_a_later_confirmed_opt_in_lifts_a_suppression_and_never_a_hard_bounce():
    confirmed_later = state(record(at=NOW + DAY, source=DOUBLE_OPT_IN)).effective("email")
    imported_later = state(record(at=NOW + DAY, source=IMPORT)).effective("email")
    confirmed_before = state(record(at=NOW - DAY, source=DOUBLE_OPT_IN)).effective("email")
    unsubscribed = suppress("email", "ada@example.com", UNSUBSCRIBED, NOW, SALT)
    assert unsubscribed.lifted_by(confirmed_later)
    assert not unsubscribed.lifted_by(imported_later)
    assert not unsubscribed.lifted_by(confirmed_before)
    assert not suppress("email", "ada@example.com", BOUNCED_HARD, NOW, SALT).lifted_by(confirmed_later)


def test_the_explicit_consent_event_without_preferences_is_reported():
    event = {"type": "track", "event": "Segment Consent Preference Updated", "timestamp": "2026-12-02T10:00:00Z",
             "context": {}}
    assert categories_from_event(event) == ({}, [
        "'Segment Consent Preference Updated' carries no context.consent.categoryPreferences: nothing changed"])
