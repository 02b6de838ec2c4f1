"""Definitions: validate, version, list, delete and serve the marketer's documents (segments,
campaigns, destinations, scoring, RFM, personas: every kind in definition_kinds), from the
admin API, from S3 uploads and from files in the repo.

A document that does not validate never replaces the good version: the caller gets every
problem at once (its own, references to nothing, cycles, and what it would take away from
the definitions that use it), each naming its place in the document. A stored definition
that a newer parser rejects is logged, counted and listed, never skipped silently.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import yaml

from chalicelib.domain.definition_errors import DefinitionError, load_yaml, show
from chalicelib.domain.definition_kinds import REGISTRY, DefinitionKind, KindRegistry, Reading
from chalicelib.domain.definition_kinds.base import DRAFT_ID
from chalicelib.domain.events import iso
from chalicelib.services.catalog import Catalog, build_catalog
from chalicelib.services.ports import Clock, DefinitionStore, MembershipStore

RFM_THRESHOLDS = "rfm-thresholds"
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_DOCUMENT_DEPTH = 64
logger = logging.getLogger(__name__)


class DefinitionNotFound(LookupError):
    """No such kind, definition or version."""


class DefinitionInUse(DefinitionError):
    """A deletion refused because other definitions use what it provides."""


def _depth(value: object, limit: int) -> int:
    """Nesting depth of lists and mappings, counted up to `limit` + 1 without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def decode_document(body: bytes | str | dict | None, content_type: str | None = None) -> dict:
    """YAML or JSON text (JSON is YAML) → a mapping, or a DefinitionError saying why not."""
    if isinstance(body, dict):
        document = body
    else:
        if body is None or len(body) == 0:
            raise DefinitionError(["document: empty body; send the definition as YAML or JSON"])
        if len(body) > MAX_DOCUMENT_BYTES:
            raise DefinitionError([f"document: larger than {MAX_DOCUMENT_BYTES // 1024} KB"])
        text = body.decode("utf-8", errors="replace") if isinstance(body, (bytes, bytearray)) else body
        try:
            document = load_yaml(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise DefinitionError([f"document: {where}not valid YAML or JSON ({getattr(exc, 'problem', exc)})"]) \
                from None
        except RecursionError:
            raise DefinitionError([f"document: nested more than {MAX_DOCUMENT_DEPTH} levels deep"]) from None
    if not isinstance(document, dict):
        raise DefinitionError(["document: expected a mapping of fields"])
    if _depth(document, MAX_DOCUMENT_DEPTH) > MAX_DOCUMENT_DEPTH:
        raise DefinitionError([f"document: nested more than {MAX_DOCUMENT_DEPTH} levels deep"])
    return document


def log_unreadable(rows: list[dict]) -> None:
    for row in rows:
        logger.warning("stored definition no longer parses: %s %s v%s: %s", row["kind"], row["id"],
                       row["version"], "; ".join(row["problems"]))


class DefinitionService:
    def __init__(self, store: DefinitionStore, clock: Clock, cache_seconds: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic, kinds: KindRegistry = REGISTRY,
                 memberships: MembershipStore | None = None,
                 on_unreadable: Callable[[list[dict]], None] | None = None,
                 allow_private_destinations: bool = False, uploads=None,
                 views: dict[str, Callable[[str, dict], dict]] | None = None):
        self.store = store
        # What a kind adds to its definitions' view, by kind: (id, row shown) -> fields (a
        # journey's state and who waits where, services/journey_admin.py).
        self.views = dict(views or {})
        self.uploads = uploads  # where marketers upload documents (the data bucket's definitions/)
        # Saving a destination refuses literal private addresses unless this is on.
        self.allow_private_destinations = allow_private_destinations
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self.kinds = kinds
        self.memberships = memberships
        # Called with the unreadable rows (maybe none) each time the catalog is loaded:
        # logged here, counted as a metric by whoever wires the service.
        self.on_unreadable = on_unreadable
        self._catalog: Catalog | None = None
        self._loaded_at = 0.0

    # -- the catalog -----------------------------------------------------------------------

    def catalog(self) -> Catalog:
        """The parsed catalog, reloaded at most every `cache_seconds` per container."""
        if self._catalog is None or self.monotonic() - self._loaded_at > self.cache_seconds:
            self._catalog = build_catalog(self.store.current(), self.store.get_state(RFM_THRESHOLDS), self.kinds)
            self._loaded_at = self.monotonic()
            log_unreadable(self._catalog.unreadable)
            if self.on_unreadable is not None:
                self.on_unreadable(self._catalog.unreadable)
        return self._catalog

    def invalidate(self) -> None:
        self._catalog = None

    # -- reading -------------------------------------------------------------------------

    def kind(self, name: str) -> DefinitionKind:
        kind = self.kinds.get(name)
        if kind is None:
            raise DefinitionNotFound(f"no kind of definition {name!r} (kinds: {', '.join(self.kinds.names())})")
        return kind

    def get(self, kind: str, definition_id: str) -> dict | None:
        """The current row of a definition, or None."""
        return self.store.get(kind, definition_id)

    def list(self, kind_name: str) -> dict:
        """Every current definition of a kind, and those stored that no longer parse."""
        kind = self.kind(kind_name)
        rows = sorted(self.store.current(kind.name), key=lambda r: r["id"])
        listed, unreadable = [], []
        for row in rows:
            reading = self.kinds.read_row(row)
            item = {"id": row["id"], **kind.summary(reading.value, row["document"]), "version": row["version"],
                    "updated_at": row["updated_at"]}
            if kind.has_members and self.memberships is not None:
                item["size"] = self.memberships.size(row["id"])
            if not reading.ok:
                item["problems"] = reading.problems
                unreadable.append({"id": row["id"], "version": row["version"], "problems": reading.problems})
            listed.append(item)
        return {"kind": kind.name, kind.plural: listed, "unreadable": unreadable}

    def overview(self) -> dict:
        """Every kind, how many definitions it has, and every stored row that no longer parses."""
        rows = self.store.current()
        unreadable = []
        counts = {kind.name: 0 for kind in self.kinds}
        for row in rows:
            counts[row["kind"]] = counts.get(row["kind"], 0) + 1
            reading = self.kinds.read_row(row)
            if not reading.ok:
                unreadable.append({"kind": row["kind"], "id": row["id"], "version": row["version"],
                                   "problems": reading.problems})
        return {"kinds": [{"kind": k.name, "path": f"/v1/admin/{k.plural}", "singleton": k.singleton,
                           "backfill": k.backfill, "count": counts[k.name]} for k in self.kinds],
                "unreadable": unreadable}

    def view(self, kind_name: str, definition_id: str, version: int | None = None) -> dict:
        """A definition (its current version, or `version`), every version, and its jobs."""
        kind = self.kind(kind_name)
        versions = self.store.versions(kind.name, definition_id)
        if version is None:
            row = self.store.get(kind.name, definition_id)
            if row is None:
                gone = versions and versions[-1]["deleted"]
                raise DefinitionNotFound(f"no {kind.name} {definition_id!r}" + (
                    f" (deleted at version {versions[-1]['version']}; ?version=N reads an earlier one)" if gone else ""))
        else:
            row = self.store.get_version(kind.name, definition_id, version)
            if row is None:
                raise DefinitionNotFound(f"{kind.name} {definition_id!r} has no version {version} "
                                         f"(versions: {', '.join(str(v['version']) for v in versions) or 'none'})")
        current = row if version is None else self.store.get(kind.name, definition_id)
        view = {"kind": kind.name, "id": definition_id, "version": row["version"], "updated_at": row["updated_at"],
                "current": current is not None and current["version"] == row["version"],
                "document": row["document"], "versions": versions}
        reading = self.kinds.read_row(row)
        if not reading.ok:
            view["problems"] = reading.problems  # stored, but the parser of this release refuses it
        if kind.has_members and self.memberships is not None:
            view["size"] = self.memberships.size(definition_id)
        stats = self.store.stats(kind.name, definition_id)
        if "backfill" in stats:
            view["backfill"] = {k: v for k, v in stats["backfill"].items() if k != "cursor"}
        if "last_upload" in stats:
            view["last_upload"] = stats["last_upload"]
        extra = self.views.get(kind.name)
        if extra is not None:
            view.update(extra(definition_id, row))
        return view

    # -- checking --------------------------------------------------------------------------

    def _readings(self) -> dict[tuple[str, str], Reading]:
        return {(row["kind"], row["id"]): self.kinds.read_row(row) for row in self.store.current()}

    def _prepare(self, kind: DefinitionKind, definition_id: str, body) -> tuple[dict, Reading]:
        document, id_problems = kind.identify(definition_id, decode_document(body))
        reading = kind.read(document)
        reading.problems[:0] = id_problems
        refused = [p for p in kind.save_problems(document, self.allow_private_destinations)
                   if p not in reading.problems]
        if refused:
            reading.problems.extend(refused)
            reading.value = None
        if id_problems:
            reading.value = None
        return document, reading

    def validate(self, kind_name: str, body, definition_id: str | None = None) -> dict:
        """Check a document as `put` would, without storing it. Without an id (in the path,
        a `?id=` or the document) it is read as a draft: id and name are not demanded."""
        kind = self.kind(kind_name)
        document = decode_document(body)
        stated = document.get("id")
        if stated is not None and not isinstance(stated, str):
            raise DefinitionError([f"id: expected text, got {show(stated)}"])
        definition_id = definition_id or stated or ("default" if kind.singleton else None)
        key = (kind.name, definition_id or "\0draft")  # a draft replaces no stored definition
        if definition_id is None:
            draft = {**document, "id": DRAFT_ID}
        else:  # read under its id, as `put` stores it (a document stating another id is refused)
            draft = document if kind.singleton else {"id": definition_id, **document}
        _, reading = self._prepare(kind, definition_id or DRAFT_ID, kind.draft(draft))
        problems = self.kinds.check_changes(self._readings(), {key: reading})[key]
        if problems:
            raise DefinitionError(problems)
        result = {"valid": True, "kind": kind.name, "id": definition_id,
                  "references": [{"kind": r.kind, "name": r.name, "at": r.at} for r in reading.references]}
        if definition_id is not None:
            stored = self.store.get(kind.name, definition_id)
            result["changed"] = stored is None or stored["document"] != kind.identify(definition_id, document)[0]
        return result

    # -- writing -------------------------------------------------------------------------

    def put(self, kind_name: str, definition_id: str, body, content_type: str | None = None) -> dict:
        kind = self.kind(kind_name)
        document, reading = self._prepare(kind, definition_id, body)
        key = (kind.name, definition_id)
        problems = self.kinds.check_changes(self._readings(), {key: reading})[key]
        if problems:
            raise DefinitionError(problems)
        return self._store(kind, definition_id, document)

    def _store(self, kind: DefinitionKind, definition_id: str, document: dict) -> dict:
        current = self.store.get(kind.name, definition_id)
        if current is not None and current["document"] == document:
            return {"kind": kind.name, "id": definition_id, "version": current["version"], "changed": False}
        now = iso(self.clock.now())
        expected = current["version"] if current else self.store.latest_version(kind.name, definition_id)
        version = self.store.put(kind.name, definition_id, document, now, expected=expected)
        if kind.backfill:
            # Existing contacts are evaluated against the new version by the back-fill.
            self.store.set_stats(kind.name, definition_id, backfill={
                "status": "pending", "version": version, "scanned": 0, "cursor": None, "started_at": now})
        self.invalidate()
        return {"kind": kind.name, "id": definition_id, "version": version, "changed": True}

    def delete(self, kind_name: str, definition_id: str) -> dict:
        """Delete a definition nothing else uses (DefinitionInUse names the users). Its
        versions stay readable; a segment's members leave it through a removal job, each
        with a Segment Exited event."""
        kind = self.kind(kind_name)
        row = self.store.get(kind.name, definition_id)
        if row is None:
            raise DefinitionNotFound(f"no {kind.name} {definition_id!r}")
        key = (kind.name, definition_id)
        problems = self.kinds.check_changes(self._readings(), {key: None})[key]
        if problems:
            raise DefinitionInUse(problems)
        now = iso(self.clock.now())
        version = self.store.delete(kind.name, definition_id, row["version"], now)
        result = {"kind": kind.name, "id": definition_id, "deleted": True, "version": version}
        if kind.has_members:
            removal = {"status": "pending", "action": "remove", "version": version, "scanned": 0, "cursor": None,
                       "started_at": now}
            self.store.set_stats(kind.name, definition_id, backfill=removal)
            result["backfill"] = {k: v for k, v in removal.items() if k != "cursor"}
        self.invalidate()
        return result

    def put_many(self, documents: list[tuple[str, str, object]]) -> list[dict]:
        """Store several documents checked as one set (they may reference each other), or
        none: DefinitionError lists every problem, each prefixed by kind and id."""
        prepared, changes = {}, {}
        for kind_name, definition_id, body in documents:
            kind = self.kind(kind_name)
            document, reading = self._prepare(kind, definition_id, body)
            prepared[(kind.name, definition_id)] = (kind, document)
            changes[(kind.name, definition_id)] = reading
        found = self.kinds.check_changes(self._readings(), changes)
        problems = [f"{k} {i}: {p}" for (k, i), listed in found.items() for p in listed]
        if problems:
            raise DefinitionError(problems)
        return [self._store(kind, definition_id, document) for (_, definition_id), (kind, document) in prepared.items()]

    def seed_directory(self, root: Path) -> list[dict]:
        """Load every definition file under root: <plural>/*.yaml for each kind with many
        definitions, <name>.yaml for each kind with one, checked together; unchanged
        documents are not re-versioned."""
        documents = []
        for kind in self.kinds:
            paths = [root / f"{kind.name}.yaml"] if kind.singleton else sorted(root.glob(f"{kind.plural}/*.y*ml"))
            for path in paths:
                if path.exists():
                    documents.append((kind.name, "default" if kind.singleton else path.name.rsplit(".", 1)[0],
                                      path.read_text(encoding="utf-8")))
        return self.put_many(documents)

    def sync_uploads(self, uploads=None) -> dict:
        """Apply documents uploaded to the data bucket since the last sync (by ETag), checked
        together, so a segment and the campaign it names can arrive in one upload."""
        uploads = uploads if uploads is not None else self.uploads
        seen = self.store.get_state("uploads") or {}
        listing = uploads.listing()
        rejected: list[dict] = []
        pending: dict[tuple[str, str], tuple[str, DefinitionKind, dict, Reading]] = {}
        for key, etag in sorted(listing.items()):
            if seen.get(key) == etag:
                continue
            seen[key] = etag
            try:
                kind_name, definition_id = kind_and_id(key[len("definitions/"):] if key.startswith("definitions/")
                                                       else key, self.kinds)
                kind = self.kind(kind_name)
                document, reading = self._prepare(kind, definition_id, uploads.read(key))
            except DefinitionError as exc:
                rejected.append(self._reject(key, None, exc.problems))
                continue
            pending[(kind.name, definition_id)] = (key, kind, document, reading)
        current = self._readings()
        while pending:
            found = self.kinds.check_changes(current, {k: v[3] for k, v in pending.items()})
            failed = [k for k, problems in found.items() if problems]
            if not failed:
                break
            for k in failed:  # drop them and check the rest again: they may have relied on these
                rejected.append(self._reject(pending[k][0], k, found[k]))
                del pending[k]
        applied = [self._store(kind, k[1], document) for k, (_, kind, document, _) in pending.items()]
        self.store.put_state("uploads", {k: v for k, v in seen.items() if k in listing})
        return {"applied": applied, "rejected": rejected}

    def _reject(self, key: str, kind_and_definition: tuple[str, str] | None, problems: list[str]) -> dict:
        if kind_and_definition is not None:
            self.store.set_stats(*kind_and_definition, last_upload={"key": key, "problems": problems,
                                                                    "at": iso(self.clock.now())})
        return {"key": key, "problems": problems}


def kind_and_id(relative: str, kinds: KindRegistry = REGISTRY) -> tuple[str, str]:
    """`segments/coffee-lovers.yaml` → (segment, coffee-lovers); `scoring.yaml` → (scoring, default)."""
    parts = relative.strip("/").split("/")
    name = parts[-1].rsplit(".", 1)[0]
    kind = kinds.get(name) if len(parts) == 1 else kinds.get(parts[0]) if len(parts) == 2 else None
    if kind is not None and kind.singleton and len(parts) == 1 and name == kind.name:
        return kind.name, "default"
    if kind is not None and not kind.singleton and len(parts) == 2 and parts[0] == kind.plural:
        return kind.name, name
    paths = [f"{k.name}.yaml" if k.singleton else f"{k.plural}/<id>.yaml" for k in kinds]
    raise DefinitionError([f"key: {relative!r} is not a definition path ({', '.join(paths)})"])
