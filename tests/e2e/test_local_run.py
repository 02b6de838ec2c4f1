"""`make run` (local/run.py) when something is in the way: a port already in use is named
before anything starts, and whatever had started is stopped when start-up fails."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from local.ports import PortInUse, claim_port
from tests.e2e.conftest import ROOT


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def busy_port():
    """A port this test holds open (listening), so it is surely taken."""
    sock = claim_port("127.0.0.1", 0, "the test")
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize("option,what", [("--port", "the API"), ("--shop-port", "the demo shop"),
                                         ("--emulator-port", "the AWS emulator")])
def test_a_busy_port_is_named_and_nothing_is_left_running(busy_port, option, what):
    ports = {"--port": "0", "--shop-port": "0", "--emulator-port": "0", option: str(busy_port)}
    result = _run("-m", "local.run", *[item for pair in ports.items() for item in pair])
    assert result.returncode == 1, result
    assert f"port {busy_port} on 127.0.0.1 is already in use, so {what}" in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_failure_after_the_emulator_started_stops_it_and_frees_the_ports():
    script = textwrap.dedent("""
        import local.provision
        from local.ports import claim_port
        from local.run import LocalStack

        def fail(*args, **kwargs):
            raise RuntimeError("provisioning failed on purpose")

        local.provision.provision = fail
        stack = LocalStack("127.0.0.1", 0, 0, 0, "write-key-for-test", "admin-token-for-test")
        try:
            stack.start()
        except RuntimeError as exc:
            print("raised:", exc)
        print("emulator exit code:", stack.emulator.process.poll())
        for port in (stack.port, stack.shop_port, stack.emulator.port):
            claim_port("127.0.0.1", port, "the check").close()  # PortInUse if still held
        print("ports free")
    """)
    result = _run("-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "raised: provisioning failed on purpose"
    assert lines[1].startswith("emulator exit code: ") and lines[1] != "emulator exit code: None"
    assert lines[2] == "ports free"


def test_claim_port_refuses_a_taken_port(busy_port):
    with pytest.raises(PortInUse) as caught:
        claim_port("127.0.0.1", busy_port, "the demo shop")
    assert caught.value.port == busy_port and "the demo shop" in str(caught.value)
