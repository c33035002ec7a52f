"""The identity-switch (track swap) metric on hand-made tracks.

Two truths fly straight lines that cross in the x-y plane with a 3 km vertical
offset (closest approach 3 km at t = 0); tracks are the truths plus a small,
fixed error.  Units: metres, seconds (1 s frames).
"""

import numpy as np

from tools.threatsim.evaluation import assign_frames, identity_switches

T = np.arange(-60.0, 61.0)  # (F,) s


def _truths() -> np.ndarray:
    a = np.column_stack([2_000.0 * T, 500.0 * T, np.full_like(T, 1_500.0)])
    b = np.column_stack([2_000.0 * T, -500.0 * T, np.full_like(T, -1_500.0)])
    return np.stack([a, b], axis=1)  # (F,2,3)


def _tracks(truth: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return truth + rng.normal(0.0, 200.0, truth.shape)  # 200 m errors


def test_tracks_that_follow_their_truths_have_no_switch():
    truth = _truths()
    r = identity_switches(truth, _tracks(truth), gate_m=10e3, track_ids=np.array([7, 9]))
    assert (r.swaps, r.truth_switches, r.track_switches, r.fragmentations) == (0, 0, 0, 0)
    assert r.contested_frames == 19  # |t| <= 9 s: truths < 10 km apart, both tracks in both gates
    assert np.array_equal(r.assignment, np.tile([0, 1], (len(T), 1)))


def test_tracks_exchanged_at_the_crossing_count_as_swaps():
    truth = _truths()
    est = _tracks(truth)
    after = T > 0
    est[after] = est[after][:, ::-1]  # from t = 1 s, track 0 follows truth 1 and vice versa
    r = identity_switches(truth, est, gate_m=10e3, track_ids=np.array([7, 9]))
    # each truth changes track once, each track changes truth once
    assert (r.truth_switches, r.track_switches, r.fragmentations) == (2, 2, 0)
    assert r.swaps == 4
    f0 = int(np.flatnonzero(after)[0])
    assert sorted(map(tuple, r.truth_events.tolist())) == [(f0, 0, 0, 1), (f0, 1, 1, 0)]
    assert sorted(map(tuple, r.track_events.tolist())) == [(f0, 0, 0, 1), (f0, 1, 1, 0)]


def test_switch_after_a_gap_counts_and_a_re_initiation_does_not():
    truth = _truths()
    est = np.full((len(T), 3, 3), np.nan)
    base = _tracks(truth)
    est[:, 1] = base[:, 1]  # track 1 follows truth 1 throughout
    est[T < 0, 0] = base[T < 0, 0]  # track 0 follows truth 0, then ends at t = 0 ...
    est[T > 10, 2] = base[T > 10, 0]  # ... and a new track 2 picks truth 0 up at t = 11 s
    r = identity_switches(truth, est, gate_m=10e3)
    assert (r.swaps, r.fragmentations) == (0, 1)
    # if track 0 still existed (far away, outside the gate) it would be a swap
    est[T >= 0, 0] = base[T >= 0, 0] + [0.0, 0.0, 50e3]
    r = identity_switches(truth, est, gate_m=10e3)
    assert (r.truth_switches, r.track_switches, r.fragmentations) == (1, 0, 0)


def test_gate_and_ambiguous_frames():
    truth = _truths()[:1]  # one frame, two truths 58 km apart (t = -60 s)
    # two tracks near truth 0 (400 m and 0 m away), none near truth 1
    est = truth[:, :1] + np.array([[[0.0, 0.0, 400.0], [0.0, 0.0, 0.0]]])
    a = assign_frames(truth, est, gate_m=10e3)
    assert a.tolist() == [[1, -1]]  # the closer one wins; the other is not in truth 1's gate
    assert assign_frames(truth, est, gate_m=100.0).tolist() == [[1, -1]]
    assert assign_frames(truth, est[:, :0], gate_m=10e3).tolist() == [[-1, -1]]
