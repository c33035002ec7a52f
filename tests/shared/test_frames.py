"""Tests for shared.frames: Julian dates, GMST82, EOP and TEME -> ITRF against Skyfield."""

from __future__ import annotations

import numpy as np
import pytest
from sgp4.api import Satrec, SatrecArray
from skyfield.api import EarthSatellite, load, wgs84
from skyfield.framelib import itrs
from skyfield.positionlib import ICRF
from skyfield.sgp4lib import TEME, theta_GMST1982
from skyfield.units import Distance, Velocity

from shared.frames import (
    ARCSEC_TO_RAD,
    datetime64_from_jd,
    earth_orientation,
    eop_table_span,
    gmst82,
    gmst82_rate_rad_s,
    itrf_to_geodetic,
    julian_date,
    teme_to_itrf,
)
from shared.geodesy import ecef_to_geodetic

# Real Starlink elements from the 2026-05-12 catalogue (53, 97.7, 43, 43, 97.3, 97.3, 70 deg).
TLES = """\
1 44714C 19074B   26132.95048611 -.00027894  00000+0 -54858-3 0  1322
2 44714  53.1534 236.8965 0001912  20.7505  90.9471 15.46691953    14
1 48880C 21059B   26132.94979167  .01024600  00000+0  96584-2 0  1326
2 48880  97.6598 260.5559 0001380  90.7710 341.0124 15.66548037    13
1 57243C 23094AB  26133.00534722 -.00001214  00000+0 -43888-4 0  1331
2 57243  43.0045  16.8268 0001128 265.1970 124.3551 15.27636032    19
1 62267C 24237A   26133.04076389 -.00001762  00000+0 -13693-4 0  1336
2 62267  43.0008  29.0659 0001532 275.5320 286.2697 15.70821828    19
1 67612C 26018Z   26133.00534722  .00035235  00000+0  10941-2 0  1331
2 67612  97.2851 198.3820 0000644  84.8876 347.1927 15.33411352    14
1 68904C 26097K   26133.00256944  .00035484  00000+0  23839-3 0  1337
2 68904  97.2846 328.4362 0000695 112.1908 317.5113 15.75172795    16
1 49135C 21082F   26133.00604167 -.00047367  00000+0 -39692-2 0  1333
2 49135  70.0003  92.2725 0003128 267.3341 242.1478 14.98357455    11
""".splitlines()
TLE_PAIRS = list(zip(TLES[0::2], TLES[1::2], strict=True))

# Several times over three days after the element epochs (no leap second in between).
DAY0 = np.datetime64("2026-05-12T00:00:00", "ns")
OFFSETS_S = np.array([0, 1234, 5_400, 30_001, 86_399, 100_000, 172_800, 259_199])
TIMES = DAY0 + OFFSETS_S.astype("timedelta64[s]")

# Requirement: within 20 m of Skyfield's ITRS. Both sides read the same builtin IERS table,
# so the real agreement is sub-millimetre; assert 1 cm to catch any regression.
POSITION_TOL_M = 0.01
VELOCITY_TOL_M_S = 1e-3


@pytest.fixture(scope="module")
def ts():
    return load.timescale(builtin=True)


def _skyfield_times(ts, times: np.ndarray):
    seconds = (times - DAY0) / np.timedelta64(1, "ns") / 1e9
    return ts.utc(2026, 5, 12, 0, 0, seconds)


def _propagate_teme(times: np.ndarray):
    jd, fr = julian_date(times)
    sats = SatrecArray([Satrec.twoline2rv(l1, l2) for l1, l2 in TLE_PAIRS])
    err, r, v = sats.sgp4(jd, fr)  # (N, T, 3)
    assert not err.any()
    return jd, fr, np.swapaxes(r, 0, 1), np.swapaxes(v, 0, 1)  # time-major (T, N, 3)


# --- Julian dates ------------------------------------------------------------------------


def test_julian_date_matches_sgp4_convention() -> None:
    from sgp4.api import jday

    jd, fr = julian_date(np.datetime64("2026-05-12T18:30:15.250"))
    jd_ref, fr_ref = jday(2026, 5, 12, 18, 30, 15.25)
    assert jd == jd_ref == 2461172.5
    assert fr == pytest.approx(fr_ref, abs=1e-15)
    jd, fr = julian_date(np.datetime64("2000-01-01T12:00"))
    assert jd + fr == 2451545.0


def test_julian_date_roundtrip_and_nat() -> None:
    t = np.array(
        [
            "1969-12-31T23:59:59.999999999",
            "2026-05-12T00:00:00.000000001",
            "2100-02-28T23:00",
            "NaT",
        ],
        dtype="datetime64[ns]",
    )
    jd, fr = julian_date(t)
    assert np.isnan(jd[3]) and np.isnan(fr[3])
    back = datetime64_from_jd(jd, fr)
    assert np.all(back[:3] == t[:3]) and np.isnat(back[3])
    # Unnormalized input: fraction above one day and negative.
    assert datetime64_from_jd(2461172.5, 1.25) == np.datetime64("2026-05-13T06:00", "ns")
    assert datetime64_from_jd(2461172.5, -0.25) == np.datetime64("2026-05-11T18:00", "ns")


# --- GMST ----------------------------------------------------------------------------------


def test_gmst82_vallado_example_3_5() -> None:
    # Vallado, Fundamentals of Astrodynamics and Applications, Example 3-5:
    # 1992 August 20, 12:14 UT1 -> GMST = 152.578787810 deg.
    jd, fr = julian_date(np.datetime64("1992-08-20T12:14"))
    assert np.degrees(gmst82(jd, fr)) == pytest.approx(152.578787810, abs=1e-6)


def test_gmst82_matches_skyfield_and_sgp4() -> None:
    from sgp4.propagation import gstime

    jd = np.full(5, 2461172.5)
    fr = np.array([0.0, 0.1, 0.33, 0.5, 0.999])
    theta, theta_dot = theta_GMST1982(jd, fr)
    np.testing.assert_allclose(gmst82(jd, fr), theta, atol=1e-12)
    np.testing.assert_allclose(gmst82_rate_rad_s(jd, fr), theta_dot / 86400.0, rtol=1e-14)
    np.testing.assert_allclose(gmst82(jd + fr, 0.0), [gstime(x) for x in jd + fr], atol=1e-9)
    assert np.all((gmst82(jd, fr) >= 0) & (gmst82(jd, fr) < 2 * np.pi))


# --- Earth orientation ---------------------------------------------------------------------


def test_dut1_matches_skyfield_table(ts) -> None:
    times = np.datetime64("1980-01-01", "ns") + np.arange(0, 46 * 365, 17).astype("timedelta64[D]")
    times = times + np.timedelta64(12, "h")
    years = times.astype("datetime64[Y]")
    seconds = (times - years) / np.timedelta64(1, "s")
    t = ts.utc(years.astype(int) + 1970, 1, 1, 0, 0, seconds)
    dut1, xp, yp = earth_orientation(*julian_date(times))
    # Tolerance covers the 1 s UTC ambiguity of seconds counted across a leap second.
    np.testing.assert_allclose(dut1, t.dut1, atol=1e-5)
    assert np.all(xp == 0.0) and np.all(yp == 0.0)
    assert np.all(np.abs(dut1) < 0.9)


def test_dut1_leap_second_step(ts) -> None:
    before = julian_date(np.datetime64("2016-12-31T23:59:59", "ns"))
    after = julian_date(np.datetime64("2017-01-01T00:00:00", "ns"))
    d_before, d_after = earth_orientation(*before)[0], earth_orientation(*after)[0]
    assert d_after - d_before == pytest.approx(1.0, abs=1e-4)
    assert d_after == pytest.approx(ts.utc(2017, 1, 1).dut1, abs=1e-9)


def test_eop_beyond_table_is_held() -> None:
    first, last = eop_table_span()
    assert first < np.datetime64("1974-01-01")
    assert last >= np.datetime64("2027-01-01")
    at_end = earth_orientation(*julian_date(last))[0]
    later = earth_orientation(*julian_date(last + np.timedelta64(400, "D")))[0]
    assert later == pytest.approx(at_end, abs=1e-12)


# --- TEME -> ITRF ----------------------------------------------------------------------------


def test_teme_to_itrf_matches_skyfield_satellites(ts) -> None:
    jd, fr, r_teme, v_teme = _propagate_teme(TIMES)
    r_itrf, v_itrf = teme_to_itrf(r_teme, jd, fr, v_teme)
    assert r_itrf.shape == v_itrf.shape == (len(TIMES), len(TLE_PAIRS), 3)
    t = _skyfield_times(ts, TIMES)
    for k, (l1, l2) in enumerate(TLE_PAIRS):
        position = EarthSatellite(l1, l2, ts=ts).at(t)
        r_ref, v_ref = position.frame_xyz_and_velocity(itrs)
        dr_m = np.linalg.norm(r_itrf[:, k] - r_ref.km.T, axis=-1) * 1e3
        dv_m_s = np.linalg.norm(v_itrf[:, k] - v_ref.km_per_s.T, axis=-1) * 1e3
        assert dr_m.max() < POSITION_TOL_M
        assert dv_m_s.max() < VELOCITY_TOL_M_S

        # Geodetic coordinates against Skyfield's WGS84 model.
        lat, lon, alt = itrf_to_geodetic(r_itrf[:, k])
        geo = wgs84.geographic_position_of(position)
        np.testing.assert_allclose(alt, geo.elevation.m, atol=POSITION_TOL_M)
        np.testing.assert_allclose(lat, geo.latitude.degrees, atol=POSITION_TOL_M / 111e3)
        dlon = (lon - geo.longitude.degrees + 180.0) % 360.0 - 180.0
        east_m = np.abs(dlon) * 111e3 * np.cos(np.radians(lat))
        assert east_m.max() < POSITION_TOL_M


def test_teme_to_itrf_matches_skyfield_teme_frame(ts) -> None:
    # Synthetic TEME states (LEO to GEO), converted through Skyfield's TEME frame object.
    rng = np.random.default_rng(5)
    r = rng.normal(size=(len(TIMES), 3))
    r *= rng.uniform(6_800.0, 42_200.0, (len(TIMES), 1)) / np.linalg.norm(r, axis=1, keepdims=True)
    v = rng.normal(size=(len(TIMES), 3)) * 4.0
    t = _skyfield_times(ts, TIMES)
    position = ICRF.from_time_and_frame_vectors(t, TEME, Distance(km=r.T), Velocity(km_per_s=v.T))
    r_ref, v_ref = position.frame_xyz_and_velocity(itrs)
    jd, fr = julian_date(TIMES)
    r_itrf, v_itrf = teme_to_itrf(r, jd, fr, v)  # one state per time: (T, 3)
    assert np.abs(r_itrf - r_ref.km.T).max() * 1e3 < POSITION_TOL_M
    assert np.abs(v_itrf - v_ref.km_per_s.T).max() * 1e3 < VELOCITY_TOL_M_S


def test_polar_motion_convention_matches_skyfield() -> None:
    ts_pm = load.timescale(builtin=True)  # a private timescale: we set its polar motion
    x_as, y_as = 0.21, 0.38
    ts_pm.polar_motion_table = (np.array([2.4e6, 2.5e6]), np.full(2, x_as), np.full(2, y_as))
    jd, fr, r_teme, v_teme = _propagate_teme(TIMES)
    r_itrf, v_itrf = teme_to_itrf(
        r_teme, jd, fr, v_teme, xp_rad=x_as * ARCSEC_TO_RAD, yp_rad=y_as * ARCSEC_TO_RAD
    )
    r_no_pm = teme_to_itrf(r_teme, jd, fr)
    t = _skyfield_times(ts_pm, TIMES)
    for k, (l1, l2) in enumerate(TLE_PAIRS):
        r_ref, v_ref = EarthSatellite(l1, l2, ts=ts_pm).at(t).frame_xyz_and_velocity(itrs)
        assert np.linalg.norm(r_itrf[:, k] - r_ref.km.T, axis=-1).max() * 1e3 < POSITION_TOL_M
        assert np.linalg.norm(v_itrf[:, k] - v_ref.km_per_s.T, axis=-1).max() * 1e3 < 0.01
    # ~0.43 arcsec of pole offset moves a LEO point by up to ~15 m.
    shift_m = np.linalg.norm(r_itrf - r_no_pm, axis=-1).max() * 1e3
    assert 5.0 < shift_m < 20.0


def test_teme_to_itrf_shapes_and_scalar_time() -> None:
    jd, fr, r_teme, v_teme = _propagate_teme(TIMES)
    full = teme_to_itrf(r_teme, jd, fr)
    # Scalar time with (N, 3) states equals the corresponding time slice.
    np.testing.assert_allclose(teme_to_itrf(r_teme[3], jd[3], fr[3]), full[3], rtol=0, atol=1e-9)
    # Extra axes after time are allowed: (T, 2, N, 3).
    stacked = np.stack([r_teme, r_teme], axis=1)
    np.testing.assert_allclose(teme_to_itrf(stacked, jd, fr)[:, 1], full, rtol=0, atol=1e-9)
    # Rotation preserves length; position-only call returns an array.
    np.testing.assert_allclose(
        np.linalg.norm(full, axis=-1), np.linalg.norm(r_teme, axis=-1), rtol=1e-14
    )
    with pytest.raises(ValueError):
        teme_to_itrf(r_teme[:, :, :2], jd, fr)
    with pytest.raises(ValueError):
        teme_to_itrf(r_teme, jd, fr, v_teme[:, :2])


def test_dut1_effect_size() -> None:
    # 0.1 s of UT1-UTC rotates a point at 7000 km radius by about 51 m along the equator.
    r = np.array([7000.0, 0.0, 0.0])
    jd, fr = julian_date(DAY0)
    a = teme_to_itrf(r, jd, fr, dut1_s=0.0)
    b = teme_to_itrf(r, jd, fr, dut1_s=0.1)
    assert np.linalg.norm(a - b) * 1e3 == pytest.approx(7000e3 * 7.2921e-5 * 0.1, rel=1e-3)


def test_itrf_to_geodetic_is_ecef_to_geodetic_in_km() -> None:
    r_km = np.array([[6378.137, 0.0, 0.0], [0.0, 0.0, 7000.0]])
    for a, b in zip(itrf_to_geodetic(r_km), ecef_to_geodetic(r_km * 1e3), strict=True):
        np.testing.assert_array_equal(a, b)
