"""End-to-end figures: simulate a seeded scenario, track it, score it.

Run ``python -m tools.threatsim.report [--scenario default|crossing|hundred] [--seed N]
[--max-range-km KM]`` from the repository root (``hundred``: 90 ballistic missiles of
1,000 km to ``--max-range-km`` and 10 glide vehicles, launched over 60 s).  Prints, per
target, the tracks that followed it, the classification at the end of the run and how
it evolved live (confirmation time, class 30 s after confirmation, first time the class
became and stayed right), the mid-course position RMSE against the PCRLB, plus mean
OSPA/GOSPA, identity switches (track swaps) and the tracker-core throughput (detections
per second of processing).

Live classification: after every ``chunk_s`` of ingested data the confirmed
(and coasting) tracks are classified with
:func:`services.threat.classify.classify_track` -- ``classify_history`` over the
track's confirmed and coasting history rows, the same computation as the service's
``ThreatEngine._classify_cpu`` -- at the tracker's processed time.  (The service
itself re-classifies every ``alert_interval_s`` = 10 s of data time, so a client
can see a class up to that much later than measured here.)  A target's class at a
snapshot is the class of the earliest-confirmed of its tracks (tracks labelled
to it by :func:`match_tracks_to_truth`) that is live at that snapshot.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np

from services.threat.classify import Classification, classify_history, classify_track
from services.threat.sensors import visible
from services.threat.tracker import Tracker, TrackerConfig
from services.threat.tracker.lifecycle import held
from tools.threatsim import scenario as sc
from tools.threatsim.evaluation import (
    IdentitySwitches,
    gospa,
    identity_switches,
    match_tracks_to_truth,
    ospa,
    pcrlb_bearing_only,
    rmse,
    track_positions_on_frames,
)


@dataclass
class TargetReport:
    truth_id: int
    kind: str
    track_ids: list[int]
    confirmed: bool
    classification: Classification | None
    midcourse_rmse_m: float
    midcourse_pcrlb_m: float
    midcourse_frames: int
    stereo_rmse_m: float = float("nan")
    stereo_pcrlb_m: float = float("nan")
    stereo_frames: int = 0
    confirmed_s: float = float("nan")
    """First confirmation of any of its tracks (data time, s; NaN: never)."""
    class_at_30s: str | None = None
    """Live class at the first snapshot at or after ``confirmed_s + 30`` (None: no
    live track of this target then)."""
    class_at_30s_snapshot_s: float = float("nan")
    correct_from_s: float = float("nan")
    """First snapshot from which the live class was right at every later snapshot
    where the target had a live track (NaN: wrong at the last one)."""
    class_changes: list[tuple[float, str]] = field(default_factory=list)
    """(snapshot time s, label) whenever the target's live class changed."""
    truth_rule_right_from_s: float = float("nan")
    """The same as ``correct_from_s`` for the classifier applied to the *true*
    trajectory since ``confirmed_s`` with ideal model evidence (ballistic-model
    probability 1 in the simulator's free-flight phase, 0 in boost, glide and
    re-entry): about the earliest the classification rules allow, whatever the tracker."""

    @property
    def correct_at_30s(self) -> bool:
        return self.class_at_30s == self.kind


@dataclass
class EndToEndReport:
    scenario: sc.Scenario
    tracker: Tracker
    targets: list[TargetReport]
    false_tracks: int
    mean_ospa_m: float
    mean_gospa_m: float
    detections: int
    tracker_seconds: float
    switches: IdentitySwitches | None = None
    snapshot_s: float = float("nan")

    @property
    def detections_per_s(self) -> float:
        return self.detections / self.tracker_seconds


def default_e2e_config(seed: int = 11) -> sc.ScenarioConfig:
    """A few ballistic missiles (1,000-2,500 km) + one HGV + false alarms."""
    return sc.random_scenario_config(
        seed, n_ballistic=3, n_glide=1, range_km=(1_000.0, 2_500.0), launch_window_s=60.0,
        duration_s=900.0,
    )


CROSSING_SPECS = (
    # pair 1: velocities ~31 deg apart, 3.00 km apart at the same instant
    # (t ~ 360 s, ~710 km altitude, relative speed ~1.26 km/s: < 10 km apart for ~15 s;
    # only one sensor sees them then)
    sc.BallisticSpec(47.0, 44.0, 70.0, 1_800.0, launch_time_s=10.8, beta_kg_m2=6_000.0),
    sc.BallisticSpec(50.194, 43.848, 104.582, 1_800.0, launch_time_s=10.0, beta_kg_m2=6_000.0),
    # pair 2: velocities ~12 deg apart, 1.97 km apart at the same instant
    # (t ~ 316 s, ~550 km altitude, relative speed ~0.49 km/s: < 10 km apart for ~40 s)
    sc.BallisticSpec(45.0, 48.0, 40.0, 1_500.0, launch_time_s=31.6, beta_kg_m2=5_000.0),
    sc.BallisticSpec(44.421, 49.119, 26.51, 1_500.0, launch_time_s=30.0, beta_kg_m2=5_000.0),
    # pair 3: pair 2's geometry 8 deg further east, the second missile's azimuth and launch
    # time tuned so they pass 34 m apart at t = 367.0 s, on a frame (~550 km altitude,
    # relative speed ~0.40 km/s): inside one another's measurement noise and gates, and
    # unresolved (one detection for both) where a sensor sees them within resolution_urad
    sc.BallisticSpec(45.0, 56.0, 40.0, 1_500.0, launch_time_s=31.6, beta_kg_m2=5_000.0),
    sc.BallisticSpec(44.421, 57.119, 28.947, 1_500.0, launch_time_s=30.85, beta_kg_m2=5_000.0),
)
"""Three pairs of ballistic missiles whose trajectories cross in mid-course.  Pairs 1
and 2 were designed by scanning the second missile's launch azimuth (mirror geometry
about the first one's mid-course point) for the wanted path miss distance, then
shifting its launch time so both reach the crossing together; pair 3 by minimising
(Nelder-Mead) the distance from a 40 m miss at t = 367 s over the second missile's
azimuth and launch time, rounded.  The figures in the comments are from
:func:`closest_approaches` (truth sampled every 0.05 s)."""


def hundred_e2e_config(seed: int = 1, max_range_km: float = 3_000.0) -> sc.ScenarioConfig:
    """100 targets (90 ballistic, 1,000 km to ``max_range_km``; 10 glide vehicles), the
    mix of ``bench/threat.py``, over their whole flights."""
    return sc.random_scenario_config(seed, n_ballistic=90, n_glide=10,
                                     range_km=(1_000.0, max_range_km), launch_window_s=60.0)


def crossing_e2e_config(seed: int = 1) -> sc.ScenarioConfig:
    """Ballistic missiles whose mid-course trajectories cross (see ``CROSSING_SPECS``).

    The geometry is fixed; ``seed`` draws the detections (noise, missed
    detections, false alarms).
    """
    return sc.ScenarioConfig(seed=seed, duration_s=900.0, ballistic=CROSSING_SPECS)


def closest_approaches(scen: sc.Scenario, step_s: float = 0.05) -> list[tuple[int, int, float, float]]:
    """``(i, j, distance_m, time_s)`` of the closest simultaneous approach of every
    pair of targets (truth sampled every ``step_s`` seconds)."""
    t = np.arange(0.0, scen.config.duration_s, step_s)
    pos = scen.truth_states(t)[..., :3]  # (T,N,3)
    out = []
    n = pos.shape[1]
    for i in range(n):  # per pair of targets (few)
        for j in range(i + 1, n):
            d = np.linalg.norm(pos[:, i] - pos[:, j], axis=-1)
            if np.any(np.isfinite(d)):
                k = int(np.nanargmin(d))
                out.append((i, j, float(d[k]), float(t[k])))
    return out


def _live_classes(trk: Tracker, tg: sc.TargetTruth, mine: list[int],
                  snaps: dict[int, dict[float, str]], snap_times: list[float]) -> dict:
    """Confirmation time, class at +30 s, correct-from time and class changes of one target."""
    out: dict = {}
    if not mine:
        return out
    conf = {}
    for i in mine:
        h = trk.history(i)
        c = np.flatnonzero(held(h.status))
        conf[i] = float(h.time_s[c[0]])
    order = sorted(mine, key=lambda i: (conf[i], i))
    t_conf = conf[order[0]]
    times, labels = [], []
    for t in snap_times:  # per snapshot: the earliest-confirmed live track of this target
        lab = next((snaps[i][t] for i in order if t in snaps.get(i, {})), None)
        if lab is not None:
            times.append(t)
            labels.append(lab)
    out["confirmed_s"] = t_conf
    at = [k for k, t in enumerate(snap_times) if t >= t_conf + 30.0]
    if at:
        t30 = snap_times[at[0]]
        out["class_at_30s_snapshot_s"] = t30
        out["class_at_30s"] = next((snaps[i][t30] for i in order if t30 in snaps.get(i, {})), None)
    ok = np.array([lab == tg.kind for lab in labels], bool)
    if ok.size and ok[-1]:
        bad = np.flatnonzero(~ok)
        out["correct_from_s"] = times[int(bad[-1]) + 1] if bad.size else times[0]
    out["class_changes"] = [(t, lab) for k, (t, lab) in enumerate(zip(times, labels, strict=True))
                            if k == 0 or lab != labels[k - 1]]
    # the rules on the true trajectory (1 s samples from confirmation), at the same snapshots
    tt = np.arange(np.ceil(t_conf), tg.time[-1] + 1e-9, 1.0)
    xt = tg.state_at(tt)
    t_ok = [t for t in snap_times if t >= t_conf and np.count_nonzero(tt <= t) >= 2]
    p_bal = (tg.phase_at(tt) == sc.PHASE_MIDCOURSE).astype(float)[:, None]
    ok_t = np.array([classify_history(tt[tt <= t], xt[tt <= t], p_bal[tt <= t], ("ballistic",)).label
                     == tg.kind for t in t_ok], bool)
    if ok_t.size and ok_t[-1]:
        bad = np.flatnonzero(~ok_t)
        out["truth_rule_right_from_s"] = t_ok[int(bad[-1]) + 1] if bad.size else t_ok[0]
    return out


def run_end_to_end(config: sc.ScenarioConfig, chunk_s: float = 5.0,
                   tracker_config: TrackerConfig | None = None,
                   swap_gate_m: float = 10e3) -> EndToEndReport:
    """Simulate, track (ingesting ``chunk_s`` seconds of detections at a time, with a
    live-classification snapshot after each chunk) and score one scenario."""
    scen = sc.simulate(config)
    d = scen.detections
    trk = Tracker(tracker_config)
    elapsed = 0.0
    snaps: dict[int, dict[float, str]] = {}  # track id -> {snapshot time: label}
    snap_times: list[float] = []

    def snapshot() -> None:
        t_now = float(trk.processed_until_s)
        if not np.isfinite(t_now) or (snap_times and snap_times[-1] == t_now):
            return
        snap_times.append(t_now)
        for tid in trk.tracks().track_id:  # confirmed + coasting live tracks
            snaps.setdefault(int(tid), {})[t_now] = classify_track(trk, int(tid)).label

    edges = np.arange(0.0, d.time.max() + chunk_s, chunk_s)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        t0 = time.perf_counter()
        trk.ingest(d.take((d.time >= a) & (d.time < b)))
        elapsed += time.perf_counter() - t0
        snapshot()
    t0 = time.perf_counter()
    trk.flush()
    elapsed += time.perf_counter() - t0
    snapshot()

    ids = trk.history_ids()
    hists = [trk.history(i) for i in ids]
    conf_mask = [np.any(held(h.status)) for h in hists]
    ids = [i for i, c in zip(ids, conf_mask, strict=True) if c]
    hists = [h for h, c in zip(hists, conf_mask, strict=True) if c]
    labels = match_tracks_to_truth([h.time_s for h in hists], [h.state for h in hists],
                                   scen.truth_states, len(scen.targets))
    reports = []
    for tg in scen.targets:
        mine = [i for i, lab in zip(ids, labels, strict=True) if lab == tg.truth_id]
        cls = classify_track(trk, max(mine, key=lambda i: len(trk.history(i).time_s))) if mine else None
        live = _live_classes(trk, tg, mine, snaps, snap_times)
        # mid-course window: free flight, from 60 s after burnout, above 100 km
        frames = scen.frame_times_s
        ph = tg.phase_at(frames)
        mid = ph == sc.PHASE_MIDCOURSE
        r_m = b_m = float("nan")
        n_mid = 0
        if tg.kind == sc.KIND_BALLISTIC and np.any(mid) and mine:
            fi = np.flatnonzero(mid)
            t_bo = frames[fi[0]]
            truth = tg.state_at(frames[fi])
            bound = pcrlb_bearing_only(frames[fi], truth, scen.sensor_positions_ecef_m[fi], config.sensor,
                                       q_m2_s3=trk.imm.models[0].q_m2_s3)
            win = frames[fi] >= t_bo + 60.0
            est = np.full((len(fi), 3), np.nan)
            for i in mine:
                h = trk.history(i)
                sel = held(h.status)
                idx = np.searchsorted(frames[fi], h.time_s[sel])
                ok = (idx < len(fi)) & np.isclose(frames[fi][np.minimum(idx, len(fi) - 1)], h.time_s[sel])
                est[idx[ok]] = h.state[sel][ok, :3]
            err = est - truth[:, :3]
            use = win & np.all(np.isfinite(err), axis=1)
            n_mid = int(use.sum())
            r_m = rmse(err[use])
            b_m = float(np.sqrt(np.mean(bound.position_sigma_m[use] ** 2)))
            n_vis = visible(scen.sensor_positions_ecef_m[fi], truth[:, None, :3], config.sensor).sum(axis=1)
            st = use & (n_vis >= 2)
            s_r = rmse(err[st])
            s_b = float(np.sqrt(np.mean(bound.position_sigma_m[st] ** 2))) if np.any(st) else float("nan")
            reports.append(TargetReport(tg.truth_id, tg.kind, mine, bool(mine), cls, r_m, b_m, n_mid,
                                        s_r, s_b, int(st.sum()), **live))
            continue
        reports.append(TargetReport(tg.truth_id, tg.kind, mine, bool(mine), cls, r_m, b_m, n_mid,
                                    **live))

    # OSPA / GOSPA every 10 s over confirmed tracks
    ospas, gospas = [], []
    for t in scen.frame_times_s[::10]:
        truth = scen.truth_states(np.array([t]))[0]
        tx = truth[np.all(np.isfinite(truth[:, :3]), axis=1), :3]
        est = []
        for h in hists:
            k = np.flatnonzero(np.isclose(h.time_s, t) & (held(h.status)))
            if k.size:
                est.append(h.state[k[0], :3])
        ex = np.array(est).reshape(-1, 3)
        ospas.append(ospa(tx, ex, c=10e3, p=2))
        gospas.append(gospa(tx, ex, c=10e3, p=2).distance)
    false_tracks = int(np.sum(labels < 0))
    frames = scen.frame_times_s
    switches = identity_switches(scen.truth_states(frames)[..., :3],
                                 track_positions_on_frames(frames, hists), swap_gate_m,
                                 track_ids=np.array(ids, np.int64))
    return EndToEndReport(scen, trk, reports, false_tracks, float(np.mean(ospas)), float(np.mean(gospas)),
                          len(d), elapsed, switches, chunk_s)


def _fmt_s(t: float) -> str:
    return f"{t:.0f} s" if np.isfinite(t) else "never"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", choices=("default", "crossing", "hundred"), default="default")
    ap.add_argument("--seed", type=int, default=None,
                    help="scenario seed (default: 11 for default, 1 for crossing and hundred)")
    ap.add_argument("--max-range-km", type=float, default=3_000.0,
                    help="hundred only: the longest ballistic range, km (default 3,000)")
    args = ap.parse_args()
    if args.scenario == "crossing":
        seed = 1 if args.seed is None else args.seed
        rep = run_end_to_end(crossing_e2e_config(seed))
    elif args.scenario == "hundred":
        seed = 1 if args.seed is None else args.seed
        rep = run_end_to_end(hundred_e2e_config(seed, args.max_range_km))
    else:
        seed = 11 if args.seed is None else args.seed
        rep = run_end_to_end(default_e2e_config(seed))
    print(f"{args.scenario} scenario, seed {seed}: {len(rep.scenario.targets)} targets, "
          f"{rep.detections} detections "
          f"({int(np.sum(rep.scenario.detections.truth_id < 0))} false alarms)")
    for r in rep.targets:
        c = r.classification
        cls = f"{c.label} ({c.confidence:.2f}; glide {c.glide_time_s:.0f} s, apogee {c.max_altitude_m / 1e3:.0f} km)" if c else "-"
        line = f"truth {r.truth_id} {r.kind:9s} tracks {r.track_ids} class {cls}"
        if r.kind == sc.KIND_BALLISTIC:
            ratio = r.midcourse_rmse_m / r.midcourse_pcrlb_m
            line += (f" | mid-course RMSE {r.midcourse_rmse_m:.1f} m vs PCRLB {r.midcourse_pcrlb_m:.1f} m"
                     f" (x{ratio:.2f}, {r.midcourse_frames} frames); stereo frames only"
                     f" {r.stereo_rmse_m:.1f} vs {r.stereo_pcrlb_m:.1f} m"
                     f" (x{r.stereo_rmse_m / r.stereo_pcrlb_m:.2f}, {r.stereo_frames} frames)")
        print(line)
        launch = float(rep.scenario.targets[r.truth_id].time[0])
        rel = r.correct_from_s - r.confirmed_s
        changes = ", ".join(f"{lab}@{t:.0f}" for t, lab in r.class_changes) or "-"
        print(f"    live: launched {launch:.0f} s, confirmed {_fmt_s(r.confirmed_s)}; "
              f"class at confirmation + 30 s (snapshot {_fmt_s(r.class_at_30s_snapshot_s)}): "
              f"{r.class_at_30s or '-'} ({'right' if r.correct_at_30s else 'WRONG'}); "
              f"right from {_fmt_s(r.correct_from_s)}"
              + (f" (confirmation + {rel:.0f} s)" if np.isfinite(rel) else "")
              + f"; changes {changes}; rules on the true trajectory right from "
              f"{_fmt_s(r.truth_rule_right_from_s)}")
    correct = sum(1 for r in rep.targets if r.classification and r.classification.label == r.kind)
    n = len(rep.targets)
    at30 = sum(1 for r in rep.targets if r.correct_at_30s)
    print(f"classification {correct}/{n} correct at the end; {at30}/{n} right at confirmation + 30 s "
          f"(live snapshots every {rep.snapshot_s:g} s); "
          f"false (unmatched) confirmed tracks {rep.false_tracks}")
    sw = rep.switches
    if sw is not None:
        print(f"identity switches (10 km gate): {sw.swaps} swaps = {sw.truth_switches} truth-side + "
              f"{sw.track_switches} track-side; {sw.fragmentations} re-initiations (not swaps); "
              f"{sw.contested_frames} contested frames (> 1 candidate inside a gate)")
        frames = rep.scenario.frame_times_s
        for f, n_, a, b in sw.truth_events:
            print(f"    t {frames[f]:.0f} s truth {n_}: track {sw.track_ids[a]} -> {sw.track_ids[b]}")
        for f, k, a, b in sw.track_events:
            print(f"    t {frames[f]:.0f} s track {sw.track_ids[k]}: truth {a} -> {b}")
    for i, j, dist, t in closest_approaches(rep.scenario):
        if dist < 50e3:
            print(f"closest approach truth {i} - truth {j}: {dist / 1e3:.2f} km at {t:.1f} s")
    print(f"mean OSPA {rep.mean_ospa_m:.1f} m, mean GOSPA {rep.mean_gospa_m:.1f} m (c = 10 km, p = 2)")
    print(f"tracker core: {rep.detections} detections in {rep.tracker_seconds:.2f} s = "
          f"{rep.detections_per_s:.0f} detections/s")


if __name__ == "__main__":
    main()
