"""Pass prediction: rise, culmination and set of satellites over ground points.

Elevation is geodetic (WGS84 ellipsoid normal), no refraction, computed from SGP4 TEME
states rotated to ITRF with ``shared.frames.teme_to_itrf`` and projected with
``shared.geodesy.look_angles``.  Times are UTC.

Algorithm:

1. Coarse sampling of elevation for every (point, satellite, instant) at a step of
   ``min(shortest period / 90, max(min_duration_s, 10 s))``: any pass lasting at least
   one step contains a sample, and no pass of the requested duration is missed.
   Shorter passes are also caught when a sampled local maximum lies within
   ``_RESCUE_MARGIN_DEG`` of the mask: the maximum is refined and a pass is kept if
   it reaches the mask.
2. Rise and set are refined by vectorised bisection on ``elevation - mask`` over all
   brackets at once (to ``_TIME_TOL_S``), culmination by vectorised golden-section
   search on ``[rise, set]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import numpy as np

from services.orbit.elements import ElementSet
from services.orbit.kernel import CatalogPropagator, times_to_jd
from shared.frames import teme_to_itrf
from shared.geodesy import geodetic_to_ecef, look_angles

__all__ = ["Pass", "predict_passes"]

_TIME_TOL_S = 0.05
_RESCUE_MARGIN_DEG = 3.0
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
_MAX_COARSE_ELEMENTS = 4_000_000  # (P * N * T) per coarse chunk, bounds memory


@dataclass(frozen=True, slots=True)
class Pass:
    """One pass of satellite ``sat_index`` (into the input list) over point ``point_index``.

    ``rise``/``set`` are clipped to the window (then ``rise_clipped``/``set_clipped``);
    azimuths in degrees from north through east, elevation in degrees.
    """

    point_index: int
    sat_index: int
    catalog_number: int
    rise: datetime
    culmination: datetime
    set: datetime
    max_elevation_deg: float
    rise_azimuth_deg: float
    set_azimuth_deg: float
    rise_clipped: bool = False
    set_clipped: bool = False

    @property
    def duration_s(self) -> float:
        return (self.set - self.rise).total_seconds()


class _Geometry:
    """Elevation/azimuth of (satellite, point) pairs at per-pair times (seconds from t0)."""

    def __init__(self, sets: Sequence[ElementSet], lat: np.ndarray, lon: np.ndarray,
                 alt: np.ndarray, jd0: float, fr0: float) -> None:
        self.sats = [e.to_satrec() for e in sets]
        self.lat, self.lon = lat, lon
        self.obs_m = geodetic_to_ecef(lat, lon, alt)
        self.jd0, self.fr0 = jd0, fr0

    def look(self, sat_idx: np.ndarray, pt_idx: np.ndarray, t_s: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        fr = self.fr0 + t_s / 86400.0
        jd = np.full(t_s.shape, self.jd0)
        r = np.empty((t_s.size, 3))
        for k, (n, f) in enumerate(zip(sat_idx.tolist(), fr.tolist(), strict=True)):
            err, rk, _ = self.sats[n].sgp4(self.jd0, f)
            r[k] = rk if err == 0 else (np.nan, np.nan, np.nan)
        itrf_m = cast(np.ndarray, teme_to_itrf(r, jd, fr)) * 1000.0
        az, el, _ = look_angles(self.obs_m[pt_idx], itrf_m, self.lat[pt_idx], self.lon[pt_idx])
        return az, np.where(np.isnan(el), -90.0, el)


def _bisect(geo: _Geometry, s: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            thr: float, rising: bool) -> np.ndarray:
    """Vectorised bisection: el(lo) < thr <= el(hi) for rising, reverse for setting."""
    lo, hi = lo.astype(float).copy(), hi.astype(float).copy()
    while lo.size and np.max(hi - lo) > _TIME_TOL_S:
        mid = 0.5 * (lo + hi)
        _, el = geo.look(s, p, mid)
        above = el >= thr
        go_hi = above if rising else ~above  # the crossing is in [lo, mid]
        hi = np.where(go_hi, mid, hi)
        lo = np.where(go_hi, lo, mid)
    mid_point: np.ndarray = 0.5 * (lo + hi)
    return mid_point


def _golden_max(geo: _Geometry, s: np.ndarray, p: np.ndarray, a: np.ndarray, b: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised golden-section search for the elevation maximum on [a, b]."""
    a, b = a.astype(float).copy(), b.astype(float).copy()
    c = b - _GOLDEN * (b - a)
    d = a + _GOLDEN * (b - a)
    fc = geo.look(s, p, c)[1]
    fd = geo.look(s, p, d)[1]
    while a.size and np.max(b - a) > _TIME_TOL_S:
        left = fc > fd  # maximum in [a, d]
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        new_c = b - _GOLDEN * (b - a)
        new_d = a + _GOLDEN * (b - a)
        c_next = np.where(left, new_c, d)
        d_next = np.where(left, c, new_d)
        f_new = geo.look(s, p, np.where(left, c_next, d_next))[1]
        fc, fd = np.where(left, f_new, fd), np.where(left, fc, f_new)
        c, d = c_next, d_next
    t = 0.5 * (a + b)
    return t, geo.look(s, p, t)[1]


def _coarse(prop: CatalogPropagator, geo: _Geometry, t_grid: np.ndarray, thr: float
            ) -> np.ndarray:
    """Elevation samples (P, N, T) in chunks along time; returns the full array."""
    n_pts, n_sat, n_t = geo.lat.size, prop.n_sats, t_grid.size
    el = np.empty((n_pts, n_sat, n_t), dtype=np.float32)
    chunk = max(1, _MAX_COARSE_ELEMENTS // max(1, n_pts * n_sat))
    obs = geo.obs_m[:, None, None, :]
    lat = geo.lat[:, None, None]
    lon = geo.lon[:, None, None]
    for i in range(0, n_t, chunk):
        t = t_grid[i : i + chunk]
        jd = np.full(t.shape, geo.jd0)
        fr = geo.fr0 + t / 86400.0
        res = prop.propagate_jd(jd, fr)
        itrf_m = cast(np.ndarray, teme_to_itrf(res.position_km, jd, fr)) * 1000.0  # (t, N, 3)
        tgt = itrf_m.transpose(1, 0, 2)[None]  # (1, N, t, 3)
        _, e, _ = look_angles(obs, tgt, lat, lon)
        el[:, :, i : i + chunk] = np.where(np.isnan(e), -90.0, e)
    return el


def predict_passes(
    element_sets: Sequence[ElementSet],
    lat_deg: np.ndarray | Sequence[float] | float,
    lon_deg: np.ndarray | Sequence[float] | float,
    alt_m: np.ndarray | Sequence[float] | float,
    start: datetime,
    end: datetime,
    min_elevation_deg: float = 10.0,
    min_duration_s: float = 0.0,
    *,
    propagator: CatalogPropagator | None = None,
) -> list[Pass]:
    """All passes above ``min_elevation_deg`` lasting ``>= min_duration_s`` in
    ``[start, end)`` for every (ground point, satellite), sorted by rise time.

    Ground points are WGS84 geodetic (degrees, metres), broadcast to ``(P,)``.  A
    prebuilt ``propagator`` for ``element_sets`` may be passed to skip the JIT build.
    """
    lat, lon, alt = (
        np.ravel(a)
        for a in np.broadcast_arrays(
            np.asarray(lat_deg, float), np.asarray(lon_deg, float), np.asarray(alt_m, float)
        )
    )
    sets = list(element_sets)
    span_s = (end - start).total_seconds()
    if not sets or lat.size == 0 or span_s <= 0:
        return []
    prop = propagator or CatalogPropagator(sets)
    jd0, fr0 = (float(x[0]) for x in times_to_jd([start]))
    geo = _Geometry(sets, lat, lon, alt, jd0, fr0)
    min_period_s = min(e.period_min for e in sets) * 60.0
    step = min(min_period_s / 90.0, max(min_duration_s, 10.0))
    n_steps = int(np.ceil(span_s / step)) + 1
    t_grid = np.minimum(np.arange(n_steps) * step, span_s)
    thr = float(min_elevation_deg)
    el = _coarse(prop, geo, t_grid, thr)
    above = el >= thr

    # --- brackets from sign changes ------------------------------------------------
    rise_p, rise_s, rise_k = np.nonzero(~above[:, :, :-1] & above[:, :, 1:])
    set_p, set_s, set_k = np.nonzero(above[:, :, :-1] & ~above[:, :, 1:])
    rise_t = _bisect(geo, rise_s, rise_p, t_grid[rise_k], t_grid[rise_k + 1], thr, True)
    set_t = _bisect(geo, set_s, set_p, t_grid[set_k], t_grid[set_k + 1], thr, False)

    # --- short passes between samples: refine sub-threshold local maxima -------------
    mid = el[:, :, 1:-1]
    cand = (mid > el[:, :, :-2]) & (mid >= el[:, :, 2:]) & (mid < thr)
    cand &= mid > thr - _RESCUE_MARGIN_DEG
    cp, cs, ck = np.nonzero(cand)
    if cp.size:
        t_max, e_max = _golden_max(geo, cs, cp, t_grid[ck], t_grid[ck + 2])
        ok = e_max >= thr
        cp, cs, ck, t_max = cp[ok], cs[ok], ck[ok], t_max[ok]
        r_t = _bisect(geo, cs, cp, t_grid[ck], t_max, thr, True)
        s_t = _bisect(geo, cs, cp, t_max, t_grid[ck + 2], thr, False)
        rise_p, rise_s = np.concatenate([rise_p, cp]), np.concatenate([rise_s, cs])
        rise_t = np.concatenate([rise_t, r_t])
        set_p, set_s = np.concatenate([set_p, cp]), np.concatenate([set_s, cs])
        set_t = np.concatenate([set_t, s_t])

    # --- pair rises with sets per (point, satellite) -------------------------------
    start_p, start_s = np.nonzero(above[:, :, 0])
    end_p, end_s = np.nonzero(above[:, :, -1])
    events = (
        [(p, s, t, 0, False) for p, s, t in zip(rise_p.tolist(), rise_s.tolist(), rise_t.tolist(), strict=True)]
        + [(p, s, 0.0, 0, True) for p, s in zip(start_p.tolist(), start_s.tolist(), strict=True)]
        + [(p, s, t, 1, False) for p, s, t in zip(set_p.tolist(), set_s.tolist(), set_t.tolist(), strict=True)]
        + [(p, s, span_s, 1, True) for p, s in zip(end_p.tolist(), end_s.tolist(), strict=True)]
    )  # fmt: skip
    events.sort(key=lambda ev: (ev[0], ev[1], ev[2], ev[3]))
    spans: list[tuple[int, int, float, float, bool, bool]] = []
    open_rise: dict[tuple[int, int], tuple[float, bool]] = {}
    for p, s, t, kind, clipped in events:
        if kind == 0:
            open_rise[(p, s)] = (t, clipped)
        elif (p, s) in open_rise:
            t_rise, r_clip = open_rise.pop((p, s))
            if t - t_rise >= min_duration_s and t > t_rise:
                spans.append((p, s, t_rise, t, r_clip, clipped))
    if not spans:
        return []
    sp = np.array([x[0] for x in spans])
    ss = np.array([x[1] for x in spans])
    tr = np.array([x[2] for x in spans])
    ts = np.array([x[3] for x in spans])
    t_cul, e_cul = _golden_max(geo, ss, sp, tr, ts)
    az_r, _ = geo.look(ss, sp, tr)
    az_s, _ = geo.look(ss, sp, ts)

    def when(t: float) -> datetime:
        return start + timedelta(seconds=round(t, 6))

    passes = [
        Pass(
            point_index=int(sp[k]),
            sat_index=int(ss[k]),
            catalog_number=sets[int(ss[k])].catalog_number,
            rise=when(tr[k]),
            culmination=when(t_cul[k]),
            set=when(ts[k]),
            max_elevation_deg=float(e_cul[k]),
            rise_azimuth_deg=float(az_r[k]),
            set_azimuth_deg=float(az_s[k]),
            rise_clipped=spans[k][4],
            set_clipped=spans[k][5],
        )
        for k in range(len(spans))
    ]
    passes.sort(key=lambda x: (x.rise, x.point_index, x.sat_index))
    return passes
