"""Real-time profile rules: counters for filtered matchers, lead scoring, RFM, personas,
campaign engagement, and segment membership — evaluated in the same stream batch as the
event that changed them, written in the same contact write.

Side effects (membership rows, internal events, recheck schedule) go through an outbox kept
on the contact: they are written with the contact, then published; publishing is
idempotent, so a crash between the two only means they are published again.
"""
from __future__ import annotations

import copy
import logging

import hashlib
from datetime import datetime

from chalicelib.domain import engagement, personas, rfm, scoring
from chalicelib.domain.contact import INTERNAL_LIBRARY as CONTACT_INTERNAL_LIBRARY
from chalicelib.domain.contact import Contact, bump_counter, counter_name, set_traits
from chalicelib.domain.contact_events import CONFIRMATION_REQUESTED, CONTACTS_MERGED, MESSAGE_CONVERTED, MESSAGE_TRIGGERED
from chalicelib.domain.contact_state import MergeContext
from chalicelib.domain.journeys.interest import JOURNEY_PROFILE_UPDATED
from chalicelib.domain.journeys.interest import signal_of as journey_signal
from chalicelib.domain.messaging import consent as consent_rules
from chalicelib.domain.messaging import push_devices
from chalicelib.domain.events import iso, parse_timestamp
from chalicelib.domain.segments.evaluator import EvaluationContext, evaluate
from chalicelib.services.catalog import Catalog

INTERNAL_SOURCE = "mercurio"
INTERNAL_LIBRARY = {"name": CONTACT_INTERNAL_LIBRARY, "version": "1"}
CONSENT_EVENT = "Consent Updated"
# Double opt-in (domain/messaging/consent.py): the processor records the pending request and
# asks for the confirmation message; the admin API asks for a resend through the processor,
# so the resend limits are judged against the stored confirmation, one event at a time.
CONFIRMATION_RESEND_REQUESTED = "Confirmation Resend Requested"
CAMPAIGN_AUDIENCE = "~campaign-{}"  # membership set of a campaign's recipients (not a segment id)

logger = logging.getLogger(__name__)


def internal_event(contact_id: str, name: str, properties: dict, now: datetime, cause: str) -> dict:
    """An event Mercurio itself emits about a contact (Segment Entered, Stage Changed…).
    Its id derives from what caused it, so publishing it twice stores it once."""
    digest = hashlib.sha256(f"{cause}|{name}|{sorted(properties.items())}".encode()).hexdigest()[:32]
    ts = iso(now)
    return {"type": "track", "event": name, "properties": properties, "contactId": contact_id,
            "messageId": f"mercurio-{digest}", "timestamp": ts, "originalTimestamp": ts, "receivedAt": ts,
            "context": {"library": INTERNAL_LIBRARY}, "source": INTERNAL_SOURCE}


def trait_names(event: dict) -> set[str]:
    return set((event.get("traits") or {}).keys()) if event["type"] == "identify" else set()


class ProfileRules:
    """Applies the catalog's rules to one contact. Pure logic over the Catalog; the outbox
    it fills is published by EffectsPublisher (services/effects.py) after the contact is saved."""

    def __init__(self, catalog_source, counter_days: int = 90, site_consent=None):
        self.catalog_source = catalog_source  # callable returning the current Catalog
        self.counter_days = counter_days
        # callable returning the SiteConsentPolicy (the consent forms the write key may use)
        self.site_consent = site_consent or consent_rules.SiteConsentPolicy

    def counter_retention(self):
        """Per event name, what a contact's counter keeps (`SegmentIndex.retention`)."""
        index = self.catalog_source().index
        return lambda name: index.retention("counter", name)

    # -- the context the segment evaluator reads through ------------------------------

    def context_for(self, catalog: Catalog, contact: Contact) -> EvaluationContext:
        config = catalog.scoring
        return EvaluationContext(
            is_member=lambda segment_id: segment_id in contact.segments,
            score_now=(lambda c, now: scoring.score_now(config, c, now)) if config else (lambda c, now: 0.0),
            score_crossing=(lambda c, threshold, now: scoring.score_crossing(config, c, threshold, now))
            if config else (lambda c, threshold, now: None),
            campaign_group=lambda c, campaign_id: engagement.campaign_group(c, campaign_id),
        )

    # -- on an event ---------------------------------------------------------------------

    def on_event(self, contact: Contact, event: dict, now: datetime, full: bool = False) -> None:
        catalog = self.catalog_source()
        name = counter_name(event)
        cause = event["messageId"]
        kinds: set[str] = set()
        if name:
            for matcher in catalog.matchers_for(name):
                entry = contact.filtered.get(matcher.key)
                if entry is None and contact.counters.get(name, {}).get("total", 0) > 1:
                    continue  # earlier history is not counted yet: the back-fill counts it all
                if entry is not None and event.get("receivedAt", "") <= entry.get("as_of", ""):
                    continue  # already in the count a back-fill took from the stored history
                if matcher.matches(name, event):
                    bump_counter(contact.filtered, matcher.key, event["timestamp"], self.counter_days,
                                 *catalog.index.retention("filtered", matcher.key))
                elif entry is None:
                    # The contact's first event of this name, and it does not match: the count
                    # starts here at zero (as a back-fill's does), so the next ones are counted.
                    contact.filtered[matcher.key] = {"total": 0, "first": event["timestamp"],
                                                     "last": event["timestamp"]}
        if catalog.scoring is not None:
            before = (contact.score.get("points"), contact.stage, tuple(contact.tags))
            for emitted in scoring.apply_event(catalog.scoring, contact, event, now):
                self._emit(contact, emitted["event"], emitted.get("properties", {}), now, cause)
            after = (contact.score.get("points"), contact.stage, tuple(contact.tags))
            kinds |= {k for k, b, a in zip(("score", "stage", "tag"), before, after) if b != a}
        if catalog.rfm is not None and full and contact.rfm and counter_name(event) != catalog.rfm.purchase_event:
            # A merge combined two purchase histories: the class follows the combined values.
            contact.rfm.update(rfm.classify(catalog.rfm, contact.rfm, catalog.rfm_thresholds or rfm.Thresholds(), now))
            kinds.add("rfm")
        if catalog.rfm is not None and rfm.record_purchase(catalog.rfm, contact, event):
            # Before the first scheduled thresholds exist, everyone is scored on empty cuts
            # (a first buyer is "new"); the daily recompute refines it.
            thresholds = catalog.rfm_thresholds or rfm.Thresholds()
            contact.rfm.update(rfm.classify(catalog.rfm, contact.rfm, thresholds, now))
            kinds.add("rfm")
        if catalog.campaigns:
            known = set(contact.campaigns)
            purchase = name in {c.purchase_event for c in catalog.campaigns.values()} | {engagement.DEFAULT_PURCHASE_EVENT}
            before = copy.deepcopy(contact.campaigns) if purchase else None
            if engagement.record_engagement(catalog.campaigns, contact, event):
                kinds.add("campaign")
                for campaign_id in set(contact.campaigns) - known:
                    contact.outbox.append({"kind": "enter", "segment_id": CAMPAIGN_AUDIENCE.format(campaign_id),
                                           "since": iso(now)})
                # A purchase attributed to a click converts the message that carried the link.
                for campaign_id, click in engagement.new_conversions(before, contact.campaigns) if purchase else ():
                    if click.get("message"):
                        self._emit(contact, MESSAGE_CONVERTED,
                                   {"message_id": click["message"], "campaign_id": campaign_id,
                                    "click_id": click["id"], "revenue": click.get("revenue"),
                                    "order_id": click.get("order_id")}, now, f"{event['messageId']}:{click['id']}")
        if name == CONSENT_EVENT:
            kinds |= self._consent(contact, event, now)
        if (event.get("context") or {}).get("consent") is not None or name == consent_rules.SEGMENT_CONSENT_EVENT:
            kinds |= self._data_collection_consent(contact, event)
        if name == CONFIRMATION_RESEND_REQUESTED:
            kinds |= self._resend_confirmation(contact, event, now)
        self._push_device(contact, event, name, now)
        if name:
            self._triggered(catalog, contact, name, event, now)
        updated_traits: set[str] = set()
        if name == JOURNEY_PROFILE_UPDATED and event.get("contactId"):
            updated_traits, more = self._journey_update(catalog, contact, event, now)
            kinds |= more
        elif name and name in catalog.journey_interest()[0]:
            # A live journey listens to this event: a signal for the journey-events queue,
            # published with the outbox after the contact is saved (never sent from here).
            contact.outbox.append({"kind": "journey", "signal": journey_signal(contact.id, event)})
        if event["type"] in ("identify", "alias") or (event.get("context") or {}).get("clickId"):
            kinds.add("identifiers")  # may have linked an email or phone: `reachable` can change
        if catalog.personas is not None and contact.persona is None and event["type"] == "identify":
            contact.persona = personas.assign(catalog.personas, contact)
            if contact.persona:
                kinds.add("persona")
        affected = set()
        if full:
            affected = set(catalog.segments)
        else:
            if name:
                affected |= set(catalog.index.affected_by_event(name))
            affected |= set(catalog.index.affected_by_traits(trait_names(event) | updated_traits))
            for kind in kinds:
                affected |= set(catalog.index.affected_by(kind))
        self.evaluate(contact, now, affected, cause, catalog)

    def _consent(self, contact: Contact, event: dict, now: datetime) -> set[str]:
        props = event.get("properties") or {}
        channel, status = props.get("channel"), props.get("status")
        if status == consent_rules.PENDING:
            return self._request_opt_in(contact, event, now)
        if not isinstance(channel, str) or status not in ("granted", "denied"):
            return set()
        # A topic (`email/newsletter`) and the proof are read only from Mercurio's own events
        # (unsubscribe and preference pages, SES feedback: services/interactions.py), whose
        # source and proof the public write key cannot forge.
        own = event.get("source") == INTERNAL_SOURCE and bool(event.get("contactId"))
        topic = props.get("topic") if own else None
        key = channel
        if isinstance(topic, str) and topic.strip() and "/" not in topic and len(topic) <= 64:
            key = f"{channel}/{topic.strip().lower()}"
        current = contact.consent.get(key, {})
        if event["timestamp"] < current.get("at", ""):
            return set()
        record = {"status": status, "at": event["timestamp"],
                  "source": str(props.get("source") or event.get("source") or "")}
        if own and isinstance(props.get("proof"), dict):
            record["proof"] = {k: props["proof"].get(k) for k in ("shown", "where", "ip", "user_agent")}
        if own and isinstance(props.get("confirmation"), dict):
            record["confirmation"] = dict(props["confirmation"])  # the double opt-in's bookkeeping
        contact.consent[key] = record
        return {"consent"}

    def _data_collection_consent(self, contact: Contact, event: dict) -> set[str]:
        """Segment's consent object (`context.consent.categoryPreferences`, on every event of a
        site using a consent manager, and its `Segment Consent Preference Updated` event): the
        categories the person allowed (`data/Advertising`…), newest choice winning. An
        unreadable object changes nothing and is logged."""
        state = consent_rules.ConsentState.from_document(contact.consent)
        state, changed, problems = consent_rules.apply_segment_consent(state, event)
        if problems:
            logger.info("consent object not fully read",
                        extra={"messageId": event.get("messageId"), "problems": problems})
        for name in changed:  # only the categories: the channel records stay exactly as stored
            contact.consent[f"{consent_rules.DATA_COLLECTION}/{name}"] = state.categories[name].to_document()
        return {"consent"} if changed else set()

    # -- double opt-in ---------------------------------------------------------------------

    def _request_opt_in(self, contact: Contact, event: dict, now: datetime) -> set[str]:
        """A subscription asked through the public write key (`status: pending`, naming a
        registered consent form): judged by `consent.accept_change`, so the key grants no more
        than the form collects; on a channel that needs confirmation it is recorded pending
        and the confirmation message is requested (once per request: a repeat changes nothing)."""
        props = event.get("properties") or {}
        context = event.get("context") or {}
        page = context.get("page") if isinstance(context.get("page"), dict) else {}
        where = props.get("where") or page.get("url") or ""
        claimed = consent_rules.ConsentProof(
            shown="", where=where if isinstance(where, str) else "",
            ip=context.get("ip") if isinstance(context.get("ip"), str) else None,
            user_agent=context.get("userAgent") if isinstance(context.get("userAgent"), str) else None)
        try:
            at = parse_timestamp(event["timestamp"])
        except (ValueError, KeyError):
            return set()
        change = consent_rules.ConsentChange(
            channel=props.get("channel"), topic=props.get("topic") if isinstance(props.get("topic"), str) else None,
            status=consent_rules.GRANTED, at=at, source=consent_rules.WRITE_KEY, proof=claimed,
            form_id=props.get("form_id") if isinstance(props.get("form_id"), str) else None)
        acceptance = consent_rules.accept_change(change, self.site_consent(), now)
        if not acceptance.accepted:
            return set()
        token_id = hashlib.sha256(f"opt-in|{event['messageId']}".encode()).hexdigest()[:32]
        state = consent_rules.ConsentState.from_document(contact.consent)
        outcome = consent_rules.apply_change(state, acceptance, token_id=token_id, now=now)
        if outcome.state is state:
            return set()
        record = outcome.state.records[acceptance.record.key]
        contact.consent[record.key] = record.to_document()
        if outcome.send_confirmation:
            self._ask_confirmation(contact, record, now, event["messageId"])
        return {"consent"}

    def _resend_confirmation(self, contact: Contact, event: dict, now: datetime) -> set[str]:
        props = event.get("properties") or {}
        if event.get("source") != INTERNAL_SOURCE or not event.get("contactId"):
            return set()  # only the admin API asks for a resend
        state = consent_rules.ConsentState.from_document(contact.consent)
        try:
            outcome = consent_rules.resend_confirmation(state, props.get("channel"), props.get("topic"), now)
        except consent_rules.ConsentError:
            return set()
        if not outcome.send_confirmation:
            return set()
        record = outcome.state.record(props.get("channel"), props.get("topic"))
        contact.consent[record.key] = record.to_document()
        self._ask_confirmation(contact, record, now, event["messageId"])
        return {"consent"}

    def _ask_confirmation(self, contact: Contact, record, now: datetime, cause: str) -> None:
        conf = record.confirmation
        self._emit(contact, CONFIRMATION_REQUESTED, {
            "channel": record.channel, "topic": None if record.topic == consent_rules.ALL_TOPICS else record.topic,
            "token_id": conf.token_id, "send_number": len(conf.sent), "expires_at": iso(conf.expires_at)},
            now, cause)

    # -- push devices ----------------------------------------------------------------------

    def _push_device(self, contact: Contact, event: dict, name: str | None, now: datetime) -> None:
        """A token not registered yet is announced (the effects queue's consumer registers
        it: never SNS from here); the consumer's and the sender's reports are applied."""
        own = event.get("source") == INTERNAL_SOURCE and bool(event.get("contactId"))
        props = event.get("properties") or {}
        if own and name == push_devices.PUSH_ENDPOINT_REGISTERED:
            if isinstance(props.get("endpoint"), str) and props.get("platform") in push_devices.PLATFORMS:
                push_devices.with_endpoint(contact.traits, props["endpoint"], props["platform"],
                                           str(props.get("token") or ""), event["timestamp"])
            return
        if own and name == push_devices.PUSH_ENDPOINT_REMOVED:
            if isinstance(props.get("endpoint"), str):
                push_devices.without_endpoint(contact.traits, props["endpoint"])
            return
        if own:
            return
        device = push_devices.device_of(event)
        if device is not None and not push_devices.knows_token(contact.traits, device):
            self._emit(contact, push_devices.PUSH_TOKEN_SEEN, {"platform": device.platform, "token": device.token},
                       now, event["messageId"])

    # -- segments ------------------------------------------------------------------------

    def evaluate(self, contact: Contact, now: datetime, segment_ids: set[str], cause: str,
                 catalog: Catalog | None = None) -> list[tuple[str, bool]]:
        """Evaluate these segments (plus due time checks and dependents) and record changes."""
        catalog = catalog or self.catalog_source()
        checks = contact.checks
        due = {sid for sid, at in list(checks.items()) if at <= iso(now)}
        wanted = {sid for sid in (set(segment_ids) | due) if sid in catalog.segments}
        # Memberships of segments that no longer exist are dropped; those of a stored segment
        # that no longer parses are kept until it is fixed or deleted.
        changes: list[tuple[str, bool]] = []
        kept = catalog.unreadable_ids("segment") if catalog.unreadable else set()
        for gone in [sid for sid in contact.segments if sid not in catalog.segments and sid not in kept]:
            del contact.segments[gone]
            checks.pop(gone, None)
            changes.append((gone, False))
        if not wanted and not changes:
            self._reschedule(contact, now)  # an entry that fired early hands over to the next one
            return []
        pending = set(wanted)
        context = self.context_for(catalog, contact)
        done: set[str] = set()
        while pending:
            order = [sid for sid in catalog.index.evaluation_order(pending) if sid not in done]
            pending = set()
            for segment_id in order:
                done.add(segment_id)
                definition = catalog.segments[segment_id]
                result = evaluate(definition, contact, now, context)
                was = segment_id in contact.segments
                if result.next_change is not None:
                    checks[segment_id] = iso(max(result.next_change, now))
                else:
                    checks.pop(segment_id, None)
                if result.member != was:
                    changes.append((segment_id, result.member))
                    if result.member:
                        contact.segments[segment_id] = {"since": iso(now)}
                    else:
                        del contact.segments[segment_id]
                    pending |= set(catalog.index.dependents([segment_id])) - done
        for segment_id, entered in changes:
            definition = catalog.segments.get(segment_id)
            name = getattr(definition, "name", segment_id)
            self._emit(contact, "Segment Entered" if entered else "Segment Exited",
                       {"segment_id": segment_id, "segment_name": name}, now, cause)
            contact.outbox.append({"kind": "enter" if entered else "leave", "segment_id": segment_id,
                                   "since": iso(now)})
        self._reschedule(contact, now)
        return changes

    def merge_context(self, now: datetime) -> MergeContext:
        """The scoring model the scoring part's merge rule needs: decay and stage order."""
        config = self.catalog_source().scoring
        if config is None:
            return MergeContext(now=now)
        return MergeContext(now=now, half_life=config.half_life, stage_rank=config.rank)

    def announce_stage(self, contact: Contact, before: str | None, now: datetime, cause: str) -> None:
        """A merge moved the survivor to the loser's more advanced stage: say so, as a score
        crossing a threshold would."""
        self._emit(contact, scoring.STAGE_CHANGED, {"from": before, "to": contact.stage, "reason": "merge"}, now,
                   cause)

    def announce_merge(self, survivor: Contact, losers: list[Contact], now: datetime, cause: str) -> None:
        """`Contacts Merged` on the survivor, naming the profiles it absorbed (destinations
        that follow `contacts.merged` re-key the ids they hold)."""
        self._emit(survivor, CONTACTS_MERGED, {"merged": sorted(loser.id for loser in losers)}, now, cause)

    def forget_merged(self, survivor: Contact, loser: Contact) -> None:
        """The loser's memberships end: the survivor is evaluated afresh after the merge."""
        for segment_id in loser.segments:
            survivor.outbox.append({"kind": "leave", "segment_id": segment_id, "contact_id": loser.id})

    def _reschedule(self, contact: Contact, now: datetime) -> None:
        """`next_check` is when the contact's recheck entry fires. A new entry is written
        only when the next change comes earlier than that entry, or the entry has fired;
        a check that moved later is left to the earlier entry, which reschedules when it
        fires (sliding windows move later with every event: no write for them)."""
        checks = contact.checks
        upcoming = min(checks.values()) if checks else None
        if upcoming is None:
            contact.next_check = None
            return
        fired = contact.next_check is not None and contact.next_check <= iso(now)
        if contact.next_check is None or upcoming < contact.next_check or fired:
            contact.next_check = upcoming
            contact.outbox.append({"kind": "schedule", "at": upcoming})

    def _journey_update(self, catalog: Catalog, contact: Contact, event: dict, now: datetime) -> tuple[set[str], set[str]]:
        """A journey's update node: traits, tags and points, recorded as an internal event by
        the journey runtime (so the stream applies it like any other change)."""
        properties = event.get("properties") or {}
        kinds: set[str] = set()
        traits = properties.get("traits") if isinstance(properties.get("traits"), dict) else {}
        if traits:
            set_traits(contact, traits, event["timestamp"])
        removed = [t for t in properties.get("remove_tags") or [] if isinstance(t, str)]
        added = [t for t in properties.get("add_tags") or [] if isinstance(t, str)]
        if removed or added:
            before = list(contact.tags)
            contact.tags = [t for t in contact.tags if t not in removed]
            contact.tags += [t for t in added if t not in contact.tags]
            for tag in added:
                if tag not in before:
                    self._emit(contact, scoring.TAG_ADDED, {"tag": tag}, now, event["messageId"])
            kinds.add("tag")
        points = properties.get("score")
        if isinstance(points, (int, float)) and not isinstance(points, bool) and points and catalog.scoring:
            stage_before = contact.stage
            for emitted in scoring.add_points(catalog.scoring, contact, float(points), now,
                                              f"journey {properties.get('journey_id')}"):
                self._emit(contact, emitted["event"], emitted.get("properties", {}), now, event["messageId"])
            kinds.add("score")
            if contact.stage != stage_before:
                kinds.add("stage")
        return set(traits), kinds

    def _triggered(self, catalog: Catalog, contact: Contact, name: str, event: dict, now: datetime) -> None:
        """Trigger definitions that hear this event record a Message Triggered on the outbox:
        the message is requested when the outbox is published (services/handlers.py), never
        sent from here."""
        for trigger in (getattr(catalog, "triggers", None) or {}).values():
            if trigger.hears_event(name, event):
                properties = {"trigger_id": trigger.id, "template": trigger.template, "channel": trigger.channel,
                              "message_cause": trigger.cause(event["messageId"]),
                              "data": dict(event.get("properties") or {})}
                if trigger.campaign:
                    properties["campaign"] = trigger.campaign
                self._emit(contact, MESSAGE_TRIGGERED, properties, now, event["messageId"])

    def _emit(self, contact: Contact, name: str, properties: dict, now: datetime, cause: str) -> None:
        contact.outbox.append({"kind": "event", "event": internal_event(contact.id, name, properties, now, cause)})
