"""What one Lambda container keeps between invocations: the wired services and the
Powertools logger, metrics and tracer.

`services()` builds Mercurio once per container from the environment's settings; tests and
the local runner call `reset(**overrides)` to rebuild it (e.g. with another clock).
"""
from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

from chalicelib import config
from chalicelib.bootstrap import Services, bootstrap

logger = Logger(service="mercurio")
metrics = Metrics(namespace="Mercurio", service="mercurio")
tracer = Tracer(service="mercurio")

_services: Services | None = None
_overrides: dict = {}


def services() -> Services:
    global _services
    if _services is None:
        _services = bootstrap(config.settings(), **_overrides)
    return _services


def reset(**overrides) -> None:
    """Forget the wired services and the settings (the environment may have changed); the
    next call builds them again, with these overrides (e.g. `clock=FixedClock(...)`)."""
    global _services, _overrides
    _services = None
    _overrides = dict(overrides)
    config.settings.cache_clear()


def flush_metrics() -> None:
    if metrics.metric_set:
        metrics.flush_metrics()
        metrics.clear_metrics()  # a disabled Metrics (local runs) flushes without clearing


def use_clock(clock) -> None:
    """Rebuild the services with this clock (None: the system clock); tests and benchmarks
    run time-based behaviour on a fixed or fake clock this way."""
    overrides = {k: v for k, v in _overrides.items() if k != "clock"}
    if clock is not None:
        overrides["clock"] = clock
    reset(**overrides)
