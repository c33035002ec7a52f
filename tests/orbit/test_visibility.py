from __future__ import annotations

import numpy as np

from services.orbit.visibility import visible_satellites
from shared.geodesy import geodetic_to_ecef, look_angles


def _random_case(seed, n_pts=60, n_sats=400):
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n_pts)))
    lon = rng.uniform(-180, 180, n_pts)
    alt = rng.uniform(-100, 3000, n_pts)
    u = rng.normal(size=(n_sats, 3))
    radius = rng.uniform(6700.0, 7800.0, n_sats)
    sats = u / np.linalg.norm(u, axis=1)[:, None] * radius[:, None]
    sats[5] = np.nan  # a failed propagation
    return lat, lon, alt, sats


def test_matches_brute_force():
    for seed, min_el in ((1, 0.0), (2, 10.0), (3, 40.0), (4, -5.0)):
        lat, lon, alt, sats = _random_case(seed)
        vis = visible_satellites(lat, lon, alt, sats, min_el, workers=2)
        obs = geodetic_to_ecef(lat, lon, alt)
        az, el, rng_m = look_angles(
            obs[:, None, :], sats[None] * 1000.0, lat[:, None], lon[:, None]
        )
        assert vis.offsets.shape == (lat.size + 1,)
        for p in range(lat.size):
            expect = np.flatnonzero(el[p] >= min_el)
            sl = vis.point(p)
            got = vis.sat_index[sl]
            order = np.argsort(got)
            assert np.array_equal(got[order], expect), (seed, p)
            assert np.allclose(vis.elevation_deg[sl][order], el[p, expect], atol=1e-9)
            assert np.allclose(vis.azimuth_deg[sl][order], az[p, expect], atol=1e-7)
            assert np.allclose(vis.range_km[sl][order], rng_m[p, expect] / 1000.0, rtol=1e-12)
        assert 5 not in vis.sat_index
        assert vis.counts().sum() == vis.sat_index.size > 0


def test_single_worker_same_as_threads():
    lat, lon, alt, sats = _random_case(7, n_pts=3000)
    a = visible_satellites(lat, lon, alt, sats, 15.0, workers=1)
    b = visible_satellites(lat, lon, alt, sats, 15.0, workers=3)
    assert np.array_equal(a.offsets, b.offsets)
    assert np.array_equal(a.sat_index, b.sat_index)


def test_empty_inputs():
    vis = visible_satellites([], [], [], np.zeros((3, 3)), 10.0)
    assert vis.offsets.tolist() == [0]
    vis = visible_satellites([0.0], [0.0], [0.0], np.full((2, 3), np.nan), 10.0)
    assert vis.offsets.tolist() == [0, 0]
