"""kill -9 of the threat service mid-ingest, then a restart on the same port: every
acknowledged detection batch is stored once and whole, and is a duplicate when re-sent.

The sensors' positions come from an orbit process (its seeded tracking-sensors group). One
writer sends one batch per IngestDetections call, one 1 s frame after the other (so that
none is LATE), each with its own request_id; a call whose outcome is unknown is re-sent
with the same batch and request_id."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
from skybridge.threat.v1 import threat_pb2, threat_pb2_grpc

from services.threat.detections import Detections
from services.threat.settings import TRACKER_EPOCH
from tests.conftest import bearer
from tests.faults.harness import HANG, POSTGRES_ONLY, Load, channel_to, rows
from tests.waiting import until
from tools.threatsim.ingest import batch_request

SERVICE = threat_pb2.DESCRIPTOR.services_by_name["ThreatService"]
BATCH = 20
#: Detections per batch: each of the 4 sensors reports this many lines of sight a frame.
PER_SENSOR = 5
_ids = itertools.count()


def detections(frame: int, start_s: float, rng: np.random.Generator) -> Detections:
    """One frame of false alarms: random lines of sight from every sensor."""
    n = 4 * PER_SENSOR
    los = rng.normal(size=(n, 3))
    los /= np.linalg.norm(los, axis=1, keepdims=True)
    return Detections(np.full(n, start_s + frame), np.repeat(np.arange(4), PER_SENSOR),
                      np.zeros((n, 3)), los, np.full(n, 2e-5), np.ones(n), np.full(n, -1),
                      TRACKER_EPOCH)


async def _one(request):
    yield request


def batch_writer(stub, meta) -> Load:
    tag = next(_ids)
    rng = np.random.default_rng(7)
    # an hour ago: within the orbit catalog's epoch range and well before the server clock
    start_s = ((datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
               - TRACKER_EPOCH).total_seconds()
    load = Load(None, workers=1)

    def call_for(worker: int, n: int):
        request = batch_request(detections(n, start_s, rng), request_id=f"d{tag}-{n}")

        def attempt():
            return stub.IngestDetections(_one(request), metadata=meta, wait_for_ready=True,
                                         timeout=HANG)

        return attempt, request

    def on_ok(request, answer) -> None:
        load.outcomes.acked[request.request_id] = (request, answer)

    load.call_for, load.on_ok = call_for, on_ok
    return load


@POSTGRES_ONLY
async def test_threat_survives_kill_9_mid_ingest(services, settings, minter, tmp_path):
    """Checks, after the load:
    - each acknowledged batch was accepted whole (no detection dropped) or was a duplicate
      of its own first attempt (a re-send after the kill);
    - the store holds exactly one detection batch per acknowledged request_id, each with
      all its detections, and one idempotency key per acknowledged request_id: no batch
      without its key, no key without its batch;
    - every acknowledged batch re-sent now is a duplicate (the keys survived the kill)."""
    orbit = await services.start("orbit")
    threat = await services.start("threat", SKYBRIDGE_ORBIT_PORT=orbit.port)
    meta = bearer(minter, "defense", tenant="skybridge", subject="sensor-feed")
    channel = channel_to(settings, "threat", SERVICE, threat.target)
    stub = threat_pb2_grpc.ThreatServiceStub(channel)
    try:
        writer = batch_writer(stub, meta).start()
        acked = writer.outcomes.acked
        assert await until(lambda: len(acked) >= BATCH, within=HANG)
        threat.kill()
        assert await threat.wait() == -9
        at_kill = len(acked)
        await threat.start()
        await threat.serving()
        assert await until(lambda: len(acked) >= at_kill + BATCH, within=HANG)
        outcomes = await writer.finish()
        assert outcomes.failed == [], outcomes.failed
        n = 4 * PER_SENSOR
        duplicates = 0
        for request_id, (_, answer) in acked.items():
            assert answer.batches == 1 and not answer.dropped, (request_id, answer)
            assert (answer.accepted_detections, answer.duplicate_batches) in ((n, 0), (0, 1))
            duplicates += answer.duplicate_batches
        stored = await rows(settings, "threat", "SELECT count FROM detection_batches")
        assert len(stored) == len(acked) and {count for (count,) in stored} == {n}
        keys = {rid for (rid,) in await rows(
            settings, "threat", "SELECT request_id FROM requests WHERE method = %s",
            ("IngestDetections",))}
        assert keys == set(acked)
        for request_id, (request, _) in acked.items():
            again = await stub.IngestDetections(_one(request), metadata=meta, timeout=HANG)
            assert (again.duplicate_batches, again.accepted_detections) == (1, 0), request_id
    finally:
        await channel.close()
    replayed = re.findall(r"resumed: (\d+) live tracks, (\d+) detections replayed",
                          threat.output())
    figures = {"acknowledged": len(acked), "acknowledged_before_kill": at_kill,
               "duplicates_after_resend": duplicates, "detections_per_batch": n,
               "batches_stored": len(stored), "resumed_live_tracks_and_replayed": replayed,
               "attempts": outcomes.summary()}
    print(f"\nkill -9 threat: {json.dumps(figures)}")
    (tmp_path / "kill9-threat.json").write_text(json.dumps(figures))
