"""Impact- and launch-point prediction for tracks (vectorised over tracks).

States are ECEF metres / m/s.  Each track's mean and covariance are turned
into ``2n+1 = 13`` unscented sigma points; all ``13 K`` points are propagated
together with the ballistic model (J2 gravity, Coriolis, centrifugal and
optional drag with ballistic coefficient ``beta_kg_m2``) until each reaches
altitude 0 (:func:`services.threat.dynamics.propagate_to_ground`: adaptive RK4 steps of
at most ``max_step_s``, the crossing solved to well under a metre).  The
impact points' mean and covariance are expressed in the local East-North
plane at the mean impact point, giving a 95% error ellipse (chi-square 2 DOF,
5.991) and the time to impact with its 1-sigma.

``estimate_launch_points`` runs the same machinery backwards in time.  Powered
flight is not modelled, so a launch point back-propagated from a post-boost
state lies down-range of the true launch site (by roughly the burn-out
distance); from a boost-phase state it is only indicative.  Glide vehicles
are not ballistic: their impact prediction is meaningless until the terminal
dive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.threat import dynamics as dyn
from shared.geodesy import ecef_to_geodetic, enu_rotation

CHI2_2DOF_95 = 5.991464547107979


@dataclass(frozen=True)
class GroundPointPrediction:
    """Columnar prediction for ``K`` tracks (NaN where ``valid`` is False)."""

    point_ecef_m: np.ndarray  # (K,3) mean ground point
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    time_to_ground_s: np.ndarray  # (K,) negative for launch (in the past)
    time_sigma_s: np.ndarray
    ellipse_semi_major_m: np.ndarray  # 95%
    ellipse_semi_minor_m: np.ndarray  # 95%
    ellipse_major_azimuth_deg: np.ndarray  # clockwise from north
    covariance_en_m2: np.ndarray  # (K,2,2) east/north
    valid: np.ndarray  # (K,) all sigma points reached the ground


def sigma_points(x: np.ndarray, P: np.ndarray, kappa: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Unscented sigma points ``(K,2n+1,n)`` and weights ``(2n+1,)``."""
    k, n = x.shape
    lam = kappa + 0.0
    Pj = P + np.eye(n) * 1e-9 * np.maximum(np.trace(P, axis1=1, axis2=2), 1.0)[:, None, None]
    L = np.linalg.cholesky((n + lam) * Pj)  # (K,n,n), columns are offsets
    off = np.swapaxes(L, 1, 2)  # rows
    pts = np.concatenate([x[:, None], x[:, None] + off, x[:, None] - off], axis=1)
    w = np.full(2 * n + 1, 1.0 / (2 * (n + lam)))
    w[0] = lam / (n + lam)
    return pts, w


def _ground_points(x: np.ndarray, P: np.ndarray, beta: float | np.ndarray, backwards: bool,
                   max_step_s: float, max_time_s: float) -> GroundPointPrediction:
    x = np.atleast_2d(np.asarray(x, float))
    P = np.asarray(P, float).reshape(-1, 6, 6)
    k = x.shape[0]
    pts, w = sigma_points(x, P, kappa=0.0)
    ns = pts.shape[1]
    beta_b = np.repeat(np.broadcast_to(np.asarray(beta, float), (k,)), ns)
    gs, tg, hit = dyn.propagate_to_ground(pts.reshape(-1, 6), beta_b, max_time_s, backwards,
                                          max_step_s=max_step_s)
    gs, tg, hit = gs.reshape(k, ns, 6), tg.reshape(k, ns), hit.reshape(k, ns)
    valid = np.all(hit, axis=1)
    pos = np.where(hit[..., None], gs[..., :3], 0.0)
    mean = np.einsum("s,ksi->ki", w, pos)
    t_mean = np.einsum("s,ks->k", w, np.where(hit, tg, 0.0))
    t_sig = np.sqrt(np.maximum(np.einsum("s,ks->k", w, (np.where(hit, tg, 0.0) - t_mean[:, None]) ** 2), 0))
    lat, lon, _ = ecef_to_geodetic(mean)
    R = enu_rotation(lat, lon)[:, :2]  # (K,2,3) east, north
    d = np.einsum("kai,ksi->ksa", R, pos - mean[:, None])
    C = np.einsum("s,ksa,ksb->kab", w, d, d)
    ev, evec = np.linalg.eigh(C)  # ascending
    major = np.sqrt(np.maximum(ev[:, 1], 0) * CHI2_2DOF_95)
    minor = np.sqrt(np.maximum(ev[:, 0], 0) * CHI2_2DOF_95)
    az = np.degrees(np.arctan2(evec[:, 0, 1], evec[:, 1, 1])) % 180.0

    def nan(a: np.ndarray) -> np.ndarray:
        return np.where(valid.reshape((-1,) + (1,) * (a.ndim - 1)), a, np.nan)

    return GroundPointPrediction(nan(mean), nan(lat), nan(lon), nan(t_mean), nan(t_sig), nan(major),
                                 nan(minor), nan(az), nan(C), valid)


def predict_impact_points(
    x: np.ndarray, P: np.ndarray, beta_kg_m2: float | np.ndarray = np.inf,
    max_step_s: float = 30.0, max_time_s: float = 4_000.0,
) -> GroundPointPrediction:
    """Ballistic impact point, 95% ellipse and time to impact for ``K`` tracks."""
    return _ground_points(x, P, beta_kg_m2, False, max_step_s, max_time_s)


def estimate_launch_points(
    x: np.ndarray, P: np.ndarray, max_step_s: float = 30.0, max_time_s: float = 4_000.0
) -> GroundPointPrediction:
    """Back-propagated (drag-free, unpowered) launch point estimate for ``K`` tracks."""
    return _ground_points(x, P, np.inf, True, max_step_s, max_time_s)
