"""Mahalanobis gating of every track x detection pair at once.

Inputs are combined track estimates ``x (K,6)``, ``P (K,6,6)`` (ECEF m, m/s)
and ``N`` detections (sensor positions ``(N,3)`` m, unit LOS ``(N,3)``,
noise ``(N,)`` rad).  The innovation is the 2-D tangent-plane angle residual
of :mod:`services.threat.tracker.filters`, so distances are chi-square with 2
degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2


def pair_distances(
    pos_m: np.ndarray, Ppos: np.ndarray, sensor_m: np.ndarray, z_unit: np.ndarray, sigma_rad: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``d2 (K,N)`` and ``log det S (K,N)`` of every track x detection pair.

    The same quantities as :func:`services.threat.tracker.filters.innovation` (same
    tangent basis, gnomonic residual, ``S = H P H^T + sigma^2 I``), written out component
    by component on ``(K,N)`` arrays: the ``(K,N,2,3)`` einsums it replaces dominated the
    tracker's time (profiled with cProfile: ~60% of a 100-target scenario).
    ``pos_m (K,3)``, ``Ppos (K,3,3)``, ``sensor_m (N,3)``, ``z_unit (N,3)``, ``sigma_rad (N,)``.
    """
    dx = pos_m[:, 0, None] - sensor_m[None, :, 0]
    dy = pos_m[:, 1, None] - sensor_m[None, :, 1]
    dz = pos_m[:, 2, None] - sensor_m[None, :, 2]
    rho = np.sqrt(dx * dx + dy * dy + dz * dz)
    ux, uy, uz = dx / rho, dy / rho, dz / rho
    ax, ay, az = np.abs(ux), np.abs(uy), np.abs(uz)
    # helper axis least aligned with u (ties as numpy.argmin: the first); e1 = u x helper
    hx = (ax <= ay) & (ax <= az)
    hy = ~hx & (ay <= az)
    zero = np.zeros_like(ux)
    e1x = np.where(hx, zero, np.where(hy, -uz, uy))
    e1y = np.where(hx, uz, np.where(hy, zero, -ux))
    e1z = np.where(hx, -uy, np.where(hy, ux, zero))
    n1 = np.sqrt(e1x * e1x + e1y * e1y + e1z * e1z)
    e1x, e1y, e1z = e1x / n1, e1y / n1, e1z / n1
    e2x = uy * e1z - uz * e1y
    e2y = uz * e1x - ux * e1z
    e2z = ux * e1y - uy * e1x
    zx, zy, zz = z_unit[None, :, 0], z_unit[None, :, 1], z_unit[None, :, 2]
    uzd = ux * zx + uy * zy + uz * zz
    inv = 1.0 / np.where(uzd > 1e-9, uzd, 1e-9)
    y0 = (e1x * zx + e1y * zy + e1z * zz) * inv
    y1 = (e2x * zx + e2y * zy + e2z * zz) * inv
    behind = uzd <= 0
    y0 = np.where(behind, 1e3, y0)
    y1 = np.where(behind, 1e3, y1)
    pxx, pyy, pzz = Ppos[:, 0, 0, None], Ppos[:, 1, 1, None], Ppos[:, 2, 2, None]
    pxy, pxz, pyz = Ppos[:, 0, 1, None], Ppos[:, 0, 2, None], Ppos[:, 1, 2, None]

    F = npt.NDArray[np.float64]

    def q(ax_: F, ay_: F, az_: F, bx: F, by: F, bz: F) -> F:
        return (pxx * ax_ * bx + pyy * ay_ * by + pzz * az_ * bz + pxy * (ax_ * by + ay_ * bx)
                + pxz * (ax_ * bz + az_ * bx) + pyz * (ay_ * bz + az_ * by))

    r2 = rho * rho
    s2 = (np.asarray(sigma_rad, float) ** 2)[None, :]
    s00 = q(e1x, e1y, e1z, e1x, e1y, e1z) / r2 + s2
    s11 = q(e2x, e2y, e2z, e2x, e2y, e2z) / r2 + s2
    s01 = q(e1x, e1y, e1z, e2x, e2y, e2z) / r2
    det = s00 * s11 - s01 * s01
    d2 = (y0 * y0 * s11 - 2.0 * y0 * y1 * s01 + y1 * y1 * s00) / det
    return d2, np.log(det)


@dataclass(frozen=True)
class GateResult:
    d2: np.ndarray  # (K,N) squared Mahalanobis distance
    log_det_s: np.ndarray  # (K,N) log det of the innovation covariance (rad^2)
    inside: np.ndarray  # (K,N) bool


@dataclass(frozen=True)
class MahalanobisGate:
    """Chi-square gate on the 2-DOF LOS innovation.

    ``probability`` is the gate probability (default 0.9999, threshold ~18.4).
    """

    probability: float = 0.9999
    _threshold: float = field(init=False, repr=False, compare=False)

    @property
    def threshold(self) -> float:
        return float(chi2.ppf(self.probability, df=2))

    def __call__(
        self, x: np.ndarray, P: np.ndarray, sensor_m: np.ndarray, z_unit: np.ndarray, sigma_rad: np.ndarray
    ) -> GateResult:
        k, n = x.shape[0], sensor_m.shape[0]
        if k == 0 or n == 0:
            e = np.zeros((k, n))
            return GateResult(e, e, e.astype(bool))
        d2, log_det = pair_distances(x[:, :3], P[:, :3, :3], np.asarray(sensor_m, float),
                                     np.asarray(z_unit, float), np.asarray(sigma_rad, float))
        return GateResult(d2, log_det, d2 <= self._threshold)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_threshold", float(chi2.ppf(self.probability, df=2)))
