"""Campaign statistics: the funnel of every campaign, per template and variant.

Counting happens where statuses change: `CountingMessageLog` wraps the message log, and each
time a message of a campaign first enters a funnel status (requested, deferred, sent,
delivered, opened, clicked, converted, bounced, complained, unsubscribed, skipped — skips
also by reason code — failed) it adds one to that counter. "First" is decided by an atomic
mark on the message itself (CountOnce: a conditional update that only one writer wins), so
a redelivered SES notification, a second open, a replayed fan-out batch or a message
deferred three times counts once. The mark is written before the counter is added: a crash
between the two loses that one count rather than counting it twice. A log that can carry the
marks on its own status writes (MarksOnWrite: the DynamoDB log adds them to the same
UpdateItem that moves the status and learns from the item as it was whether each was new)
costs no write of its own for them; any other log is asked through CountOnce.

A click implies an open (images are often off; Apple's privacy protection opens everything):
a first click also counts an open if the message had none.

Conversions: `converted` counts messages moved to the `converted` status, and `revenue` sums
their orders' values. The six-groups rules (domain/engagement.py: a purchase within the
campaign's attribution window after a click, on the visit that click began) decide a
conversion on the contact; the stream records it as Message Converted, naming the message
whose link was clicked last before the purchase, and its handler (services/handlers.py)
moves that message to `converted` with the order's value.
"""
from __future__ import annotations

import abc
from datetime import datetime

from chalicelib.domain.messaging.messages import (
    BOUNCED,
    CLICKED,
    COMPLAINED,
    CONVERTED,
    DEFERRED,
    DELIVERED,
    FAILED,
    OPENED,
    QUEUED,
    SENT,
    SKIPPED,
    UNSUBSCRIBED,
    Message,
    StatusChange,
)
from chalicelib.services.broadcast_ports import CampaignStats, CountOnce
from chalicelib.services.message_ports import MessageLog

REQUESTED = "requested"
REVENUE_CENTS = "revenue_cents"  # the order values of converted messages, attributed to the last click
FUNNEL = (REQUESTED, DEFERRED, SENT, DELIVERED, OPENED, CLICKED, CONVERTED, BOUNCED, COMPLAINED, UNSUBSCRIBED,
          SKIPPED, FAILED)
_COUNTER_OF = {QUEUED: REQUESTED, **{s: s for s in FUNNEL if s != REQUESTED}}


def counter_keys(change: StatusChange) -> list[str]:
    """The counters one status change adds to (skips also by their reason code)."""
    name = _COUNTER_OF.get(change.status)
    if name is None:
        return []
    keys = [name]
    if change.status == SKIPPED and change.detail.get("code"):
        keys.append(f"{SKIPPED}:{change.detail['code']}")
    return keys


def _counted_statuses(change: StatusChange) -> list[StatusChange]:
    """The statuses one change counts: a click counts an open too."""
    return [change] + ([StatusChange(OPENED, change.at)] if change.status == CLICKED else [])


def marks_of(changes) -> list[str]:
    """The count-once marks of these changes (the first counter key of each status counted)."""
    marks = []
    for change in changes:
        for one in _counted_statuses(change):
            keys = counter_keys(one)
            if keys and keys[0] not in marks:
                marks.append(keys[0])
    return marks


class MarksOnWrite(abc.ABC):
    """A message log whose status writes carry the count-once marks: each returns, beside its
    usual answer, the marks that write added (those no earlier write had added)."""

    @abc.abstractmethod
    def create_marked(self, message: Message, marks) -> bool: ...

    @abc.abstractmethod
    def advance_marked(self, message_id: str, change: StatusChange, marks, **fields
                       ) -> tuple[Message | None, set[str]]: ...

    @abc.abstractmethod
    def release_marked(self, message_id: str, change: StatusChange, marks) -> tuple[Message | None, set[str]]: ...

    @abc.abstractmethod
    def record_once_marked(self, message_id: str, change: StatusChange, marks
                           ) -> tuple[str, Message | None, set[str]]: ...


class CountingMessageLog(MessageLog):
    """The message log, counting each campaign message's first entry into each funnel status."""

    def __init__(self, log: MessageLog, once: CountOnce, stats: CampaignStats):
        self.inner = log
        self.once = once
        self.stats = stats
        self.marking = log if isinstance(log, MarksOnWrite) else None

    def _count(self, message: Message | None, changes, new_marks: set[str] | None = None) -> None:
        """`new_marks`: the marks the write itself added (MarksOnWrite); None: ask CountOnce."""
        if message is None or not message.campaign:
            return
        counts: dict[str, int] = {}
        for change in changes:
            for one in _counted_statuses(change):
                keys = counter_keys(one)
                first = keys and (keys[0] in new_marks if new_marks is not None
                                  else self.once.first_time(message.id, keys[0]))
                if first:
                    if new_marks is not None:
                        new_marks = new_marks - {keys[0]}  # a status twice in one write counts once
                    for key in keys:
                        counts[key] = counts.get(key, 0) + 1
                    revenue = one.detail.get("revenue") if one.status == CONVERTED else None
                    if isinstance(revenue, (int, float)) and not isinstance(revenue, bool):
                        # In cents, so the atomic ADD of the counters stays exact.
                        counts[REVENUE_CENTS] = counts.get(REVENUE_CENTS, 0) + round(revenue * 100)
        if counts:
            self.stats.add(message.campaign, message.template, message.variant, counts)

    def create(self, message: Message) -> bool:
        if self.marking is not None:
            marks = marks_of(message.timeline) if message.campaign else []
            # `requested` is decided by the conditional create itself and never asked again:
            # only the others (a scheduled request's `deferred`) are kept on the message.
            created = self.marking.create_marked(message, [m for m in marks if m != REQUESTED])
            if created:  # a new message: every mark it carries is new
                self._count(message, message.timeline, set(marks))
            return created
        created = self.inner.create(message)
        if created:
            self._count(message, message.timeline)
        return created

    def get(self, message_id: str) -> Message | None:
        return self.inner.get(message_id)

    def claim(self, message_id: str, change: StatusChange, lease_until: datetime) -> Message | None:
        return self.inner.claim(message_id, change, lease_until)

    def release(self, message_id: str, change: StatusChange) -> Message | None:
        if self.marking is not None:
            released, new_marks = self.marking.release_marked(message_id, change, marks_of([change]))
            self._count(released, [change], new_marks)
            return released
        released = self.inner.release(message_id, change)
        self._count(released, [change])
        return released

    def advance(self, message_id: str, change: StatusChange, **fields) -> Message | None:
        if self.marking is not None:
            updated, new_marks = self.marking.advance_marked(message_id, change, marks_of([change]), **fields)
            self._count(updated, [change], new_marks)
            return updated
        updated = self.inner.advance(message_id, change, **fields)
        self._count(updated, [change])
        return updated

    def record_once(self, message_id: str, change: StatusChange) -> tuple[str, Message | None]:
        if self.marking is not None:
            outcome, message, new_marks = self.marking.record_once_marked(message_id, change, marks_of([change]))
            self._count(message, [change], new_marks)
            return outcome, message
        outcome, message = self.inner.record_once(message_id, change)
        if outcome == "applied":
            self._count(message, [change])
        return outcome, message

    def sends_of(self, contact_id, since, limit=200):
        return self.inner.sends_of(contact_id, since, limit)

    def by_provider_id(self, provider_id: str) -> Message | None:
        return self.inner.by_provider_id(provider_id)

    def for_contact(self, contact_id, since=None, limit=100, cursor=None):
        return self.inner.for_contact(contact_id, since=since, limit=limit, cursor=cursor)

    def erase_contact(self, contact_id: str) -> int:
        return self.inner.erase_contact(contact_id)


def funnel(rows: list[dict]) -> dict:
    """The campaign's funnel: totals, and per template and variant."""
    totals: dict[str, int] = {}
    variants = []
    for row in sorted(rows, key=lambda r: (r.get("variant") or "", r.get("template") or "")):
        counts = {k: int(v) for k, v in row["counts"].items()}
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
        variants.append({"template": row.get("template") or None, "variant": row.get("variant"),
                         "counts": _ordered(counts)})
    return {"totals": _ordered(totals), "by_template_and_variant": variants}


def _ordered(counts: dict[str, int]) -> dict:
    main = {k: counts.get(k, 0) for k in FUNNEL}
    reasons = {k: v for k, v in sorted(counts.items()) if k not in main and k != REVENUE_CENTS}
    return {**main, "revenue": counts.get(REVENUE_CENTS, 0) / 100, **reasons}
