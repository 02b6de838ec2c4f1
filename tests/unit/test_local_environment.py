"""`make run`'s environment: private webhook addresses are the operator's choice."""
from __future__ import annotations

import os

import pytest

from local.run import configure_environment

LOCAL_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
               "AWS_ENDPOINT_URL", "AWS_ACCOUNT_ID_ENDPOINT_MODE", "MERCURIO_STAGE", "MERCURIO_WRITE_KEY",
               "MERCURIO_ADMIN_TOKEN", "POWERTOOLS_TRACE_DISABLED", "POWERTOOLS_METRICS_DISABLED",
               "POWERTOOLS_LOG_LEVEL", "MERCURIO_DEFINITIONS_CACHE_SECONDS", "MERCURIO_DELIVERY_HORIZON_SECONDS",
               "MERCURIO_WEBHOOKS_ALLOW_PRIVATE")


@pytest.fixture
def clean_environment():
    """configure_environment writes os.environ directly: put it back exactly as it was."""
    saved = dict(os.environ)
    for name in LOCAL_NAMES:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_make_run_does_not_allow_private_addresses_by_itself(clean_environment):
    configure_environment("http://127.0.0.1:5000", "local-write-key-1", "token")
    assert os.environ.get("MERCURIO_WEBHOOKS_ALLOW_PRIVATE") is None
    from chalicelib import config

    config.settings.cache_clear()
    try:
        assert config.settings().webhooks_allow_private is False
    finally:
        config.settings.cache_clear()


@pytest.mark.parametrize("choice", ["true", "false"])
def test_the_operators_choice_is_passed_through(clean_environment, choice):
    os.environ["MERCURIO_WEBHOOKS_ALLOW_PRIVATE"] = choice
    configure_environment("http://127.0.0.1:5000", "local-write-key-1", "token")
    assert os.environ["MERCURIO_WEBHOOKS_ALLOW_PRIVATE"] == choice


def test_deliveries_give_up_sooner_locally_unless_told_otherwise(clean_environment):
    configure_environment("http://127.0.0.1:5000", "local-write-key-1", "token")
    assert os.environ["MERCURIO_DELIVERY_HORIZON_SECONDS"] == "900"
    os.environ["MERCURIO_DELIVERY_HORIZON_SECONDS"] = "86400"
    configure_environment("http://127.0.0.1:5000", "local-write-key-1", "token")
    assert os.environ["MERCURIO_DELIVERY_HORIZON_SECONDS"] == "86400"


def _survives_a_signal_at_every_line(handler) -> bool:
    """Call `handler` as a signal would, and at every line it (or what it calls) runs, call
    it again as a second signal would, interrupting it there. False if that hangs."""
    import signal
    import sys
    import threading

    nested = {"active": False}

    def interrupt(frame, event, arg):
        if event == "line" and not nested["active"]:
            nested["active"] = True
            try:
                handler(signal.SIGTERM, None)
            finally:
                nested["active"] = False
        return interrupt

    finished = threading.Event()

    def deliver():
        sys.settrace(lambda frame, event, arg: interrupt)
        try:
            handler(signal.SIGTERM, None)
        finally:
            sys.settrace(None)
        finished.set()

    threading.Thread(target=deliver, daemon=True).start()
    return finished.wait(timeout=5)


def test_the_stop_handler_survives_a_second_signal_inside_the_first():
    """A group SIGTERM reaches `make run` twice (make forwards it to its child), and the
    second handler call can interrupt the first anywhere. A handler that takes a lock
    (`threading.Event.set`, as before) then waits forever for the lock the interrupted
    call holds; the handler now takes none."""
    import threading

    from local.run import StopRequest

    stop = StopRequest()
    assert _survives_a_signal_at_every_line(stop) and stop.requested
    event = threading.Event()  # what the handler used to call: it hangs under the same test
    assert not _survives_a_signal_at_every_line(lambda signum, frame: event.set())


def test_with_metrics_off_a_send_prints_no_metric(monkeypatch, capsys):
    # The local stack turns Powertools' metrics off: the console shows what happens, not EMF.
    from chalicelib import config
    from chalicelib.bootstrap import message_counter

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    config.settings.cache_clear()
    try:
        message_counter(config.settings())("sent", None)
        assert capsys.readouterr().out == ""
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
        config.settings.cache_clear()
        message_counter(config.settings())("sent", None)
        assert '"MessagesSent"' in capsys.readouterr().out  # on AWS: one EMF line per outcome
    finally:
        config.settings.cache_clear()


def test_the_sms_provider_is_chosen_by_setting_and_refused_when_incomplete(monkeypatch):
    import pytest

    from chalicelib import config
    from chalicelib.adapters.sms_senders import EndUserMessagingSmsSender, SnsSmsSender
    from chalicelib.bootstrap import bootstrap
    from chalicelib.domain.sources import SourceConfigError

    try:
        config.settings.cache_clear()
        assert isinstance(bootstrap(config.settings()).sms_sender, SnsSmsSender)  # the default
        monkeypatch.setenv("MERCURIO_SMS_PROVIDER", "end-user-messaging")
        monkeypatch.setenv("MERCURIO_SMS_ORIGINATION_IDENTITY", "+12065550100")
        config.settings.cache_clear()
        sender = bootstrap(config.settings()).sms_sender
        assert isinstance(sender, EndUserMessagingSmsSender) and sender.origination_identity == "+12065550100"
        monkeypatch.delenv("MERCURIO_SMS_ORIGINATION_IDENTITY")
        config.settings.cache_clear()
        with pytest.raises(SourceConfigError, match="ORIGINATION_IDENTITY"):
            config.settings()
        monkeypatch.setenv("MERCURIO_SMS_PROVIDER", "pigeon")
        config.settings.cache_clear()
        with pytest.raises(SourceConfigError, match="pigeon"):
            config.settings()
    finally:
        config.settings.cache_clear()
