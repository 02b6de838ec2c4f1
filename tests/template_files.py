"""A TemplateStore over a folder (the repository's templates/), for tests and e2e runs: the
S3 store is wired in production. Only files that pass validation are stored by `put`."""
from __future__ import annotations

import hashlib
from pathlib import Path

from chalicelib.domain.messaging.templates import TemplateEngine, TemplateInvalid
from chalicelib.services.template_store import StoredTemplate, TemplateStore


class DirectoryTemplateStore(TemplateStore):
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def get(self, filename):
        path = self.folder / filename
        if "/" in filename or not path.is_file():
            return None
        source = path.read_text(encoding="utf-8")
        return StoredTemplate(source, hashlib.sha256(source.encode()).hexdigest()[:16])

    def list(self):
        return sorted(p.name for p in self.folder.glob("*.j2"))

    def put(self, filename, source):
        verdict = TemplateEngine().validate(filename, source)
        if not verdict.ok:
            raise TemplateInvalid(verdict)
        (self.folder / filename).write_text(source, encoding="utf-8")
        return self.get(filename)[1]
