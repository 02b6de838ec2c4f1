"""Contact import from a CRM export: CSV + column mapping → identify events.

Rows become `identify` events appended to the event store, so imported contacts go through
the same identity resolution and merge as live traffic. Each row's messageId and timestamp
are derived from its content and the import's as-of date, so uploading the same file again
stores nothing new; a row that did change updates the traits it carries.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import datetime, time, timezone

from chalicelib.domain.contact import IMPORT_LIBRARY
from chalicelib.domain.events import event_key, iso, parse_timestamp, retention_ttl
from chalicelib.domain.identity import InvalidIdentifier, make_identifier, normalise_email, normalise_phone
from chalicelib.domain.nesting import TooDeeplyNested, load_json
from chalicelib.services.ports import Clock, EventStore, StoredEvent

MAX_IMPORT_BYTES = 5 * 1024 * 1024  # the CSV text
MAX_ROWS = 50_000
# The JSON wrapper escapes the CSV (quotes, newlines); Lambda's request payload limit is 6 MB.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
CSV_MEDIA_TYPES = ("text/csv", "application/csv")
QUERY_OPTIONS = ("default_region", "as_of", "source")
TARGETS = ("userId", "email", "phone", "timestamp", "ignore")
_AUTO = {
    "email": "email", "e-mail": "email", "email address": "email", "mail": "email",
    "phone": "phone", "mobile": "phone", "phone number": "phone", "telephone": "phone",
    "user id": "userId", "userid": "userId", "user_id": "userId", "customer id": "userId",
    "external id": "userId", "id": "userId",
    "updated at": "timestamp", "updated_at": "timestamp", "last modified": "timestamp",
}


class ImportRejected(ValueError):
    """The upload as a whole is unusable; nothing was written."""


def snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_") or "field"


def auto_mapping(columns: list[str]) -> dict[str, str]:
    return {c: _AUTO.get(c.strip().lower(), f"traits.{snake(c)}") for c in columns}


def _check_mapping(mapping: object, columns: list[str]) -> dict[str, str]:
    if not isinstance(mapping, dict):
        raise ImportRejected("mapping must be an object of column name -> target")
    problems = []
    for column, target in mapping.items():
        if column not in columns:
            problems.append(f"mapping names column {column!r}, which the CSV header does not have "
                            f"(columns: {', '.join(columns)})")
        elif not isinstance(target, str) or not (target in TARGETS or (
                target.startswith("traits.") and len(target) > len("traits."))):
            problems.append(f"mapping[{column!r}]: {target!r} is not a target "
                            f"(use {', '.join(TARGETS)} or traits.<name>)")
    if problems:
        raise ImportRejected("; ".join(problems))
    targets = list(mapping.values())
    for unique in ("userId", "email", "phone", "timestamp"):
        if targets.count(unique) > 1:
            raise ImportRejected(f"mapping sends more than one column to {unique}")
    if not any(t in ("userId", "email", "phone") for t in targets):
        raise ImportRejected("mapping needs a column mapped to userId, email or phone to identify people")
    return mapping


def import_request(body: bytes | str | None, content_type: str | None, params: dict | None) -> dict:
    """An upload as the admin API receives it → the importer's request.

    Two shapes: `text/csv` (the file itself as the body; `mapping.<column>=<target>`,
    `default_region`, `as_of` and `source` as query parameters), or a JSON object
    `{"csv": "...", "mapping": {...}, ...}`."""
    params = dict(params or {})
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    media = (content_type or "").split(";")[0].strip().lower()
    if media in CSV_MEDIA_TYPES:
        if len(raw) > MAX_IMPORT_BYTES:
            raise ImportRejected(f"csv is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split the file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportRejected(f"the CSV is not UTF-8 text (byte {exc.start}); export it as UTF-8") from None
        request: dict = {"csv": text}
        mapping = {name[len("mapping."):]: target for name, target in params.items()
                   if name.startswith("mapping.") and len(name) > len("mapping.")}
        if mapping:
            request["mapping"] = mapping
        for name in QUERY_OPTIONS:
            if params.get(name) not in (None, ""):
                request[name] = params[name]
        unknown = sorted(n for n in params if n not in QUERY_OPTIONS and not n.startswith("mapping."))
        if unknown:
            raise ImportRejected(f"unknown query parameter(s) {', '.join(unknown)} "
                                 f"(use mapping.<column>=<target>, {', '.join(QUERY_OPTIONS)})")
        return request
    if len(raw) > MAX_REQUEST_BYTES:
        raise ImportRejected(f"body is larger than {MAX_REQUEST_BYTES // (1024 * 1024)} MB; "
                             "send the file as text/csv or split it")
    try:
        request = load_json(raw or b"")
    except TooDeeplyNested as exc:
        raise ImportRejected(str(exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImportRejected(f"body is not valid JSON ({exc}); send a JSON object with csv and mapping, "
                             "or the file itself with Content-Type: text/csv") from None
    return request


class ContactImporter:
    def __init__(self, store: EventStore, clock: Clock, ttl_days: int = 395):
        self.store = store
        self.clock = clock
        self.ttl_days = ttl_days

    def run_upload(self, body: bytes | str | None, content_type: str | None, params: dict | None) -> dict:
        """The admin API's entry: a text/csv body or the JSON wrapper (see import_request)."""
        return self.run(import_request(body, content_type, params))

    def run(self, request: object) -> dict:
        if not isinstance(request, dict):
            raise ImportRejected("body must be a JSON object with csv and (optionally) mapping")
        text = request.get("csv")
        if not isinstance(text, str) or not text.strip():
            raise ImportRejected("csv is required: the CSV file's text, header row first")
        if len(text.encode("utf-8")) > MAX_IMPORT_BYTES:
            raise ImportRejected(f"csv is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split the file")
        region = request.get("default_region")
        if region is not None and (not isinstance(region, str) or not re.fullmatch(r"[A-Za-z]{2}", region)):
            raise ImportRejected("default_region must be a two-letter country code such as FR or US")
        now = self.clock.now()
        as_of = now.date()
        if request.get("as_of") is not None:
            try:
                as_of = parse_timestamp(request["as_of"]).date()
            except ValueError as exc:
                raise ImportRejected(f"as_of {exc}") from None
        default_ts = datetime.combine(as_of, time(0, 0), tzinfo=timezone.utc)
        source = request.get("source") or "import"
        if not isinstance(source, str) or len(source) > 100:
            raise ImportRejected("source must be a short string naming the system the file comes from")

        reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
        try:
            header = next(reader)
        except (StopIteration, csv.Error) as exc:
            raise ImportRejected(f"line 1: cannot read the header row ({exc})") from None
        header = [h.strip() for h in header]
        if len(set(header)) != len(header) or any(not h for h in header):
            raise ImportRejected("line 1: the header has empty or repeated column names")
        mapping = _check_mapping(request.get("mapping") or auto_mapping(header), header)

        report: dict = {"rows": 0, "accepted": 0, "rejected": 0, "errors": [], "mapping": mapping}
        events: dict[tuple[str, str], StoredEvent] = {}
        ttl = retention_ttl(now, self.ttl_days)
        try:
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                report["rows"] += 1
                if report["rows"] > MAX_ROWS:
                    raise ImportRejected(f"more than {MAX_ROWS} rows; split the file")
                if len(row) != len(header):
                    report["rejected"] += 1
                    report["errors"].append({"line": line, "field": None, "error":
                                             f"has {len(row)} cells, the header has {len(header)}"})
                    continue
                event, errors = self._row_event(dict(zip(header, row)), mapping, region, default_ts, source, line)
                if errors:
                    report["rejected"] += 1
                    report["errors"].extend(errors)
                    continue
                pk, sk = event_key(event)
                stored = StoredEvent(partition=pk, sort=sk, body=event, ttl=ttl)
                events[(stored.partition, stored.sort)] = stored
                report["accepted"] += 1
        except csv.Error as exc:
            raise ImportRejected(f"line {reader.line_num}: the CSV is malformed ({exc}); nothing was imported") from None
        if events:
            self.store.append(list(events.values()))
        return report

    def _row_event(self, row: dict, mapping: dict, region, default_ts: datetime, source: str, line: int):
        errors: list[dict] = []
        traits: dict = {}
        user_id = None
        timestamp = default_ts
        for column, target in mapping.items():
            value = row.get(column, "").strip()
            if target == "ignore" or value == "":
                continue
            try:
                if target == "userId":
                    user_id = make_identifier("user", value).partition(":")[2]
                elif target == "email":
                    traits["email"] = normalise_email(value)
                elif target == "phone":
                    traits["phone"] = normalise_phone(value, region)
                elif target == "timestamp":
                    timestamp = parse_timestamp(value)
                else:
                    traits[target[len("traits."):]] = value
            except (InvalidIdentifier, ValueError) as exc:
                errors.append({"line": line, "field": column, "error": f"{target} {exc}"})
        if not errors and user_id is None and "email" not in traits and "phone" not in traits:
            errors.append({"line": line, "field": None, "error": "no userId, email or phone: cannot identify the person"})
        if errors:
            return None, errors
        content = json.dumps({"u": user_id, "t": traits, "s": source}, sort_keys=True, ensure_ascii=False)
        message_id = "import-" + hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]
        ts = iso(timestamp)
        event = {
            "type": "identify",
            "messageId": message_id,
            "timestamp": ts,
            "originalTimestamp": ts,
            "receivedAt": iso(self.clock.now()),
            "traits": traits,
            "context": {"library": {"name": IMPORT_LIBRARY, "version": "1"}, "import": {"source": source}},
            "source": source,
        }
        if user_id is not None:
            event["userId"] = user_id
        elif "email" in traits:
            event["partition"] = f"email:{traits['email']}"
        else:
            event["partition"] = f"phone:{traits['phone']}"
        return event, []
