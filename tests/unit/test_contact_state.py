"""Each capability's merge rule, and a merge through the event processor with the rules on."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chalicelib.domain.contact import Contact, merge_contacts
from chalicelib.domain.contact_state import PARTS, MergeContext, Score, load_parts, dump_parts, merge_campaign, merge_parts
from chalicelib.domain.rfm import parse_rfm
from chalicelib.domain.scoring import parse_scoring, score_now
from chalicelib.services.catalog import Catalog
from chalicelib.services.process_events import EventProcessor
from chalicelib.services.segmentation import ProfileRules
from tests.unit.fakes import FakeClock, FakeContactRepository

ROOT = Path(__file__).resolve().parents[2]
SCORING = parse_scoring((ROOT / "chalicelib/definitions/scoring.yaml").read_text())
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ctx(now=NOW) -> MergeContext:
    return MergeContext(now=now, half_life=SCORING.half_life, stage_rank=SCORING.rank)


def person(cid: str, created: datetime, **kw) -> Contact:
    return Contact(id=cid, created_at=iso(created), **kw)


# -- the defect: a merge dropped the loser's score and stage ---------------------------------

def _import_then_identify(rules_on: bool):
    """A visitor browses anonymously (older profile, 15 points, lead); a CRM import creates
    an MQL with 80 points for the same person; the visitor then identifies."""
    repo = FakeContactRepository()
    clock = FakeClock(NOW)
    visitor = person("c-visitor", NOW - 40 * DAY, identifiers=["anon:a1"], stage="lead",
                     score={"points": 15.0, "at": iso(NOW - 30 * DAY)})
    crm = person("c-crm", NOW - 10 * DAY, identifiers=["email:ada@x.io", "user:u1"], stage="mql",
                 score={"points": 80.0, "at": iso(NOW - 10 * DAY)}, traits={"email": "ada@x.io"})
    for c in (visitor, crm):
        repo.create(c)
        for identifier in c.identifiers:
            repo.identities[identifier] = c.id
    catalog = Catalog.of(scoring=SCORING)
    rules = ProfileRules(lambda: catalog) if rules_on else None
    processor = EventProcessor(repo, clock, sleep=lambda s: None, rules=rules)
    processor.process({"type": "identify", "messageId": "m-identify", "anonymousId": "a1", "userId": "u1",
                       "traits": {}, "context": {}, "timestamp": iso(NOW), "receivedAt": iso(NOW)})
    survivor = repo.get("c-visitor")
    assert repo.get("c-crm").merged_into == "c-visitor"
    return survivor


def test_a_merged_mql_keeps_both_scores_decayed_to_the_merge_and_the_more_advanced_stage():
    survivor = _import_then_identify(rules_on=True)
    # 15 points a half-life ago, 80 points a third of a half-life ago, both at the merge.
    expected = 15 * 0.5 + 80 * 0.5 ** (10 / 30)
    assert score_now(SCORING, survivor, NOW) == pytest.approx(expected, abs=0.01)
    assert survivor.stage == "mql"
    announced = [e["event"] for e in survivor.outbox if e["kind"] == "event"]
    assert [e["event"] for e in announced] == ["Stage Changed", "Contacts Merged"]
    assert (announced[0]["properties"]["from"], announced[0]["properties"]["to"]) == ("lead", "mql")
    assert announced[1]["properties"] == {"merged": [m for m in ("c-crm", "c-visitor") if m != survivor.id]}


def test_without_a_scoring_model_a_merge_still_keeps_both_scores_and_a_stage():
    survivor = _import_then_identify(rules_on=False)
    assert survivor.score["points"] == pytest.approx(95.0)
    assert survivor.stage == "lead"  # no stage order known: the survivor's stands


# -- the scoring part ------------------------------------------------------------------------

def test_scores_are_decayed_each_from_its_own_time_then_added():
    a = Score(points=40, at=iso(NOW - 30 * DAY))
    b = Score(points=10, at=iso(NOW))
    merged = a.merged(b, ctx())
    assert merged.points == pytest.approx(30.0)
    assert merged.at == iso(NOW)


def test_cap_usage_adds_up_within_one_period_and_the_later_period_wins_otherwise():
    a = Score(caps={"pricing": {"period": "2026-11-22T00:00:00.000Z", "points": 10},
                    "click": {"period": "2026-11-16T00:00:00.000Z", "points": 15}})
    b = Score(caps={"pricing": {"period": "2026-11-22T00:00:00.000Z", "points": 20},
                    "click": {"period": "2026-11-09T00:00:00.000Z", "points": 3},
                    "webinar": {"period": "2026-11-22T00:00:00.000Z", "points": 5}})
    merged = a.merged(b, ctx())
    assert merged.caps["pricing"]["points"] == 30  # the cap's room is gone: no extra points for two profiles
    assert merged.caps["click"] == {"period": "2026-11-16T00:00:00.000Z", "points": 15}
    assert merged.caps["webinar"]["points"] == 5


def test_a_capped_rule_grants_nothing_more_after_a_merge_used_its_room():
    from chalicelib.domain.scoring import apply_event

    at = NOW.replace(hour=9)
    a = person("a", NOW - 5 * DAY, score={"points": 20.0, "at": iso(at),
                                            "caps": {"pricing-page": {"period": "2026-11-22T00:00:00.000Z",
                                                                      "points": 10}}})
    b = person("b", NOW - 2 * DAY, score={"points": 10.0, "at": iso(at),
                                            "caps": {"pricing-page": {"period": "2026-11-22T00:00:00.000Z",
                                                                      "points": 10}}})
    merge_contacts(a, b, ctx(at))
    before = score_now(SCORING, a, at)
    apply_event(SCORING, a, {"type": "page", "properties": {"path": "/pricing"}, "context": {},
                             "timestamp": iso(at), "messageId": "p"}, at)
    assert score_now(SCORING, a, at) == before


def test_the_more_advanced_stage_wins_whichever_profile_survives():
    a = person("a", NOW - 5 * DAY, stage="customer")
    b = person("b", NOW - 2 * DAY, stage="mql")
    assert merge_contacts(a, b, ctx()).stage == "customer"
    c = person("c", NOW - 5 * DAY, stage=None)
    d = person("d", NOW - 2 * DAY, stage="subscriber")
    assert merge_contacts(c, d, ctx()).stage == "subscriber"


def test_tags_are_united():
    a = person("a", NOW, tags=["newsletter"])
    b = person("b", NOW, tags=["webinar-attendee"])
    assert merge_contacts(a, b, ctx()).tags == ["newsletter", "webinar-attendee"]


# -- the other parts -------------------------------------------------------------------------

def test_rfm_sums_orders_and_revenue_and_spans_both_purchase_histories():
    a = person("a", NOW, rfm={"orders": 2, "revenue": 50.5, "first_purchase": "2026-10-01T00:00:00.000Z",
                              "last_purchase": "2026-10-05T00:00:00.000Z", "class": "new"})
    b = person("b", NOW, rfm={"orders": 1, "revenue": 20, "first_purchase": "2026-09-01T00:00:00.000Z",
                              "last_purchase": "2026-11-01T00:00:00.000Z"})
    merged = merge_contacts(a, b, ctx()).rfm
    assert (merged["orders"], merged["revenue"]) == (3, 70.5)
    assert merged["first_purchase"] == "2026-09-01T00:00:00.000Z"
    assert merged["last_purchase"] == "2026-11-01T00:00:00.000Z"


def test_rfm_class_follows_the_combined_history_after_a_merge_in_processing():
    repo = FakeContactRepository()
    a = person("c-a", NOW - 40 * DAY, identifiers=["anon:a1"],
               rfm={"orders": 1, "revenue": 10.0, "first_purchase": iso(NOW - 3 * DAY),
                    "last_purchase": iso(NOW - 3 * DAY), "r": 5, "f": 1, "m": 1, "class": "new"})
    b = person("c-b", NOW - 10 * DAY, identifiers=["user:u1"],
               rfm={"orders": 4, "revenue": 400.0, "first_purchase": iso(NOW - 30 * DAY),
                    "last_purchase": iso(NOW - 2 * DAY)})
    for c in (a, b):
        repo.create(c)
        for identifier in c.identifiers:
            repo.identities[identifier] = c.id
    config = parse_rfm({"cuts": {"recency": [7, 30, 90, 180], "frequency": [1, 2, 3, 4],
                                 "monetary": [10, 50, 100, 200]}})
    catalog = Catalog.of(rfm=config)
    processor = EventProcessor(repo, FakeClock(NOW), sleep=lambda s: None, rules=ProfileRules(lambda: catalog))
    processor.process({"type": "identify", "messageId": "m1", "anonymousId": "a1", "userId": "u1", "traits": {},
                       "context": {}, "timestamp": iso(NOW), "receivedAt": iso(NOW)})
    merged = repo.get("c-a").rfm
    assert (merged["orders"], merged["f"], merged["class"]) == (5, 5, "champions")


def test_consent_keeps_the_latest_decision_per_channel():
    a = person("a", NOW, consent={"email": {"status": "granted", "at": "2026-11-01T00:00:00.000Z", "source": "form"},
                                  "sms": {"status": "denied", "at": "2026-11-10T00:00:00.000Z", "source": "x"}})
    b = person("b", NOW, consent={"email": {"status": "denied", "at": "2026-11-05T00:00:00.000Z", "source": "link"},
                                  "sms": {"status": "granted", "at": "2026-11-02T00:00:00.000Z", "source": "y"},
                                  "push": {"status": "granted", "at": "2026-11-03T00:00:00.000Z", "source": "app"}})
    merged = merge_contacts(a, b, ctx()).consent
    assert merged["email"]["status"] == "denied"
    assert merged["sms"]["status"] == "denied"
    assert merged["push"]["status"] == "granted"


def test_segments_of_the_survivor_stand_and_the_earlier_check_is_kept():
    a = person("a", NOW, segments={"s1": {"since": "x"}}, next_check="2026-12-01T00:00:00.000Z")
    b = person("b", NOW, segments={"s2": {"since": "y"}}, next_check="2026-11-25T00:00:00.000Z")
    merged = merge_contacts(a, b, ctx())
    assert merged.segments == {"s1": {"since": "x"}}
    assert merged.next_check == "2026-11-25T00:00:00.000Z"


def test_the_losers_memberships_end_when_processing_merges():
    repo = FakeContactRepository()
    a = person("c-a", NOW - 40 * DAY, identifiers=["anon:a1"])
    b = person("c-b", NOW - 10 * DAY, identifiers=["user:u1"], segments={"vip": {"since": iso(NOW - DAY)}})
    for c in (a, b):
        repo.create(c)
        for identifier in c.identifiers:
            repo.identities[identifier] = c.id
    catalog = Catalog()
    processor = EventProcessor(repo, FakeClock(NOW), sleep=lambda s: None, rules=ProfileRules(lambda: catalog))
    processor.process({"type": "identify", "messageId": "m1", "anonymousId": "a1", "userId": "u1", "traits": {},
                       "context": {}, "timestamp": iso(NOW), "receivedAt": iso(NOW)})
    outbox = repo.get("c-a").outbox
    assert {"kind": "leave", "segment_id": "vip", "contact_id": "c-b"} in outbox


def test_engagement_of_one_campaign_on_both_profiles_is_combined_not_dropped():
    ours = {"sent": "2026-11-02T00:00:00.000Z", "opened": "2026-11-03T00:00:00.000Z", "opens": 1,
            "updated": "2026-11-03T00:00:00.000Z"}
    theirs = {"sent": "2026-11-01T00:00:00.000Z", "opened": "2026-11-01T10:00:00.000Z", "opens": 2,
              "bounced": "soft", "updated": "2026-11-04T00:00:00.000Z",
              "clicks": [{"id": "k1", "at": "2026-11-01T10:00:00.000Z", "converted": "2026-11-01T11:00:00.000Z"}]}
    a = person("a", NOW, campaigns={"promo": ours})
    b = person("b", NOW, campaigns={"promo": theirs, "other": {"sent": "2026-10-01T00:00:00.000Z"}})
    merged = merge_contacts(a, b, ctx()).campaigns
    promo = merged["promo"]
    assert promo["sent"] == "2026-11-01T00:00:00.000Z" and promo["opened"] == "2026-11-01T10:00:00.000Z"
    assert promo["opens"] == 3 and promo["bounced"] == "soft" and promo["updated"] == "2026-11-04T00:00:00.000Z"
    assert [c["id"] for c in promo["clicks"]] == ["k1"]
    assert "other" in merged


def test_clicks_beyond_the_limit_are_counted_not_followed():
    ours = {"clicks": [{"id": f"a{i}", "at": f"2026-11-0{i}T00:00:00.000Z"} for i in range(1, 8)]}
    theirs = {"clicks": [{"id": f"b{i}", "at": f"2026-11-1{i}T00:00:00.000Z"} for i in range(0, 6)]}
    merged = merge_campaign(ours, theirs)
    assert len(merged["clicks"]) == 10 and merged["more_clicks"] == 3


def test_the_losers_unpublished_effects_move_to_the_survivor():
    a = person("a", NOW)
    b = person("b", NOW, outbox=[{"kind": "enter", "segment_id": "s", "since": "x"},
                                 {"kind": "event", "event": {"contactId": "b", "messageId": "mercurio-1"}},
                                 {"kind": "schedule", "at": "2026-12-01T00:00:00.000Z"}])
    merged = merge_contacts(a, b, ctx())
    assert merged.outbox == [{"kind": "enter", "segment_id": "s", "since": "x", "contact_id": "b"},
                             {"kind": "event", "event": {"contactId": "b", "messageId": "mercurio-1"}}]


def test_persona_and_identity_parts():
    a = person("a", NOW - DAY, persona=None, identifiers=["anon:1"], first_seen="2026-11-10T00:00:00.000Z")
    b = person("b", NOW - 9 * DAY, persona="barista", identifiers=["user:1"], first_seen="2026-11-01T00:00:00.000Z")
    merged = merge_contacts(a, b, ctx())
    assert merged.persona == "barista"
    assert merged.identifiers == ["anon:1", "user:1"]
    assert merged.created_at == iso(NOW - 9 * DAY) and merged.first_seen == "2026-11-01T00:00:00.000Z"
    assert merged.merged_from == ["b"]


def test_every_field_of_the_contact_belongs_to_exactly_one_part():
    owned = [f for part in PARTS for f in part.fields]
    assert len(owned) == len(set(owned))
    stored = set(Contact.__dataclass_fields__) - {"id", "version", "merged_into", "remembered"}  # remembered: in memory only
    assert set(owned) == stored


def test_the_parts_round_trip_a_contact():
    c = person("a", NOW, traits={"x": 1}, score={"points": 3.0, "at": iso(NOW)}, stage="lead", recent=["abcdefgh"])
    again = Contact.from_document("a", load_parts(dump_parts(c)) and dump_parts(c), None, None)
    assert again == c


def test_merging_is_counted_once_per_loser_and_keeps_digests():
    ids = itertools.count()
    a = person("a", NOW, recent=[f"{next(ids):08d}" for _ in range(3)])
    b = person("b", NOW, recent=[f"{next(ids):08d}" for _ in range(3)])
    merged = merge_contacts(a, b, ctx())
    assert len(merged.recent) == 6


def test_the_stored_digests_are_those_remembered_since_the_read_and_sixteen_older():
    from chalicelib.domain.contact_state import RECENT_IDS

    stored = Contact(id="c", created_at="2026-11-01T00:00:00.000Z", recent=[f"d{i:07d}" for i in range(40)],
                     remembered=40)  # a write of 40 records: all stored
    read = Contact.from_document("c", stored.to_document(), 1, None)
    assert read.recent == stored.recent and read.to_document()["recent"] == stored.recent[-RECENT_IDS:]
    read.remember("d0000003")  # an old record redelivered: recognised, and kept from now on
    read.remember("new00001")
    kept = read.to_document()["recent"]
    assert kept[-2:] == ["d0000003", "new00001"] and len(kept) == RECENT_IDS + 2


def test_a_merge_keeps_both_rings_of_digests():
    survivor = Contact(id="s", created_at="2026-11-01T00:00:00.000Z", recent=[f"s{i:07d}" for i in range(30)])
    loser = Contact(id="l", created_at="2026-11-02T00:00:00.000Z", recent=[f"l{i:07d}" for i in range(30)])
    merge_parts(survivor, loser, MergeContext())
    assert set(survivor.to_document()["recent"]) >= set(loser.recent)
