"""Template authoring: which version of each template is good, and the verdict of every upload.

Marketers write templates three ways: `PUT /v1/admin/templates/{file}`, `make upload-templates`
and `aws s3 cp` into the data bucket's `templates/` folder (the inbox). Every upload is
validated — parsed, then rendered for the sample contacts — and only a valid one is copied to
the accepted store that sends and previews read. A bad upload never replaces the last good
version: its verdict, with line numbers, is kept (and logged) and shown by the admin API, and
the good version goes on being used.

Sends, previews and on-site slots read the accepted store through the shared
`TemplateLibrary` (services/template_store.py), which compiles each version once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from chalicelib.domain.events import iso
from chalicelib.domain.messaging.templates import (
    CompiledTemplate,
    Problem,
    Rendered,
    TemplateEngine,
    TemplateInvalid,
    Verdict,
)
from chalicelib.services.template_store import TemplateLibrary, TemplateStore
from chalicelib.services.contacts import NotFound
from chalicelib.services.ports import DefinitionStore

logger = logging.getLogger(__name__)

_VERDICT_STATE = "template-verdict/"  # + file name: the last upload's verdict
_INBOX_STATE = "template-inbox"  # file name -> inbox version already judged
MAX_SOURCE_BYTES = 256 * 1024


class TemplateNotFound(NotFound):
    """No such template (answered 404)."""


class TemplateAuthoring:
    def __init__(self, accepted: TemplateStore, library: TemplateLibrary, state: DefinitionStore,
                 now: Callable[[], datetime], inbox: TemplateStore | None = None,
                 on_rejected: Callable[[Verdict], None] | None = None):
        self.accepted, self.library, self.inbox, self.state, self.now = accepted, library, inbox, state, now
        self.engine: TemplateEngine = library.engine
        self.on_rejected = on_rejected

    # -- uploads ---------------------------------------------------------------------------

    def validate(self, filename: str, source: str) -> Verdict:
        """The verdict an upload would get, without storing anything."""
        return self.engine.validate(filename, source)

    def put(self, filename: str, source: str, origin: str = "admin_api") -> Verdict:
        """Validate, then accept (the new good version) or record the refusal and keep the old."""
        verdict = self.validate(filename, source)
        version = self.accepted.put(filename, source) if verdict.ok else None
        if version is not None:
            self.library.forget()  # this container serves the new version at once
        self._record(verdict, origin, version)
        return verdict

    def _record(self, verdict: Verdict, origin: str, version: str | None) -> None:
        self.state.put_state(_VERDICT_STATE + verdict.name, {
            **verdict.to_dict(), "origin": origin, "at": iso(self.now()), "accepted_version": version})
        if verdict.ok:
            logger.info("template accepted", extra={"template": verdict.name, "origin": origin, "version": version})
        else:
            logger.warning("template refused; the last good version stays in use",
                           extra={"template": verdict.name, "origin": origin, "verdict": str(verdict),
                                  "problems": [p.to_dict() for p in verdict.problems]})
            if self.on_rejected:
                self.on_rejected(verdict)

    def sync_inbox(self) -> dict:
        """Judge every file of the inbox that changed since it was last judged."""
        report = {"accepted": [], "refused": []}
        if self.inbox is None:
            return report
        judged = self.state.get_state(_INBOX_STATE) or {}
        current = self.inbox.versions()
        for filename, version in sorted(current.items()):
            if judged.get(filename) == version:
                continue
            got = self.inbox.get(filename)
            if got is None:
                continue
            source = got[0]
            verdict = self.put(filename, source, origin="s3 upload")
            report["accepted" if verdict.ok else "refused"].append(
                filename if verdict.ok else {"template": filename, "problems": [str(p) for p in verdict.problems]})
            judged[filename] = version
        self.state.put_state(_INBOX_STATE, {k: v for k, v in judged.items() if k in current})
        return report

    # -- reading -----------------------------------------------------------------------------

    def verdict(self, filename: str) -> dict | None:
        return self.state.get_state(_VERDICT_STATE + filename)

    def describe(self, filename: str) -> dict:
        got = self.accepted.get(filename)
        verdict = self.verdict(filename)
        if got is None and verdict is None:
            raise TemplateNotFound(f"there is no template {filename!r}")
        out = {"template": filename, "accepted": got is not None, "last_upload": verdict}
        if got is not None:
            source, version = got
            compiled = self.compiled(filename)
            out.update(version=version, source=source, channel=compiled.channel, kind=compiled.kind,
                       topic=compiled.topic)
        return out

    def listing(self) -> list[dict]:
        out = []
        for filename in sorted(self.accepted.list()):
            verdict = self.verdict(filename) or {}
            out.append({"template": filename, "last_upload_ok": verdict.get("ok", True),
                        "last_upload_at": verdict.get("at")})
        return out

    def compiled(self, filename: str) -> CompiledTemplate:
        """The accepted version, compiled (once per version, by the shared library)."""
        compiled = self.library.compiled(filename)
        if compiled is None:
            raise TemplateNotFound(f"there is no accepted template {filename!r}")
        return compiled

    def variant(self, name: str, fmt: str, locale: str | None) -> CompiledTemplate:
        """The template `name` in format `fmt` (html, sms, push, slot) for a contact's locale:
        `welcome.it-CH.html.j2`, else `welcome.it.html.j2`, else `welcome.html.j2`."""
        compiled = self.library.find(name, fmt, locale)
        if compiled is None:
            raise TemplateNotFound(f"there is no {fmt} template called {name!r} (nor a default without a locale)")
        return compiled

    def preview(self, filename: str, sample: str | None = None) -> Rendered:
        """Render the accepted version for one of the sample contacts (by name), sending nothing."""
        compiled = self.compiled(filename)
        chosen = None
        if sample is not None:
            chosen = next((s for s in self.engine.samples if s.name == sample), None)
            if chosen is None:
                names = ", ".join(repr(s.name) for s in self.engine.samples)
                raise TemplateInvalid(Verdict(filename, (Problem(f"no sample called {sample!r}; the samples are {names}",
                                                                 field="sample"),)))
        return self.engine.render_sample(compiled, chosen)
