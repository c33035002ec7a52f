"""Tests for shared.geodesy: WGS84 conversions, look angles, distances, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.geodesy import (
    MEAN_EARTH_RADIUS_M,
    WGS84_A_M,
    WGS84_B_M,
    WGS84_E2,
    WGS84_F,
    ecef_to_geodetic,
    enu_rotation,
    geodetic_to_ecef,
    great_circle_distance_m,
    look_angles,
    validate_geodetic,
)

MM = 1e-3


def test_derived_constants() -> None:
    assert WGS84_B_M == pytest.approx(6356752.314245, abs=1e-6)
    assert WGS84_E2 == pytest.approx(6.69437999014e-3, rel=1e-11)
    assert 1.0 / WGS84_F == pytest.approx(298.257223563, rel=1e-15)


# --- geodetic <-> ECEF -----------------------------------------------------------------


def test_known_points() -> None:
    xyz = geodetic_to_ecef([0.0, 0.0, 90.0, -90.0, 0.0], [0.0, 90.0, 0.0, 123.0, 180.0], 0.0)
    expected = [
        [WGS84_A_M, 0, 0],
        [0, WGS84_A_M, 0],
        [0, 0, WGS84_B_M],
        [0, 0, -WGS84_B_M],
        [-WGS84_A_M, 0, 0],
    ]
    np.testing.assert_allclose(xyz, expected, atol=1e-6)

    lat, lon, alt = ecef_to_geodetic(np.array(expected, dtype=float))
    np.testing.assert_allclose(lat, [0, 0, 90, -90, 0], atol=1e-12)
    np.testing.assert_allclose(alt, 0.0, atol=1e-6)
    np.testing.assert_allclose(lon[:2], [0, 90], atol=1e-12)
    assert abs(lon[4]) == pytest.approx(180.0)


def test_geodetic_to_ecef_broadcasts() -> None:
    xyz = geodetic_to_ecef(np.zeros((4, 1)), np.zeros((1, 5)), 100.0)
    assert xyz.shape == (4, 5, 3)
    np.testing.assert_allclose(xyz[..., 0], WGS84_A_M + 100.0)


def test_pole_with_altitude_and_geo_radius() -> None:
    lat, lon, alt = ecef_to_geodetic(
        np.array([[0.0, 0.0, WGS84_B_M + 36_000e3], [42_164_000.0, 0.0, 0.0]])
    )
    np.testing.assert_allclose(lat, [90.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(alt, [36_000e3, 42_164_000.0 - WGS84_A_M], atol=MM)


def _roundtrip_error_m(lat: np.ndarray, lon: np.ndarray, alt: np.ndarray) -> np.ndarray:
    xyz = geodetic_to_ecef(lat, lon, alt)
    back = geodetic_to_ecef(*ecef_to_geodetic(xyz))
    return np.linalg.norm(back - xyz, axis=-1)


@settings(max_examples=300, deadline=None)
@given(
    lat=st.floats(-90.0, 90.0),
    lon=st.floats(-180.0, 180.0),
    alt=st.one_of(
        st.floats(-10_000.0, 100_000.0),  # ground, sea and air
        st.floats(100e3, 50_000e3),  # LEO .. beyond GEO
        st.floats(-6_300e3, -10e3),  # deep below the surface, toward the centre
    ),
)
def test_geodetic_roundtrip_property(lat: float, lon: float, alt: float) -> None:
    xyz = geodetic_to_ecef(lat, lon, alt)
    lat2, lon2, alt2 = ecef_to_geodetic(xyz)
    assert np.linalg.norm(geodetic_to_ecef(lat2, lon2, alt2) - xyz) < MM
    if alt > -6_000e3:  # outside the centre region the solution is unique
        assert alt2 == pytest.approx(alt, abs=MM)
        assert abs(lat2 - lat) * 111_000.0 < MM


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(-5e7, 5e7),
    y=st.floats(-5e7, 5e7),
    z=st.floats(-5e7, 5e7),
)
def test_ecef_roundtrip_property(x: float, y: float, z: float) -> None:
    xyz = np.array([x, y, z])
    back = geodetic_to_ecef(*ecef_to_geodetic(xyz))
    assert np.linalg.norm(back - xyz) < MM


@pytest.mark.parametrize("z", [0.0, 2.4234461873656036e-152, -1.0, 1000.0, -6_356_752.0, 7e6])
def test_points_on_the_polar_axis_roundtrip(z: float) -> None:
    xyz = np.array([0.0, 0.0, z])
    lat, _, alt = ecef_to_geodetic(xyz)
    assert abs(lat) == 90.0
    assert np.linalg.norm(geodetic_to_ecef(lat, 0.0, alt) - xyz) < MM


@pytest.mark.parametrize("rho", [1e-300, 1e-9, 1.0, 1000.0, 42_000.0])
@pytest.mark.parametrize("z", [0.0, 2.4234461873656036e-152, 1e-100, 1e-12, 1e-3, 1.0, 1e4])
def test_points_near_the_centre_roundtrip(rho: float, z: float) -> None:
    xyz = np.array([0.0, rho, z])
    assert np.linalg.norm(geodetic_to_ecef(*ecef_to_geodetic(xyz)) - xyz) < MM


def test_roundtrip_vectorized_sweep() -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    lat = np.concatenate([rng.uniform(-90, 90, n), [89.9999999, -89.9999999, 0.0, 1e-9]])
    lon = rng.uniform(-180, 180, lat.size)
    alt = rng.choice([-450.0, 0.0, 550e3, 20_200e3, 35_786e3, 36_000e3], lat.size)
    assert _roundtrip_error_m(lat, lon, alt).max() < MM
    lat2, _, alt2 = ecef_to_geodetic(geodetic_to_ecef(lat, lon, alt))
    assert np.abs(alt2 - alt).max() < MM
    assert np.abs(lat2 - lat).max() * 111_000.0 < MM


def test_centre_region_is_finite_and_roundtrips() -> None:
    rng = np.random.default_rng(3)
    d = rng.normal(size=(50_000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    xyz = d * rng.uniform(0.0, 100e3, (50_000, 1))
    xyz[::4, 2] *= 1e-9  # hug the equatorial plane inside the evolute
    xyz = np.vstack([xyz, [[0.0, 0.0, 0.0], [1e4, 0.0, 0.0], [0.0, 0.0, 1e4]]])
    lat, lon, alt = ecef_to_geodetic(xyz)
    assert np.all(np.isfinite(lat) & np.isfinite(lon) & np.isfinite(alt))
    assert np.abs(geodetic_to_ecef(lat, lon, alt) - xyz).max() < MM


# --- ENU and look angles -----------------------------------------------------------------


def test_enu_rotation_is_orthonormal_and_up_is_normal() -> None:
    lat = np.array([[10.0], [-45.0], [89.0]])
    lon = np.array([[0.0, 120.0, -60.0]])
    r = enu_rotation(lat, lon)
    assert r.shape == (3, 3, 3, 3)
    np.testing.assert_allclose(
        r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-15
    )
    np.testing.assert_allclose(np.linalg.det(r), 1.0)
    # Up is the ellipsoid normal: moving along it changes only the altitude.
    p0 = geodetic_to_ecef(lat, lon, 0.0)
    p1 = geodetic_to_ecef(lat, lon, 1000.0)
    np.testing.assert_allclose(p1 - p0, 1000.0 * r[..., 2, :], atol=1e-6)


def test_target_overhead_has_elevation_90() -> None:
    obs = geodetic_to_ecef(37.0, -122.0, 10.0)
    tgt = geodetic_to_ecef(37.0, -122.0, 550e3)
    az, el, rng = look_angles(obs, tgt, 37.0, -122.0)
    assert el == pytest.approx(90.0, abs=1e-9)
    assert rng == pytest.approx(550e3 - 10.0, abs=1e-6)
    assert 0.0 <= az < 360.0


@pytest.mark.parametrize(
    ("dlat", "dlon", "expected_az"),
    [(0.5, 0.0, 0.0), (0.0, 0.5, 90.0), (-0.5, 0.0, 180.0), (0.0, -0.5, 270.0)],
)
def test_cardinal_azimuths(dlat: float, dlon: float, expected_az: float) -> None:
    lat0, lon0 = -33.9, 18.4
    obs = geodetic_to_ecef(lat0, lon0, 0.0)
    tgt = geodetic_to_ecef(lat0 + dlat, lon0 + dlon, 0.0)
    az, el, _ = look_angles(obs, tgt, lat0, lon0)
    # A surface point 0.5 deg away lies a little below the horizon; due east/west
    # targets sit on a great circle, so allow for the small convergence of meridians.
    assert min(abs(az - expected_az), 360.0 - abs(az - expected_az)) < 0.3
    assert -1.0 < el < 0.0


def test_due_north_and_east_exact() -> None:
    lat0, lon0 = 45.0, 10.0
    obs = geodetic_to_ecef(lat0, lon0, 0.0)
    r = enu_rotation(lat0, lon0)
    az, el, rng = look_angles(obs, obs + 1000.0 * r[1], lat0, lon0)
    assert (az, el, rng) == pytest.approx((0.0, 0.0, 1000.0), abs=1e-9)
    az, el, _ = look_angles(obs, obs + 1000.0 * r[0] + 1000.0 * r[2], lat0, lon0)
    assert (az, el) == pytest.approx((90.0, 45.0), abs=1e-9)


def test_look_angles_broadcast_observers_by_targets() -> None:
    p, s = 4, 7
    rng = np.random.default_rng(11)
    lat = rng.uniform(-60, 60, p)
    lon = rng.uniform(-180, 180, p)
    obs = geodetic_to_ecef(lat, lon, 0.0)
    tgt = geodetic_to_ecef(rng.uniform(-60, 60, s), rng.uniform(-180, 180, s), 550e3)
    az, el, rg = look_angles(obs[:, None, :], tgt[None, :, :], lat[:, None], lon[:, None])
    assert az.shape == el.shape == rg.shape == (p, s)
    assert np.all((az >= 0.0) & (az < 360.0))
    for i in range(p):  # cross-check each pair against the unbroadcast call
        for j in range(s):
            one = look_angles(obs[i], tgt[j], lat[i], lon[i])
            np.testing.assert_allclose([az[i, j], el[i, j], rg[i, j]], one, rtol=1e-12)


# --- distances and validation ------------------------------------------------------------


def test_great_circle_distance() -> None:
    quarter = 0.5 * np.pi * MEAN_EARTH_RADIUS_M
    d = great_circle_distance_m(
        [0.0, 0.0, 90.0, 10.0],
        [0.0, 0.0, 0.0, 20.0],
        [0.0, 0.0, 0.0, 10.0],
        [90.0, 180.0, 0.0, 20.0],
    )
    np.testing.assert_allclose(d, [quarter, 2 * quarter, quarter, 0.0], rtol=1e-12, atol=1e-6)
    # London - New York, about 5570 km.
    assert great_circle_distance_m(51.5074, -0.1278, 40.7128, -74.0060) == pytest.approx(
        5.570e6, rel=2e-3
    )
    assert great_circle_distance_m(np.zeros((3, 1)), 0.0, 0.0, np.zeros((1, 4))).shape == (3, 4)


def test_validate_geodetic_accepts_valid() -> None:
    assert validate_geodetic(47.6, -122.3, 50.0) == []
    assert validate_geodetic(-90.0, 180.0, -500.0) == []


def test_validate_geodetic_reports_each_problem() -> None:
    problems = validate_geodetic(91.0, float("nan"), 2e5, field="ground_station.location")
    paths = [p for p, _ in problems]
    assert paths == [
        "ground_station.location.latitude_deg",
        "ground_station.location.longitude_deg",
        "ground_station.location.altitude_m",
    ]
    assert "finite" in problems[1][1]
    assert validate_geodetic(0.0, -180.5, float("inf"))[0][0] == "location.longitude_deg"


def test_validate_geodetic_custom_altitude_range_and_arrays() -> None:
    assert validate_geodetic(0.0, 0.0, 550e3, max_alt_m=2_000e3) == []
    problems = validate_geodetic([0.0, 95.0], [0.0, 0.0], [0.0, -1e4], field="points")
    assert [p for p, _ in problems] == ["points[1].latitude_deg", "points[1].altitude_m"]
    assert validate_geodetic("north", 0.0, 0.0) == [("location.latitude_deg", "must be a number")]
