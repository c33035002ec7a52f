"""A gateway on loopback in front of real gRPC servers: the test-only probe service (for
deadlines, drains, traces and every kind of call) or the orbit service (for the suite's
own contracts)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from skybridge.testing.v1 import probe_pb2

from tests.processes import free_port

PROBE_SERVICE = probe_pb2.DESCRIPTOR.services_by_name["ProbeService"]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _request(url: str, body: bytes | None, headers: dict[str, str], method: str) -> Reply:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
            return Reply(answer.status, {k.lower(): v for k, v in answer.headers.items()},
                         answer.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()},
                     error.read())


async def http(url: str, body: bytes | None = None, *, headers: dict[str, str] | None = None,
               method: str | None = None) -> Reply:
    """One plain HTTP/1.1 request (urllib, in a thread): what curl or a browser sends."""
    return await asyncio.to_thread(_request, url, body, headers or {},
                                   method or ("POST" if body is not None else "GET"))


def json_headers(token: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@dataclass
class ProbeGateway:
    url: str
    gateway: Any
    probe: Any
    spans: InMemorySpanExporter
    release_sleeps: asyncio.Event


@pytest.fixture
async def probe_gateway(settings, tmp_path):
    from services.gateway.server import build as build_gateway
    from tests.probe.server import build as build_probe

    spans = InMemorySpanExporter()
    release = asyncio.Event()
    probe = await build_probe(settings, span_processors=[SimpleSpanProcessor(spans)],
                              release_sleeps=release)
    await probe.server.start()
    await probe.server.become_ready()
    console = tmp_path / "console"
    gateway_settings = dataclasses.replace(
        settings, targets={"testing": f"127.0.0.1:{probe.server.port}"},
        gateway_dev_tokens=True, console_dir=console)
    gateway = await build_gateway(gateway_settings, port=0, services=[PROBE_SERVICE],
                                  max_body_bytes=256 * 1024)
    await gateway.server.start()
    await gateway.server.become_ready()
    yield ProbeGateway(f"http://127.0.0.1:{gateway.server.port}", gateway, probe, spans,
                       release)
    release.set()
    await gateway.server.drain(0)
    await probe.server.drain(0)


@dataclass
class OrbitGateway:
    url: str
    gateway: Any
    orbit: Any
    orbit_target: str


@pytest.fixture
async def orbit_gateway(settings):
    """The gateway with the suite's descriptors; only orbit runs (the others' targets are
    free ports nothing listens on)."""
    from services.gateway.server import build as build_gateway
    from tests.orbit.conftest import start_orbit

    orbit = await start_orbit(settings)
    targets = {name: f"127.0.0.1:{free_port()}"
               for name in ("provisioning", "linkbroker", "threat")}
    targets["orbit"] = f"127.0.0.1:{orbit.server.port}"
    gateway = await build_gateway(dataclasses.replace(settings, targets=targets), port=0)
    await gateway.server.start()
    await gateway.server.become_ready()
    yield OrbitGateway(f"http://127.0.0.1:{gateway.server.port}", gateway, orbit,
                       targets["orbit"])
    await gateway.server.drain(0)
    await orbit.server.drain(0)
