"""Counter additions summed in memory for the length of one batch (a queue consumer's batch of
records) and written once when it ends: one UpdateItem per counter item instead of one per
message. Outside `batched()` every addition is written at once, as before.

Why this is safe for what the counters mean: each addition is already decided by then (the
count-once mark on the message was written), so a batch that dies before its flush loses
those counts (counted too few, never twice), as a crash between the mark and the addition
always could. A flush that fails is logged with the counts it could not write; it does not
fail the batch (the sends and their records are done and must not be retried for it).
"""
from __future__ import annotations

import logging
import threading
from contextlib import ExitStack, contextmanager

logger = logging.getLogger(__name__)


class BatchedAdds:
    """Mixin for an adapter with atomic ADD counters: `_write_pending(pending)` writes what a
    batch summed, `_pending()` is the current thread's open batch (None outside one)."""

    _local: threading.local | None = None

    def _thread_state(self) -> threading.local:
        if self._local is None:
            self._local = threading.local()
        return self._local

    def _pending(self) -> dict | None:
        return getattr(self._thread_state(), "pending", None)

    @contextmanager
    def batched(self):
        """Additions inside are summed and written when it ends (a nested batch joins the outer)."""
        state = self._thread_state()
        if getattr(state, "pending", None) is not None:
            yield
            return
        state.pending = {}
        try:
            yield
        finally:
            pending, state.pending = state.pending, None
            if pending:
                try:
                    self._write_pending(pending)
                except Exception as exc:  # noqa: BLE001 - see the module's docstring
                    logger.error("counters not written", extra={"counters": repr(pending)[:2000], "error": repr(exc)})

    def _write_pending(self, pending: dict) -> None:
        raise NotImplementedError


def add_into(target: dict, counts: dict) -> None:
    for key, value in counts.items():
        if value:
            target[key] = target.get(key, 0) + int(value)


@contextmanager
def counter_batch(*adapters):
    """One batch over several adapters with `batched()` (others write at once). Every batch
    is closed even when another's flush raises (ExitStack), so none stays open into the next
    invocation of a warm container."""
    with ExitStack() as stack:
        for adapter in adapters:
            batched = getattr(adapter, "batched", None)
            if batched is not None:
                stack.enter_context(batched())
        yield
