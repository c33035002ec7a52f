"""`python -m shared.healthcheck` (the compose health check) against a real server.

The checker runs in a subprocess so that its exit code is the real one; the probe server
runs in this process, so the subprocess is awaited (asyncio) while the loop answers it.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.probe.server import build

ROOT = Path(__file__).resolve().parents[2]
PROBE_SERVICE = "skybridge.testing.v1.ProbeService"


#: For a check whose answer the test waits for: a deadline that only ends a hang (the
#: checker's own default, 5 s, is for compose; a loaded machine may take longer).
ANSWER_TIMEOUT = ("--timeout", "60")


async def run_check(*args: str) -> tuple[int, str, str]:
    if "--timeout" not in args:
        args = (*args, *ANSWER_TIMEOUT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.healthcheck", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode().strip(), err.decode().strip()


def run_check_blocking(*args: str) -> tuple[int, str, str]:
    """For checks with no server in this process: nothing needs the loop meanwhile."""
    done = subprocess.run([sys.executable, "-m", "shared.healthcheck", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout.strip(), done.stderr.strip()


@pytest.fixture
async def probe_kit(settings):
    """The probe server, bound but not yet ready (health NOT_SERVING)."""
    kit = await build(settings)
    await kit.server.start()
    yield kit
    await kit.server.drain(0)


async def test_serving_server_exits_0(probe_kit):
    await probe_kit.server.become_ready()
    code, out, _ = await run_check(f"127.0.0.1:{probe_kit.server.port}")
    assert (code, out) == (0, "SERVING")
    code, out, _ = await run_check(f"127.0.0.1:{probe_kit.server.port}", PROBE_SERVICE)
    assert (code, out) == (0, "SERVING")


async def test_not_serving_server_exits_1(probe_kit):
    code, out, _ = await run_check(f"127.0.0.1:{probe_kit.server.port}")
    assert (code, out) == (1, "NOT_SERVING")


async def test_draining_server_exits_1(probe_kit):
    await probe_kit.server.become_ready()
    await probe_kit.server.health.enter_graceful_shutdown()
    code, out, _ = await run_check(f"127.0.0.1:{probe_kit.server.port}")
    assert (code, out) == (1, "NOT_SERVING")


async def test_unknown_service_exits_1(probe_kit):
    await probe_kit.server.become_ready()
    code, out, err = await run_check(f"127.0.0.1:{probe_kit.server.port}", "no.such.Service")
    assert code == 1 and out == ""
    assert err.startswith("NOT_FOUND")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_closed_port_exits_1():
    code, out, err = run_check_blocking(f"127.0.0.1:{free_port()}", *ANSWER_TIMEOUT)
    assert code == 1 and out == ""
    assert err.startswith("UNAVAILABLE")


def test_silent_peer_times_out_with_1():
    # A socket that accepts connections but never speaks HTTP/2.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        code, out, err = run_check_blocking(f"127.0.0.1:{port}", "--timeout", "0.5")
    assert code == 1 and out == ""
    assert err.startswith("DEADLINE_EXCEEDED")


@pytest.mark.parametrize("args", [[], ["localhost"], ["host:notaport"], ["host:1", "--timeout", "0"]])
def test_bad_arguments_exit_1(args):
    code, _, err = run_check_blocking(*args)
    assert code == 1
    assert "usage:" in err
