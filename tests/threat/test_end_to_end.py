"""Seeded scenario: 3 ballistic missiles + 1 glide vehicle + false alarms."""

import numpy as np


def test_every_target_confirmed_once_and_no_false_tracks(e2e_report):
    for r in e2e_report.targets:
        assert r.confirmed, r
        assert len(r.track_ids) == 1, r  # custody kept: one unbroken track per target
    assert e2e_report.false_tracks == 0
    assert np.sum(e2e_report.scenario.detections.truth_id < 0) > 1000  # false alarms were present


def test_classification(e2e_report):
    for r in e2e_report.targets:
        assert r.classification.label == r.kind
        assert r.classification.confidence >= 0.8


def test_midcourse_rmse_against_pcrlb(e2e_report):
    for r in e2e_report.targets:
        if r.kind != "ballistic":
            continue
        assert r.stereo_frames > 100
        assert r.stereo_rmse_m <= 1.5 * r.stereo_pcrlb_m, r
        # all mid-course frames include single-sensor arcs and re-acquisition after
        # coverage gaps, where the IMM's manoeuvre model inflates the error (see report)
        assert r.midcourse_rmse_m < 500.0
