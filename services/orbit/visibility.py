"""Which satellites each ground point sees, for many points at once.

Inputs are WGS84 geodetic ground points (degrees, metres) and satellite positions in the
Earth-fixed ITRF frame in **km** (e.g. ``shared.frames.teme_to_itrf`` of kernel output).
Elevation is geodetic (above the plane normal to the ellipsoid normal), without
refraction; azimuth from geodetic north through east.

Method: KD-trees on points and satellites give, in one C-level pass
(``cKDTree.sparse_distance_matrix``), every pair closer than the largest slant range at
which any satellite (up to the highest one in the input) can be at or above the
elevation mask (minus a margin for the geodetic/geocentric vertical difference).  Exact
geodetic look angles are then computed for those candidates only, by projecting on the
``shared.geodesy.enu_rotation`` axes (same definitions as ``shared.geodesy.look_angles``),
and the result is returned columnar (CSR-like), grouped by point.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from shared.geodesy import enu_rotation, geodetic_to_ecef

__all__ = ["Visibility", "visible_satellites", "max_slant_range_km"]

# Largest angle between the geodetic normal and the geocentric radius on WGS84 is
# ~0.1924 deg; the prefilter mask is lowered by this margin so it never drops a pair.
_VERTICAL_MARGIN_DEG = 0.25


@dataclass(frozen=True, slots=True)
class Visibility:
    """Visible satellites per ground point in CSR layout.

    Point ``i`` sees ``sat_index[offsets[i]:offsets[i + 1]]`` (indices into the input
    satellite array; order within a point is unspecified but deterministic) with the matching ``azimuth_deg``, ``elevation_deg``
    and ``range_km`` entries.
    """

    offsets: np.ndarray  # (P + 1,) int64
    sat_index: np.ndarray  # (K,) int64
    azimuth_deg: np.ndarray  # (K,) float64
    elevation_deg: np.ndarray  # (K,) float64
    range_km: np.ndarray  # (K,) float64

    @property
    def n_points(self) -> int:
        return self.offsets.size - 1

    def counts(self) -> np.ndarray:
        """Number of visible satellites per point, ``(P,)``."""
        return np.diff(self.offsets)

    def point(self, i: int) -> slice:
        """Slice into the columnar arrays for point ``i``."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


def max_slant_range_km(
    observer_radius_km: np.ndarray | float, sat_radius_km: float, elevation_deg: float
) -> np.ndarray:
    """Slant range (km) of a satellite at geocentric radius ``sat_radius_km`` seen at
    geocentric elevation ``elevation_deg`` from radius ``observer_radius_km`` (spherical
    geometry: ``r_s^2 = R^2 + rho^2 + 2 R rho sin(el)``).  Increasing in ``sat_radius_km``."""
    big_r = np.asarray(observer_radius_km, dtype=float)
    s = np.sin(np.radians(elevation_deg))
    disc = big_r * big_r * s * s + np.maximum(sat_radius_km**2 - big_r * big_r, 0.0)
    return -big_r * s + np.sqrt(disc)


def visible_satellites(
    lat_deg: np.ndarray,
    lon_deg: np.ndarray,
    alt_m: np.ndarray,
    sat_itrf_km: np.ndarray,
    min_elevation_deg: float = 0.0,
    *,
    workers: int | None = None,
) -> Visibility:
    """Satellites above ``min_elevation_deg`` for each of ``P`` ground points.

    ``lat_deg``, ``lon_deg`` (geodetic degrees) and ``alt_m`` (metres above the
    ellipsoid) broadcast to ``(P,)``; ``sat_itrf_km`` is ``(S, 3)`` ITRF km.  Satellites
    with non-finite positions (failed propagation) are never visible.  Point blocks are
    processed on ``workers`` threads (default: CPU count; NumPy/SciPy release the GIL).
    """
    lat, lon, alt = np.broadcast_arrays(
        np.atleast_1d(np.asarray(lat_deg, float)),
        np.atleast_1d(np.asarray(lon_deg, float)),
        np.atleast_1d(np.asarray(alt_m, float)),
    )
    n_points = lat.size
    sats = np.asarray(sat_itrf_km, dtype=float).reshape(-1, 3)
    finite = np.flatnonzero(np.isfinite(sats).all(axis=1))
    empty = Visibility(
        np.zeros(n_points + 1, np.int64),
        np.zeros(0, np.int64),
        np.zeros(0),
        np.zeros(0),
        np.zeros(0),
    )
    if n_points == 0 or finite.size == 0:
        return empty
    sats_ok = sats[finite]
    obs_km = geodetic_to_ecef(lat, lon, alt) / 1000.0  # (P, 3)
    obs_r = np.linalg.norm(obs_km, axis=1)
    sat_r_max = float(np.linalg.norm(sats_ok, axis=1).max())
    # one search radius for all points: the largest per-point maximum slant range
    radius = float(
        max_slant_range_km(obs_r, sat_r_max, min_elevation_deg - _VERTICAL_MARGIN_DEG).max()
    ) * (1.0 + 1e-9)
    sat_tree = cKDTree(sats_ok)
    rot = enu_rotation(lat, lon)  # (P, 3, 3): rows east, north, up
    sin_min = np.sin(np.radians(min_elevation_deg))
    workers = max(1, min(workers or os.cpu_count() or 1, n_points // 1000 or 1))
    bounds = np.linspace(0, n_points, workers + 1).astype(int)

    def block(lo: int, hi: int) -> tuple[np.ndarray, ...]:
        pairs = cKDTree(obs_km[lo:hi]).sparse_distance_matrix(
            sat_tree, radius, output_type="ndarray"
        )
        i_local = pairs["i"]
        order = np.argsort(
            i_local.astype(np.uint16) if hi - lo <= 65536 else i_local, kind="stable"
        )  # radix sort: groups pairs by point
        pidx = i_local[order] + lo
        cand = pairs["j"][order]
        rng_km = pairs["v"][order]
        d = sats_ok[cand] - obs_km[pidx]
        up = np.einsum("kj,kj->k", rot[pidx, 2, :], d)
        keep = up >= sin_min * rng_km
        pidx, cand, rng_km, up, d = pidx[keep], cand[keep], rng_km[keep], up[keep], d[keep]
        east = np.einsum("kj,kj->k", rot[pidx, 0, :], d)
        north = np.einsum("kj,kj->k", rot[pidx, 1, :], d)
        elevation = np.degrees(np.arcsin(np.clip(up / rng_km, -1.0, 1.0)))
        azimuth = np.degrees(np.arctan2(east, north)) % 360.0
        azimuth[azimuth >= 360.0] = 0.0
        return pidx, cand, azimuth, elevation, rng_km

    if workers == 1:
        parts = [block(0, n_points)]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(block, bounds[:-1], bounds[1:]))
    pidx, cand, azimuth, elevation, rng_km = (
        np.concatenate(cols) for cols in zip(*parts, strict=True)
    )
    counts = np.bincount(pidx, minlength=n_points)
    offsets = np.zeros(n_points + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Visibility(offsets, finite[cand], azimuth, elevation, rng_km)
