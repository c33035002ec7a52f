"""Track initiation by triangulating lines of sight from different sensors.

Frame: ECEF metres.  A candidate is a pair of unassociated detections from two
*different* sensors taken within ``pair_window_s`` of each other.  For every
candidate (vectorised over all pairs) the weighted least-squares point closest
to the rays is found:

    minimise  sum_i |(I - u_i u_i^T)(p - s_i)|^2 / (sigma_i rho_i)^2

(``s_i`` sensor position, ``u_i`` unit LOS, ``sigma_i`` angular noise,
``rho_i`` range).  Its information matrix ``sum_i (I - u_i u_i^T)/(sigma_i rho_i)^2``
gives the position covariance.  Candidates are rejected when

* the rays are too parallel (angle below ``min_ray_angle_deg``),
* the point is behind a sensor or below ``min_altitude_m``/above ``max_altitude_m``,
* the normalised miss (chi-square, 1 DOF for two rays, inflated for the time
  offset between the frames at ``max_speed_m_s``) exceeds ``chi2_gate``.

Surviving candidates are chosen greedily in order of increasing miss so that a
detection seeds at most one track.  Velocity is unknown at birth: the track
starts with zero ECEF velocity and a diffuse ``velocity_sigma_m_s`` prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.threat import dynamics as dyn
from services.threat.detections import Detections


def triangulate(
    sensor_m: np.ndarray, los_unit: np.ndarray, sigma_rad: np.ndarray, weight_mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least-squares intersection of ``R`` rays, batched over ``C``.

    ``sensor_m (C,R,3)``, ``los_unit (C,R,3)``, ``sigma_rad (C,R)``; optional
    ``weight_mask (C,R)`` bool to ignore padded rays.  Returns
    ``point (C,3)`` m, ``cov (C,3,3)`` m^2, ``chi2 (C,)`` (normalised miss,
    ``2R-3`` DOF) and ``ranges (C,R)`` m along each ray.
    """
    s = np.asarray(sensor_m, float)
    u = np.asarray(los_unit, float)
    sig = np.asarray(sigma_rad, float)
    m = np.ones(sig.shape, bool) if weight_mask is None else np.asarray(weight_mask, bool)
    A = np.eye(3) - np.einsum("cri,crj->crij", u, u)  # projectors (C,R,3,3)
    w = m / sig**2  # first pass: unit ranges
    p: npt.NDArray[np.float64]
    for _ in range(2):
        info = np.einsum("cr,crij->cij", w, A)
        rhs = np.einsum("cr,crij,crj->ci", w, A, s)
        p = np.linalg.solve(info, rhs[..., None])[..., 0]
        rho = np.einsum("cri,cri->cr", p[:, None] - s, u)
        w = m / (sig * np.maximum(np.abs(rho), 1.0)) ** 2
    info = np.einsum("cr,crij->cij", w, A)
    cov = np.linalg.inv(info)
    perp = np.einsum("crij,crj->cri", A, p[:, None] - s)
    chi2 = np.einsum("cr,cri,cri->c", w, perp, perp)
    return p, cov, chi2, rho


@dataclass(frozen=True)
class TentativeTracks:
    """Birth states: ``x (C,6)``, ``P (C,6,6)`` at ``time (C,)``, seeded by
    detection rows ``rows (C,2)`` of the input batch."""

    x: np.ndarray
    P: np.ndarray
    time: np.ndarray
    rows: np.ndarray


@dataclass(frozen=True)
class TriangulationInitiator:
    pair_window_s: float = 0.05
    min_ray_angle_deg: float = 3.0
    chi2_gate: float = 16.0
    max_speed_m_s: float = 8_000.0
    velocity_sigma_m_s: float = 3_000.0
    min_altitude_m: float = -5_000.0
    max_altitude_m: float = 5_000e3

    def candidates(self, dets: Detections) -> tuple[np.ndarray, np.ndarray]:
        """All detection pairs from different sensors within the time window."""
        n = len(dets)
        i, j = np.triu_indices(n, k=1)
        ok = (dets.sensor_index[i] != dets.sensor_index[j]) & (
            np.abs(dets.time[i] - dets.time[j]) <= self.pair_window_s
        )
        return i[ok], j[ok]

    def __call__(self, dets: Detections) -> TentativeTracks:
        empty = TentativeTracks(np.zeros((0, 6)), np.zeros((0, 6, 6)), np.zeros(0), np.zeros((0, 2), int))
        if len(dets) < 2:
            return empty
        i, j = self.candidates(dets)
        if i.size == 0:
            return empty
        s = np.stack([dets.sensor_position_ecef_m[i], dets.sensor_position_ecef_m[j]], axis=1)
        u = np.stack([dets.los_unit_ecef[i], dets.los_unit_ecef[j]], axis=1)
        dt = np.abs(dets.time[i] - dets.time[j])
        sig = np.stack([dets.noise_rad[i], dets.noise_rad[j]], axis=1)
        sin_ang = np.linalg.norm(np.cross(u[:, 0], u[:, 1]), axis=1)
        keep = sin_ang >= np.sin(np.radians(self.min_ray_angle_deg))
        if not np.any(keep):
            return empty
        i, j, s, u, dt, sig = i[keep], j[keep], s[keep], u[keep], dt[keep], sig[keep]
        p, cov, chi2, rho = triangulate(s, u, sig)
        # a time offset between frames moves the target by up to v*dt: inflate
        chi2_eff = chi2 / (1.0 + (self.max_speed_m_s * dt) ** 2 / np.trace(cov, axis1=1, axis2=2))
        alt = dyn.altitude_m(p)
        ok = (
            np.all(rho > 0, axis=1)
            & (chi2_eff <= self.chi2_gate)
            & (alt >= self.min_altitude_m)
            & (alt <= self.max_altitude_m)
        )
        if not np.any(ok):
            return empty
        i, j, p, cov, chi2_eff = i[ok], j[ok], p[ok], cov[ok], chi2_eff[ok]
        # greedy exclusive selection by increasing miss (a handful of survivors)
        order = np.argsort(chi2_eff)
        used = np.zeros(len(dets), bool)
        chosen = []
        for c in order:
            if not (used[i[c]] or used[j[c]]):
                used[i[c]] = used[j[c]] = True
                chosen.append(c)
        c = np.asarray(chosen, int)
        k = c.size
        x = np.zeros((k, 6))
        x[:, :3] = p[c]
        P = np.zeros((k, 6, 6))
        P[:, :3, :3] = cov[c]
        P[:, 3:, 3:] = np.eye(3) * self.velocity_sigma_m_s**2
        t = 0.5 * (dets.time[i[c]] + dets.time[j[c]])
        return TentativeTracks(x, P, t, np.stack([i[c], j[c]], axis=1))
