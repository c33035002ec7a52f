"""Wiring of the provisioning service: settings -> store -> servicer -> server.

Start-up hooks, in order: migrations (shared), seeding of the defaults when `settings.seed`
(the Microsoft and SpaceX partners and three plans; idempotent, safe for two replicas
starting at once), then the background tasks of this replica: the operation worker (applies
queued plan/quantity changes and cancellations; any replica may, each applies once) and the
sweeper (lapses subscriptions whose activation window closed, purges idempotency keys older
than 48 hours).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from skybridge.provisioning.v1 import provisioning_pb2, provisioning_pb2_grpc
from sqlalchemy.ext.asyncio import create_async_engine

from shared import db
from shared.config import EnvReader, Settings
from shared.db import FastReads
from shared.errors import AlreadyExists
from shared.service import ServiceKit
from shared.wakeup import PgWakeup, woken

from .api import ProvisioningServicer
from .app import cosell, housekeeping, operations
from .app.unit_of_work import SYSTEM, Request, UnitOfWork
from .domain import PlanTerms
from .store import Store

log = logging.getLogger("skybridge.provisioning")

SERVICE = provisioning_pb2.DESCRIPTOR.services_by_name["ProvisioningService"]
MIGRATIONS = Path(__file__).parent / "migrations"

SEED_PARTNERS = (
    ("microsoft", "Microsoft", "cosell@microsoft.com"),
    ("spacex", "SpaceX Starlink", "cosell@spacex.com"),
)
SEED_PLANS = (
    ("gov-priority-200", "Government Priority 200",
     PlanTerms(200.0, "GOVERNMENT_PRIORITY", 1, 500, "USD", 1500, 0, ())),
    ("enterprise-100", "Enterprise 100",
     PlanTerms(100.0, "ENTERPRISE", 1, 1000, "USD", 500, 0, ())),
    ("best-effort-50", "Best Effort 50",
     PlanTerms(50.0, "BEST_EFFORT", 1, 100, "USD", 120, 0, ())),
)


async def seed(uow: UnitOfWork) -> None:
    """Create the default partners and plans that are missing (idempotent)."""
    for partner_id, display_name, email in SEED_PARTNERS:
        with contextlib.suppress(AlreadyExists):
            await uow.run(Request(SYSTEM, "seed", "", partner_id.encode(), lambda _: b""),
                          lambda tx, p=partner_id, d=display_name, e=email:
                          cosell.create_partner(tx, p, d, e))
    for plan_id, display_name, terms in SEED_PLANS:
        with contextlib.suppress(AlreadyExists):
            await uow.run(Request(SYSTEM, "seed", "", plan_id.encode(), lambda _: b""),
                          lambda tx, p=plan_id, d=display_name, t=terms:
                          cosell.create_plan(tx, p, d, t))


async def _forever(name: str, step: Callable, wake: asyncio.Event | None,
                   period: float) -> None:
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a background task keeps going
            log.exception("provisioning %s failed; retrying", name)
        if wake is None:
            await asyncio.sleep(period)
            continue
        await woken(wake, period)
        wake.clear()


#: PostgreSQL connections of one replica: a transaction holds one for a few round trips,
#: and on two cores more connections than this only queue inside PostgreSQL.
POOL_SIZE = 8
#: Autocommit connections of one replica for entitlement checks (one query each).
READ_POOL_SIZE = 4
#: Autocommit connections of one replica for one-statement mutations (`Store.fast_writes`).
WRITE_POOL_SIZE = 8


def _own_engine(kit: ServiceKit, pool_size: int) -> None:
    """This service's PostgreSQL engine without the pool's ping on every checkout (one round
    trip per transaction and per entitlement check): a connection the server dropped fails its
    call once and is discarded (SQLAlchemy invalidates the pool on a disconnect error)."""
    shared_engine = kit.engine
    kit.engine = create_async_engine(
        kit.location.url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
        pool_pre_ping=False,
        connect_args={"options": f"-csearch_path={kit.location.schema}",
                      "application_name": db.application_name(kit.location.schema)})
    kit.telemetry.instrument_engine(kit.engine)
    kit.sessions = db.session_factory(kit.engine)
    if kit.probe is not None:
        kit.probe.engine = kit.engine

    async def dispose_shared() -> None:
        await shared_engine.dispose()

    kit.server.on_shutdown(dispose_shared)


async def build(settings: Settings, *, port: int | None = None,
                clock: Callable[[], datetime] | None = None,
                background: bool = True) -> ServiceKit:
    """The provisioning service, ready to start. `clock` and `background` are for tests."""
    read = EnvReader()
    worker_period = read.float("PROVISIONING_WORKER_SECONDS", 1.0, minimum=0.05)
    sweep_period = read.float("PROVISIONING_SWEEP_SECONDS", 30.0, minimum=0.1)
    kit = ServiceKit.create("provisioning", settings, port=port)
    kit.use_store(MIGRATIONS)
    if not kit.location.is_sqlite:
        _own_engine(kit, read.int("PROVISIONING_DB_POOL", POOL_SIZE, minimum=1, maximum=64))
    store = Store(kit.engine, kit.sessions, clock)
    if not kit.location.is_sqlite:
        store.fast_reads = FastReads(
            kit.engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            f"-csearch_path={kit.location.schema}",
            read.int("PROVISIONING_READ_POOL", READ_POOL_SIZE, minimum=1, maximum=64))
        kit.server.on_shutdown(store.fast_reads.close)
        store.fast_writes = FastReads.for_store(
            kit.engine, kit.location,
            read.int("PROVISIONING_WRITE_POOL", WRITE_POOL_SIZE, minimum=1, maximum=64))
        kit.server.on_shutdown(store.fast_writes.close)
        store.wakeup = PgWakeup(
            kit.engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            PgWakeup.channel_for(kit.location.schema), store.wake_events)
        kit.server.on_startup(store.wakeup.start)
        kit.server.on_shutdown(store.wakeup.close)
    kit.store = store  # for tests and the benchmark
    uow = UnitOfWork(store)
    kit.uow = uow
    kit.server.add(ProvisioningServicer(store),
                   provisioning_pb2_grpc.add_ProvisioningServiceServicer_to_server, SERVICE)
    tasks: list[asyncio.Task] = []

    if settings.seed:
        async def seed_defaults() -> None:
            await seed(uow)

        kit.server.on_startup(seed_defaults)

    if background:
        async def start_background() -> None:
            tasks.append(asyncio.create_task(_forever(
                "operation worker", lambda: operations.run_pending(uow), store.operations_queued,
                worker_period)))
            tasks.append(asyncio.create_task(_forever(
                "sweeper", lambda: housekeeping.sweep(uow), None, sweep_period)))

        async def stop_background() -> None:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        kit.server.on_startup(start_background)
        kit.server.on_shutdown(stop_background)
    return kit
