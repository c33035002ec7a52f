"""End-to-end figures: simulate a seeded scenario, track it, score it.

Run ``python -m services.threat.report [--seed N]`` from the repository root.
Prints, per target, the tracks that followed it, the classification, the
mid-course position RMSE against the PCRLB, plus mean OSPA/GOSPA and the
tracker-core throughput (detections per second of processing).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from services.threat import scenario as sc
from services.threat.classify import Classification, classify_track
from services.threat.evaluation import gospa, match_tracks_to_truth, ospa, pcrlb_bearing_only, rmse
from services.threat.sensors import visible
from services.threat.tracker import Tracker, TrackerConfig


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

    @property
    def detections_per_s(self) -> float:
        return self.detections / self.tracker_seconds


def default_e2e_config(seed: int = 11) -> sc.ScenarioConfig:
    """A few ballistic missiles (1,000-2,500 km) + one HGV + false alarms."""
    return sc.random_scenario_config(
        seed, n_ballistic=3, n_glide=1, range_km=(1_000.0, 2_500.0), launch_window_s=60.0,
        duration_s=900.0,
    )


def run_end_to_end(config: sc.ScenarioConfig, chunk_s: float = 10.0,
                   tracker_config: TrackerConfig | None = None) -> EndToEndReport:
    scen = sc.simulate(config)
    d = scen.detections
    trk = Tracker(tracker_config)
    t0 = time.perf_counter()
    edges = np.arange(0.0, d.time.max() + chunk_s, chunk_s)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        trk.ingest(d.take((d.time >= a) & (d.time < b)))
    trk.flush()
    elapsed = time.perf_counter() - t0

    ids = trk.history_ids()
    hists = [trk.history(i) for i in ids]
    conf_mask = [np.any(h.status != 0) for h in hists]
    ids = [i for i, c in zip(ids, conf_mask, strict=True) if c]
    hists = [h for h, c in zip(hists, conf_mask, strict=True) if c]
    labels = match_tracks_to_truth([h.time_s for h in hists], [h.state for h in hists],
                                   scen.truth_states, len(scen.targets))
    reports = []
    for tg in scen.targets:
        mine = [i for i, lab in zip(ids, labels, strict=True) if lab == tg.truth_id]
        cls = classify_track(trk, max(mine, key=lambda i: len(trk.history(i).time_s))) if mine else None
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
                sel = h.status != 0
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
                                        s_r, s_b, int(st.sum())))
            continue
        reports.append(TargetReport(tg.truth_id, tg.kind, mine, bool(mine), cls, r_m, b_m, n_mid))

    # OSPA / GOSPA every 10 s over confirmed tracks
    ospas, gospas = [], []
    for t in scen.frame_times_s[::10]:
        truth = scen.truth_states(np.array([t]))[0]
        tx = truth[np.all(np.isfinite(truth[:, :3]), axis=1), :3]
        est = []
        for h in hists:
            k = np.flatnonzero(np.isclose(h.time_s, t) & (h.status != 0))
            if k.size:
                est.append(h.state[k[0], :3])
        ex = np.array(est).reshape(-1, 3)
        ospas.append(ospa(tx, ex, c=10e3, p=2))
        gospas.append(gospa(tx, ex, c=10e3, p=2).distance)
    false_tracks = int(np.sum(labels < 0))
    return EndToEndReport(scen, trk, reports, false_tracks, float(np.mean(ospas)), float(np.mean(gospas)),
                          len(d), elapsed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    rep = run_end_to_end(default_e2e_config(args.seed))
    print(f"seed {args.seed}: {len(rep.scenario.targets)} targets, {rep.detections} detections "
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
    correct = sum(1 for r in rep.targets if r.classification and r.classification.label == r.kind)
    print(f"classification {correct}/{len(rep.targets)} correct; false (unmatched) confirmed tracks {rep.false_tracks}")
    print(f"mean OSPA {rep.mean_ospa_m:.1f} m, mean GOSPA {rep.mean_gospa_m:.1f} m (c = 10 km, p = 2)")
    print(f"tracker core: {rep.detections} detections in {rep.tracker_seconds:.2f} s = "
          f"{rep.detections_per_s:.0f} detections/s")


if __name__ == "__main__":
    main()
