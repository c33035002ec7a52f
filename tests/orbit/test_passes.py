from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.orbit.passes import predict_passes
from services.orbit.tle import format_tle, parse_tle
from services.orbit.walker import preset
from tests.orbit.conftest import ISS_L1, ISS_L2

skyfield_api = pytest.importorskip("skyfield.api")

POINTS = [(47.6, -122.3, 50.0), (-33.9, 151.2, 10.0), (64.8, -147.7, 130.0)]


def _skyfield_passes(es, lat, lon, alt, start, end, min_el):
    ts = skyfield_api.load.timescale(builtin=True)
    l1, l2 = format_tle(es, include_name=False).splitlines()
    sat = skyfield_api.EarthSatellite(l1, l2, ts=ts)
    topo = skyfield_api.wgs84.latlon(lat, lon, elevation_m=alt)
    t, kind = sat.find_events(topo, ts.from_datetime(start), ts.from_datetime(end), min_el)
    out, current = [], None
    for ti, k in zip(t.utc_datetime(), kind, strict=True):
        if k == 0:
            current = [ti]
        elif current is not None:
            current.append(ti)
            if k == 2:
                if len(current) == 3:
                    out.append(tuple(current))
                current = None
    return out


def _check_against_skyfield(sets, start, end, min_el):
    lat, lon, alt = (np.array(c) for c in zip(*POINTS, strict=True))
    passes = predict_passes(sets, lat, lon, alt, start, end, min_el)
    assert passes, "expected some passes"
    compared = 0
    for pi in range(len(POINTS)):
        for si, es in enumerate(sets):
            mine = [
                (p.rise, p.culmination, p.set)
                for p in passes
                if p.point_index == pi
                and p.sat_index == si
                and not (p.rise_clipped or p.set_clipped)
            ]
            ref = _skyfield_passes(es, *POINTS[pi], start, end, min_el)
            assert len(mine) == len(ref), (pi, si)
            for a, b in zip(mine, ref, strict=True):
                for x, y in zip(a, b, strict=True):
                    assert abs((x - y).total_seconds()) < 1.0, (pi, si, x, y)
                compared += 1
    for p in passes:
        assert p.rise <= p.culmination <= p.set
        assert p.max_elevation_deg >= min_el - 1e-6
        assert 0.0 <= p.rise_azimuth_deg < 360.0 and 0.0 <= p.set_azimuth_deg < 360.0
    return compared


def test_iss_passes_match_skyfield():
    sets, _ = parse_tle(f"{ISS_L1}\n{ISS_L2}\n")
    start = datetime(2019, 12, 10, tzinfo=UTC)
    assert _check_against_skyfield(sets, start, start + timedelta(days=2), 10.0) >= 3


def test_walker_passes_match_skyfield():
    start = datetime(2026, 5, 12, tzinfo=UTC)
    sets = preset("tracking_sensors", start, 1) + preset("starlink_gen1", start, 100)[::400]
    assert _check_against_skyfield(sets, start, start + timedelta(hours=12), 25.0) >= 10


def test_min_duration_filter_and_clipping():
    sets, _ = parse_tle(f"{ISS_L1}\n{ISS_L2}\n")
    start = datetime(2019, 12, 10, tzinfo=UTC)
    end = start + timedelta(days=1)
    all_p = predict_passes(sets, 47.6, -122.3, 50.0, start, end, 0.0)
    long_p = predict_passes(sets, 47.6, -122.3, 50.0, start, end, 0.0, min_duration_s=400.0)
    expect = [p for p in all_p if p.duration_s >= 400.0]
    assert 0 < len(long_p) == len(expect) < len(all_p)
    for a, b in zip(long_p, expect, strict=True):
        assert abs((a.rise - b.rise).total_seconds()) < 0.1
        assert abs((a.set - b.set).total_seconds()) < 0.1
    assert all(start <= p.rise and p.set <= end for p in all_p)
