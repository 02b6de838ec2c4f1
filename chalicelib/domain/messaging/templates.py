"""Message templates written by marketers: parsing, validation and rendering, safely.

A template file is named `{name}[.{locale}].{format}.j2`: `welcome.html.j2` (email, HTML
body), `welcome.it.html.j2` (its Italian variant), `offer.sms.j2`, `back-in-stock.push.j2`,
`hero.slot.j2` (on-site content, an HTML fragment). It starts with a YAML front matter
between `---` lines (subject, preheader, from, reply_to, topic, kind...), then the Jinja2
body.

Templates come from people who are not developers and may come from an upload, so they are
rendered in Jinja2's immutable sandbox with `StrictUndefined`, and every render is bounded:

- the source size is capped;
- every loop iteration, call, attribute lookup and filter spends from a step budget, and the
  wall clock (injected) is checked at each step, so a template that loops "forever" (nested
  loops, recursive macros) stops with a clear error instead of burning a Lambda;
- operators and filters that can build a huge value in one C call (`'a' * n`, `x ** y`,
  `'%999999999s' % x`, `|center(n)`, `|batch(n)`...) are checked before they run, and every
  value printed or produced is checked after (strings and nested containers, walking at most
  a fixed number of nodes, so a shared structure cannot make printing exponential);
- the output goes through a bounded writer.

No thread or signal is needed: every piece of template work passes one of those checks.
What remains unbounded is C work on values that already passed the caps (e.g. sorting a
list of at most `max_items`), which is small by construction.

Variables a template sees (the messaging service builds them; validation uses samples):
`contact` (id, email, phone, locale, timezone, segments, stage, score), `traits`,
`links` (unsubscribe, preferences, view_online), `message` (id, campaign), `data` (the
triggering event's properties), `locale`, `timezone` and `now` (UTC), and `coupon` when the
message carries a personal code (`data.coupon`: a journey send that names a coupon pool).
Locale filters: `date`, `datetime`, `time`, `number`, `currency`, `percent`, and `days_later(n)`
for "offer ends on …" dates.
"""
from __future__ import annotations

import contextvars
import difflib
import functools
import html as html_lib
import re
import string
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from email.utils import parseaddr
from html.parser import HTMLParser
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import babel.dates
import babel.numbers
import css_inline
import yaml
from babel import Locale, UnknownLocaleError
from jinja2 import StrictUndefined, nodes, pass_context
from jinja2.exceptions import TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.runtime import Undefined, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace

from chalicelib.domain.messaging import links as link_rules
from chalicelib.domain.messaging.locales import choose_variant, locale_chain, normalise_locale  # noqa: F401

EMAIL, SMS, PUSH, ONSITE = "email", "sms", "push", "onsite"
MARKETING, TRANSACTIONAL = "marketing", "transactional"
_CHANNEL_OF_FORMAT = {"html": EMAIL, "sms": SMS, "push": PUSH, "slot": ONSITE}
_FILENAME = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9_-]{0,63})"
    r"(?:\.(?P<locale>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*))?"
    r"\.(?P<format>html|sms|push|slot)\.j2$"
)
_TOPIC = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_FIELDS = {
    EMAIL: ("subject", "preheader", "from", "reply_to", "topic", "kind", "description", "sample_data"),
    SMS: ("topic", "kind", "description", "sample_data"),
    PUSH: ("title", "topic", "kind", "description", "sample_data"),
    ONSITE: ("slot", "description", "sample_data"),
}
_REQUIRED = {EMAIL: ("subject", "kind"), SMS: ("kind",), PUSH: ("kind",), ONSITE: ()}
_TEMPLATED_FIELDS = ("subject", "preheader", "title")  # personalised with the same variables
DEFAULT_LOCALE = "en"
UTC = timezone.utc
COUPON = "coupon"  # the message data key of a personal code claimed from a coupon pool


# ---------------------------------------------------------------------------- errors


class TemplateLimitExceeded(SecurityError):
    """A render that does too much work, takes too long or produces too much."""


class TemplateRenderError(Exception):
    """A render that failed; `line` is the template line when it is known."""

    def __init__(self, message: str, line: int | None = None):
        self.message, self.line = message, line
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True)
class Problem:
    message: str
    line: int | None = None
    field: str | None = None
    sample: str | None = None

    def __str__(self) -> str:
        place = ", ".join(p for p in (f"line {self.line}" if self.line else "", self.field or "") if p)
        where = f" (sample {self.sample})" if self.sample else ""
        return f"{place}: {self.message}{where}" if place else f"{self.message}{where}"

    def to_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "sample": self.sample, "message": self.message}


@dataclass(frozen=True)
class Verdict:
    """The outcome of validating an upload: `ok`, or every problem found, with line numbers."""

    name: str
    problems: tuple[Problem, ...] = ()
    samples_rendered: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"{self.name}: valid (rendered for {self.samples_rendered} sample contacts)"
        return f"{self.name}: " + "; ".join(str(p) for p in self.problems)

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "samples_rendered": self.samples_rendered,
                "problems": [p.to_dict() for p in self.problems]}


class TemplateInvalid(ValueError):
    def __init__(self, verdict: Verdict):
        self.verdict = verdict
        super().__init__(str(verdict))


# ---------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class RenderLimits:
    max_source_chars: int = 256 * 1024
    max_output_chars: int = 512 * 1024  # Gmail clips at ~100 KB; this is a hard stop, not advice
    max_value_chars: int = 256 * 1024  # any single string a template builds
    max_items: int = 10_000  # ranges, lists and nested structures a template builds or prints
    max_steps: int = 100_000  # loop iterations + calls + attribute lookups + filter work
    max_seconds: float = 2.0


class _Budget:
    def __init__(self, limits: RenderLimits, monotonic: Callable[[], float]):
        self.limits, self.monotonic = limits, monotonic
        self.steps = limits.max_steps
        self.deadline = monotonic() + limits.max_seconds

    def spend(self, n: int = 1) -> None:
        self.steps -= n
        if self.steps < 0:
            raise TemplateLimitExceeded(
                f"the template does too much work (more than {self.limits.max_steps} loop iterations, "
                "calls and filter steps); check for nested loops or recursive macros")
        if self.monotonic() > self.deadline:
            raise TemplateLimitExceeded(f"rendering took longer than {self.limits.max_seconds:g} s")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("template_render_budget", default=None)


def _active_limits() -> RenderLimits:
    budget = _BUDGET.get()
    return budget.limits if budget else RenderLimits()


def _spend(n: int = 1) -> None:
    budget = _BUDGET.get()
    if budget is not None:  # constant folding at compile time runs without a budget: O(1) lookups only
        budget.spend(n)


def _check_value(value: object, what: str) -> object:
    """Refuse a string or a (possibly shared, nested) structure larger than the caps.

    The walk visits at most `max_items` nodes, so checking a structure that shares itself
    exponentially (`[a, a]` nested 60 times) costs no more than checking a small one."""
    limits = _active_limits()
    if isinstance(value, str):
        if len(value) > limits.max_value_chars:
            raise TemplateLimitExceeded(f"{what} is longer than {limits.max_value_chars} characters")
        return value
    if isinstance(value, (int, float, bool, type(None), Undefined)):
        return value
    stack, visited, chars = [value], 0, 0
    while stack:
        item = stack.pop()
        visited += 1
        if visited > limits.max_items:
            raise TemplateLimitExceeded(f"{what} holds more than {limits.max_items} items")
        if isinstance(item, str):
            chars += len(item)
            if chars > limits.max_value_chars:
                raise TemplateLimitExceeded(f"{what} holds more than {limits.max_value_chars} characters")
        elif isinstance(item, (list, tuple, set, frozenset)):
            if len(item) > limits.max_items:
                raise TemplateLimitExceeded(f"{what} holds more than {limits.max_items} items")
            stack.extend(item)
        elif isinstance(item, Mapping):
            if len(item) > limits.max_items:
                raise TemplateLimitExceeded(f"{what} holds more than {limits.max_items} items")
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Namespace):
            stack.append(dict(object.__getattribute__(item, "_Namespace__attrs")))
    _spend(visited // 16)  # walking a big structure is work too, even when it passes
    return value


def _work_of(value: object) -> int:
    """Steps a filter spends: proportional to the size of what it walks over."""
    if isinstance(value, str):
        return 1 + len(value) // 256
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return 1 + len(value)
    return 1


# ---------------------------------------------------------------------------- sandbox

_ITER_FILTER = "_budgeted_iter"
_CONCAT_FILTER = "_bounded_concat"
_WIDTH_ARGS = {"center": "width", "indent": "width", "wordwrap": "width", "truncate": "length"}
_COUNT_ARGS = {"batch": "linecount", "slice": "slices"}
_DROPPED_FILTERS = ("format", "random", "pprint")  # printf formatting has its own bombs; random breaks previews
_FORMAT_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d{4,}|\d*\.(?:\*|\d{4,}))")


def _argument(args: tuple, kwargs: dict, index: int, name: str) -> object:
    return args[index] if len(args) > index else kwargs.get(name)


def _precheck_filter(name: str, value: object, args: tuple, kwargs: dict) -> None:
    limits = _active_limits()
    if name in _WIDTH_ARGS:
        width = _argument(args, kwargs, 0, _WIDTH_ARGS[name])
        if isinstance(width, int) and width > limits.max_value_chars:
            raise TemplateLimitExceeded(f"|{name}({width}) is wider than {limits.max_value_chars} characters")
        if isinstance(width, str) and len(width) * max(1, str(value).count("\n") + 1) > limits.max_value_chars:
            raise TemplateLimitExceeded(f"|{name} would produce more than {limits.max_value_chars} characters")
    if name in _COUNT_ARGS:
        count = _argument(args, kwargs, 0, _COUNT_ARGS[name])
        if isinstance(count, int) and count > limits.max_items:
            raise TemplateLimitExceeded(f"|{name}({count}) makes more than {limits.max_items} items")
    if name == "replace" and isinstance(value, str):
        old, new = _argument(args, kwargs, 0, "old"), _argument(args, kwargs, 1, "new")
        if isinstance(old, str) and isinstance(new, str):
            hits = len(value) + 1 if old == "" else value.count(old)
            if len(value) + hits * len(new) > limits.max_value_chars:
                raise TemplateLimitExceeded(f"|replace would produce more than {limits.max_value_chars} characters")


def _guarded(name: str, func: Callable) -> Callable:
    """A filter that spends from the budget and checks what it is given and what it makes.

    Guarded filters take the context, which also stops Jinja from running them at compile
    time (constant folding) outside any budget."""
    pass_arg = getattr(getattr(func, "jinja_pass_arg", None), "name", None)

    @pass_context
    @functools.wraps(func)
    def guarded(context, value, *args, **kwargs):
        _check_value(value, f"the value given to |{name}")
        _precheck_filter(name, value, args, kwargs)
        _spend(_work_of(value))
        if pass_arg == "context":
            result = func(context, value, *args, **kwargs)
        elif pass_arg == "eval_context":
            result = func(context.eval_ctx, value, *args, **kwargs)
        elif pass_arg == "environment":
            result = func(context.environment, value, *args, **kwargs)
        else:
            result = func(value, *args, **kwargs)
        return _check_value(result, f"the result of |{name}")

    return guarded


@pass_context
def _budgeted_iter(context, iterable):
    if isinstance(iterable, Undefined):
        return iterable  # iterating it raises the StrictUndefined error with the variable's name
    if isinstance(iterable, (list, tuple, dict)):
        _check_value(iterable, "a loop's sequence")

    def spend_each():
        for item in iterable:
            _spend(1)
            yield item

    return spend_each()


@pass_context
def _bounded_concat(context, parts):
    for part in parts:
        _check_value(part, "a value joined with ~")
    _spend(len(parts))
    joined = markup_join(parts) if context.eval_ctx.autoescape else str_join(parts)
    return _check_value(joined, "a text joined with ~")


def _bounded_range(*args: int) -> range:
    limits = _active_limits()
    numbers = range(*args)
    if len(numbers) > limits.max_items:
        raise TemplateLimitExceeded(f"range() of more than {limits.max_items} numbers")
    return numbers


class MarketingSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with every unit of work metered (see the module's doc)."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name) and (name.endswith(".html.j2") or name.endswith(".slot.j2")),
            finalize=lambda value: _check_value(value, "a printed value"),
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.globals.pop("lipsum", None)  # generates arbitrary amounts of text
        self.globals["range"] = _bounded_range
        for name in _DROPPED_FILTERS:
            self.filters.pop(name, None)
        self.filters.update(locale_filters())
        self.filters = {name: _guarded(name, func) for name, func in self.filters.items()}
        self.filters[_ITER_FILTER] = _budgeted_iter
        self.filters[_CONCAT_FILTER] = _bounded_concat

    # Every loop and every `~` goes through a metered filter: rewritten once, at parse time.
    def _parse(self, source, name, filename):
        tree = super()._parse(source, name, filename)
        _meter(tree)
        tree.set_environment(self)
        return tree

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's own signature
        _spend(1)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj, attribute):
        _spend(1)
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        _spend(1)
        return super().getitem(obj, argument)

    def wrap_str_format(self, value):
        """`'...'.format(...)` stays sandboxed (Jinja's own wrapper) and may not pad to a
        huge width: `'{:>999999999}'.format(1)` is one C call that builds a gigabyte."""
        sandboxed = super().wrap_str_format(value)
        if sandboxed is None:
            return None
        for _, _, spec, _ in string.Formatter().parse(value.__self__):
            if spec and ("{" in spec or re.search(r"\d{4,}", spec)):
                raise TemplateLimitExceeded("format() with a width or precision of 1000 or more, or a nested "
                                            "field in the format spec, is not allowed")

        @functools.wraps(sandboxed)
        def bounded(*args, **kwargs):
            _spend(1)
            return _check_value(sandboxed(*args, **kwargs), "the result of format()")

        return bounded

    def call_binop(self, context, operator, left, right):
        _spend(1)
        limits = _active_limits()
        if operator == "**" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
            if abs(right) > 64 and abs(left) > 1:
                raise TemplateLimitExceeded(f"{left!r} ** {right!r} is too large a power")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > 4096:
                raise TemplateLimitExceeded("a power this large is not allowed")
        if operator == "*":
            sized, times = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
            if isinstance(sized, (str, list, tuple)) and isinstance(times, int):
                cap = limits.max_value_chars if isinstance(sized, str) else limits.max_items
                if len(sized) * times > cap:
                    raise TemplateLimitExceeded(f"repeating a value {times} times makes it too large")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > 4096:
                raise TemplateLimitExceeded("multiplying numbers this large is not allowed")
        if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            cap = limits.max_value_chars if isinstance(left, str) else limits.max_items
            if len(left) + len(right) > cap:
                raise TemplateLimitExceeded("adding these values makes a value too large")
        if operator == "%" and isinstance(left, str) and _FORMAT_WIDTH.search(left):
            raise TemplateLimitExceeded("'%' formatting with a width or precision of 1000 or more, or '*', is not allowed")
        return _check_value(super().call_binop(context, operator, left, right), f"the result of '{operator}'")


def _meter(node: nodes.Node) -> nodes.Node:
    for name in node.fields:
        value = getattr(node, name, None)
        if isinstance(value, nodes.Node):
            setattr(node, name, _meter(value))
        elif isinstance(value, list):
            setattr(node, name, [_meter(v) if isinstance(v, nodes.Node) else v for v in value])
    if isinstance(node, nodes.For):
        node.iter = nodes.Filter(node.iter, _ITER_FILTER, [], [], None, None, lineno=node.lineno)
    if isinstance(node, nodes.Concat):
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), _CONCAT_FILTER, [], [], None, None,
                            lineno=node.lineno)
    return node


# ---------------------------------------------------------------------------- locale


@functools.lru_cache(maxsize=256)
def _babel_locale(tag: str | None) -> Locale:
    for candidate in locale_chain(tag):
        if candidate is None:
            break
        try:
            return Locale.parse(candidate, sep="-")
        except (ValueError, UnknownLocaleError):
            continue
    return Locale.parse(DEFAULT_LOCALE)


def _zone(name: object) -> ZoneInfo:
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def _instant(value: object, filter_name: str) -> datetime | date:
    if isinstance(value, (datetime, date)):
        found = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            found = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise TemplateRenderError(f"|{filter_name}: {value!r} is not an ISO date or time") from None
    else:
        raise TemplateRenderError(f"|{filter_name}: expected a date or time, got {value!r}")
    if isinstance(found, datetime) and found.tzinfo is None:
        found = found.replace(tzinfo=timezone.utc)  # stored times are UTC
    return found


def _number(value: object, filter_name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise TemplateRenderError(f"|{filter_name}: expected a number, got {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise TemplateRenderError(f"|{filter_name}: expected a number, got {value!r}") from None
    if not number.is_finite():
        raise TemplateRenderError(f"|{filter_name}: expected a finite number, got {value!r}")
    if number and not -30 <= number.adjusted() <= 30:  # 1e999999 would print a million digits
        raise TemplateRenderError(f"|{filter_name}: {value!r} is out of range")
    return number


def locale_filters() -> dict[str, Callable]:
    """Dates in the contact's time zone and numbers in the contact's locale (Babel/CLDR)."""

    @pass_context
    def date_filter(context, value, format="medium"):
        moment = _instant(value, "date")
        if isinstance(moment, datetime):  # the contact's calendar day, not UTC's
            moment = moment.astimezone(_zone(context.get("timezone"))).date()
        return babel.dates.format_date(moment, format=format, locale=_babel_locale(context.get("locale")))

    @pass_context
    def datetime_filter(context, value, format="medium"):
        moment = _instant(value, "datetime")
        if not isinstance(moment, datetime):
            moment = datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)
        return babel.dates.format_datetime(moment, format=format, tzinfo=_zone(context.get("timezone")),
                                           locale=_babel_locale(context.get("locale")))

    @pass_context
    def time_filter(context, value, format="short"):
        moment = _instant(value, "time")
        if not isinstance(moment, datetime):
            raise TemplateRenderError(f"|time: {value!r} has no time of day")
        return babel.dates.format_time(moment, format=format, tzinfo=_zone(context.get("timezone")),
                                       locale=_babel_locale(context.get("locale")))

    @pass_context
    def number_filter(context, value, decimals=None):
        number = _number(value, "number")
        pattern = None
        if decimals is not None:
            if not isinstance(decimals, int) or not 0 <= decimals <= 10:
                raise TemplateRenderError(f"|number: decimals must be a whole number from 0 to 10, got {decimals!r}")
            pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
        return babel.numbers.format_decimal(number, format=pattern, locale=_babel_locale(context.get("locale")))

    @pass_context
    def currency_filter(context, value, currency):
        number = _number(value, "currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise TemplateRenderError(f"|currency: expected a three-letter currency code, got {currency!r}")
        return babel.numbers.format_currency(number, currency.upper(), locale=_babel_locale(context.get("locale")))

    @pass_context
    def percent_filter(context, value, decimals=0):
        number = _number(value, "percent")
        locale = _babel_locale(context.get("locale"))
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 10:
            raise TemplateRenderError(f"|percent: decimals must be a whole number from 0 to 10, got {decimals!r}")
        if decimals:  # the locale's own pattern (spacing, sign position) with more fraction digits
            pattern = re.sub(r"0(?=[^0-9#.]*%)", "0." + "0" * decimals, locale.percent_formats[None].pattern, count=1)
            return babel.numbers.format_percent(number, format=pattern, locale=locale)
        return babel.numbers.format_percent(number, locale=locale)

    def days_later(value, days):
        moment = _instant(value, "days_later")
        if isinstance(days, bool) or not isinstance(days, int) or not -3660 <= days <= 3660:
            raise TemplateRenderError(f"|days_later: expected a whole number of days, got {days!r}")
        return moment + timedelta(days=days)

    return {"date": date_filter, "datetime": datetime_filter, "time": time_filter, "number": number_filter,
            "currency": currency_filter, "percent": percent_filter, "days_later": days_later}


# ---------------------------------------------------------------------------- HTML → text


class _TextFromHtml(HTMLParser):
    _BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "ul", "ol", "section",
               "article", "header", "footer", "blockquote", "hr", "center", "main", "nav"}
    _SKIPPED = {"style", "script", "head", "title", "template", "noscript"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.links: list[tuple[int, str]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in self._SKIPPED:
            self.skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n\n" if tag in {"p", "h1", "h2", "h3", "table", "ul", "ol", "blockquote"} else "\n")
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "td":
            self.parts.append(" ")
        elif tag == "a":
            self.links.append((len(self.parts), (attributes.get("href") or "").strip()))
        elif tag == "img" and self.links and attributes.get("alt"):
            self.parts.append(attributes["alt"])

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in self._SKIPPED:
            self.skipping -= 1

    def handle_endtag(self, tag):
        if tag in self._SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        elif tag == "a" and self.links:
            start, href = self.links.pop()
            label = re.sub(r"\s+", " ", "".join(self.parts[start:])).strip()
            target = href[7:] if href.lower().startswith("mailto:") else href
            if href and not href.startswith("#") and re.match(r"(?i)(https?|mailto):", href) and label != target:
                self.parts.append(f" ({target})" if label else target)

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = [line.strip() for line in "".join(self.parts).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def text_from_html(html: str) -> str:
    """The plain-text part of an email: paragraphs kept, links written as `text (url)`."""
    parser = _TextFromHtml()
    parser.feed(html)
    parser.close()
    return parser.text()


_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def inline_css(html: str) -> str:
    """Styles moved onto the elements (mail clients drop <style>), media queries kept for
    responsive layouts; remote stylesheets are never fetched at render time."""
    return _INLINER.inline(html)


def _with_preheader(html: str, preheader: str) -> str:
    hidden = ('<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
              f"{html_lib.escape(preheader)}</div>")
    match = re.search(r"<body\b[^>]*>", html, re.I)
    return html[:match.end()] + hidden + html[match.end():] if match else hidden + html


# ---------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class FrontMatter:
    fields: dict
    lines: dict  # field -> line number in the file
    body_line: int  # number of file lines before the body


@dataclass(frozen=True)
class Rendered:
    """What a template produced for one contact; which fields are set depends on the channel."""

    channel: str
    kind: str | None
    topic: str | None
    html: str | None = None  # email (CSS inlined, preheader included) or on-site fragment
    text: str | None = None  # email plain-text part, SMS body, push body
    subject: str | None = None
    preheader: str | None = None
    title: str | None = None  # push
    from_address: str | None = None
    reply_to: str | None = None
    slot: str | None = None


def coupon_variable(data: Mapping) -> dict:
    """`coupon` for the template when the message data carries a personal code; a template
    that prints `{{ coupon }}` without one fails like any missing value."""
    code = data.get(COUPON) if isinstance(data, Mapping) else None
    return {"coupon": code} if isinstance(code, str) and code else {}


@dataclass(frozen=True)
class Sample:
    """A made-up contact that every upload is rendered for before it is accepted."""

    name: str
    variables: dict
    locale: str | None
    timezone: str | None


def _sample(name, contact_id, traits, locale, tz, segments=()):
    return Sample(name=name, locale=locale, timezone=tz, variables={
        "contact": {"id": contact_id, "email": traits.get("email"), "phone": traits.get("phone"), "locale": locale,
                    "timezone": tz, "segments": list(segments), "stage": None, "score": 0},
        "traits": traits,
        "links": {"unsubscribe": f"https://mercurio.example/u/sample-{contact_id}",
                  "preferences": f"https://mercurio.example/p/sample-{contact_id}",
                  "view_online": f"https://mercurio.example/v/sample-{contact_id}"},
        "message": {"id": f"msg-sample-{contact_id}", "campaign": None},
        "data": {},
    })


SAMPLES: tuple[Sample, ...] = (
    _sample("full profile, en-US", "c-sample-1",
            {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "phone": "+12025550143",
             "city": "New York", "favourite_category": "coffee"},
            "en-US", "America/New_York", ("coffee-lovers",)),
    _sample("email only, no locale", "c-sample-2", {"email": "someone@example.com"}, None, None),
    _sample("it-CH, Zurich", "c-sample-3",
            {"email": "giulia@example.ch", "first_name": "Giulia", "city": "Lugano"}, "it-CH", "Europe/Zurich"),
    _sample("de-DE, Berlin, special characters", "c-sample-4",
            {"email": "jürgen@example.de", "first_name": "Jürgen <b>&amp;</b> \"Söhne\"", "city": "Berlin"},
            "de-DE", "Europe/Berlin"),
    _sample("ja-JP, Tokyo", "c-sample-5", {"email": "hanako@example.jp", "first_name": "花子"}, "ja-JP", "Asia/Tokyo"),
)


@dataclass(frozen=True)
class TemplateName:
    name: str
    locale: str | None
    format: str

    @property
    def channel(self) -> str:
        return _CHANNEL_OF_FORMAT[self.format]


def parse_filename(filename: str) -> TemplateName:
    match = _FILENAME.match(filename or "")
    if not match:
        raise ValueError(
            f"{filename!r} is not a template file name: write name[.locale].format.j2 with a format of "
            "html (email), sms, push or slot (on-site), e.g. welcome.html.j2 or welcome.it.html.j2")
    locale = match["locale"]
    if locale and not normalise_locale(locale):
        raise ValueError(f"{filename!r}: {locale!r} is not a locale")
    return TemplateName(match["name"], normalise_locale(locale), match["format"])


def _split_front_matter(source: str, channel: str, problems: list[Problem]) -> tuple[FrontMatter, str]:
    lines = source.split("\n")
    if not lines or lines[0].strip() != "---":
        if _REQUIRED[channel]:
            problems.append(Problem(f"missing front matter: start the file with a --- line, then "
                                    f"{', '.join(_REQUIRED[channel])}, then a --- line", line=1))
        return FrontMatter({}, {}, 0), source
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        problems.append(Problem("the front matter starting with --- has no closing --- line", line=1))
        return FrontMatter({}, {}, 0), ""
    header = "\n".join(lines[1:end])
    body = "\n" * (end + 1) + "\n".join(lines[end + 1:])  # keeps the body's line numbers those of the file
    fields, field_lines = _read_front_matter(header, channel, problems)
    return FrontMatter(fields, field_lines, end + 1), body


def _read_front_matter(header: str, channel: str, problems: list[Problem]) -> tuple[dict, dict]:
    try:
        node = yaml.compose(header, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem(f"front matter is not valid YAML ({getattr(exc, 'problem', exc)})",
                                line=mark.line + 2 if mark else 2))
        return {}, {}
    if node is None:
        node = yaml.MappingNode("tag:yaml.org,2002:map", [])
    if not isinstance(node, yaml.MappingNode):
        problems.append(Problem("front matter must be `field: value` lines", line=node.start_mark.line + 2))
        return {}, {}
    fields: dict = {}
    lines: dict = {}
    allowed = _FIELDS[channel]
    loader_problems = len(problems)
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        line = key_node.start_mark.line + 2
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (a {channel} template knows: {', '.join(allowed)})"
            problems.append(Problem(f"unknown field{hint}", line=line, field=str(key)))
            continue
        if key in fields:
            problems.append(Problem("appears twice", line=line, field=key))
            continue
        try:
            fields[key] = yaml.SafeLoader(yaml.serialize(value_node)).get_single_data()
        except yaml.YAMLError as exc:
            problems.append(Problem(f"unreadable value ({exc})", line=line, field=key))
            continue
        lines[key] = line
    if len(problems) == loader_problems:
        _check_fields(fields, lines, channel, problems)
    return fields, lines


def _check_fields(fields: dict, lines: dict, channel: str, problems: list[Problem]) -> None:
    for key in _REQUIRED[channel]:
        if key not in fields:
            problems.append(Problem(f"required for a {channel} template", line=1, field=key))
    for key in ("subject", "preheader", "title", "description", "slot"):
        if key in fields and not (isinstance(fields[key], str) and fields[key].strip()):
            problems.append(Problem("must be a non-empty text", line=lines[key], field=key))
    kind = fields.get("kind")
    if "kind" in fields and kind not in (MARKETING, TRANSACTIONAL):
        problems.append(Problem(f"must be marketing or transactional, got {kind!r}", line=lines["kind"], field="kind"))
    if kind == MARKETING and "topic" not in fields:
        problems.append(Problem("a marketing message needs a topic (the subscription people opt in or out of)",
                                line=lines["kind"], field="topic"))
    if "topic" in fields and not (isinstance(fields["topic"], str) and _TOPIC.match(fields["topic"])):
        problems.append(Problem(f"must be a lower-case name like newsletter or product-news, got {fields['topic']!r}",
                                line=lines["topic"], field="topic"))
    for key in ("from", "reply_to"):
        if key in fields:
            value = fields[key]
            address = parseaddr(value)[1] if isinstance(value, str) and "\n" not in value else ""
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
                problems.append(Problem(f"must be an email address like \"Shop <news@shop.example>\", got {value!r}",
                                        line=lines[key], field=key))
    if "sample_data" in fields and not isinstance(fields["sample_data"], dict):
        problems.append(Problem("must be a mapping of example event properties", line=lines["sample_data"],
                                field="sample_data"))


def _error_line(exc: BaseException, filename: str) -> int | None:
    """The deepest template line in a (Jinja-rewritten) traceback."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UndefinedError):
        return f"{exc.message}; give it a fallback, e.g. {{{{ traits.first_name | default('there') }}}}"
    if isinstance(exc, TemplateRenderError):
        return exc.message
    if isinstance(exc, (TemplateError, SecurityError)):
        return str(exc.message if getattr(exc, "message", None) else exc)
    if isinstance(exc, RecursionError):
        return "a macro calls itself without end"
    return f"{type(exc).__name__}: {exc}"


class CompiledTemplate:
    """One template file, compiled once (cache it by the stored object's version)."""

    def __init__(self, engine: TemplateEngine, filename: str, name: TemplateName, front: FrontMatter, body, headers):
        self.engine, self.filename, self.name, self.front = engine, filename, name, front
        self._body, self._headers = body, headers

    @property
    def channel(self) -> str:
        return self.name.channel

    @property
    def kind(self) -> str | None:
        return self.front.fields.get("kind")

    @property
    def topic(self) -> str | None:
        return self.front.fields.get("topic")

    @property
    def sample_data(self) -> dict:
        return dict(self.front.fields.get("sample_data") or {})

    def render(self, variables: Mapping, *, locale: str | None, timezone: str | None, now: datetime) -> Rendered:
        """Render for one contact; raises TemplateRenderError (with the line) on any failure."""
        limits = self.engine.limits
        context = dict(variables)
        context.update(locale=normalise_locale(locale), timezone=timezone,
                       now=now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC))
        token = _BUDGET.set(_Budget(limits, self.engine.monotonic))
        try:
            body = self._run(self._body, context, limits.max_output_chars, self.front.body_line)
            headers = {key: re.sub(r"\s+", " ", self._run(tmpl, context, 2000, 0)).strip()
                       for key, tmpl in self._headers.items()}
        except Exception as exc:  # noqa: BLE001 - any failure in marketer code becomes a readable verdict
            header = _header_of(exc)
            line = self.front.lines.get(header) if header else _error_line(exc, self.filename)
            raise TemplateRenderError(_describe(exc), line) from None
        finally:
            _BUDGET.reset(token)
        return self._assemble(body, headers)

    def _run(self, template, context: dict, cap: int, skip_newlines: int) -> str:
        out: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > cap:
                raise TemplateLimitExceeded(f"the output is longer than {cap} characters")
            out.append(chunk)
        text = "".join(out)
        return text[skip_newlines:] if text.startswith("\n" * skip_newlines) else text

    def _assemble(self, body: str, headers: dict) -> Rendered:
        fields = self.front.fields
        common = dict(channel=self.channel, kind=fields.get("kind"), topic=fields.get("topic"))
        if self.channel == EMAIL:
            try:
                inlined = inline_css(body)
            except (css_inline.InlineError, ValueError) as exc:
                raise TemplateRenderError(f"the HTML cannot be prepared for email: {exc}") from None
            preheader = headers.get("preheader")
            return Rendered(**common, html=_with_preheader(inlined, preheader) if preheader else inlined,
                            text=text_from_html(body), subject=headers["subject"], preheader=preheader,
                            from_address=fields.get("from"), reply_to=fields.get("reply_to"))
        if self.channel == ONSITE:
            return Rendered(**common, html=body.strip(), slot=fields.get("slot") or self.name.name)
        text = body.strip()
        if not text:
            raise TemplateRenderError(f"the {self.channel} message is empty")
        return Rendered(**common, text=text, title=headers.get("title"))


def _header_of(exc: BaseException) -> str | None:
    return getattr(exc, "_mercurio_header", None)


class TemplateEngine:
    """Compiles and validates templates in one metered sandbox.

    `monotonic` bounds render time and `clock` gives `now` to validation renders; both are
    injected so tests control them."""

    def __init__(self, *, limits: RenderLimits | None = None, monotonic: Callable[[], float] = time.monotonic,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 samples: Sequence[Sample] = SAMPLES):
        self.limits = limits or RenderLimits()
        self.monotonic, self.clock, self.samples = monotonic, clock, tuple(samples)
        self.sandbox = MarketingSandbox()

    def compile(self, filename: str, source: str) -> CompiledTemplate:
        """Parse and compile; raises TemplateInvalid with every problem found (no sample renders)."""
        compiled, problems = self._compile(filename, source)
        if compiled is None:
            raise TemplateInvalid(Verdict(filename, tuple(problems)))
        return compiled

    def _compile(self, filename: str, source: str) -> tuple[CompiledTemplate | None, list[Problem]]:
        problems: list[Problem] = []
        try:
            name = parse_filename(filename)
        except ValueError as exc:
            return None, [Problem(str(exc), field="name")]
        if not isinstance(source, str):
            return None, [Problem("a template is UTF-8 text")]
        if len(source) > self.limits.max_source_chars:
            return None, [Problem(f"the template is longer than {self.limits.max_source_chars} characters")]
        source = source.lstrip("\ufeff").replace("\r\n", "\n")
        front, body_source = _split_front_matter(source, name.channel, problems)
        if problems:
            return None, problems
        body = self._template(body_source, filename, problems)
        headers = {}
        for key in _TEMPLATED_FIELDS:
            if key in front.fields:
                tmpl = self._template(front.fields[key], f"{filename}#{key}", problems,
                                      line=front.lines[key], field=key)
                headers[key] = tmpl
        if problems or body is None:
            return None, problems
        return CompiledTemplate(self, filename, name, front, body, headers), []

    def _template(self, source: str, filename: str, problems: list[Problem], line: int | None = None,
                  field: str | None = None):
        try:
            code = self.sandbox.compile(source, name=filename, filename=filename)
        except TemplateSyntaxError as exc:
            problems.append(Problem(exc.message or str(exc), line=line or exc.lineno, field=field))
            return None
        template = self.sandbox.template_class.from_code(self.sandbox, code, self.sandbox.make_globals(None))
        if field:
            template = _HeaderTemplate(template, field)
        return template

    def render_sample(self, compiled: CompiledTemplate, sample: Sample | None = None) -> Rendered:
        """A preview without a real contact: a sample, with the template's own `sample_data`."""
        sample = sample or self.samples[0]
        variables = dict(sample.variables, data=compiled.sample_data, **coupon_variable(compiled.sample_data))
        return compiled.render(variables, locale=sample.locale, timezone=sample.timezone, now=self.clock())

    def validate(self, filename: str, source: str) -> Verdict:
        """Parse, then render for every sample contact: the verdict a store checks before it
        replaces the last good version."""
        compiled, problems = self._compile(filename, source)
        if compiled is None:
            return Verdict(filename, _unique(problems))
        rendered = 0
        for sample in self.samples:
            try:
                result = self.render_sample(compiled, sample)
            except TemplateRenderError as exc:
                problems.append(Problem(exc.message, line=exc.line, sample=sample.name))
                continue
            rendered += 1
            problems.extend(Problem(p, sample=sample.name) for p in _content_problems(compiled, result, sample))
        return Verdict(filename, _unique(problems), rendered)


class _HeaderTemplate:
    """A personalised front-matter field: its errors point at the field's line."""

    def __init__(self, template, field_name: str):
        self.template, self.field = template, field_name

    def generate(self, context):
        try:
            yield from self.template.generate(context)
        except Exception as exc:
            exc._mercurio_header = self.field
            raise


_ACTIVE_MARKUP = re.compile(r"<\s*(script|iframe|object|embed)\b|\son[a-z]+\s*=", re.I)


def _content_problems(compiled: CompiledTemplate, result: Rendered, sample: Sample) -> list[str]:
    found = []
    if result.html:
        found += [f"link {href!r} is refused: only http(s), mailto: and #anchors are allowed"
                  for href in link_rules.unsafe_links(result.html)]
    if compiled.channel == ONSITE and _ACTIVE_MARKUP.search(result.html or ""):
        # Slot content is inserted into the site's pages: it may show, never run, anything.
        found.append(f"on-site content may not run code ({_ACTIVE_MARKUP.search(result.html).group(0).strip()!r}): "
                     "use plain HTML and CSS")
    if compiled.channel == EMAIL and compiled.kind == MARKETING:
        unsubscribe = sample.variables["links"]["unsubscribe"]
        if unsubscribe not in (result.html or ""):
            found.append("a marketing email must show an unsubscribe link: add "
                         "<a href=\"{{ links.unsubscribe }}\">Unsubscribe</a>")
    return found


def _unique(problems: Iterable[Problem]) -> tuple[Problem, ...]:
    seen, out = set(), []
    for problem in problems:
        key = (problem.line, problem.field, problem.message)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return tuple(out)


_DEFAULT_ENGINE: TemplateEngine | None = None


def validate(name: str, source: str) -> Verdict:
    """Validate an upload with the default limits and samples (see TemplateEngine.validate)."""
    global _DEFAULT_ENGINE
    if _DEFAULT_ENGINE is None:
        _DEFAULT_ENGINE = TemplateEngine()
    return _DEFAULT_ENGINE.validate(name, source)


__all__ = [
    "EMAIL", "SMS", "PUSH", "ONSITE", "MARKETING", "TRANSACTIONAL", "CompiledTemplate", "Problem", "RenderLimits",
    "Rendered", "SAMPLES", "Sample", "TemplateEngine", "TemplateInvalid", "TemplateLimitExceeded",
    "TemplateRenderError", "Verdict", "choose_variant", "locale_chain", "normalise_locale", "parse_filename",
    "text_from_html", "validate",
]
