"""Personas: an ordered list of profile conditions; the first that fits names the contact.

A persona reads what the contact is (traits) and how they last reached us (the last
context: locale, time zone, device, campaign), never single events. Rules are tried in
order and the first match wins, so a catch-all `default` with no conditions goes last.

`PersonaConfig.version` fingerprints everything that decides an assignment (the order,
the ids and the conditions, not the display names): when it changes, every contact has
to be assigned again.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from chalicelib.domain.contact import Contact
from chalicelib.domain.definition_errors import (
    DefinitionError,
    expect_list,
    expect_mapping,
    expect_name,
    load_document,
    show,
    unknown_fields,
)
from chalicelib.domain.segments.filters import FilterError, PropertyFilter, parse_filter

ID = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
PROFILE_PATHS = ("traits.", "context.")
DOCUMENT_FIELDS = ("personas", "description")
PERSONA_FIELDS = ("id", "name", "description", "when")


def profile_view(contact: Contact) -> dict:
    """What profile conditions (personas, grades) are matched against."""
    return {"traits": contact.traits or {}, "context": contact.last_context or {}}


def parse_profile_filters(items: object, where: str, problems: list[str]) -> tuple[PropertyFilter, ...]:
    """Conditions on the profile: `traits.*` or `context.*` paths only, problems collected."""
    if items is None:
        return ()
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list):
        problems.append(f"{where}: expected a list of comparisons such as traits.company_size >= 50")
        return ()
    found = []
    for i, item in enumerate(items):
        place = f"{where}[{i}]"
        try:
            condition = parse_filter(item, place)
        except FilterError as exc:
            problems.append(str(exc))
            continue
        if not condition.path.startswith(PROFILE_PATHS):
            field = condition.path.split(".", 1)[-1]
            problems.append(f"{place}: {condition.path!r} is not part of the profile "
                            f"(use traits.{field} or context.{field})")
            continue
        found.append(condition)
    return tuple(found)


@dataclass(frozen=True)
class Persona:
    id: str
    name: str
    when: tuple[PropertyFilter, ...] = ()

    def fits(self, profile: dict) -> bool:
        return all(condition.matches(profile) for condition in self.when)


@dataclass(frozen=True)
class PersonaConfig:
    personas: tuple[Persona, ...]

    @property
    def version(self) -> str:
        """Changes exactly when an assignment could change (order, ids, conditions)."""
        canonical = json.dumps([[p.id, [c.text for c in p.when]] for p in self.personas], ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def parse_personas(doc: object) -> PersonaConfig:
    """Validate a personas document (mapping or YAML text); every problem is reported at once."""
    problems: list[str] = []
    data = expect_mapping(load_document(doc), "", problems)
    if data is None:
        raise DefinitionError(problems)
    unknown_fields(data, DOCUMENT_FIELDS, "", problems)
    items = expect_list(data.get("personas"), "personas", problems) if "personas" in data else None
    if "personas" not in data:
        problems.append("personas: is required (an ordered list of {id, name, when})")
    personas: list[Persona] = []
    seen: set[str] = set()
    for i, item in enumerate(items or []):
        where = f"personas[{i}]"
        entry = expect_mapping(item, where, problems)
        if entry is None:
            continue
        unknown_fields(entry, PERSONA_FIELDS, where, problems)
        persona_id = expect_name(entry.get("id"), f"{where}.id", problems)
        if persona_id is not None and not ID.match(persona_id):
            problems.append(f"{where}.id: {show(persona_id)} must be lower case letters, digits, - or _")
            persona_id = None
        if persona_id is not None and persona_id in seen:
            problems.append(f"{where}.id: {show(persona_id)} is used twice")
        name = entry.get("name", persona_id)
        if name is not None and not isinstance(name, str):
            problems.append(f"{where}.name: {show(name)} is not text")
        when = parse_profile_filters(entry.get("when"), f"{where}.when", problems)
        if persona_id is not None:
            seen.add(persona_id)
            personas.append(Persona(persona_id, name if isinstance(name, str) else persona_id, when))
    for i, persona in enumerate(personas[:-1]):
        if not persona.when:
            later = ", ".join(p.id for p in personas[i + 1:])
            problems.append(f"personas: {persona.id!r} has no conditions and matches everyone, "
                            f"so {later} can never apply (put it last)")
            break
    if problems:
        raise DefinitionError(problems)
    return PersonaConfig(tuple(personas))


def assign(config: PersonaConfig, contact: Contact) -> str | None:
    """The id of the first persona whose conditions all hold, or None."""
    profile = profile_view(contact)
    for persona in config.personas:
        if persona.fits(profile):
            return persona.id
    return None
