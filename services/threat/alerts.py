"""Alerts for defended assets: does a predicted impact ellipse meet an asset, and how bad.

Geometry (vectorised over tracks x assets): an asset is a point or a circle of radius r
around a point on the ellipsoid. The 95% impact ellipse (from
`services.threat.predict.GroundPointPrediction`, East-North plane at the mean impact point,
semi-axes a >= b) *meets* the asset when the asset's offset from the mean impact point,
expressed along the ellipse's axes as (u, w), satisfies (u/(a+r))^2 + (w/(b+r))^2 <= 1.
For a point (r = 0) that is exactly "inside the 95% ellipse"; for an area it is a slightly
conservative test (the ellipse with axes a+r, b+r contains the ellipse grown by r, so an
area near the ellipse's flattened side may alert a little early). Offsets are taken in the
local tangent plane (flat-Earth error below 1% of the offset for offsets under 500 km).

Severity, from the time to impact (settings) and the geometry:
CRITICAL <= `critical_s` < HIGH <= `high_s` < MEDIUM (the asset's centre is inside the
ellipse) or LOW (only the area meets it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.threat.predict import CHI2_2DOF_95
from shared.geodesy import enu_rotation, geodetic_to_ecef

SEVERITY_LOW = 1
SEVERITY_MEDIUM = 2
SEVERITY_HIGH = 3
SEVERITY_CRITICAL = 4


@dataclass(frozen=True)
class AssetTable:
    """``A`` assets: ids, centres (degrees) and radii (metres)."""

    asset_id: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    radius_m: np.ndarray

    def __len__(self) -> int:
        return int(self.asset_id.shape[0])


def ellipse_meets(point_ecef_m: np.ndarray, lat_deg: np.ndarray, lon_deg: np.ndarray,
                  covariance_en_m2: np.ndarray, assets: AssetTable
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(meets (K,A), centre_inside (K,A))`` for K predicted impacts and A assets.

    Rows whose prediction is not finite never meet anything.
    """
    k, a = point_ecef_m.shape[0], len(assets)
    if k == 0 or a == 0:
        z = np.zeros((k, a), bool)
        return z, z
    ok = np.all(np.isfinite(point_ecef_m), axis=1) & np.all(
        np.isfinite(covariance_en_m2.reshape(k, 4)), axis=1)
    mean = np.where(ok[:, None], point_ecef_m, 0.0)
    C = np.where(ok[:, None, None], covariance_en_m2, np.eye(2))
    asset_ecef = geodetic_to_ecef(assets.lat_deg, assets.lon_deg, np.zeros(a))
    R = enu_rotation(np.where(ok, lat_deg, 0.0), np.where(ok, lon_deg, 0.0))[:, :2]  # (K,2,3)
    d = np.einsum("kei,kai->kae", R, asset_ecef[None] - mean[:, None])  # (K,A,2)
    ev, evec = np.linalg.eigh(C)  # ascending: minor, major
    semi = np.sqrt(np.maximum(ev, 0.0) * CHI2_2DOF_95)  # (K,2)
    along = np.einsum("kea,kne->kna", evec, d)  # offsets along minor, major axes (K,A,2)
    r = assets.radius_m[None, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        grown = np.sum((along / (semi[:, None, :] + r)) ** 2, axis=-1)
        core = np.sum((along / semi[:, None, :]) ** 2, axis=-1)
    meets = ok[:, None] & (grown <= 1.0)
    inside = ok[:, None] & (core <= 1.0)
    return meets, inside


def severity(time_to_impact_s: np.ndarray, centre_inside: np.ndarray, *, high_s: float,
             critical_s: float) -> np.ndarray:
    """Severity codes (see module doc), same shape as the inputs."""
    tti = np.asarray(time_to_impact_s, float)
    out = np.where(np.asarray(centre_inside), SEVERITY_MEDIUM, SEVERITY_LOW)
    out = np.where(tti <= high_s, SEVERITY_HIGH, out)
    return np.where(tti <= critical_s, SEVERITY_CRITICAL, out).astype(np.int8)
