"""The poller Lambda runs for an event source, for the emulator: call `poll_once` until
stopped, keep going after an error (as Lambda's poller does), and wait a little when
nothing came. Shared by the stream bridge and the queue bridge."""
from __future__ import annotations

import logging
import threading
from typing import Callable


def start_polling(name: str, poll_once: Callable[[], int], stop: threading.Event, idle_wait: float,
                  log: logging.Logger) -> threading.Thread:
    def loop():
        while not stop.is_set():
            try:
                if poll_once() == 0 and idle_wait:
                    stop.wait(idle_wait)
            except Exception:  # keep the bridge alive, as Lambda's poller would
                if stop.is_set():
                    return  # shutting down: the emulator may already be gone
                log.exception("%s poll failed", name)
                stop.wait(1.0)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
