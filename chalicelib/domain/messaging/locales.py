"""Locale tags as contacts carry them, and the template variant a locale reads: pure string
work, kept apart from the template engine so callers that only choose or normalise a locale
(the on-site content route, the template library) do not load Jinja2 and Babel."""
from __future__ import annotations

import re
from typing import Mapping


def normalise_locale(tag: object) -> str | None:
    """`it_ch`, `it-CH`, `IT-ch` → `it-CH`; anything unusable → None."""
    if not isinstance(tag, str) or not tag.strip():
        return None
    parts = [p for p in re.split(r"[-_]", tag.strip().split(".")[0].split("@")[0]) if p]
    if not parts or not re.fullmatch(r"[A-Za-z]{2,3}", parts[0]):
        return None
    out = [parts[0].lower()]
    for part in parts[1:]:
        if re.fullmatch(r"[A-Za-z]{2}|\d{3}", part):
            out.append(part.upper())
        elif re.fullmatch(r"[A-Za-z]{4}", part):
            out.append(part.title())
        elif re.fullmatch(r"[A-Za-z0-9]{2,8}", part):
            out.append(part.lower())
        else:
            break
    return "-".join(out)


def locale_chain(tag: object) -> list[str | None]:
    """Which variants to try, most specific first: `it-CH` → [`it-CH`, `it`, None (the default)]."""
    tag = normalise_locale(tag)
    chain: list[str | None] = []
    if tag:
        parts = tag.split("-")
        chain = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return chain + [None]


def choose_variant(variants: Mapping, tag: object):
    """The variant for a contact's locale, falling back to the language, then the default."""
    normalised = {normalise_locale(k) if k else None: v for k, v in variants.items()}
    for candidate in locale_chain(tag):
        if candidate in normalised:
            return normalised[candidate]
    return None
