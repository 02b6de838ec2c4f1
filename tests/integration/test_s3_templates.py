"""The S3 template store against moto, and the compiled-template library on top of it."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.s3_templates import S3TemplateStore
from chalicelib.services.template_store import TemplateLibrary, candidate_filenames

BUCKET = "mercurio-test-data"
HERO = "---\nslot: hero\n---\n<p>Hello {{ traits.first_name | default('there') }}</p>\n"


class Ticks:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_put_get_and_list_under_the_templates_prefix(s3):
    store = S3TemplateStore(BUCKET, client=s3)
    version = store.put("hero.slot.j2", HERO)
    store.put("welcome.it.html.j2", "---\nsubject: Ciao\nkind: transactional\n---\n<p>Ciao</p>")
    s3.put_object(Bucket=BUCKET, Key="definitions/segments/x.yaml", Body=b"id: x")
    s3.put_object(Bucket=BUCKET, Key="templates/README.md", Body=b"not a template")
    assert store.get("hero.slot.j2") == (HERO, version)
    assert s3.get_object(Bucket=BUCKET, Key="templates/hero.slot.j2")["ContentType"].startswith("text/plain")
    assert store.list() == ["hero.slot.j2", "welcome.it.html.j2"]
    assert store.get("missing.slot.j2") is None


def test_the_version_changes_with_every_upload_and_uses_version_ids_when_the_bucket_keeps_them(s3):
    store = S3TemplateStore(BUCKET, client=s3)
    first = store.put("hero.slot.j2", HERO)
    second = store.put("hero.slot.j2", HERO.replace("Hello", "Hi"))
    assert first != second and store.get("hero.slot.j2").version == second
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    third = store.put("hero.slot.j2", HERO)
    assert third == s3.head_object(Bucket=BUCKET, Key="templates/hero.slot.j2")["VersionId"]
    assert store.get("hero.slot.j2") == (HERO, third)


def test_a_name_that_could_leave_the_prefix_is_refused(s3):
    store = S3TemplateStore(BUCKET, client=s3)
    for bad in ("../definitions/x.yaml", "a/b.slot.j2", "", ".hidden"):
        with pytest.raises(ValueError):
            store.get(bad)


def test_other_errors_are_not_mistaken_for_a_missing_file(s3):
    store = S3TemplateStore("no-such-bucket", client=s3)
    with pytest.raises(Exception) as caught:
        store.get("hero.slot.j2")
    assert "NoSuchBucket" in str(caught.value)


def test_the_library_picks_the_locale_variant_and_falls_back(s3):
    store = S3TemplateStore(BUCKET, client=s3)
    store.put("hero.slot.j2", HERO)
    store.put("hero.it.slot.j2", "<p>Ciao</p>")
    library = TemplateLibrary(store)
    assert library.find("hero", "slot", "it-CH").filename == "hero.it.slot.j2"
    assert library.find("hero", "slot", "de-DE").filename == "hero.slot.j2"
    assert library.find("hero", "slot", None).filename == "hero.slot.j2"
    assert library.find("nothing", "slot", "it") is None
    assert candidate_filenames("welcome", "html", "it_ch") == ["welcome.it-CH.html.j2", "welcome.it.html.j2",
                                                               "welcome.html.j2"]


class CountingStore(S3TemplateStore):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gets = 0

    def get(self, filename):
        self.gets += 1
        return super().get(filename)


def test_compiled_templates_are_cached_by_version_and_revalidated_after_max_age(s3):
    store = CountingStore(BUCKET, client=s3)
    store.put("hero.slot.j2", HERO)
    ticks = Ticks()
    library = TemplateLibrary(store, max_age=10, monotonic=ticks)
    first = library.compiled("hero.slot.j2")
    assert library.compiled("hero.slot.j2") is first and store.gets == 1  # within max_age: no S3 call
    ticks.now = 11
    assert library.compiled("hero.slot.j2") is first and store.gets == 2  # same version: not recompiled
    store.put("hero.slot.j2", HERO.replace("Hello", "Welcome back"))
    assert library.compiled("hero.slot.j2") is first  # still within max_age of the last look
    ticks.now = 22
    second = library.compiled("hero.slot.j2")
    assert second is not first and store.gets == 3
    assert "Welcome back" in library.engine.render_sample(second).html


def test_a_missing_file_is_remembered_too_and_a_broken_one_reads_as_missing(s3):
    store = CountingStore(BUCKET, client=s3)
    ticks = Ticks()
    library = TemplateLibrary(store, max_age=10, monotonic=ticks)
    assert library.compiled("hero.slot.j2") is None
    assert library.compiled("hero.slot.j2") is None and store.gets == 1
    store.put("broken.slot.j2", "<p>{% if %}</p>")
    assert library.compiled("broken.slot.j2") is None
    assert "broken.slot.j2" in library.broken
    library.forget()
    store.put("hero.slot.j2", HERO)
    assert library.compiled("hero.slot.j2") is not None
