"""A threat scenario replayed into the running suite over gRPC, for the defense view.

The suite's threat service takes its sensor positions from the orbit service (Propagate of
its sensor group), so the detections must be made from those same positions: this module
imports a four-satellite sensor train (OMM JSON, ~1,000 km, 81 deg, two planes 14 deg apart
in RAAN, 16 deg apart along the orbit) into the group the suite's threat service was told
to use (`SKYBRIDGE_THREAT_SENSOR_GROUP`), asks orbit where the train is, launches one
simulated ballistic missile (tools/threatsim) from under the train's centre, builds the
detections from the orbit service's own sensor positions (the simulator's `constellation`
is any object with `positions_ecef`), creates a defended asset at the true impact point,
and ingests the detections in 5 s batches with IngestDetections.

Times: the launch is `LEAD_S` seconds before now, so every detection lies in the past of
the server clock (the service refuses detections more than 60 s ahead) and after the
tracker epoch. ECEF is the orbit service's ITRF, metres.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
from skybridge.common.v1 import common_pb2
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc
from skybridge.threat.v1 import threat_pb2, threat_pb2_grpc

from services.threat.sensors import IRSensorModel
from shared.clients.orbit import propagate
from shared.geodesy import ecef_to_geodetic
from tools.threatsim import scenario as sc
from tools.threatsim.ingest import batch_request, chunked

#: The orbit group the suite's threat service reads its sensors from (set at suite start).
SENSOR_GROUP_ID = "console-sensors"
#: Catalog numbers of the train (above the generated constellations' 900000 range).
FIRST_SENSOR_NUMBER = 990_001
#: Seconds of flight replayed, and how long before now the missile is launched.
DURATION_S = 420.0
LEAD_S = 480.0
#: The mean motion of a circular orbit 1,000 km up (a = 7,378.137 km), rev/day.
MEAN_MOTION_1000KM = float(np.sqrt(398_600.4418 / 7_378.137 ** 3) * 86_400 / (2 * np.pi))


@dataclass(frozen=True)
class Replayed:
    """What was ingested, as the service answered."""

    accepted: int
    #: Names of the live (confirmed or coasting) tracks after the replay, from ListTracks.
    tracks: frozenset[str]
    #: Those of them with an impact prediction.
    with_impact: frozenset[str]
    asset: str


def train_omm(epoch: datetime) -> str:
    """Four OMM records (CelesTrak JSON form) of a sensor train at `epoch`."""
    records = []
    for plane in range(2):
        for slot in range(2):
            number = FIRST_SENSOR_NUMBER + 2 * plane + slot
            records.append({
                "OBJECT_NAME": f"CONSOLE-SENSOR-{plane}{slot}",
                "OBJECT_ID": f"2026-900{chr(65 + 2 * plane + slot)}",
                "EPOCH": epoch.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                "MEAN_MOTION": MEAN_MOTION_1000KM,
                "ECCENTRICITY": 0.0001,
                "INCLINATION": 81.0,
                "RA_OF_ASC_NODE": 30.0 + 14.0 * plane,
                "ARG_OF_PERICENTER": 0.0,
                "MEAN_ANOMALY": 100.0 + 16.0 * slot + 8.0 * plane,
                "EPHEMERIS_TYPE": 0,
                "CLASSIFICATION_TYPE": "U",
                "NORAD_CAT_ID": number,
                "ELEMENT_SET_NO": 999,
                "REV_AT_EPOCH": 1,
                "BSTAR": 0.0,
                "MEAN_MOTION_DOT": 0.0,
                "MEAN_MOTION_DDOT": 0.0,
            })
    return json.dumps(records)


class OrbitSensors:
    """The simulator's sensor geometry from the orbit service's positions on its frame grid."""

    def __init__(self, frames_s: np.ndarray, positions_m: np.ndarray):
        self.frames_s = frames_s
        self.positions_m = positions_m  # (F, S, 3) ECEF m
        self.n_sats = positions_m.shape[1]

    def positions_ecef(self, t_s: np.ndarray) -> np.ndarray:
        index = np.rint(np.asarray(t_s, float) / (self.frames_s[1] - self.frames_s[0]))
        index = np.clip(index.astype(int), 0, len(self.frames_s) - 1)
        return self.positions_m[index]


def _geodetic(ecef_m: np.ndarray) -> tuple[float, float]:
    lat, lon, _ = ecef_to_geodetic(np.asarray(ecef_m, float).reshape(1, 3))
    return float(np.ravel(lat)[0]), float(np.ravel(lon)[0])


async def import_sensor_train(orbit_channel: grpc.aio.Channel, write_metadata) -> list[int]:
    stub = orbit_pb2_grpc.OrbitServiceStub(orbit_channel)
    epoch = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    answer = await stub.ImportElementSets(orbit_pb2.ImportElementSetsRequest(
        text=train_omm(epoch), format=orbit_pb2.ImportElementSetsRequest.FORMAT_OMM_JSON,
        group_id=SENSOR_GROUP_ID, group_display_name="Console test sensor train",
        request_id="console-sensor-train"), metadata=write_metadata, timeout=60)
    assert answer.rejected_count == 0, answer.rejected_records
    return [FIRST_SENSOR_NUMBER + i for i in range(4)]


async def replay(orbit_channel: grpc.aio.Channel, threat_channel: grpc.aio.Channel, *,
                 read_metadata, write_metadata, defense_metadata, seed: int = 7) -> Replayed:
    numbers = await import_sensor_train(orbit_channel, write_metadata)
    orbit = orbit_pb2_grpc.OrbitServiceStub(orbit_channel)
    threat = threat_pb2_grpc.ThreatServiceStub(threat_channel)
    model = IRSensorModel()
    launch = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=LEAD_S)
    frames = np.arange(0.0, DURATION_S + 1e-9, model.frame_period_s)
    states = await propagate(orbit, catalog_numbers=numbers, start=launch,
                             step_s=model.frame_period_s, count=len(frames), frame="itrf",
                             metadata=read_metadata, rpc_timeout=120)
    order = np.argsort(states.catalog_numbers)  # the service's sensor ids follow this order
    positions_m = np.asarray(states.positions)[:, order] * 1e3
    # The train's centre at mid-flight, straight down: the launch site.
    centre = positions_m[len(frames) // 2].mean(axis=0)
    lat, lon = _geodetic(centre / np.linalg.norm(centre) * 6_371e3)
    spec = sc.BallisticSpec(launch_lat_deg=lat, launch_lon_deg=lon, azimuth_deg=60.0,
                            range_km=1_500.0, launch_time_s=0.0, beta_kg_m2=6_000.0)
    scenario = sc.simulate(sc.ScenarioConfig(
        seed=seed, duration_s=DURATION_S, ballistic=(spec,), sensor=model,
        constellation=OrbitSensors(frames, positions_m), epoch=launch))  # type: ignore[arg-type]
    impact_lat, impact_lon = _geodetic(scenario.targets[0].impact_ecef_m)
    asset = await threat.CreateDefendedAsset(threat_pb2.CreateDefendedAssetRequest(
        defended_asset=threat_pb2.DefendedAsset(
            display_name="Console test asset",
            location=common_pb2.GeodeticPoint(latitude_deg=impact_lat, longitude_deg=impact_lon),
            radius_m=150_000.0),
        request_id=f"console-asset-{seed}"), metadata=defense_metadata, timeout=60)

    async def batches():
        for i, part in enumerate(chunked(scenario.detections, 5.0)):
            yield batch_request(part, request_id=f"console-replay-{seed}-{i}")

    answer = await threat.IngestDetections(batches(), metadata=defense_metadata, timeout=240)
    live = await threat.ListTracks(threat_pb2.ListTracksRequest(
        page_size=1000, states=[threat_pb2.Track.STATE_CONFIRMED, threat_pb2.Track.STATE_COASTING]),
        metadata=defense_metadata, timeout=60)
    return Replayed(
        accepted=answer.accepted_detections,
        tracks=frozenset(t.name for t in live.tracks),
        with_impact=frozenset(t.name for t in live.tracks if t.HasField("impact")),
        asset=asset.defended_asset.name)
