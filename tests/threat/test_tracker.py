import numpy as np

from services.threat.classify import classify_track
from services.threat.tracker import Tracker, TrackerConfig
from tools.threatsim import scenario as sc


def _small():
    cfg = sc.random_scenario_config(5, n_ballistic=1, n_glide=0, range_km=(1_500, 1_600),
                                    launch_window_s=0.0, duration_s=240.0)
    return sc.simulate(cfg)


def test_out_of_order_within_window_and_refusal():
    scen = _small()
    d = scen.detections
    # deliver in 10 s chunks, each chunk's rows reversed (out of order within the window)
    trk = Tracker(TrackerConfig(reorder_window_s=3.0))
    refused = 0
    for a in np.arange(0, 240, 10):
        chunk = d.take(np.flatnonzero((d.time >= a) & (d.time < a + 10))[::-1])
        refused += len(trk.ingest(chunk).rejected_rows)
    trk.flush()
    assert refused == 0
    t = trk.tracks()
    assert len(t) == 1 and t.status_names() == ["confirmed"]
    # data older than the processed watermark is refused with a reason
    rep = trk.ingest(d.take(np.flatnonzero(d.time < 100)[:5]))
    assert len(rep.rejected_rows) == 5 and rep.accepted == 0
    assert "not after the last processed frame" in rep.reasons[0]


def test_track_survives_sensor_handover_and_is_ballistic():
    scen = _small()
    d = scen.detections
    trk = Tracker()
    trk.ingest(d)
    trk.flush()
    (tid,) = trk.tracks().track_id
    h = trk.history(tid)
    # the one track was updated by several different sensors over its life
    used = {int(s) for s in np.unique(d.sensor_index[d.truth_id == 0])}
    assert len(used) >= 3
    truth = scen.targets[0].state_at(h.time_s)
    ok = np.all(np.isfinite(truth), axis=1) & (h.time_s > 150)
    assert np.median(np.linalg.norm(h.state[ok, :3] - truth[ok, :3], axis=1)) < 100.0
    assert classify_track(trk, tid).label == "ballistic"
