"""Coupon pools: personal codes uploaded by the marketer and handed out once each.

A journey's send may name a pool (`send: {template: birthday, coupon: birthday}`); before the
send the runtime claims a code under the send's action id and the template prints it as
`coupon`. Claiming is idempotent per claim id: a retried send gets the code it got the first
time, never a second one. A pool with no code left answers None (the send is skipped with
the reason `no_coupon_left`).

Claims race for the same free codes: each takes one atomically or loses and tries another
(CouponStore.take). Candidates are picked among a few free codes by a hash of the claim id,
so concurrent claims mostly try different codes. A lost race means the code left the free
codes (another claim took it), so a claim loses at most as many races as the pool has codes;
MAX_ATTEMPTS only bounds a pathological run, which raises CouponContention, a retryable
error (the caller's retry comes back for the same code or a new one, never two).

Uploads (`add`) check every line first: a bad line is named by its number and nothing is
added. Codes already in the pool (free or handed out) and repeated lines count as duplicates
and are not added again.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from chalicelib.domain.definition_errors import show
from chalicelib.services.contacts import BadQuery
from chalicelib.services.coupon_ports import CLAIM_EXISTS, TAKEN, CouponStore

POOL_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # the journey language's names (language.NAME)
MAX_CODE_LENGTH = 64
MAX_CLAIM_ID_LENGTH = 512
MAX_CODES_PER_UPLOAD = 5000  # one request stays well within an API call's time
CANDIDATES = 10  # free codes read per attempt, one picked by the claim id
MAX_ATTEMPTS = 50
CSV_HEADERS = ("code", "codes", "coupon", "coupon_code", "coupon code")


class CouponContention(Exception):
    """Every attempt lost its race for a free code: retry the claim later."""


@dataclass(frozen=True)
class UnreadableLine:
    """A line of an upload that holds no single code (e.g. a CSV row with two columns)."""

    reason: str


def code_problem(code: str) -> str | None:
    """Why a code cannot be a coupon code (None: it can)."""
    if len(code) > MAX_CODE_LENGTH:
        return f"{show(code[:20] + '…')} is longer than {MAX_CODE_LENGTH} characters"
    if any(c.isspace() for c in code):
        return f"{show(code)} contains a space: one code per line, without spaces"
    if not code.isprintable():
        return f"{show(code)} contains a character that cannot be printed"
    return None


def lines_of_text(text: str) -> list[str]:
    """A text/plain body: one code per line."""
    return text.split("\n")


def lines_of_csv(text: str) -> list[str | UnreadableLine]:
    """A text/csv body: one code per row, in its only column; a first row that only says
    `code` (or `coupon`...) is a header and left out. Each row keeps its line number."""
    lines: list[str | UnreadableLine] = []
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        while len(lines) < reader.line_num - 1:
            lines.append("")
        cells = [c for c in row if c.strip()]
        if len(cells) > 1:
            lines.append(UnreadableLine(f"{show(','.join(row))} has {len(cells)} columns: one code per row"))
        elif reader.line_num == 1 and cells and cells[0].strip().lower() in CSV_HEADERS:
            lines.append("")
        else:
            lines.append(cells[0] if cells else "")
    return lines


class CouponPools:
    def __init__(self, store: CouponStore):
        self.store = store

    def add(self, pool: str, codes: Sequence[object], place: Callable[[int], str] | None = None) -> dict:
        """Add the codes (each line one code; blank lines are skipped). Every bad line is a
        problem naming its place (`line 3: ...`) and then nothing is added."""
        pool = self._pool(pool)
        place = place or (lambda index: f"line {index + 1}")
        problems: list[str] = []
        fresh: dict[str, None] = {}
        repeated = 0
        for index, raw in enumerate(codes):
            if isinstance(raw, UnreadableLine):
                problems.append(f"{place(index)}: {raw.reason}")
                continue
            if not isinstance(raw, str):
                problems.append(f"{place(index)}: expected a code (text), got {show(raw)}")
                continue
            code = raw.strip()
            if not code:
                continue
            problem = code_problem(code)
            if problem:
                problems.append(f"{place(index)}: {problem}")
            elif code in fresh:
                repeated += 1
            else:
                fresh[code] = None
        if len(fresh) > MAX_CODES_PER_UPLOAD:
            problems.append(f"at most {MAX_CODES_PER_UPLOAD} codes per upload, got {len(fresh)}: "
                            "upload them in several parts")
        if problems:
            return {"added": 0, "duplicates": 0, "problems": problems}
        known = self.store.known(pool, list(fresh)) if fresh else set()
        new = [code for code in fresh if code not in known]
        if new:
            self.store.add_free(pool, new)
        return {"added": len(new), "duplicates": repeated + len(known), "problems": []}

    def claim(self, pool: str, claim_id: str) -> str | None:
        """The code of this claim: the one it got before, else a free one taken for it; None
        when the pool has no code left."""
        pool = self._pool(pool)
        if not isinstance(claim_id, str) or not claim_id or len(claim_id) > MAX_CLAIM_ID_LENGTH:
            raise BadQuery(f"claim id: expected 1 to {MAX_CLAIM_ID_LENGTH} characters, got {show(claim_id)}")
        for attempt in range(MAX_ATTEMPTS):
            held = self.store.claimed(pool, claim_id)
            if held is not None:
                return held
            candidates = self.store.free_codes(pool, CANDIDATES)
            if not candidates:
                return self.store.claimed(pool, claim_id)  # a racing retry of this claim may have taken the last
            code = candidates[_pick(claim_id, attempt, len(candidates))]
            outcome = self.store.take(pool, code, claim_id)
            if outcome == TAKEN:
                return code
            if outcome == CLAIM_EXISTS:
                continue  # read back at the top of the loop
        raise CouponContention(f"pool {pool}: {MAX_ATTEMPTS} attempts lost their race for a free code")

    def counts(self, pool: str) -> dict:
        free, claimed = self.store.counts(self._pool(pool))
        return {"free": free, "claimed": claimed}

    @staticmethod
    def _pool(pool: object) -> str:
        if not isinstance(pool, str) or not POOL_ID.fullmatch(pool):
            raise BadQuery(f"pool: {show(pool)} is not a pool name (1 to 64 lowercase letters, digits, _ and -, "
                           "e.g. birthday)")
        return pool


def _pick(claim_id: str, attempt: int, count: int) -> int:
    digest = hashlib.sha256(f"{claim_id}\0{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count
