"""A real process: health while it starts, and SIGTERM with a call in flight."""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc

from tests.conftest import bearer
from tests.processes import ROOT, environment, free_port
from tests.waiting import until


@pytest.fixture
async def process(settings):
    started = []

    async def launch(**extra):
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.probe", str(port), cwd=ROOT,
            env=environment(settings, **extra),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        started.append(proc)
        return proc, port

    yield launch
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_not_serving_while_starting_then_serving(process, tmp_path):
    # The start-up is held until the test writes the gate file: NOT_SERVING is seen first
    # however long the process takes to come up, and SERVING follows when the test says.
    gate = tmp_path / "go"
    proc, port = await process(PROBE_STARTUP_GATE=str(gate))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        # Watch sends the current status, then each change; wait_for_ready rides out the
        # process's start, and the deadline only ends a hang.
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=120)
        seen = [(await watch.read()).status]
        gate.touch()
        seen.append((await watch.read()).status)
        watch.cancel()
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 120) == 0
    assert seen == [health_pb2.HealthCheckResponse.NOT_SERVING,
                    health_pb2.HealthCheckResponse.SERVING]


async def test_sigterm_finishes_in_flight_calls_and_refuses_new_ones(process, minter, tmp_path):
    # The Sleep call writes `started` once in its handler and ends only when the test writes
    # `release`; the grace is far longer than the test: nothing here rides on a clock.
    proc, port = await process(PROBE_SLEEP_FILES=str(tmp_path), SKYBRIDGE_GRACE_SECONDS="600")
    announced = await asyncio.wait_for(proc.stdout.readline(), 120)  # ready
    assert b"listening on" in announced, (await proc.stderr.read()).decode()[-3000:]
    read = bearer(minter, "probe.read")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = probe_pb2_grpc.ProbeServiceStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(),
                                                          timeout=120)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        slow = asyncio.ensure_future(stub.Sleep(
            probe_pb2.SleepRequest(duration=duration_pb2.Duration(seconds=1, nanos=500_000_000)),
            metadata=read))
        assert await until((tmp_path / "started").exists, within=120)
        proc.send_signal(signal.SIGTERM)
        # The drain has begun once health says NOT_SERVING; a new call may still slip in
        # until the refusal is set a moment later, so ask until it is refused.
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        while True:
            try:
                await stub.Echo(probe_pb2.EchoRequest(), metadata=read, timeout=60)
            except grpc.aio.AioRpcError as refused:
                assert refused.code() == grpc.StatusCode.UNAVAILABLE
                break
            await asyncio.sleep(0.02)
        assert not slow.done()  # the call in flight still runs
        (tmp_path / "release").touch()
        assert await slow == probe_pb2.SleepResponse()
    assert await asyncio.wait_for(proc.wait(), 120) == 0
    logs = (await proc.stderr.read()).decode()
    assert "draining" in logs and "stopped" in logs
