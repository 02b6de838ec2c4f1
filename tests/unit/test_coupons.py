"""Coupon pools (services/coupons.py) over an in-memory store: uploads checked line by line,
claims idempotent per claim id and never handing a code out twice, races lost and retried;
and the `coupon` a template sees."""
from __future__ import annotations

import pytest

from chalicelib.domain.contact import Contact
from chalicelib.services.contacts import BadQuery
from chalicelib.services.coupon_ports import CLAIM_EXISTS, CODE_GONE, CODE_USED, TAKEN, CouponStore
from chalicelib.services.coupons import (
    MAX_ATTEMPTS,
    MAX_CODES_PER_UPLOAD,
    CouponContention,
    CouponPools,
    lines_of_csv,
    lines_of_text,
)


class FakeCouponStore(CouponStore):
    """Pools in dicts. `before_take(store, pool, code, claim_id)` runs before each take, so a
    test can let a concurrent claim win the race first."""

    def __init__(self, before_take=None):
        self.free: dict[str, list[str]] = {}
        self.claims: dict[str, dict[str, str]] = {}
        self.used: dict[str, dict[str, str]] = {}
        self.before_take = before_take
        self.takes = 0

    def known(self, pool, codes):
        return {c for c in codes if c in self.free.get(pool, []) or c in self.used.get(pool, {})}

    def add_free(self, pool, codes):
        self.free.setdefault(pool, []).extend(c for c in codes if c not in self.free.get(pool, []))

    def claimed(self, pool, claim_id):
        return self.claims.get(pool, {}).get(claim_id)

    def free_codes(self, pool, limit):
        return sorted(self.free.get(pool, []))[:limit]

    def take(self, pool, code, claim_id):
        self.takes += 1
        free, claims, used = self.free.get(pool, []), self.claims.setdefault(pool, {}), self.used.setdefault(pool, {})
        if self.before_take is not None:
            self.before_take(self, pool, code, claim_id)
        if claim_id in claims:
            return CLAIM_EXISTS
        if code in used:
            if code in free:
                free.remove(code)
                return CODE_USED
            return CODE_GONE
        if code not in free:
            return CODE_GONE
        free.remove(code)
        claims[claim_id] = code
        used[code] = claim_id
        return TAKEN

    def counts(self, pool):
        return len(self.free.get(pool, [])), len(self.claims.get(pool, {}))


@pytest.fixture
def store():
    return FakeCouponStore()


@pytest.fixture
def pools(store):
    return CouponPools(store)


# -- uploads ------------------------------------------------------------------------------------


def test_an_upload_adds_each_code_once_and_counts_the_duplicates(pools):
    assert pools.add("birthday", ["BDAY-1", "", "  BDAY-2\r", "BDAY-1", "BDAY-3"]) == {
        "added": 3, "duplicates": 1, "problems": []}
    assert pools.add("birthday", ["BDAY-3", "BDAY-4"]) == {"added": 1, "duplicates": 1, "problems": []}
    assert pools.counts("birthday") == {"free": 4, "claimed": 0}
    assert pools.counts("other") == {"free": 0, "claimed": 0}


def test_every_bad_line_is_named_by_its_number_and_then_nothing_is_added(pools):
    long_code = "X" * 65
    result = pools.add("birthday", lines_of_text(f"GOOD-1\nTWO WORDS\n\n{long_code}\nTAB\tBED\nBELL\x07\nGOOD-2\n"))
    assert result["added"] == 0 and result["duplicates"] == 0
    assert result["problems"] == [
        'line 2: "TWO WORDS" contains a space: one code per line, without spaces',
        f'line 4: "{"X" * 20}…" is longer than 64 characters',
        'line 5: "TAB\\tBED" contains a space: one code per line, without spaces',
        'line 6: "BELL\\u0007" contains a character that cannot be printed']
    assert pools.counts("birthday") == {"free": 0, "claimed": 0}
    assert pools.add("birthday", ["X" * 64, "é-ü-1"])["added"] == 2  # 64 characters, any printable letters


def test_json_items_are_named_by_their_index(pools):
    result = pools.add("birthday", ["OK-1", 42, None, "A B"], lambda i: f"codes[{i}]")
    assert result["problems"] == ["codes[1]: expected a code (text), got 42", "codes[2]: expected a code (text), "
                                  "got null", 'codes[3]: "A B" contains a space: one code per line, without spaces']


def test_a_csv_upload_has_one_code_per_row_and_may_start_with_a_header(pools):
    assert lines_of_csv("code\nC-1\n\"C-2\"\n\nC-3,\n") == ["", "C-1", "C-2", "", "C-3"]
    assert lines_of_csv("C-0\r\nC-1\r\n") == ["C-0", "C-1"]  # a first row that is a code stays
    result = pools.add("birthday", lines_of_csv("Code\nC-1\nC-2,C-3\n"))
    assert result["problems"] == ['line 3: "C-2,C-3" has 2 columns: one code per row']


def test_an_upload_is_bounded_and_a_pool_name_is_checked(pools):
    too_many = [f"C-{i}" for i in range(MAX_CODES_PER_UPLOAD + 1)]
    assert pools.add("big", too_many)["problems"] == [f"at most {MAX_CODES_PER_UPLOAD} codes per upload, got "
                                                      f"{MAX_CODES_PER_UPLOAD + 1}: upload them in several parts"]
    for bad in ("Birthday", "", "a/b", "x" * 65, None):
        with pytest.raises(BadQuery, match="is not a pool name"):
            pools.add(bad, ["C-1"])
        with pytest.raises(BadQuery):
            pools.claim(bad, "claim-1")
        with pytest.raises(BadQuery):
            pools.counts(bad)


# -- claims -------------------------------------------------------------------------------------


def test_a_claim_gets_a_code_and_the_same_claim_id_always_gets_the_same_one(pools):
    pools.add("birthday", ["B-1", "B-2", "B-3"])
    first = pools.claim("birthday", "enrollment-1:birthday-email:0")
    assert first in ("B-1", "B-2", "B-3")
    assert pools.claim("birthday", "enrollment-1:birthday-email:0") == first
    second = pools.claim("birthday", "enrollment-2:birthday-email:0")
    assert second != first
    assert pools.counts("birthday") == {"free": 1, "claimed": 2}


def test_a_pool_with_no_code_left_answers_none_but_a_claim_keeps_its_code(pools):
    assert pools.claim("empty", "c-1") is None
    pools.add("one", ["ONLY"])
    assert pools.claim("one", "c-1") == "ONLY"
    assert pools.claim("one", "c-2") is None
    assert pools.claim("one", "c-1") == "ONLY"


def test_every_code_goes_once_to_many_claims(pools):
    codes = [f"C-{i:03}" for i in range(40)]
    pools.add("p", codes)
    given = [pools.claim("p", f"claim-{i}") for i in range(45)]
    assert sorted(c for c in given if c) == codes and given[40:] == [None] * 5


def test_a_lost_race_is_retried_on_another_code():
    lost = []

    def rival_first(store, pool, code, claim_id):
        if not lost:  # a concurrent claim takes the very code this one picked
            lost.append(code)
            store.free[pool].remove(code)
            store.claims[pool]["rival"] = code
            store.used[pool][code] = "rival"

    store = FakeCouponStore(rival_first)
    pools = CouponPools(store)
    pools.add("p", ["A", "B", "C"])
    mine = pools.claim("p", "mine")
    assert mine is not None and mine != lost[0] and store.takes == 2
    assert pools.counts("p") == {"free": 1, "claimed": 2}


def test_a_racing_retry_of_the_same_claim_gets_the_code_the_other_one_took():
    def same_claim_elsewhere(store, pool, code, claim_id):
        if claim_id not in store.claims[pool]:
            other = [c for c in store.free[pool] if c != code][0]
            store.free[pool].remove(other)
            store.claims[pool][claim_id] = other
            store.used[pool][other] = claim_id

    store = FakeCouponStore(same_claim_elsewhere)
    pools = CouponPools(store)
    pools.add("p", ["A", "B"])
    code = pools.claim("p", "send-1")
    assert code == store.claims["p"]["send-1"] and pools.counts("p") == {"free": 1, "claimed": 1}


def test_a_code_uploaded_again_after_it_was_handed_out_never_goes_twice(store, pools):
    pools.add("p", ["A"])
    assert pools.claim("p", "first") == "A"
    assert pools.add("p", ["A"]) == {"added": 0, "duplicates": 1, "problems": []}
    store.free["p"].append("A")  # as if two uploads raced past the duplicate check
    assert pools.claim("p", "second") is None
    assert store.free["p"] == [] and store.claims["p"] == {"first": "A"}


def test_a_claim_that_keeps_losing_raises_a_retryable_error():
    def always_someone_else(store, pool, code, claim_id):
        store.free[pool].remove(code)
        store.free[pool].append(code + "+")  # the pool never runs dry, the race is always lost

    pools = CouponPools(FakeCouponStore(always_someone_else))
    pools.add("p", ["A", "B"])
    with pytest.raises(CouponContention, match=f"{MAX_ATTEMPTS} attempts"):
        pools.claim("p", "unlucky")


def test_a_claim_id_is_required(pools):
    for bad in ("", None, "x" * 513):
        with pytest.raises(BadQuery, match="claim id"):
            pools.claim("p", bad)


# -- the template's `coupon` --------------------------------------------------------------------


def test_a_message_whose_data_carries_a_coupon_shows_it_to_the_template_as_coupon():
    from chalicelib.services.messaging import template_variables

    contact = Contact(id="c1", created_at="2026-01-01T00:00:00Z", traits={"email": "ada@example.com"})
    with_code = template_variables(contact, message_id="m1", campaign=None, data={"coupon": "BDAY-1", "x": 1},
                                   links={})
    assert with_code["coupon"] == "BDAY-1" and with_code["data"] == {"coupon": "BDAY-1", "x": 1}
    for data in ({}, {"coupon": ""}, {"coupon": 7}):
        assert "coupon" not in template_variables(contact, message_id="m1", campaign=None, data=data, links={})


def test_a_template_printing_the_coupon_validates_only_with_a_sample_coupon():
    from chalicelib.domain.messaging.templates import TemplateEngine

    source = "---\nkind: transactional\n{extra}---\nYour code: {{{{ coupon }}}}\n"
    engine = TemplateEngine()
    assert engine.validate("gift.sms.j2", source.format(extra="sample_data: {coupon: GIFT-1}\n")).ok
    verdict = engine.validate("gift.sms.j2", source.format(extra=""))
    assert not verdict.ok and "'coupon' is undefined" in str(verdict)
    compiled = engine.compile("gift.sms.j2", source.format(extra="sample_data: {coupon: GIFT-1}\n"))
    assert engine.render_sample(compiled).text == "Your code: GIFT-1"
