"""Wiring of the link broker: settings -> store -> constellation -> broker -> servicers -> server.

The broker calls the orbit service (Propagate, ITRF, for the constellation group) for
geometry and the provisioning service (CheckEntitlement, WatchEvents) for entitlements and
revocations. Start-up hooks, in order: migrations (shared), gateway seeding, the revocation
follower. Tests may pass other targets for both dependencies.
"""

from __future__ import annotations

import time
from pathlib import Path

from skybridge.linkbroker.v1 import linkbroker_pb2, linkbroker_pb2_grpc
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc
from skybridge.provisioning.v1 import provisioning_pb2, provisioning_pb2_grpc

from shared.clients.entitlements import EntitlementChecker
from shared.config import Settings
from shared.db import FastReads
from shared.service import ServiceKit

from .api import LinkBrokerServicer
from .broker import LinkBroker
from .capacity_model import DEFAULT_CAPACITY_MODEL, CapacityModel
from .ephemeris import OrbitConstellationSource
from .revocation import RevocationFollower
from .settings import BrokerSettings
from .store import Store

MIGRATIONS = Path(__file__).parent / "migrations"
#: Geometry blocks of tens of MB come and go under the memory budget: the process keeps
#: glibc from holding freed ones (shared.runner applies it; see shared.malloc).
BOUND_MALLOC = True

SERVICE = linkbroker_pb2.DESCRIPTOR.services_by_name["LinkBrokerService"]
ORBIT_SERVICE = orbit_pb2.DESCRIPTOR.services_by_name["OrbitService"]
PROVISIONING_SERVICE = provisioning_pb2.DESCRIPTOR.services_by_name["ProvisioningService"]
CLIENT_SCOPES = ("orbit.read", "provisioning.entitlements", "provisioning.events")


async def build(settings: Settings, *, port: int | None = None, span_processors=(),
                orbit_target: str | None = None, provisioning_target: str | None = None,
                clock=None, broker_settings: BrokerSettings | None = None,
                capacity: CapacityModel | None = None) -> ServiceKit:
    clock = clock or time.time
    broker_settings = broker_settings or BrokerSettings.from_env()
    kit = ServiceKit.create("linkbroker", settings, client_scopes=CLIENT_SCOPES,
                            span_processors=span_processors, port=port)
    kit.use_store(MIGRATIONS)
    orbit = orbit_pb2_grpc.OrbitServiceStub(
        kit.channels.channel("orbit", [ORBIT_SERVICE], target=orbit_target))
    provisioning = provisioning_pb2_grpc.ProvisioningServiceStub(
        kit.channels.channel("provisioning", [PROVISIONING_SERVICE],
                             target=provisioning_target))
    fast = None
    if not kit.location.is_sqlite:
        fast = FastReads.for_store(kit.engine, kit.location, size=8)
        kit.server.on_shutdown(fast.close)
    store = Store(kit.engine, clock, fast)
    source = OrbitConstellationSource(orbit, broker_settings.constellation_group, kit.run_cpu)
    broker = LinkBroker(store, broker_settings, capacity or DEFAULT_CAPACITY_MODEL, source,
                        kit.run_cpu, clock)
    follower = RevocationFollower(provisioning, broker, broker_settings.feed_retry_seconds)
    kit.server.add(LinkBrokerServicer(broker, EntitlementChecker(provisioning)),
                   linkbroker_pb2_grpc.add_LinkBrokerServiceServicer_to_server, SERVICE)
    kit.server.on_startup(broker.start)
    kit.server.on_startup(follower.start)
    kit.server.on_shutdown(follower.stop)
    kit.server.on_shutdown(broker.stop)
    kit.broker = broker
    kit.revocation = follower

    # --- ground-station contacts (services/linkbroker/contacts*.py) -----------------------
    # Ground stations are reference data (like the regions): the defaults are inserted at
    # every start when missing, after the migrations, whatever SKYBRIDGE_SEED says.
    from skybridge.linkbroker.v1 import contacts_pb2, contacts_pb2_grpc

    from .contact_store import ContactStore
    from .contacts import DEFAULT_GROUND_STATIONS
    from .contacts_api import GroundStationServicer

    contact_store = ContactStore(kit.sessions, is_sqlite=kit.location.is_sqlite, clock=clock)
    kit.server.add(GroundStationServicer(contact_store, orbit, clock=clock),
                   contacts_pb2_grpc.add_GroundStationServiceServicer_to_server,
                   contacts_pb2.DESCRIPTOR.services_by_name["GroundStationService"])

    async def seed_ground_stations() -> None:
        await contact_store.seed_ground_stations(DEFAULT_GROUND_STATIONS)

    kit.server.on_startup(seed_ground_stations)
    kit.contact_store = contact_store
    # --- end of ground-station contacts ---------------------------------------------------
    kit.orbit_stub = orbit
    kit.clock = clock
    return kit
