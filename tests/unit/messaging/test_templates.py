"""Templates: the sandbox holds, every render is bounded, verdicts point at lines, locales format."""
from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from chalicelib.domain.messaging.templates import (
    SAMPLES,
    RenderLimits,
    TemplateEngine,
    TemplateInvalid,
    TemplateRenderError,
    choose_variant,
    locale_chain,
    normalise_locale,
    parse_filename,
    text_from_html,
)

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[3]
LINKS = {"unsubscribe": "https://t.example/u/1", "preferences": "https://t.example/p/1",
         "view_online": "https://t.example/v/1"}


@pytest.fixture
def engine():
    return TemplateEngine(clock=lambda: NOW)


def sms(body: str) -> str:
    return "---\nkind: transactional\n---\n" + body  # the body starts on line 4


def email(body: str, front: str = "subject: Hello\nkind: transactional\n") -> str:
    return f"---\n{front}---\n{body}"


def render(engine, filename, source, traits=None, locale="en-US", tz="UTC", now=NOW, data=None, **extra):
    variables = {"traits": traits or {}, "links": LINKS, "data": data or {},
                 "contact": {"id": "c1", "segments": []}, **extra}
    return engine.compile(filename, source).render(variables, locale=locale, timezone=tz, now=now)


def _tags(html):
    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collector().feed(html)
    return found


def problems(verdict):
    return [str(p) for p in verdict.problems]


# ---------------------------------------------------------------- names and locales


def test_file_names_carry_name_locale_and_channel():
    name = parse_filename("welcome.html.j2")
    assert (name.name, name.locale, name.format, name.channel) == ("welcome", None, "html", "email")
    name = parse_filename("welcome.it.html.j2")
    assert (name.name, name.locale, name.channel) == ("welcome", "it", "email")
    name = parse_filename("promo-2026.it_ch.sms.j2")
    assert (name.name, name.locale, name.channel) == ("promo-2026", "it-CH", "sms")
    assert parse_filename("hero.slot.j2").channel == "onsite"
    assert parse_filename("order-shipped.push.j2").channel == "push"
    for bad in ("welcome.j2", "../welcome.html.j2", "Welcome.html.j2", "welcome.html", "welcome.pdf.j2", ""):
        with pytest.raises(ValueError, match="not a template file name"):
            parse_filename(bad)


def test_locale_chain_falls_back_from_region_to_language_to_default():
    assert locale_chain("it-CH") == ["it-CH", "it", None]
    assert locale_chain("it_ch") == ["it-CH", "it", None]
    assert locale_chain("zh-Hant-TW") == ["zh-Hant-TW", "zh-Hant", "zh", None]
    assert locale_chain(None) == [None]
    assert locale_chain("not a locale!") == [None]
    assert normalise_locale("EN-us") == "en-US"


def test_variant_is_chosen_by_the_contacts_locale():
    variants = {None: "default", "it": "italian", "it-CH": "swiss italian", "de": "german"}
    assert choose_variant(variants, "it-CH") == "swiss italian"
    assert choose_variant(variants, "it-IT") == "italian"
    assert choose_variant(variants, "it") == "italian"
    assert choose_variant(variants, "fr-FR") == "default"
    assert choose_variant(variants, None) == "default"
    assert choose_variant({"it": "italian"}, "fr") is None


# ---------------------------------------------------------------- sandbox


@pytest.mark.parametrize("attack", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ traits.__class__ }}",
    "{{ traits|attr('__class__') }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{0.__globals__}'.format(cycler.reset) }}",
    "{{ 'x'.format_map({'a': cycler}) ~ '{a.__init__}'.format_map({'a': cycler}) }}",
    "{{ [].append(1) }}",
    "{% set items = [1] %}{{ items.pop() }}",
    "{{ traits.update({'email': 'attacker@example.com'}) }}",
    "{{ traits.setdefault('x', 1) }}",
    "{{ traits.clear() }}",
])
def test_sandbox_refuses_escapes_and_mutation(engine, attack):
    verdict = engine.validate("probe.sms.j2", sms(attack))
    assert not verdict.ok
    assert "unsafe" in str(verdict.problems[0]) and verdict.problems[0].line == 4


@pytest.mark.parametrize("assignment", [
    "{% set traits.email = 'attacker@example.com' %}",
    "{% set contact.segments = [] %}",
    "{% set x = 'text' %}{% set x.upper = 1 %}",
])
def test_attributes_can_only_be_assigned_on_a_namespace(engine, assignment):
    with pytest.raises(TemplateRenderError, match="cannot assign attribute on non-namespace object"):
        render(engine, "p.sms.j2", sms(assignment + "ok"), traits={"email": "a@example.com"})


def test_formatting_stays_sandboxed_and_ordinary_formatting_works(engine):
    assert render(engine, "p.sms.j2", sms("{{ '{} has {:>3} points'.format('Ada', 42) }}")).text == "Ada has  42 points"


def test_mutation_is_refused_and_the_data_is_untouched(engine):
    traits = {"email": "a@example.com"}
    with pytest.raises(TemplateRenderError, match="unsafe"):
        render(engine, "p.sms.j2", sms("{{ traits.update({'email': 'x'}) }}"), traits=traits)
    assert traits == {"email": "a@example.com"}


def test_no_string_formatting_filter_and_no_generated_text(engine):
    verdict = engine.validate("p.sms.j2", sms("ok\n{{ '%s'|format(cycler) }}"))
    assert problems(verdict) == ["line 5: No filter named 'format'."]
    assert "undefined" in str(engine.validate("p.sms.j2", sms("{{ lipsum(100000) }}")).problems[0])


def test_html_bodies_escape_traits_and_text_channels_do_not(engine):
    hostile = {"first_name": "<script>alert(1)</script>", "city": '"><img src=x onerror=alert(1)>'}
    out = render(engine, "t.html.j2", email("<html><body><p>{{ traits.first_name }}</p>"
                                             "<a title=\"{{ traits.city }}\" href=\"https://a.example\">x</a>"
                                             "</body></html>",
                                             "subject: 'Hi {{ traits.first_name }}'\nkind: transactional\n"),
                 traits=hostile)
    assert "<script>" not in out.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    tags = _tags(out.html)
    assert "img" not in [tag for tag, _ in tags] and "script" not in [tag for tag, _ in tags]
    assert dict(next(attrs for tag, attrs in tags if tag == "a"))["title"] == hostile["city"]  # stayed a value
    assert out.subject == "Hi <script>alert(1)</script>"  # a header is text, not HTML
    assert "<script>alert(1)</script>" in out.text  # the plain-text part shows what was written
    slot = render(engine, "hero.slot.j2", "<p>{{ traits.first_name }}</p>", traits=hostile)
    assert slot.html == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    text = render(engine, "t.sms.j2", sms("Hi {{ traits.first_name }}"), traits={"first_name": "Tom & Jerry"})
    assert text.text == "Hi Tom & Jerry"


def test_strict_undefined_names_the_variable_the_line_and_the_fix(engine):
    source = sms("Hello\n{{ traits.first_name }}")
    with pytest.raises(TemplateRenderError) as caught:
        render(engine, "t.sms.j2", source, traits={})
    assert caught.value.line == 5
    assert "'dict object' has no attribute 'first_name'" in caught.value.message
    assert "default(" in caught.value.message
    assert render(engine, "t.sms.j2", sms("Hello {{ traits.first_name | default('there') }}")).text == "Hello there"


def test_a_header_field_error_points_at_its_front_matter_line(engine):
    source = "---\nkind: transactional\nsubject: 'Hi {{ traits.first_name }}'\n---\n<p>x</p>"
    verdict = engine.validate("t.html.j2", source)
    assert verdict.problems[0].line == 3
    verdict = engine.validate("t.html.j2", "---\nkind: transactional\nsubject: 'Hi {{ x'\n---\n<p>x</p>")
    assert verdict.problems[0].line == 3 and verdict.problems[0].field == "subject"


def test_header_text_is_one_line_whatever_the_traits_hold(engine):
    out = render(engine, "t.html.j2", email("<p>x</p>", "subject: 'Hi {{ traits.n }}'\nkind: transactional\n"),
                 traits={"n": "Ann\r\nBcc: victim@example.com"})
    assert out.subject == "Hi Ann Bcc: victim@example.com"


# ---------------------------------------------------------------- bounded renders


@pytest.mark.parametrize(("bomb", "reason"), [
    ("{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}", "too much work"),
    ("{% for a in traits.many %}{% for b in traits.many %}{% for c in traits.many %}{% endfor %}{% endfor %}"
     "{% endfor %}", "too much work"),
    ("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}", "too much work"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "calls itself"),
    ("{{ range(1000000) | list | length }}", "range() of more than"),
    ("{{ 'a' * 1000000000 }}", "too large"),
    ("{{ [0] * 1000000000 }}", "too large"),
    ("{{ 10 ** 100000 }}", "too large a power"),
    ("{{ '%999999999s' % 1 }}", "'%' formatting"),
    ("{{ '%.*f' % (100000, 1.0) }}", "'%' formatting"),
    ("{{ '%(a)999999999s' % {'a': 1} }}", "'%' formatting"),
    ("{% for i in range(10000) %}{{ traits.nested | length }}{% endfor %}", "too much work"),
    ("{{ '{:>999999999}'.format(1) }}", "format() with a width"),
    ("{{ '{:>{}}'.format(1, 999999999) }}", "format() with a width"),
    ("{{ '{0:.99999f}'.format(1.5) }}", "format() with a width"),
    ("{% set ns = namespace(n=3) %}{% for i in range(8) %}{% set ns.n = ns.n ** 64 %}{% endfor %}{{ ns.n }}",
     "a power this large"),
    ("{{ 'x' | center(1000000000) }}", "wider than"),
    ("{{ 'x\\nx' | indent(1000000000) }}", "wider than"),
    ("{{ range(10) | batch(1000000000, 'x') | list }}", "makes more than"),
    ("{{ range(10) | slice(1000000000) | list }}", "makes more than"),
    ("{{ 'ab' | replace('', 'x' * 200000) }}", "would produce more than"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
     "longer than"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
     "too large"),
    ("{% set ns = namespace(l=[1]) %}{% for i in range(80) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
     "more than 10000 items"),
    ("{% set ns = namespace(l=[1]) %}{% for i in range(80) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}"
     "{{ ns.l | tojson }}", "more than 10000 items"),
    ("{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
     "numbers this large"),
])
def test_runaway_templates_stop_with_a_clear_reason(bomb, reason):
    # A clock that never moves: the step budget and the size caps alone must stop each one.
    engine = TemplateEngine(monotonic=lambda: 0.0, clock=lambda: NOW)
    source = sms(bomb)
    with pytest.raises(TemplateRenderError) as caught:
        render(engine, "bomb.sms.j2", source,
               traits={"many": list(range(1000)), "nested": [{str(k): k for k in range(900)} for _ in range(5)]})
    assert reason in caught.value.message
    assert caught.value.line == 4


def test_output_is_written_through_a_bounded_writer():
    engine = TemplateEngine(limits=RenderLimits(max_output_chars=1000), clock=lambda: NOW)
    with pytest.raises(TemplateRenderError, match="output is longer than 1000 characters"):
        render(engine, "t.sms.j2", sms("{% for i in range(500) %}0123456789{% endfor %}"))
    assert len(render(engine, "t.sms.j2", sms("{% for i in range(90) %}0123456789{% endfor %}")).text) == 900


def test_render_time_is_bounded_by_the_injected_clock():
    ticks = itertools.count(step=0.25)  # every look at the clock is a quarter of a second later
    engine = TemplateEngine(monotonic=lambda: next(ticks), clock=lambda: NOW)
    with pytest.raises(TemplateRenderError, match="rendering took longer than 2 s"):
        render(engine, "t.sms.j2", sms("{% for i in range(100) %}{{ i }}{% endfor %}"))


def test_ordinary_templates_fit_well_inside_the_limits(engine):
    products = [{"name": f"Roast {i}", "price": 5 + i} for i in range(200)]
    source = sms("{% for p in data.products %}{{ p.name | upper }} {{ p.price | currency('EUR') }}"
                 "{{ ', ' if not loop.last }}{% endfor %}")
    out = render(engine, "t.sms.j2", source, data={"products": products})
    assert out.text.startswith("ROAST 0 €5.00, ROAST 1 €6.00") and out.text.endswith("ROAST 199 €204.00")


def test_a_template_larger_than_the_cap_is_refused_before_parsing():
    engine = TemplateEngine(limits=RenderLimits(max_source_chars=100), clock=lambda: NOW)
    verdict = engine.validate("t.sms.j2", sms("x" * 200))
    assert problems(verdict) == ["the template is longer than 100 characters"]


# ---------------------------------------------------------------- front matter


def test_front_matter_problems_name_the_line_and_the_field(engine):
    source = ("---\n"
              "subjet: Hello\n"  # line 2
              "kind: promo\n"  # line 3
              "from: not an address\n"  # line 4
              "---\n<p>x</p>")
    verdict = engine.validate("t.html.j2", source)
    assert problems(verdict) == ['line 2, subjet: unknown field (did you mean "subject"?)']
    source = "---\nsubject: Hello\nkind: promo\nfrom: not an address\ntopic: Big News\n---\n<p>x</p>"
    assert problems(engine.validate("t.html.j2", source)) == [
        "line 3, kind: must be marketing or transactional, got 'promo'",
        "line 5, topic: must be a lower-case name like newsletter or product-news, got 'Big News'",
        "line 4, from: must be an email address like \"Shop <news@shop.example>\", got 'not an address'",
    ]


def test_required_fields_and_the_marketing_topic(engine):
    assert problems(engine.validate("t.html.j2", "<p>x</p>")) == [
        "line 1: missing front matter: start the file with a --- line, then subject, kind, then a --- line"]
    assert problems(engine.validate("t.html.j2", "---\nkind: transactional\n---\nx")) == [
        "line 1, subject: required for a email template"]
    verdict = engine.validate("t.sms.j2", "---\nkind: marketing\n---\nx")
    assert problems(verdict) == [
        "line 2, topic: a marketing message needs a topic (the subscription people opt in or out of)"]
    assert problems(engine.validate("t.sms.j2", "---\nkind: transactional\nsubject: Hi\n---\nx")) == [
        'line 3, subject: unknown field (a sms template knows: topic, kind, description, sample_data)']


def test_yaml_errors_and_an_unclosed_header_point_at_lines(engine):
    assert problems(engine.validate("t.sms.j2", "---\nkind: transactional\ntopic: [a\n---\nx"))[0].startswith("line 3")
    assert problems(engine.validate("t.sms.j2", "---\nkind: transactional\nx")) == [
        "line 1: the front matter starting with --- has no closing --- line"]


def test_a_body_syntax_error_points_at_the_files_line(engine):
    source = email("<p>one</p>\n<p>two</p>\n{% if x %}\n<p>never closed</p>")
    verdict = engine.validate("t.html.j2", source)
    assert verdict.problems[0].line == 8
    assert "endif" in verdict.problems[0].message
    with pytest.raises(TemplateInvalid) as caught:
        engine.compile("t.html.j2", source)
    assert caught.value.verdict.problems == verdict.problems


def test_the_body_keeps_its_own_text_after_the_header(engine):
    out = render(engine, "t.sms.j2", sms("Line one\nLine two"))
    assert out.text == "Line one\nLine two" and out.kind == "transactional" and out.channel == "sms"


# ---------------------------------------------------------------- locale formatting


@pytest.mark.parametrize(("locale", "expected"), [
    ("en-US", "November 3, 2026 · €1,234.50 · 1,234,567.89 · 12% · 12.3%"),
    ("de-DE", "3. November 2026 · 1.234,50\u00a0€ · 1.234.567,89 · 12\u00a0% · 12,3\u00a0%"),
    ("it-IT", "3 novembre 2026 · 1.234,50\u00a0€ · 1.234.567,89 · 12% · 12,3%"),
    ("fr-FR", "3 novembre 2026 · 1\u202f234,50\u00a0€ · 1\u202f234\u202f567,89 · 12\u00a0% · 12,3\u00a0%"),
    ("xx-YY", "November 3, 2026 · €1,234.50 · 1,234,567.89 · 12% · 12.3%"),  # unknown: the default locale
])
def test_dates_numbers_and_currencies_follow_the_contacts_locale(engine, locale, expected):
    source = sms("{{ now | date('long') }} · {{ 1234.5 | currency('EUR') }} · {{ '1234567.891' | number(2) }}"
                 " · {{ 0.123 | percent }} · {{ 0.1234 | percent(1) }}")
    assert render(engine, "t.sms.j2", source, locale=locale).text == expected


@pytest.mark.parametrize(("instant", "zone", "expected"), [
    ("2026-03-29T00:30:00Z", "Europe/Rome", "29/03/26, 01:30"),  # before the spring-forward at 01:00 UTC
    ("2026-03-29T01:30:00Z", "Europe/Rome", "29/03/26, 03:30"),  # after it: an hour later on the wall clock
    ("2026-10-25T00:30:00Z", "Europe/Rome", "25/10/26, 02:30"),  # last summer-time hour
    ("2026-10-25T01:30:00Z", "Europe/Rome", "25/10/26, 02:30"),  # the repeated hour, now in winter time
    ("2026-10-25T23:30:00Z", "Europe/Rome", "26/10/26, 00:30"),  # the next local day
    ("2026-03-08T06:59:00Z", "America/New_York", "08/03/26, 01:59"),
    ("2026-03-08T07:00:00Z", "America/New_York", "08/03/26, 03:00"),
    ("2026-10-25T23:30:00Z", "Mars/Olympus", "25/10/26, 23:30"),  # unknown zone: UTC
])
def test_times_are_shown_in_the_contacts_zone_across_dst(engine, instant, zone, expected):
    out = render(engine, "t.sms.j2", sms("{{ data.at | datetime('short') }}"), locale="it-IT", tz=zone,
                 data={"at": instant})
    assert out.text == expected


def test_the_date_filter_uses_the_contacts_calendar_day(engine):
    source = sms("{{ data.at | date('yyyy-MM-dd') }} {{ '2026-12-24' | date('d MMM') }}")
    at = "2026-10-25T23:30:00Z"
    assert render(engine, "t.sms.j2", source, locale="en", tz="Asia/Tokyo", data={"at": at}).text == \
        "2026-10-26 24 Dec"
    assert render(engine, "t.sms.j2", source, locale="en", tz="America/Los_Angeles", data={"at": at}).text == \
        "2026-10-25 24 Dec"


@pytest.fixture
def machine_in_new_york(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_naive_now_is_taken_as_utc_whatever_the_machines_zone(engine, machine_in_new_york):
    source = sms("{{ now | time('HH:mm') }}")
    assert render(engine, "t.sms.j2", source, tz="Europe/Rome", now=datetime(2026, 11, 3, 9, 0)).text == "10:00"


def test_days_later_and_time(engine):
    source = sms("{{ now | days_later(7) | date('yyyy-MM-dd') }} {{ now | time('HH:mm') }}")
    assert render(engine, "t.sms.j2", source, tz="Europe/Rome").text == "2026-11-10 10:00"


@pytest.mark.parametrize(("expression", "message"), [
    ("{{ 'abc' | currency('EUR') }}", "|currency: expected a number, got 'abc'"),
    ("{{ 5 | currency('euro') }}", "|currency: expected a three-letter currency code, got 'euro'"),
    ("{{ 'soon' | date }}", "|date: 'soon' is not an ISO date or time"),
    ("{{ true | number }}", "|number: expected a number, got True"),
    ("{{ 'nan' | number }}", "|number: expected a finite number, got 'nan'"),
    ("{{ '1e999999' | currency('EUR') }}", "|currency: '1e999999' is out of range"),
])
def test_bad_values_in_locale_filters_are_readable_problems(engine, expression, message):
    verdict = engine.validate("t.sms.j2", sms(expression))
    assert [(p.line, p.message) for p in verdict.problems] == [(4, message)]


# ---------------------------------------------------------------- email output


def test_email_css_is_inlined_responsive_rules_kept_and_remote_sheets_never_fetched(engine):
    source = email(
        "<html><head><link rel=\"stylesheet\" href=\"http://127.0.0.1:9/remote.css\">"
        "<style>p { color: #333 } @media (max-width: 600px) { p { font-size: 18px } }</style></head>"
        "<body><p>Hi</p></body></html>",
        "subject: Hi\npreheader: 'Read me first, {{ traits.n | default(\"you\") }}'\nkind: transactional\n")
    out = render(engine, "t.html.j2", source)
    assert '<p style="color: #333;">Hi</p>' in out.html
    assert "@media (max-width: 600px)" in out.html
    assert "remote.css" not in out.html
    assert out.preheader == "Read me first, you"
    assert out.html.index("Read me first, you") > out.html.index("<body>")
    assert "display:none" in out.html
    assert "Read me first" not in out.text  # the hidden preview text is not part of the message text


def test_plain_text_keeps_structure_and_links():
    html = ("<html><head><title>T</title><style>p{color:red}</style></head><body>"
            "<h1>Welcome</h1><p>Hello&nbsp;<b>Ada</b>,<br>see <a href=\"https://a.example/x?a=1&amp;b=2\">our "
            "roasts</a>.</p><ul><li>One</li><li>Two</li></ul>"
            "<p><a href=\"https://a.example/\">https://a.example/</a> <a href=\"mailto:hi@a.example\">write</a> "
            "<a href=\"#top\">top</a> <a href=\"https://a.example/i\"><img alt=\"Shop\" src=\"x.png\"></a></p>"
            "<script>alert(1)</script></body></html>")
    assert text_from_html(html) == (
        "Welcome\n\nHello Ada,\nsee our roasts (https://a.example/x?a=1&b=2).\n\n- One\n- Two\n\n"
        "https://a.example/ write (hi@a.example) top Shop (https://a.example/i)\n")


# ---------------------------------------------------------------- validation


def test_validation_renders_every_sample_and_names_the_one_that_fails(engine):
    source = sms("Hi {{ traits.first_name }}")  # the samples without a first name fail
    verdict = engine.validate("t.sms.j2", source)
    assert not verdict.ok
    assert verdict.samples_rendered == len(SAMPLES) - 1
    assert [p.sample for p in verdict.problems] == ["email only, no locale"]  # one problem per distinct fault
    assert verdict.to_dict()["problems"][0] == {
        "line": 4, "field": None, "sample": "email only, no locale",
        "message": "'dict object' has no attribute 'first_name'; give it a fallback, e.g. "
                   "{{ traits.first_name | default('there') }}"}


def test_samples_cover_optional_traits_and_several_locales():
    assert {s.locale for s in SAMPLES} >= {None, "en-US", "it-CH", "de-DE"}
    assert any("first_name" not in s.variables["traits"] for s in SAMPLES)


def test_sample_data_in_the_front_matter_feeds_validation(engine):
    source = "---\nkind: transactional\nsample_data:\n  order_id: A-1\n---\nOrder {{ data.order_id }} shipped"
    assert engine.validate("t.sms.j2", source).ok
    assert not engine.validate("t.sms.j2", "---\nkind: transactional\n---\nOrder {{ data.order_id }}").ok


def test_a_marketing_email_must_show_an_unsubscribe_link(engine):
    front = "subject: Hi\nkind: marketing\ntopic: news\n"
    verdict = engine.validate("t.html.j2", email("<p>Buy</p>", front))
    assert verdict.problems[0].message.startswith("a marketing email must show an unsubscribe link")
    assert engine.validate("t.html.j2", email('<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>', front)).ok


@pytest.mark.parametrize("href", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:alert(1)",
                                  "&#106;avascript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=",
                                  "vbscript:msgbox(1)"])
def test_script_links_are_refused_at_validation(engine, href):
    verdict = engine.validate("t.html.j2", email(f'<a href="{href}">x</a>'))
    assert not verdict.ok and "is refused" in verdict.problems[0].message


@pytest.mark.parametrize("markup", ["<script>track()</script>", '<img src="x.png" onerror="steal()">',
                                    "<IFRAME src='https://a.example'></IFRAME>", '<div onclick = "x()">hi</div>'])
def test_on_site_content_may_not_run_code(engine, markup):
    verdict = engine.validate("hero.slot.j2", f"<section>{markup}</section>")
    assert verdict.problems[0].message.startswith("on-site content may not run code")
    assert engine.validate("hero.slot.j2", '<section class="hero"><img src="/a.png" alt="one"></section>').ok


def test_a_preview_uses_a_sample_and_the_templates_sample_data(engine):
    compiled = engine.compile("t.sms.j2", "---\nkind: transactional\nsample_data: {order_id: A-7}\n---\n"
                                          "{{ traits.first_name | default('you') }}: {{ data.order_id }}")
    assert engine.render_sample(compiled).text == "Ada: A-7"
    assert engine.render_sample(compiled, SAMPLES[1]).text == "you: A-7"


def test_an_empty_text_message_is_a_problem(engine):
    assert problems(engine.validate("t.sms.j2", sms("{{ '' }}  "))) == [
        "the sms message is empty (sample full profile, en-US)"]


def test_every_shipped_template_validates():
    engine = TemplateEngine(clock=lambda: NOW)
    files = sorted((ROOT / "templates").glob("*.j2"))
    assert {f.name for f in files} >= {"welcome.html.j2", "welcome.it.html.j2", "coffee-offer.html.j2",
                                       "coffee-offer.sms.j2", "order-shipped.push.j2", "hero.slot.j2"}
    for path in files:
        verdict = engine.validate(path.name, path.read_text(encoding="utf-8"))
        assert verdict.ok, str(verdict)
        assert verdict.samples_rendered == len(SAMPLES)


def test_the_welcome_email_in_italian_for_a_swiss_italian_contact(engine):
    variants = {parse_filename(p.name).locale: p for p in (ROOT / "templates").glob("welcome.*html.j2")}
    chosen = choose_variant(variants, "it-CH")
    assert chosen.name == "welcome.it.html.j2"
    out = render(engine, chosen.name, chosen.read_text(encoding="utf-8"), traits={"first_name": "Giulia"},
                 locale="it-CH", tz="Europe/Zurich")
    assert out.subject == "Benvenuto da Caffè Mercurio, Giulia"
    assert "3 novembre 2026" in out.text and "10 novembre 2026" in out.text
    assert out.kind == "marketing" and out.topic == "newsletter" and out.from_address.endswith("<ciao@shop.example>")
    assert "Annulla l'iscrizione (https://t.example/u/1)" in out.text


def test_the_hero_slot_shows_coffee_lovers_the_coffee_banner(engine):
    # Which variant a visitor sees is chalicelib/definitions/content/hero.yaml's choice
    # (tests/unit/messaging/test_content.py); both variants fill the hero slot.
    read = lambda name: (ROOT / "templates" / name).read_text(encoding="utf-8")  # noqa: E731
    coffee = render(engine, "hero-coffee.slot.j2", read("hero-coffee.slot.j2"),
                    contact={"id": "c1", "segments": ["coffee-lovers"]})
    other = render(engine, "hero.slot.j2", read("hero.slot.j2"), contact={"id": "c2", "segments": []})
    assert "hero--coffee" in coffee.html and "hero--coffee" not in other.html
    assert coffee.slot == other.slot == "hero"
