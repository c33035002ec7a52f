"""Wiring for the orbit service: settings -> store -> domain -> servicer -> server."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import grpc
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc

from services.orbit.api import MAX_IMPORT_BYTES, OrbitServicer
from services.orbit.catalog import GroupKind
from services.orbit.store import Catalog
from shared.config import Settings
from shared.malloc import bound_malloc_retention
from shared.service import ServiceKit

log = logging.getLogger("skybridge.orbit")

SERVICE = orbit_pb2.DESCRIPTOR.services_by_name["OrbitService"]

#: What `make run` seeds into an empty catalog: (group id, display name, preset, kind).
SEED_GROUPS = (
    ("starlink-gen1", "Starlink Gen1 (generated Walker shells)", "starlink_gen1",
     GroupKind.CONSTELLATION),
    ("tracking-sensors", "Missile-tracking sensor satellites", "tracking_sensors",
     GroupKind.SENSORS),
)


def settings_bound_malloc() -> bool:
    """`SKYBRIDGE_ORBIT_MALLOC_TRIM=1` turns :func:`bound_malloc_retention` on."""
    import os

    return os.environ.get("SKYBRIDGE_ORBIT_MALLOC_TRIM", "") == "1"


def _serialize(message) -> bytes:
    """Propagate's chunks and VisibleSatellites' answers are serialized in the CPU pool
    (``bytes``); the rest are messages."""
    if isinstance(message, bytes):
        return message
    return message.SerializeToString()


class _PreserializedPropagate:
    """Stands in for the server while the generated code registers the servicer, giving
    Propagate and VisibleSatellites a response serializer that passes pre-serialized
    answers through (tens of MB each: serializing them on the event loop would stall it
    and copy them twice more; for 10,000 points at a 25 deg mask, 13 MB, upb took ~10 ms
    on the loop against one ~2 ms join in the pool)."""

    def __init__(self, server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass  # rebuilt from the patched handlers below

    def add_registered_method_handlers(self, service_name: str, handlers: dict) -> None:
        handler = handlers["Propagate"]
        visible = handlers["VisibleSatellites"]
        handlers = dict(
            handlers,
            Propagate=grpc.unary_stream_rpc_method_handler(
                handler.unary_stream, handler.request_deserializer, _serialize),
            VisibleSatellites=grpc.unary_unary_rpc_method_handler(
                visible.unary_unary, visible.request_deserializer, _serialize))
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service_name, handlers),))
        self._server.add_registered_method_handlers(service_name, handlers)


def add_orbit_service(servicer, server) -> None:
    """``add_OrbitServiceServicer_to_server`` with pre-serialized Propagate chunks and
    VisibleSatellites answers."""
    orbit_pb2_grpc.add_OrbitServiceServicer_to_server(servicer, _PreserializedPropagate(server))


async def build(settings: Settings, *, port: int | None = None, span_processors=(),
                warm: bool = True) -> ServiceKit:
    if settings_bound_malloc():
        bound_malloc_retention()
    # An import is up to 64 MiB of text; every other request is far below that.
    kit = ServiceKit.create("orbit", settings, span_processors=span_processors, port=port,
                            max_request_bytes=MAX_IMPORT_BYTES + 1024 * 1024)
    kit.use_store(Path(__file__).parent / "migrations")
    catalog = Catalog(kit.sessions)
    servicer = OrbitServicer(catalog, kit.run_cpu)
    kit.server.add(servicer, add_orbit_service, SERVICE)

    async def seed_and_warm() -> None:
        if settings.seed:
            epoch = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            added = await servicer.app.seed(SEED_GROUPS, epoch)
            if added:
                log.info("orbit: seeded %d generated satellites", added,
                         extra={"service": "orbit"})
        if warm:
            await servicer.warm()

    kit.server.on_startup(seed_and_warm)
    kit.servicer = servicer  # type: ignore[attr-defined]  # for tests and benchmarks
    return kit
