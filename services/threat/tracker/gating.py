"""Mahalanobis gating of every track x detection pair at once.

Inputs are combined track estimates ``x (K,6)``, ``P (K,6,6)`` (ECEF m, m/s)
and ``N`` detections (sensor positions ``(N,3)`` m, unit LOS ``(N,3)``,
noise ``(N,)`` rad).  The innovation is the 2-D tangent-plane angle residual
of :mod:`services.threat.tracker.filters`, so distances are chi-square with 2
degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from services.threat.tracker.filters import _inv2, innovation


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
        _, _, S, _, d2 = innovation(x[:, None], P[:, None], sensor_m[None], z_unit[None], sigma_rad[None])
        _, det = _inv2(S)
        return GateResult(d2, np.log(det), d2 <= self.threshold)
