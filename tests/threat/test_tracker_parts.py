import numpy as np
import pytest

from services.threat import dynamics as dyn
from services.threat.detections import Detections
from services.threat.sensors import los_unit, perturb_los
from services.threat.tracker import (
    IMM,
    GNNAssociator,
    LifecycleConfig,
    MahalanobisGate,
    TriangulationInitiator,
    ekf_update,
    triangulate,
    update_lifecycle,
)
from services.threat.tracker.filters import BallisticModel
from services.threat.tracker.imm import EXO, NOMINAL, TERMINAL
from services.threat.tracker.lifecycle import COASTING, CONFIRMED, DROPPED, TENTATIVE
from shared.geodesy import geodetic_to_ecef

SENSORS = geodetic_to_ecef(np.array([30.0, 45.0, 38.0]), np.array([40.0, 48.0, 60.0]), 1_000e3)
TARGET = geodetic_to_ecef(38.0, 50.0, 400e3)


def _dets(sensors, targets, t=0.0, sigma=20e-6, rng=None, sensor_index=None):
    u, _ = los_unit(sensors, targets)
    if rng is not None:
        u = perturb_los(u, sigma, rng)
    n = len(u)
    return Detections(np.full(n, t), np.arange(n) if sensor_index is None else sensor_index, sensors, u,
                      np.full(n, sigma), np.ones(n), np.full(n, -1))


def test_triangulation_recovers_known_point():
    u, _ = los_unit(SENSORS, TARGET)
    p, cov, chi2, rho = triangulate(SENSORS[None], u[None], np.full((1, 3), 20e-6))
    assert np.linalg.norm(p[0] - TARGET) < 1e-3 and chi2[0] < 1e-6
    assert np.all(rho > 0)
    # covariance is consistent with noisy rays (NEES ~ 3)
    rng = np.random.default_rng(0)
    uu = perturb_los(np.repeat(u[None], 400, 0), 20e-6, rng)
    p, cov, chi2, _ = triangulate(np.repeat(SENSORS[None], 400, 0), uu, np.full((400, 3), 20e-6))
    e = p - TARGET
    nees = np.einsum("ci,cij,cj->c", e, np.linalg.inv(cov), e)
    assert 2.5 < nees.mean() < 3.5
    assert 2.4 < chi2.mean() < 3.6  # 2R-3 = 3 DOF


def test_initiator_pairs_gates_and_rejects_parallel_rays():
    rng = np.random.default_rng(1)
    tgt2 = geodetic_to_ecef(36.0, 52.0, 300e3)
    d = Detections.concat([_dets(SENSORS[:2], TARGET, rng=rng), _dets(SENSORS[:2], tgt2, rng=rng)])
    born = TriangulationInitiator()(d)
    assert born.x.shape[0] == 2  # no ghosts from the cross pairs
    err = np.min(np.linalg.norm(born.x[:, None, :3] - np.stack([TARGET, tgt2])[None], axis=2), axis=1)
    assert np.all(err < 500.0)
    assert np.all(born.P[:, 3, 3] == TriangulationInitiator().velocity_sigma_m_s**2)
    # two sensors a few km apart: rays nearly parallel -> rejected
    close = np.stack([SENSORS[0], SENSORS[0] + np.array([5e3, 0, 0])])
    assert TriangulationInitiator()(_dets(close, TARGET)).x.shape[0] == 0


def _ballistic_truth(n=301):
    x0 = np.r_[TARGET, 3e3, -2e3, 2.5e3][None]
    xs = [x0[0]]
    for _ in range(n - 1):
        xs.append(dyn.propagate(xs[-1][None], 1.0)[0])
    return np.array(xs)


@pytest.mark.parametrize("noisy", [False, True])
def test_ekf_converges_on_ballistic_arc(noisy):
    truth = _ballistic_truth()
    rng = np.random.default_rng(2)
    model = BallisticModel(q_m2_s3=1e-4)
    x = (truth[0] + np.r_[2e3, -1e3, 1.5e3, 300.0, -200.0, 100.0])[None]
    P = np.diag([3e3**2] * 3 + [500.0**2] * 3)[None]
    nees = []
    for k in range(1, len(truth)):
        x, P = model.predict(x, P, np.array([1.0]))
        for s in SENSORS[:2]:  # sequential updates, one per sensor
            u, _ = los_unit(s, truth[k, :3])
            if noisy:
                u = perturb_los(u, 20e-6, rng)
            x, P, _ = ekf_update(x, P, s[None], u[None], np.array([20e-6]))
        e = x[0] - truth[k]
        nees.append(e @ np.linalg.solve(P[0], e))
    err = np.linalg.norm(x[0, :3] - truth[-1, :3])
    verr = np.linalg.norm(x[0, 3:] - truth[-1, 3:])
    if noisy:
        assert err < 60.0 and verr < 1.0
        assert np.mean(nees[100:]) < 12.0  # consistent (6 DOF)
    else:
        assert err < 1.0 and verr < 0.01


def test_gating_and_gnn_with_crossing_targets():
    # two tracks 2 km apart; detections listed in swapped order
    p1, p2 = TARGET, TARGET + np.array([2e3, 0, 0])
    x = np.zeros((2, 6))
    x[0, :3], x[1, :3] = p1 + 150.0, p2 - 150.0  # predictions biased toward each other
    P = np.repeat(np.diag([300.0**2] * 3 + [10.0**2] * 3)[None], 2, 0)
    rng = np.random.default_rng(3)
    s = SENSORS[0]
    d = _dets(np.stack([s, s]), np.stack([p2, p1]), rng=rng, sensor_index=np.zeros(2))
    g = MahalanobisGate()(x, P, d.sensor_position_ecef_m, d.los_unit_ecef, d.noise_rad)
    assert g.d2.shape == (2, 2)
    a = GNNAssociator()(g)
    assert dict(zip(a.track_index.tolist(), a.detection_index.tolist(), strict=True)) == {0: 1, 1: 0}
    # a far-away detection is gated out and left unassigned
    far = _dets(s[None], (TARGET + np.array([0, 0, 200e3]))[None])
    g2 = MahalanobisGate()(x, P, far.sensor_position_ecef_m, far.los_unit_ecef, far.noise_rad)
    a2 = GNNAssociator()(g2)
    assert a2.track_index.size == 0 and a2.unassigned_detections.tolist() == [0]


def test_lifecycle_m_of_n():
    cfg = LifecycleConfig(m=3, n=5, coast_after_s=5.0, drop_after_s=20.0)
    st = np.array([TENTATIVE, TENTATIVE])
    bits = np.ones(2, np.uint64)
    nopp = np.ones(2, int)
    last = np.zeros(2)
    seq = [(1, 0), (0, 0), (1, 0)]  # track 0: hits 1,1,0,1 -> confirmed; track 1: 1,0,0,0 -> dropped
    out = []
    for k, h in enumerate(seq, start=1):
        hit = np.array(h, bool)
        last = np.where(hit, float(k), last)
        u = update_lifecycle(st, bits, nopp, hit, float(k), last, np.zeros(2), np.full(2, 1e5), cfg)
        st, bits, nopp = u.status, u.hit_bits, u.n_opportunities
        out.append(st.copy())
    assert out[0].tolist() == [TENTATIVE, TENTATIVE]
    assert out[2][0] == CONFIRMED and out[2][1] == DROPPED
    # confirmed track without hits: coasting after 5 s, dropped after 20 s
    for t, want in [(9.0, COASTING), (12.0, COASTING), (24.0, DROPPED)]:
        u = update_lifecycle(st[:1], bits[:1], nopp[:1], np.zeros(1, bool), t, last[:1], np.zeros(1),
                             np.full(1, 1e5), cfg)
        assert u.status[0] == want
        st, bits, nopp = np.r_[u.status, st[1:]], np.r_[u.hit_bits, bits[1:]], np.r_[u.n_opportunities, nopp[1:]]


def test_imm_transition_and_model_probability_response():
    imm = IMM()
    pi = imm.transition(np.array([0.0, 1.0, 100.0]))
    assert np.allclose(pi.sum(axis=2), 1.0) and np.allclose(pi[0], np.eye(3))
    assert pi[2, 0, 2] < 1e-4  # ballistic practically never re-enters boost
    # ...except in the terminal phase: low and descending fast
    up = np.r_[dyn.R_EQ_M, 0.0, 0.0]
    states = np.array([[*(up + [20e3, 0, 0]), -2e3, 500.0, 0.0],  # 20 km, diving: terminal
                       [*(up + [20e3, 0, 0]), 2e3, 500.0, 0.0],  # 20 km, climbing (a boost)
                       [*(up + [60e3, 0, 0]), -2e3, 500.0, 0.0],  # above 40 km
                       [*(up + [20e3, 0, 0]), -100.0, 3e3, 0.0]])  # nearly level
    x = np.repeat(states[:, None], 3, axis=1)
    mu = np.full((4, 3), 1.0 / 3.0)
    assert imm.regime(x, mu).tolist() == [TERMINAL, NOMINAL, NOMINAL, NOMINAL]
    pi = imm.transition(np.full(4, 5.0), imm.regime(x, mu))
    assert pi[0, 0, 2] > 0.5 and np.all(pi[1:, 0, 2] < 1e-4)
    # above 150 km a ballistic track practically never turns manoeuvring (coverage gaps)
    high = np.array([[*(up + [600e3, 0, 0]), 100.0, 6e3, 0.0]])
    regime = imm.regime(np.repeat(high[:, None], 3, axis=1), mu[:1])
    assert regime.tolist() == [EXO]
    assert imm.transition(np.array([180.0]), regime)[0, 0, 1] < 1e-4
    assert imm.transition(np.array([180.0]))[0, 0, 1] > 0.1  # nominal rates: 16%
    # a target accelerating at 30 m/s^2 drives probability away from "ballistic"
    rng = np.random.default_rng(4)
    x_true = np.r_[TARGET, 2e3, 0, 1e3]
    x, P, mu = imm.init_state(x_true[None], np.diag([100.0**2] * 3 + [10.0**2] * 3)[None])
    for _ in range(30):
        a = 30.0 * x_true[3:] / np.linalg.norm(x_true[3:])
        x_true = dyn.propagate(x_true[None], 1.0)[0] + np.r_[0.5 * a, a]
        x, P, mu = imm.predict(x, P, mu, np.array([1.0]))
        for s in SENSORS:
            u = perturb_los(los_unit(s, x_true[:3])[0], 20e-6, rng)
            x, P, mu = imm.update(x, P, mu, s[None], u[None], np.array([20e-6]))
    assert mu[0, 0] < 0.2
    xc, _ = IMM.combine(x, P, mu)
    assert np.linalg.norm(xc[0, :3] - x_true[:3]) < 300.0
