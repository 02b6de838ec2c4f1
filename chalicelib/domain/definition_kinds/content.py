"""On-site content: which variant of a slot each visitor sees.

A `content` definition names a slot of the site (its id: `hero`) and the slot templates
(`templates/<name>[.<locale>].slot.j2`) shown in it, by segment; the first rule whose segment
the visitor belongs to wins, everyone else sees the default:

    id: hero
    name: Home page hero
    rules:
      - segment: coffee-lovers
        template: hero-coffee
    default: hero

A slot with no definition shows `<slot>.slot.j2` to everyone.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from chalicelib.domain.definition_errors import DefinitionError, Reference
from chalicelib.domain.definition_kinds.base import ID, DefinitionKind

TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_RULES = 50
_FIELDS = ("id", "name", "description", "rules", "default")
_RULE_FIELDS = ("segment", "template")


@dataclass(frozen=True)
class ContentRule:
    segment: str
    template: str


@dataclass(frozen=True)
class SlotContent:
    slot: str
    default: str
    rules: tuple[ContentRule, ...] = ()
    name: str | None = None

    def variant_for(self, segments) -> str:
        """The template a visitor in these segments sees: the first matching rule's, else the default."""
        for rule in self.rules:
            if rule.segment in segments:
                return rule.template
        return self.default


def _unknown(field: str, allowed: tuple[str, ...], at: str) -> str:
    close = difflib.get_close_matches(str(field), allowed, n=1, cutoff=0.6)
    hint = f' (did you mean "{close[0]}"?)' if close else f" (known: {', '.join(allowed)})"
    return f"{at}{field}: unknown field{hint}"


def parse_content(document: object) -> SlotContent:
    if not isinstance(document, dict):
        raise DefinitionError(["a content definition is a mapping: id, name, rules, default"])
    problems: list[str] = []
    references: list[Reference] = []
    problems += [_unknown(k, _FIELDS, "") for k in document if k not in _FIELDS]
    slot = document.get("id")
    if not isinstance(slot, str) or not ID.match(slot):
        problems.append(f"id: {slot!r} must be the slot's name: lower-case letters, digits and dashes")
    default = document.get("default", slot)
    if not isinstance(default, str) or not TEMPLATE_NAME.match(default):
        problems.append(f"default: {default!r} must be a slot template's name, e.g. hero for templates/hero.slot.j2")
    for key in ("name", "description"):
        if key in document and not (isinstance(document[key], str) and document[key].strip()):
            problems.append(f"{key}: must be a non-empty text")
    raw_rules = document.get("rules", [])
    rules: list[ContentRule] = []
    if not isinstance(raw_rules, list):
        problems.append("rules: must be a list of {segment, template}")
        raw_rules = []
    elif len(raw_rules) > MAX_RULES:
        problems.append(f"rules: at most {MAX_RULES} rules")
    for i, rule in enumerate(raw_rules[:MAX_RULES]):
        at = f"rules[{i}]"
        if not isinstance(rule, dict):
            problems.append(f"{at}: must be a mapping like {{segment: coffee-lovers, template: hero-coffee}}")
            continue
        problems += [_unknown(k, _RULE_FIELDS, f"{at}.") for k in rule if k not in _RULE_FIELDS]
        segment, template = rule.get("segment"), rule.get("template")
        if not isinstance(segment, str) or not ID.match(segment):
            problems.append(f"{at}.segment: {segment!r} must be a segment id")
        else:
            references.append(Reference("segment", segment, f"{at}.segment"))
        if not isinstance(template, str) or not TEMPLATE_NAME.match(template):
            problems.append(f"{at}.template: {template!r} must be a slot template's name, "
                            "e.g. hero-coffee for templates/hero-coffee.slot.j2")
        if isinstance(segment, str) and isinstance(template, str):
            rules.append(ContentRule(segment, template))
    if problems:
        raise DefinitionError(problems, tuple(references))
    return SlotContent(slot=slot, default=default, rules=tuple(rules), name=document.get("name"))


class ContentKind(DefinitionKind):
    name = "content"
    plural = "content"
    catalog_attribute = "content"

    def parse(self, document):
        return parse_content(document)

    def references(self, value: SlotContent):
        return [Reference("segment", rule.segment, f"rules[{i}].segment") for i, rule in enumerate(value.rules)]


KIND = ContentKind()
