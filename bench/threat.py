"""Threat tracker benchmark: one seeded scenario, 100 targets (90 ballistic, 10 glide) and
false alarms, seen by the 4-satellite sensor train.

Part 1, tracker core: our tracker (triangulation initiator, Mahalanobis gate, GNN, IMM EKF
on a J2 ballistic model) on every detection, detections per second of processing.

Part 2, the reference in the same run: Stone Soup 1.9.1 (install the benchmark extra,
`pip install -r requirements-bench.in`) with the closest parts it has: an unscented Kalman
filter (`UnscentedKalmanPredictor`/`UnscentedKalmanUpdater`), a nearly-constant-velocity
motion model in ECEF (it has no ballistic/J2 model; q = 100 m^2/s^3, the gravity it lacks
being ~10 m/s^2), a bearing-only measurement model per detection
(`CartesianToElevationBearing` about the sensor's position, ECEF axes) and global nearest
neighbour (`DistanceHypothesiser` with Mahalanobis distance, `GNNWith2DAssignment`), one scan
per sensor and frame. Stone Soup has no multi-sensor bearing-only initiator, so its tracks
start from the truth (plus 1 km / 100 m/s errors) at the start of its window. It is far too
slow for the whole scenario, so it runs on a window of `--reference-seconds` (default 10 s)
of the same detections; throughput is detections per second on that window, and both RMSEs
(3-D position, every confirmed track matched to a truth target, over that same window).

Part 3, detections per second through the gRPC ingest into the tracker: a threat server on
loopback (SQLite in a temporary directory; sensor positions from the simulator's orbits in
place of the orbit service), client and server in this one process, 10-second batches
(`le_bytes` columns) in one IngestDetections stream.

Run from the repo root: `.venv/bin/python bench/threat.py` (the reference needs the
benchmark extra; without it the script says so and exits 0). The last line printed is one
JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "shared" / "gen") not in sys.path:  # a separate benchmark venv has no .pth
    sys.path.append(str(ROOT / "shared" / "gen"))

import numpy as np  # noqa: E402

from services.threat import scenario as sc  # noqa: E402
from services.threat.evaluation import match_tracks_to_truth, rmse  # noqa: E402
from services.threat.tracker import Tracker  # noqa: E402


def make_scenario(seed: int, duration_s: float) -> sc.Scenario:
    cfg = sc.random_scenario_config(seed, n_ballistic=90, n_glide=10, range_km=(1_000, 3_000),
                                    launch_window_s=60.0, duration_s=duration_s)
    return sc.simulate(cfg)


def run_ours(scen: sc.Scenario) -> tuple[Tracker, float]:
    d = scen.detections
    trk = Tracker()
    started = time.perf_counter()
    for a in np.arange(0.0, float(d.time.max()) + 10.0, 10.0):
        trk.ingest(d.take((d.time >= a) & (d.time < a + 10.0)))
    trk.flush()
    return trk, time.perf_counter() - started


def ours_rmse(scen: sc.Scenario, trk: Tracker, t0: float, t1: float) -> tuple[float, int]:
    ids = [i for i in trk.history_ids() if np.any(trk.history(i).status != 0)]
    hists = [trk.history(i) for i in ids]
    labels = match_tracks_to_truth([h.time_s for h in hists], [h.state for h in hists],
                                   scen.truth_states, len(scen.targets))
    errors = []
    for h, label in zip(hists, labels, strict=True):  # per confirmed track
        if label < 0:
            continue
        sel = (h.status != 0) & (h.time_s >= t0) & (h.time_s <= t1)
        truth = scen.targets[label].state_at(h.time_s[sel])
        errors.append(h.state[sel, :3] - truth[:, :3])
    e = np.concatenate(errors) if errors else np.zeros((0, 3))
    return rmse(e), int(np.sum(np.all(np.isfinite(e), axis=1)))


def run_stonesoup(scen: sc.Scenario, t0: float, t1: float, seed: int = 1):
    from datetime import timedelta

    from stonesoup.dataassociator.neighbour import GNNWith2DAssignment
    from stonesoup.hypothesiser.distance import DistanceHypothesiser
    from stonesoup.measures import Mahalanobis
    from stonesoup.models.measurement.nonlinear import CartesianToElevationBearing
    from stonesoup.models.transition.linear import (
        CombinedLinearGaussianTransitionModel,
        ConstantVelocity,
    )
    from stonesoup.predictor.kalman import UnscentedKalmanPredictor
    from stonesoup.types.detection import Detection
    from stonesoup.types.state import GaussianState
    from stonesoup.types.track import Track
    from stonesoup.updater.kalman import UnscentedKalmanUpdater

    rng = np.random.default_rng(seed)
    d = scen.detections
    sel = (d.time >= t0) & (d.time < t1)
    dets = d.take(sel)
    epoch = scen.epoch
    transition = CombinedLinearGaussianTransitionModel([ConstantVelocity(100.0)] * 3)
    predictor = UnscentedKalmanPredictor(transition)
    updater = UnscentedKalmanUpdater(measurement_model=None)
    hypothesiser = DistanceHypothesiser(predictor, updater, measure=Mahalanobis(),
                                        missed_distance=np.sqrt(18.4))
    associator = GNNWith2DAssignment(hypothesiser)

    truth0 = scen.truth_states(np.array([t0]))[0]  # (targets, 6) [x y z vx vy vz]
    tracks = set()
    owner = {}
    for i, state in enumerate(truth0):
        if not np.all(np.isfinite(state)):
            continue
        x = state.copy()
        x[:3] += rng.normal(0, 1_000.0, 3)
        x[3:] += rng.normal(0, 100.0, 3)
        ss = np.array([x[0], x[3], x[1], x[4], x[2], x[5]])  # Stone Soup order
        cov = np.diag([1e6, 1e4] * 3)
        track = Track([GaussianState(ss.reshape(-1, 1), cov,
                                     timestamp=epoch + timedelta(seconds=t0))])
        tracks.add(track)
        owner[track] = i
    el = np.arcsin(np.clip(dets.los_unit_ecef[:, 2], -1, 1))
    az = np.arctan2(dets.los_unit_ecef[:, 1], dets.los_unit_ecef[:, 0])
    started = time.perf_counter()
    keys = np.stack([dets.time, dets.sensor_index], axis=1)
    scans = np.unique(keys, axis=0)
    for t, s in scans:  # one scan per sensor and frame
        rows = np.flatnonzero((dets.time == t) & (dets.sensor_index == s))
        when = epoch + timedelta(seconds=float(t))
        detections = set()
        for r in rows:  # Stone Soup's objects: one per detection
            sigma = dets.noise_rad[r]
            model = CartesianToElevationBearing(
                ndim_state=6, mapping=(0, 2, 4),
                noise_covar=np.diag([sigma**2, (sigma / max(np.cos(el[r]), 1e-3)) ** 2]),
                translation_offset=dets.sensor_position_ecef_m[r].reshape(-1, 1))
            detections.add(Detection(np.array([[el[r]], [az[r]]]), timestamp=when,
                                     measurement_model=model))
        hypotheses = associator.associate(tracks, detections, when)
        for track in tracks:
            hypothesis = hypotheses[track]
            if hypothesis.measurement:
                track.append(updater.update(hypothesis))
            else:
                track.append(hypothesis.prediction)
    elapsed = time.perf_counter() - started
    errors = []
    for track in tracks:  # per track: its states in the window
        times = np.array([(st.timestamp - epoch).total_seconds() for st in track.states[1:]])
        if times.size == 0:
            continue
        est = np.array([np.asarray(st.state_vector, float).ravel()[[0, 2, 4]]
                        for st in track.states[1:]])
        truth = scen.targets[owner[track]].state_at(times)[:, :3]
        errors.append(est - truth)
    e = np.concatenate(errors) if errors else np.zeros((0, 3))
    return len(dets), elapsed, rmse(e), int(np.sum(np.all(np.isfinite(e), axis=1)))


async def grpc_ingest(scen: sc.Scenario, batch_s: float = 10.0) -> dict:
    import grpc
    from skybridge.threat.v1 import threat_pb2_grpc

    from services.threat.client import batch_request, chunked
    from services.threat.ephemeris import EphemerisGrid, SensorEphemeris
    from services.threat.server import build
    from services.threat.settings import TRACKER_EPOCH, ThreatSettings
    from shared.auth import TokenMinter, ensure_dev_keys
    from shared.config import Settings

    class Orbits(SensorEphemeris):
        def __init__(self, constellation):
            super().__init__(TRACKER_EPOCH, constellation.n_sats)
            self.constellation = constellation

        async def fetch_grid(self, start_s, step_s, count):
            t = start_s + step_s * np.arange(count)
            c = self.constellation
            return EphemerisGrid(start_s, step_s, c.positions_ecef(t),
                                 c.positions_ecef(t + 0.5) - c.positions_ecef(t - 0.5))

    tmp = Path(tempfile.mkdtemp(prefix="threat-bench-"))
    ensure_dev_keys(tmp / "jwt.pem", tmp / "jwt.pub.pem")
    settings = Settings(jwt_private_key_path=tmp / "jwt.pem",
                        jwt_public_key_path=tmp / "jwt.pub.pem", dev_keys=False,
                        database_url=f"sqlite+aiosqlite:///{tmp / 'skybridge.db'}",
                        log_format="text", log_level="WARNING")
    kit = await build(settings, port=0, threat_settings=replace(ThreatSettings()),
                      ephemeris=Orbits(scen.constellation))
    await kit.server.start()
    await kit.server.become_ready()
    minter = TokenMinter((tmp / "jwt.pem").read_bytes(), issuer=settings.jwt_issuer,
                         audience=settings.jwt_audience)
    metadata = (("authorization", f"Bearer {minter.mint('bench', ['defense'], 'bench')}"),)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    stub = threat_pb2_grpc.ThreatServiceStub(channel)
    d = scen.detections

    async def requests():
        for part in chunked(d, batch_s):
            yield batch_request(part)

    started = time.perf_counter()
    answer = await stub.IngestDetections(requests(), metadata=metadata)
    elapsed = time.perf_counter() - started
    await channel.close()
    await kit.server.drain(0)
    return {"grpc_ingest_detections": int(answer.accepted_detections),
            "grpc_ingest_seconds": round(elapsed, 3),
            "grpc_ingest_detections_per_s": round(answer.accepted_detections / elapsed, 1),
            "grpc_ingest_batch_s": batch_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--reference-start", type=float, default=240.0)
    parser.add_argument("--reference-seconds", type=float, default=10.0)
    args = parser.parse_args()
    try:
        import stonesoup  # noqa: F401
        have_reference = True
    except ImportError:
        have_reference = False
        print("Stone Soup is not installed: the reference comparison needs the benchmark "
              "extra (pip install -r requirements-bench.in); nothing to compare, exiting.")
        sys.exit(0)

    scen = make_scenario(args.seed, args.duration)
    d = scen.detections
    n_false = int(np.sum(d.truth_id < 0))
    print(f"scenario seed {args.seed}: {len(scen.targets)} targets, {len(d)} detections "
          f"({n_false} false alarms), {args.duration:g} s")
    trk, ours_s = run_ours(scen)
    t0 = args.reference_start
    t1 = t0 + args.reference_seconds
    ours_window_rmse, ours_points = ours_rmse(scen, trk, t0, t1)
    figures = {
        "targets": len(scen.targets), "detections": len(d), "false_alarms": n_false,
        "ours_detections_per_s": round(len(d) / ours_s, 1), "ours_seconds": round(ours_s, 3),
        "ours_confirmed_tracks": trk.n_confirmed,
        "window_s": [t0, t1], "ours_rmse_m": round(ours_window_rmse, 1),
        "ours_rmse_points": ours_points,
    }
    print(f"ours: {len(d)} detections in {ours_s:.2f} s = {len(d) / ours_s:.0f}/s; "
          f"RMSE {ours_window_rmse:.1f} m over [{t0:g}, {t1:g}) s ({ours_points} estimates)")
    if have_reference:
        n_ref, ref_s, ref_rmse, ref_points = run_stonesoup(scen, t0, t1)
        ratio = (len(d) / ours_s) / (n_ref / ref_s)
        figures.update({
            "stonesoup_detections": n_ref, "stonesoup_seconds": round(ref_s, 3),
            "stonesoup_detections_per_s": round(n_ref / ref_s, 1),
            "stonesoup_rmse_m": round(ref_rmse, 1), "stonesoup_rmse_points": ref_points,
            "throughput_ratio": round(ratio, 1),
        })
        print(f"Stone Soup: {n_ref} detections in {ref_s:.2f} s = {n_ref / ref_s:.0f}/s; "
              f"RMSE {ref_rmse:.1f} m ({ref_points} estimates); ours/Stone Soup "
              f"throughput x{ratio:.0f}")
    figures.update(asyncio.run(grpc_ingest(scen)))
    print(f"gRPC ingest: {figures['grpc_ingest_detections_per_s']:.0f} detections/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
