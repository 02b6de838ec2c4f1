"""Broadcasts: a one-off message to a segment, as a marketer writes it, and who gets what when.

    name: December coffee promotion
    segment: coffee-lovers          # its members are snapshotted at launch
    channel: email                  # email, sms or push
    template: coffee-offer          # the template's name; each contact gets their locale's variant
    send_at: 2026-12-10T09:00:00Z   # one moment for everyone, or
    local_time: {date: 2026-12-10, time: "09:00"}   # 09:00 in each contact's own time zone
    not_after: 2026-12-12T00:00:00Z # optional: whoever the policy gate holds past this is skipped
    campaign: promo-12              # optional: the campaign whose report sorts the recipients
    experiment:                     # optional A/B test with a holdout
      arms:
        a: {percent: 45, template: coffee-offer}
        b: {percent: 45, template: coffee-offer-bold}
        holdout: 10                 # receives nothing: the campaign's lift is measured against it
      metric: clicked               # opened, clicked or converted
      test_percent: 20              # optional: only 20 % take part; the rest get the winner
      decide_by: 1 day              # optional (with test_percent): no winner by then → `fallback`
      fallback: a

Who gets what is a pure function of the broadcast and the contact (`plan_for`): the arm is
sticky (experiments.assign), the moment is the same for everyone or the contact's local
time (a wall time that does not exist on a DST day moves to the first instant after it).
The cause of every message is the broadcast's id, so a relaunch, a retried slice or a
replayed fan-out message asks for the same message ids, and nobody gets it twice.

The winner is declared only by the sequential test of experiments.py, which stays valid
however often it is looked at; with `test_percent` the rest waits for it (or for
`decide_by`, then receives the named `fallback`, never "the highest rate so far").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from chalicelib.domain.definition_errors import DefinitionError, Reference
from chalicelib.domain.durations import parse_duration
from chalicelib.domain.events import parse_timestamp
from chalicelib.domain.messaging.experiments import (
    HOLDOUT,
    BUCKETS,
    Experiment,
    ExperimentError,
    assign,
    bucket_of,
    parse_experiment,
)
from chalicelib.domain.messaging.policy import first_instant_at_or_after, zone_of

CHANNELS = ("email", "sms", "push")
METRICS = ("opened", "clicked", "converted")
REST = "rest"  # contacts outside the test share, waiting for the winner
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_FIELDS = ("id", "name", "description", "segment", "channel", "template", "send_at", "local_time", "not_after",
           "campaign", "experiment")
_FORMAT_OF_CHANNEL = {"email": "html", "sms": "sms", "push": "push"}


@dataclass(frozen=True)
class BroadcastExperiment:
    experiment: Experiment
    templates: dict[str, str]  # arm -> template name (the holdout has none)
    metric: str
    test_percent: int | None = None
    decide_by: timedelta | None = None
    fallback: str | None = None


@dataclass(frozen=True)
class Broadcast:
    id: str
    name: str
    segment: str
    channel: str
    template: str | None
    send_at: datetime | None
    local_date: date | None
    local_time: time | None
    not_after: datetime | None = None
    campaign: str | None = None
    experiment: BroadcastExperiment | None = None

    @property
    def cause(self) -> str:
        return f"broadcast:{self.id}"

    @property
    def template_format(self) -> str:
        return _FORMAT_OF_CHANNEL[self.channel]

    def templates(self) -> list[str]:
        if self.experiment is not None:
            return sorted(set(self.experiment.templates.values()))
        return [self.template] if self.template else []

    def first_moment(self) -> datetime:
        """The earliest any contact's send may be due (local times start east of UTC+14)."""
        if self.send_at is not None:
            return self.send_at
        return datetime.combine(self.local_date, self.local_time, timezone.utc) - timedelta(hours=14)


@dataclass(frozen=True)
class Plan:
    """What one contact gets: an arm (None without experiment), a template (None: nothing is
    sent — holdout, or waiting for the winner) and when."""

    arm: str | None
    template: str | None
    at: datetime


def _text(document: dict, key: str, problems: list[str], required: bool = False) -> str | None:
    value = document.get(key)
    if value is None:
        if required:
            problems.append(f"{key}: required")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{key}: must be text, got {value!r}")
        return None
    return value.strip()


def _moment(document: dict, key: str, problems: list[str]) -> datetime | None:
    raw = document.get(key)
    if raw is None:
        return None
    try:
        moment = parse_timestamp(raw) if isinstance(raw, str) else None
    except (ValueError, TypeError):
        moment = None
    if moment is None or moment.tzinfo is None:
        problems.append(f"{key}: {raw!r} is not an ISO-8601 time with a zone (e.g. 2026-12-10T09:00:00Z)")
        return None
    return moment.astimezone(timezone.utc)


def _local_time(document: dict, problems: list[str]) -> tuple[date | None, time | None]:
    raw = document.get("local_time")
    if raw is None:
        return None, None
    if not isinstance(raw, dict) or set(raw) - {"date", "time"}:
        problems.append("local_time: write {date: YYYY-MM-DD, time: \"HH:MM\"}")
        return None, None
    day = when = None
    try:
        day = date.fromisoformat(str(raw.get("date")))
    except ValueError:
        problems.append(f"local_time.date: {raw.get('date')!r} is not a date (YYYY-MM-DD)")
    try:
        when = time.fromisoformat(str(raw.get("time")))
        if when.tzinfo is not None:
            problems.append("local_time.time: a local time has no zone (each contact's zone applies)")
    except ValueError:
        problems.append(f"local_time.time: {raw.get('time')!r} is not a time of day (HH:MM)")
    return day, when


def _experiment(broadcast_id: str, raw: object, problems: list[str]) -> BroadcastExperiment | None:
    if not isinstance(raw, dict):
        problems.append("experiment: must be a mapping with arms and metric")
        return None
    unknown = sorted(set(raw) - {"arms", "metric", "test_percent", "decide_by", "fallback"})
    if unknown:
        problems.append(f"experiment: unknown field(s) {', '.join(unknown)}")
    arms = raw.get("arms")
    percents, templates = {}, {}
    if not isinstance(arms, dict) or not arms:
        problems.append("experiment.arms: name each arm with its percent and template, and optionally a holdout")
    else:
        for name, arm in arms.items():
            where = f"experiment.arms.{name}"
            if name == HOLDOUT:
                percents[name] = arm
                continue
            if not isinstance(name, str) or not _NAME.match(name):
                problems.append(f"{where}: an arm's name is lower-case letters, digits, - and _")
                continue
            if not isinstance(arm, dict) or set(arm) - {"percent", "template"}:
                problems.append(f"{where}: write {{percent: 50, template: name}}")
                continue
            percents[name] = arm.get("percent")
            template = arm.get("template")
            if not isinstance(template, str) or not _NAME.match(template):
                problems.append(f"{where}.template: the name of a template, got {template!r}")
            else:
                templates[name] = template
    experiment = None
    if percents:
        try:
            experiment = parse_experiment(broadcast_id, percents)
        except ExperimentError as exc:
            problems.append(f"experiment.arms: {exc}")
    metric = raw.get("metric", "clicked")
    if metric not in METRICS:
        problems.append(f"experiment.metric: one of {', '.join(METRICS)}, got {metric!r}")
    test_percent = raw.get("test_percent")
    if test_percent is not None and (isinstance(test_percent, bool) or not isinstance(test_percent, int)
                                     or not 1 <= test_percent <= 99):
        problems.append(f"experiment.test_percent: a whole number from 1 to 99, got {test_percent!r}")
        test_percent = None
    decide_by = fallback = None
    if raw.get("decide_by") is not None or raw.get("fallback") is not None:
        if test_percent is None:
            problems.append("experiment: decide_by and fallback go with test_percent (the rest waits for a winner)")
        try:
            decide_by = parse_duration(raw.get("decide_by"))
        except (ValueError, TypeError) as exc:
            problems.append(f"experiment.decide_by: {exc}")
        fallback = raw.get("fallback")
        if fallback not in templates:
            problems.append(f"experiment.fallback: the arm the rest receives without a winner, one of "
                            f"{', '.join(sorted(templates)) or 'the arms'}; got {fallback!r}")
    elif test_percent is not None:
        problems.append("experiment: with test_percent, say decide_by (how long the rest waits for a winner) "
                        "and fallback (the arm it receives without one)")
    if experiment is None or problems:
        return None
    return BroadcastExperiment(experiment, templates, metric, test_percent, decide_by, fallback)


def parse_broadcast(document: object) -> Broadcast:
    if not isinstance(document, dict):
        raise DefinitionError(["a broadcast is a mapping (name, segment, channel, template, send_at or local_time)"])
    problems: list[str] = []
    unknown = sorted(set(document) - set(_FIELDS))
    if unknown:
        problems.append(f"unknown field(s) {', '.join(map(str, unknown))}; a broadcast has {', '.join(_FIELDS[1:])}")
    broadcast_id = document.get("id") if isinstance(document.get("id"), str) else "draft"
    name = _text(document, "name", problems, required=True)
    segment = _text(document, "segment", problems, required=True)
    channel = document.get("channel", "email")
    if channel not in CHANNELS:
        problems.append(f"channel: one of {', '.join(CHANNELS)}, got {channel!r}")
    template = _text(document, "template", problems)
    if template is not None and not _NAME.match(template):
        problems.append(f"template: {template!r} is a template's name without locale or format (e.g. coffee-offer)")
    send_at = _moment(document, "send_at", problems)
    local_date, local_time = _local_time(document, problems)
    if (document.get("send_at") is None) == (document.get("local_time") is None):
        problems.append("send_at or local_time: say exactly one (one moment for all, or a time in each contact's zone)")
    not_after = _moment(document, "not_after", problems)
    campaign = _text(document, "campaign", problems)
    experiment = None
    if document.get("experiment") is not None:
        experiment = _experiment(broadcast_id, document["experiment"], problems)
        if template is not None:
            problems.append("template: with an experiment, each arm names its template")
    elif template is None:
        problems.append("template: required (or an experiment whose arms name their templates)")
    references = [Reference("segment", segment, "segment")] if segment else []
    if campaign:
        references.append(Reference("campaign", campaign, "campaign"))
    if problems:
        raise DefinitionError(problems, references)
    broadcast = Broadcast(broadcast_id, name, segment, channel, template, send_at, local_date, local_time,
                          not_after, campaign, experiment)
    if not_after is not None and not_after <= broadcast.first_moment():
        raise DefinitionError(["not_after: must be after the send time"], references)
    return broadcast


def in_test_share(broadcast: Broadcast, contact_id: str) -> bool:
    exp = broadcast.experiment
    if exp is None or exp.test_percent is None:
        return exp is not None
    return bucket_of(f"{broadcast.id}:test-share", contact_id) < exp.test_percent * BUCKETS // 100


def plan_for(broadcast: Broadcast, contact_id: str, time_zone: str | None, winner: str | None = None,
             default_zone: str = "UTC") -> Plan:
    """What the contact gets and when. `winner` is the declared (or fallback) arm, once known."""
    if broadcast.send_at is not None:
        at = broadcast.send_at
    else:
        zone = zone_of(time_zone, default_zone)
        at = first_instant_at_or_after(broadcast.local_date, broadcast.local_time, zone,
                                       datetime.min.replace(tzinfo=timezone.utc))
    exp = broadcast.experiment
    if exp is None:
        return Plan(None, broadcast.template, at)
    if exp.test_percent is not None and not in_test_share(broadcast, contact_id):
        return Plan(REST, exp.templates.get(winner) if winner else None, at)
    arm = assign(exp.experiment, contact_id)
    return Plan(arm, exp.templates.get(arm), at)
