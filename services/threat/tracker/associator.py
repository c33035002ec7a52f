"""Global nearest neighbour (GNN) association for one sensor scan.

The cost of pairing track ``k`` with detection ``n`` is the negative log
likelihood up to a constant, ``d2 + log det S``; pairs outside the gate are
forbidden.  ``scipy.optimize.linear_sum_assignment`` solves the (rectangular)
assignment once per scan, so each track receives at most one detection and
each detection feeds at most one track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from services.threat.tracker.gating import GateResult

_FORBIDDEN = 1e12


@dataclass(frozen=True)
class Assignment:
    track_index: np.ndarray  # (A,) rows of the gated track arrays
    detection_index: np.ndarray  # (A,) rows of the scan
    unassigned_detections: np.ndarray  # (U,)
    unassigned_tracks: np.ndarray


@dataclass(frozen=True)
class GNNAssociator:
    """GNN with ``cost = d2 + log det S`` (``use_log_det=False``: ``d2`` only)."""

    use_log_det: bool = True

    def __call__(self, gate: GateResult) -> Assignment:
        k, n = gate.d2.shape
        if k == 0 or n == 0 or not np.any(gate.inside):
            return Assignment(np.zeros(0, int), np.zeros(0, int), np.arange(n), np.arange(k))
        cost = gate.d2 + (gate.log_det_s - gate.log_det_s.min() if self.use_log_det else 0.0)
        cost = np.where(gate.inside, cost, _FORBIDDEN)
        rows, cols = linear_sum_assignment(cost)
        ok = gate.inside[rows, cols]
        rows, cols = rows[ok], cols[ok]
        un_d = np.setdiff1d(np.arange(n), cols)
        un_t = np.setdiff1d(np.arange(k), rows)
        return Assignment(rows, cols, un_d, un_t)
