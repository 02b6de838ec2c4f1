"""Port of coupon pools: where the codes of each pool wait to be handed out, once each.
Named by role; the DynamoDB adapter is adapters/dynamodb_coupons.py, the fake in tests/unit."""
from __future__ import annotations

import abc

TAKEN = "taken"  # the code is now the claim's
CODE_GONE = "code_gone"  # another claim took the code first: try another
CODE_USED = "code_used"  # the code was handed out before (uploaded again since): dropped, try another
CLAIM_EXISTS = "claim_exists"  # this claim id holds a code already (a racing retry of the same claim)


class CouponStore(abc.ABC):
    @abc.abstractmethod
    def known(self, pool: str, codes: list[str]) -> set[str]:
        """Those of `codes` the pool holds already, free or handed out."""

    @abc.abstractmethod
    def add_free(self, pool: str, codes: list[str]) -> None:
        """Make these codes free to claim (codes `known` did not report)."""

    @abc.abstractmethod
    def claimed(self, pool: str, claim_id: str) -> str | None:
        """The code this claim id holds, read consistently; None when it holds none."""

    @abc.abstractmethod
    def free_codes(self, pool: str, limit: int) -> list[str]:
        """At most `limit` free codes, read consistently (empty: none left)."""

    @abc.abstractmethod
    def take(self, pool: str, code: str, claim_id: str) -> str:
        """Give the free `code` to the claim, in one atomic step, only if the code is still
        free, never handed out before, and the claim holds no code yet. TAKEN, CODE_GONE,
        CODE_USED or CLAIM_EXISTS."""

    @abc.abstractmethod
    def counts(self, pool: str) -> tuple[int, int]:
        """(free, claimed) codes of the pool."""
