"""A real process: health while it starts, and SIGTERM with a call in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc

from tests.conftest import bearer

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(settings, **extra) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SKYBRIDGE_DATABASE_URL": settings.database_url,
        "SKYBRIDGE_DB_SCHEMA_PREFIX": settings.db_schema_prefix,
        "SKYBRIDGE_JWT_PUBLIC_KEY": str(settings.jwt_public_key_path),
        "SKYBRIDGE_JWT_PRIVATE_KEY": str(settings.jwt_private_key_path),
        "SKYBRIDGE_DEV_KEYS": "false",
        "SKYBRIDGE_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


async def health_status(stub) -> int | None:
    try:
        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
        return answer.status
    except grpc.aio.AioRpcError:
        return None


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


async def test_not_serving_while_starting_then_serving(process):
    proc, port = await process(PROBE_STARTUP_DELAY="2")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        seen = []
        for _ in range(200):
            status = await health_status(health)
            if status is not None and (not seen or seen[-1] != status):
                seen.append(status)
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert seen == [health_pb2.HealthCheckResponse.NOT_SERVING,
                    health_pb2.HealthCheckResponse.SERVING]


async def test_sigterm_finishes_in_flight_calls_and_refuses_new_ones(process, minter):
    proc, port = await process()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(400):
            if await health_status(health) == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.05)
        stub = probe_pb2_grpc.ProbeServiceStub(channel)
        slow = asyncio.ensure_future(stub.Sleep(
            probe_pb2.SleepRequest(duration=duration_pb2.Duration(seconds=1, nanos=500_000_000)),
            metadata=bearer(minter, "probe.read")))
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Echo(probe_pb2.EchoRequest(), metadata=bearer(minter, "probe.read"),
                            timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await slow == probe_pb2.SleepResponse()
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    logs = (await proc.stderr.read()).decode()
    assert "draining" in logs and "stopped" in logs
