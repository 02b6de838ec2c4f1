"""Each capability's part of the contact: the fields it owns, how they are stored, and how
two contacts that turn out to be one person combine them (its merge rule).

The contact (`chalicelib.domain.contact.Contact`) is composed of these parts. A capability
that keeps state on the contact (messaging and journeys next) adds one part here and lists
it in `PARTS`: serialisation and merging then include it without touching the others.

Merge rules say what a person who was two profiles has done in total:
- identity: identifiers united, traits by latest write per trait, earliest first seen,
  latest last seen and context, oldest creation date;
- counters: totals and day buckets summed, first/last and exact times combined;
- scoring: the points each earned, each decayed to the moment of the merge, added; the more
  advanced lifecycle stage; per-rule cap usage added within the same period (the person
  may not earn more than the cap because they had two profiles); tags united;
- RFM: orders and revenue summed, first and last purchase combined (scores and class are
  re-derived by the rules from the combined values);
- persona: the survivor's, else the loser's;
- segments: the survivor's memberships stand; the loser's end (the rules re-evaluate the
  survivor afterwards and emit what changed);
- engagement: per campaign, the earliest of each milestone, counts summed, clicks united;
- consent: per channel, the latest decision wins (a later opt-out beats an earlier opt-in);
- processed messages: the digests united (a redelivery to either profile stays harmless);
- outbox: the loser's unpublished effects move to the survivor, so a merge never drops one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

# Processed messageIds kept per contact beyond those of its latest write (which are all kept:
# `Contact.remember` says why that is what redelivery needs). Each costs 6 bytes of every
# contact write; 64 were kept when each event was its own write.
RECENT_IDS = 16
RECENT_TIMES = 20  # exact times of the latest occurrences, for precise sliding windows
STORED_PRECISION = 6
MAX_CAMPAIGNS = 50
MAX_CLICKS = 10


@dataclass(frozen=True)
class MergeContext:
    """What a merge rule may need beyond the two contacts: the moment of the merge, and the
    scoring model (decay and the order of lifecycle stages). Without a model, scores add up
    undecayed and the survivor's stage stands unless it has none."""

    now: datetime | None = None
    half_life: timedelta | None = None
    stage_rank: Callable[[str | None], int] | None = None


# -- small shared helpers --------------------------------------------------------------------

def earliest(*stamps):
    present = [t for t in stamps if t]
    return min(present) if present else None


def latest(*stamps):
    present = [t for t in stamps if t]
    return max(present) if present else None


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def iso_ms(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def merge_counters(ours: dict, theirs: dict) -> None:
    """Add `theirs` into `ours`: totals and buckets summed, first/last and exact times combined."""
    for name, entry in theirs.items():
        mine = ours.get(name)
        if mine is None:
            ours[name] = {**entry}
            for key, copy in (("days", dict), ("recent", list)):
                if key in entry:
                    ours[name][key] = copy(entry[key])
            continue
        mine["total"] += entry["total"]
        mine["first"] = min(mine["first"], entry["first"])
        mine["last"] = max(mine["last"], entry["last"])
        if "days" in entry or "days" in mine:  # kept only where a segment counts by window
            days = mine.setdefault("days", {})
            for day, n in (entry.get("days") or {}).items():
                days[day] = days.get(day, 0) + n
        recent = sorted(mine.get("recent", []) + entry.get("recent", []))[-RECENT_TIMES:]
        if recent:
            mine["recent"] = recent  # trimmed to what the segments need at the next occurrence
        if entry.get("as_of") or mine.get("as_of"):
            # A back-fill counted each profile's stored events up to its mark: events up to
            # the later mark are in the sum, so neither profile's are counted again.
            mine["as_of"] = latest(mine.get("as_of"), entry.get("as_of"))


# -- the typed state of one capability -------------------------------------------------------

@dataclass
class Score:
    """A lead score as stored: its value `points` at moment `at` (decay is applied on read),
    the grade, and what each capped rule has used in its current period."""

    points: float = 0.0
    at: str | None = None
    grade: str | None = None
    caps: dict = field(default_factory=dict)  # rule id -> {"period": iso, "points": used}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Score":
        data = data or {}
        return cls(float(data.get("points") or 0), data.get("at"), data.get("grade"),
                   {k: dict(v) for k, v in (data.get("caps") or {}).items()})

    def to_dict(self) -> dict:
        out: dict = {}
        if self.points or self.at:
            out["points"] = self.points
            if self.at:
                out["at"] = self.at
        if self.grade:
            out["grade"] = self.grade
        if self.caps:
            out["caps"] = self.caps
        return out

    def value_at(self, moment: datetime, half_life: timedelta | None) -> float:
        if not self.points or not self.at or half_life is None:
            return self.points
        start = parse_time(self.at)
        if moment <= start:
            return self.points
        return self.points * 0.5 ** ((moment - start) / half_life)

    def merged(self, other: "Score", ctx: MergeContext) -> "Score":
        stamps = [s for s in (self.at, other.at) if s]
        if ctx.now is not None:
            moment = ctx.now
        elif stamps:
            moment = parse_time(max(stamps))
        else:
            moment = None
        if moment is None:
            points, at = self.points + other.points, None
        else:
            points = self.value_at(moment, ctx.half_life) + other.value_at(moment, ctx.half_life)
            at = iso_ms(moment) if (self.at or other.at) else None
        caps = {k: dict(v) for k, v in self.caps.items()}
        for rule_id, used in other.caps.items():
            mine = caps.get(rule_id)
            if mine is None or used["period"] > mine["period"]:
                caps[rule_id] = dict(used)
            elif used["period"] == mine["period"]:
                mine["points"] = round(mine["points"] + used["points"], STORED_PRECISION)
        return Score(round(points, STORED_PRECISION), at, self.grade or other.grade, caps)


# -- the parts -------------------------------------------------------------------------------

class ContactPart:
    """One capability's fields on the contact. `dump`/`load` give its stored form; `merge`
    folds the loser's state into the survivor's."""

    name = ""
    fields: tuple[str, ...] = ()

    def dump(self, contact) -> dict:
        return {f: getattr(contact, f) for f in self.fields}

    def load(self, doc: dict) -> dict:
        return {f: doc[f] for f in self.fields if f in doc}

    def merge(self, survivor, loser, ctx: MergeContext) -> None:
        raise NotImplementedError


class IdentityPart(ContactPart):
    name = "identity"
    fields = ("created_at", "traits", "trait_ts", "identifiers", "first_seen", "last_seen", "last_context",
              "groups", "merged_from")

    def merge(self, survivor, loser, ctx):
        for key, value in loser.traits.items():
            ts = loser.trait_ts.get(key, "")
            if key not in survivor.trait_ts or ts > survivor.trait_ts[key]:
                survivor.traits[key] = value
                survivor.trait_ts[key] = ts
        for identifier in loser.identifiers:
            survivor.add_identifier(identifier)
        survivor.first_seen = earliest(survivor.first_seen, loser.first_seen)
        survivor.last_seen = latest(survivor.last_seen, loser.last_seen)
        if loser.last_context.get("at", "") > survivor.last_context.get("at", ""):
            survivor.last_context = loser.last_context
        for group_id, g in loser.groups.items():
            if group_id not in survivor.groups or g["at"] > survivor.groups[group_id]["at"]:
                survivor.groups[group_id] = g
        survivor.merged_from = sorted(set(survivor.merged_from) | {loser.id} | set(loser.merged_from))
        if loser.created_at and (not survivor.created_at or loser.created_at < survivor.created_at):
            survivor.created_at = loser.created_at


class CountersPart(ContactPart):
    """Per-event counters and the filtered counters segments and scoring keep."""

    name = "counters"
    fields = ("counters", "filtered")

    def merge(self, survivor, loser, ctx):
        merge_counters(survivor.counters, loser.counters)
        merge_counters(survivor.filtered, loser.filtered)


class ScoringPart(ContactPart):
    name = "scoring"
    fields = ("score", "stage", "tags")

    def merge(self, survivor, loser, ctx):
        survivor.score = Score.from_dict(survivor.score).merged(Score.from_dict(loser.score), ctx).to_dict()
        survivor.stage = more_advanced(survivor.stage, loser.stage, ctx.stage_rank)
        survivor.tags = sorted(set(survivor.tags) | set(loser.tags))


def more_advanced(ours: str | None, theirs: str | None, rank: Callable[[str | None], int] | None) -> str | None:
    if theirs is None:
        return ours
    if ours is None:
        return theirs
    if rank is None:
        return ours
    return theirs if rank(theirs) > rank(ours) else ours


class RfmPart(ContactPart):
    name = "rfm"
    fields = ("rfm",)

    def merge(self, survivor, loser, ctx):
        if not loser.rfm:
            return
        ours, theirs = survivor.rfm, loser.rfm
        survivor.rfm = {
            **ours,
            "orders": int(ours.get("orders") or 0) + int(theirs.get("orders") or 0),
            "revenue": round(float(ours.get("revenue") or 0) + float(theirs.get("revenue") or 0), 6),
            "first_purchase": earliest(ours.get("first_purchase"), theirs.get("first_purchase")),
            "last_purchase": latest(ours.get("last_purchase"), theirs.get("last_purchase")),
        }


class PersonaPart(ContactPart):
    name = "persona"
    fields = ("persona",)

    def merge(self, survivor, loser, ctx):
        survivor.persona = survivor.persona or loser.persona


class SegmentsPart(ContactPart):
    """Memberships and time checks: the survivor's stand; the loser's memberships are ended
    by the rules (`ProfileRules.forget_merged`) and the survivor is evaluated afresh, which
    recomputes its checks."""

    name = "segments"
    fields = ("segments", "checks", "next_check")

    def merge(self, survivor, loser, ctx):
        survivor.next_check = earliest(survivor.next_check, loser.next_check)


class EngagementPart(ContactPart):
    name = "engagement"
    fields = ("campaigns",)

    def merge(self, survivor, loser, ctx):
        for campaign_id, theirs in loser.campaigns.items():
            ours = survivor.campaigns.get(campaign_id)
            survivor.campaigns[campaign_id] = theirs if ours is None else merge_campaign(ours, theirs)
        while len(survivor.campaigns) > MAX_CAMPAIGNS:
            oldest = min(survivor.campaigns, key=lambda c: (survivor.campaigns[c].get("sent")
                                                            or survivor.campaigns[c].get("updated") or "", c))
            del survivor.campaigns[oldest]


_FIRST_OF = ("sent", "delivered", "opened", "complained", "unsubscribed")


def merge_campaign(ours: dict, theirs: dict) -> dict:
    """One recipient's summary of a campaign from two profiles' summaries."""
    merged = {**theirs, **ours}
    for key in _FIRST_OF:
        value = earliest(ours.get(key), theirs.get(key))
        if value is not None:
            merged[key] = value
    if "opens" in ours or "opens" in theirs:
        merged["opens"] = int(ours.get("opens") or 0) + int(theirs.get("opens") or 0)
    bounces = {ours.get("bounced"), theirs.get("bounced")} - {None}
    if bounces:
        merged["bounced"] = "hard" if "hard" in bounces else "soft"
    updated = latest(ours.get("updated"), theirs.get("updated"))
    if updated is not None:
        merged["updated"] = updated
    clicks = {c.get("id"): c for c in theirs.get("clicks") or []}
    clicks.update({c.get("id"): c for c in ours.get("clicks") or []})
    ordered = sorted(clicks.values(), key=lambda c: c.get("at") or "")
    more = int(ours.get("more_clicks") or 0) + int(theirs.get("more_clicks") or 0) + max(len(ordered) - MAX_CLICKS, 0)
    if ordered:
        merged["clicks"] = ordered[:MAX_CLICKS]
    if more:
        merged["more_clicks"] = more
    return merged


class ConsentPart(ContactPart):
    name = "consent"
    fields = ("consent",)

    def merge(self, survivor, loser, ctx):
        for channel, theirs in loser.consent.items():
            if theirs.get("at", "") > survivor.consent.get(channel, {}).get("at", ""):
                survivor.consent[channel] = theirs


class ProcessedMessagesPart(ContactPart):
    """Digests of the messageIds applied lately: a redelivered record is recognised.

    What must be recognised is what the stream can deliver again: after a partial failure,
    the records of a batch from the first failed one on (then again, if the retry fails
    too). A contact is written once per batch with all its records of that batch applied
    or recognised, so the stored ring keeps every digest remembered since the contact was
    read, however many (trimming earlier, while a redelivered batch is being recognised,
    would drop digests of its later records), and RECENT_IDS older ones for the writes of
    another shard in between (a contact's own Segment Entered/Exited events are stored
    under `contact:<id>`, a partition of their own), and for resends: the events table
    de-duplicates a resend only when it repeats the key (`originalTimestamp#messageId`); one
    without an original timestamp, or with another, is a new stream record that only this
    ring recognises (and the stream handler then deletes its row)."""

    name = "processed"
    fields = ("recent",)

    def dump(self, contact):
        return {"recent": contact.recent[-(RECENT_IDS + contact.remembered):]}

    def load(self, doc):
        if isinstance(doc.get("recent"), str):  # packed 8-character digests back to back
            packed = doc["recent"]
            return {"recent": [packed[i:i + 8] for i in range(0, len(packed), 8)]}
        return super().load(doc)

    def merge(self, survivor, loser, ctx):
        # Both rings are kept whole: either may hold records the stream can still redeliver.
        survivor.recent = survivor.recent + [m for m in loser.recent if m not in survivor.recent]
        survivor.remembered += len(loser.recent)


class OutboxPart(ContactPart):
    name = "outbox"
    fields = ("outbox",)

    def merge(self, survivor, loser, ctx):
        for effect in loser.outbox:
            kind = effect.get("kind")
            if kind in ("enter", "leave"):
                survivor.outbox.append({**effect, "contact_id": effect.get("contact_id", loser.id)})
            elif kind == "event":
                survivor.outbox.append(effect)  # names the loser's id: processing follows the merge pointer
            # a loser's recheck entry is not carried: the survivor is evaluated afresh


PARTS: tuple[ContactPart, ...] = (
    IdentityPart(), CountersPart(), ScoringPart(), RfmPart(), PersonaPart(), SegmentsPart(),
    EngagementPart(), ConsentPart(), ProcessedMessagesPart(), OutboxPart(),
)


def dump_parts(contact) -> dict:
    doc: dict = {}
    for part in PARTS:
        doc.update(part.dump(contact))
    return doc


def load_parts(doc: dict) -> dict:
    known: dict = {}
    for part in PARTS:
        known.update(part.load(doc))
    return known


def merge_parts(survivor, loser, ctx: MergeContext) -> None:
    for part in PARTS:
        part.merge(survivor, loser, ctx)
