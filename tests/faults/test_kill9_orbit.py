"""kill -9 of the orbit service mid-write, then a restart on the same port: every
acknowledged constellation is in the catalog whole, and nothing else is.

Writers keep generating small Walker constellations (a 4 x 5 shell, its own group and
catalog numbers, its own request_id); a call whose outcome is unknown is re-sent with the
same request and request_id, so each write is settled: acknowledged, or refused for good."""

from __future__ import annotations

import itertools
import json

from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc

from tests.conftest import bearer
from tests.faults.harness import HANG, POSTGRES_ONLY, Load, channel_to, rows
from tests.waiting import until

SERVICE = orbit_pb2.DESCRIPTOR.services_by_name["OrbitService"]
#: Acknowledged writes wanted before the kill, and again after the restart.
BATCH = 30
PLANES, PER_PLANE = 4, 5
FIRST_NUMBER = 700_000
_ids = itertools.count()


def constellation_writers(stub, meta) -> Load:
    tag = next(_ids)
    numbers = itertools.count()

    def call_for(worker: int, n: int):
        k = next(numbers)
        request = orbit_pb2.GenerateConstellationRequest(
            group_id=f"k9-{tag}-{k}", request_id=f"k9-{tag}-{k}",
            first_catalog_number=FIRST_NUMBER + k * PLANES * PER_PLANE,
            shells=[orbit_pb2.WalkerShell(planes=PLANES, satellites_per_plane=PER_PLANE,
                                          phasing=1, altitude_km=550.0, inclination_deg=53.0,
                                          name_prefix=f"K9-{k}")])

        def attempt():
            return stub.GenerateConstellation(request, metadata=meta, wait_for_ready=True,
                                              timeout=HANG)

        return attempt, request

    load = Load(call_for, workers=4)

    def on_ok(request, answer) -> None:
        load.outcomes.acked[request.group_id] = (request, answer)

    load.on_ok = on_ok
    return load


@POSTGRES_ONLY
async def test_orbit_survives_kill_9_mid_write(services, settings, minter, tmp_path):
    """Checks, after the load:
    - every acknowledged group is in the catalog with all 20 of its satellites, each with
      an element set, under the catalog numbers its answer named;
    - the catalog holds no other generated group and no satellite outside an acknowledged
      group's range: no write half-applied, none applied without its answer;
    - one request-log entry per acknowledged write, and a re-sent write is its first
      answer (the log survived the kill)."""
    orbit = await services.start("orbit", SKYBRIDGE_SEED="false")
    meta = bearer(minter, "orbit.write", "orbit.read", tenant="skybridge",
                  subject="catalog-feed")
    channel = channel_to(settings, "orbit", SERVICE, orbit.target)
    stub = orbit_pb2_grpc.OrbitServiceStub(channel)
    try:
        writers = constellation_writers(stub, meta).start()
        acked = writers.outcomes.acked
        assert await until(lambda: len(acked) >= BATCH, within=HANG)
        orbit.kill()
        assert await orbit.wait() == -9
        at_kill = len(acked)
        await orbit.start()
        await orbit.serving()
        assert await until(lambda: len(acked) >= at_kill + BATCH, within=HANG)
        outcomes = await writers.finish()
        assert outcomes.failed == [], outcomes.failed
        size = PLANES * PER_PLANE
        expected: set[int] = set()
        for group_id, (request, answer) in acked.items():
            assert answer.satellite_count == size, (group_id, answer)
            assert answer.first_catalog_number == request.first_catalog_number
            expected |= set(range(answer.first_catalog_number,
                                  answer.last_catalog_number + 1))
        members = await rows(settings, "orbit",
                             "SELECT group_id, count(*) FROM group_members GROUP BY group_id")
        assert dict(members) == {group_id: size for group_id in acked}
        satellites = {n for (n,) in await rows(settings, "orbit",
                                               "SELECT catalog_number FROM satellites")}
        assert satellites == expected
        with_sets = {n for (n,) in await rows(
            settings, "orbit", "SELECT DISTINCT catalog_number FROM element_sets")}
        assert with_sets == expected
        logged = {rid for (rid,) in await rows(
            settings, "orbit", "SELECT request_id FROM request_log WHERE method = %s",
            ("GenerateConstellation",))}
        assert logged == {request.request_id for request, _ in acked.values()}
        for group_id, (request, answer) in list(acked.items())[:10]:
            again = await stub.GenerateConstellation(request, metadata=meta, timeout=HANG)
            assert again == answer, group_id
    finally:
        await channel.close()
    figures = {"acknowledged": len(acked), "acknowledged_before_kill": at_kill,
               "satellites": len(expected), "attempts": outcomes.summary()}
    print(f"\nkill -9 orbit: {json.dumps(figures)}")
    (tmp_path / "kill9-orbit.json").write_text(json.dumps(figures))
