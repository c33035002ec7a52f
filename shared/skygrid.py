"""A sky grid: which satellites could be above an elevation mask, for many observers at once.

Satellites (Earth-fixed Cartesian positions, any length unit) are binned by radius band,
geocentric latitude row and longitude column. An observer at geocentric elevation mask
``el`` can only see satellites within an Earth-central angle ``cap`` of its own direction
(``cap`` from the band's radius range and the observers' radius range); for each row the
cap crosses, the observer takes the contiguous run of cells spanning the cap's widest
longitude extent within that row. Each satellite is listed twice, at its longitude column
and 360 degrees later, so every run (one that wraps through longitude 0 included) is one
slice of the cell-ordered satellite list: no per-observer Python loop, and the candidate
list is a set of ``(start, length)`` runs that :func:`expand_runs` turns into indices with
``np.repeat`` (no ``(P, 3)`` row gathers).

The candidates are a superset of the satellites at or above the mask measured from any
``up`` direction (e.g. the geodetic vertical): the mask is lowered by the largest angle
between the observers' ``up`` and their geocentric radius (the triangle inequality on the
sphere of directions), then by ``EPS_DEG``, and every angular bound is widened by
``EPS_DEG`` (1e-6 deg, far above rounding). The caller runs the exact test on them.

Generic (no service logic): used by the orbit service's VisibleSatellites; linkbroker's
router carries its own copy of the same scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.typing import NDArray

__all__ = ["SkyGrid", "central_angle_bound_deg", "expand_runs", "geocentric_lat_lon_deg"]

ROW_DEG = 2.0  # default latitude row height
COLS = 1440  # default longitude columns (0.25 deg)
EPS_DEG = 1e-6  # slack added to every angular bound
_SEG_COST = 2.0  # modelled cost of one (observer, row) run against one candidate pair


def central_angle_bound_deg(r_ground_min: float, r_ground_max: float, r_sat_min: float,
                            r_sat_max: float, el_deg: float) -> float:
    """Largest Earth-central angle (deg) between an observer and a satellite seen at
    geocentric elevation >= ``el_deg``, for observer radii in ``[r_ground_min,
    r_ground_max]`` and satellite radii in ``[r_sat_min, r_sat_max]`` (one unit).

    Elevation ``eps`` and central angle ``lam`` obey ``r_sat cos(eps + lam) = r_ground
    cos(eps)``; for ``r_ground <= r_sat`` the elevation falls monotonically with
    ``lam``, so ``eps >= el`` iff ``lam <= arccos(r_ground cos(el) / r_sat) - el``, which
    grows with ``r_sat`` and shrinks with ``r_ground``. An observer above a satellite
    never sees it at a non-negative elevation; for negative ``el`` that case (and any
    other the formula does not cover) gives 180 (everything).
    """
    if el_deg <= -89.0 or r_sat_max <= 0.0 or (el_deg < 0.0 and r_ground_max > r_sat_min):
        return 180.0
    e = np.radians(el_deg)
    c = min(1.0, max(-1.0, r_ground_min * np.cos(e) / r_sat_max))
    return float(min(180.0, np.degrees(np.arccos(c) - e) + EPS_DEG))


def geocentric_lat_lon_deg(xyz: NDArray[np.float64]
                           ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Geocentric latitude in [-90, 90] and longitude in [0, 360] (deg) of ``(P, 3)`` points."""
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    lon = np.degrees(np.arctan2(y, x)) % 360.0
    return lat, lon


def expand_runs(lo: NDArray[np.int64], length: NDArray[np.int64]) -> NDArray[np.int64]:
    """Positions ``lo[0] .. lo[0] + length[0] - 1, lo[1] .. , ...`` (flat int64)."""
    lo = lo.ravel()
    length = length.ravel()
    total = int(length.sum())
    offset = np.cumsum(length) - length
    return np.repeat(lo - offset, length) + np.arange(total, dtype=np.int64)


def radius_bands(radius: NDArray[np.float64], el_deg: float, earth_radius: float,
                 max_bands: int = 4) -> NDArray[np.int64]:
    """Band index (0 = lowest) per satellite: contiguous radius ranges chosen to
    minimise the modelled candidate work per observer (runs + pairs).

    A band's cap is set by its highest satellite, so mixing low and high shells
    inflates the low shell's candidates; each extra band costs one more set of row
    runs. Dynamic programming over (at most 32) equal-count radius bins. Only tunes
    the grid: any banding gives exact candidates.
    """
    n = radius.size
    if n == 0 or max_bands <= 1:
        return np.zeros(n, np.int64)
    order = np.argsort(radius)
    r_sorted = radius[order]
    m = min(32, n)
    bin_end = (np.arange(1, m + 1) * n) // m  # exclusive end of each bin in sorted order
    cum = bin_end.astype(np.float64)
    r_top = r_sorted[bin_end - 1]
    e = np.radians(el_deg - 0.2)
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = np.clip(np.degrees(np.arccos(np.clip(earth_radius * np.cos(e) / r_top, -1.0, 1.0))
                                 - e), 0.0, 180.0)
    cap = np.where(np.isfinite(cap), cap, 180.0)
    seg = _SEG_COST * (2.0 * cap / ROW_DEG + 1.0)
    frac = (1.0 - np.cos(np.radians(cap))) / 2.0
    best = np.full((m + 1, max_bands + 1), np.inf)  # best[j, b]: bins 0..j-1 in b bands
    best[0, 0] = 0.0
    back = np.zeros((m + 1, max_bands + 1), np.int64)
    count_before = np.r_[0.0, cum]
    for j in range(1, m + 1):
        cost_band = seg[j - 1] + (cum[j - 1] - count_before[:j]) * frac[j - 1]  # over i
        for b in range(1, max_bands + 1):
            tot = best[:j, b - 1] + cost_band
            i = int(np.argmin(tot))
            best[j, b], back[j, b] = tot[i], i
    b = int(np.argmin(best[m]))
    cuts = []
    j = m
    while b > 0:
        i = int(back[j, b])
        cuts.append(i)
        j, b = i, b - 1
    band_sorted = np.zeros(n, np.int64)
    for k, s in enumerate(sorted(cuts)[1:], start=1):
        band_sorted[bin_end[s - 1]:] = k
    band = np.empty(n, np.int64)
    band[order] = band_sorted
    return band


@dataclass(frozen=True)
class SkyGrid:
    """Satellites binned by radius band, geocentric latitude row and longitude column.

    Build with :meth:`build`; :meth:`runs` / :meth:`candidates` answer for observers.
    Satellites with non-finite positions are never listed.
    """

    band_lo: NDArray[np.float64]  # (B,) smallest satellite radius of each band
    band_hi: NDArray[np.float64]  # (B,) largest satellite radius of each band (0: empty)
    sat_of: NDArray[np.int64]  # satellite index in cell order (each twice)
    starts: NDArray[np.int64]  # (B * rows * 2 * cols + 1,) first position of each cell
    row_deg: float = ROW_DEG
    cols: int = COLS

    @property
    def n_rows(self) -> int:
        return int(np.ceil(180.0 / self.row_deg))

    @property
    def _sin_edge(self) -> NDArray[np.float64]:
        """sin of the row edges' latitudes, ``(rows + 1,)``."""
        return cast(NDArray[np.float64],
                    np.sin(np.radians(np.arange(self.n_rows + 1) * self.row_deg - 90.0)))

    @property
    def _cos_edge(self) -> NDArray[np.float64]:
        return cast(NDArray[np.float64],
                    np.cos(np.radians(np.arange(self.n_rows + 1) * self.row_deg - 90.0)))

    @classmethod
    def build(cls, positions: NDArray[np.float64], el_deg: float, *, earth_radius: float,
              max_bands: int = 4, row_deg: float = ROW_DEG, cols: int = COLS) -> SkyGrid:
        """Bin satellites ``(N, 3)`` (Earth-fixed, one length unit); ``el_deg`` (the usual
        mask) and ``earth_radius`` (same unit as ``positions``) only tune the radius
        bands: any mask can be queried."""
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        ok = np.flatnonzero(np.isfinite(pos).all(axis=1))
        pos = pos[ok]
        radius = np.linalg.norm(pos, axis=1)
        band = radius_bands(radius, el_deg, earth_radius, max_bands)
        b = int(band.max()) + 1 if ok.size else 1
        lo = np.zeros(b)
        hi = np.zeros(b)
        if ok.size:
            np.maximum.at(hi, band, radius)
            lo[:] = np.inf
            np.minimum.at(lo, band, radius)
            lo[hi <= 0.0] = 0.0
        lat, lon = geocentric_lat_lon_deg(pos)
        rows = int(np.ceil(180.0 / row_deg))
        row = np.clip(np.floor((lat + 90.0) / row_deg).astype(np.int64), 0, rows - 1)
        col = np.clip(np.floor(lon * (cols / 360.0)).astype(np.int64), 0, cols - 1)
        cell = (band * rows + row) * (2 * cols) + col
        keys = np.concatenate((cell, cell + cols))
        order = np.argsort(keys, kind="stable")
        counts = np.bincount(keys, minlength=b * rows * 2 * cols)
        starts = np.zeros(counts.size + 1, np.int64)
        np.cumsum(counts, out=starts[1:])
        return cls(lo, hi, np.tile(ok, 2)[order], starts, float(row_deg), int(cols))

    def caps(self, observers: NDArray[np.float64], up: NDArray[np.float64],
             min_elevation_deg: float) -> NDArray[np.float64]:
        """Per band, the Earth-central angle (deg) within which ``observers`` ``(P, 3)``
        can see a satellite of that band at or above ``min_elevation_deg`` measured from
        ``up`` (``(P, 3)`` unit vectors); ``-1`` for an empty band. Pass it to :meth:`runs`
        of subsets of the points for runs that do not depend on how they are split."""
        obs = np.asarray(observers, dtype=np.float64).reshape(-1, 3)
        out = np.full(self.band_lo.size, -1.0)
        if obs.shape[0] == 0:
            return out
        up = np.asarray(up, dtype=np.float64).reshape(-1, 3)
        r_obs = np.sqrt(np.einsum("pc,pc->p", obs, obs))
        cos_tilt = np.einsum("pc,pc->p", obs, up) / np.maximum(
            r_obs * np.sqrt(np.einsum("pc,pc->p", up, up)), 1e-300)
        tilt = float(np.degrees(np.arccos(np.clip(np.min(cos_tilt), -1.0, 1.0))))
        el = min_elevation_deg - tilt - EPS_DEG  # geocentric elevation floor
        rmin, rmax = float(r_obs.min()), float(r_obs.max())
        for k in range(self.band_lo.size):
            if self.band_hi[k] > 0.0:
                out[k] = central_angle_bound_deg(rmin, rmax, self.band_lo[k],
                                                 self.band_hi[k], el)
        return out

    def runs(self, observers: NDArray[np.float64], up: NDArray[np.float64],
             min_elevation_deg: float, *, caps: NDArray[np.float64] | None = None
             ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Candidate runs of ``P`` observers: ``(lo, length)``, both ``(P, M)``.

        Observer ``p``'s candidates are ``sat_of[lo[p, m]:lo[p, m] + length[p, m]]`` over
        ``m`` (band by band, row by row, west to east), each satellite at most once, and
        include every satellite at or above ``min_elevation_deg`` measured from ``up``
        (``(P, 3)`` unit vectors). ``observers`` ``(P, 3)`` is in the grid's unit.
        ``caps``: from :meth:`caps` of a superset of these observers (default: of these).
        """
        obs = np.asarray(observers, dtype=np.float64).reshape(-1, 3)
        p = obs.shape[0]
        if p == 0 or self.sat_of.size == 0:
            return np.zeros((p, 0), np.int64), np.zeros((p, 0), np.int64)
        if caps is None:
            caps = self.caps(obs, up, min_elevation_deg)
        lat, lon = geocentric_lat_lon_deg(obs)
        rows, cols, row_deg = self.n_rows, self.cols, self.row_deg
        sin_lat, cos_lat = np.sin(np.radians(lat)), np.cos(np.radians(lat))
        lo_parts, len_parts = [], []
        for k in range(self.band_lo.size):
            cap = float(caps[k])
            if cap < 0.0:
                continue
            first = np.floor((lat - cap + 90.0) / row_deg).astype(np.int64)
            last = np.floor((lat + cap + 90.0) / row_deg).astype(np.int64)
            n_rows = int(np.max(last - first)) + 1
            rr = first[:, None] + np.arange(n_rows)  # (P, R)
            valid = (rr <= last[:, None]) & (rr >= 0) & (rr < rows)
            if cap >= 180.0:
                half = np.full(rr.shape, 180.0)
            else:
                # Widest longitude half-span of the cap within each row: at the latitude
                # ``peak`` of the cap's widest point (sin peak = sin lat / cos cap, inside
                # the cap when it holds no pole) clipped to the row, so at ``peak`` or at
                # one of the row's edges (tabulated); the span is unimodal in latitude.
                pole = (lat + cap >= 90.0) | (lat - cap <= -90.0)
                cos_cap = np.cos(np.radians(cap))
                with np.errstate(invalid="ignore", divide="ignore"):
                    sin_peak = np.clip(sin_lat / cos_cap, -1.0, 1.0)
                    peak = np.degrees(np.arcsin(sin_peak))
                    cos_peak = np.sqrt(1.0 - sin_peak * sin_peak)
                    row_c = np.clip(rr, 0, rows - 1)
                    edge = np.where(peak[:, None] < row_c * row_deg - 90.0, row_c,
                                    np.where(peak[:, None] > (row_c + 1) * row_deg - 90.0,
                                             row_c + 1, -1))  # -1: the peak is in the row
                    inside = edge < 0
                    sin_at = np.where(inside, sin_peak[:, None],
                                      np.take(self._sin_edge, edge, mode="clip"))
                    cos_at = np.where(inside, cos_peak[:, None],
                                      np.take(self._cos_edge, edge, mode="clip"))
                    cos_half = (cos_cap - sin_lat[:, None] * sin_at) / (cos_lat[:, None] * cos_at)
                    half = np.degrees(np.arccos(np.clip(cos_half, -1.0, 1.0))) + EPS_DEG
                half = np.where(np.isfinite(half) & ~pole[:, None], half, 180.0)
            a = lon[:, None] - half
            wrap = a < 0.0
            a = np.where(wrap, a + 360.0, a)
            b = np.where(wrap, lon[:, None] + 360.0, lon[:, None]) + half
            ca = np.floor(a * (cols / 360.0)).astype(np.int64)
            cb = np.minimum(np.floor(b * (cols / 360.0)).astype(np.int64), 2 * cols - 1)
            full = (half >= 180.0) | (cb - ca + 1 >= cols)
            ca = np.where(full, 0, ca)
            cb = np.where(full, cols - 1, cb)
            base = (k * rows + np.clip(rr, 0, rows - 1)) * (2 * cols)
            lo = self.starts[base + ca]
            length = np.where(valid, self.starts[base + cb + 1] - lo, 0)
            lo_parts.append(lo)
            len_parts.append(length)
        if not lo_parts:
            return np.zeros((p, 0), np.int64), np.zeros((p, 0), np.int64)
        return np.concatenate(lo_parts, axis=1), np.concatenate(len_parts, axis=1)

    def candidates(self, observers: NDArray[np.float64], up: NDArray[np.float64],
                   min_elevation_deg: float) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Candidate satellites of ``P`` observers: ``(per_observer, satellite)``.

        ``satellite`` lists observer 0's candidates, then observer 1's, ...;
        ``per_observer`` ``(P,)`` counts them (see :meth:`runs`).
        """
        lo, length = self.runs(observers, up, min_elevation_deg)
        return length.sum(axis=1), np.take(self.sat_of, expand_runs(lo, length))
