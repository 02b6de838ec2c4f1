"""The registry of definition kinds, and the checks between definitions: every reference
resolves, and a change or a deletion never takes away what another definition uses."""
from __future__ import annotations

import difflib
from typing import Iterable, Iterator

from chalicelib.domain.definition_errors import Reference, show
from chalicelib.domain.definition_kinds.base import DefinitionKind, Reading

Key = tuple[str, str]  # (kind, id)


class KindRegistry:
    def __init__(self, kinds: Iterable[DefinitionKind]):
        self._kinds: dict[str, DefinitionKind] = {}
        for kind in kinds:
            for name in (kind.name, kind.plural):
                if name in self._kinds and self._kinds[name] is not kind:
                    raise ValueError(f"two definition kinds are called {name!r}")
                self._kinds[name] = kind
        self._providers = {ref: kind for kind in self for ref in kind.provides_names}

    def __iter__(self) -> Iterator[DefinitionKind]:
        return iter(dict.fromkeys(self._kinds.values()))

    def names(self) -> tuple[str, ...]:
        return tuple(kind.name for kind in self)

    def get(self, name: str) -> DefinitionKind | None:
        """A kind by its name or its plural (`segment` or `segments`)."""
        return self._kinds.get(name) if isinstance(name, str) else None

    def read_row(self, row: dict) -> Reading:
        kind = self.get(row.get("kind"))
        if kind is None:
            return Reading(None, [f"kind: {row.get('kind')!r} is no longer a kind of definition"])
        try:
            return kind.read(row["document"])
        except RecursionError:
            return Reading(None, ["document: nested too deeply"])

    # -- checks between definitions ---------------------------------------------------------

    def _provided(self, readings: dict[Key, Reading], fallback: dict[Key, Reading]) -> dict[str, dict[str, Key]]:
        provided: dict[str, dict[str, Key]] = {}
        for key, reading in readings.items():
            kind = self.get(key[0])
            if kind is None:
                continue
            value = reading.value
            if value is None and kind.singleton and key in fallback:
                value = fallback[key].value  # a broken new version is refused: the stored one stays
            for ref_kind, name in kind.provides(key[1], value):
                provided.setdefault(ref_kind, {})[name] = key
        return provided

    def _unknown(self, ref: Reference, provided: dict[str, dict[str, Key]]) -> str:
        names = sorted(provided.get(ref.kind, {}))
        close = difflib.get_close_matches(ref.name, names, n=1, cutoff=0.6)
        if close:
            hint = f" (did you mean {show(close[0])}?)"
        elif not names and ref.kind in self._providers and self._providers[ref.kind].singleton:
            hint = f" (no {self._providers[ref.kind].name} definition defines any)"
        else:
            hint = ""
        return f"{ref.at}: unknown {ref.kind} {show(ref.name)}{hint}"

    def check_changes(self, current: dict[Key, Reading], changes: dict[Key, Reading | None]) -> dict[Key, list[str]]:
        """Every problem of each change (a new reading, or None for a deletion), seen with
        the other current definitions and the other changes: its own problems, its
        references that resolve to nothing, cycles, and what it would take away from a
        definition that uses it (naming that definition and the place)."""
        after = dict(current)
        for key, reading in changes.items():
            if reading is None:
                after.pop(key, None)
            else:
                after[key] = reading
        before_provided = self._provided(current, {})
        after_provided = self._provided(after, current)
        problems: dict[Key, list[str]] = {key: [] for key in changes}
        for key, reading in changes.items():
            if reading is None:
                continue
            problems[key].extend(reading.problems)
            for ref in reading.references:
                if ref.name not in after_provided.get(ref.kind, {}):
                    problems[key].append(self._unknown(ref, after_provided))
        for kind in self:
            changed = {i for (k, i), r in changes.items() if k == kind.name and r is not None and r.value is not None}
            if not changed:
                continue
            values = {i: r.value for (k, i), r in after.items() if k == kind.name and r.value is not None}
            for definition_id, problem in kind.check_together(values, changed):
                problems[(kind.name, definition_id)].append(problem)
        users: dict[tuple[Key, str, str], list[str]] = {}
        for key, reading in after.items():
            if key in changes:
                continue
            for ref in reading.references:
                provider = before_provided.get(ref.kind, {}).get(ref.name)
                if provider in changes and ref.name not in after_provided.get(ref.kind, {}):
                    users.setdefault((provider, ref.kind, ref.name), []).append(f"{key[0]} {key[1]} ({ref.at})")
        for (provider, ref_kind, name), where in sorted(users.items()):
            what = f"{ref_kind} {show(name)}"
            if changes[provider] is None:
                problems[provider].append(f"{what} is used by {', '.join(where)}: change or delete "
                                          f"{'that' if len(where) == 1 else 'those'} first")
            else:
                problems[provider].append(f"{what} would no longer exist but is used by {', '.join(where)}")
        return problems
