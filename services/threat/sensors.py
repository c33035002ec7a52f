"""Space-based infrared (IR) sensor model and line-of-sight geometry.

Frame: ECEF (WGS84), metres.  Sensor satellite positions are given as arrays
(the service gets them from the orbit service; the simulator uses simple
circular orbits); this module never propagates orbits.

Visibility rule (documented choice)
-----------------------------------
A target is *visible* from a sensor when

1. the straight sensor->target segment does not intersect the WGS84 ellipsoid
   (Earth occlusion).  A look-down view of a low target (even a plume at a few
   km altitude) against the Earth background is allowed: scanning IR sensors
   see the hot plume against the Earth.  Optionally, ``limb_margin_m`` > 0
   additionally blocks *grazing* views whose closest approach to the Earth
   lies strictly between sensor and target and is below that height (an
   opaque-atmosphere limb model, e.g. 100e3 m).  The default margin is 0: the
   pure ellipsoid test.
2. the target lies inside the sensor's field of regard: a cone of half-angle
   ``field_of_regard_half_angle_deg`` about nadir (the sensor is nadir-pointing
   and can steer anywhere inside that cone).

All numbers in :class:`IRSensorModel` are ASSUMPTIONS: no official figures
for such sensors are public.  Ranges used in open literature: line-of-sight
noise 5-50 microradians, frame rate 1-10 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from services.threat.dynamics import R_EQ_M, R_POL_M


@dataclass(frozen=True)
class IRSensorModel:
    """Parameters of one scanning IR sensor (all defaults are ASSUMPTIONS)."""

    los_noise_urad: float = 20.0
    """1-sigma line-of-sight noise per axis, microradians (assumed; 5-50 typical)."""
    frame_rate_hz: float = 1.0
    """Revisit/frame rate, Hz (assumed; 1-10 typical)."""
    field_of_regard_half_angle_deg: float = 70.0
    """Half-angle of the steerable cone about nadir, degrees (assumed).  From
    1,000 km the Earth's limb is at ~59.8 deg, so 70 deg also covers targets
    above the limb."""
    detection_probability: float = 0.9
    """Probability that a visible target is reported in a frame (assumed)."""
    false_alarms_per_frame: float = 1.0
    """Mean number of false alarms per sensor frame, Poisson (assumed)."""
    limb_margin_m: float = 0.0
    """Extra opaque height for grazing (limb) views, metres; 0 = pure ellipsoid test."""
    resolution_urad: float = 50.0
    """Closely spaced objects: two sources whose lines of sight from one sensor in one
    frame are closer than this are not resolved and give one detection (assumed: about
    two pixels of a wide-field focal plane; 0 resolves everything).  See
    :func:`merge_unresolved`."""

    @property
    def los_noise_rad(self) -> float:
        return self.los_noise_urad * 1e-6

    @property
    def frame_period_s(self) -> float:
        return 1.0 / self.frame_rate_hz

    def __post_init__(self) -> None:
        if not (0 < self.detection_probability <= 1):
            raise ValueError("detection_probability must be in (0, 1]")
        if self.los_noise_urad <= 0 or self.frame_rate_hz <= 0:
            raise ValueError("noise and frame rate must be positive")
        if self.false_alarms_per_frame < 0:
            raise ValueError("false_alarms_per_frame must be >= 0")
        if self.resolution_urad < 0:
            raise ValueError("resolution_urad must be >= 0")


# --------------------------------------------------------------------------- geometry


def los_unit(sensor_ecef_m: np.ndarray, target_ecef_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit line of sight sensor->target and range, broadcasting ``(...,3)``.

    Returns ``(u (...,3), range_m (...))``.
    """
    d = np.asarray(target_ecef_m, float) - np.asarray(sensor_ecef_m, float)
    rng = np.linalg.norm(d, axis=-1)
    return d / rng[..., None], rng


def tangent_basis(u: np.ndarray) -> np.ndarray:
    """Two orthonormal vectors perpendicular to unit vectors ``u`` (``(...,3)``).

    Returns ``(..., 2, 3)``; rows ``e1, e2`` with ``e1 x e2 = u``.  Used as the
    2-D angular measurement frame for bearing-only updates: for a measured
    unit vector ``z`` close to ``u``, ``B @ z`` is the angular error (rad).
    """
    u = np.asarray(u, float)
    # pick the helper axis least aligned with u to avoid degeneracy
    helper = np.zeros(u.shape)
    ax = np.argmin(np.abs(u), axis=-1)
    np.put_along_axis(helper, ax[..., None], 1.0, axis=-1)
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
    e2 = np.cross(u, e1)
    return np.stack([e1, e2], axis=-2)


def earth_occluded(
    sensor_ecef_m: np.ndarray, target_ecef_m: np.ndarray, limb_margin_m: float = 0.0
) -> np.ndarray:
    """True where the sensor->target segment is blocked by the Earth.

    Broadcasts ``(...,3)`` against ``(...,3)``.  See the module docstring for
    the rule (ellipsoid intersection + optional grazing limb margin).
    """
    s = np.asarray(sensor_ecef_m, float)
    t = np.asarray(target_ecef_m, float)
    s, t = np.broadcast_arrays(s, t)

    def closest(scale_a: float, scale_b: float) -> tuple[np.ndarray, np.ndarray]:
        sc = np.array([scale_a, scale_a, scale_b])
        s1, d1 = s / sc, (t - s) / sc
        dd = np.einsum("...i,...i->...", d1, d1)
        tau = -np.einsum("...i,...i->...", s1, d1) / np.where(dd > 0, dd, 1.0)
        tau_c = np.clip(tau, 0.0, 1.0)
        p = s1 + tau_c[..., None] * d1
        return np.einsum("...i,...i->...", p, p), tau

    d2, _ = closest(R_EQ_M, R_POL_M)
    blocked = d2 < 1.0
    if limb_margin_m > 0:
        d2m, tau = closest(R_EQ_M + limb_margin_m, R_POL_M + limb_margin_m)
        blocked |= (d2m < 1.0) & (tau > 0.0) & (tau < 1.0)
    return blocked


def in_field_of_regard(
    sensor_ecef_m: np.ndarray, target_ecef_m: np.ndarray, half_angle_deg: float
) -> np.ndarray:
    """True where the target is within ``half_angle_deg`` of the sensor's nadir
    (geocentric nadir, ``-sensor/|sensor|``)."""
    s = np.asarray(sensor_ecef_m, float)
    u, _ = los_unit(s, target_ecef_m)
    nadir = -s / np.linalg.norm(s, axis=-1, keepdims=True)
    cos_angle = np.einsum("...i,...i->...", u, nadir)
    return cast(np.ndarray, cos_angle >= np.cos(np.radians(half_angle_deg)))


def visible(
    sensor_ecef_m: np.ndarray, target_ecef_m: np.ndarray, model: IRSensorModel
) -> np.ndarray:
    """Visibility mask (occlusion and field of regard), broadcasting ``(...,3)``."""
    clear = ~earth_occluded(sensor_ecef_m, target_ecef_m, model.limb_margin_m)
    return cast(np.ndarray, clear & in_field_of_regard(
        sensor_ecef_m, target_ecef_m, model.field_of_regard_half_angle_deg))


def perturb_los(u: np.ndarray, sigma_rad: np.ndarray | float, rng: np.random.Generator) -> np.ndarray:
    """Add isotropic angular Gaussian noise (``sigma_rad`` per axis) to unit vectors."""
    u = np.asarray(u, float)
    b = tangent_basis(u)
    e = rng.standard_normal(u.shape[:-1] + (2,)) * np.asarray(sigma_rad, float)[..., None]
    z = u + np.einsum("...k,...ki->...i", e, b)
    return cast(np.ndarray, z / np.linalg.norm(z, axis=-1, keepdims=True))


def random_los_in_field_of_regard(
    sensor_ecef_m: np.ndarray, half_angle_deg: float, rng: np.random.Generator
) -> np.ndarray:
    """Unit vectors drawn uniformly (in solid angle) inside the nadir cone of
    each sensor position ``(N,3)``; used for false alarms."""
    s = np.atleast_2d(np.asarray(sensor_ecef_m, float))
    n = s.shape[0]
    nadir = -s / np.linalg.norm(s, axis=-1, keepdims=True)
    cos_max = np.cos(np.radians(half_angle_deg))
    cos_t = 1.0 - rng.random(n) * (1.0 - cos_max)
    sin_t = np.sqrt(1.0 - cos_t**2)
    phi = rng.random(n) * 2 * np.pi
    b = tangent_basis(nadir)
    return cast(np.ndarray, (
        cos_t[:, None] * nadir
        + (sin_t * np.cos(phi))[:, None] * b[:, 0]
        + (sin_t * np.sin(phi))[:, None] * b[:, 1]
    ))


def merge_unresolved(
    frame_key: np.ndarray, u: np.ndarray, intensity: np.ndarray, resolution_rad: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge sources a sensor cannot resolve into one detection each.

    ``frame_key`` ``(N,)`` int: one value per sensor frame (sources only merge within
    one); ``u`` ``(N,3)``: true unit lines of sight; ``intensity`` ``(N,)`` W/m^2.
    Sources within ``resolution_rad`` of each other in one frame form a blob (chained:
    A near B near C is one blob).  A blob's detection is its intensity-weighted centroid
    direction with the summed intensity, labelled with its brightest member.

    Returns ``(rows (M,), u (M,3), intensity (M,), members (M,))``: the brightest
    member's row of each blob in input order, the merged line of sight and intensity,
    and how many sources the blob holds (1 for a resolved source).  Neighbours come from
    a k-d tree on the unit vectors with the frame key as a far-apart fourth coordinate.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    u = np.asarray(u, float).reshape(-1, 3)
    w = np.asarray(intensity, float).reshape(-1)
    n = u.shape[0]
    if n == 0 or resolution_rad <= 0:
        return np.arange(n), u.copy(), w.copy(), np.ones(n, np.int64)
    chord = 2.0 * np.sin(resolution_rad / 2.0)
    points = np.column_stack([u, 4.0 * np.asarray(frame_key, float)])  # keys > 2 apart
    pairs = cKDTree(points).query_pairs(chord, output_type="ndarray")
    if pairs.shape[0] == 0:
        return np.arange(n), u.copy(), w.copy(), np.ones(n, np.int64)
    graph = coo_matrix((np.ones(pairs.shape[0]), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, blob = connected_components(graph, directed=False)
    order = np.lexsort((-w, blob))  # by blob, brightest first
    first = np.ones(n, bool)
    first[1:] = blob[order[1:]] != blob[order[:-1]]
    rows = np.sort(order[first])
    label = blob[rows]  # blob of each output row
    centroid = np.zeros((blob.max() + 1, 3))
    np.add.at(centroid, blob, w[:, None] * u)
    total = np.bincount(blob, weights=w)
    members = np.bincount(blob)
    merged_u = centroid[label] / np.linalg.norm(centroid[label], axis=1, keepdims=True)
    return rows, merged_u, total[label], members[label]


def irradiance(radiant_intensity_w_sr: np.ndarray, range_m: np.ndarray) -> np.ndarray:
    """Irradiance at the sensor, W/m^2 (inverse-square, no atmosphere)."""
    range_sq = np.asarray(range_m, float) ** 2
    return cast(np.ndarray, np.asarray(radiant_intensity_w_sr, float) / range_sq)
