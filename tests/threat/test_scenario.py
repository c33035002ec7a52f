import numpy as np

from services.threat import dynamics as dyn
from tools.threatsim import scenario as sc


def test_ballistic_ranges_and_phases():
    specs = [sc.BallisticSpec(30.0, 50.0, 45.0, r) for r in (1_000.0, 5_000.0, 10_000.0)]
    truths = sc.simulate_targets(specs, [])
    for spec, t in zip(specs, truths, strict=True):
        rng_km = 6371.0 * np.arccos(np.dot(t.launch_ecef_m, t.impact_ecef_m)
                                    / np.linalg.norm(t.launch_ecef_m) / np.linalg.norm(t.impact_ecef_m))
        assert abs(rng_km - spec.range_km) / spec.range_km < 0.05
        assert set(np.unique(t.phase)) >= {sc.PHASE_BOOST, sc.PHASE_MIDCOURSE, sc.PHASE_TERMINAL}
        assert abs(dyn.altitude_m(t.impact_ecef_m)) < 100.0


def test_glide_vehicle_glides_hypersonically():
    (t,) = sc.simulate_targets([], [sc.GlideSpec(35.0, 40.0, 90.0, glide_altitude_km=55.0)])
    g = t.phase == sc.PHASE_GLIDE
    alt = dyn.altitude_m(t.state[g, :3])
    mach = np.linalg.norm(t.state[g, 3:], axis=1) / 300.0
    assert g.sum() > 300  # seconds of glide at 1 s steps
    assert np.median(alt) > 35e3 and alt.max() < 90e3
    assert mach.max() > 12 and mach.min() > 5
    # the lateral turn bends the ground track: heading changes by > 10 deg
    v = t.state[g, 3:]
    up = dyn.local_up(t.state[g, :3])
    vh = v - np.einsum("ti,ti->t", v, up)[:, None] * up
    c = np.dot(vh[0], vh[-1]) / np.linalg.norm(vh[0]) / np.linalg.norm(vh[-1])
    assert np.degrees(np.arccos(c)) > 10


def test_seeded_scenario_is_reproducible_and_columnar():
    cfg = sc.random_scenario_config(3, n_ballistic=1, n_glide=0, range_km=(1_000, 1_200), duration_s=200)
    a, b = sc.simulate(cfg), sc.simulate(cfg)
    d = a.detections
    assert np.array_equal(d.los_unit_ecef, b.detections.los_unit_ecef)
    assert np.array_equal(d.truth_id, b.detections.truth_id)
    assert np.all(np.diff(d.time) >= 0)
    assert d.sensor_position_ecef_m.shape == (len(d), 3) and d.noise_rad.shape == (len(d),)
    assert np.any(d.truth_id == -1) and np.any(d.truth_id == 0)
    assert d.epoch == cfg.epoch
    # true detections point at the target to within a few noise sigmas
    m = d.truth_id == 0
    tgt = a.targets[0].state_at(d.time[m])[:, :3]
    u = tgt - d.sensor_position_ecef_m[m]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    ang = np.arccos(np.clip(np.einsum("ni,ni->n", u, d.los_unit_ecef[m]), -1, 1))
    assert np.sqrt(np.mean(ang**2)) < 2 * np.sqrt(2) * cfg.sensor.los_noise_rad
    assert a.sensor_positions_ecef_m.shape == (len(a.frame_times_s), 4, 3)
    alt = np.linalg.norm(a.sensor_positions_ecef_m, axis=-1) - dyn.R_EQ_M
    assert np.allclose(alt, 1_000e3)
