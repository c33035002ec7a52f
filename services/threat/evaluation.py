"""Tracking performance: OSPA, GOSPA, RMSE and the posterior Cramer-Rao bound.

Positions in metres (ECEF), times in seconds.

* OSPA (Schuhmacher, Vo & Vo 2008) with cut-off ``c`` and order ``p``.
* GOSPA (Rahmathullah, Garcia-Fernandez & Svensson 2017) with ``alpha = 2``:
  ``(min_assign sum d^p + c^p/2 (#missed + #false))^(1/p)``, pairs further
  than ``c`` apart counted as one miss plus one false target.
* PCRLB for one target seen by several bearing-only sensors, recursive
  information form (Tichavsky et al. 1998) with the *information reduction
  factor* for missed detections: with detection probability ``Pd`` and
  negligible clutter inside the gate, the expected measurement information
  is ``Pd * H^T R^-1 H`` per visible sensor per frame.  Dynamics are the
  tracker's ballistic model (``F`` from the vectorised Jacobian along the
  truth, ``Q`` its white-acceleration noise), so the bound is the one for the
  filter's own model over the same geometry.  It covers ballistic free
  flight (boost and re-entry forces are not in the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from services.threat import dynamics as dyn
from services.threat.sensors import IRSensorModel, visible
from services.threat.tracker.filters import los_residual, white_acceleration_q


def _dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float).reshape(-1, np.shape(x)[-1] if np.ndim(x) else 1)
    y = np.asarray(y, float).reshape(-1, x.shape[1])
    return np.linalg.norm(x[:, None] - y[None], axis=-1)


def ospa(x: np.ndarray, y: np.ndarray, c: float = 1_000.0, p: float = 2.0) -> float:
    """OSPA distance between point sets ``x (m,d)`` and ``y (n,d)``."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    m, n = len(x), len(y)
    if m == 0 and n == 0:
        return 0.0
    if m == 0 or n == 0:
        return float(c)
    d = np.minimum(_dist(x, y), c) ** p
    r, k = linear_sum_assignment(d)
    total = d[r, k].sum() + c**p * abs(m - n)
    return float((total / max(m, n)) ** (1.0 / p))


@dataclass(frozen=True)
class GospaResult:
    distance: float
    localisation: float  # sum d^p over assigned pairs
    missed: int
    false: int


def gospa(x: np.ndarray, y: np.ndarray, c: float = 1_000.0, p: float = 2.0) -> GospaResult:
    """GOSPA (alpha = 2) between truth ``x (m,d)`` and estimates ``y (n,d)``."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    m, n = len(x), len(y)
    if m == 0 or n == 0:
        return GospaResult(float((c**p / 2 * (m + n)) ** (1 / p)), 0.0, m, n)
    d = _dist(x, y)
    cost = np.minimum(d, c) ** p
    r, k = linear_sum_assignment(cost)
    assigned = d[r, k] < c
    loc = float(np.sum(d[r, k][assigned] ** p))
    n_ass = int(assigned.sum())
    missed, false = m - n_ass, n - n_ass
    return GospaResult(float((loc + c**p / 2 * (missed + false)) ** (1 / p)), loc, missed, false)


def rmse(err: np.ndarray) -> float:
    """Root mean square of error vectors ``(T,d)`` (NaN rows ignored)."""
    e = np.asarray(err, float)
    ok = np.all(np.isfinite(e), axis=-1)
    return float(np.sqrt(np.mean(np.sum(e[ok] ** 2, axis=-1)))) if np.any(ok) else float("nan")


@dataclass(frozen=True)
class PcrlbResult:
    time_s: np.ndarray  # (T,)
    covariance: np.ndarray  # (T,6,6) bound J^-1
    position_sigma_m: np.ndarray  # (T,) sqrt(trace of position block)
    velocity_sigma_m_s: np.ndarray


def pcrlb_bearing_only(
    truth_time_s: np.ndarray,
    truth_state: np.ndarray,
    sensor_positions_ecef_m: np.ndarray,
    sensor: IRSensorModel,
    q_m2_s3: float = 0.01,
    prior_sigma_pos_m: float = 10e3,
    prior_sigma_vel_m_s: float = 1e3,
) -> PcrlbResult:
    """Recursive PCRLB along a truth trajectory sampled at the frame times.

    ``truth_time_s (T,)``, ``truth_state (T,6)`` ECEF at the sensor frames;
    ``sensor_positions_ecef_m (T,S,3)``.  ``J_0`` is a diffuse prior.
    Recursion per frame (loop over time only; sensors are vectorised)::

        J_k = (Q + F J_{k-1}^-1 F^T)^-1 + sum_s vis_s Pd H_s^T R_s^-1 H_s
    """
    t = np.asarray(truth_time_s, float)
    xs = np.asarray(truth_state, float)
    sens = np.asarray(sensor_positions_ecef_m, float)
    T = len(t)
    Fs = np.empty((T, 6, 6))
    if T > 1:
        _, F = dyn.transition_matrix(xs[:-1], np.diff(t))
        Fs[1:] = F
    Qs = white_acceleration_q(np.r_[0.0, np.diff(t)], q_m2_s3)
    vis = visible(sens, xs[:, None, :3], sensor)  # (T,S)
    _, Hp, _ = los_residual(xs[:, None, :3], sens, np.zeros(sens.shape) + (xs[:, None, :3] - sens))
    # information per sensor: Pd * Hp^T Hp / sigma^2 on the position block
    info_pos = sensor.detection_probability * np.einsum("tsai,tsaj->tsij", Hp, Hp) / sensor.los_noise_rad**2
    info_pos = np.einsum("ts,tsij->tij", vis, info_pos)
    J = np.diag([prior_sigma_pos_m**-2] * 3 + [prior_sigma_vel_m_s**-2] * 3)
    covs = np.empty((T, 6, 6))
    for k in range(T):  # recursion over time steps
        if k > 0:
            Pp = Fs[k] @ np.linalg.inv(J) @ Fs[k].T + Qs[k]
            J = np.linalg.inv(Pp)
        J = J.copy()
        J[:3, :3] += info_pos[k]
        covs[k] = np.linalg.inv(J)
    pos = np.sqrt(np.trace(covs[:, :3, :3], axis1=1, axis2=2))
    vel = np.sqrt(np.trace(covs[:, 3:, 3:], axis1=1, axis2=2))
    return PcrlbResult(t, covs, pos, vel)


def match_tracks_to_truth(
    track_times: list[np.ndarray], track_states: list[np.ndarray], truth_fn, n_truth: int
) -> np.ndarray:
    """Label each track history with the truth index it follows (median
    position error, -1 when above 10 km).  ``truth_fn(t) -> (T,n_truth,6)``."""
    labels = np.full(len(track_times), -1)
    for i, (t, x) in enumerate(zip(track_times, track_states, strict=True)):  # per track
        tr = truth_fn(t)
        e = np.linalg.norm(tr[..., :3] - x[:, None, :3], axis=-1)
        med = np.nanmedian(np.where(np.isfinite(e), e, np.inf), axis=0)
        j = int(np.argmin(med))
        labels[i] = j if med[j] < 10e3 else -1
    return labels
