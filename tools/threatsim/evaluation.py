"""Tracking performance: OSPA, GOSPA, RMSE and the posterior Cramer-Rao bound.

Positions in metres (ECEF), times in seconds.

* OSPA (Schuhmacher, Vo & Vo 2008) with cut-off ``c`` and order ``p``.
* GOSPA (Rahmathullah, Garcia-Fernandez & Svensson 2017) with ``alpha = 2``:
  ``(min_assign sum d^p + c^p/2 (#missed + #false))^(1/p)``, pairs further
  than ``c`` apart counted as one miss plus one false target.
* Identity switches (track swaps), CLEAR-MOT style (Bernardin & Stiefelhagen
  2008): per frame, confirmed track positions are assigned to truth positions
  (minimum total distance, pairs further apart than a gate in metres never
  assigned); a switch is a truth whose assigned track changes to another track
  while the previous one still exists, or a track whose truth changes.
* PCRLB for one target seen by several bearing-only sensors, recursive
  information form (Tichavsky et al. 1998) with the *information reduction
  factor* for missed detections: with detection probability ``Pd`` and
  negligible clutter inside the gate, the expected measurement information
  is ``Pd * H^T R^-1 H`` per visible sensor per frame.  Dynamics are the
  tracker's ballistic model (``F`` from the vectorised Jacobian along the
  truth, ``Q`` its white-acceleration noise), so the bound is the one for the
  filter's own model over the same geometry.  It covers ballistic free
  flight (boost and re-entry forces are not in the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from services.threat import dynamics as dyn
from services.threat.sensors import IRSensorModel, visible
from services.threat.tracker.filters import los_residual, white_acceleration_q
from services.threat.tracker.lifecycle import held


def _dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float).reshape(-1, np.shape(x)[-1] if np.ndim(x) else 1)
    y = np.asarray(y, float).reshape(-1, x.shape[1])
    return np.linalg.norm(x[:, None] - y[None], axis=-1)


def ospa(x: np.ndarray, y: np.ndarray, c: float = 1_000.0, p: float = 2.0) -> float:
    """OSPA distance between point sets ``x (m,d)`` and ``y (n,d)``."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    m, n = len(x), len(y)
    if m == 0 and n == 0:
        return 0.0
    if m == 0 or n == 0:
        return float(c)
    d = np.minimum(_dist(x, y), c) ** p
    r, k = linear_sum_assignment(d)
    total = d[r, k].sum() + c**p * abs(m - n)
    return float((total / max(m, n)) ** (1.0 / p))


@dataclass(frozen=True)
class GospaResult:
    distance: float
    localisation: float  # sum d^p over assigned pairs
    missed: int
    false: int


def gospa(x: np.ndarray, y: np.ndarray, c: float = 1_000.0, p: float = 2.0) -> GospaResult:
    """GOSPA (alpha = 2) between truth ``x (m,d)`` and estimates ``y (n,d)``."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    m, n = len(x), len(y)
    if m == 0 or n == 0:
        return GospaResult(float((c**p / 2 * (m + n)) ** (1 / p)), 0.0, m, n)
    d = _dist(x, y)
    cost = np.minimum(d, c) ** p
    r, k = linear_sum_assignment(cost)
    assigned = d[r, k] < c
    loc = float(np.sum(d[r, k][assigned] ** p))
    n_ass = int(assigned.sum())
    missed, false = m - n_ass, n - n_ass
    return GospaResult(float((loc + c**p / 2 * (missed + false)) ** (1 / p)), loc, missed, false)


def rmse(err: np.ndarray) -> float:
    """Root mean square of error vectors ``(T,d)`` (NaN rows ignored)."""
    e = np.asarray(err, float)
    ok = np.all(np.isfinite(e), axis=-1)
    return float(np.sqrt(np.mean(np.sum(e[ok] ** 2, axis=-1)))) if np.any(ok) else float("nan")


@dataclass(frozen=True)
class PcrlbResult:
    time_s: np.ndarray  # (T,)
    covariance: np.ndarray  # (T,6,6) bound J^-1
    position_sigma_m: np.ndarray  # (T,) sqrt(trace of position block)
    velocity_sigma_m_s: np.ndarray


def pcrlb_bearing_only(
    truth_time_s: np.ndarray,
    truth_state: np.ndarray,
    sensor_positions_ecef_m: np.ndarray,
    sensor: IRSensorModel,
    q_m2_s3: float = 0.01,
    prior_sigma_pos_m: float = 10e3,
    prior_sigma_vel_m_s: float = 1e3,
) -> PcrlbResult:
    """Recursive PCRLB along a truth trajectory sampled at the frame times.

    ``truth_time_s (T,)``, ``truth_state (T,6)`` ECEF at the sensor frames;
    ``sensor_positions_ecef_m (T,S,3)``.  ``J_0`` is a diffuse prior.
    Recursion per frame (loop over time only; sensors are vectorised)::

        J_k = (Q + F J_{k-1}^-1 F^T)^-1 + sum_s vis_s Pd H_s^T R_s^-1 H_s
    """
    t = np.asarray(truth_time_s, float)
    xs = np.asarray(truth_state, float)
    sens = np.asarray(sensor_positions_ecef_m, float)
    T = len(t)
    Fs = np.empty((T, 6, 6))
    if T > 1:
        _, F = dyn.transition_matrix(xs[:-1], np.diff(t))
        Fs[1:] = F
    Qs = white_acceleration_q(np.r_[0.0, np.diff(t)], q_m2_s3)
    vis = visible(sens, xs[:, None, :3], sensor)  # (T,S)
    _, Hp, _ = los_residual(xs[:, None, :3], sens, np.zeros(sens.shape) + (xs[:, None, :3] - sens))
    # information per sensor: Pd * Hp^T Hp / sigma^2 on the position block
    info_pos = sensor.detection_probability * np.einsum("tsai,tsaj->tsij", Hp, Hp) / sensor.los_noise_rad**2
    info_pos = np.einsum("ts,tsij->tij", vis, info_pos)
    J = np.diag([prior_sigma_pos_m**-2] * 3 + [prior_sigma_vel_m_s**-2] * 3)
    covs = np.empty((T, 6, 6))
    for k in range(T):  # recursion over time steps
        if k > 0:
            Pp = Fs[k] @ np.linalg.inv(J) @ Fs[k].T + Qs[k]
            J = np.linalg.inv(Pp)
        J = J.copy()
        J[:3, :3] += info_pos[k]
        covs[k] = np.linalg.inv(J)
    pos = np.sqrt(np.trace(covs[:, :3, :3], axis1=1, axis2=2))
    vel = np.sqrt(np.trace(covs[:, 3:, 3:], axis1=1, axis2=2))
    return PcrlbResult(t, covs, pos, vel)


def match_tracks_to_truth(
    track_times: list[np.ndarray], track_states: list[np.ndarray], truth_fn, n_truth: int
) -> np.ndarray:
    """Label each track history with the truth index it follows (median
    position error, -1 when above 10 km).  ``truth_fn(t) -> (T,n_truth,6)``."""
    labels = np.full(len(track_times), -1)
    for i, (t, x) in enumerate(zip(track_times, track_states, strict=True)):  # per track
        tr = truth_fn(t)
        e = np.linalg.norm(tr[..., :3] - x[:, None, :3], axis=-1)
        med = np.nanmedian(np.where(np.isfinite(e), e, np.inf), axis=0)
        j = int(np.argmin(med))
        labels[i] = j if med[j] < 10e3 else -1
    return labels


# --------------------------------------------------------------------------- identity switches


@dataclass(frozen=True)
class IdentitySwitches:
    """Identity switches between confirmed tracks and truths (CLEAR-MOT style).

    ``assignment (F,N)``: column of the track assigned to each truth per frame
    (-1: none).  ``truth_events`` rows are ``(frame, truth, from track, to track)``
    and ``track_events`` rows ``(frame, track, from truth, to truth)`` (frame =
    row index, track = column); ``track_ids`` maps columns to the caller's ids.
    """

    truth_switches: int
    """A truth's track changed from one track to another while the previous track
    still existed (had an estimate) at that frame."""
    track_switches: int
    """A track's truth changed from one truth to another."""
    fragmentations: int
    """A truth's track changed after its previous track had ended (a re-initiation,
    not a swap; reported, not counted in :attr:`swaps`)."""
    contested_frames: int
    """Frames where some truth or track had more than one partner inside the gate
    (where a swap could be scored: the assignment decided)."""
    assignment: np.ndarray
    truth_events: np.ndarray  # (E,4) int
    track_events: np.ndarray  # (E,4) int
    track_ids: np.ndarray  # (K,)

    @property
    def swaps(self) -> int:
        """``truth_switches + track_switches``: one clean exchange of two tracks
        between two truths counts 2 + 2 = 4."""
        return self.truth_switches + self.track_switches


def _previous_valid(a: np.ndarray) -> np.ndarray:
    """Per column, the last value >= 0 strictly before each row (-1: none)."""
    f = a.shape[0]
    idx = np.maximum.accumulate(np.where(a >= 0, np.arange(f)[:, None], -1), axis=0)
    idx = np.vstack([np.full((1, a.shape[1]), -1), idx[:-1]])
    return np.where(idx >= 0, np.take_along_axis(a, np.maximum(idx, 0), axis=0), -1)


def _switches(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prev = _previous_valid(a)
    return (a >= 0) & (prev >= 0) & (a != prev), prev


def assign_frames(truth_pos: np.ndarray, track_pos: np.ndarray, gate_m: float = 10e3,
                  block: int = 512, contested: np.ndarray | None = None) -> np.ndarray:
    """Per frame, the minimum-total-distance assignment of tracks to truths.

    ``truth_pos (F,N,3)`` and ``track_pos (F,K,3)`` metres, NaN where absent.
    Pairs further apart than ``gate_m`` are never assigned.  Returns ``(F,N)``
    track columns (-1: unassigned).  Distances are computed for all frames at
    once (in blocks of ``block`` frames to bound memory); frames where every
    truth and every track has at most one partner inside the gate are assigned
    directly, and only the ambiguous frames go through ``linear_sum_assignment``
    (marked True in ``contested (F,)`` when given).
    """
    truth_pos = np.asarray(truth_pos, float)
    track_pos = np.asarray(track_pos, float)
    f, n = truth_pos.shape[:2]
    out = np.full((f, n), -1, np.int64)
    if track_pos.shape[1] == 0 or n == 0:
        if contested is not None:
            contested[:] = False
        return out
    for lo in range(0, f, block):  # frame blocks (memory bound only)
        d = np.linalg.norm(truth_pos[lo:lo + block, :, None] - track_pos[lo:lo + block, None],
                           axis=-1)  # (B,N,K)
        inside = d < gate_m  # NaN -> False
        simple = np.all(inside.sum(axis=2) <= 1, axis=1) & np.all(inside.sum(axis=1) <= 1, axis=1)
        seg = out[lo:lo + block]
        if contested is not None:
            contested[lo:lo + block] = ~simple
        seg[:] = np.where(inside.any(axis=2), np.argmax(inside, axis=2), -1)
        for b in np.flatnonzero(~simple):  # ambiguous frames only
            cost = np.where(inside[b], d[b], 2.0 * gate_m)
            r, k = linear_sum_assignment(cost)
            ok = inside[b, r, k]
            seg[b] = -1
            seg[b, r[ok]] = k[ok]
    return out


def identity_switches(truth_pos: np.ndarray, track_pos: np.ndarray, gate_m: float = 10e3,
                      track_ids: np.ndarray | None = None) -> IdentitySwitches:
    """Count identity switches over frames (vectorised; see :class:`IdentitySwitches`).

    ``truth_pos (F,N,3)``, ``track_pos (F,K,3)`` positions in metres on common
    frames (rows), NaN where a truth is not alive or a track has no (confirmed)
    estimate; ``gate_m`` metres.  As in CLEAR-MOT, a truth (or track) keeps its
    last partner through frames where it is unassigned, so a change after a gap
    also counts.
    """
    track_pos = np.asarray(track_pos, float)
    f, k = track_pos.shape[0], track_pos.shape[1]
    contested = np.zeros(f, bool)
    a = assign_frames(truth_pos, track_pos, gate_m, contested=contested)
    present = np.all(np.isfinite(track_pos), axis=-1)  # (F,K)
    ch, prev = _switches(a)
    exists = np.take_along_axis(present, np.maximum(prev, 0), axis=1) if k else np.zeros_like(ch)
    swap, frag = ch & exists, ch & ~exists
    b = np.full((f, k), -1, np.int64)  # truth assigned to each track column per frame
    fi, ni = np.nonzero(a >= 0)
    b[fi, a[fi, ni]] = ni
    ch_b, prev_b = _switches(b)
    ev_f, ev_n = np.nonzero(swap)
    truth_events = np.column_stack([ev_f, ev_n, prev[ev_f, ev_n], a[ev_f, ev_n]]).astype(np.int64)
    ev_f, ev_k = np.nonzero(ch_b)
    track_events = np.column_stack([ev_f, ev_k, prev_b[ev_f, ev_k], b[ev_f, ev_k]]).astype(np.int64)
    ids = np.arange(k) if track_ids is None else np.asarray(track_ids)
    return IdentitySwitches(int(swap.sum()), int(ch_b.sum()), int(frag.sum()), int(contested.sum()),
                            a, truth_events, track_events, ids)


def track_positions_on_frames(frame_times_s: np.ndarray, histories) -> np.ndarray:
    """``(F,K,3)`` confirmed positions (metres) of track histories on the frame times
    (seconds); NaN where a track has no confirmed or coasting row at a frame.
    ``histories``: objects with ``time_s (T,)``, ``state (T,6)``, ``status (T,)``."""
    frames = np.asarray(frame_times_s, float)
    out = np.full((len(frames), len(histories), 3), np.nan)
    for j, h in enumerate(histories):  # per track
        sel = held(h.status)
        t = np.asarray(h.time_s)[sel]
        idx = np.clip(np.searchsorted(frames, t), 0, max(len(frames) - 1, 0))
        ok = np.isclose(frames[idx], t, atol=1e-3) if len(frames) else np.zeros(0, bool)
        out[idx[ok], j] = np.asarray(h.state)[sel][ok, :3]
    return out
