"""The threat service with a real orbit server (sensor positions over gRPC), and what the
service lets out: no track data in span attributes, logs, or calls to other services."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from skybridge.threat.v1 import threat_pb2, threat_pb2_grpc

from services.threat.detections import Detections
from services.threat.settings import TRACKER_EPOCH, ThreatSettings
from services.threat.store import detection_batches, unpack
from tests.conftest import bearer
from tests.threat.support import requests_of, start_threat
from tools.threatsim.ingest import batch_request

ORBIT_MISSING = importlib.util.find_spec("services.orbit.server") is None
needs_orbit = pytest.mark.skipif(ORBIT_MISSING, reason="the orbit service (services/orbit/"
                                 "server.py) has not landed yet")


async def _orbit(settings, spans):
    from services.orbit.server import build

    kit = await build(replace(settings, seed=True), port=0, warm=False,
                      span_processors=[SimpleSpanProcessor(spans)])
    await kit.server.start()
    await kit.server.become_ready()
    return kit


@needs_orbit
async def test_sensor_positions_come_from_the_orbit_service(settings, minter):
    from skybridge.orbit.v1 import orbit_pb2_grpc

    from services.threat.server import build
    from shared.clients.orbit import propagate

    orbit_spans = InMemorySpanExporter()
    orbit = await _orbit(settings, orbit_spans)
    threat_spans = InMemorySpanExporter()
    threat = await build(settings, port=0, threat_settings=ThreatSettings(),
                         orbit_target=f"127.0.0.1:{orbit.server.port}",
                         span_processors=[SimpleSpanProcessor(threat_spans)])
    await threat.server.start()
    await threat.server.become_ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{threat.server.port}")
    orbit_channel = grpc.aio.insecure_channel(f"127.0.0.1:{orbit.server.port}")
    try:
        stub = threat_pb2_grpc.ThreatServiceStub(channel)
        sensors = await stub.ListSensors(threat_pb2.ListSensorsRequest(),
                                         metadata=bearer(minter, "defense"))
        satellites = [s.satellite for s in sensors.sensors]
        assert len(satellites) == 4  # the orbit service's seeded tracking-sensors group
        numbers = [int(s.split("/")[1]) for s in satellites]

        # lines of sight from each sensor to a point 300 km up below sensor 1, an hour ago
        when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        truth = await propagate(orbit_pb2_grpc.OrbitServiceStub(orbit_channel),
                                catalog_numbers=numbers, start=when, step_s=1.0, count=20,
                                frame="itrf", metadata=bearer(minter, "orbit.read"))
        sensor_m = truth.positions * 1e3  # (20, 4, 3)
        target = sensor_m[0, 0] / np.linalg.norm(sensor_m[0, 0]) * 6.68e6
        t_s = (when - TRACKER_EPOCH).total_seconds() + np.arange(20)
        los = target - sensor_m
        los /= np.linalg.norm(los, axis=-1, keepdims=True)
        n = 20 * 4
        dets = Detections(np.repeat(t_s, 4), np.tile(np.arange(4), 20),
                          sensor_m.reshape(n, 3), los.reshape(n, 3), np.full(n, 2e-5),
                          np.ones(n), np.full(n, -1), TRACKER_EPOCH)
        answer = await stub.IngestDetections(requests_of([batch_request(dets)]),
                                             metadata=bearer(minter, "defense"))
        assert answer.accepted_detections == n
        async with threat.sessions() as session:
            blob = (await session.execute(detection_batches.select())).first().payload
        stored = unpack(blob).reshape(-1, 10)
        order = np.lexsort((stored[:, 1], stored[:, 0]))
        # the service's own positions (Propagate on a 10 s grid, Hermite-interpolated)
        # agree with the orbit service's direct answer to well under a metre
        assert np.max(np.abs(stored[order, 2:5] - dets.sorted().sensor_position_ecef_m)) < 0.5

        # the threat service called the orbit service for catalog numbers and times only
        methods = {s.name for s in orbit_spans.get_finished_spans()
                   if s.kind.name == "SERVER"}
        assert methods <= {"/skybridge.orbit.v1.OrbitService/ListSatellites",
                           "/skybridge.orbit.v1.OrbitService/Propagate"}
        client_calls = {s.name for s in threat_spans.get_finished_spans()
                        if s.kind.name == "CLIENT" and s.attributes.get("rpc.system") == "grpc"}
        assert "/skybridge.orbit.v1.OrbitService/Propagate" in client_calls
        assert client_calls <= {"/skybridge.orbit.v1.OrbitService/ListSatellites",
                                "/skybridge.orbit.v1.OrbitService/Propagate"}
    finally:
        await channel.close()
        await orbit_channel.close()
        await threat.server.drain(0)
        await orbit.server.drain(0)


def _numbers_in(values) -> set[str]:
    out = set()
    for v in np.asarray(values, float).ravel():
        if np.isfinite(v) and abs(v) >= 1000:
            out.add(str(int(v)))  # integer metres of each coordinate
    return out


async def test_no_track_data_in_spans_or_logs(settings, minter, one_missile, caplog):
    caplog.set_level(logging.DEBUG)
    spans = InMemorySpanExporter()
    running = await start_threat(settings, one_missile, span_processors=[
        SimpleSpanProcessor(spans)])
    try:
        d = one_missile.detections
        part = d.take(d.time < 200)
        requests = [batch_request(part.take((part.time >= a) & (part.time < a + 20)))
                    for a in range(0, 200, 20)]
        await running.stub.IngestDetections(requests_of(requests),
                                            metadata=bearer(minter, "defense"))
        page = await running.stub.ListTracks(threat_pb2.ListTracksRequest(),
                                             metadata=bearer(minter, "defense"))
        assert page.tracks
        track = (await running.stub.GetTrack(threat_pb2.GetTrackRequest(
            name=page.tracks[0].name), metadata=bearer(minter, "defense"))).track
    finally:
        await running.stop()
    secret = _numbers_in(track.state_ecef[:3]) | _numbers_in(part.sensor_position_ecef_m[:50])
    secret |= {f"{v:.6f}" for v in part.los_unit_ecef[:50].ravel()}
    assert len(secret) > 50
    finished = spans.get_finished_spans()
    assert any(s.attributes.get("db.statement") for s in finished)  # SQL was traced
    for span in finished:
        for key, value in (span.attributes or {}).items():
            text = str(value)
            leaked = [s for s in secret if s in text]
            assert not leaked, (span.name, key, leaked[:3])
        for event in span.events:
            assert not [s for s in secret if s in str(event.attributes)]
    for record in caplog.records:
        text = record.getMessage()
        assert not [s for s in secret if s in text], text
