import numpy as np

from services.threat import dynamics as dyn
from services.threat.sensors import (
    IRSensorModel,
    earth_occluded,
    in_field_of_regard,
    merge_unresolved,
    perturb_los,
    random_los_in_field_of_regard,
    tangent_basis,
    visible,
)
from shared.geodesy import geodetic_to_ecef

SAT = np.array([0.0, 0.0, dyn.R_POL_M + 1_000e3])


def test_occlusion_rule():
    below = np.array([0.0, 0.0, dyn.R_POL_M + 10e3])
    antipode = np.array([0.0, 0.0, -dyn.R_POL_M - 500e3])
    above_limb = geodetic_to_ecef(40.0, 0.0, 800e3)  # beyond the limb, seen above it
    occ = earth_occluded(SAT, np.stack([below, antipode, above_limb]))
    assert occ.tolist() == [False, True, False]
    # a ray grazing 50 km above the equator: clear by default, blocked by a 100 km limb margin
    s = np.array([dyn.R_EQ_M + 50e3, -3_000e3, 0.0])
    t = np.array([dyn.R_EQ_M + 50e3, 3_000e3, 0.0])
    assert not earth_occluded(s, t) and earth_occluded(s, t, limb_margin_m=100e3)
    # ...but a look-down view of a target below the margin is not a limb view
    assert not earth_occluded(SAT, np.array([0.0, 0.0, dyn.R_POL_M + 20e3]), limb_margin_m=100e3)


def test_field_of_regard_and_visible():
    m = IRSensorModel(field_of_regard_half_angle_deg=30.0)
    near = np.array([0.0, 1e5, dyn.R_POL_M])
    far = np.array([dyn.R_EQ_M + 800e3, 0, 0])
    assert in_field_of_regard(SAT, near, 30.0) and not in_field_of_regard(SAT, far, 30.0)
    assert visible(SAT, near, m) and not visible(SAT, far, m)


def test_tangent_basis_and_noise_statistics():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(500, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    b = tangent_basis(u)
    assert np.allclose(np.einsum("nki,ni->nk", b, u), 0, atol=1e-12)
    assert np.allclose(np.einsum("nki,nli->nkl", b, b), np.eye(2), atol=1e-12)
    z = perturb_los(np.repeat(u[:1], 20_000, 0), 20e-6, rng)
    ang = np.einsum("nki,ni->nk", tangent_basis(np.repeat(u[:1], 20_000, 0)), z)
    assert np.allclose(ang.std(axis=0), 20e-6, rtol=0.05)


def test_false_alarm_directions_inside_cone():
    rng = np.random.default_rng(1)
    s = np.repeat(SAT[None], 200, 0)
    d = random_los_in_field_of_regard(s, 40.0, rng)
    assert np.all(d @ np.array([0, 0, -1.0]) >= np.cos(np.radians(40.0)) - 1e-12)


def test_unresolved_sources_merge_into_one_detection_per_frame():
    """Within one sensor frame, sources closer than the resolution merge (chained), at
    their intensity-weighted centroid with the summed intensity, labelled by the
    brightest; the same directions in another frame, or further apart, stay apart."""
    base = np.array([0.0, 0.0, -1.0])
    b = tangent_basis(base)[0]

    def off(urad):
        v = base + urad * 1e-6 * b
        return v / np.linalg.norm(v)

    # frame 7: A, B 30 urad apart and C 30 urad beyond B (a chain); D 500 urad away
    # frame 8: the same A and B directions
    u = np.stack([off(0), off(30), off(60), off(500), off(0), off(30)])
    w = np.array([1.0, 3.0, 1.0, 2.0, 1.0, 1.0])
    key = np.array([7, 7, 7, 7, 8, 8])
    rows, mu, mw, members = merge_unresolved(key, u, w, 50e-6)
    assert rows.tolist() == [1, 3, 4]  # brightest of A-B-C; D alone; frame 8's A-B pair
    assert members.tolist() == [3, 1, 2]
    assert np.allclose(mw, [5.0, 2.0, 2.0])
    centroid = (u[0] + 3 * u[1] + u[2]) / 5
    assert np.allclose(mu[0], centroid / np.linalg.norm(centroid))
    assert np.allclose(mu[1], u[3]) and np.allclose(np.linalg.norm(mu, axis=1), 1.0)
    # at 20 urad resolution nothing merges; 0 turns merging off
    for res in (20e-6, 0.0):
        rows, mu, mw, members = merge_unresolved(key, u, w, res)
        assert rows.tolist() == list(range(6)) and np.all(members == 1) and np.allclose(mu, u)
