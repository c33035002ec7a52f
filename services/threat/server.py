"""Wiring of the threat service: settings -> store -> ephemeris -> engine -> servicer -> server.

Start-up hooks, in order: migrations (shared), then the engine's resume (live tracks and
counters loaded, unprocessed stored detections replayed). Shutdown: the engine writes its
last snapshot before the store closes. Sensor positions come from the orbit service
(`Propagate`, ITRF) through `OrbitEphemeris`; tests may pass another `SensorEphemeris`.
"""

from __future__ import annotations

from pathlib import Path

from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc
from skybridge.threat.v1 import threat_pb2, threat_pb2_grpc

from shared.config import Settings
from shared.service import ServiceKit

from .api import ThreatServicer
from .engine import ThreatEngine
from .ephemeris import OrbitEphemeris, SensorEphemeris
from .settings import ThreatSettings
from .store import Store

SERVICE = threat_pb2.DESCRIPTOR.services_by_name["ThreatService"]
ORBIT_SERVICE = orbit_pb2.DESCRIPTOR.services_by_name["OrbitService"]
MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: Settings, *, port: int | None = None,
                threat_settings: ThreatSettings | None = None,
                ephemeris: SensorEphemeris | None = None, span_processors=(),
                orbit_target: str | None = None) -> ServiceKit:
    threat_settings = threat_settings or ThreatSettings.from_env()
    # A detection is at most ~60 bytes on the wire (offset, sensor id, line of sight, noise,
    # intensity), so a batch of `max_batch` fits in 64 bytes each and some slack.
    kit = ServiceKit.create("threat", settings, client_scopes=("orbit.read",),
                            span_processors=span_processors, port=port,
                            max_request_bytes=threat_settings.max_batch * 64 + 1024 * 1024)
    kit.use_store(MIGRATIONS)
    if ephemeris is None:
        channel = kit.channels.channel("orbit", [ORBIT_SERVICE], target=orbit_target)
        ephemeris = OrbitEphemeris(orbit_pb2_grpc.OrbitServiceStub(channel),
                                   threat_settings.sensor_satellites, threat_settings.epoch,
                                   group=threat_settings.sensor_group,
                                   step_s=threat_settings.ephemeris_step_s,
                                   window_s=threat_settings.ephemeris_window_s)
    store = Store(kit.sessions, n_models=3)
    engine = ThreatEngine(threat_settings, store, ephemeris, kit.run_cpu)
    store.n_models = len(engine.model_names)
    kit.server.add(ThreatServicer(engine, store, threat_settings),
                   threat_pb2_grpc.add_ThreatServiceServicer_to_server, SERVICE)
    kit.server.on_startup(engine.start)
    kit.server.on_shutdown(engine.stop)
    kit.threat_engine = engine
    return kit
