"""On-site content: the variant of a slot (`hero`) this visitor sees, rendered for them.

Public, like the tracking routes: the caller presents the site's write key, which can only
append events, so this use case only reads (the contact, the catalog, the templates) and
writes nothing. The variant is chosen by the slot's `content` definition
(chalicelib/domain/definition_kinds/content.py) from the visitor's segments; an unknown
visitor gets the default. Slot templates render in the template sandbox with the contact's
`contact`, `traits`, `locale`, `timezone` and `now` (no message links: nothing is sent).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.domain.contact import Contact
from chalicelib.domain.definition_kinds.content import SlotContent
from chalicelib.domain.identity import InvalidIdentifier, make_identifier
from chalicelib.domain.messaging.locales import normalise_locale
from chalicelib.domain.sources import Source, find_source
from chalicelib.services.ingest import OriginNotAllowed, Unauthorized, write_key_from_basic_auth
from chalicelib.services.ports import Clock, ContactRepository
from chalicelib.services.template_store import TemplateLibrary

log = logging.getLogger(__name__)
SLOT = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
SLOT_FORMAT = "slot"


class BadContentRequest(ValueError):
    status = 400


class SlotNotFound(LookupError):
    status = 404


class SlotUnavailable(Exception):
    """The slot exists but none of its templates can be shown (missing or failing)."""

    status = 422


@dataclass(frozen=True)
class ContentRequest:
    slot: str | None
    anonymous_id: str | None = None
    user_id: str | None = None
    write_key: str | None = None  # the `writeKey` query parameter
    authorization: str | None = None  # Basic auth, the write key as user name
    origin: str | None = None
    locale: str | None = None  # the browser's, used when the contact has none


@dataclass(frozen=True)
class SlotShown:
    slot: str
    variant: str
    html: str

    def to_dict(self) -> dict:
        return {"slot": self.slot, "variant": self.variant, "html": self.html}


def _contact_locale(contact: Contact | None, fallback: str | None) -> str | None:
    if contact is not None:
        for candidate in ((contact.traits or {}).get("locale"), (contact.last_context or {}).get("locale")):
            if normalise_locale(candidate):
                return normalise_locale(candidate)
    return normalise_locale(fallback)


def _contact_timezone(contact: Contact | None) -> str | None:
    if contact is None:
        return None
    for candidate in ((contact.traits or {}).get("timezone"), (contact.last_context or {}).get("timezone")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


class ContentService:
    def __init__(self, contacts: ContactRepository, slots: Callable[[], dict[str, SlotContent]],
                 templates: TemplateLibrary, sources: tuple[Source, ...], clock: Clock,
                 score_of: Callable | None = None):
        self.contacts, self.slots, self.templates = contacts, slots, templates
        self.sources, self.clock, self.score_of = sources, clock, score_of

    # -- the request ----------------------------------------------------------------------

    def authenticate(self, request: ContentRequest) -> Source:
        key = write_key_from_basic_auth(request.authorization) or request.write_key
        source = find_source(self.sources, key)
        if source is None:
            raise Unauthorized("unknown write key" if key else
                               "missing write key: send it as the Basic auth user name or as ?writeKey=")
        if not source.allows_origin(request.origin):
            raise OriginNotAllowed(f"origin {request.origin} is not allowed for this write key")
        return source

    def _identifiers(self, request: ContentRequest) -> list[str]:
        identifiers = []
        for kind, value in (("user", request.user_id), ("anon", request.anonymous_id)):
            if value is None or value == "":
                continue
            try:
                identifiers.append(make_identifier(kind, value))
            except InvalidIdentifier as exc:
                name = "userId" if kind == "user" else "anonymousId"
                raise BadContentRequest(f"{name}: {exc}") from None
        if not identifiers:
            raise BadContentRequest("anonymousId or userId is required: the visitor the content is for")
        return identifiers

    # -- the visitor ------------------------------------------------------------------------

    def visitor(self, identifiers: list[str]) -> Contact | None:
        """The contact known by the first identifier that has one (userId before
        anonymousId), following merges; None for a visitor not (yet) known."""
        owners = self.contacts.lookup(identifiers)
        owner = next((owners[i] for i in identifiers if i in owners), None)
        return self.contacts.survivor(owner, consistent=False) if owner else None

    def _variables(self, contact: Contact | None, locale: str | None, timezone: str | None) -> dict:
        if contact is None:
            return {"contact": {"id": None, "email": None, "phone": None, "locale": locale, "timezone": timezone,
                                "segments": [], "stage": None, "score": 0},
                    "traits": {}, "data": {}, "links": {}, "message": {}}
        traits = dict(contact.traits or {})
        score = self.score_of(contact, self.clock.now()) if self.score_of and contact.score else 0
        return {"contact": {"id": contact.id, "email": traits.get("email"), "phone": traits.get("phone"),
                            "locale": locale, "timezone": timezone, "segments": sorted(contact.segments),
                            "stage": contact.stage, "score": round(score, 2)},
                "traits": traits, "data": {}, "links": {}, "message": {}}

    # -- the use case -----------------------------------------------------------------------

    def show(self, request: ContentRequest) -> SlotShown:
        self.authenticate(request)
        slot = request.slot
        if not slot:
            raise BadContentRequest("slot is required, e.g. ?slot=hero")
        if not isinstance(slot, str) or not SLOT.match(slot):
            raise BadContentRequest(f"slot: {slot!r} is not a slot name (lower-case letters, digits and dashes)")
        identifiers = self._identifiers(request)
        definition = self.slots().get(slot)
        if definition is None:
            definition = SlotContent(slot=slot, default=slot)
            if self.templates.find(slot, SLOT_FORMAT, None) is None:
                raise SlotNotFound(f"no slot {slot!r}: define it in content/{slot}.yaml or upload "
                                   f"templates/{slot}.slot.j2")
        contact = self.visitor(identifiers)
        locale, timezone = _contact_locale(contact, request.locale), _contact_timezone(contact)
        chosen = definition.variant_for(contact.segments if contact else ())
        variables = self._variables(contact, locale, timezone)
        problems = []
        for variant in dict.fromkeys((chosen, definition.default)):
            compiled = self.templates.find(variant, SLOT_FORMAT, locale)
            if compiled is None:
                why = self.templates.broken.get(f"{variant}.{SLOT_FORMAT}.j2", "missing from the template store")
                problems.append(f"{variant}.slot.j2: {why}")
                continue
            from chalicelib.domain.messaging.templates import TemplateRenderError  # loaded with the template

            try:
                rendered = compiled.render(variables, locale=locale, timezone=timezone, now=self.clock.now())
            except TemplateRenderError as exc:
                problems.append(f"{compiled.filename}: {exc}")
                continue
            if problems:
                log.warning("slot %s fell back to its default: %s", slot, "; ".join(problems))
            return SlotShown(slot, variant, rendered.html or "")
        log.warning("slot %s cannot be shown: %s", slot, "; ".join(problems))
        raise SlotUnavailable(f"slot {slot!r} cannot be shown: " + "; ".join(problems))
