"""Triggered messages: a message sent when something happens to a contact, without a journey.

    id: welcome-email
    name: Welcome email at newsletter signup
    when:
      event: Consent Updated              # a tracked event's name…
      where:                              # …with optional property filters (as in segments)
        - properties.channel == "email"
        - properties.status == "granted"
      # or: segment_entered: newsletter   # the contact enters a segment
    send:
      template: welcome
      channel: email                      # email, sms or push
    once: true                            # at most once per contact, ever (default: once per cause)

The message's cause is the triggering event's messageId (or, with `once`, the trigger
itself), so the message id is deterministic: a replayed stream batch requests the same
message and nothing is sent twice. `when` is not spelled `on`: YAML reads a bare `on` as true.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from chalicelib.domain.definition_errors import DefinitionError, Reference, expect_mapping, expect_name, show, \
    unknown_fields
from chalicelib.domain.definition_kinds.base import DefinitionKind, Reading
from chalicelib.domain.segments.filters import FilterError, PropertyFilter, parse_filters

FIELDS = ("id", "name", "description", "when", "send", "once", "enabled")
WHEN_FIELDS = ("event", "where", "segment_entered")
SEND_FIELDS = ("template", "channel", "campaign")
CHANNELS = ("email", "sms", "push")
TEMPLATE_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


@dataclass(frozen=True)
class Trigger:
    id: str
    name: str
    template: str
    channel: str
    event: str | None = None
    where: tuple[PropertyFilter, ...] = ()
    segment_entered: str | None = None
    campaign: str | None = None
    once: bool = False
    enabled: bool = True

    def hears_event(self, name: str, event: dict) -> bool:
        return self.enabled and self.event == name and all(f.matches(event) for f in self.where)

    def hears_segment(self, segment_id: str) -> bool:
        return self.enabled and self.segment_entered == segment_id

    def cause(self, event_cause: str) -> str:
        """What the message is for: the triggering event, or the trigger itself with `once`."""
        return f"trigger:{self.id}" if self.once else f"trigger:{self.id}:{event_cause}"


def parse_trigger(doc: object) -> Trigger:
    problems: list[str] = []
    mapping = expect_mapping(doc, "", problems)
    if mapping is None:
        raise DefinitionError(problems)
    if "on" in mapping or True in mapping:
        problems.append("on: write `when:` instead (YAML reads a bare `on` as true)")
    unknown_fields({k: v for k, v in mapping.items() if k not in ("on", True)}, FIELDS, "", problems)
    definition_id = expect_name(mapping.get("id"), "id", problems)
    name = mapping.get("name") or definition_id
    event, where, segment = None, (), None
    when = expect_mapping(mapping.get("when"), "when", problems) if "on" not in mapping and True not in mapping \
        else None
    if when is not None:
        unknown_fields(when, WHEN_FIELDS, "when", problems)
        if ("event" in when) == ("segment_entered" in when):
            problems.append("when: name either an event or a segment_entered, not both or neither")
        if "event" in when:
            event = expect_name(when.get("event"), "when.event", problems)
            try:
                where = parse_filters(when.get("where"), "when.where")
            except FilterError as exc:
                problems.append(str(exc))
        elif "where" in when:
            problems.append("when.where: filters apply to an event; a segment has its own conditions")
        if "segment_entered" in when:
            segment = expect_name(when.get("segment_entered"), "when.segment_entered", problems)
    send = expect_mapping(mapping.get("send"), "send", problems)
    template = channel = campaign = None
    if send is not None:
        unknown_fields(send, SEND_FIELDS, "send", problems)
        template = expect_name(send.get("template"), "send.template", problems)
        if template is not None and not re.match(TEMPLATE_NAME, template):
            problems.append(f"send.template: {show(template)} is not a template name (welcome, order-receipt…)")
        channel = send.get("channel", "email")
        if channel not in CHANNELS:
            problems.append(f"send.channel: {show(channel)} is not one of {', '.join(CHANNELS)}")
        if send.get("campaign") is not None:
            campaign = expect_name(send.get("campaign"), "send.campaign", problems)
    for flag in ("once", "enabled"):
        if flag in mapping and not isinstance(mapping[flag], bool):
            problems.append(f"{flag}: true or false, got {show(mapping[flag])}")
    if problems:
        raise DefinitionError(problems, _references(mapping))
    return Trigger(id=definition_id, name=str(name), template=template, channel=channel, event=event, where=where,
                   segment_entered=segment, campaign=campaign, once=bool(mapping.get("once", False)),
                   enabled=bool(mapping.get("enabled", True)))


def _references(document: object) -> tuple[Reference, ...]:
    when = document.get("when") if isinstance(document, dict) else None
    segment = when.get("segment_entered") if isinstance(when, dict) else None
    return (Reference("segment", segment, "when.segment_entered"),) if isinstance(segment, str) and segment else ()


class TriggerKind(DefinitionKind):
    name = "trigger"
    plural = "triggers"
    catalog_attribute = "triggers"
    provides_names = ("trigger",)

    def parse(self, document):
        return parse_trigger(document)

    def read(self, document):
        try:
            value = parse_trigger(document)
        except DefinitionError as exc:
            return Reading(None, list(exc.problems), _references(document))
        return Reading(value, [], _references(document))


KIND = TriggerKind()
