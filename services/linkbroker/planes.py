"""Group real satellites into shells, orbital planes and in-plane slots.

The +Grid topology (:mod:`services.linkbroker.topology`) needs, per satellite,
a plane index (RAAN order within a shell) and a slot index (along-track order).
A Walker generator knows them; a real catalogue does not. This module recovers
them from orbital geometry at one common instant:

1. :func:`orbit_geometry` turns inertial states (TEME or any Earth-centred
   inertial frame, km and km/s) into inclination, right ascension of the
   ascending node (RAAN) and argument of latitude, all in degrees. Using states
   at one instant (rather than TLE mean elements at scattered epochs) puts every
   satellite's RAAN on the same clock, so J2 nodal drift between epochs does not
   smear the planes.
2. :func:`assign_planes` clusters them: shells by inclination and altitude (1-D
   gap clustering), planes by RAAN within a shell (circular gap clustering),
   slots by argument of latitude within a plane.

For shells, pass *mean* inclination (the TLE's) and mean altitude (from the
TLE mean motion) when they are available: osculating inclination and radius
wobble by ~0.02 deg and ~15 km over an orbit, which blurs shells that differ by
less (the 2026 catalogue has 53.04, 53.16 and 53.21 deg shells). RAAN and
argument of latitude should come from the states at the common instant.

Gap clustering splits a sorted coordinate wherever two neighbours differ by more
than a threshold. Defaults: 0.02 deg of mean inclination and 8 km of mean
altitude between shells (satellites still raising or lowering their orbits end
up in small shells of their own), and 2.0 deg of RAAN between planes
(72-plane shells are 5 deg apart; satellites of one plane agree to a few
tenths of a degree).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PlaneAssignment",
    "assign_planes",
    "orbit_geometry",
]

_EARTH_RADIUS_KM = 6378.137


def orbit_geometry(
    position_km: ArrayLike, velocity_km_s: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Inclination, RAAN, argument of latitude (deg) and altitude (km) from inertial states.

    ``position_km`` and ``velocity_km_s`` are ``(N, 3)`` in an Earth-centred
    inertial frame (TEME from SGP4 is fine). Altitude is ``|r| - 6378.137 km``
    (equatorial radius; a grouping key, not a geodetic height). Equatorial
    orbits (inclination ~0) get RAAN 0 and argument of latitude measured from
    the x axis.
    """
    r = np.asarray(position_km, dtype=np.float64)
    v = np.asarray(velocity_km_s, dtype=np.float64)
    h = np.cross(r, v)
    h_norm = np.linalg.norm(h, axis=-1)
    inc = np.degrees(np.arccos(np.clip(h[..., 2] / h_norm, -1.0, 1.0)))
    # Ascending-node direction: z x h = (-h_y, h_x, 0).
    node = np.stack((-h[..., 1], h[..., 0], np.zeros_like(h[..., 0])), axis=-1)
    node_norm = np.linalg.norm(node, axis=-1)
    equatorial = node_norm < 1e-12 * h_norm
    node = np.where(equatorial[..., None], np.array([1.0, 0.0, 0.0]), node)
    node_norm = np.where(equatorial, 1.0, node_norm)
    raan = np.degrees(np.arctan2(node[..., 1], node[..., 0])) % 360.0
    n_hat = node / node_norm[..., None]
    r_norm = np.linalg.norm(r, axis=-1)
    cos_u = np.einsum("...i,...i->...", n_hat, r) / r_norm
    # Sign of sin(u): positive when r is on the h side of the node line.
    sin_sign = np.einsum("...i,...i->...", np.cross(n_hat, r), h) / h_norm
    u = np.degrees(np.arctan2(sin_sign, cos_u * r_norm)) % 360.0
    return inc, raan, u, r_norm - _EARTH_RADIUS_KM


def _gap_clusters(values: NDArray[np.float64], gap: float) -> NDArray[np.int64]:
    """Label 1-D values: a new cluster wherever sorted neighbours differ by > gap."""
    order = np.argsort(values, kind="stable")
    breaks = np.r_[0, (np.diff(values[order]) > gap).astype(np.int64)]
    labels = np.empty(values.size, dtype=np.int64)
    labels[order] = np.cumsum(breaks)
    return labels


def _circular_gap_clusters(angles_deg: NDArray[np.float64], gap: float) -> NDArray[np.int64]:
    """Label angles on a circle; clusters numbered in increasing angle from the widest gap."""
    n = angles_deg.size
    a = angles_deg % 360.0
    order = np.argsort(a, kind="stable")
    s = a[order]
    diffs = np.diff(np.r_[s, s[0] + 360.0])  # diffs[k] = gap after s[k], circularly
    if n == 1 or not np.any(diffs > gap):
        return np.zeros(n, dtype=np.int64)
    start = (int(np.argmax(diffs)) + 1) % n  # first element after the widest gap
    rolled = np.roll(order, -start)
    rolled_gaps = np.roll(diffs, -start)[:-1]  # gaps between consecutive rolled items
    labels_rolled = np.r_[0, np.cumsum(rolled_gaps > gap)]
    labels = np.empty(n, dtype=np.int64)
    labels[rolled] = labels_rolled
    return labels


@dataclass(frozen=True)
class PlaneAssignment:
    """Shell, plane and slot per satellite.

    Attributes:
        shell: ``(N,)`` shell id, 0.. in increasing inclination then altitude.
        plane: ``(N,)`` globally unique plane id; within a shell, consecutive
            ids in increasing RAAN (starting after the shell's widest RAAN gap).
        slot: ``(N,)`` rank within the plane by increasing argument of latitude.
        arg_lat_deg: ``(N,)`` argument of latitude used for the slots, deg.
    """

    shell: NDArray[np.int64]
    plane: NDArray[np.int64]
    slot: NDArray[np.int64]
    arg_lat_deg: NDArray[np.float64]

    @property
    def n_planes(self) -> int:
        """Total number of planes over all shells."""
        return int(self.plane.max()) + 1 if self.plane.size else 0

    def plane_sizes(self) -> NDArray[np.int64]:
        """``(n_planes,)`` satellites per plane."""
        return np.bincount(self.plane, minlength=self.n_planes)


def assign_planes(
    inclination_deg: ArrayLike,
    raan_deg: ArrayLike,
    arg_lat_deg: ArrayLike,
    altitude_km: ArrayLike | None = None,
    *,
    inclination_gap_deg: float = 0.02,
    altitude_gap_km: float = 8.0,
    raan_gap_deg: float = 2.0,
) -> PlaneAssignment:
    """Cluster satellites into shells and planes and rank them into slots.

    All angles in degrees at one common instant (see :func:`orbit_geometry`);
    ``altitude_km`` optional (without it, shells split by inclination only).
    Vectorized except for a loop over shells (a handful).
    """
    inc = np.asarray(inclination_deg, dtype=np.float64)
    raan = np.asarray(raan_deg, dtype=np.float64)
    u = np.asarray(arg_lat_deg, dtype=np.float64) % 360.0
    n = inc.size
    inc_label = _gap_clusters(inc, inclination_gap_deg)
    if altitude_km is None:
        shell_key = inc_label
    else:
        alt = np.asarray(altitude_km, dtype=np.float64)
        alt_label = np.empty(n, dtype=np.int64)
        for lab in np.unique(inc_label):
            m = inc_label == lab
            alt_label[m] = _gap_clusters(alt[m], altitude_gap_km)
        shell_key = inc_label * (n + 1) + alt_label
    # Renumber shells by (mean inclination, mean altitude) order: shell_key already
    # increases with inclination cluster, then altitude cluster.
    _, shell = np.unique(shell_key, return_inverse=True)

    plane = np.empty(n, dtype=np.int64)
    next_plane = 0
    for s in range(int(shell.max()) + 1 if n else 0):
        m = np.flatnonzero(shell == s)
        local = _circular_gap_clusters(raan[m], raan_gap_deg)
        plane[m] = local + next_plane
        next_plane += int(local.max()) + 1

    order = np.lexsort((u, plane))
    plane_sorted = plane[order]
    starts = np.flatnonzero(np.r_[True, plane_sorted[1:] != plane_sorted[:-1]])
    run_id = np.cumsum(np.r_[True, plane_sorted[1:] != plane_sorted[:-1]]) - 1
    slot = np.empty(n, dtype=np.int64)
    slot[order] = np.arange(n) - starts[run_id]
    return PlaneAssignment(shell=shell, plane=plane, slot=slot, arg_lat_deg=u)
