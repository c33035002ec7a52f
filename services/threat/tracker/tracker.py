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
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import numpy.typing as npt

from services.threat import dynamics as dyn
from services.threat.detections import Detections
from services.threat.tracker.associator import GNNAssociator
from services.threat.tracker.columns import TrackColumns
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
    tracks: TrackColumns
    """The live tracks' columns; the properties below are read-only views of them."""

    @property
    def track_id(self) -> npt.NDArray[np.int64]:
        return self.tracks.track_id

    @property
    def status(self) -> npt.NDArray[np.int8]:
        return self.tracks.status

    @property
    def time_s(self) -> npt.NDArray[np.float64]:
        return self.tracks.time_s

    @property
    def x(self) -> npt.NDArray[np.float64]:
        return self.tracks.x

    @property
    def P(self) -> npt.NDArray[np.float64]:
        return self.tracks.P

    @property
    def mu(self) -> npt.NDArray[np.float64]:
        return self.tracks.mu

    @property
    def hit_bits(self) -> npt.NDArray[np.uint64]:
        return self.tracks.hit_bits

    @property
    def n_opportunities(self) -> npt.NDArray[np.int64]:
        return self.tracks.n_opportunities

    @property
    def n_hits(self) -> npt.NDArray[np.int64]:
        return self.tracks.n_hits

    @property
    def created_s(self) -> npt.NDArray[np.float64]:
        return self.tracks.created_s

    @property
    def last_hit_s(self) -> npt.NDArray[np.float64]:
        return self.tracks.last_hit_s


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


_HistoryRow = tuple[
    float, npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], bool, int
]
"""time s, combined state (6,), position covariance (3,3), model probabilities (M,), hit,
status code."""


class Tracker:
    """Stateful tracker.  Not thread-safe: callers serialise access."""

    def __init__(self, config: TrackerConfig | None = None, epoch: datetime | None = None) -> None:
        self.config = config or TrackerConfig()
        self.imm = self.config.imm
        m = self.imm.n_models
        self.epoch = epoch
        self._next_id = 1
        self._c = TrackColumns.empty(m)
        """The tracks (live ones, plus ones dropped in the frame being processed)."""
        self._buffer: Detections | None = None
        self._pending: Detections | None = None
        self._latest_seen = -np.inf
        self.processed_until_s = -np.inf
        self._hist: dict[int, deque[_HistoryRow]] = {}
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
        c = self._c
        k = len(c)
        if k:
            x, P, mu = self.imm.predict(c.x, c.P, c.mu, t - c.time_s)
            c = self._c = replace(c, x=x, P=P, mu=mu)
            c.time_s[:] = t
        hit = np.zeros(k, bool)
        leftovers = []
        sensors = np.unique(frame.sensor_index)
        for s in sensors:  # one scan per sensor in the frame
            rows = np.flatnonzero(frame.sensor_index == s)
            if k == 0:
                leftovers.append(rows)
                continue
            xc, Pc = self.imm.combine(c.x, c.P, c.mu)
            live = c.status != DROPPED
            g = cfg.gate(
                xc, Pc, frame.sensor_position_ecef_m[rows], frame.los_unit_ecef[rows], frame.noise_rad[rows]
            )
            g.inside[~live] = False
            a = cfg.associator(g)
            if a.track_index.size:
                ti, di = a.track_index, rows[a.detection_index]
                c.x[ti], c.P[ti], c.mu[ti] = self.imm.update(
                    c.x[ti], c.P[ti], c.mu[ti],
                    frame.sensor_position_ecef_m[di], frame.los_unit_ecef[di], frame.noise_rad[di],
                )
                hit[ti] = True
            leftovers.append(rows[a.unassigned_detections])

        if k:
            xc, Pc = self.imm.combine(c.x, c.P, c.mu)
            c.last_hit_s[hit] = t
            c.n_hits[hit] += 1
            upd = update_lifecycle(
                c.status, c.hit_bits, c.n_opportunities, hit, t, c.last_hit_s,
                np.sqrt(np.trace(Pc[:, :3, :3], axis1=1, axis2=2)), dyn.altitude_m(xc[:, :3]),
                cfg.lifecycle,
            )
            self._c = replace(c, status=upd.status, hit_bits=upd.hit_bits,
                              n_opportunities=upd.n_opportunities)
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
        born = TrackColumns(
            ids, np.full(c, TENTATIVE, np.int8), np.full(c, t), xs, Ps, mus,
            np.ones(c, np.uint64), np.ones(c, np.int64), np.ones(c, np.int64),
            np.full(c, t), np.full(c, t),
        )
        self._c = TrackColumns.concat([self._c, born])
        k = len(self._c)
        self._record_rows(np.arange(k - c, k), t, x, P, np.ones(c, bool))

    def _merge_duplicates(self) -> None:
        c = self._c
        live = np.flatnonzero(c.status != DROPPED)
        if live.size < 2:
            return
        xc, Pc = self.imm.combine(c.x[live], c.P[live], c.mu[live])
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
        rank = (c.status != TENTATIVE) * 1e9 + c.n_hits * 1e3 - c.track_id * 1e-9
        loser = np.where(rank[a] >= rank[b], b, a)
        c.status[loser] = DROPPED

    def _compact(self) -> None:
        keep = self._c.status != DROPPED
        if np.all(keep):
            return
        self._c = self._c.take(keep)

    # ------------------------------------------------------------------ history
    def _record(self, t: float, xc: np.ndarray, Pc: np.ndarray, hit: np.ndarray) -> None:
        self._record_rows(np.arange(len(self._c)), t, xc, Pc, hit)

    def _record_rows(self, rows: np.ndarray, t: float, xc: np.ndarray, Pc: np.ndarray, hit: np.ndarray) -> None:
        if not self.config.keep_history:
            return
        c = self._c
        for r, row in enumerate(rows):  # per track (not per pair): append one row
            rows_of = self._hist.get(int(c.track_id[row]))
            if rows_of is None:
                rows_of = self._hist[int(c.track_id[row])] = deque(maxlen=self.config.history_limit)
            rows_of.append(
                (t, xc[r].copy(), Pc[r, :3, :3].copy(), c.mu[row].copy(), bool(hit[r]), int(c.status[row]))
            )

    def history(self, track_id: int) -> TrackHistory:
        rows: Iterable[_HistoryRow] = self._hist.get(int(track_id), ())
        m = self.imm.n_models
        if not rows:
            return TrackHistory(int(track_id), np.zeros(0), np.zeros((0, 6)), np.zeros((0, 3, 3)),
                                np.zeros((0, m)), np.zeros(0, bool), np.zeros(0, np.int8))
        t, x, p, mu, h, st = zip(*rows, strict=True)
        return TrackHistory(int(track_id), np.array(t), np.array(x), np.array(p), np.array(mu),
                            np.array(h), np.array(st, np.int8))

    def history_ids(self) -> list[int]:
        return sorted(self._hist)

    def forget_history(self, track_ids: Iterable[int]) -> None:
        """Drop the histories of ``track_ids`` (e.g. dropped tracks already persisted)."""
        for i in track_ids:
            self._hist.pop(int(i), None)

    # ------------------------------------------------------------------ resume
    def export_state(self) -> TrackerState:
        """A copy of the live tracks and counters (see :class:`TrackerState`)."""
        return TrackerState(
            self.epoch, self._next_id, float(self.processed_until_s), float(self._latest_seen),
            self.detections_processed, self._c.copy(),
        )

    def restore(self, state: TrackerState) -> None:
        """Replace this tracker's tracks and counters by ``state`` (buffers emptied)."""
        m = self.imm.n_models
        if state.tracks.n_models != m:
            raise ValueError(f"state has {state.tracks.n_models} models, the tracker {m}")
        self.epoch = state.epoch
        self._next_id = int(state.next_id)
        self.processed_until_s = float(state.processed_until_s)
        self._latest_seen = float(state.latest_seen_s)
        self.detections_processed = int(state.detections_processed)
        self._c = state.tracks.copy()
        self._buffer = None
        self._pending = None
        self._hist = {}

    @property
    def latest_seen_s(self) -> float:
        return float(self._latest_seen)

    # ------------------------------------------------------------------ output
    def tracks(self, include_tentative: bool = False) -> TrackTable:
        """Current tracks (each at the time of its last processed frame)."""
        c = self._c
        s = c.take(np.ones(len(c), bool) if include_tentative else c.status != TENTATIVE)
        xc, Pc = self.imm.combine(s.x, s.P, s.mu)
        return TrackTable(
            s.track_id, s.status, s.time_s, xc, Pc, s.mu, self.imm.model_names, s.n_hits,
            s.created_s, s.last_hit_s, self.epoch,
        )

    @property
    def n_confirmed(self) -> int:
        return int(np.sum(self._c.status == CONFIRMED))
