"""Per-slot path planning: terminals -> satellites (+ laser links) -> gateway -> Azure region.

One slot, one graph. :class:`SlotRouter` builds a single directed
``scipy.sparse`` CSR graph with nodes

* ``0 .. N-1``: satellites,
* ``N .. N+G-1``: gateways,
* ``N+G .. N+G+R-1``: Azure regions (virtual source nodes),

and edges (weights are one-way delays in ms)

* region ``r`` -> gateway ``g``: terrestrial fibre delay (propagation + fixed
  ground-segment term, :class:`~services.linkbroker.gateways.FibreModel`),
* gateway ``g`` -> satellite ``s``: slant range / c, where ``g`` sees ``s`` at or
  above the gateway elevation mask,
* satellite <-> satellite: the slot's usable +Grid laser links, length / c.

Because every link is symmetric in delay, the shortest path *from* a region to
a satellite is the reverse of the best path from that satellite down to the
region. Region nodes have no incoming edges, so traffic never transits a region
or hops between gateways over fibre.

A single multi-source call
``dijkstra(graph, indices=region_nodes, min_only=True, return_predecessors=True)``
then gives, for every satellite, the lowest-latency region, the gateway it lands
at and the whole path back (predecessors). When terminals name their target
region, the call runs from just the requested regions (``min_only=False``, one
row per distinct target) instead. Terminals are then served by lookups: for
each terminal the visible satellites (elevation >= the terminal mask) are found
on a sky grid (:class:`_SkyGrid`: satellites binned by radius band, geocentric
latitude row and longitude column; each terminal takes the run of cells its
visibility cap covers in every row, a bound that provably contains every
satellite above the mask, then the exact elevation test), uplink delay is added
to each candidate's distance, and the best candidate wins (a segmented argmin
over the flat terminal x satellite pairs) - all vectorized, no per-terminal
Python loop. Gateways find their satellites on the same grid.

Why a grid and not a k-d tree: on the 10,361-satellite catalogue the two
k-d tree queries (count within the largest slant range, then the K nearest)
plus the padded ``(T, K)`` arrays they produce took about 140 of the 260 ms of a
10,000-terminal slot, and the gateway ``look_angles`` over every satellite
another 60; the grid yields the visible pairs directly (about 80 candidates
per terminal, 51 visible) with component-wise numpy gathers.

Capacity awareness: resources without free capacity are passed in as boolean
masks (``True`` = usable) and their edges are removed; nearly-full satellites
can instead be *penalized* with extra ms on the edges entering them, which
steers paths away without forbidding them. Penalties only steer the choice;
reported latencies are physical.

Positions: satellites ``(N, 3)`` ITRF km (what the orbit service returns),
gateways and terminals WGS84 geodetic degrees / metres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.csgraph import dijkstra

from services.linkbroker.capacity_model import DEFAULT_CAPACITY_MODEL, CapacityModel
from services.linkbroker.gateways import FibreModel, GatewayTable
from services.linkbroker.latency import LatencyBudget, latency_budget
from services.linkbroker.regions import RegionTable, load_regions
from services.linkbroker.topology import IslTopology
from shared.geodesy import SPEED_OF_LIGHT_M_S, enu_rotation, geodetic_to_ecef, look_angles

__all__ = ["RoutePlan", "SlotRouter", "max_slant_range_m"]

_MS_PER_M = 1e3 / SPEED_OF_LIGHT_M_S
_NO_NODE = -9999  # scipy's "no predecessor" marker


def max_slant_range_m(
    ground_radius_m: float, satellite_radius_m: float, min_elevation_deg: float
) -> float:
    """Longest slant range (m) at which a satellite at ``satellite_radius_m`` from the
    Earth's centre is at or above ``min_elevation_deg`` for a ground point at
    ``ground_radius_m`` (spherical geometry)."""
    e = np.radians(min_elevation_deg)
    rg, rs = ground_radius_m, satellite_radius_m
    return float(np.sqrt(rs * rs - (rg * np.cos(e)) ** 2) - rg * np.sin(e))


# -- visibility candidates ----------------------------------------------------------

_ROW_DEG = 2.0  # latitude rows of the sky grid
_COLS = 1440  # longitude columns (0.25 deg)
_EPS_DEG = 1e-6  # slack added to every angular bound


def _central_angle_bound_deg(r_ground_min: float, r_ground_max: float, r_sat_min: float,
                             r_sat_max: float, el_deg: float) -> float:
    """Largest Earth-central angle (deg) between an observer and a satellite seen at
    geocentric elevation >= ``el_deg``, for observer radii in ``[r_ground_min,
    r_ground_max]`` and satellite radii in ``[r_sat_min, r_sat_max]`` (metres).

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
    return float(min(180.0, np.degrees(np.arccos(c) - e) + _EPS_DEG))


def _geocentric_deg(xyz: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Geocentric latitude in [-90, 90] and longitude in [0, 360] (deg) of ``(P, 3)`` points."""
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    lon = np.degrees(np.arctan2(y, x)) % 360.0
    return lat, lon


@dataclass(frozen=True)
class _SkyGrid:
    """Satellites binned by radius band, geocentric latitude row and longitude column.

    Each satellite is listed twice, at its longitude column and 360 degrees later,
    so that any longitude window (one that wraps through 0 included) is a single
    run of cells. :meth:`candidates` enumerates, for many observers at once, every
    satellite that could be above an elevation mask: per band, the spherical cap
    of the band's central-angle bound, covered row by row with the cap's widest
    longitude span within the row. No per-observer Python loop.
    """

    radius_m: NDArray[np.float64]  # (N,)
    band_lo_m: NDArray[np.float64]  # (B,) smallest satellite radius of each band
    band_hi_m: NDArray[np.float64]  # (B,) largest satellite radius of each band
    sat_of: NDArray[np.int64]  # satellites in cell order (each twice)
    starts: NDArray[np.int64]  # (B * rows * 2 * cols + 1,) first position of each cell

    @staticmethod
    def rows() -> int:
        return int(np.ceil(180.0 / _ROW_DEG))

    @classmethod
    def build(cls, pos_m: NDArray[np.float64], el_deg: float, max_bands: int = 4) -> _SkyGrid:
        """Bin satellites ``(N, 3)`` (m); ``el_deg`` (the usual mask) only tunes the
        radius bands, any mask can be queried."""
        n = pos_m.shape[0]
        radius = np.linalg.norm(pos_m, axis=1)
        band = _radius_bands(radius, el_deg, max_bands)
        b = int(band.max()) + 1 if n else 1
        lo = np.array([radius[band == k].min() if np.any(band == k) else 0.0 for k in range(b)])
        hi = np.array([radius[band == k].max() if np.any(band == k) else 0.0 for k in range(b)])
        lat, lon = _geocentric_deg(pos_m)
        rows = cls.rows()
        row = np.clip(np.floor((lat + 90.0) / _ROW_DEG).astype(np.int64), 0, rows - 1)
        col = np.clip(np.floor(lon * (_COLS / 360.0)).astype(np.int64), 0, _COLS - 1)
        cell = (band * rows + row) * (2 * _COLS) + col
        keys = np.concatenate((cell, cell + _COLS))
        order = np.argsort(keys, kind="stable")
        counts = np.bincount(keys, minlength=b * rows * 2 * _COLS)
        starts = np.zeros(counts.size + 1, np.int64)
        np.cumsum(counts, out=starts[1:])
        return cls(radius, lo, hi, np.tile(np.arange(n), 2)[order], starts)

    def candidates(
        self, obs_ecef_m: NDArray[np.float64], up: NDArray[np.float64], min_elevation_deg: float
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Candidate satellites of ``P`` observers: ``(per_observer, satellite)``.

        ``satellite`` lists observer 0's candidates, then observer 1's, ...;
        ``per_observer`` ``(P,)`` counts them. The candidates include every
        satellite at or above ``min_elevation_deg`` measured from ``up`` (``(P, 3)``
        unit vectors, e.g. the geodetic vertical), each at most once per observer.
        """
        p = obs_ecef_m.shape[0]
        if p == 0 or self.radius_m.size == 0:
            return np.zeros(p, np.int64), np.empty(0, np.int64)
        r_obs = np.linalg.norm(obs_ecef_m, axis=1)
        cos_tilt = np.einsum("pc,pc->p", obs_ecef_m, up) / np.maximum(r_obs, 1e-9)
        tilt = float(np.degrees(np.arccos(np.clip(np.min(cos_tilt), -1.0, 1.0))))
        el = min_elevation_deg - tilt - _EPS_DEG  # geocentric elevation floor
        lat, lon = _geocentric_deg(obs_ecef_m)
        rmin, rmax = float(r_obs.min()), float(r_obs.max())
        rows = self.rows()
        sin_lat, cos_lat = np.sin(np.radians(lat)), np.cos(np.radians(lat))
        lo_parts, hi_parts = [], []
        for k in range(self.band_lo_m.size):
            if self.band_hi_m[k] <= 0.0:
                continue
            cap = _central_angle_bound_deg(rmin, rmax, self.band_lo_m[k], self.band_hi_m[k], el)
            first = np.floor((lat - cap + 90.0) / _ROW_DEG).astype(np.int64)
            last = np.floor((lat + cap + 90.0) / _ROW_DEG).astype(np.int64)
            n_rows = int(np.max(last - first)) + 1
            rr = first[:, None] + np.arange(n_rows)  # (P, R)
            valid = (rr <= last[:, None]) & (rr >= 0) & (rr < rows)
            # Widest longitude half-span of the cap within each row.
            pole = (lat + cap >= 90.0) | (lat - cap <= -90.0)
            cap_r = np.radians(cap)
            lat_lo = np.maximum(rr * _ROW_DEG - 90.0, (lat - cap)[:, None])
            lat_hi = np.minimum((rr + 1) * _ROW_DEG - 90.0, (lat + cap)[:, None])
            with np.errstate(invalid="ignore", divide="ignore"):
                peak = np.degrees(np.arcsin(np.clip(sin_lat / np.cos(cap_r), -1.0, 1.0)))
                at = np.radians(np.clip(peak[:, None], lat_lo, lat_hi))
                cos_half = (np.cos(cap_r) - sin_lat[:, None] * np.sin(at)) / (cos_lat[:, None] * np.cos(at))
                half = np.degrees(np.arccos(np.clip(cos_half, -1.0, 1.0))) + _EPS_DEG
            half = np.where(np.isfinite(half) & ~pole[:, None], half, 180.0)
            a = lon[:, None] - half
            wrap = a < 0.0
            a = np.where(wrap, a + 360.0, a)
            b = np.where(wrap, lon[:, None] + 360.0, lon[:, None]) + half
            ca = np.floor(a * (_COLS / 360.0)).astype(np.int64)
            cb = np.minimum(np.floor(b * (_COLS / 360.0)).astype(np.int64), 2 * _COLS - 1)
            full = (half >= 180.0) | (cb - ca + 1 >= _COLS)
            ca = np.where(full, 0, ca)
            cb = np.where(full, _COLS - 1, cb)
            base = (k * rows + np.clip(rr, 0, rows - 1)) * (2 * _COLS)
            lo = self.starts[base + ca]
            hi = np.where(valid, self.starts[base + cb + 1], lo)
            lo_parts.append(lo)
            hi_parts.append(hi)
        lo = np.concatenate(lo_parts, axis=1).ravel()
        length = np.concatenate(hi_parts, axis=1).ravel() - lo
        per_obs = length.reshape(p, -1).sum(axis=1)
        total = int(per_obs.sum())
        offset = np.cumsum(length) - length
        at_pos = np.repeat(lo - offset, length) + np.arange(total)
        return per_obs, np.take(self.sat_of, at_pos)


_SEG_COST = 2.0  # relative cost of one (observer, row) segment vs one candidate pair


def _radius_bands(radius_m: NDArray[np.float64], el_deg: float, max_bands: int = 4) -> NDArray[np.int64]:
    """Band index (0 = lowest) per satellite: contiguous radius ranges chosen to
    minimise the modelled candidate work per observer (segments + pairs).

    A band's cap is set by its highest satellite, so mixing low and high shells
    inflates the low shell's candidates; each extra band costs one more set of
    row segments. Dynamic programming over (at most 32) equal-count radius bins.
    """
    n = radius_m.size
    if n == 0 or max_bands <= 1:
        return np.zeros(n, np.int64)
    order = np.argsort(radius_m)
    r_sorted = radius_m[order]
    m = min(32, n)
    bin_end = (np.arange(1, m + 1) * n) // m  # exclusive end of each bin in sorted order
    cum = bin_end.astype(np.float64)
    r_top = r_sorted[bin_end - 1]
    e = np.radians(el_deg - 0.2)
    cap = np.clip(np.degrees(np.arccos(np.clip(6_371e3 * np.cos(e) / r_top, -1.0, 1.0)) - e), 0.0, 180.0)
    seg = _SEG_COST * (2.0 * cap / _ROW_DEG + 1.0)
    frac = (1.0 - np.cos(np.radians(cap))) / 2.0
    # best[j][b]: cost of bins 0..j-1 in b bands.
    inf = np.inf
    best = np.full((m + 1, max_bands + 1), inf)
    best[0, 0] = 0.0
    back = np.zeros((m + 1, max_bands + 1), np.int64)
    count_before = np.r_[0.0, cum]
    for j in range(1, m + 1):
        # band = bins i..j-1, cost uses bin j-1's cap.
        cost_band = seg[j - 1] + (cum[j - 1] - count_before[:j]) * frac[j - 1]  # (j,) over i
        for b in range(1, max_bands + 1):
            tot = best[:j, b - 1] + cost_band
            i = int(np.argmin(tot))
            best[j, b], back[j, b] = tot[i], i
    b = int(np.argmin(best[m]))
    cuts = []
    j = m
    while b > 0:
        i = back[j, b]
        cuts.append(i)
        j, b = i, b - 1
    starts = sorted(cuts)  # bin index where each band starts
    band_sorted = np.zeros(n, np.int64)
    for k, s in enumerate(starts[1:], start=1):
        band_sorted[(bin_end[s - 1]):] = k
    band = np.empty(n, np.int64)
    band[order] = band_sorted
    return band


def _segment_argmin(
    values: NDArray[np.float64], counts: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Argmin within consecutive segments of ``values`` (segment ``i`` holds
    ``counts[i]`` values): ``(position in values, has)`` per segment, ``has``
    False where the segment is empty or all infinite. Ties go to the first."""
    s = counts.size
    pos = np.zeros(s, np.int64)
    nonempty = counts > 0
    if values.size == 0:
        return pos, np.zeros(s, bool)
    starts = np.cumsum(counts) - counts
    low = np.full(s, np.inf)
    low[nonempty] = np.minimum.reduceat(values, starts[nonempty])
    hit = np.flatnonzero(values == np.repeat(low, counts))
    owner = np.repeat(np.arange(s), counts)[hit]
    first = np.r_[True, owner[1:] != owner[:-1]]
    pos[owner[first]] = hit[first]
    return pos, np.isfinite(low)


@dataclass(frozen=True)
class _Tree:
    """Per-satellite decomposition of a shortest-path tree rooted at regions."""

    dist_ms: NDArray[np.float64]  # graph distance (includes penalties)
    gateway: NDArray[np.int64]  # gateway row, -1 if unreachable
    region: NDArray[np.int64]  # region row, -1 if unreachable
    isl_ms: NDArray[np.float64]
    isl_hops: NDArray[np.int64]
    downlink_ms: NDArray[np.float64]
    fibre_ms: NDArray[np.float64]  # fibre propagation only (no fixed term)


@dataclass(frozen=True)
class RoutePlan:
    """Routes of ``T`` terminals for one slot (row ``t`` is terminal ``t``).

    Attributes:
        serving_satellite: ``(T,)`` satellite the terminal transmits to, -1 if none.
        gateway: ``(T,)`` gateway row where traffic lands, -1 if no route.
        region: ``(T,)`` region row (of the router's region table), -1 if no route.
        isl_hops: ``(T,)`` laser links on the path (0 = bent pipe).
        bent_pipe: ``(T,)`` True when the serving satellite downlinks directly.
        budget: :class:`~services.linkbroker.latency.LatencyBudget` (NaN if no route).
        one_way_ms, rtt_ms: ``(T,)`` totals from the budget.
        routed: ``(T,)`` True where a route was found.
    """

    serving_satellite: NDArray[np.int64]
    gateway: NDArray[np.int64]
    region: NDArray[np.int64]
    isl_hops: NDArray[np.int64]
    bent_pipe: NDArray[np.bool_]
    budget: LatencyBudget
    n_satellites: int
    _predecessors: NDArray[np.int64]
    _pred_row: NDArray[np.int64]

    @property
    def one_way_ms(self) -> NDArray[np.float64]:
        return self.budget.one_way_ms

    @property
    def rtt_ms(self) -> NDArray[np.float64]:
        return self.budget.rtt_ms

    @property
    def routed(self) -> NDArray[np.bool_]:
        return self.gateway >= 0

    def hops(self, terminal: int) -> list[int]:
        """Satellites on terminal ``terminal``'s path, serving satellite first.

        The last satellite is the one that downlinks to :attr:`gateway`. Empty if
        the terminal has no route. Reconstructed from the shortest-path
        predecessors on demand (only for the terminals asked).
        """
        s = int(self.serving_satellite[terminal])
        if s < 0 or self.gateway[terminal] < 0:
            return []
        pred = self._predecessors[self._pred_row[terminal]]
        path = [s]
        node = s
        while True:
            node = int(pred[node])
            if node < 0 or node >= self.n_satellites:
                return path
            path.append(node)


class SlotRouter:
    """The routing graph of one slot; route any number of terminals through it.

    Args:
        satellite_positions_km: ``(N, 3)`` ITRF positions at the slot time, km.
        isl: the slot's laser links (:func:`~services.linkbroker.topology.isl_topology`).
        gateways: gateway table; only ``ACTIVE`` gateways are used.
        regions: Azure regions (default: the packaged catalogue).
        capacity: elevation masks and overheads.
        fibre: terrestrial fibre model.
        satellite_available: ``(N,)`` bool; False removes the satellite entirely.
        user_beam_available: ``(N,)`` bool; False stops the satellite from
            serving terminals (it may still relay).
        feeder_available: ``(N,)`` bool; False stops the satellite from
            downlinking to gateways.
        gateway_available: ``(G,)`` bool; False removes the gateway.
        isl_available: ``(M,)`` bool, one per link of ``isl``; False removes it.
        satellite_penalty_ms: ``(N,)`` extra ms on every edge entering a
            satellite (and on choosing it as serving satellite).
    """

    def __init__(
        self,
        satellite_positions_km: ArrayLike,
        isl: IslTopology,
        gateways: GatewayTable,
        regions: RegionTable | None = None,
        *,
        capacity: CapacityModel = DEFAULT_CAPACITY_MODEL,
        fibre: FibreModel | None = None,
        satellite_available: ArrayLike | None = None,
        user_beam_available: ArrayLike | None = None,
        feeder_available: ArrayLike | None = None,
        gateway_available: ArrayLike | None = None,
        isl_available: ArrayLike | None = None,
        satellite_penalty_ms: ArrayLike | None = None,
    ) -> None:
        pos_m = np.asarray(satellite_positions_km, dtype=np.float64) * 1e3
        n = pos_m.shape[0]
        if isl.n_satellites != n:
            raise ValueError("isl topology and positions disagree on the satellite count")
        self.capacity = capacity
        self.fibre = fibre or FibreModel()
        self.regions = regions or load_regions()
        self.gateways = gateways
        self.n_satellites = n
        self.n_gateways = g = len(gateways)
        self.n_regions = r = len(self.regions)
        self._pos_m = pos_m
        self._pos_t = np.ascontiguousarray(pos_m.T)  # (3, N), for component gathers

        def mask(value: ArrayLike | None, size: int, name: str) -> NDArray[np.bool_]:
            if value is None:
                return np.ones(size, dtype=bool)
            m = np.asarray(value, dtype=bool)
            if m.shape != (size,):
                raise ValueError(f"{name} must have shape ({size},)")
            return m

        sat_ok = mask(satellite_available, n, "satellite_available")
        self._serve_ok = sat_ok & mask(user_beam_available, n, "user_beam_available")
        feeder_ok = sat_ok & mask(feeder_available, n, "feeder_available")
        gw_ok = gateways.active_mask() & mask(gateway_available, g, "gateway_available")
        isl_ok = mask(isl_available, len(isl), "isl_available")
        penalty = (
            np.zeros(n)
            if satellite_penalty_ms is None
            else np.broadcast_to(np.asarray(satellite_penalty_ms, dtype=np.float64), (n,))
        )
        if np.any(penalty < 0):
            raise ValueError("satellite_penalty_ms must be >= 0")
        self._penalty = penalty

        # Satellite <-> satellite (both directions).
        keep = isl_ok & sat_ok[isl.pairs[:, 0]] & sat_ok[isl.pairs[:, 1]]
        a, b, w = isl.pairs[keep, 0], isl.pairs[keep, 1], isl.delay_ms[keep]
        src = [a, b]
        dst = [b, a]
        wts = [w + penalty[b], w + penalty[a]]

        # Gateway -> satellite where visible above the gateway mask: the sky grid
        # proposes candidates, look_angles decides on those only.
        gi = np.flatnonzero(gw_ok)
        per_gw, gs = self._sky_grid().candidates(
            gateways.ecef_m[gi],
            enu_rotation(gateways.latitude_deg[gi], gateways.longitude_deg[gi])[..., 2, :].reshape(-1, 3),
            capacity.gateway_min_elevation_deg,
        )
        go = np.repeat(np.arange(gi.size), per_gw)
        _, el, rng = look_angles(
            gateways.ecef_m[gi][go],
            pos_m[gs],
            gateways.latitude_deg[gi][go],
            gateways.longitude_deg[gi][go],
        )
        vis = (el >= capacity.gateway_min_elevation_deg) & feeder_ok[gs]
        go, gs, rng = go[vis], gs[vis], rng[vis]
        order = np.lexsort((gs, go))  # gateway-major, satellites ascending
        vg, vs, rng = go[order], gs[order], rng[order]
        src.append(n + gi[vg])
        dst.append(vs)
        wts.append(rng * _MS_PER_M + penalty[vs])
        self.gateway_links = np.stack((gi[vg], vs), axis=1)

        # Region -> gateway fibre.
        self._fibre_prop_ms = self.fibre.propagation_ms(
            gateways.latitude_deg[:, None],
            gateways.longitude_deg[:, None],
            self.regions.latitude_deg[None, :],
            self.regions.longitude_deg[None, :],
        )  # (G, R)
        rr, gg = np.meshgrid(np.arange(r), gi, indexing="ij")
        src.append(n + g + rr.ravel())
        dst.append(n + gg.ravel())
        wts.append(self._fibre_prop_ms[gg.ravel(), rr.ravel()] + self.fibre.fixed_overhead_ms)

        total = n + g + r
        self.graph = sp.csr_matrix(
            (np.concatenate(wts), (np.concatenate(src), np.concatenate(dst))),
            shape=(total, total),
        )
        self._region_nodes = n + g + np.arange(r)

    # -- shortest paths -------------------------------------------------------------

    def _decompose(self, dist: NDArray[np.float64], pred: NDArray[np.int64]) -> _Tree:
        """Per-satellite gateway, region and propagation legs from one predecessor row.

        Pointer doubling over the satellite part of the tree: ``O(N log depth)``.
        """
        n, g = self.n_satellites, self.n_gateways
        idx = np.arange(n)
        d = dist[:n]
        parent = pred[:n]
        reach = np.isfinite(d) & (parent != _NO_NODE)
        parent_is_sat = reach & (parent >= 0) & (parent < n)
        up = np.where(parent_is_sat, parent, idx)
        leg = np.where(
            parent_is_sat,
            np.linalg.norm(self._pos_m - self._pos_m[up], axis=1) * _MS_PER_M,
            0.0,
        )
        acc = leg
        hops = parent_is_sat.astype(np.int64)
        while True:
            nxt = up[up]
            if np.array_equal(nxt, up):
                break
            acc = acc + acc[up]
            hops = hops + hops[up]
            up = nxt
        root = up
        gw_node = np.where(reach, pred[root], _NO_NODE)
        ok = reach & (gw_node >= n) & (gw_node < n + g)
        gw = np.where(ok, gw_node - n, -1)
        region_node = np.where(ok, pred[np.where(ok, gw_node, 0)], _NO_NODE)
        region = np.where(ok, region_node - n - g, -1)
        down = np.where(
            ok,
            np.linalg.norm(self._pos_m[root] - self.gateways.ecef_m[np.maximum(gw, 0)], axis=1)
            * _MS_PER_M,
            np.nan,
        )
        fibre = np.where(ok, self._fibre_prop_ms[np.maximum(gw, 0), np.maximum(region, 0)], np.nan)
        return _Tree(
            dist_ms=np.where(ok, d, np.inf),
            gateway=gw,
            region=region,
            isl_ms=np.where(ok, acc, np.nan),
            isl_hops=np.where(ok, hops, 0),
            downlink_ms=down,
            fibre_ms=fibre,
        )

    def nearest_region_tree(self) -> tuple[_Tree, NDArray[np.int64]]:
        """Multi-source Dijkstra from every region at once (``min_only=True``)."""
        dist, pred, _sources = dijkstra(
            self.graph,
            directed=True,
            indices=self._region_nodes,
            return_predecessors=True,
            min_only=True,
        )
        return self._decompose(dist, pred), pred[None, :]

    def region_trees(self, region_rows: NDArray[np.int64]) -> tuple[list[_Tree], NDArray[np.int64]]:
        """One Dijkstra call from the given regions (one tree per row)."""
        dist, pred = dijkstra(
            self.graph,
            directed=True,
            indices=self._region_nodes[region_rows],
            return_predecessors=True,
        )
        dist = np.atleast_2d(dist)
        pred = np.atleast_2d(pred)
        return [self._decompose(dist[k], pred[k]) for k in range(len(region_rows))], pred

    # -- terminals --------------------------------------------------------------------

    def visible_candidates(
        self, terminal_ecef_m: NDArray[np.float64], lat_deg: NDArray[np.float64], lon_deg: NDArray[np.float64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.bool_]]:
        """Satellites each terminal sees at or above the terminal elevation mask.

        Returns dense ``(T, K)`` arrays ``(satellite, slant_range_m, usable)``, row
        ``t`` listing every satellite terminal ``t`` sees at or above the mask (in no
        particular order), ``K`` being the most any terminal sees. ``usable`` is False
        for padding (satellite 0, range 1 m) and for satellites whose user beam is
        unavailable. Same set as :meth:`_visible_pairs`, laid out densely.
        """
        t = terminal_ecef_m.shape[0]
        if t == 0 or self.n_satellites == 0:
            return np.zeros((t, 0), np.int64), np.zeros((t, 0)), np.zeros((t, 0), bool)
        counts, sat, rng = self._visible_pairs(terminal_ecef_m, lat_deg, lon_deg)
        k = max(1, int(counts.max()))
        term = np.repeat(np.arange(t), counts)
        col = np.arange(sat.size) - np.repeat(np.cumsum(counts) - counts, counts)
        idx = np.zeros((t, k), np.int64)
        out_rng = np.ones((t, k))
        usable = np.zeros((t, k), bool)
        idx[term, col] = sat
        out_rng[term, col] = rng
        usable[term, col] = self._serve_ok[sat]
        return idx, out_rng, usable

    def _visible_pairs(
        self, terminal_ecef_m: NDArray[np.float64], lat_deg: NDArray[np.float64], lon_deg: NDArray[np.float64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """Every (terminal, satellite) pair at or above the terminal mask, flat.

        Returns ``(per_terminal, satellite, slant_range_m)``: terminal 0's
        satellites first, then terminal 1's, ...; ``per_terminal`` ``(T,)`` counts
        them. User-beam availability is not applied. The elevation test is
        ``sin(el) = (d . up) / |d|`` with the geodetic up vector of
        :func:`shared.geodesy.enu_rotation`; it runs on the sky grid's candidates
        (:class:`_SkyGrid`), whose central-angle bound covers every satellite above
        the mask, so the set is exact. Component-wise (structure of arrays) because
        row gathers of ``(P, 3)`` arrays cost several times more.
        """
        min_el = self.capacity.terminal_min_elevation_deg
        lat = np.radians(np.asarray(lat_deg, dtype=np.float64)).ravel()
        lon = np.radians(np.asarray(lon_deg, dtype=np.float64)).ravel()
        cp = np.cos(lat)
        up = np.stack((cp * np.cos(lon), cp * np.sin(lon), np.sin(lat)))  # (3, T), as enu_rotation
        per, sat = self._sky_grid().candidates(terminal_ecef_m, up.T, min_el)
        pos_t = self._pos_t
        d = [np.take(pos_t[c], sat) - np.repeat(terminal_ecef_m[:, c], per) for c in range(3)]
        rng = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        dot = d[0] * np.repeat(up[0], per) + d[1] * np.repeat(up[1], per) + d[2] * np.repeat(up[2], per)
        keep = dot / np.maximum(rng, 1e-9) >= np.sin(np.radians(min_el))
        counts = np.zeros(per.size, np.int64)
        nonempty = per > 0
        if sat.size:
            counts[nonempty] = np.add.reduceat(keep, (np.cumsum(per) - per)[nonempty], dtype=np.int64)
        at = np.flatnonzero(keep)
        return counts, np.take(sat, at), np.take(rng, at)

    def _sky_grid(self) -> _SkyGrid:
        grid = self.__dict__.get("_grid")
        if grid is None:
            grid = self.__dict__["_grid"] = _SkyGrid.build(
                self._pos_m, self.capacity.terminal_min_elevation_deg
            )
        return grid

    def route(
        self,
        latitude_deg: ArrayLike,
        longitude_deg: ArrayLike,
        altitude_m: ArrayLike = 0.0,
        *,
        target_regions: Sequence[str] | ArrayLike | None = None,
    ) -> RoutePlan:
        """Route terminals at the given WGS84 positions.

        Args:
            latitude_deg, longitude_deg, altitude_m: ``(T,)`` terminal positions.
            target_regions: ``None`` to send each terminal to its lowest-latency
                region, or ``(T,)`` region names / region-table rows.

        Returns:
            :class:`RoutePlan`.
        """
        lat = np.atleast_1d(np.asarray(latitude_deg, dtype=np.float64))
        lon = np.atleast_1d(np.asarray(longitude_deg, dtype=np.float64))
        alt = np.broadcast_to(np.asarray(altitude_m, dtype=np.float64), lat.shape)
        t_count = lat.size
        ecef = geodetic_to_ecef(lat, lon, alt).reshape(-1, 3)
        if t_count and self.n_satellites:
            counts, sat, rng = self._visible_pairs(ecef, lat, lon)
        else:
            counts, sat, rng = np.zeros(t_count, np.int64), np.empty(0, np.int64), np.empty(0)

        if target_regions is None:
            tree, preds = self.nearest_region_tree()
            trees = [tree]
            term_row = np.zeros(t_count, dtype=np.int64)
        else:
            targets = np.asarray(target_regions)
            if targets.dtype.kind in ("U", "S", "O"):
                names, inverse = np.unique(targets.astype(str), return_inverse=True)
                rows = self.regions.indices_of([str(x) for x in names.tolist()])[inverse.reshape(targets.shape)]
            else:
                rows = targets.astype(np.int64)
            if rows.shape != (t_count,):
                raise ValueError("target_regions must give one region per terminal")
            uniq, term_row = np.unique(rows, return_inverse=True)
            trees, preds = self.region_trees(uniq)

        up_ms = rng * _MS_PER_M
        # dist already carries the penalty of entering the serving satellite.
        if len(trees) == 1:
            dist = np.take(trees[0].dist_ms, sat)
        else:
            dist_all = np.stack([t.dist_ms for t in trees])  # (U, N)
            dist = np.take(dist_all, np.repeat(term_row, counts) * self.n_satellites + sat)
        cost = np.where(np.take(self._serve_ok, sat), up_ms + dist, np.inf)
        best_pos, has = _segment_argmin(cost, counts)
        best_t = np.flatnonzero(has)
        best_pos = best_pos[best_t]
        best_s = sat[best_pos]
        best_row = term_row[best_t]
        best_up = up_ms[best_pos]

        serving = np.full(t_count, -1, dtype=np.int64)
        gateway = np.full(t_count, -1, dtype=np.int64)
        region = np.full(t_count, -1, dtype=np.int64)
        hops = np.zeros(t_count, dtype=np.int64)
        legs = {k: np.full(t_count, np.nan) for k in ("up", "isl", "down", "fibre")}
        serving[best_t] = best_s
        legs["up"][best_t] = best_up
        for k, tree in enumerate(trees):
            sel = best_row == k
            tt, ss = best_t[sel], best_s[sel]
            gateway[tt] = tree.gateway[ss]
            region[tt] = tree.region[ss]
            hops[tt] = tree.isl_hops[ss]
            legs["isl"][tt] = tree.isl_ms[ss]
            legs["down"][tt] = tree.downlink_ms[ss]
            legs["fibre"][tt] = tree.fibre_ms[ss]

        routed = gateway >= 0
        budget = latency_budget(
            legs["up"],
            legs["isl"],
            legs["down"],
            legs["fibre"],
            hops + 1,
            capacity=self.capacity,
            fibre_fixed_ms=self.fibre.fixed_overhead_ms,
        )
        if not routed.all():
            nan = np.where(routed, 0.0, np.nan)
            budget = LatencyBudget(
                uplink_ms=budget.uplink_ms + nan,
                isl_ms=budget.isl_ms + nan,
                downlink_ms=budget.downlink_ms + nan,
                fibre_ms=budget.fibre_ms + nan,
                processing_ms=budget.processing_ms + nan,
                scheduling_rtt_ms=budget.scheduling_rtt_ms + nan,
            )
        return RoutePlan(
            serving_satellite=np.where(routed, serving, -1),
            gateway=gateway,
            region=region,
            isl_hops=np.where(routed, hops, 0),
            bent_pipe=routed & (hops == 0),
            budget=budget,
            n_satellites=self.n_satellites,
            _predecessors=preds,
            _pred_row=term_row,
        )
