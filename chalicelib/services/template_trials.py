"""Trying a template before it reaches anyone: a preview rendered for a real contact (with the
variables a real send builds: services/messaging.py, template_variables), and a test send of
one email or SMS to an address the operator gives, never to the contact.

A test send is a message like any other (message log, queue, gate's suppression check,
provider), under its own contact id (`~test:<id>`, so it never counts against a contact's
cap or shows on its timeline) and with a fresh cause, so every test is a new message. The
subject says "[Test]"; the message's data says what was asked (address, contact or sample).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from chalicelib.domain.identity import InvalidIdentifier, normalise_email, normalise_phone
from chalicelib.domain.messaging.links import PREFERENCES, UNSUBSCRIBE, LinkTracker
from chalicelib.domain.messaging.templates import Rendered, parse_filename
from chalicelib.services.contacts import BadQuery, NotFound
from chalicelib.services.messaging import (
    LINK_TTL,
    TEST_CONTACT_PREFIX,
    TEST_SEND,
    MessagingService,
    render_for_contact,
)
from chalicelib.services.ports import Clock, ContactRepository
from chalicelib.services.templates import TemplateAuthoring

CHANNEL_OF_FORMAT = {"html": "email", "sms": "sms"}
PREVIEW_MESSAGE_ID = "preview"


@dataclass
class TemplateTrials:
    authoring: TemplateAuthoring
    messaging: MessagingService
    contacts: ContactRepository
    clock: Clock
    tracker: Callable[[], LinkTracker]
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex

    def preview_for_contact(self, filename: str, contact_id: str) -> Rendered:
        """The accepted version rendered for this contact, exactly as a send would see it (its
        locale and zone, traits, segments, score; the template's sample data as the message's
        data, signed links of a message called `preview`), sending nothing."""
        compiled = self.authoring.compiled(filename)
        contact = self._contact(contact_id)
        now = self.clock.now()
        tracker = self.tracker()
        links = {"unsubscribe": tracker.page_url(UNSUBSCRIBE, PREVIEW_MESSAGE_ID, now + LINK_TTL),
                 "preferences": tracker.page_url(PREFERENCES, PREVIEW_MESSAGE_ID, now + LINK_TTL)} \
            if compiled.name.format == "html" else {}
        return render_for_contact(compiled, contact, message_id=PREVIEW_MESSAGE_ID, campaign=None,
                                  data=dict(compiled.sample_data), links=links, now=now)

    def test_send(self, filename: str, to: object, sample: object = None, contact_id: object = None) -> dict:
        compiled = self.authoring.compiled(filename)
        fmt = parse_filename(filename).format
        channel = CHANNEL_OF_FORMAT.get(fmt)
        if channel is None:
            raise BadQuery(f"a test send is an email or an SMS; {filename!r} is a {fmt} template")
        address = _address(channel, to)
        if sample is not None and not isinstance(sample, str):
            raise BadQuery("sample is the name of a sample contact")
        if sample is not None and all(s.name != sample for s in self.authoring.engine.samples):
            names = ", ".join(repr(s.name) for s in self.authoring.engine.samples)
            raise BadQuery(f"no sample called {sample!r}; the samples are {names}")
        if contact_id is not None:
            if not isinstance(contact_id, str) or not contact_id:
                raise BadQuery("contact_id is the id of a contact")
            self._contact(contact_id)
            if sample is not None:
                raise BadQuery("give a contact_id or a sample, not both")
        test_id = self.new_id()
        data = {TEST_SEND: {"to": address, "file": filename, "sample": sample, "contact_id": contact_id,
                            "requested_at": self.clock.now().isoformat(), "data": dict(compiled.sample_data)}}
        message = self.messaging.request(f"{TEST_CONTACT_PREFIX}{test_id}", parse_filename(filename).name, channel,
                                         f"test:{test_id}", data=data)
        return {"message_id": message.id, "status": message.status, "to": address, "channel": channel,
                "lane": message.lane, "test": True}

    def _contact(self, contact_id: str):
        contact = self.contacts.survivor(contact_id)
        if contact is None:
            raise NotFound(f"no contact {contact_id!r}")
        return contact


def _address(channel: str, to: object) -> str:
    if not isinstance(to, str) or not to.strip():
        raise BadQuery("to is the address the test goes to (an email address, or a phone number for SMS)")
    try:
        return normalise_email(to) if channel == "email" else normalise_phone(to)
    except InvalidIdentifier as exc:
        raise BadQuery(f"to: {exc}") from None
