"""Sources: a website or server that sends events, identified by its public write key.

A write key is public (it ships in web pages): it can only append events, and a browser
may use it only from the origins its source lists.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit


class SourceConfigError(ValueError):
    """The sources configuration itself is wrong (an operator error, caught at start)."""


@dataclass(frozen=True)
class Source:
    name: str
    write_key: str
    origins: tuple[str, ...] = ("*",)

    def allows_origin(self, origin: str | None) -> bool:
        """A request without an Origin header is a server or SDK call: allowed."""
        if not origin:
            return True
        if "*" in self.origins:
            return True
        return _normalise_origin(origin) in self.origins


def _normalise_origin(origin: str) -> str:
    parts = urlsplit(origin.strip())
    if not parts.scheme or not parts.netloc:
        return origin.strip().lower()
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def parse_sources(raw: list) -> tuple[Source, ...]:
    if not isinstance(raw, list):
        raise SourceConfigError("MERCURIO_SOURCES must be a JSON list of sources")
    sources: list[Source] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise SourceConfigError(f"sources[{i}] must be an object")
        key = item.get("write_key")
        name = item.get("name") or f"source-{i}"
        if not isinstance(key, str) or len(key) < 8:
            raise SourceConfigError(f"sources[{i}].write_key must be a string of 8+ characters")
        if key in seen:
            continue
        seen.add(key)
        origins = item.get("origins", ["*"])
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise SourceConfigError(f"sources[{i}].origins must be a list of strings")
        sources.append(
            Source(
                name=str(name),
                write_key=key,
                origins=tuple("*" if o == "*" else _normalise_origin(o) for o in origins),
            )
        )
    return tuple(sources)


def find_source(sources: tuple[Source, ...], write_key: str | None) -> Source | None:
    """Constant-time comparison: a timing side channel must not reveal valid keys."""
    if not write_key:
        return None
    found = None
    for source in sources:
        if hmac.compare_digest(source.write_key.encode(), write_key.encode()):
            found = source
    return found
