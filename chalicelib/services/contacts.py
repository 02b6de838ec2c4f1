"""Admin reads of the single customer view: a contact by any identifier, and its timeline."""
from __future__ import annotations

import base64
import binascii

from chalicelib.domain.contact import Contact, counters_view
from chalicelib.domain.identity import kind_of, parse_identifier
from chalicelib.services.ports import Clock, ContactRepository, EventStore

MAX_PAGE = 200
EVENT_PARTITION_KINDS = ("user", "anon", "email", "phone")


class NotFound(Exception):
    pass


class BadQuery(ValueError):
    pass


def contact_view(contact: Contact, clock: Clock, score_of=None) -> dict:
    now = clock.now()
    score = round(score_of(contact, now), 2) if score_of is not None and contact.score else 0
    return {
        "id": contact.id,
        "traits": contact.traits,
        "identifiers": contact.identifiers,
        "first_seen": contact.first_seen,
        "last_seen": contact.last_seen,
        "created_at": contact.created_at,
        "counters": counters_view(contact.counters, now.date()),
        "segments": contact.segments,
        "score": score,
        "grade": contact.score.get("grade"),
        "stage": contact.stage,
        "tags": contact.tags,
        "rfm": contact.rfm,
        "persona": contact.persona,
        "consent": contact.consent,
        "last_context": contact.last_context,
        "groups": contact.groups,
        "merged_from": contact.merged_from,
    }


class ContactQueries:
    def __init__(self, repo: ContactRepository, events: EventStore, clock: Clock, score_of=None):
        self.repo = repo
        self.events = events
        self.clock = clock
        self.score_of = score_of  # (contact, now) -> decayed lead score

    def _resolve(self, contact_id: str) -> Contact:
        contact = self.repo.survivor(contact_id)
        if contact is None:
            raise NotFound(f"no contact {contact_id}")
        return contact

    def by_identifier(self, identifier: str | None) -> dict:
        if not identifier:
            raise BadQuery("identifier is required, e.g. ?identifier=email:ada@example.com")
        try:
            normalised = parse_identifier(identifier)
        except ValueError as exc:
            raise BadQuery(f"identifier {identifier!r}: {exc}") from None
        owner = self.repo.lookup([normalised], consistent=True).get(normalised)
        if owner is None:
            raise NotFound(f"no contact is known by {normalised}")
        return contact_view(self._resolve(owner), self.clock, self.score_of)

    def contact(self, contact_id: str) -> Contact:
        """The contact itself (followed to where it was merged), read only."""
        return self._resolve(contact_id)

    def by_id(self, contact_id: str) -> dict:
        return contact_view(self._resolve(contact_id), self.clock, self.score_of)

    def timeline(self, contact_id: str, limit: str | None = None, cursor: str | None = None,
                 kind: str | None = None) -> dict:
        """kind: `tracked` (what the person did), `internal` (what Mercurio recorded about
        them: segment changes, score, stage) or all of it (default)."""
        if kind not in (None, "", "all", "tracked", "internal"):
            raise BadQuery("kind must be tracked, internal or all")
        try:
            size = int(limit) if limit is not None else 50
        except ValueError:
            raise BadQuery(f"limit {limit!r} is not a whole number") from None
        if not 1 <= size <= MAX_PAGE:
            raise BadQuery(f"limit must be between 1 and {MAX_PAGE}")
        before = None
        if cursor:
            padded = cursor + "=" * (-len(cursor) % 4)
            try:
                before = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                before = ""
            if "#" not in before:
                raise BadQuery("cursor is not one this API returned")
        contact = self._resolve(contact_id)
        partitions = []
        if kind != "internal":
            partitions += [i for i in contact.identifiers if kind_of(i) in EVENT_PARTITION_KINDS]
        if kind != "tracked":
            partitions += [f"contact:{cid}" for cid in [contact.id, *contact.merged_from]]
        events, next_sk = self.events.timeline(partitions, size, before)
        page: dict = {"contact_id": contact.id, "events": [timeline_entry(e) for e in once_per_message(events)]}
        if next_sk:
            page["next_cursor"] = base64.urlsafe_b64encode(next_sk.encode()).decode().rstrip("=")
        return page


def once_per_message(events: list[dict]) -> list[dict]:
    """One entry per messageId, as Segment counts them: a resend stored under another
    timestamp shows until the stream handler removes it (services/resent_events.py), or for
    good when it came after the contact forgot the messageId. The page is newest first, so
    the entry kept is the newest of the page's copies."""
    seen: set = set()
    unique = []
    for event in events:
        message_id = event.get("messageId")
        if message_id is not None and message_id in seen:
            continue
        seen.add(message_id)
        unique.append(event)
    return unique


def timeline_entry(event: dict) -> dict:
    keep = ("type", "event", "name", "messageId", "timestamp", "receivedAt", "userId", "anonymousId",
            "properties", "traits", "groupId", "previousId", "context")
    return {k: event[k] for k in keep if k in event}
