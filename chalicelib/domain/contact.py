"""The contact: one profile per person (the golden record), and how events change it.

Pure functions over a plain dataclass: applying an event, merging two contacts that turn
out to be one person, and choosing which one survives a merge.
"""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Callable

from chalicelib.domain.contact_state import (
    RECENT_TIMES,
    MergeContext,
    dump_parts,
    load_parts,
    merge_parts,
)
from chalicelib.domain.identity import (
    InvalidIdentifier,
    kind_of,
    make_identifier,
    normalise_email,
    normalise_phone,
    region_from_locale,
)

PAGE_VIEWED = "Page Viewed"
EMAIL_LINK_CLICKED = "Email Link Clicked"
SCREEN_VIEWED = "Screen Viewed"
IMPORT_LIBRARY = "mercurio-import"
INTERNAL_LIBRARY = "mercurio"  # events Mercurio emits itself (Segment Entered, Stage Changed…)
_MOBILE = re.compile(r"Mobi|Android|iPhone|iPad", re.I)


@dataclass
class Contact:
    id: str
    created_at: str
    traits: dict = field(default_factory=dict)
    trait_ts: dict = field(default_factory=dict)
    identifiers: list = field(default_factory=list)
    first_seen: str | None = None
    last_seen: str | None = None
    counters: dict = field(default_factory=dict)
    last_context: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)
    # Counters of events matching a filtered matcher (segments, scoring): key -> counter.
    filtered: dict = field(default_factory=dict)
    segments: dict = field(default_factory=dict)  # segment id -> {"since": iso}
    score: dict = field(default_factory=dict)  # {"points", "at", "caps": {rule: {"period", "points"}}}
    stage: str | None = None
    tags: list = field(default_factory=list)
    rfm: dict = field(default_factory=dict)  # {"first_purchase", "last_purchase", "orders", "revenue", "class", "r", "f", "m"}
    persona: str | None = None
    consent: dict = field(default_factory=dict)  # channel -> {"status", "at", "source"}
    campaigns: dict = field(default_factory=dict)  # campaign id -> engagement summary
    next_check: str | None = None  # earliest moment a time condition may change a segment
    checks: dict = field(default_factory=dict)  # segment id -> when time alone may change it
    outbox: list = field(default_factory=list)  # effects written with the contact, then published
    recent: list = field(default_factory=list)
    merged_from: list = field(default_factory=list)
    merged_into: str | None = None
    version: int | None = None
    # Digests remembered since this contact was read (not stored): they all stay in `recent`.
    remembered: int = field(default=0, compare=False, repr=False)

    def remember(self, digest: str) -> None:
        """Count `digest` among the processed messages, newest last (one seen again moves
        to the end). The stored ring keeps every digest remembered since the contact was
        read, and RECENT_IDS older ones (`ProcessedMessagesPart.dump` says why)."""
        if digest in self.recent:
            self.recent.remove(digest)
        self.recent.append(digest)
        self.remembered += 1

    def has(self, identifier: str) -> bool:
        return identifier in self.identifiers

    def add_identifier(self, identifier: str) -> None:
        if identifier not in self.identifiers:
            self.identifiers.append(identifier)
            self.identifiers.sort()

    def user_ids(self) -> set[str]:
        return {i for i in self.identifiers if kind_of(i) == "user"}

    def to_document(self) -> dict:
        """Everything but the key, version and merge pointer (stored as their own attributes),
        as each capability's part stores it."""
        return dump_parts(self)

    @classmethod
    def from_document(cls, contact_id: str, doc: dict, version: int | None, merged_into: str | None) -> "Contact":
        known = load_parts(doc)
        known.setdefault("created_at", "")
        return cls(id=contact_id, version=version, merged_into=merged_into, **known)


def identity_traits(traits: dict, locale: object = None) -> tuple[dict, list[str], list[str]]:
    """Normalise email and phone traits; return (traits, identifiers, problems)."""
    out = dict(traits)
    identifiers: list[str] = []
    problems: list[str] = []
    if traits.get("email") not in (None, ""):
        try:
            out["email"] = normalise_email(traits["email"])
            identifiers.append(f"email:{out['email']}")
        except InvalidIdentifier as exc:
            problems.append(f"traits.email {exc}")
    if traits.get("phone") not in (None, ""):
        try:
            out["phone"] = normalise_phone(traits["phone"], region_from_locale(locale))
            identifiers.append(f"phone:{out['phone']}")
        except InvalidIdentifier as exc:
            problems.append(f"traits.phone {exc}")
    return out, identifiers, problems


def event_identifiers(event: dict) -> list[str]:
    """Every identifier an event names, the event's own partition identifier first."""
    ids: list[str] = []
    if event.get("userId") is not None:
        ids.append(f"user:{event['userId']}")
    if event.get("anonymousId") is not None:
        ids.append(f"anon:{event['anonymousId']}")
    if event.get("partition"):
        ids.insert(0, event["partition"])
    if event["type"] == "identify":
        _, found, _ = identity_traits(event.get("traits") or {}, (event.get("context") or {}).get("locale"))
        ids.extend(found)
    # An email click links the recipient to the visit it starts: the click event (for the
    # recipient) and the visitor's events (carrying context.clickId) share `click:<id>`.
    click = (event.get("properties") or {}).get("click_id") if event.get("event") == EMAIL_LINK_CLICKED else None
    click = click or (event.get("context") or {}).get("clickId")
    if isinstance(click, str) and 0 < len(click.strip()) <= 128:
        ids.append(f"click:{click.strip()}")
    seen: set[str] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]


def alias_candidates(event: dict) -> list[str]:
    """alias.previousId may be an earlier userId or the anonymous id (analytics.js' default)."""
    prev = event.get("previousId")
    if prev is None:
        return []
    return [make_identifier("user", prev), make_identifier("anon", prev)]


def counter_name(event: dict) -> str | None:
    if event["type"] == "track":
        return event["event"]
    if event["type"] == "page":
        return PAGE_VIEWED
    if event["type"] == "screen":
        return SCREEN_VIEWED
    return None


def is_activity(event: dict) -> bool:
    """Imported CRM rows and Mercurio's own events describe a person; they are not
    something the person did."""
    library = ((event.get("context") or {}).get("library") or {}).get("name")
    return library not in (IMPORT_LIBRARY, INTERNAL_LIBRARY)


def _device(context: dict) -> str | None:
    device = context.get("device")
    if isinstance(device, dict) and isinstance(device.get("type"), str):
        return device["type"]
    ua = context.get("userAgent")
    if isinstance(ua, str) and ua:
        return "mobile" if _MOBILE.search(ua) else "desktop"
    return None


def _summarise_context(context: dict, timestamp: str) -> dict:
    summary: dict = {"at": timestamp}
    for key in ("locale", "timezone", "ip", "userAgent", "clickId"):
        if isinstance(context.get(key), str):
            summary[key] = context[key]
    device = _device(context)
    if device:
        summary["device"] = device
    if isinstance(context.get("campaign"), dict) and context["campaign"]:
        summary["campaign"] = context["campaign"]
    page = context.get("page")
    if isinstance(page, dict) and isinstance(page.get("url"), str):
        summary["page_url"] = page["url"]
    return summary


def epoch_seconds(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())


def bump_counter(counters: dict, name: str, timestamp: str, keep_days: int,
                 exact_times: int = RECENT_TIMES, day_buckets: bool = True) -> None:
    """Count one occurrence: total, first/last, and what the counter's readers need of its
    history: the latest `exact_times` exact times and, with `day_buckets`, daily counts."""
    entry = counters.setdefault(name, {"total": 0, "first": timestamp, "last": timestamp})
    if not entry["total"]:  # a count started empty (by a back-fill or a first non-matching event)
        entry["first"] = entry["last"] = timestamp
    entry["total"] += 1
    entry["first"] = min(entry["first"], timestamp)
    entry["last"] = max(entry["last"], timestamp)
    if day_buckets:
        days = entry.setdefault("days", {})
        day = timestamp[:10]
        days[day] = days.get(day, 0) + 1
        _prune_days(entry, keep_days)
    else:
        entry.pop("days", None)
    if exact_times > 0:
        entry["recent"] = sorted(entry.get("recent", []) + [epoch_seconds(timestamp)])[-exact_times:]
    else:
        entry.pop("recent", None)


def _prune_days(entry: dict, keep_days: int) -> None:
    if not entry.get("days"):
        return
    newest = date.fromisoformat(max(entry["days"]))
    cutoff = (newest - timedelta(days=keep_days)).isoformat()
    for day in [d for d in entry["days"] if d < cutoff]:
        del entry["days"][day]


# Traits only Mercurio writes, from its own events: where pushes go (domain/messaging/push_devices.py).
# An identify through the public write key must not point a contact's pushes at an endpoint of
# its choosing, so these are dropped from every identify.
SYSTEM_TRAITS = frozenset({"push_endpoints", "push_devices"})


def set_traits(contact: Contact, traits: dict, timestamp: str) -> None:
    """Latest write wins, per trait: an older event never overwrites a newer value."""
    for key, value in traits.items():
        if key not in contact.trait_ts or timestamp >= contact.trait_ts[key]:
            contact.traits[key] = value
            contact.trait_ts[key] = timestamp


def message_digest(message_id: str) -> str:
    """48 bits of the messageId as 8 characters: a collision among the digests a contact keeps
    is a 1-in-10^10 event, and the digests are stored back to back."""
    digest = hashlib.blake2b(message_id.encode("utf-8"), digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode()


CounterRetention = Callable[[str], tuple[int, bool]]


def apply_event(contact: Contact, event: dict, keep_days: int = 90,
                retention: CounterRetention | None = None) -> bool:
    """Fold one event into the contact. Returns False when it was already applied.

    `retention` says, per counter name, how many exact times and whether day buckets to
    keep (what the catalog's segments read: `SegmentIndex.retention`); without it, every
    counter keeps RECENT_TIMES exact times and day buckets."""
    message_id = message_digest(event["messageId"])
    if message_id in contact.recent:
        contact.remember(message_id)
        return False
    ts = event["timestamp"]
    context = event.get("context") or {}
    if event["type"] == "identify":
        traits, _, _ = identity_traits(event.get("traits") or {}, context.get("locale"))
        set_traits(contact, {k: v for k, v in traits.items() if k not in SYSTEM_TRAITS}, ts)
    elif event["type"] == "group":
        contact.groups[event["groupId"]] = {"traits": event.get("traits") or {}, "at": ts}
    name = counter_name(event)
    if name:
        exact, buckets = retention(name) if retention is not None else (RECENT_TIMES, True)
        bump_counter(contact.counters, name, ts, keep_days, exact, buckets)
    if is_activity(event):
        contact.first_seen = min(contact.first_seen or ts, ts)
        contact.last_seen = max(contact.last_seen or ts, ts)
        if ts >= contact.last_context.get("at", ""):
            contact.last_context = _summarise_context(context, ts)
    contact.remember(message_id)
    return True


def choose_survivor(contacts: list[Contact]) -> Contact:
    """The oldest profile survives, so ids that other systems hold stay valid."""
    return min(contacts, key=lambda c: (c.created_at or "~", c.id))


def can_merge(contacts: list[Contact]) -> bool:
    """Two different userIds are two people (a shared device is not one person)."""
    users: set[str] = set()
    for c in contacts:
        users |= c.user_ids()
    return len(users) <= 1


def merge_contacts(survivor: Contact, loser: Contact, context: MergeContext | None = None) -> Contact:
    """Combine the loser into the survivor, each capability by its own merge rule
    (`chalicelib.domain.contact_state`)."""
    merge_parts(survivor, loser, context or MergeContext())
    return survivor


def counters_view(counters: dict, today: date, windows: tuple[int, ...] = (1, 7, 30, 90)) -> dict:
    """Counters as an API shows them: total plus sliding-window counts."""
    view = {}
    for name, entry in counters.items():
        item = {"total": entry["total"], "first": entry["first"], "last": entry["last"]}
        if "days" not in entry:
            # Kept without day buckets: no segment counts it over a window (see bump_counter).
            view[name] = item
            continue
        for w in windows:
            start = (today - timedelta(days=w - 1)).isoformat()
            item[f"last_{w}d"] = sum(n for d, n in entry["days"].items() if d >= start)
        view[name] = item
    return view
