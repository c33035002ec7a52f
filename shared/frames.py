"""Time scales and the TEME -> ITRF rotation used with SGP4.

Time at this layer
------------------
UTC instants are either NumPy ``datetime64[ns]`` arrays (POSIX time: no leap seconds) or
split Julian dates ``(jd, fr)`` of float64 arrays, as python-sgp4 uses them: ``jd`` is the
Julian date of the preceding 0h UTC (it ends in .5) and ``fr`` the fraction of the day,
so that ``jd + fr`` is the UTC Julian date without losing precision.

Frames
------
SGP4 returns TEME (true equator, mean equinox) vectors. Following Vallado et al.,
"Revisiting Spacetrack Report #3" (AIAA 2006-6753, Appendix C):

    r_PEF  = R3(GMST82(UT1)) r_TEME
    v_PEF  = R3(GMST82) v_TEME + dR3/dt r_TEME    (the Earth-rotation term)
    r_ITRF = PM r_PEF,  PM = R1(-yp) R2(-xp)      (IERS 2010 W^T, TIO locator s' dropped)

where R1/R2/R3 are the IERS coordinate-frame rotations and GMST82 is the IAU 1982 sidereal
time. s' (about -12 microarcseconds in 2026) moves a LEO point by under a millimetre.

Earth-orientation parameters (what is applied, from where)
----------------------------------------------------------
* **UT1-UTC (dUT1) is applied** by default. Its values come from the daily IERS table that
  ships *inside the Skyfield wheel* (``load.timescale(builtin=True)``, read once and cached
  on first use; no file or network access beyond the installed package). With Skyfield
  1.55 the table spans 1973-01-02 .. 2027-01-23 UTC; its last year or so is the IERS
  Bulletin A prediction. Between the daily nodes UT1-TAI is interpolated linearly and the
  leap-second count TAI-UTC is applied as a step, which is exactly what Skyfield does, so
  the two agree to well under a millimetre inside the table. **Outside the table** dUT1 is
  held at the value of the nearest end (UT1-TAI held constant). Skyfield instead blends
  Delta T toward a long-term parabola there, so beyond 2027-01-23 the two drift apart:
  measured with Skyfield 1.55, dUT1 differs by 7 ms (~3.5 m at LEO) on 2027-06-01 and by
  15 .. 20 ms (~8 .. 10 m) in 2028-2029. Upgrading Skyfield extends the table. Ignoring
  dUT1 altogether would cost 0.5 m per ms of dUT1 at 7000 km radius, i.e. ~17 .. 50 m at
  LEO during 2026 (dUT1 runs from about +0.03 s in May to +0.09 s in December 2026).
* **Polar motion defaults to zero.** The builtin table carries no polar motion, and
  Skyfield's own ITRS frame applies none unless a ``finals2000A.all`` file is loaded; the
  true pole offset (0.1 .. 0.5 arcsec, ~3 .. 17 m at LEO) therefore separates both this
  module and default Skyfield from the true ITRF by the same amount, while the two agree
  with each other. Callers that have IERS values can pass ``xp_rad``/``yp_rad``.

:func:`earth_orientation` returns the ``(dut1_s, xp_rad, yp_rad)`` actually used. It is a
pair of ``np.interp``/``np.searchsorted`` calls on a cached table: cheap per request.
"""

from __future__ import annotations

import functools
from typing import cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shared.geodesy import ecef_to_geodetic

__all__ = [
    "ARCSEC_TO_RAD",
    "SECONDS_PER_DAY",
    "datetime64_from_jd",
    "earth_orientation",
    "eop_table_span",
    "gmst82",
    "gmst82_rate_rad_s",
    "itrf_to_geodetic",
    "julian_date",
    "teme_to_itrf",
]

SECONDS_PER_DAY = 86400.0
#: One arcsecond in radians.
ARCSEC_TO_RAD = np.pi / (180.0 * 3600.0)
#: Julian date of J2000.0 (2000-01-01 12:00).
JD_J2000 = 2451545.0
#: Julian date of the POSIX epoch 1970-01-01T00:00.
JD_UNIX_EPOCH = 2440587.5

#: TT - TAI, seconds (exact by definition).
TT_MINUS_TAI_S = 32.184

_NS_PER_DAY = 86_400_000_000_000
_TWO_PI = 2.0 * np.pi


# --- Julian dates -----------------------------------------------------------------------


def julian_date(times: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Split UTC Julian date ``(jd, fr)`` of ``datetime64`` instants.

    ``times`` is anything NumPy converts to ``datetime64`` (arrays of ``datetime64[ns]``,
    ISO strings, ...), taken as UTC. Returns float64 arrays of the input's shape: ``jd`` is
    the Julian date of the preceding 0h (x.5) and ``fr`` in [0, 1) the fraction of the day.
    NaT becomes NaN. Like ``datetime64`` itself, leap seconds are not represented.
    """
    t = np.asarray(times, dtype="datetime64[ns]")
    ns = t.view(np.int64)
    days, rem = np.divmod(ns, _NS_PER_DAY)
    jd = days + JD_UNIX_EPOCH
    fr = rem / _NS_PER_DAY
    nat = np.isnat(t)
    if np.any(nat):
        jd = np.where(nat, np.nan, jd)
        fr = np.where(nat, np.nan, fr)
    return jd, fr


def datetime64_from_jd(jd: ArrayLike, fr: ArrayLike = 0.0) -> NDArray[np.datetime64]:
    """UTC ``datetime64[ns]`` instants from a split Julian date ``jd + fr``.

    ``jd`` and ``fr`` broadcast; neither needs to be normalized (``fr`` may exceed 1 or be
    negative). Rounded to the nearest nanosecond; NaN becomes NaT.
    """
    jd = np.asarray(jd, dtype=np.float64)
    fr = np.asarray(fr, dtype=np.float64)
    jd, fr = np.broadcast_arrays(jd, fr)
    shifted = jd - JD_UNIX_EPOCH  # exact for jd values ending in .5
    whole = np.floor(shifted)
    frac = (shifted - whole) + fr
    carry = np.floor(frac)
    whole = whole + carry
    frac = frac - carry
    bad = ~(np.isfinite(whole) & np.isfinite(frac))
    whole = np.where(bad, 0.0, whole)
    frac = np.where(bad, 0.0, frac)
    ns = whole.astype(np.int64) * _NS_PER_DAY + np.rint(frac * _NS_PER_DAY).astype(np.int64)
    out = ns.view("datetime64[ns]")
    if np.any(bad):
        out = np.where(bad, np.datetime64("NaT", "ns"), out)
    return cast(NDArray[np.datetime64], out)


# --- Sidereal time ----------------------------------------------------------------------


def _gmst82_seconds_poly(t_centuries: NDArray[np.float64]) -> NDArray[np.float64]:
    # IAU 1982 GMST at 0h UT1 minus the 36525-day-per-century term, in seconds of time.
    return (
        67310.54841
        + (8640184.812866 + (0.093104 - 6.2e-6 * t_centuries) * t_centuries) * t_centuries
    )


def gmst82(jd_ut1: ArrayLike, fr_ut1: ArrayLike = 0.0) -> NDArray[np.float64]:
    """Greenwich mean sidereal time, IAU 1982 model, in radians in [0, 2 pi).

    ``jd_ut1 + fr_ut1`` is the UT1 Julian date (split as in python-sgp4; inputs broadcast).
    This is the angle SGP4's TEME frame is rotated by to reach the pseudo-Earth-fixed
    frame (Vallado et al. 2006; Aoki et al. 1982):

        GMST = 67310.54841 s + (876600 h + 8640184.812866 s) T + 0.093104 s T^2
               - 6.2e-6 s T^3,   T = (JD_UT1 - 2451545.0) / 36525.

    The 876600 h T term is carried as the day fraction of ``jd + fr`` so no precision is
    lost to large arguments.
    """
    jd = np.asarray(jd_ut1, dtype=np.float64)
    fr = np.asarray(fr_ut1, dtype=np.float64)
    t = (jd - JD_J2000 + fr) / 36525.0
    day_fraction = jd % 1.0 + fr + _gmst82_seconds_poly(t) / SECONDS_PER_DAY % 1.0
    return day_fraction % 1.0 * _TWO_PI


def gmst82_rate_rad_s(jd_ut1: ArrayLike, fr_ut1: ArrayLike = 0.0) -> NDArray[np.float64]:
    """Time derivative of :func:`gmst82` in radians per (UT1) second (about 7.2921158e-5)."""
    jd = np.asarray(jd_ut1, dtype=np.float64)
    fr = np.asarray(fr_ut1, dtype=np.float64)
    t = (jd - JD_J2000 + fr) / 36525.0
    dg_dt = 8640184.812866 + (2.0 * 0.093104 - 3.0 * 6.2e-6 * t) * t  # s per century
    return (1.0 + dg_dt / (SECONDS_PER_DAY * 36525.0)) * _TWO_PI / SECONDS_PER_DAY


# --- Earth orientation ------------------------------------------------------------------


@functools.cache
def _ut1_table() -> tuple[
    float, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]
]:
    """Tables from Skyfield's bundled IERS data, read once.

    Returns ``(jd0, node_tai_days, ut1_minus_tai_s, leap_utc_days, tai_minus_utc_s)``:
    daily nodes of UT1-TAI (= 32.184 s - Delta T) at TAI instants, and the leap-second
    steps (TAI-UTC from each UTC date on), all dates as days after ``jd0``.
    """
    from skyfield.api import load  # deferred: only needed for the tables

    ts = load.timescale(builtin=True)
    table_tt, table_delta_t = (np.asarray(a, dtype=np.float64) for a in ts.delta_t_table)
    jd0 = float(np.floor(table_tt[0] - 0.5) + 0.5)
    node_tai = (table_tt - jd0) - TT_MINUS_TAI_S / SECONDS_PER_DAY
    ut1_minus_tai = TT_MINUS_TAI_S - table_delta_t
    leap_utc = np.concatenate(([-np.inf], np.asarray(ts.leap_dates, dtype=np.float64) - jd0))
    tai_minus_utc = np.concatenate(([10.0], np.asarray(ts.leap_offsets, dtype=np.float64)))
    return jd0, node_tai, ut1_minus_tai, leap_utc, tai_minus_utc


def eop_table_span() -> tuple[np.datetime64, np.datetime64]:
    """First and last UTC instants of the builtin dUT1 table (beyond them dUT1 is held)."""
    jd0, node_tai, _, leap_utc, tai_minus_utc = _ut1_table()
    first_last = node_tai[[0, -1]]
    leap = tai_minus_utc[np.searchsorted(leap_utc, first_last, side="right") - 1]
    span = datetime64_from_jd(jd0, first_last - leap / SECONDS_PER_DAY)
    span = (span + np.timedelta64(500, "ms")).astype("datetime64[s]").astype("datetime64[ns]")
    return span[0], span[1]


def earth_orientation(
    jd: ArrayLike, fr: ArrayLike = 0.0
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Earth-orientation parameters applied by default at UTC ``jd + fr``.

    Returns ``(dut1_s, xp_rad, yp_rad)`` broadcast to the shape of ``jd + fr``: UT1-UTC in
    seconds from Skyfield's builtin IERS table (held constant beyond its ends, see the
    module docstring) and the polar-motion angles, which are zero (no offline source).
    UTC before 1972 is taken as TAI - 10 s.
    """
    jd0, node_tai, ut1_minus_tai, leap_utc, tai_minus_utc = _ut1_table()
    jd = np.asarray(jd, dtype=np.float64)
    fr = np.asarray(fr, dtype=np.float64)
    utc_days = (jd - jd0) + fr
    leap = tai_minus_utc[np.searchsorted(leap_utc, utc_days, side="right") - 1]
    tai_days = utc_days + leap / SECONDS_PER_DAY
    dut1 = np.interp(tai_days, node_tai, ut1_minus_tai) + leap
    zero = np.zeros_like(dut1)
    return dut1, zero, zero.copy()


# --- TEME -> ITRF -----------------------------------------------------------------------


def _rotation_matrices(
    theta: NDArray[np.float64], xp: NDArray[np.float64], yp: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``M = PM(xp, yp) R3(theta)`` and ``dM/dtheta``, shape ``theta.shape + (3, 3)``."""
    c, s = np.cos(theta), np.sin(theta)
    zero, one = np.zeros_like(theta), np.ones_like(theta)
    r3 = np.stack(
        (np.stack((c, s, zero), -1), np.stack((-s, c, zero), -1), np.stack((zero, zero, one), -1)),
        -2,
    )
    dr3 = np.stack(
        (
            np.stack((-s, c, zero), -1),
            np.stack((-c, -s, zero), -1),
            np.stack((zero, zero, zero), -1),
        ),
        -2,
    )
    if not (np.any(xp) or np.any(yp)):
        return r3, dr3
    cx, sx = np.cos(xp), np.sin(xp)
    cy, sy = np.cos(yp), np.sin(yp)
    zp, op = np.zeros_like(cx), np.ones_like(cx)
    # PM = R1(-yp) R2(-xp) in IERS conventions (coordinate-frame rotations).
    r1 = np.stack(
        (np.stack((op, zp, zp), -1), np.stack((zp, cy, -sy), -1), np.stack((zp, sy, cy), -1)), -2
    )
    r2 = np.stack(
        (np.stack((cx, zp, sx), -1), np.stack((zp, op, zp), -1), np.stack((-sx, zp, cx), -1)), -2
    )
    pm = r1 @ r2
    return pm @ r3, pm @ dr3


def teme_to_itrf(
    r_teme_km: ArrayLike,
    jd: ArrayLike,
    fr: ArrayLike,
    v_teme_km_s: ArrayLike | None = None,
    *,
    dut1_s: ArrayLike | None = None,
    xp_rad: ArrayLike = 0.0,
    yp_rad: ArrayLike = 0.0,
) -> NDArray[np.float64] | tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Rotate SGP4 TEME position (and velocity) to the Earth-fixed ITRF frame.

    Parameters
    ----------
    r_teme_km:
        TEME positions in km, shape ``time_shape + extra + (3,)``: time axes first, e.g.
        ``(T, N, 3)`` or ``(T, 3)`` with ``jd``/``fr`` of shape ``(T,)``, or ``(N, 3)``
        (any shape) with scalar ``jd``/``fr``.
    jd, fr:
        UTC split Julian date (python-sgp4 convention), broadcasting to ``time_shape``.
    v_teme_km_s:
        Optional TEME velocities in km/s, same shape as ``r_teme_km``.
    dut1_s:
        UT1-UTC in seconds (scalar or ``time_shape``). ``None`` (default) takes it from
        :func:`earth_orientation` (Skyfield's builtin IERS table).
    xp_rad, yp_rad:
        Polar-motion angles in radians (scalar or ``time_shape``); default zero.

    Returns
    -------
    ``r_itrf_km`` (shape of ``r_teme_km``), or ``(r_itrf_km, v_itrf_km_s)`` when a velocity
    is given. The velocity is Earth-relative: it includes the ``-omega x r`` term with
    omega the GMST82 rate. Float64 throughout; the rotation is built once per time step
    and applied with a single batched matmul (plus one more for the velocity term).
    """
    jd = np.asarray(jd, dtype=np.float64)
    fr = np.asarray(fr, dtype=np.float64)
    time_shape = np.broadcast_shapes(jd.shape, fr.shape)
    if dut1_s is None:
        dut1_s = earth_orientation(jd, fr)[0]
    dut1 = np.asarray(dut1_s, dtype=np.float64)
    fr_ut1 = fr + dut1 / SECONDS_PER_DAY
    theta = np.broadcast_to(gmst82(jd, fr_ut1), time_shape)
    xp = np.broadcast_to(np.asarray(xp_rad, dtype=np.float64), time_shape)
    yp = np.broadcast_to(np.asarray(yp_rad, dtype=np.float64), time_shape)
    m, dm_dtheta = _rotation_matrices(theta, xp, yp)

    r = np.asarray(r_teme_km, dtype=np.float64)
    n_time = len(time_shape)
    if r.ndim < n_time + 1 or r.shape[:n_time] != time_shape or r.shape[-1] != 3:
        raise ValueError(f"r_teme_km shape {r.shape} must be time_shape {time_shape} + (..., 3)")
    # Rows-as-vectors form: r_itrf = r @ M^T, one (k, 3) @ (3, 3) block per time step.
    # A C-contiguous M^T and a preallocated C-contiguous output keep np.matmul on its fast
    # path even for strided inputs (e.g. a swapaxes view of python-sgp4's (N, T, 3)).
    rows = r.reshape(time_shape + (-1, 3))
    m_t = np.ascontiguousarray(np.swapaxes(m, -1, -2))
    r_itrf = np.matmul(rows, m_t, out=np.empty(rows.shape)).reshape(r.shape)
    if v_teme_km_s is None:
        return r_itrf

    v = np.asarray(v_teme_km_s, dtype=np.float64)
    if v.shape != r.shape:
        raise ValueError(f"v_teme_km_s shape {v.shape} must equal r_teme_km shape {r.shape}")
    omega = np.broadcast_to(gmst82_rate_rad_s(jd, fr_ut1), time_shape)
    dm_dt_t = np.ascontiguousarray(np.swapaxes(dm_dtheta, -1, -2) * omega[..., None, None])
    v_itrf = np.matmul(v.reshape(rows.shape), m_t, out=np.empty(rows.shape))
    v_itrf += np.matmul(rows, dm_dt_t, out=np.empty(rows.shape))  # Earth-rotation term
    return r_itrf, v_itrf.reshape(r.shape)


def itrf_to_geodetic(
    r_itrf_km: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """WGS84 ``(lat_deg, lon_deg, alt_m)`` of ITRF positions given in km (shape ``[..., 3]``)."""
    return ecef_to_geodetic(np.asarray(r_itrf_km, dtype=np.float64) * 1000.0)
