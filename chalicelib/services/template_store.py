"""Where templates are kept (the `TemplateStore` port) and the compiled templates a container
keeps between requests (`TemplateLibrary`).

A template is stored under its file name (`welcome.html.j2`, `welcome.it.html.j2`,
`hero.slot.j2`…, see chalicelib/domain/messaging/templates.py); the store gives its source
and a version (S3's version id, or its ETag where the bucket is not versioned). Every
channel reads through the library: it finds the file for a contact's locale (`welcome.it-CH`,
then `welcome.it`, then `welcome`), compiles it once per version, and asks the store again
only after `max_age` seconds, so a marketer's upload is live within that delay and a hot path
(the on-site content route) costs no storage call per request.
"""
from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from chalicelib.domain.messaging.locales import locale_chain

if TYPE_CHECKING:  # the engine (Jinja2, Babel) loads when a template is first compiled
    from chalicelib.domain.messaging.templates import CompiledTemplate, TemplateEngine


class StoredTemplate(NamedTuple):
    source: str
    version: str


class TemplateStore(abc.ABC):
    """Template files by name. Storage only: validating an upload is the caller's job
    (TemplateEngine.validate), so a bad file never reaches `put`."""

    @abc.abstractmethod
    def get(self, filename: str) -> StoredTemplate | None:
        """The source and version of one file, or None when there is no such file."""

    @abc.abstractmethod
    def list(self) -> list[str]:
        """Every template file name, sorted."""

    @abc.abstractmethod
    def put(self, filename: str, source: str) -> str:
        """Store a file (replacing the current one); its new version."""

    def versions(self) -> dict[str, str]:
        """file name -> a token that changes with every upload of the file (an adapter may
        answer from one listing)."""
        return {filename: got.version for filename in self.list() if (got := self.get(filename)) is not None}


def candidate_filenames(name: str, fmt: str, locale: object) -> list[str]:
    """The files to try for a contact's locale, most specific first:
    `hero`, `slot`, `it-CH` → hero.it-CH.slot.j2, hero.it.slot.j2, hero.slot.j2."""
    return [f"{name}.{tag}.{fmt}.j2" if tag else f"{name}.{fmt}.j2" for tag in locale_chain(locale)]


class TemplateLibrary:
    """Compiled templates, found by name, format and locale, cached by the stored version.

    A lookup (found or not) is remembered for `max_age` seconds; after that the store is
    asked again and a file whose version did not change is not compiled again. A stored file
    that no longer compiles (it was uploaded around the validation) reads as missing, with
    its problems kept in `broken` for the caller to log."""

    def __init__(self, store: TemplateStore, engine: TemplateEngine | None = None, max_age: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self.store, self.max_age, self.monotonic = store, max_age, monotonic
        if engine is None:
            from chalicelib.domain.messaging.templates import TemplateEngine

            engine = TemplateEngine()
        self.engine = engine
        self._looked_up: dict[str, tuple[float, StoredTemplate | None]] = {}
        self._compiled: dict[tuple[str, str], CompiledTemplate | None] = {}
        self.broken: dict[str, str] = {}  # filename -> why the stored version does not compile
        self._lock = threading.Lock()

    def _stored(self, filename: str) -> StoredTemplate | None:
        now = self.monotonic()
        with self._lock:
            cached = self._looked_up.get(filename)
        if cached is not None and now - cached[0] <= self.max_age:
            return cached[1]
        stored = self.store.get(filename)
        with self._lock:
            self._looked_up[filename] = (now, stored)
        return stored

    def compiled(self, filename: str) -> CompiledTemplate | None:
        """The compiled current version of one file; None when it is missing or broken."""
        stored = self._stored(filename)
        if stored is None:
            return None
        key = (filename, stored.version)
        with self._lock:
            if key in self._compiled:
                return self._compiled[key]
        try:
            compiled = self.engine.compile(filename, stored.source)
            self.broken.pop(filename, None)
        except ValueError as exc:  # TemplateInvalid, or a name that is not a template name
            compiled = None
            self.broken[filename] = str(exc)
        with self._lock:
            # Older versions of the same file are dropped: one compiled version per file.
            for old in [k for k in self._compiled if k[0] == filename]:
                del self._compiled[old]
            self._compiled[key] = compiled
        return compiled

    def find(self, name: str, fmt: str, locale: object = None) -> CompiledTemplate | None:
        """The template `name` of this format for a locale, falling back to the language,
        then to the file without a locale; None when none of them exists."""
        for filename in candidate_filenames(name, fmt, locale):
            compiled = self.compiled(filename)
            if compiled is not None:
                return compiled
        return None

    def forget(self) -> None:
        """Ask the store again at the next lookup (after an upload by this container)."""
        with self._lock:
            self._looked_up.clear()
