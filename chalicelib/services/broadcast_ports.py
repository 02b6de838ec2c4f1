"""Ports of broadcasts and campaign statistics: the fan-out queue, the campaign funnel
counters and the once-only mark that keeps a redelivered status from being counted twice.
Named by role; the AWS adapters live in chalicelib/adapters/, fakes in tests/unit."""
from __future__ import annotations

import abc


class FanOutQueue(abc.ABC):
    """Where a launching broadcast puts its recipients, a batch of at most 100 contact ids
    per queue message; the consumer turns each batch into requested messages."""

    @abc.abstractmethod
    def send(self, batches: list[dict]) -> None:
        """Enqueue these batches (JSON documents); raises when any could not be enqueued, so
        the launch slice runs again (the same batches: nobody is asked twice for a message)."""


class CampaignStats(abc.ABC):
    """Funnel counters per campaign, template and variant, added atomically."""

    @abc.abstractmethod
    def add(self, campaign: str, template: str, variant: str | None, counts: dict[str, int]) -> None: ...

    @abc.abstractmethod
    def read(self, campaign: str) -> list[dict]:
        """[{"template", "variant", "counts": {name: n}}], one row per template and variant."""


class CountOnce(abc.ABC):
    """The first time a message reaches a status, and only then, says True (an atomic mark on
    the message: a redelivered bounce, a second click, a replayed batch say False)."""

    @abc.abstractmethod
    def first_time(self, message_id: str, key: str) -> bool: ...
