"""What a kind of definition is: how its documents are read, what they name of other
definitions and provide to them, how a parsed one lands in the catalog, and whether a new
version (or a deletion) is carried over to existing contacts by a job.

A kind is one subclass of DefinitionKind in its own module, registered in
`definition_kinds/__init__.py`. Nothing here touches storage: the definition service stores
and versions documents, and asks the kind everything else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from chalicelib.domain.definition_errors import DefinitionError, Reference
from chalicelib.domain.segments.filters import EventMatcher

ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# Path words of the admin API (`/v1/admin/segments/validate`, `/v1/admin/segments/preview`):
# a definition with such an id could not be addressed.
RESERVED_IDS = ("validate", "preview", "versions")
DRAFT_ID = "draft"  # the id a document validated without one is read with


@dataclass
class Reading:
    """A document as a kind read it: the parsed value (None when it has problems), every
    problem, and every reference it makes, found even when it has problems."""

    value: object | None
    problems: list[str] = field(default_factory=list)
    references: tuple[Reference, ...] = ()

    @property
    def ok(self) -> bool:
        return self.value is not None and not self.problems


class DefinitionKind:
    name: str = ""  # segment: the kind in paths, rows and messages
    plural: str = ""  # segments: the admin API path and the folder of definition files
    catalog_attribute: str = ""  # where the catalog keeps what this kind parsed
    singleton: bool = False  # one definition, with id "default" (scoring, rfm, personas)
    backfill: bool = False  # a new version is applied to existing contacts by a back-fill job
    has_members: bool = False  # contacts belong to its definitions: a size, and a removal job on delete
    provides_names: tuple[str, ...] = ()  # what its definitions provide to references, by reference kind

    # -- reading -------------------------------------------------------------------------

    def parse(self, document: object) -> object:
        """The parsed definition, or DefinitionError listing every problem."""
        raise NotImplementedError

    def references(self, value: object) -> Iterable[Reference]:
        """What a parsed definition names that other definitions must provide."""
        return ()

    def read(self, document: object) -> Reading:
        try:
            value = self.parse(document)
        except DefinitionError as exc:
            return Reading(None, list(exc.problems), tuple(exc.references))
        return Reading(value, [], tuple(self.references(value)))

    def identify(self, definition_id: str, document: dict) -> tuple[dict, list[str]]:
        """The document as stored under this id, and the problems of the id itself."""
        if self.singleton:
            if definition_id != "default":
                return document, [f"id: {self.name} has one definition, with id 'default'"]
            return document, []
        problems = []
        if not isinstance(definition_id, str) or not ID.match(definition_id):
            problems.append(f"id: {definition_id!r} must be 1 to 64 lower-case letters, digits and dashes, "
                            f"starting with a letter or digit")
        elif definition_id in RESERVED_IDS:
            problems.append(f"id: {definition_id!r} is reserved by the admin API; choose another id")
        stated = document.get("id")
        if stated is not None and stated != definition_id:
            problems.append(f"id: the document says {stated!r} but is stored as {definition_id!r}")
        return {**document, "id": definition_id}, problems

    def draft(self, document: dict) -> dict:
        """A document being validated before it has an id and a name: what it is read as."""
        return document

    # -- between definitions ---------------------------------------------------------------

    def save_problems(self, document: dict, allow_private_addresses: bool) -> list[str]:
        """What refuses a document being saved that a stored one may still be read with (a
        destination's literal private address, say: stored definitions stay readable, the
        sender checks again at each delivery)."""
        return []

    def provides(self, definition_id: str, value: object | None) -> set[tuple[str, str]]:
        """The names other definitions may reference: (reference kind, name)."""
        return set() if self.singleton else {(self.name, definition_id)}

    def check_together(self, values: dict[str, object], changed: set[str]) -> list[tuple[str, str]]:
        """Problems only the whole set of this kind shows (a cycle), as (id, problem), for
        the changed ids."""
        return []

    # -- the catalog -----------------------------------------------------------------------

    def catalogue(self, catalog, values: dict[str, object]) -> None:
        """Put this kind's parsed definitions where the catalog's readers look for them."""
        if self.singleton:
            setattr(catalog, self.catalog_attribute, values.get("default"))
        else:
            setattr(catalog, self.catalog_attribute, values)

    def matchers(self, value: object) -> Iterable[EventMatcher]:
        """Filtered event counters this definition needs kept on each contact."""
        return ()

    def summary(self, value: object | None, document: dict) -> dict:
        """What a listing shows of one definition besides id and version: its name, or for
        a kind with one definition (no name), its description."""
        if not isinstance(document, dict):
            return {}
        if self.singleton:
            return {"description": document.get("description")}
        name = document.get("name")
        return {"name": name} if name is not None else {}
