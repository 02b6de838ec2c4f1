"""One small message bus: each typed domain event goes to the handlers registered for its
type (services/handlers.py, EVENT_HANDLERS), with their dependencies bound by bootstrap.

A handler that fails stops the publishing that called it: the contact keeps its outbox,
the stream retries the record, and the outbox is published again (every handler is
idempotent, keyed by the event's cause). Nothing is swallowed here.
"""
from __future__ import annotations

from typing import Callable

from chalicelib.domain.contact_events import ContactEvent

Handler = Callable[[ContactEvent], None]


class MessageBus:
    def __init__(self, event_handlers: dict[type, list[Handler]]):
        self.event_handlers = event_handlers

    def handle(self, event: ContactEvent) -> int:
        """Run every handler of the event's type; return how many ran."""
        handlers = self.event_handlers.get(type(event), [])
        for handler in handlers:
            handler(event)
        return len(handlers)
