"""`python -m services`, the supervisor `make run` starts: several services in one process,
migrated and seeded, answering health, then drained by SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.processes import ROOT, environment, free_port

SERVICES = ("orbit", "provisioning")


async def test_supervisor_starts_several_services_and_drains_on_sigterm(settings):
    ports = {name: free_port() for name in SERVICES}
    extra = {f"SKYBRIDGE_{name.upper()}_PORT": str(port) for name, port in ports.items()}
    extra["SKYBRIDGE_SERVICES"] = ",".join(SERVICES)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services", cwd=ROOT, env=environment(settings, **extra),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        announced = []
        while len(announced) < len(SERVICES):
            line = await asyncio.wait_for(proc.stdout.readline(), 180)
            assert line, (await proc.stderr.read()).decode()[-3000:]
            announced.append(line.decode().split()[0])
        assert sorted(announced) == sorted(SERVICES)
        # (every deadline here only ends a hang: a loaded machine may take its time)
        for name, port in ports.items():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                answer = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=60)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING, name
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 120) == 0
        logs = (await proc.stderr.read()).decode()
        for name in SERVICES:
            assert f'"{name} stopped"' in logs
        assert "Traceback" not in logs
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
