"""The gRPC server bootstrap every service uses (`grpc.aio`).

Life of a service:

1. `start()` binds the port and starts serving with health NOT_SERVING: the health and
   reflection services answer, every other call gets UNAVAILABLE ("starting").
2. The start-up hooks run (migrations, seeding, warming caches); then health turns SERVING.
3. `drain()` (on SIGTERM/SIGINT, from `shared.runner`): health turns NOT_SERVING for good,
   an optional drain delay lets load balancers notice, then new calls are refused with
   UNAVAILABLE while in-flight calls get up to the grace period to finish; then the server
   stops (ending health Watch streams and anything past the grace), the shutdown hooks run
   (closing engines and channels), and the telemetry providers flush. `grpc.aio`'s
   `stop()` is called exactly once: concurrent stops of one server crash grpcio.

Health is per service name and for the whole server (""), as the gRPC health protocol
defines. It is SERVING only while the service is ready and every dependency it reports
(`set_dependency`, e.g. its database through `shared.store_probe`) is reachable; a
dependency that comes back turns it SERVING again with no restart. Reflection lists every registered service, so grpcurl works without protos.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from shared.auth import TokenVerifier
from shared.interceptors import ServerInterceptor
from shared.telemetry import Telemetry

if TYPE_CHECKING:
    from shared.interceptors import _Registrar

log = logging.getLogger("skybridge.server")

Hook = Callable[[], Awaitable[None]]

#: The largest request message a server takes unless its service says more. grpcio refuses a
#: bigger one with RESOURCE_EXHAUSTED from its length prefix, before it buffers the body and
#: before any of our code runs (grpcio has no per-method limit and no hook before the body,
#: so a service whose contract needs big requests sets its own cap: orbit's 64 MiB imports,
#: threat's detection batches).
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: At the end of a drain, how long grpc may finish the calls it accepted that were never
#: counted in flight (refusals on their way out); stop returns as soon as they are done.
STOP_GRACE_SECONDS = 1.0

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


def _freeze_startup_heap() -> None:
    """Move everything start-up left alive (modules, descriptors, caches, seeded state) out of
    the garbage collector's reach.

    A full collection walks every tracked object; after start-up that is several hundred
    thousand objects that live as long as the process. Measured in `bench/platform.py`,
    collections took 0.10-0.20 s of every 3 s of load before the freeze and 0.04-0.05 s
    after. Start-up garbage is collected first, so only live objects are frozen.
    """
    gc.collect()
    gc.freeze()


class DrainingHealth(health_aio.HealthServicer):  # type: ignore[misc]  # grpc_health: no stubs
    """The gRPC health service, whose Watch streams end UNAVAILABLE when the server drains.

    A Watch stream tells NOT_SERVING as the drain begins; clients that balance on health
    (the suite's channels) then stop sending here. It ends once the server refuses calls,
    so the server's stop does not wait on streams no one will close.
    """

    def __init__(self, draining: asyncio.Event) -> None:
        super().__init__()
        self._draining = draining

    async def Watch(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> None:
        if not self._draining.is_set():
            watch = asyncio.ensure_future(super().Watch(request, context))
            drained = asyncio.ensure_future(self._draining.wait())
            try:
                await asyncio.wait((watch, drained), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watch, drained):
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watch
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is draining")


@dataclass
class GrpcService:
    """One service's server: its interceptors, health, reflection and hooks."""

    name: str
    address: str
    verifier: TokenVerifier
    telemetry: Telemetry
    grace_seconds: float = 10.0
    drain_delay_seconds: float = 0.0
    max_streams_per_caller: int = 100
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    startup_hooks: list[Hook] = field(default_factory=list)
    shutdown_hooks: list[Hook] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.interceptor = ServerInterceptor(
            f"{self.name}.skybridge", self.verifier, self.telemetry.tracer,
            self.telemetry.rpc_duration, self.max_streams_per_caller)
        self.lifecycle = self.interceptor.lifecycle
        self.health = DrainingHealth(self.lifecycle.draining)
        self.server = grpc.aio.server(options=[
            *SERVER_OPTIONS, ("grpc.max_receive_message_length", self.max_request_bytes)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names: list[str] = []
        self.port: int | None = None
        self._stopped = asyncio.Event()
        self._draining = False
        #: Dependencies that cannot be reached now (by name); health is NOT_SERVING meanwhile.
        self.unreachable: set[str] = set()

    def add(self, servicer: object, add_to_server: Callable[[Any, _Registrar], object],
            descriptor: ServiceDescriptor) -> None:
        """Register a servicer: `add(servicer, pb2_grpc.add_XServicer_to_server,
        pb2.DESCRIPTOR.services_by_name['X'])`."""
        # Scopes first: the interceptor reads them when it wraps each method.
        self.interceptor.auth.register(descriptor.full_name, servicer,
                                       [method.name for method in descriptor.methods])
        # The servicer's contract rules beyond its descriptors (caps, exclusive groups).
        rules = getattr(servicer, "request_rules", None)
        if rules is not None:
            self.interceptor.validator.add_rules(rules)
        add_to_server(servicer, self.interceptor.registrar(self.server))
        self.service_names.append(descriptor.full_name)

    def on_startup(self, hook: Hook) -> None:
        self.startup_hooks.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        self.shutdown_hooks.append(hook)

    @property
    def draining(self) -> asyncio.Event:
        """Set when the drain starts; streaming handlers end their streams on it."""
        return self.lifecycle.draining

    @property
    def ready(self) -> bool:
        return self.lifecycle.refusal is None

    async def _set_health(self, status: int) -> None:
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    def _serving_status(self) -> int:
        # grpc_health ships no stubs: its ServingStatus values come back as Any.
        if self.ready and not self.unreachable:
            return cast(int, health_pb2.HealthCheckResponse.SERVING)
        return cast(int, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def set_dependency(self, name: str, reachable: bool) -> None:
        """Record whether dependency `name` can be reached; health follows (not once the
        drain has begun: then it stays NOT_SERVING)."""
        if reachable:
            self.unreachable.discard(name)
        else:
            self.unreachable.add(name)
        if not self._draining:
            await self._set_health(self._serving_status())

    async def start(self) -> int:
        """Bind and serve with health NOT_SERVING; returns the bound port."""
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"{self.name}: cannot bind {self.address}")
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        log.info("%s listening on port %s (starting)", self.name, self.port,
                 extra={"service": self.name})
        return self.port

    async def become_ready(self) -> None:
        """Run the start-up hooks, then serve."""
        for hook in self.startup_hooks:
            await hook()
        if self._draining:
            return
        _freeze_startup_heap()
        self.lifecycle.refusal = None
        await self._set_health(self._serving_status())
        log.info("%s serving on port %s%s", self.name, self.port,
                 f" (health NOT_SERVING: {', '.join(sorted(self.unreachable))} unreachable)"
                 if self.unreachable else "", extra={"service": self.name})

    async def drain(self, grace_seconds: float | None = None) -> None:
        """Graceful shutdown: health off, refuse new calls, let in-flight ones finish."""
        if self._draining:
            await self._stopped.wait()
            return
        self._draining = True
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        log.info("%s draining (grace %.1fs)", self.name, grace, extra={"service": self.name})
        await self.health.enter_graceful_shutdown()
        if self.drain_delay_seconds > 0:
            await asyncio.sleep(self.drain_delay_seconds)
        self.lifecycle.refusal = self.lifecycle.DRAINING
        self.lifecycle.draining.set()
        try:
            if self.lifecycle.in_flight:
                async with asyncio.timeout(grace):
                    await self.lifecycle.wait_idle()
        except TimeoutError:
            log.warning("%s: %d calls still running after the %.1fs grace; cancelling",
                        self.name, self.lifecycle.in_flight, grace,
                        extra={"service": self.name})
        # Calls grpc accepted but the interceptor has not counted yet (they are being
        # refused UNAVAILABLE, which clients retry elsewhere, or are about to be) finish
        # within STOP_GRACE_SECONDS; stop(0) would cancel them, and a client cannot tell
        # whether a CANCELLED write happened. stop() returns as soon as none is left.
        await self.server.stop(min(STOP_GRACE_SECONDS, grace) if grace > 0 else 0)
        for hook in reversed(self.shutdown_hooks):
            try:
                await hook()
            except Exception:  # noqa: BLE001 - shutdown goes on
                log.exception("%s: shutdown hook failed", self.name)
        self.telemetry.shutdown()
        self._stopped.set()
        log.info("%s stopped", self.name, extra={"service": self.name})
