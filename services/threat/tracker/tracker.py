"""The multi-sensor bearing-only tracker: composition of the small parts.

Input: :class:`services.threat.detections.Detections` batches (ECEF metres,
seconds from an epoch).  Output: a columnar :class:`TrackTable` of current
tracks (ECEF state and covariance, IMM model probabilities, status) and per
track histories.

Processing
----------
Detections are grouped into *frames* (same time within ``frame_tolerance_s``)
and, inside a frame, *scans* (one sensor).  For each frame:

1. every live track's IMM is mixed and predicted to the frame time;
2. for each scan: all track x detection pairs are gated at once
   (:class:`MahalanobisGate`), then GNN assignment
   (:class:`GNNAssociator`) and the IMM/EKF update of the assigned tracks.
   Tracks are not tied to a sensor: any sensor updates any track, so custody
   passes between sensors without breaking tracks;
3. the life cycle advances (M-of-N confirmation, coasting, dropping);
4. leftover detections are triangulated across sensors into new tentative
   tracks (:class:`TriangulationInitiator`);
5. duplicate tracks (6-D Mahalanobis distance below ``duplicate_chi2``) are
   merged, keeping the older / confirmed one.

Out-of-order data
-----------------
Incoming detections wait in a re-order buffer and a frame is processed only
once the newest time seen is more than ``reorder_window_s`` later, so data
arriving up to that much late is sorted into place.  Detections at or before
the last processed frame time are refused, each with a reason (see
:class:`IngestReport`).  :meth:`Tracker.flush` processes the whole buffer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from services.threat import dynamics as dyn
from services.threat.detections import Detections
from services.threat.tracker.associator import GNNAssociator
from services.threat.tracker.gating import MahalanobisGate
from services.threat.tracker.imm import IMM
from services.threat.tracker.initiator import TriangulationInitiator
from services.threat.tracker.lifecycle import (
    CONFIRMED,
    DROPPED,
    STATUS_NAMES,
    TENTATIVE,
    LifecycleConfig,
    update_lifecycle,
)


@dataclass(frozen=True)
class TrackerConfig:
    reorder_window_s: float = 2.0
    frame_tolerance_s: float = 1e-3
    duplicate_chi2: float = 16.8  # 6 DOF, ~99%
    gate: MahalanobisGate = field(default_factory=MahalanobisGate)
    associator: GNNAssociator = field(default_factory=GNNAssociator)
    initiator: TriangulationInitiator = field(default_factory=TriangulationInitiator)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    imm: IMM = field(default_factory=IMM)
    keep_history: bool = True
    history_limit: int | None = None
    """Keep at most this many history rows per track (oldest dropped); None: all."""


@dataclass(frozen=True)
class IngestReport:
    accepted: int
    rejected_rows: np.ndarray  # rows of the ingested batch that were refused
    reasons: tuple[str, ...]  # one per rejected row
    frames_processed: int


@dataclass(frozen=True)
class TrackTable:
    """Columnar snapshot of tracks (ECEF m, m/s; times in s from ``epoch``)."""

    track_id: np.ndarray  # (K,) int64
    status: np.ndarray  # (K,) int8, see lifecycle.STATUS_NAMES
    time_s: np.ndarray  # (K,) time of the estimate
    state: np.ndarray  # (K,6)
    covariance: np.ndarray  # (K,6,6)
    model_probability: np.ndarray  # (K,M)
    model_names: tuple[str, ...]
    n_hits: np.ndarray  # (K,)
    created_s: np.ndarray
    last_hit_s: np.ndarray
    epoch: datetime | None

    def __len__(self) -> int:
        return int(self.track_id.shape[0])

    def status_names(self) -> list[str]:
        return [STATUS_NAMES[s] for s in self.status]


@dataclass(frozen=True)
class TrackerState:
    """Everything needed to resume a tracker (per-model IMM states included).

    Rows are the live (not dropped) tracks.  The re-order buffer and the initiator's
    pending leftovers are not part of it: a service replays its stored detections that
    are later than ``processed_until_s`` into the restored tracker.
    """

    epoch: datetime | None
    next_id: int
    processed_until_s: float
    latest_seen_s: float
    detections_processed: int
    track_id: np.ndarray  # (K,) int64
    status: np.ndarray  # (K,) int8
    time_s: np.ndarray  # (K,)
    x: np.ndarray  # (K,M,6)
    P: np.ndarray  # (K,M,6,6)
    mu: np.ndarray  # (K,M)
    hit_bits: np.ndarray  # (K,) uint64
    n_opportunities: np.ndarray  # (K,) int64
    n_hits: np.ndarray  # (K,) int64
    created_s: np.ndarray
    last_hit_s: np.ndarray


@dataclass(frozen=True)
class TrackHistory:
    """Per-frame estimates of one track (one row per processed frame)."""

    track_id: int
    time_s: np.ndarray  # (T,)
    state: np.ndarray  # (T,6)
    position_covariance: np.ndarray  # (T,3,3)
    model_probability: np.ndarray  # (T,M)
    hit: np.ndarray  # (T,) bool: updated at that frame
    status: np.ndarray  # (T,) int8


class Tracker:
    """Stateful tracker.  Not thread-safe: callers serialise access."""

    def __init__(self, config: TrackerConfig | None = None, epoch: datetime | None = None) -> None:
        self.config = config or TrackerConfig()
        self.imm = self.config.imm
        m = self.imm.n_models
        self.epoch = epoch
        self._next_id = 1
        self._id = np.zeros(0, np.int64)
        self._status = np.zeros(0, np.int8)
        self._t = np.zeros(0)
        self._x = np.zeros((0, m, 6))
        self._P = np.zeros((0, m, 6, 6))
        self._mu = np.zeros((0, m))
        self._bits = np.zeros(0, np.uint64)
        self._nopp = np.zeros(0, np.int64)
        self._nhits = np.zeros(0, np.int64)
        self._created = np.zeros(0)
        self._last_hit = np.zeros(0)
        self._buffer: Detections | None = None
        self._pending: Detections | None = None
        self._latest_seen = -np.inf
        self.processed_until_s = -np.inf
        self._hist: dict[int, list[tuple]] = {}
        self.detections_processed = 0

    # ------------------------------------------------------------------ ingest
    def ingest(self, dets: Detections) -> IngestReport:
        """Buffer a batch, refuse data older than the processed time, and
        process every frame that has left the re-order window."""
        if self.epoch is None:
            self.epoch = dets.epoch
        if dets.epoch != self.epoch:
            dets = dets.rebased(self.epoch)
        late = dets.time <= self.processed_until_s + self.config.frame_tolerance_s
        rejected = np.flatnonzero(late)
        reasons = tuple(
            f"detection time {dets.time[r]:.3f} s is not after the last processed frame "
            f"{self.processed_until_s:.3f} s (re-order window {self.config.reorder_window_s} s)"
            for r in rejected
        )
        ok = dets.take(~late)
        if len(ok):
            self._buffer = ok if self._buffer is None else Detections.concat([self._buffer, ok])
            self._latest_seen = max(self._latest_seen, float(ok.time.max()))
        n = self._process_until(self._latest_seen - self.config.reorder_window_s)
        return IngestReport(len(ok), rejected, reasons, n)

    def flush(self) -> int:
        """Process everything still buffered; returns the number of frames."""
        return self._process_until(np.inf)

    def _process_until(self, t_limit: float) -> int:
        if self._buffer is None or len(self._buffer) == 0:
            return 0
        buf = self._buffer.sorted()
        ready = buf.time <= t_limit
        if not np.any(ready):
            self._buffer = buf
            return 0
        todo = buf.take(ready)
        self._buffer = buf.take(~ready)
        # frame boundaries: gaps larger than the tolerance
        t = todo.time
        starts = np.flatnonzero(np.r_[True, np.diff(t) > self.config.frame_tolerance_s])
        ends = np.r_[starts[1:], len(t)]
        for a, b in zip(starts, ends, strict=True):  # loop over frames (time steps)
            frame = todo.take(slice(a, b))
            self._process_frame(float(frame.time.max()), frame)
        return len(starts)

    # ------------------------------------------------------------------ core
    def _process_frame(self, t: float, frame: Detections) -> None:
        cfg = self.config
        self.detections_processed += len(frame)
        k = self._id.shape[0]
        if k:
            self._x, self._P, self._mu = self.imm.predict(self._x, self._P, self._mu, t - self._t)
            self._t[:] = t
        hit = np.zeros(k, bool)
        leftovers = []
        sensors = np.unique(frame.sensor_index)
        for s in sensors:  # one scan per sensor in the frame
            rows = np.flatnonzero(frame.sensor_index == s)
            if k == 0:
                leftovers.append(rows)
                continue
            xc, Pc = self.imm.combine(self._x, self._P, self._mu)
            live = self._status != DROPPED
            g = cfg.gate(
                xc, Pc, frame.sensor_position_ecef_m[rows], frame.los_unit_ecef[rows], frame.noise_rad[rows]
            )
            g.inside[~live] = False
            a = cfg.associator(g)
            if a.track_index.size:
                ti, di = a.track_index, rows[a.detection_index]
                self._x[ti], self._P[ti], self._mu[ti] = self.imm.update(
                    self._x[ti], self._P[ti], self._mu[ti],
                    frame.sensor_position_ecef_m[di], frame.los_unit_ecef[di], frame.noise_rad[di],
                )
                hit[ti] = True
            leftovers.append(rows[a.unassigned_detections])

        if k:
            xc, Pc = self.imm.combine(self._x, self._P, self._mu)
            self._last_hit[hit] = t
            self._nhits[hit] += 1
            upd = update_lifecycle(
                self._status, self._bits, self._nopp, hit, t, self._last_hit,
                np.sqrt(np.trace(Pc[:, :3, :3], axis1=1, axis2=2)), dyn.altitude_m(xc[:, :3]),
                cfg.lifecycle,
            )
            self._status, self._bits, self._nopp = upd.status, upd.hit_bits, upd.n_opportunities
            self._record(t, xc, Pc, hit)

        # initiation from leftovers (this frame + recent pending ones)
        rows = np.concatenate(leftovers) if leftovers else np.zeros(0, int)
        cand = frame.take(rows)
        if self._pending is not None and len(self._pending):
            keep = self._pending.time >= t - cfg.initiator.pair_window_s
            cand = Detections.concat([self._pending.take(keep), cand])
        born = cfg.initiator(cand)
        used = np.zeros(len(cand), bool)
        if born.x.shape[0]:
            used[born.rows.ravel()] = True
            self._birth(born.x, born.P, t)
        self._pending = cand.take(~used)
        self._merge_duplicates()
        self._compact()
        self.processed_until_s = t

    def _birth(self, x: np.ndarray, P: np.ndarray, t: float) -> None:
        c = x.shape[0]
        xs, Ps, mus = self.imm.init_state(x, P)
        ids = np.arange(self._next_id, self._next_id + c, dtype=np.int64)
        self._next_id += c
        self._id = np.r_[self._id, ids]
        self._status = np.r_[self._status, np.full(c, TENTATIVE, np.int8)]
        self._t = np.r_[self._t, np.full(c, t)]
        self._x = np.concatenate([self._x, xs])
        self._P = np.concatenate([self._P, Ps])
        self._mu = np.concatenate([self._mu, mus])
        self._bits = np.r_[self._bits, np.ones(c, np.uint64)]
        self._nopp = np.r_[self._nopp, np.ones(c, np.int64)]
        self._nhits = np.r_[self._nhits, np.ones(c, np.int64)]
        self._created = np.r_[self._created, np.full(c, t)]
        self._last_hit = np.r_[self._last_hit, np.full(c, t)]
        self._record_rows(np.arange(len(self._id) - c, len(self._id)), t, x, P, np.ones(c, bool))

    def _merge_duplicates(self) -> None:
        live = np.flatnonzero(self._status != DROPPED)
        if live.size < 2:
            return
        xc, Pc = self.imm.combine(self._x[live], self._P[live], self._mu[live])
        iu, ju = np.triu_indices(live.size, k=1)
        # cheap exact pre-filter: the 6-D distance is at least the position-only one, which
        # is at least |dp|^2 / trace(S_pos); only the pairs that pass get the 6x6 solve
        tr = np.trace(Pc[:, :3, :3], axis1=1, axis2=2)
        dp = xc[iu, :3] - xc[ju, :3]
        near = np.einsum("pi,pi->p", dp, dp) < self.config.duplicate_chi2 * (tr[iu] + tr[ju])
        iu, ju = iu[near], ju[near]
        if iu.size == 0:
            return
        d = xc[iu] - xc[ju]
        S = Pc[iu] + Pc[ju]
        d2 = np.einsum("pi,pi->p", d, np.linalg.solve(S, d[..., None])[..., 0])
        close = d2 < self.config.duplicate_chi2
        if not np.any(close):
            return
        a, b = live[iu[close]], live[ju[close]]
        # rank: confirmed beats tentative, then more hits, then older id
        rank = (self._status != TENTATIVE) * 1e9 + self._nhits * 1e3 - self._id * 1e-9
        loser = np.where(rank[a] >= rank[b], b, a)
        self._status[loser] = DROPPED

    def _compact(self) -> None:
        keep = self._status != DROPPED
        if np.all(keep):
            return
        for name in ("_id", "_status", "_t", "_x", "_P", "_mu", "_bits", "_nopp", "_nhits", "_created", "_last_hit"):
            setattr(self, name, getattr(self, name)[keep])

    # ------------------------------------------------------------------ history
    def _record(self, t: float, xc: np.ndarray, Pc: np.ndarray, hit: np.ndarray) -> None:
        self._record_rows(np.arange(len(self._id)), t, xc, Pc, hit)

    def _record_rows(self, rows: np.ndarray, t: float, xc: np.ndarray, Pc: np.ndarray, hit: np.ndarray) -> None:
        if not self.config.keep_history:
            return
        for r, row in enumerate(rows):  # per track (not per pair): append one row
            rows_of = self._hist.get(int(self._id[row]))
            if rows_of is None:
                rows_of = self._hist[int(self._id[row])] = deque(maxlen=self.config.history_limit)
            rows_of.append(
                (t, xc[r].copy(), Pc[r, :3, :3].copy(), self._mu[row].copy(), bool(hit[r]), int(self._status[row]))
            )

    def history(self, track_id: int) -> TrackHistory:
        rows = self._hist.get(int(track_id), [])
        m = self.imm.n_models
        if not rows:
            return TrackHistory(int(track_id), np.zeros(0), np.zeros((0, 6)), np.zeros((0, 3, 3)),
                                np.zeros((0, m)), np.zeros(0, bool), np.zeros(0, np.int8))
        t, x, p, mu, h, st = zip(*rows, strict=True)
        return TrackHistory(int(track_id), np.array(t), np.array(x), np.array(p), np.array(mu),
                            np.array(h), np.array(st, np.int8))

    def history_ids(self) -> list[int]:
        return sorted(self._hist)

    def forget_history(self, track_ids) -> None:
        """Drop the histories of ``track_ids`` (e.g. dropped tracks already persisted)."""
        for i in track_ids:
            self._hist.pop(int(i), None)

    # ------------------------------------------------------------------ resume
    def export_state(self) -> TrackerState:
        """A copy of the live tracks and counters (see :class:`TrackerState`)."""
        return TrackerState(
            self.epoch, self._next_id, float(self.processed_until_s), float(self._latest_seen),
            self.detections_processed, self._id.copy(), self._status.copy(), self._t.copy(),
            self._x.copy(), self._P.copy(), self._mu.copy(), self._bits.copy(),
            self._nopp.copy(), self._nhits.copy(), self._created.copy(), self._last_hit.copy(),
        )

    def restore(self, state: TrackerState) -> None:
        """Replace this tracker's tracks and counters by ``state`` (buffers emptied)."""
        m = self.imm.n_models
        if state.x.shape[1:] != (m, 6) or state.P.shape[1:] != (m, 6, 6):
            raise ValueError(f"state has {state.x.shape[1]} models, the tracker {m}")
        self.epoch = state.epoch
        self._next_id = int(state.next_id)
        self.processed_until_s = float(state.processed_until_s)
        self._latest_seen = float(state.latest_seen_s)
        self.detections_processed = int(state.detections_processed)
        self._id = np.asarray(state.track_id, np.int64).copy()
        self._status = np.asarray(state.status, np.int8).copy()
        self._t = np.asarray(state.time_s, float).copy()
        self._x = np.asarray(state.x, float).copy()
        self._P = np.asarray(state.P, float).copy()
        self._mu = np.asarray(state.mu, float).copy()
        self._bits = np.asarray(state.hit_bits, np.uint64).copy()
        self._nopp = np.asarray(state.n_opportunities, np.int64).copy()
        self._nhits = np.asarray(state.n_hits, np.int64).copy()
        self._created = np.asarray(state.created_s, float).copy()
        self._last_hit = np.asarray(state.last_hit_s, float).copy()
        self._buffer = None
        self._pending = None
        self._hist = {}

    @property
    def latest_seen_s(self) -> float:
        return float(self._latest_seen)

    # ------------------------------------------------------------------ output
    def tracks(self, include_tentative: bool = False) -> TrackTable:
        """Current tracks (each at the time of its last processed frame)."""
        sel = np.ones(self._id.shape[0], bool) if include_tentative else self._status != TENTATIVE
        xc, Pc = self.imm.combine(self._x[sel], self._P[sel], self._mu[sel])
        return TrackTable(
            self._id[sel].copy(), self._status[sel].copy(), self._t[sel].copy(), xc, Pc,
            self._mu[sel].copy(), self.imm.model_names, self._nhits[sel].copy(),
            self._created[sel].copy(), self._last_hit[sel].copy(), self.epoch,
        )

    @property
    def n_confirmed(self) -> int:
        return int(np.sum(self._status == CONFIRMED))
