"""Wiring for the gateway: settings -> channels to the four services -> Connect endpoints
from their descriptors -> the ASGI router -> uvicorn, with the suite's start/drain cycle.

`build(settings)` returns a kit the supervisor (`shared.runner`) runs like a gRPC service:
`start()` binds, `become_ready()` turns `/healthz` SERVING, `drain()` turns it NOT_SERVING,
waits `SKYBRIDGE_DRAIN_DELAY_SECONDS`, ends the streams it forwards (their clients see
UNAVAILABLE and reconnect elsewhere), and stops within `SKYBRIDGE_GRACE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import uvicorn
from google.protobuf.descriptor import ServiceDescriptor

from services.gateway import codecs
from services.gateway.app import GatewayApp
from services.gateway.console_files import ConsoleFiles
from services.gateway.downloads import downloads
from services.gateway.forward import Forwarder
from services.gateway.procedures import SUITE_SERVICES, owner, procedures
from shared.auth import minter_from_settings
from shared.channels import channel_options
from shared.config import EnvReader, Settings
from shared.telemetry import Telemetry

log = logging.getLogger("skybridge.gateway")

#: Default cap on a request body (`SKYBRIDGE_GATEWAY_MAX_BODY_BYTES`).
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Cap on a forwarded unary call's deadline (`SKYBRIDGE_GATEWAY_TIMEOUT_SECONDS`): people
#: and browsers rarely send one, and a link broker's first plan of a window can take longer
#: than the 10 s the services allow each other (`SKYBRIDGE_CALL_TIMEOUT_SECONDS`). A caller's
#: shorter `Connect-Timeout-Ms` still wins.
DEFAULT_TIMEOUT_SECONDS = 60.0
#: Connections served at once (`SKYBRIDGE_GATEWAY_MAX_CONNECTIONS`); one more is HTTP 503.
DEFAULT_MAX_CONNECTIONS = 1000


class GatewayServer:
    """uvicorn on one bound socket, started and drained like `shared.server.GrpcService`."""

    def __init__(self, app: GatewayApp, forwarder: Forwarder,
                 telemetry: Telemetry, *, host: str, port: int, grace_seconds: float,
                 drain_delay_seconds: float, max_connections: int) -> None:
        self.app = app
        self.forwarder = forwarder
        self.telemetry = telemetry
        self.host = host
        self.requested_port = port
        self.port = port
        self.drain_delay_seconds = drain_delay_seconds
        # httptools (C) rather than h11 (pure Python): 0.4 ms less a call (ADR 0011).
        self.config = uvicorn.Config(app, host=host, port=port, lifespan="off", http="httptools",
                                     log_level="warning", access_log=False,
                                     timeout_graceful_shutdown=max(math.ceil(grace_seconds), 1),
                                     limit_concurrency=max_connections, server_header=False)
        self.uvicorn = uvicorn.Server(self.config)
        self._socket: socket.socket | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stopped = False
        #: Set when a drain begins (health NOT_SERVING, new calls refused).
        self.draining = asyncio.Event()

    async def start(self) -> int:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it: uvicorn writes a response's head and body apart, and
        # with Nagle on, the body waited for the client's delayed ACK (+40 ms a call).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self.requested_port))
        sock.listen(1024)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        self.config.load()
        self.uvicorn.lifespan = self.config.lifespan_class(self.config)
        await self.uvicorn.startup(sockets=[sock])
        self._loop_task = asyncio.create_task(self.uvicorn.main_loop(),
                                              name="gateway-main-loop")
        return self.port

    async def become_ready(self) -> None:
        self.app.serving = True

    async def drain(self, grace_seconds: float | None = None) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.app.serving = False
        self.draining.set()
        if grace_seconds is None:
            await asyncio.sleep(self.drain_delay_seconds)
        else:
            self.config.timeout_graceful_shutdown = max(math.ceil(grace_seconds), 1)
        self.forwarder.drain()
        self.uvicorn.should_exit = True
        if self._loop_task is not None:
            await self._loop_task
        if self.uvicorn.started:
            await self.uvicorn.shutdown(sockets=[self._socket] if self._socket else None)
        with contextlib.suppress(Exception):
            await self.forwarder.close()
        self.telemetry.shutdown()


@dataclass
class GatewayKit:
    """What the supervisor runs: the same `name`, `settings` and `server` as a ServiceKit."""

    name: str
    settings: Settings
    server: GatewayServer

    @property
    def banner(self) -> tuple[str, ...]:
        """What the supervisor prints after the address: the console's URL."""
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::", "[::]") else \
            self.settings.host
        url = f"http://{host}:{self.server.port}/"
        if not self.server.app.console.built:
            return (f"{'console':<13} not built (needs Node.js: make console); "
                    f"every RPC is at {url}<package>.<Service>/<Method>",)
        tokens = ", development sign-in on" if self.settings.gateway_dev_tokens else ""
        return (f"{'console':<13} {url}{tokens}",)


def _channels(settings: Settings,
              services: Sequence[ServiceDescriptor]) -> dict[str, grpc.aio.Channel]:
    """One channel per suite service (the link broker's two services share one), with the
    suite's options and no interceptors (forward.py sets metadata and timeouts itself)."""
    by_owner: dict[str, list[ServiceDescriptor]] = defaultdict(list)
    for service in services:
        by_owner[owner(service)].append(service)
    return {name: grpc.aio.insecure_channel(settings.target(name),
                                            options=channel_options(descriptors))
            for name, descriptors in by_owner.items()}


async def build(settings: Settings, *, port: int | None = None,
                services: Sequence[ServiceDescriptor] = SUITE_SERVICES,
                max_body_bytes: int | None = None) -> GatewayKit:
    """The gateway in front of `services` (tests put the probe service there)."""
    read = EnvReader()
    if max_body_bytes is None:
        max_body_bytes = read.int("GATEWAY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES,
                                  minimum=1024, maximum=1024 * 1024 * 1024)
    max_connections = read.int("GATEWAY_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS,
                               minimum=1, maximum=1_000_000)
    timeout_s = read.float("GATEWAY_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, minimum=0.001)
    codecs.install()
    telemetry = Telemetry("gateway")
    # No service token: the gateway forwards each caller's own bearer token.
    forwarder = Forwarder(_channels(settings, services), telemetry.tracer,
                          unary_cap_s=timeout_s)
    minter = minter_from_settings(settings) if settings.gateway_dev_tokens else None
    served = procedures(services)
    app = GatewayApp(forwarder.endpoints(served), max_body_bytes=max_body_bytes,
                     console=ConsoleFiles(settings.console_dir), minter=minter,
                     files=downloads(list(served), forwarder.streams))
    server = GatewayServer(app, forwarder, telemetry, host=settings.host,
                           port=settings.port("gateway") if port is None else port,
                           grace_seconds=settings.grace_seconds,
                           drain_delay_seconds=settings.drain_delay_seconds,
                           max_connections=max_connections)
    return GatewayKit("gateway", settings, server)
