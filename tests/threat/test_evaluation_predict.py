import numpy as np

from services.threat import dynamics as dyn
from services.threat.predict import estimate_launch_points, predict_impact_points
from tools.threatsim import scenario as sc
from tools.threatsim.evaluation import gospa, ospa, rmse


def test_ospa_known_values():
    x = np.array([[0.0, 0.0], [10.0, 0.0]])
    assert ospa(x, x, c=5, p=2) == 0.0
    assert ospa(x, np.zeros((0, 2)), c=5) == 5.0
    assert np.isclose(ospa(x[:1], np.array([[3.0, 4.0]]), c=10, p=1), 5.0)
    # one exact match + one extra estimate: (0 + c^p) / 2, c=10, p=1 -> 5
    assert np.isclose(ospa(x[:1], np.array([[0.0, 0.0], [100.0, 0]]), c=10, p=1), 5.0)


def test_gospa_known_values():
    a = np.array([[0.0, 0.0]])
    assert np.isclose(gospa(a, np.array([[3.0, 0.0]]), c=10, p=2).distance, 3.0)
    r = gospa(a, np.zeros((0, 2)), c=10, p=2)
    assert np.isclose(r.distance, np.sqrt(50.0)) and r.missed == 1
    r = gospa(a, np.array([[20.0, 0.0]]), c=10, p=2)  # too far: one miss + one false
    assert np.isclose(r.distance, 10.0) and (r.missed, r.false) == (1, 1)
    assert np.isclose(rmse(np.array([[3.0, 4.0], [np.nan, 0.0]])), 5.0)


def test_impact_and_launch_prediction_on_drag_free_missile():
    (t,) = sc.simulate_targets([sc.BallisticSpec(30.0, 50.0, 60.0, 2_000.0, beta_kg_m2=1e12)], [])
    k = np.flatnonzero(t.phase == sc.PHASE_MIDCOURSE)[100]
    x = t.state[k][None]
    P = np.diag([50.0**2] * 3 + [1.0**2] * 3)[None]
    imp = predict_impact_points(x, P, max_step_s=10.0)
    assert imp.valid[0]
    assert np.linalg.norm(imp.point_ecef_m[0] - t.impact_ecef_m) < 1_000.0
    assert abs(imp.time_to_ground_s[0] - (t.impact_time_s - t.time[k])) < 3.0
    assert 0 < imp.ellipse_semi_minor_m[0] <= imp.ellipse_semi_major_m[0] < 20e3
    # a bigger covariance gives a bigger ellipse (vectorised over 2 tracks)
    imp2 = predict_impact_points(np.repeat(x, 2, 0), np.stack([P[0], 16 * P[0]]), max_step_s=10.0)
    assert imp2.ellipse_semi_major_m[1] > 3.5 * imp2.ellipse_semi_major_m[0]
    # back-propagation lands near (down-range of) the launch site
    lp = estimate_launch_points(x, P, max_step_s=10.0)
    assert lp.valid[0] and lp.time_to_ground_s[0] < 0
    assert np.linalg.norm(lp.point_ecef_m[0] - t.launch_ecef_m) < 400e3
    assert abs(dyn.altitude_m(lp.point_ecef_m[0])) < 100.0
