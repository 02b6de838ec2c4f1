"""Upload the templates of a folder (the repository's templates/ by default) to the data
bucket's templates/ prefix (the inbox), each validated here first so a problem is reported at
once, with its line; the deployed app judges the inbox again (the segment-jobs schedule) and
only then makes a file the accepted version, so a bad upload never replaces a good one.

    python -m local.upload_templates --bucket mercurio-prod-data-123456789012
    make upload-templates STAGE=prod            (the bucket is read from the data stack)

`make run` calls `accept_templates` at start, so the local stack serves the defaults at once.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from chalicelib.domain.messaging.templates import validate
from chalicelib.services.template_store import TemplateStore

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def sync_templates(store: TemplateStore, root: Path = TEMPLATES) -> tuple[list[str], list[str]]:
    """(uploaded file names, refusals with their problems); unchanged files are uploaded
    again (S3 gives them a new version; the compiled cache recompiles them once)."""
    uploaded, refused = [], []
    for path in sorted(root.glob("*.j2")):
        source = path.read_text(encoding="utf-8")
        verdict = validate(path.name, source)
        if not verdict.ok:
            refused.append(str(verdict))
            continue
        store.put(path.name, source)
        uploaded.append(path.name)
    return uploaded, refused


def accept_templates(authoring, root: Path = TEMPLATES) -> tuple[list[str], list[str]]:
    """Through the app's own template authoring (validated, accepted, verdict kept): what
    `make run` does with the defaults. (accepted file names, refusals with their problems)."""
    accepted, refused = [], []
    for path in sorted(root.glob("*.j2")):
        verdict = authoring.put(path.name, path.read_text(encoding="utf-8"), origin="make run")
        (accepted if verdict.ok else refused).append(path.name if verdict.ok else str(verdict))
    return accepted, refused


def main(argv: list[str] | None = None) -> int:
    from chalicelib.adapters.s3_templates import S3TemplateStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default=os.environ.get("DATA_BUCKET") or os.environ.get("MERCURIO_DATA_BUCKET"),
                        help="the data bucket (default: $DATA_BUCKET, then $MERCURIO_DATA_BUCKET)")
    parser.add_argument("--from", dest="root", type=Path, default=TEMPLATES, help="the folder (default templates/)")
    args = parser.parse_args(argv)
    if not args.bucket:
        parser.error("no bucket: pass --bucket or set DATA_BUCKET")
    uploaded, refused = sync_templates(S3TemplateStore(args.bucket), args.root)
    for name in uploaded:
        print(f"uploaded s3://{args.bucket}/templates/{name}")
    for problem in refused:
        print(f"refused {problem}", file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
