"""What a service's `server.py` wires together: settings -> store -> domain -> servicer -> server.

    kit = ServiceKit.create("orbit", settings, client_scopes=())
    kit.use_store(Path(__file__).parent / "migrations")   # engine + migrate on start
    servicer = OrbitServicer(Catalog(kit.sessions), kit.executor)
    kit.server.add(servicer, orbit_pb2_grpc.add_OrbitServiceServicer_to_server,
                   orbit_pb2.DESCRIPTOR.services_by_name["OrbitService"])
    return kit

The kit owns the shared pieces a service needs (telemetry, token verifier, its own service
token for outgoing calls, client channels, a thread pool for CPU work, the store) and
registers their start-up and shutdown hooks on the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, TypeVarTuple, cast

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import SpanProcessor
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import auth, db, migrations
from shared.channels import ChannelFactory
from shared.config import Settings
from shared.server import DEFAULT_MAX_REQUEST_BYTES, GrpcService
from shared.store_probe import StoreProbe
from shared.telemetry import Telemetry

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@dataclass
class ServiceKit:
    name: str
    settings: Settings
    telemetry: Telemetry
    server: GrpcService
    channels: ChannelFactory
    executor: ThreadPoolExecutor
    minter: auth.TokenMinter | None
    location: db.StoreLocation | None = None
    engine: AsyncEngine | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    probe: StoreProbe | None = None
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def create(cls, name: str, settings: Settings, *, client_scopes: Sequence[str] = (),
               span_processors: Sequence[SpanProcessor] = (),
               metric_readers: Sequence[MetricReader] = (),
               port: int | None = None,
               max_request_bytes: int | None = None) -> ServiceKit:
        telemetry = Telemetry(name, span_processors=span_processors,
                              metric_readers=metric_readers)
        verifier = auth.verifier_from_settings(settings)
        minter = None
        credentials = None
        if settings.jwt_private_key_path.exists() or settings.dev_keys:
            minter = auth.minter_from_settings(settings)
            credentials = auth.ServiceCredentials(minter, name, client_scopes)
        address = f"{settings.host}:{settings.port(name) if port is None else port}"
        server = GrpcService(
            name=name,
            address=address,
            verifier=verifier,
            telemetry=telemetry,
            grace_seconds=settings.grace_seconds,
            drain_delay_seconds=settings.drain_delay_seconds,
            max_streams_per_caller=settings.max_streams_per_caller,
            max_request_bytes=max_request_bytes or DEFAULT_MAX_REQUEST_BYTES,
        )
        kit = cls(
            name=name,
            settings=settings,
            telemetry=telemetry,
            server=server,
            channels=ChannelFactory(settings, telemetry, credentials),
            executor=ThreadPoolExecutor(settings.cpu_threads, thread_name_prefix=f"{name}-cpu"),
            minter=minter,
        )
        server.on_shutdown(kit._close)
        return kit

    def use_store(self, migrations_dir: Path | None) -> None:
        """Open this service's store; run its migrations when the server starts."""
        self.location = db.locate(self.settings.database_url, self.name,
                                  self.settings.db_schema_prefix)
        self.engine = db.create_engine(self.location)
        self.telemetry.instrument_engine(self.engine)
        self.sessions = db.session_factory(self.engine)
        if migrations_dir is not None and self.settings.migrate_on_start:
            async def migrate() -> None:
                # use_store set both before it registered this hook.
                await migrations.upgrade(cast(AsyncEngine, self.engine),
                                         cast(db.StoreLocation, self.location), migrations_dir)

            self.server.on_startup(migrate)

        async def reachability(reachable: bool) -> None:
            await self.server.set_dependency("database", reachable)

        self.probe = StoreProbe(self.name, self.engine, reachability,
                                interval_s=self.settings.db_probe_seconds)
        self.server.interceptor.errors.outage_listeners.append(self.probe.suspect)

        async def start_probe() -> None:
            cast(StoreProbe, self.probe).start()  # set above, before this hook

        self.server.on_startup(start_probe)

    async def run_cpu(self, function: Callable[[*Ts], T], *args: *Ts) -> T:
        """Run CPU-bound work (numpy releases the GIL) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.probe is not None:
            await self.probe.stop()
        await self.channels.close()
        if self.engine is not None:
            await self.engine.dispose()
        self.executor.shutdown(wait=False, cancel_futures=True)
