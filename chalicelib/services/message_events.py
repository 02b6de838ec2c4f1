"""Mercurio's own events about a contact's messages: what they carry, and how one is stored.

Every message event on a contact (Message Sent, Email Opened, Email Link Clicked, Email
Bounced, Email Complained, Email Unsubscribed; a delivery stays on the message, see
services/feedback.py) carries the message's id, its
campaign (`campaign_id`) and template: domain/engagement.py sorts a campaign's recipients into
its six groups from them, and segments read them (`message:` conditions). Each is stored under
the contact's own partition (`contact:{id}`) with a messageId derived from its cause, so a
retried handler stores it once.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chalicelib.domain.events import iso
from chalicelib.domain.messaging.messages import Message
from chalicelib.services.ports import EventStore, StoredEvent
from chalicelib.services.segmentation import internal_event

MESSAGE_SENT = "Message Sent"
# The SES message tag naming Mercurio's message: SES events carry it back (mail.tags), so
# feedback finds its message without a lookup by SES's own id.
MESSAGE_TAG = "mercurio_message"
TEST_CONTACT_PREFIX = "~test:"  # the contact id of a test send's message: nobody's


def message_event_properties(message: Message) -> dict:
    """What every message event on the contact carries (domain/engagement.py reads
    `campaign_id` and `message_id` to sort a campaign's recipients into its six groups)."""
    return {"message_id": message.id, "campaign_id": message.campaign, "campaign": message.campaign,
            "template": message.template, "template_id": message.template, "channel": message.channel,
            **({"variant": message.variant} if message.variant else {})}


def click_id_of(message_id: str, link_index: int, at: datetime) -> str:
    """The id of one click: the landing URL carries it (`mcid`), the snippet puts it on every
    event of the visit (`context.clickId`), and the six groups follow the visit by it."""
    return "clk_" + hashlib.sha256(f"{message_id}\x1f{link_index}\x1f{iso(at)}".encode()).hexdigest()[:24]


def with_click_id(url: str, click_id: str) -> str:
    """The destination with `mcid=<click id>` added to its query (its fragment kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "mcid"]
    query.append(("mcid", click_id))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def append_contact_event(events: EventStore, contact_id: str, name: str, properties: dict, now: datetime,
                         cause: str, ttl_days: int) -> dict:
    """One event about a contact, as Mercurio's own events are stored (partition
    `contact:{id}`); its messageId derives from `cause`, so a retry stores it once."""
    event = internal_event(contact_id, name, properties, now, cause)
    if contact_id.startswith(TEST_CONTACT_PREFIX):
        return event  # a test send's message has no contact (services/template_trials.py)
    ttl = int((now + timedelta(days=ttl_days)).timestamp())
    events.append([StoredEvent(partition=f"contact:{contact_id}",
                               sort=f"{event['originalTimestamp']}#{event['messageId']}", body=event, ttl=ttl)])
    return event


