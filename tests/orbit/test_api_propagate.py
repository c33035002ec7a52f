"""Propagate, VisibleSatellites and PredictPasses through a real server: the gRPC path
returns the domain's numbers (kernel, shared/frames, visibility, passes), flags stay flags,
and bad requests are refused with the field and the limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2
from skybridge.common.v1 import common_pb2
from skybridge.orbit.v1 import orbit_pb2

from services.orbit import api, walker
from services.orbit.kernel import CatalogPropagator
from services.orbit.passes import predict_passes
from services.orbit.tle import parse_tle
from services.orbit.visibility import visible_satellites
from shared.clients import orbit as client
from shared.frames import itrf_to_geodetic, teme_to_itrf
from shared.status import details_of
from shared.wire import datetime_to_timestamp, timestamp_to_jd
from tests.conftest import bearer
from tests.orbit.conftest import DECAY, failure, tle_text, violations

EPOCH = datetime(2026, 5, 12, 6, 0, tzinfo=UTC)
START = EPOCH + timedelta(hours=2, seconds=0.25)


_ts = datetime_to_timestamp


@pytest.fixture
async def loaded(orbit, minter):
    """A server holding 12 imported TLE satellites (two shells) and the 4 sensors."""
    kit, stub = orbit
    shells = [walker.WalkerShell(3, 2, 1, 550.0, 53.0, name="LEO"),
              walker.WalkerShell(2, 3, 1, 1200.0, 87.9, name="POLAR")]
    text = tle_text(walker.walker_shells(shells, EPOCH, 70000))
    sets, _ = parse_tle(text)
    write = bearer(minter, "orbit.write")
    await stub.ImportElementSets(orbit_pb2.ImportElementSetsRequest(text=text, group_id="tle"),
                                 metadata=write)
    await stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        preset="tracking_sensors", group_id="sensors", epoch_time=_ts(EPOCH)), metadata=write)
    return kit, stub, sets, bearer(minter, "orbit.read")


def _grid(start: datetime, step_s: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    jd0, fr0 = timestamp_to_jd(_ts(start))
    return CatalogPropagator.grid_jd(jd0, fr0, step_s, 0, count)


async def test_teme_matches_the_domain_kernel_exactly(loaded):
    _, stub, sets, read = loaded
    answer = await client.propagate(stub, group="tle", start=START, step_s=30.0, count=50,
                                    frame="teme", include_velocity=True, chunk_steps=7,
                                    metadata=read)
    expected = CatalogPropagator(sets).propagate_jd(*_grid(START, 30.0, 50))
    assert answer.catalog_numbers.tolist() == [s.catalog_number for s in sets]
    assert np.array_equal(answer.positions, expected.position_km)
    assert np.array_equal(answer.velocities, expected.velocity_km_s)
    assert np.array_equal(answer.error_codes, expected.error)
    assert np.allclose(answer.times_unix_s, START.timestamp() + 30.0 * np.arange(50), atol=1e-6)
    assert np.allclose(answer.element_set_epochs_unix_s, EPOCH.timestamp(), atol=1e-3)


async def test_chunks_arrive_in_order_and_cover_the_request(loaded):
    _, stub, _, read = loaded
    request = client.propagate_request(group="tle", start=START, step_s=60.0, count=20,
                                       frame="teme", chunk_steps=6)
    firsts = []
    async for msg, chunk in client.iter_propagate(stub, request, metadata=read):
        firsts.append(chunk.first_step)
        assert chunk.positions.shape == (chunk.times_unix_s.size, 12, 3)
        assert (msg.total_steps == 20) == (chunk.first_step == 0)
    assert firsts == [0, 6, 12, 18]


async def test_itrf_and_geodetic_follow_shared_frames(loaded):
    _, stub, sets, read = loaded
    jd, fr = _grid(START, 120.0, 30)
    teme = CatalogPropagator(sets).propagate_jd(jd, fr)
    r_itrf, v_itrf = teme_to_itrf(teme.position_km, jd, fr, teme.velocity_km_s)
    itrf = await client.propagate(stub, group="tle", start=START, step_s=120.0, count=30,
                                  frame="itrf", include_velocity=True, metadata=read)
    assert np.allclose(itrf.positions, r_itrf, rtol=0, atol=1e-9)
    assert np.allclose(itrf.velocities, v_itrf, rtol=0, atol=1e-12)
    geo = await client.propagate(stub, group="tle", start=START, step_s=120.0, count=30,
                                 frame="geodetic", metadata=read)
    lat, lon, alt = itrf_to_geodetic(r_itrf)
    assert np.allclose(geo.positions[..., 0], lat, atol=1e-12)
    assert np.allclose(geo.positions[..., 1], lon, atol=1e-12)
    assert np.allclose(geo.positions[..., 2], alt, atol=1e-6)
    assert np.all((geo.positions[..., 2] > 400e3) & (geo.positions[..., 2] < 1400e3))


async def test_explicit_times_and_catalog_numbers(loaded):
    _, stub, sets, read = loaded
    times = [START + timedelta(minutes=m) for m in (90, 0, 45.5)]
    picked = [70003, 70000]
    answer = await client.propagate(stub, catalog_numbers=picked, times=times, frame="teme",
                                    metadata=read)
    by_number = {s.catalog_number: s for s in sets}
    prop = CatalogPropagator([by_number[n] for n in picked])
    expected = prop.propagate_jd(*map(np.array, zip(*(timestamp_to_jd(_ts(t)) for t in times),
                                                    strict=True)))
    assert answer.catalog_numbers.tolist() == picked
    assert np.array_equal(answer.positions, expected.position_km)


async def test_newest_by_default_and_as_of(loaded, minter):
    _, stub, sets, read = loaded
    newer = [s for s in walker.walker_delta(walker.WalkerShell(3, 2, 1, 700.0, 30.0),
                                            EPOCH + timedelta(days=1), 70000)][:1]
    await stub.ImportElementSets(orbit_pb2.ImportElementSetsRequest(text=tle_text(newer)),
                                 metadata=bearer(minter, "orbit.write"))
    (newer_parsed,), _ = parse_tle(tle_text(newer))
    start = EPOCH + timedelta(days=1, hours=1)
    jd, fr = _grid(start, 60.0, 5)
    now = await client.propagate(stub, catalog_numbers=[70000], start=start, step_s=60.0,
                                 count=5, frame="teme", metadata=read)
    assert np.array_equal(now.positions,
                          CatalogPropagator([newer_parsed]).propagate_jd(jd, fr).position_km)
    then = await client.propagate(stub, catalog_numbers=[70000], start=start, step_s=60.0,
                                  count=5, frame="teme", as_of=EPOCH + timedelta(hours=1),
                                  metadata=read)
    assert np.array_equal(then.positions,
                          CatalogPropagator(sets[:1]).propagate_jd(jd, fr).position_km)


async def test_flagged_satellites_come_back_as_flags(orbit, minter):
    _, stub = orbit
    await stub.ImportElementSets(orbit_pb2.ImportElementSetsRequest(text=DECAY),
                                 metadata=bearer(minter, "orbit.write"))
    (decay,), _ = parse_tle(DECAY)
    request = client.propagate_request(catalog_numbers=[28872], start=decay.epoch,
                                       step_s=300.0, count=24, frame="itrf",
                                       include_velocity=True)
    answer = await client.propagate(stub, request, metadata=bearer(minter, "orbit.read"))
    flagged = answer.error_codes[:, 0] != 0
    # python-sgp4 and the kernel flag this one (error 6, decayed) from 55 to 65 minutes
    assert np.flatnonzero(flagged).tolist() == [11, 12, 13]
    assert set(answer.error_codes[flagged, 0].tolist()) == {6}
    assert np.isnan(answer.positions[flagged]).all()
    assert np.isnan(answer.velocities[flagged]).all()
    assert np.isfinite(answer.positions[~flagged]).all()
    total = 0
    async for msg in stub.Propagate(request, metadata=bearer(minter, "orbit.read")):
        total += msg.flagged_count
    assert total == int(flagged.sum())


async def test_visible_satellites_match_the_domain(loaded):
    _, stub, _, read = loaded
    rng = np.random.default_rng(7)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 400)))
    lon = rng.uniform(-180, 180, 400)
    alt = rng.uniform(0, 1500, 400)
    when = START
    answer = await client.visible_satellites(stub, lat, lon, alt, when, 5.0, metadata=read)
    # the domain on the same catalog: all 16 satellites (12 TLE + 4 generated)
    every = await client.propagate(stub, all=True, times=[when], frame="teme", metadata=read)
    jd, fr = timestamp_to_jd(_ts(when))
    itrf = teme_to_itrf(every.positions[0], jd, fr)
    expected = visible_satellites(lat, lon, alt, itrf, 5.0)
    assert np.array_equal(answer.offsets, expected.offsets)
    assert np.array_equal(answer.catalog_numbers, every.catalog_numbers[expected.sat_index])
    assert np.array_equal(answer.elevation_deg, expected.elevation_deg)
    assert np.array_equal(answer.azimuth_deg, expected.azimuth_deg)
    assert np.array_equal(answer.range_km, expected.range_km)
    assert answer.counts().sum() > 0 and np.all(answer.elevation_deg >= 5.0)
    # the same points as repeated GeodeticPoint messages give the same answer
    request = orbit_pb2.VisibleSatellitesRequest(
        points=[common_pb2.GeodeticPoint(latitude_deg=a, longitude_deg=b, altitude_m=c)
                for a, b, c in zip(lat.tolist(), lon.tolist(), alt.tolist(), strict=True)],
        time=_ts(when), min_elevation_deg=5.0)
    plain = await stub.VisibleSatellites(request, metadata=read)
    assert plain.offsets == answer.offsets.tobytes()
    assert plain.catalog_numbers == answer.catalog_numbers.tobytes()


async def test_predict_passes_match_the_domain(loaded):
    _, stub, sets, read = loaded
    start, end = START, START + timedelta(hours=6)
    request = orbit_pb2.PredictPassesRequest(
        points=[common_pb2.GeodeticPoint(latitude_deg=47.6, longitude_deg=-122.3,
                                         altitude_m=50.0),
                common_pb2.GeodeticPoint(latitude_deg=-33.9, longitude_deg=18.4)],
        window=common_pb2.TimeWindow(start_time=_ts(start), end_time=_ts(end)),
        min_elevation_deg=10.0, selection=client.selection(group="tle"))
    request.min_duration.FromTimedelta(timedelta(seconds=60))
    answer = await stub.PredictPasses(request, metadata=read)
    expected = predict_passes(sets, [47.6, -33.9], [-122.3, 18.4], [50.0, 0.0], start, end,
                              10.0, 60.0)
    assert len(answer.passes) == len(expected) > 0
    for got, want in zip(answer.passes, expected, strict=True):
        assert (got.point_index, got.catalog_number) == (want.point_index, want.catalog_number)
        assert got.satellite == f"satellites/{want.catalog_number}"
        assert abs((got.rise_time.ToDatetime(UTC) - want.rise).total_seconds()) < 1e-3
        assert abs((got.set_time.ToDatetime(UTC) - want.set).total_seconds()) < 1e-3
        assert got.max_elevation_deg == pytest.approx(want.max_elevation_deg)
        assert got.rise_azimuth_deg == pytest.approx(want.rise_azimuth_deg)


async def test_bad_propagation_requests_name_the_field(loaded):
    _, stub, _, read = loaded

    async def refused(request, code=grpc.StatusCode.INVALID_ARGUMENT):
        error = await failure(client.propagate(stub, request, metadata=read))
        assert error.code() == code, (request, error)
        return violations(error), details_of(error)

    base = dict(group="tle", start=START, step_s=60.0, frame="teme")
    fields, _ = await refused(client.propagate_request(count=1_000_000, **base))
    assert "100000" in fields["grid.count"]
    far = dict(base, start=EPOCH + timedelta(days=365 * 20))
    fields, details = await refused(client.propagate_request(count=10, **far))
    assert "30 days" in fields["grid.start_time"] and details.reason == "TOO_FAR_FROM_EPOCH"
    fields, _ = await refused(client.propagate_request(count=10, **dict(
        base, start=datetime(1900, 1, 1, tzinfo=UTC))))
    assert "grid.start_time" in fields
    fields, _ = await refused(client.propagate_request(count=10, **dict(base, step_s=0.0)))
    assert "grid.step" in fields
    request = client.propagate_request(count=10, **base)
    request.ClearField("selection")
    fields, _ = await refused(request)
    assert "selection" in fields
    request = client.propagate_request(catalog_numbers=[70000, 12345, 70000 + 1, 54321],
                                       start=START, step_s=60.0, count=3)
    fields, details = await refused(request, grpc.StatusCode.NOT_FOUND)
    assert set(fields) == {"selection.catalog_numbers[1]", "selection.catalog_numbers[3]"}
    request = client.propagate_request(catalog_numbers=[70000, 70000], start=START,
                                       step_s=60.0, count=3)
    fields, _ = await refused(request)
    assert "repeated" in fields["selection.catalog_numbers"]
    request = client.propagate_request(group="nope", start=START, step_s=60.0, count=3)
    await refused(request, grpc.StatusCode.NOT_FOUND)
    request = client.propagate_request(start=START, step_s=60.0, count=3, all=True)
    request.selection.group = "groups/tle"
    fields, _ = await refused(request)
    assert "selection" in fields
    request = orbit_pb2.PropagateRequest(selection=client.selection(all=True))
    fields, _ = await refused(request)
    assert "grid" in fields


async def test_state_budget_is_resource_exhausted(orbit, minter):
    _, stub = orbit
    await stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        preset="starlink_gen1", group_id="gen1", epoch_time=_ts(EPOCH)),
        metadata=bearer(minter, "orbit.write"))
    request = client.propagate_request(all=True, start=START, step_s=1.0, count=5000)
    error = await failure(client.propagate(stub, request, metadata=bearer(minter, "orbit.read")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = details_of(error)
    assert details.reason == "TOO_MANY_STATES" and "20000000" in details.violations[0].description


async def test_empty_catalog_and_bad_points(orbit, minter):
    _, stub = orbit
    read = bearer(minter, "orbit.read")
    request = client.propagate_request(all=True, start=START, step_s=60.0, count=3)
    error = await failure(client.propagate(stub, request, metadata=read))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(error).reason == "EMPTY_CATALOG" and "selection.all" in violations(error)
    points = [common_pb2.GeodeticPoint(latitude_deg=10.0),
              common_pb2.GeodeticPoint(latitude_deg=95.0, longitude_deg=200.0)]
    error = await failure(stub.VisibleSatellites(orbit_pb2.VisibleSatellitesRequest(
        points=points, time=_ts(START), min_elevation_deg=95.0), metadata=read))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"points[1].latitude_deg", "points[1].longitude_deg",
            "min_elevation_deg"} <= set(violations(error))
    points[1].latitude_deg = float("nan")
    error = await failure(stub.VisibleSatellites(orbit_pb2.VisibleSatellitesRequest(
        points=points, time=_ts(START)), metadata=read))
    assert set(violations(error)) == {"points[1].latitude_deg"}
    # points and point_array together: refused, naming the field (was INTERNAL)
    error = await failure(stub.VisibleSatellites(orbit_pb2.VisibleSatellitesRequest(
        points=points[:1], point_array=common_pb2.DoubleArray(shape=[1, 3], le_bytes=b"\0" * 24),
        time=_ts(START)), metadata=read))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not points and point_array" in violations(error)["points"]
    error = await failure(stub.VisibleSatellites(orbit_pb2.VisibleSatellitesRequest(
        point_array=common_pb2.DoubleArray(shape=[2, 3], le_bytes=b"\0" * 8),
        time=_ts(START)), metadata=read))
    assert "point_array" in violations(error)
    error = await failure(stub.PredictPasses(orbit_pb2.PredictPassesRequest(
        points=points[:1], window=common_pb2.TimeWindow(
            start_time=_ts(START), end_time=_ts(START + timedelta(days=30)))), metadata=read))
    assert "window" in violations(error)
    bad_step = orbit_pb2.PropagateRequest(
        selection=client.selection(all=True),
        grid=orbit_pb2.TimeGrid(start_time=_ts(START), step=duration_pb2.Duration(seconds=-5),
                                count=3))
    error = await failure(client.propagate(stub, bad_step, metadata=read))
    assert "grid.step" in violations(error)


async def test_visible_satellites_answer_limit(loaded, monkeypatch):
    from services.orbit import api_fields, api_geometry

    _, stub, _, read = loaded
    lat = np.linspace(-80.0, 80.0, 200)
    answer = await client.visible_satellites(stub, lat, 0.0, 0.0, START, -90.0, metadata=read)
    pairs = answer.catalog_numbers.size
    monkeypatch.setattr(api_geometry, "MAX_VISIBILITY_ANSWER_BYTES",
                        (pairs - 1) * api_fields._BYTES_PER_PAIR)
    error = await failure(client.visible_satellites(stub, lat, 0.0, 0.0, START, -90.0,
                                                    metadata=read))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details_of(error).reason == "ANSWER_TOO_LARGE"
    assert {"points", "min_elevation_deg"} <= set(violations(error))


async def test_both_layouts_carry_the_same_states(loaded):
    _, stub, _, read = loaded
    answers = {}
    for layout in (orbit_pb2.STATE_LAYOUT_UNSPECIFIED,
                   orbit_pb2.STATE_LAYOUT_TIME_COMPONENT_SATELLITE):
        request = client.propagate_request(group="tle", start=START, step_s=90.0, count=11,
                                           frame="itrf", include_velocity=True,
                                           chunk_steps=4, layout=layout)
        shapes = [(msg.layout, tuple(msg.positions.shape)) async for msg in
                  stub.Propagate(request, metadata=read)]
        cm = layout == orbit_pb2.STATE_LAYOUT_TIME_COMPONENT_SATELLITE
        assert shapes[0] == ((orbit_pb2.STATE_LAYOUT_TIME_COMPONENT_SATELLITE, (4, 3, 12))
                             if cm else
                             (orbit_pb2.STATE_LAYOUT_TIME_SATELLITE_COMPONENT, (4, 12, 3)))
        answers[layout] = await client.propagate(stub, request, metadata=read)
    row_major, component_major = answers.values()
    assert row_major.positions.shape == component_major.positions.shape == (11, 12, 3)
    assert np.array_equal(row_major.positions, component_major.positions)
    assert np.array_equal(row_major.velocities, component_major.velocities)
    assert np.array_equal(row_major.error_codes, component_major.error_codes)


async def test_streams_whose_readers_stop_do_not_hold_up_other_propagations(orbit, minter):
    """More unread Propagate streams than there are slots: each stops when flow control
    stops it, holding no slot, and another caller's propagation is answered."""
    _, stub = orbit
    await stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        shells=[orbit_pb2.WalkerShell(planes=20, satellites_per_plane=20, phasing=1,
                                      altitude_km=550.0, inclination_deg=53.0)],
        group_id="load", epoch_time=_ts(EPOCH)), metadata=bearer(minter, "orbit.write"))
    read = bearer(minter, "orbit.read")
    # 400 satellites x 50,000 s in chunks of 100 steps (~1 MB each): far more than the
    # HTTP/2 windows hold, so a stream nobody reads waits on flow control.
    big = client.propagate_request(group="groups/load", start=START, step_s=1.0,
                                   count=50_000, chunk_steps=100)
    unread = [stub.Propagate(big, metadata=read) for _ in range(api.MAX_CONCURRENT_PROPAGATIONS + 1)]
    try:
        for call in unread:
            assert (await call.read()).total_steps == 50_000
        small = client.propagate_request(group="groups/load", start=START, step_s=60.0,
                                         count=3)
        answer = await client.propagate(stub, small, metadata=read, rpc_timeout=60)
        assert answer.positions.shape[0] == 3
    finally:
        for call in unread:
            call.cancel()
