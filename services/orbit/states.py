"""Propagated states in the requested frame, and how a long request is cut into chunks.

Pure numpy (no grpc, no SQL). Frames:

* ``teme``: SGP4's output as is (km, km/s);
* ``itrf``: ``shared.frames.teme_to_itrf`` (dUT1 from the builtin IERS table, no polar
  motion), km and Earth-relative km/s;
* ``geodetic``: WGS84 ``(lat_deg, lon_deg, alt_m)`` of the ITRF position; velocity (when
  asked for) stays ITRF km/s.

Flagged states (SGP4 error code != 0) are NaN in every frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import cast

import numpy as np

from services.orbit.kernel import CatalogPropagator, PropagationResult
from shared.frames import itrf_to_geodetic, teme_to_itrf

__all__ = [
    "FRAMES",
    "Frame",
    "StateChunk",
    "chunk_steps_for",
    "compute_chunk",
    "compute_component_chunk",
    "itrf_rotation",
    "jd_to_unix",
]

class Frame(StrEnum):
    """The frame of a chunk's positions and velocities."""

    TEME = "teme"
    ITRF = "itrf"
    GEODETIC = "geodetic"


FRAMES = tuple(Frame)
_SEC_PER_DAY = 86_400.0
_JD_UNIX_EPOCH = 2440587.5


@dataclass(frozen=True, slots=True)
class StateChunk:
    """``T`` instants x ``N`` satellites in one frame."""

    unix_s: np.ndarray  # (T,) float64 UTC seconds since 1970
    position: np.ndarray  # (T, N, 3)
    velocity: np.ndarray | None  # (T, N, 3) or None
    error: np.ndarray  # (T, N) int8


def jd_to_unix(jd: np.ndarray, fr: np.ndarray) -> np.ndarray:
    return (np.asarray(jd) - _JD_UNIX_EPOCH) * _SEC_PER_DAY + np.asarray(fr) * _SEC_PER_DAY


def chunk_steps_for(n_sats: int, n_steps: int, state_budget: int, requested: int = 0) -> int:
    """Time steps per chunk so that one chunk holds at most ``state_budget`` states
    (at least one step); ``requested`` (when positive) can only lower it."""
    steps = max(1, state_budget // max(1, n_sats))
    if requested > 0:
        steps = min(steps, requested)
    return max(1, min(steps, n_steps))


def in_frame(result: PropagationResult, frame: str, include_velocity: bool) -> StateChunk:
    """Rotate a TEME propagation result to ``frame``."""
    if frame not in FRAMES:
        raise ValueError(f"unknown frame {frame!r}")
    pos, vel = result.position_km, result.velocity_km_s
    if frame != Frame.TEME:
        if include_velocity:
            pos, vel = teme_to_itrf(pos, result.jd, result.fr, vel)
        else:
            pos = cast(np.ndarray, teme_to_itrf(pos, result.jd, result.fr))
        if frame == Frame.GEODETIC:
            with np.errstate(invalid="ignore"):
                lat, lon, alt = itrf_to_geodetic(pos)
            pos = np.stack((lat, lon, alt), axis=-1)
    return StateChunk(jd_to_unix(result.jd, result.fr), pos,
                      vel if include_velocity else None, result.error)


def compute_chunk(prop: CatalogPropagator, jd: np.ndarray, fr: np.ndarray, frame: str,
                  include_velocity: bool) -> StateChunk:
    """Propagate ``prop``'s satellites to the UTC instants ``jd + fr`` in ``frame``."""
    return in_frame(prop.propagate_jd(jd, fr, with_velocity=include_velocity), frame,
                    include_velocity)


# --- component-major chunks ((T, 3, N), the kernel's native order) ----------------------


def itrf_rotation(jd: np.ndarray, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(M, D)``, each ``(T, 3, 3)``: ``r_itrf = M r_teme`` and ``v_itrf = M v_teme +
    D r_teme`` at the UTC instants ``jd + fr``.

    Read off ``shared.frames.teme_to_itrf`` itself (its image of the unit vectors, which
    is exact: products with 1 and 0), so the two cannot disagree on the frame."""
    t = np.size(jd)
    eye = np.broadcast_to(np.eye(3), (t, 3, 3))
    m_cols, d_cols = teme_to_itrf(eye, jd, fr, np.zeros((t, 3, 3)))  # rows: M e_i, D e_i
    return (np.ascontiguousarray(m_cols.transpose(0, 2, 1)),
            np.ascontiguousarray(d_cols.transpose(0, 2, 1)))


def compute_component_chunk(prop: CatalogPropagator, jd: np.ndarray, fr: np.ndarray,
                            frame: str, include_velocity: bool, *,
                            work: np.ndarray | None = None,
                            out: np.ndarray | None = None) -> StateChunk:
    """Like :func:`compute_chunk`, with ``position`` and ``velocity`` C-contiguous
    ``(T, 3, N)`` (component-major): the kernel's output is never repacked, and the
    rotation to ITRF is one batched ``(3, 3) @ (3, N)`` product per instant straight
    into the answer's buffer. ``work`` is the kernel's reusable ``(T, 7, N)`` buffer
    (see :meth:`CatalogPropagator.propagate_components`); ``out``, when given, a reusable
    C-contiguous ``(T, 3, N)`` float64 buffer for the positions (reusing both saves the
    page faults of fresh tens-of-MB allocations on every chunk)."""
    if frame not in FRAMES:
        raise ValueError(f"unknown frame {frame!r}")
    states, err = prop.propagate_components(jd, fr, out=work)
    r_teme, v_teme = states[:, 0:3, :], states[:, 3:6, :]
    pos = np.empty(r_teme.shape) if out is None else out
    vel = np.empty(r_teme.shape) if include_velocity else None
    if frame == Frame.TEME:
        pos[...] = r_teme
        if vel is not None:
            vel[...] = v_teme
    else:
        m, d = itrf_rotation(jd, fr)
        np.matmul(m, r_teme, out=pos)
        if vel is not None:
            np.matmul(m, v_teme, out=vel)
            vel += np.matmul(d, r_teme)  # Earth-rotation term
        if frame == Frame.GEODETIC:
            with np.errstate(invalid="ignore"):
                lat, lon, alt = itrf_to_geodetic(pos.transpose(0, 2, 1))
            pos[:, 0, :], pos[:, 1, :], pos[:, 2, :] = lat, lon, alt
    return StateChunk(jd_to_unix(jd, fr), pos, vel, err)
