"""Counter additions summed over a batch (adapters/counter_batches.py), without AWS."""
from __future__ import annotations

from chalicelib.adapters.counter_batches import BatchedAdds, add_into, counter_batch


class Counters(BatchedAdds):
    def __init__(self):
        self.written: list[dict] = []

    def add(self, key: str, n: int) -> None:
        pending = self._pending()
        if pending is not None:
            add_into(pending, {key: n})
        else:
            self.written.append({key: n})

    def _write_pending(self, pending: dict) -> None:
        self.written.append(dict(pending))


def test_additions_inside_a_batch_are_written_once_when_it_ends_and_a_nested_batch_joins_the_outer():
    counters = Counters()
    with counter_batch(counters, object()):  # an adapter without batches is left alone
        counters.add("sent", 1)
        with counters.batched():
            counters.add("sent", 2)
        counters.add("bounced", 1)
        assert counters.written == []
    assert counters.written == [{"sent": 3, "bounced": 1}]
    counters.add("sent", 1)  # outside a batch: at once
    assert counters.written[-1] == {"sent": 1}


def test_a_batch_that_raises_still_writes_what_it_counted():
    counters = Counters()
    try:
        with counter_batch(counters):
            counters.add("sent", 1)
            raise RuntimeError("a record failed")
    except RuntimeError:
        pass
    assert counters.written == [{"sent": 1}]


def test_when_one_flush_raises_every_batch_is_still_closed():
    import pytest

    class Refusing(Counters):
        def _write_pending(self, pending):
            raise RuntimeError("SQS refused")

        @property
        def batched(self):  # a queue's batch raises from its flush (it is retried)
            from contextlib import contextmanager

            @contextmanager
            def batch():
                self._thread_state().pending = {}
                try:
                    yield
                finally:
                    pending, self._thread_state().pending = self._thread_state().pending, None
                    self._write_pending(pending)
            return batch

    counters, refusing = Counters(), Refusing()
    with pytest.raises(RuntimeError, match="SQS refused"):
        with counter_batch(counters, refusing):
            counters.add("sent", 1)
    assert counters.written == [{"sent": 1}] and counters._pending() is None and refusing._pending() is None
