"""The gate's unrolled maths (`gating.pair_distances`) is the filter's innovation.

`pair_distances` writes the LOS innovation out component by component for speed; the
filter's `innovation` is the readable statement of the same model (tangent basis, gnomonic
residual, S = H P H^T + sigma^2 I). Every track x detection pair must give the same squared
Mahalanobis distance and log det S, including detections on the far side of the sensor
(gated out by a huge residual in both) and lines of sight along each axis (where the
tangent basis switches its helper axis).
"""

from __future__ import annotations

import numpy as np

from services.threat.tracker.filters import innovation
from services.threat.tracker.gating import pair_distances


def _spd(rng, k: int, scale_m: float) -> np.ndarray:
    a = rng.normal(size=(k, 3, 3)) * scale_m
    return a @ np.swapaxes(a, -1, -2) + np.eye(3) * scale_m**2 * 1e-3


def _reference(pos_m, p_pos, sensor_m, z_unit, sigma_rad):
    k, n = pos_m.shape[0], sensor_m.shape[0]
    x = np.zeros((k, 1, 6))
    x[:, 0, :3] = pos_m
    p = np.zeros((k, 1, 6, 6))
    p[:, 0, :3, :3] = p_pos
    p[:, 0, 3:, 3:] = np.eye(3)
    _, _, s, _, d2 = innovation(x, p, sensor_m[None], z_unit[None], sigma_rad[None])
    assert d2.shape == (k, n)
    return d2, np.log(np.linalg.det(s))


def test_pair_distances_equal_the_filters_innovation():
    rng = np.random.default_rng(20261206)
    k, n = 40, 60
    targets = rng.normal(size=(k, 3)) * 3.0e6 + np.array([6.5e6, 0.0, 0.0])
    sensors = rng.normal(size=(n, 3)) * 1.0e6 + np.array([4.2e7, 0.0, 0.0])
    # Lines of sight: towards a random target, perturbed; some exactly along an axis;
    # some pointing away (behind the sensor for every track).
    aim = targets[rng.integers(0, k, n)] - sensors
    z = aim / np.linalg.norm(aim, axis=1)[:, None] + rng.normal(size=(n, 3)) * 1e-3
    z[:3] = -np.eye(3)
    z[3:6] = np.eye(3)
    z /= np.linalg.norm(z, axis=1)[:, None]
    sigma = rng.uniform(2e-5, 2e-4, n)
    p_pos = _spd(rng, k, 500.0)

    d2, log_det = pair_distances(targets, p_pos, sensors, z, sigma)
    d2_ref, log_det_ref = _reference(targets, p_pos, sensors, z, sigma)

    np.testing.assert_allclose(d2, d2_ref, rtol=1e-9, atol=0)
    np.testing.assert_allclose(log_det, log_det_ref, rtol=1e-12, atol=1e-12)
    behind = np.einsum("kni,ni->kn", targets[:, None] - sensors[None], z) <= 0
    assert behind.any() and (~behind).any()
    assert np.all(d2[behind] > 1e6)  # far outside any gate, as in the filter


def test_pair_distances_on_a_track_at_its_detection_is_zero():
    """A detection exactly on the track's line of sight has no residual."""
    rng = np.random.default_rng(7)
    targets = rng.normal(size=(5, 3)) * 1e6 + np.array([6.5e6, 1e6, 0.0])
    sensors = np.array([[4.2e7, 0.0, 0.0]] * 5)
    los = targets - sensors
    z = los / np.linalg.norm(los, axis=1)[:, None]
    d2, _ = pair_distances(targets, _spd(rng, 5, 100.0), sensors, z, np.full(5, 1e-4))
    assert np.allclose(np.diag(d2), 0.0, atol=1e-12)
    assert np.all(d2[~np.eye(5, dtype=bool)] > 0.0)
