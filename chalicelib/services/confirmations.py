"""Resending a double opt-in's confirmation (admin API). The contact item is written by the
stream processor only, so the resend is asked for with an internal event the processor judges
against the stored confirmation (MAX_CONFIRMATIONS sends, RESEND_INTERVAL apart, before the
expiry: consent.resend_confirmation) and, when allowed, turns into the next confirmation
message. The same rules are checked here first, so the caller gets a clear answer at once.
"""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.messaging.consent import ConsentError, ConsentState, consent_key, resend_confirmation
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.ports import Clock, ContactRepository, EventStore
from chalicelib.services.segmentation import CONFIRMATION_RESEND_REQUESTED

REFUSALS = {"resend_too_soon": 429, "resend_limit": 429, "already_confirmed": 409, "not_pending": 409,
            "expired": 409}


class ResendRefused(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.status = REFUSALS.get(code, 409)


@dataclass
class Confirmations:
    contacts: ContactRepository
    events: EventStore
    clock: Clock
    ttl_days: int = 395

    def resend(self, contact_id: str, channel: object = "email", topic: object = None) -> dict:
        from chalicelib.services.interactions import append_contact_event

        if topic is not None and not isinstance(topic, str):
            raise BadQuery("topic is the name of a topic, or left out for the whole channel")
        try:
            key = consent_key(channel, topic)
        except ConsentError as exc:
            raise BadQuery(str(exc)) from None
        contact = self.contacts.get(contact_id, consistent=True)
        if contact is None or contact.merged_into:
            raise NotFound(f"no contact {contact_id!r}")
        now = self.clock.now()
        state = ConsentState.from_document(contact.consent)
        outcome = resend_confirmation(state, channel, topic, now)
        if not outcome.send_confirmation:
            raise ResendRefused(outcome.code, outcome.reason)
        sent = len(outcome.state.records[key].confirmation.sent)
        append_contact_event(self.events, contact_id, CONFIRMATION_RESEND_REQUESTED,
                             {"channel": channel, "topic": topic}, now, f"resend:{contact_id}:{key}:{sent}",
                             self.ttl_days)
        return {"contact_id": contact_id, "consent": key, "status": "resend_requested", "send_number": sent,
                "reason": outcome.reason}
