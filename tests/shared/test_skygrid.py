"""shared.skygrid: the candidate runs contain every satellite above the mask (against a
brute force over all pairs), each at most once, on the awkward cases: poles, the date
line and the 0/360 seam, high observers, masks of 0, negative and 90 degrees, shells far
apart (several radius bands), failed (non-finite) positions."""

from __future__ import annotations

import numpy as np
import pytest

from shared.geodesy import enu_rotation, geodetic_to_ecef, look_angles
from shared.skygrid import SkyGrid, central_angle_bound_deg, expand_runs

R_KM = 6371.0


def _shells(rng, n, radii_km):
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    return u * rng.choice(radii_km, n)[:, None]


def _edge_satellites():
    """Satellites on the poles, the date line, the 0/360 seam and row/column edges."""
    lat = np.array([90.0, -90.0, 89.999, -89.999, 0.0, 0.0, 0.0, 0.0, 2.0, -2.0, 45.0, 60.0])
    lon = np.array([0.0, 0.0, 180.0, -180.0, 180.0, -180.0, 0.0, 359.9999, 0.25, -0.25,
                    179.9999, -179.9999])
    r = np.full(lat.size, R_KM + 550.0)
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack((r * np.cos(la) * np.cos(lo), r * np.cos(la) * np.sin(lo),
                     r * np.sin(la)), axis=-1)


def _observers(rng, n, alt_km=(0.0, 2.0)):
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    alt = rng.uniform(*alt_km, n) * 1000.0
    lat = np.r_[lat, 90.0, -90.0, 89.99, -89.99, 0.0, 0.0, 45.0, -45.0, 10.0, 0.0, 60.0]
    lon = np.r_[lon, 0.0, 0.0, 180.0, -180.0, 180.0, -180.0, 179.999, -179.999, 0.0,
                0.125, -180.0]
    alt = np.r_[alt, np.zeros(11)]
    alt[-3:] = alt_km[1] * 1000.0
    return lat, lon, alt


def _check_superset(grid, sats_km, lat, lon, alt, min_el):
    obs = geodetic_to_ecef(lat, lon, alt) / 1000.0
    up = enu_rotation(lat, lon)[:, 2, :]
    per, cand = grid.candidates(obs, up, min_el)
    assert per.shape == (lat.size,) and int(per.sum()) == cand.size
    _, el, _ = look_angles(obs[:, None, :] * 1000.0, sats_km[None] * 1000.0,
                           lat[:, None], lon[:, None])
    start = np.r_[0, np.cumsum(per)]
    total_visible = 0
    for p in range(lat.size):
        mine = cand[start[p]:start[p + 1]]
        assert np.unique(mine).size == mine.size, p  # each satellite at most once
        visible = np.flatnonzero(el[p] >= min_el)
        total_visible += visible.size
        missing = np.setdiff1d(visible, mine)
        assert missing.size == 0, (p, lat[p], lon[p], alt[p], missing, el[p, missing])
    return total_visible, cand.size


@pytest.mark.parametrize("min_el", [-90.0, -30.0, -5.0, 0.0, 0.5, 10.0, 25.0, 40.0, 89.0, 90.0])
def test_candidates_contain_every_visible_satellite(min_el):
    rng = np.random.default_rng(int(min_el + 100))
    sats = np.r_[_shells(rng, 1500, [R_KM + 340, R_KM + 550, R_KM + 570, R_KM + 1200,
                                     R_KM + 20_000]), _edge_satellites()]
    grid = SkyGrid.build(sats, max(min_el, 0.0), earth_radius=R_KM)
    lat, lon, alt = _observers(rng, 150)
    visible, candidates = _check_superset(grid, sats, lat, lon, alt, min_el)
    if 0.0 <= min_el < 89.0:
        assert candidates < 0.5 * lat.size * sats.shape[0]  # it does prune
        assert visible > 0


@pytest.mark.parametrize("min_el", [-10.0, 0.0, 15.0])
def test_high_observers_some_above_satellites(min_el):
    # observers up to 1,000 km: above the lowest shell, which they may see below the horizon
    rng = np.random.default_rng(5)
    sats = np.r_[_shells(rng, 1200, [R_KM + 340, R_KM + 550, R_KM + 1200]), _edge_satellites()]
    grid = SkyGrid.build(sats, 10.0, earth_radius=R_KM)
    lat, lon, alt = _observers(rng, 120, alt_km=(0.0, 1000.0))
    _check_superset(grid, sats, lat, lon, alt, min_el)


@pytest.mark.parametrize("row_deg,cols", [(1.0, 360), (2.0, 1440), (7.0, 100)])
def test_other_grid_resolutions(row_deg, cols):
    rng = np.random.default_rng(11)
    sats = np.r_[_shells(rng, 1000, [R_KM + 550]), _edge_satellites()]
    grid = SkyGrid.build(sats, 25.0, earth_radius=R_KM, row_deg=row_deg, cols=cols)
    lat, lon, alt = _observers(rng, 100)
    for min_el in (0.0, 25.0):
        _check_superset(grid, sats, lat, lon, alt, min_el)


def test_units_do_not_matter():
    rng = np.random.default_rng(3)
    sats = _shells(rng, 800, [R_KM + 550, R_KM + 1100])
    lat, lon, alt = _observers(rng, 60)
    obs = geodetic_to_ecef(lat, lon, alt)
    up = enu_rotation(lat, lon)[:, 2, :]
    km = SkyGrid.build(sats, 20.0, earth_radius=R_KM).candidates(obs / 1000.0, up, 20.0)
    m = SkyGrid.build(sats * 1000.0, 20.0, earth_radius=R_KM * 1000.0).candidates(obs, up, 20.0)
    assert np.array_equal(km[0], m[0]) and np.array_equal(km[1], m[1])


def test_non_finite_satellites_are_never_listed():
    rng = np.random.default_rng(4)
    sats = _shells(rng, 300, [R_KM + 550])
    sats[[3, 17]] = np.nan
    sats[40, 1] = np.inf
    grid = SkyGrid.build(sats, 0.0, earth_radius=R_KM)
    assert grid.sat_of.size == 2 * 297
    lat, lon, alt = _observers(rng, 40)
    obs = geodetic_to_ecef(lat, lon, alt) / 1000.0
    _, cand = grid.candidates(obs, enu_rotation(lat, lon)[:, 2, :], -90.0)
    assert not np.isin([3, 17, 40], cand).any()
    assert np.unique(cand).size == 297
    empty = SkyGrid.build(np.full((2, 3), np.nan), 0.0, earth_radius=R_KM)
    per, cand = empty.candidates(obs, enu_rotation(lat, lon)[:, 2, :], 0.0)
    assert per.tolist() == [0] * lat.size and cand.size == 0


def test_shared_caps_make_runs_independent_of_the_split():
    rng = np.random.default_rng(9)
    sats = _shells(rng, 2000, [R_KM + 550])
    lat, lon, alt = _observers(rng, 300, alt_km=(0.0, 50.0))
    obs = geodetic_to_ecef(lat, lon, alt) / 1000.0
    up = enu_rotation(lat, lon)[:, 2, :]
    grid = SkyGrid.build(sats, 25.0, earth_radius=R_KM)
    caps = grid.caps(obs, up, 25.0)
    whole = grid.runs(obs, up, 25.0, caps=caps)
    for a, b in ((0, 7), (7, 150), (150, obs.shape[0])):
        part = grid.runs(obs[a:b], up[a:b], 25.0, caps=caps)
        width = part[0].shape[1]
        assert np.array_equal(part[0], whole[0][a:b, :width])
        assert np.array_equal(part[1], whole[1][a:b, :width])
        assert not whole[1][a:b, width:].any()


def test_expand_runs():
    lo = np.array([[5, 0, 9], [2, 7, 0]])
    length = np.array([[2, 0, 1], [0, 3, 0]])
    assert expand_runs(lo, length).tolist() == [5, 6, 9, 7, 8, 9]
    assert expand_runs(np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)).size == 0


def test_central_angle_bound():
    # satellite at the bound's angle sits exactly at the mask (spherical geometry)
    rg, rs, el = 6371.0, 6921.0, 25.0
    lam = np.radians(central_angle_bound_deg(rg, rg, rs, rs, el))
    obs = np.array([rg, 0.0, 0.0])
    sat = rs * np.array([np.cos(lam), np.sin(lam), 0.0])
    d = sat - obs
    assert np.degrees(np.arcsin(d[0] / np.linalg.norm(d))) == pytest.approx(el, abs=1e-5)
    assert central_angle_bound_deg(rg, rg, rs, rs, -89.5) == 180.0
    assert central_angle_bound_deg(rg, rs + 1.0, rs, rs, -1.0) == 180.0  # observer above
