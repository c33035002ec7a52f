"""Helpers for the threat service tests: a real server on loopback, a sensor ephemeris
from the simulator's constellation (a test double of the orbit service's positions), and
calls."""

from __future__ import annotations

import grpc
import numpy as np
from skybridge.threat.v1 import threat_pb2_grpc

from services.threat.ephemeris import EphemerisGrid, SensorEphemeris
from services.threat.server import build
from services.threat.settings import TRACKER_EPOCH, ThreatSettings


class ConstellationEphemeris(SensorEphemeris):
    """Sensor states from the simulator's circular orbits (the same ones that made the
    detections); velocities by central differences."""

    def __init__(self, constellation, step_s: float = 10.0, window_s: float = 600.0):
        super().__init__(TRACKER_EPOCH, constellation.n_sats, step_s, window_s)
        self.constellation = constellation
        self.fetches = 0

    async def fetch_grid(self, start_s, step_s, count):
        self.fetches += 1
        t = start_s + step_s * np.arange(count)
        pos = self.constellation.positions_ecef(t)
        vel = (self.constellation.positions_ecef(t + 0.5)
               - self.constellation.positions_ecef(t - 0.5))
        return EphemerisGrid(start_s, step_s, pos, vel)


class Running:
    def __init__(self, kit, channel):
        self.kit = kit
        self.channel = channel
        self.stub = threat_pb2_grpc.ThreatServiceStub(channel)
        self.engine = kit.threat_engine

    async def stop(self, grace: float = 0.0) -> None:
        await self.channel.close()
        await self.kit.server.drain(grace)


async def start_threat(settings, scenario, *, threat_settings: ThreatSettings | None = None,
                       span_processors=()) -> Running:
    kit = await build(settings, port=0, threat_settings=threat_settings or ThreatSettings(),
                      ephemeris=ConstellationEphemeris(scenario.constellation),
                      span_processors=span_processors)
    await kit.server.start()
    await kit.server.become_ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    return Running(kit, channel)


async def failure(call) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded")


async def requests_of(items):
    for item in items:
        yield item
