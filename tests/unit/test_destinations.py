"""Destination definitions: URLs that point at this machine, a private network or the
cloud's metadata service are refused when the definition is saved, in every spelling."""
from __future__ import annotations

import ipaddress

import pytest

from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.destinations import check_url, literal_address, parse_destination
from chalicelib.services.definitions import DefinitionService
from tests.unit.fakes import FakeClock, FakeDefinitionStore


def doc(url: str, **extra) -> dict:
    return {"id": "crm", "name": "CRM", "url": url, "secret_parameter": "/mercurio/test/destinations/crm",
            "segments": ["mql"], **extra}


REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://2130706433/hook",
    "http://[fd00::1]/hook",
    "http://0.0.0.0/hook",
    "http://localhost:8080/hook",
    "http://LOCALHOST./hook",
    "http://api.localhost/hook",
    "http://0x7f.1/hook",
    "http://127.1/hook",
    "http://0177.0.0.1/hook",
    "http://0x7f000001/hook",
    "http://10.1.2.3/hook",
    "http://192.168.1.10/hook",
    "http://172.16.0.5/hook",
    "http://100.64.0.1/hook",
    "http://[::1]/hook",
    "http://[fe80::1%25eth0]/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "http://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "http://224.0.0.1/hook",
    "http://169.254.169.254./latest/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_non_public_addresses_are_refused_when_saved(url):
    with pytest.raises(DefinitionError) as caught:
        parse_destination(doc(url), allow_private=False)
    assert any(p.startswith("url: ") and "MERCURIO_WEBHOOKS_ALLOW_PRIVATE" in p for p in caught.value.problems)


@pytest.mark.parametrize("url", REFUSED)
def test_they_are_accepted_when_private_addresses_are_allowed(url):
    assert parse_destination(doc(url), allow_private=True).url == url


@pytest.mark.parametrize("url", ["https://crm.example.com/hooks", "https://93.184.215.14/hook",
                                 "http://[2606:4700::1111]/hook", "https://127.example.com/",
                                 "https://0x7f.example/", "https://hooks.crm.example:8443/in"])
def test_public_addresses_and_dns_names_pass_without_resolving(url, monkeypatch):
    import socket

    def no_dns(*args, **kwargs):
        raise AssertionError("saving a definition must not resolve names")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert check_url(url, allow_private=False) == []


@pytest.mark.parametrize("text, expected", [("127.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"),
                                            ("2130706433", "127.0.0.1"), ("0177.0.0.01", "127.0.0.1"),
                                            ("10.258", "10.0.1.2"), ("example.com", None), ("1.2.3.4.5", None),
                                            ("256.1.1.1", None), ("08.1.1.1", None)])
def test_literal_addresses_in_the_forms_resolvers_accept(text, expected):
    found = literal_address(text)
    assert (str(found) if found is not None else None) == expected
    if expected:
        assert isinstance(found, ipaddress.IPv4Address)


def test_credentials_and_bad_ports_are_refused_too():
    problems = check_url("http://user:pw@crm.example.com:99999/x", allow_private=False)
    assert any("credentials" in p for p in problems) and any("port" in p for p in problems)


def test_events_name_the_facts_a_destination_hears():
    destination = parse_destination(doc("https://crm.example.com/", events=["segment.entered", "stage.changed"]))
    assert destination.hears("segment.entered", "mql") and not destination.hears("segment.entered", "vip")
    assert destination.hears("stage.changed") and not destination.hears("tag.added")
    assert parse_destination(doc("https://crm.example.com/")).events == ("segment.entered",)
    with pytest.raises(DefinitionError, match="events\\[0\\]"):
        parse_destination(doc("https://crm.example.com/", events=["segment.entred"]))


def test_the_definition_service_refuses_them_unless_configured():
    strict = DefinitionService(FakeDefinitionStore(), FakeClock())
    with pytest.raises(DefinitionError, match="169.254.169.254"):
        strict.put("destination", "crm", doc("http://169.254.169.254/latest/meta-data/"))
    relaxed = DefinitionService(FakeDefinitionStore(), FakeClock(), allow_private_destinations=True)
    relaxed.put("segment", "mql", {"id": "mql", "name": "MQL", "conditions": {"trait": "mql", "equals": True}})
    assert relaxed.put("destination", "crm", doc("http://127.0.0.1:9000/hook"))["version"] == 1


@pytest.mark.parametrize("url", ["http://[::1", "http://[fd00::1/x", "https://", 42, None])
def test_a_malformed_url_is_a_problem_not_a_crash(url):
    with pytest.raises(DefinitionError, match="is not an http\\(s\\) URL"):
        parse_destination(doc(url))
