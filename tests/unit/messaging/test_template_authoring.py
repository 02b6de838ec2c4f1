"""Template authoring: uploads validated before they replace anything, verdicts kept,
locale variants chosen, compiled versions cached."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from chalicelib.domain.messaging.templates import TemplateEngine, TemplateInvalid
from chalicelib.services.template_store import StoredTemplate, TemplateLibrary, TemplateStore
from chalicelib.services.templates import TemplateAuthoring, TemplateNotFound
from tests.unit.fakes import FakeDefinitionStore

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)
REPO_TEMPLATES = Path(__file__).resolve().parents[3] / "templates"


class MemoryTemplateStore(TemplateStore):
    def __init__(self):
        self.files: dict[str, tuple[str, str]] = {}
        self.puts = 0

    def get(self, filename):
        return self.files.get(filename)

    def list(self):
        return sorted(self.files)

    def put(self, filename, source):
        self.puts += 1
        version = f"v{self.puts}"
        self.files[filename] = StoredTemplate(source, version)
        return version


GOOD = """---
subject: "Hello {{ traits.first_name | default('friend') }}"
kind: marketing
topic: newsletter
---
<html><body><p>Hi {{ traits.first_name | default('friend') }}</p>
<a href="{{ links.unsubscribe }}">Unsubscribe</a></body></html>
"""
BAD = """---
subject: "Hello"
kind: marketing
topic: newsletter
---
<html><body>
<p>{{ traits.first_name | nosuchfilter }}</p>
</body></html>
"""


@pytest.fixture
def library():
    accepted = MemoryTemplateStore()
    return TemplateAuthoring(accepted, TemplateLibrary(accepted, TemplateEngine(clock=lambda: NOW), max_age=0),
                             FakeDefinitionStore(), lambda: NOW, inbox=MemoryTemplateStore())


def test_a_valid_upload_becomes_the_accepted_version(library):
    verdict = library.put("hello.html.j2", GOOD)
    assert verdict.ok, str(verdict)
    described = library.describe("hello.html.j2")
    assert described["accepted"] and described["version"] == "v1" and described["kind"] == "marketing"
    assert described["last_upload"]["ok"] is True


def test_a_bad_upload_never_replaces_the_good_version_and_its_verdict_names_the_line(library):
    library.put("hello.html.j2", GOOD)
    verdict = library.put("hello.html.j2", BAD.replace("Hello", "Bad"))
    assert not verdict.ok
    problem = verdict.problems[0]
    assert problem.line == 7 and "nosuchfilter" in problem.message
    described = library.describe("hello.html.j2")
    assert described["version"] == "v1" and "Hi" in described["source"]
    assert described["last_upload"]["ok"] is False
    assert described["last_upload"]["problems"][0]["line"] == 7
    assert library.preview("hello.html.j2").subject == "Hello Ada"


def test_validate_stores_nothing(library):
    assert not library.validate("hello.html.j2", BAD).ok
    assert library.accepted.list() == [] and library.verdict("hello.html.j2") is None


def test_the_inbox_is_judged_once_per_version(library):
    library.inbox.put("hello.html.j2", GOOD)
    library.inbox.put("broken.html.j2", BAD)
    report = library.sync_inbox()
    assert report["accepted"] == ["hello.html.j2"]
    assert report["refused"][0]["template"] == "broken.html.j2"
    assert library.accepted.list() == ["hello.html.j2"]
    # Nothing changed in the inbox: nothing is judged again.
    assert library.sync_inbox() == {"accepted": [], "refused": []}
    library.inbox.put("broken.html.j2", GOOD)  # fixed
    assert library.sync_inbox()["accepted"] == ["broken.html.j2"]


def test_the_locale_variant_falls_back_to_language_then_default(library):
    library.put("hello.html.j2", GOOD)
    library.put("hello.it.html.j2", GOOD.replace("Hello", "Ciao"))
    assert library.variant("hello", "html", "it-CH").filename == "hello.it.html.j2"
    assert library.variant("hello", "html", "de-DE").filename == "hello.html.j2"
    assert library.variant("hello", "html", None).filename == "hello.html.j2"
    with pytest.raises(TemplateNotFound):
        library.variant("hello", "sms", "en")


def test_compiled_templates_are_cached_by_version(library):
    library.put("hello.html.j2", GOOD)
    first = library.compiled("hello.html.j2")
    assert library.compiled("hello.html.j2") is first
    library.put("hello.html.j2", GOOD.replace("Hello", "Howdy"))
    second = library.compiled("hello.html.j2")
    assert second is not first and library.preview("hello.html.j2").subject == "Howdy Ada"


def test_preview_names_the_samples_when_asked_for_an_unknown_one(library):
    library.put("hello.html.j2", GOOD)
    assert library.preview("hello.html.j2", "it-CH, Zurich").subject == "Hello Giulia"
    with pytest.raises(TemplateInvalid) as refused:
        library.preview("hello.html.j2", "nobody")
    assert "it-CH, Zurich" in str(refused.value)


def test_every_shipped_default_template_is_accepted(library):
    for path in sorted(REPO_TEMPLATES.glob("*.j2")):
        verdict = library.put(path.name, path.read_text(encoding="utf-8"))
        assert verdict.ok, str(verdict)
