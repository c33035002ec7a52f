"""Scenario-level checks of two of the issue's evaluation targets:

* "the right class for at least 95 percent of targets within 30 s of confirmation":
  the live classification (snapshots every 5 s while ingesting, see
  ``tools.threatsim.report``) 30 s after each target's first confirmation, over the
  default seeded scenario (seed 11, the shared ``e2e_report``) and the crossing
  scenario (seeds 1 and 2);
* "no track swaps between crossing targets in the seeded scenarios": the
  identity-switch count (``tools.threatsim.evaluation.identity_switches``, 10 km gate)
  in the crossing scenario (three pairs of ballistic missiles whose mid-course paths
  cross 3.0 km, 2.0 km and 34 m apart at the same instant; the 34 m pair inside each
  other's measurement noise, and seen as one unresolved detection by the sensors that
  cannot separate them at that frame).

About 15 s (two simulated and tracked scenarios).
"""

import numpy as np
import pytest

from services.threat import dynamics as dyn
from services.threat.classify import classify_history
from services.threat.tracker.lifecycle import held
from tools.threatsim import report
from tools.threatsim import scenario as sc
from tools.threatsim.evaluation import identity_switches, track_positions_on_frames

CROSSING_SEEDS = (1, 2)


@pytest.fixture(scope="module")
def crossing_reports():
    return {seed: report.run_end_to_end(report.crossing_e2e_config(seed)) for seed in CROSSING_SEEDS}


def _confirmed_histories(rep):
    ids = [i for i in rep.tracker.history_ids() if np.any(held(rep.tracker.history(i).status))]
    return ids, [rep.tracker.history(i) for i in ids]


def test_crossing_geometry(crossing_reports):
    rep = crossing_reports[CROSSING_SEEDS[0]]
    close = {(i, j): (d, t) for i, j, d, t in report.closest_approaches(rep.scenario)}
    for pair, (lo, hi) in {(0, 1): (2.5e3, 3.5e3), (2, 3): (1.5e3, 2.5e3),
                           (4, 5): (20.0, 50.0)}.items():
        d, t = close[pair]
        assert lo < d < hi, (pair, d)
        for k in pair:  # both in free flight at the crossing
            assert rep.scenario.targets[k].phase_at(np.array([t]))[0] == sc.PHASE_MIDCOURSE
    # the pairs are far from each other
    assert min(d for (i, j), (d, _) in close.items() if i // 2 != j // 2) > 50e3
    # pair 3 crosses on a frame, where sensors cannot resolve the two missiles
    scen = rep.scenario
    d = scen.detections
    t3 = close[(4, 5)][1]
    assert np.any((scen.sources > 1) & np.isclose(d.time, t3))
    assert np.all(scen.sources[d.truth_id < 0] == 0) and np.all(scen.sources[d.truth_id >= 0] >= 1)


def test_no_track_swaps_between_crossing_targets(crossing_reports):
    for seed, rep in crossing_reports.items():
        sw = rep.switches
        assert sw.contested_frames > 10, seed  # both tracks were inside both gates
        assert sw.swaps == 0, (seed, sw.truth_events, sw.track_events)
        for r in rep.targets:
            assert len(r.track_ids) == 1, (seed, r)  # one unbroken track per missile
        assert rep.false_tracks == 0


def test_swap_metric_would_see_an_exchange_at_the_crossing(crossing_reports):
    """Exchange the two tracks of pair 2 after its closest approach: 4 switches."""
    rep = crossing_reports[CROSSING_SEEDS[0]]
    ids, hists = _confirmed_histories(rep)
    frames = rep.scenario.frame_times_s
    est = track_positions_on_frames(frames, hists)
    truth = rep.scenario.truth_states(frames)[..., :3]
    cols = [ids.index(rep.targets[k].track_ids[0]) for k in (2, 3)]
    t_cross = {(i, j): t for i, j, _, t in report.closest_approaches(rep.scenario)}[(2, 3)]
    after = frames > t_cross
    est[np.ix_(after, cols)] = est[np.ix_(after, cols[::-1])]
    sw = identity_switches(truth, est, 10e3, np.array(ids))
    assert (sw.truth_switches, sw.track_switches) == (2, 2)


def test_live_class_snapshots_replay_from_history(e2e_report):
    """The class recorded live at the +30 s snapshot is what the classifier gives on the
    track's history up to that time (the history is append-only)."""
    trk = e2e_report.tracker
    for r in e2e_report.targets:
        assert r.confirmed_s + 30.0 <= r.class_at_30s_snapshot_s < r.confirmed_s + 30.0 + 5.0, r
        track = min(r.track_ids, key=lambda i: trk.history(i).time_s[held(trk.history(i).status)][0])
        h = trk.history(track)
        keep = held(h.status) & (h.time_s <= r.class_at_30s_snapshot_s)
        c = classify_history(h.time_s[keep], h.state[keep], h.model_probability[keep],
                             trk.imm.model_names)
        assert c.label == r.class_at_30s, r


def test_class_becomes_and_stays_right(e2e_report, crossing_reports):
    """Measured today (not an issue target): every target's live class ends right."""
    for rep in (e2e_report, *crossing_reports.values()):
        for r in rep.targets:
            assert np.isfinite(r.correct_from_s), r
            assert r.class_changes[-1][1] == r.kind, r


def test_class_right_30s_after_confirmation(e2e_report, crossing_reports):
    targets = [r for rep in (e2e_report, *crossing_reports.values()) for r in rep.targets]
    right = sum(r.correct_at_30s for r in targets)
    assert right >= 0.95 * len(targets), [(r.kind, r.class_at_30s) for r in targets]


def test_the_ascent_gives_a_tentative_label_only_when_it_is_clear():
    """The boost evidence of services.threat.classify on hand-made ascents (1 Hz rows)."""
    from services.threat.classify import BALLISTIC, HGV, ClassifierConfig, _boost_label

    cfg = ClassifierConfig()
    t = np.arange(40.0)
    dt = np.r_[np.diff(t), 0.0]
    alt = 1e3 + 400.0 * t  # 1 km to 16.6 km
    assert _boost_label(alt, np.full(40, 80.0), dt, cfg) == BALLISTIC
    assert _boost_label(alt, np.full(40, 30.0), dt, cfg) == HGV
    assert _boost_label(alt, np.full(40, 57.0), dt, cfg) is None  # in between: undecided
    # Too little ascent inside the band yet (5 rows above 3 km): undecided.
    assert _boost_label(alt[:10], np.full(10, 80.0), dt[:10], cfg) is None
    # Rows after the track first left the band (a re-entry at 30 km, diving) do not count.
    alt2 = np.r_[np.linspace(1e3, 70e3, 20), np.linspace(70e3, 20e3, 20)]
    gamma2 = np.r_[np.full(20, 80.0), np.full(20, -40.0)]
    assert _boost_label(alt2, gamma2, dt, cfg) == BALLISTIC


def test_level_hypersonic_flight_below_the_ballistic_apogee_reads_hgv():
    """A track first seen after the boost, on the simulator's truth at 1 Hz, with the IMM
    calling it ballistic throughout: a glide vehicle seen from its post-boost arc or its
    glide reads hgv after 6 s of level flight; a ballistic missile seen from its re-entry
    (steep) or from near its apogee (high) never does."""
    from services.threat.classify import BALLISTIC, HGV, UNKNOWN

    cfg = sc.random_scenario_config(7, n_ballistic=2, n_glide=1, range_km=(1_500, 3_000))
    *missiles, glider = sc.simulate_targets(list(cfg.ballistic), list(cfg.glide))
    names = ("ballistic", "manoeuvre", "boost")
    only_ballistic = np.tile([1.0, 0.0, 0.0], (8, 1))

    def label(target, start_s, rows=8):
        t = start_s + np.arange(rows, dtype=float)
        return classify_history(t, target.state_at(t), only_ballistic[:rows], names).label

    for phase in (sc.PHASE_MIDCOURSE, sc.PHASE_GLIDE):  # the post-boost arc, the glide
        start = glider.time[np.flatnonzero(glider.phase == phase)[5]]
        assert label(glider, start, rows=5) == UNKNOWN  # 4 s of rows: not yet
        assert label(glider, start) == HGV
    for bm in missiles:
        t = bm.time
        alt = dyn.altitude_m(bm.state[:, :3])
        falling = np.flatnonzero((alt < 90e3) & (np.arange(len(t)) > np.argmax(alt)))[0]
        assert label(bm, t[falling]) == UNKNOWN  # re-entering at 25-90 km
        assert label(bm, t[np.argmax(alt)] - 4.0) == BALLISTIC  # apogee well above 150 km


@pytest.mark.parametrize("seed", [13, 17])
def test_ballistic_tracks_follow_the_reentry_to_the_ground(seed):
    """Birth to death: in these default scenarios a track used to lose its missile 3-5 s
    before impact (10-30 g of drag below ~20 km) and a new track took it over; with the
    IMM's terminal-phase switching one track follows each missile to the ground."""
    rep = report.run_end_to_end(report.default_e2e_config(seed))
    assert rep.switches.swaps == 0
    duration = rep.scenario.config.duration_s
    landed = [r for r in rep.targets if r.kind == sc.KIND_BALLISTIC
              and rep.scenario.targets[r.truth_id].impact_time_s < duration]
    assert landed
    for r in landed:
        tg = rep.scenario.targets[r.truth_id]
        assert len(r.track_ids) == 1, r
        h = rep.tracker.history(r.track_ids[0])
        keep = held(h.status)
        t = h.time_s[keep]
        assert t[-1] >= tg.impact_time_s - 1.0  # followed to the last frame before impact
        late = t > tg.impact_time_s - 30.0
        err = np.linalg.norm(h.state[keep][late, :3] - tg.state_at(t[late])[:, :3], axis=1)
        assert np.nanmax(err) < 500.0


@pytest.mark.parametrize("seed", [14, 15])
def test_custody_through_coverage_gaps_and_midcourse_rmse_against_the_bound(seed):
    """In these default scenarios a missile leaves the 4-satellite train's coverage for
    minutes in mid-course.  Its track coasts through the gap and is re-acquired (one
    track per target), and the mid-course RMSE stays within 1.5 times the PCRLB, over
    all mid-course frames and over the frames two sensors see."""
    rep = report.run_end_to_end(report.default_e2e_config(seed))
    assert rep.switches.swaps == 0 and rep.switches.fragmentations == 0
    for r in rep.targets:
        assert len(r.track_ids) == 1, r
        if r.kind == sc.KIND_BALLISTIC:
            assert r.midcourse_rmse_m <= 1.5 * r.midcourse_pcrlb_m, r
            assert r.stereo_rmse_m <= 1.5 * r.stereo_pcrlb_m, r
