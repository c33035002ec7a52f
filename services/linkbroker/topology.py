"""+Grid laser inter-satellite-link (ISL) topology.

Each satellite carries four laser terminals: two towards its in-plane
neighbours (the satellites ahead and behind in the same orbital plane) and two
towards the adjacent planes of its shell (one "east", one "west"). Links are
built in two steps:

1. :func:`plus_grid_pairs` - the *static* candidate pairs, from per-satellite
   plane and slot indices (plus, optionally, the argument of latitude). Cheap
   to keep across slots: it only changes when the constellation does.
2. :func:`isl_topology` - for one slot, the candidate pairs whose length at the
   slot's positions is within the range limit, with their propagation delay,
   as an :class:`IslTopology` (which yields a ``scipy.sparse`` CSR graph).

Plane and slot conventions (what :mod:`services.linkbroker.planes` produces and
a Walker generator gives naturally):

* ``plane[i]`` is an integer; within one shell, increasing plane index means
  increasing right ascension of the ascending node (RAAN), so plane ``k`` and
  the next larger plane index in the same shell are neighbours.
* ``slot[i]`` orders satellites along their plane (increasing argument of
  latitude); in-plane neighbours are consecutive slots, and the last slot wraps
  to the first when the plane holds at least three satellites.

The seam. Starlink's 53-degree shells are Walker-delta constellations: their
planes spread over the full 360 degrees of RAAN, and the last plane moves in
the same direction as the first, so the last plane links to the first exactly
like any other pair of neighbours (``wrap_planes=True``, the default). Walker
phasing shifts the slots across that seam: with phasing factor ``F`` the
satellite in slot ``s`` of the last plane sits next to slot ``s + F`` of the
first plane. Two ways to handle it:

* pass ``arg_lat_deg`` - each satellite links to the satellite of the next
  plane with the nearest argument of latitude (this handles the seam, unequal
  plane populations and real catalogues alike), or
* pass ``seam_slot_offset=F`` - slot-index matching, with the offset applied on
  the seam only.

Polar (Walker-star) shells have a counter-rotating seam, where cross links are
not kept; use ``wrap_planes=False`` for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from services.linkbroker.capacity_model import DEFAULT_CAPACITY_MODEL
from shared.geodesy import SPEED_OF_LIGHT_M_S

__all__ = [
    "INTRA_PLANE",
    "CROSS_PLANE",
    "IslTopology",
    "isl_topology",
    "plus_grid_pairs",
]

INTRA_PLANE = 0
CROSS_PLANE = 1


def _circular_diff_deg(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Absolute angular difference in degrees, in [0, 180]."""
    d = np.abs((a - b) % 360.0)
    return np.minimum(d, 360.0 - d)


def _intra_plane_pairs(order: NDArray[np.int64], plane_sorted: NDArray[np.int64]) -> NDArray[np.int64]:
    """Consecutive satellites within each plane; wrap where a plane has >= 3 satellites."""
    same = plane_sorted[1:] == plane_sorted[:-1]
    pairs = [np.stack((order[:-1][same], order[1:][same]), axis=1)]
    starts = np.flatnonzero(np.r_[True, ~same])
    ends = np.r_[starts[1:], plane_sorted.size] - 1
    wrap = (ends - starts) >= 2
    pairs.append(np.stack((order[ends[wrap]], order[starts[wrap]]), axis=1))
    return np.concatenate(pairs, axis=0)


def _match_one_to_one(
    a: NDArray[np.int64],
    b_sorted: NDArray[np.int64],
    first: tuple[NDArray[np.int64], NDArray[np.float64]],
    second: tuple[NDArray[np.int64], NDArray[np.float64]],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Give each satellite of ``a`` at most one partner in ``b`` and vice versa.

    Round 1: every satellite claims its nearest candidate; conflicts go to the
    closest claimant. Round 2: losers try their other neighbour if it is still
    free (conflicts again to the closest). ``first``/``second`` are
    ``(position in b_sorted, angular distance)`` per satellite of ``a``.
    """
    taken = np.zeros(b_sorted.size, dtype=bool)
    matched = np.zeros(a.size, dtype=bool)
    src: list[NDArray[np.int64]] = []
    dst: list[NDArray[np.int64]] = []
    for pick, dist in (first, second):
        cand = np.flatnonzero(~matched & ~taken[pick])
        if cand.size == 0:
            continue
        order = cand[np.lexsort((dist[cand], pick[cand]))]
        win = order[np.r_[True, pick[order][1:] != pick[order][:-1]]]
        matched[win] = True
        taken[pick[win]] = True
        src.append(a[win])
        dst.append(b_sorted[pick[win]])
    if not src:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(src), np.concatenate(dst)


def _next_planes(shell: NDArray[np.int64], plane: NDArray[np.int64], wrap: bool) -> list[tuple[int, int, bool]]:
    """(plane, next plane, is_seam) for each neighbouring plane pair in every shell."""
    out: list[tuple[int, int, bool]] = []
    for s in np.unique(shell):
        planes = np.unique(plane[shell == s])
        for k in range(planes.size - 1):
            out.append((int(planes[k]), int(planes[k + 1]), False))
        if wrap and planes.size >= 3:
            out.append((int(planes[-1]), int(planes[0]), True))
    return out


def plus_grid_pairs(
    plane: ArrayLike,
    slot: ArrayLike,
    *,
    shell: ArrayLike | None = None,
    arg_lat_deg: ArrayLike | None = None,
    wrap_planes: bool = True,
    seam_slot_offset: int = 0,
) -> tuple[NDArray[np.int64], NDArray[np.int8]]:
    """Candidate +Grid pairs from plane/slot indices.

    Args:
        plane: ``(N,)`` int plane index per satellite (RAAN order within a shell).
        slot: ``(N,)`` int slot index per satellite (along-track order in its plane).
        shell: ``(N,)`` optional shell id; planes only link within a shell.
            Defaults to a single shell.
        arg_lat_deg: ``(N,)`` optional argument of latitude (deg). When given,
            cross-plane partners are chosen by nearest argument of latitude in
            the next plane (each satellite gets at most one partner on either
            side; conflicts go to the closer one). When omitted, partners are
            matched by slot index modulo the next plane's population, shifted by
            ``seam_slot_offset`` across the seam.
        wrap_planes: link the last plane of each shell to its first (Walker-delta
            seam). Only done for shells of at least three planes.
        seam_slot_offset: Walker phasing factor ``F`` for slot matching.

    Returns:
        ``(pairs, kind)``: ``pairs`` is ``(M, 2)`` int64 with ``pairs[:, 0] <
        pairs[:, 1]``, unique rows; ``kind`` is ``(M,)`` int8,
        :data:`INTRA_PLANE` or :data:`CROSS_PLANE`.
    """
    plane_a = np.asarray(plane, dtype=np.int64)
    slot_a = np.asarray(slot, dtype=np.int64)
    n = plane_a.size
    if slot_a.shape != (n,) or plane_a.shape != (n,):
        raise ValueError("plane and slot must be 1-D arrays of equal length")
    shell_a = np.zeros(n, dtype=np.int64) if shell is None else np.asarray(shell, dtype=np.int64)
    if n == 0:
        return np.empty((0, 2), np.int64), np.empty(0, np.int8)

    # Sort by (shell, plane, slot) so each plane is one contiguous run.
    order = np.lexsort((slot_a, plane_a, shell_a))
    key_sorted = plane_a[order] + (shell_a[order] << 32)
    intra = _intra_plane_pairs(order, key_sorted)

    cross_chunks: list[NDArray[np.int64]] = []
    run_start = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
    run_end = np.r_[run_start[1:], n]
    members = {
        (int(shell_a[order[a]]), int(plane_a[order[a]])): order[a:b]
        for a, b in zip(run_start, run_end, strict=True)
    }
    u = None if arg_lat_deg is None else np.asarray(arg_lat_deg, dtype=np.float64) % 360.0
    for s in np.unique(shell_a):
        for p, q, seam in _next_planes(shell_a[shell_a == s], plane_a[shell_a == s], wrap_planes):
            a = members[(int(s), p)]
            b = members[(int(s), q)]
            if u is None:
                # Slot matching: slots of plane q are its members' slot numbers.
                offset = seam_slot_offset if seam else 0
                want = (slot_a[a] + offset) % b.size
                pos = np.searchsorted(slot_a[b], want)
                ok = (pos < b.size) & (slot_a[b][np.minimum(pos, b.size - 1)] == want)
                partners = b[np.minimum(pos, b.size - 1)]
                src, dst = a[ok], partners[ok]
            else:
                ub_order = np.argsort(u[b])
                b_sorted, ub = b[ub_order], u[b][ub_order]
                pos = np.searchsorted(ub, u[a]) % b.size
                left = (pos - 1) % b.size
                d_right = _circular_diff_deg(ub[pos], u[a])
                d_left = _circular_diff_deg(ub[left], u[a])
                near = d_left < d_right
                first_choice = (np.where(near, left, pos), np.minimum(d_left, d_right))
                second_choice = (np.where(near, pos, left), np.maximum(d_left, d_right))
                src, dst = _match_one_to_one(a, b_sorted, first_choice, second_choice)
            cross_chunks.append(np.stack((src, dst), axis=1))

    cross = np.concatenate(cross_chunks, axis=0) if cross_chunks else np.empty((0, 2), np.int64)
    pairs = np.concatenate((intra, cross), axis=0)
    kind = np.r_[np.full(len(intra), INTRA_PLANE, np.int8), np.full(len(cross), CROSS_PLANE, np.int8)]
    pairs = np.sort(pairs, axis=1)
    keep = pairs[:, 0] != pairs[:, 1]
    pairs, kind = pairs[keep], kind[keep]
    _, first = np.unique(pairs[:, 0] * n + pairs[:, 1], return_index=True)
    return pairs[first], kind[first]


@dataclass(frozen=True)
class IslTopology:
    """Laser links usable in one slot.

    Attributes:
        n_satellites: number of satellites ``N`` (graph nodes ``0..N-1``).
        pairs: ``(M, 2)`` int64 satellite indices, ``pairs[:, 0] < pairs[:, 1]``.
        kind: ``(M,)`` int8, :data:`INTRA_PLANE` or :data:`CROSS_PLANE`.
        length_km: ``(M,)`` link length at the slot's positions, km.
        delay_ms: ``(M,)`` one-way propagation delay, ``length / c``, ms.
    """

    n_satellites: int
    pairs: NDArray[np.int64]
    kind: NDArray[np.int8]
    length_km: NDArray[np.float64]
    delay_ms: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    def degree(self) -> NDArray[np.int64]:
        """``(N,)`` number of usable links per satellite."""
        return np.bincount(self.pairs.ravel(), minlength=self.n_satellites)

    def csr(self, available: ArrayLike | None = None) -> sp.csr_matrix:
        """Symmetric ``(N, N)`` CSR matrix of delays (ms).

        ``available`` is an optional ``(M,)`` boolean mask; links where it is
        false (e.g. saturated) are left out.
        """
        mask = np.ones(len(self), bool) if available is None else np.asarray(available, bool)
        i, j, w = self.pairs[mask, 0], self.pairs[mask, 1], self.delay_ms[mask]
        n = self.n_satellites
        return sp.csr_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=(n, n))


def isl_topology(
    positions_km: ArrayLike,
    pairs: NDArray[np.int64],
    kind: NDArray[np.int8],
    *,
    max_range_km: float = DEFAULT_CAPACITY_MODEL.isl_max_range_km,
    earth_grazing_km: float | None = 6_458.0,
) -> IslTopology:
    """Keep candidate ``pairs`` that are usable at ``positions_km``.

    Args:
        positions_km: ``(N, 3)`` satellite positions at the slot time, km, any
            Earth-centred frame (ITRF from the orbit service).
        pairs, kind: from :func:`plus_grid_pairs`.
        max_range_km: links longer than this are dropped.
        earth_grazing_km: links whose straight line passes closer than this to
            the Earth's centre are dropped (6,378 km + 80 km of atmosphere);
            ``None`` disables the check.
    """
    pos = np.asarray(positions_km, dtype=np.float64)
    a, b = pos[pairs[:, 0]], pos[pairs[:, 1]]
    d = b - a
    length = np.linalg.norm(d, axis=1)
    ok = length <= max_range_km
    if earth_grazing_km is not None and len(pairs):
        # Closest approach of segment a->b to the origin.
        t = np.clip(-np.einsum("ij,ij->i", a, d) / np.maximum(length**2, 1e-12), 0.0, 1.0)
        closest = np.linalg.norm(a + t[:, None] * d, axis=1)
        ok &= closest >= earth_grazing_km
    length = length[ok]
    return IslTopology(
        n_satellites=pos.shape[0],
        pairs=pairs[ok],
        kind=kind[ok],
        length_km=length,
        delay_ms=length * 1e3 / SPEED_OF_LIGHT_M_S * 1e3,
    )
