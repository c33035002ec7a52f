from __future__ import annotations

import numpy as np
import pytest

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


def _brute_force_check(lat, lon, alt, sats, min_el, vis):
    """Same visible set as look_angles over every pair; angles to float tolerance."""
    obs = geodetic_to_ecef(lat, lon, alt)
    az, el, rng_m = look_angles(obs[:, None, :], sats[None] * 1000.0, lat[:, None], lon[:, None])
    assert vis.offsets.shape == (lat.size + 1,)
    for p in range(lat.size):
        expect = np.flatnonzero(el[p] >= min_el)
        sl = vis.point(p)
        got = vis.sat_index[sl]
        order = np.argsort(got)
        assert np.array_equal(got[order], expect), (p, lat[p], lon[p], alt[p], min_el)
        assert np.allclose(vis.elevation_deg[sl][order], el[p, expect], atol=1e-9, rtol=0)
        daz = (vis.azimuth_deg[sl][order] - az[p, expect] + 180.0) % 360.0 - 180.0
        defined = el[p, expect] < 90.0 - 1e-6  # no azimuth at the zenith
        assert np.all(np.abs(daz[defined]) < 1e-7)
        assert np.allclose(vis.range_km[sl][order], rng_m[p, expect] / 1000.0, rtol=1e-12)
    assert np.all((vis.azimuth_deg >= 0.0) & (vis.azimuth_deg < 360.0))
    assert np.all(vis.elevation_deg >= min_el)


def _edge_case():
    """Observers and satellites on the poles, the date line and the 0/360 seam."""
    rng = np.random.default_rng(21)
    lat = np.r_[90.0, -90.0, 89.99, -89.99, 0.0, 0.0, 0.0, 45.0, -45.0, 60.0, 0.0,
                np.degrees(np.arcsin(rng.uniform(-1, 1, 40)))]
    lon = np.r_[0.0, 0.0, 180.0, -180.0, 180.0, -180.0, 179.999, -179.999, 180.0, -180.0,
                0.0, rng.uniform(-180, 180, 40)]
    alt = np.r_[np.zeros(11), rng.uniform(-100, 3000, 40)]
    s_lat = np.r_[90.0, -90.0, 89.9, -89.9, 0.0, 0.0, 0.0, 3.0, 88.0, -88.0, 45.0,
                  np.degrees(np.arcsin(rng.uniform(-1, 1, 600)))]
    s_lon = np.r_[0.0, 0.0, 180.0, -180.0, 180.0, -180.0, 359.9999, 179.9999, -179.9, 0.1,
                  -179.9999, rng.uniform(-180, 180, 600)]
    s_r = np.r_[np.full(11, 6371.0 + 550.0), rng.choice([6711.0, 6921.0, 7571.0], 600)]
    la, lo = np.radians(s_lat), np.radians(s_lon)
    sats = np.stack((s_r * np.cos(la) * np.cos(lo), s_r * np.cos(la) * np.sin(lo),
                     s_r * np.sin(la)), axis=-1)
    sats[20] = np.nan
    return lat, lon, alt, sats


def test_edge_cases_match_brute_force():
    lat, lon, alt, sats = _edge_case()
    for min_el in (-90.0, -20.0, -0.5, 0.0, 0.1, 25.0, 60.0, 90.0):
        vis = visible_satellites(lat, lon, alt, sats, min_el, workers=2)
        _brute_force_check(lat, lon, alt, sats, min_el, vis)
        assert 20 not in vis.sat_index


def test_high_observers_match_brute_force():
    # up to 1,000 km: above the lowest shell (seen below their horizon)
    lat, lon, _, sats = _edge_case()
    alt = np.random.default_rng(3).uniform(0.0, 1.0e6, lat.size)
    for min_el in (-10.0, 0.0, 20.0):
        _brute_force_check(lat, lon, alt, sats, min_el,
                           visible_satellites(lat, lon, alt, sats, min_el))


def test_answer_does_not_depend_on_slicing(monkeypatch):
    import services.orbit.visibility as module

    lat, lon, alt, sats = _random_case(8, n_pts=2500)
    whole = visible_satellites(lat, lon, alt, sats, 5.0, workers=1)
    monkeypatch.setattr(module, "CANDIDATE_BLOCK", 1000)
    for workers in (1, 2, 5):
        sliced = visible_satellites(lat, lon, alt, sats, 5.0, workers=workers)
        for name in ("offsets", "sat_index", "azimuth_deg", "elevation_deg", "range_km"):
            assert np.array_equal(getattr(whole, name), getattr(sliced, name)), name


def test_max_pairs_stops_early():
    from services.orbit.visibility import TooManyPairs

    lat, lon, alt, sats = _random_case(9, n_pts=500)
    total = visible_satellites(lat, lon, alt, sats, 0.0).sat_index.size
    assert visible_satellites(lat, lon, alt, sats, 0.0, max_pairs=total).sat_index.size == total
    with pytest.raises(TooManyPairs) as caught:
        visible_satellites(lat, lon, alt, sats, 0.0, max_pairs=total - 1)
    assert caught.value.found > total - 1


def test_real_catalog_matches_brute_force(starlink_text):
    from datetime import timedelta

    from services.orbit.kernel import CatalogPropagator
    from services.orbit.tle import parse_tle
    from shared.frames import julian_date, teme_to_itrf

    sets, _ = parse_tle(starlink_text)
    when = max(s.epoch for s in sets) + timedelta(hours=1)
    jd, fr = julian_date(np.datetime64(when.replace(tzinfo=None), "ns"))
    teme = CatalogPropagator(sets).propagate_jd(np.array([jd]), np.array([fr]),
                                                with_velocity=False).position_km[0]
    itrf = teme_to_itrf(teme, jd, fr)
    rng = np.random.default_rng(12)
    n = 150
    lat = np.r_[np.degrees(np.arcsin(rng.uniform(-1, 1, n))), 90.0, -90.0, 0.0, 53.0]
    lon = np.r_[rng.uniform(-180, 180, n), 0.0, 0.0, 180.0, -180.0]
    alt = np.r_[rng.uniform(0, 2000, n), 0.0, 0.0, 0.0, 2000.0]
    for min_el in (0.0, 25.0):
        _brute_force_check(lat, lon, alt, itrf, min_el,
                           visible_satellites(lat, lon, alt, itrf, min_el))
