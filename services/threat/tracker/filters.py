"""Batched extended Kalman filter on a 6-state ECEF ballistic model with a
bearing-only (unit line-of-sight) measurement.

State: ``x = [x, y, z, vx, vy, vz]`` ECEF, metres and m/s; covariances in
the same units.  Everything is batched: ``x (K,6)``, ``P (K,6,6)``; matrix
algebra uses ``einsum``/``@`` over the leading axis (no loops over tracks).

Measurement model (bearing only)
--------------------------------
A detection is the measured unit vector ``z`` from the sensor at ``s``.  For a
predicted position ``p`` the predicted line of sight is ``u = (p - s)/rho``.
Residuals live in the 2-D tangent plane of ``u`` (orthonormal basis ``B``,
:func:`services.threat.sensors.tangent_basis`): ``y = B z / (u . z)``
(gnomonic angles, radians; the prediction is ``0``).  The Jacobian with respect
to position is ``H = B / rho`` (zero for velocity) and ``R = sigma^2 I_2`` with
``sigma`` the detection's ``noise_rad``.  Working in the tangent plane avoids
the singularities of azimuth/elevation and the rank deficiency of a 3-D unit
vector residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.threat import dynamics as dyn
from services.threat.sensors import tangent_basis


def white_acceleration_q(dt_s: np.ndarray, q_m2_s3: float) -> np.ndarray:
    """Process noise ``(K,6,6)`` for continuous white acceleration of power
    spectral density ``q`` ((m/s^2)^2 / Hz) over steps ``dt_s`` ``(K,)``."""
    dt = np.abs(np.atleast_1d(np.asarray(dt_s, float)))
    i3 = np.eye(3)
    q11 = (dt**3 / 3.0)[:, None, None] * i3
    q12 = (dt**2 / 2.0)[:, None, None] * i3
    q22 = dt[:, None, None] * i3
    top = np.concatenate([q11, q12], axis=2)
    bot = np.concatenate([q12, q22], axis=2)
    return q_m2_s3 * np.concatenate([top, bot], axis=1)


@dataclass(frozen=True)
class BallisticModel:
    """Ballistic motion model (J2 gravity, Coriolis, centrifugal, optional drag)
    plus white acceleration noise of PSD ``q_m2_s3``.

    With a small ``q`` this is the mid-course model; with a large ``q`` it is
    the manoeuvring (boost / glide / re-entry) model of the IMM.
    """

    name: str = "ballistic"
    q_m2_s3: float = 0.01
    beta_kg_m2: float = np.inf
    max_step_s: float = 5.0

    def predict(self, x: np.ndarray, P: np.ndarray, dt_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predict ``x (K,6)``, ``P (K,6,6)`` by ``dt_s`` ``(K,)`` seconds."""
        dt = np.broadcast_to(np.asarray(dt_s, float), x.shape[:1])
        if x.shape[0] == 0 or not np.any(dt != 0):
            return x.copy(), P.copy()
        xn, F = dyn.transition_matrix(x, dt, self.beta_kg_m2, self.max_step_s)
        Pn = F @ P @ np.swapaxes(F, 1, 2) + white_acceleration_q(dt, self.q_m2_s3)
        return xn, 0.5 * (Pn + np.swapaxes(Pn, 1, 2))


def los_residual(
    pos_m: np.ndarray, sensor_m: np.ndarray, z_unit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangent-plane residual and Jacobian for broadcast batches.

    ``pos_m`` ``(...,3)`` predicted target positions, ``sensor_m`` ``(...,3)``,
    ``z_unit`` ``(...,3)`` measured unit LOS.  Returns ``y (...,2)`` radians,
    ``H_pos (...,2,3)`` (rad/m) and ``rho (...)`` range in metres.
    """
    d = np.asarray(pos_m, float) - np.asarray(sensor_m, float)
    rho = np.linalg.norm(d, axis=-1)
    u = d / rho[..., None]
    B = tangent_basis(u)
    z = np.broadcast_to(np.asarray(z_unit, float), u.shape)
    uz = np.einsum("...i,...i->...", u, z)
    y = np.einsum("...ki,...i->...k", B, z) / np.where(uz > 1e-9, uz, 1e-9)[..., None]
    # behind the sensor (uz <= 0): make the residual huge so gating rejects it
    y = np.where((uz > 0)[..., None], y, 1e3)
    return y, B / rho[..., None, None], rho


def _inv2(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse and determinant of (...,2,2) matrices (closed form)."""
    a, b, c, d = S[..., 0, 0], S[..., 0, 1], S[..., 1, 0], S[..., 1, 1]
    det = a * d - b * c
    inv = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], -2) / det[..., None, None]
    return inv, det


def innovation(
    x: np.ndarray, P: np.ndarray, sensor_m: np.ndarray, z_unit: np.ndarray, sigma_rad: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Residual ``y (...,2)``, ``H (...,2,6)``, ``S (...,2,2)``, ``S^-1`` and the
    squared Mahalanobis distance ``d2 (...)``.  ``x (...,6)``, ``P (...,6,6)``
    broadcast against the measurement arrays."""
    y, Hp, _ = los_residual(x[..., :3], sensor_m, z_unit)
    Ppp = P[..., :3, :3]
    S = np.einsum("...ki,...ij,...lj->...kl", Hp, Ppp, Hp)
    s2 = np.asarray(sigma_rad, float) ** 2
    S = S + s2[..., None, None] * np.eye(2)
    Sinv, _ = _inv2(S)
    d2 = np.einsum("...k,...kl,...l->...", y, Sinv, y)
    H = np.concatenate([Hp, np.zeros(Hp.shape)], axis=-1)
    return y, H, S, Sinv, d2


def ekf_update(
    x: np.ndarray, P: np.ndarray, sensor_m: np.ndarray, z_unit: np.ndarray, sigma_rad: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EKF update of ``K`` tracks, each with one detection (row-aligned).

    Returns ``(x_upd (K,6), P_upd (K,6,6), log_likelihood (K,))``.  Joseph
    form keeps ``P`` symmetric positive definite.
    """
    y, H, S, Sinv, d2 = innovation(x, P, sensor_m, z_unit, sigma_rad)
    Kg = P @ np.swapaxes(H, -1, -2) @ Sinv  # (K,6,2)
    xn = x + np.einsum("kij,kj->ki", Kg, y)
    IKH = np.eye(6) - Kg @ H
    s2 = np.asarray(sigma_rad, float) ** 2
    Pn = IKH @ P @ np.swapaxes(IKH, -1, -2) + s2[:, None, None] * (Kg @ np.swapaxes(Kg, -1, -2))
    Pn = 0.5 * (Pn + np.swapaxes(Pn, -1, -2))
    _, det = _inv2(S)
    loglik = -0.5 * (d2 + np.log(det) + 2.0 * np.log(2.0 * np.pi))
    return xn, Pn, loglik
