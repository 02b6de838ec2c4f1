"""Definitions: validate, version and serve the marketer's documents (segments, campaigns,
scoring, RFM, personas), from the admin API, from S3 uploads and from files in the repo.

A document that does not validate never replaces the good version: the caller gets every
problem, each naming its place in the document.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import yaml

from chalicelib.domain.definition_errors import DefinitionError, load_yaml
from chalicelib.domain.destinations import parse_destination
from chalicelib.domain.events import iso
from chalicelib.domain.nesting import MAX_DOCUMENT_DEPTH, nesting_depth
from chalicelib.domain.segments.language import validate_catalog
from chalicelib.services.catalog import KINDS, SINGLETONS, Catalog, build_catalog, check_id, parse_document, \
    validate_segments
from chalicelib.services.ports import Clock, DefinitionStore

RFM_THRESHOLDS = "rfm-thresholds"
MAX_DOCUMENT_BYTES = 256 * 1024


def decode_document(body: bytes | str | dict | None, content_type: str | None = None) -> dict:
    """YAML or JSON text (JSON is YAML) → a mapping, or a DefinitionError saying why not."""
    if isinstance(body, dict):
        return body
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
        raise DefinitionError([f"document: {where}not valid YAML or JSON ({getattr(exc, 'problem', exc)})"]) from None
    except RecursionError:  # PyYAML recurses several frames per level
        raise DefinitionError([f"document: nested more than {MAX_DOCUMENT_DEPTH} levels deep"]) from None
    if not isinstance(document, dict):
        raise DefinitionError(["document: expected a mapping of fields"])
    # What parsed is walked recursively later (validation, storage): bound it here.
    if nesting_depth(document, MAX_DOCUMENT_DEPTH) > MAX_DOCUMENT_DEPTH:
        raise DefinitionError([f"document: nested more than {MAX_DOCUMENT_DEPTH} levels deep"])
    return document


class DefinitionService:
    def __init__(self, store: DefinitionStore, clock: Clock, cache_seconds: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic, allow_private_destinations: bool = False):
        self.store = store
        # Saving a destination refuses literal private addresses unless this is on.
        self.allow_private_destinations = allow_private_destinations
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self._catalog: Catalog | None = None
        self._loaded_at = 0.0

    # -- reading -------------------------------------------------------------------------

    def catalog(self) -> Catalog:
        """The parsed catalog, reloaded at most every `cache_seconds` per container."""
        if self._catalog is None or self.monotonic() - self._loaded_at > self.cache_seconds:
            self._catalog = build_catalog(self.store.current(), self.store.get_state(RFM_THRESHOLDS))
            self._loaded_at = self.monotonic()
        return self._catalog

    def invalidate(self) -> None:
        self._catalog = None

    def get(self, kind: str, definition_id: str) -> dict | None:
        return self.store.get(kind, definition_id)

    def list(self, kind: str) -> list[dict]:
        return self.store.current(kind)

    # -- writing -------------------------------------------------------------------------

    def validate(self, kind: str, definition_id: str, document: dict, check_references: bool = True):
        if kind not in KINDS:
            raise DefinitionError([f"kind: unknown definition kind {kind!r} (use one of {', '.join(KINDS)})"])
        check_id(kind, definition_id)
        if kind not in SINGLETONS:
            stated = document.get("id")
            if stated is not None and stated != definition_id:
                raise DefinitionError([f"id: the document says {stated!r} but is stored as {definition_id!r}"])
            document = {**document, "id": definition_id}
        parsed = parse_document(kind, document)
        if kind == "destination":
            parse_destination(document, allow_private=self.allow_private_destinations)
        if kind == "segment" and check_references:
            existing = {row["id"]: parse_document("segment", row["document"])
                        for row in self.store.current("segment") if row["id"] != definition_id}
            validate_segments(existing, parsed)
        return document, parsed

    def put(self, kind: str, definition_id: str, body, content_type: str | None = None,
            check_references: bool = True) -> dict:
        document, parsed = self.validate(kind, definition_id, decode_document(body, content_type), check_references)
        current = self.store.get(kind, definition_id)
        if current is not None and current["document"] == document:
            return {"kind": kind, "id": definition_id, "version": current["version"], "changed": False}
        now = iso(self.clock.now())
        version = self.store.put(kind, definition_id, document, now)
        if kind in ("segment", "personas"):
            # Existing contacts are evaluated against the new version by the back-fill.
            self.store.set_stats(kind, definition_id, backfill={
                "status": "pending", "version": version, "scanned": 0, "cursor": None, "started_at": now})
        self.invalidate()
        return {"kind": kind, "id": definition_id, "version": version, "changed": True}

    def seed_directory(self, root: Path) -> list[dict]:
        """Load every definition file under root: segments/*.yaml, campaigns/*.yaml,
        scoring.yaml, rfm.yaml, personas.yaml. The segments are checked together (they may
        reference each other); unchanged documents are not re-versioned."""
        files = sorted(root.glob("segments/*.y*ml")) + sorted(root.glob("campaigns/*.y*ml"))
        files += sorted(root.glob("destinations/*.y*ml"))
        files += [root / f"{kind}.yaml" for kind in SINGLETONS if (root / f"{kind}.yaml").exists()]
        documents = []
        for path in files:
            kind, definition_id = kind_and_id(path.relative_to(root).as_posix())
            documents.append((kind, definition_id, path.read_text(encoding="utf-8")))
        segments = {**{row["id"]: parse_document("segment", row["document"]) for row in self.store.current("segment")},
                    **{i: parse_document("segment", {**decode_document(text), "id": i})
                       for kind, i, text in documents if kind == "segment"}}
        problems = validate_catalog(list(segments.values()))
        if problems:
            raise DefinitionError(problems)
        return [self.put(kind, i, text, check_references=False) for kind, i, text in documents]

    def sync_uploads(self, uploads) -> dict:
        """Apply documents uploaded to the data bucket since the last sync (by ETag)."""
        seen = self.store.get_state("uploads") or {}
        listing = uploads.listing()
        applied, rejected = [], []
        for key, etag in sorted(listing.items()):
            if seen.get(key) == etag:
                continue
            try:
                applied.append(self.put_from_upload(key, uploads.read(key)))
            except DefinitionError as exc:
                rejected.append({"key": key, "problems": exc.problems})
            seen[key] = etag
        self.store.put_state("uploads", {k: v for k, v in seen.items() if k in listing})
        return {"applied": applied, "rejected": rejected}

    def put_from_upload(self, key: str, body: bytes) -> dict:
        """An object uploaded under definitions/ in the data bucket."""
        relative = key[len("definitions/"):] if key.startswith("definitions/") else key
        kind, definition_id = kind_and_id(relative)
        try:
            return self.put(kind, definition_id, body)
        except DefinitionError as exc:
            self.store.set_stats(kind, definition_id, last_upload={"key": key, "problems": exc.problems,
                                                                   "at": iso(self.clock.now())})
            raise


def kind_and_id(relative: str) -> tuple[str, str]:
    """`segments/coffee-lovers.yaml` → (segment, coffee-lovers); `scoring.yaml` → (scoring, default)."""
    parts = relative.strip("/").split("/")
    name = parts[-1].rsplit(".", 1)[0]
    if len(parts) == 1 and name in SINGLETONS:
        return name, "default"
    if len(parts) == 2 and parts[0] in ("segments", "campaigns", "destinations"):
        return parts[0][:-1], name
    raise DefinitionError([f"key: {relative!r} is not a definition path (segments/<id>.yaml, "
                           f"campaigns/<id>.yaml, destinations/<id>.yaml, scoring.yaml, rfm.yaml or personas.yaml)"])

