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

import numpy as np

from services.orbit.kernel import CatalogPropagator, PropagationResult
from shared.frames import itrf_to_geodetic, teme_to_itrf

__all__ = ["FRAMES", "StateChunk", "chunk_steps_for", "compute_chunk", "jd_to_unix"]

FRAMES = ("teme", "itrf", "geodetic")
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
    if frame != "teme":
        if include_velocity:
            pos, vel = teme_to_itrf(pos, result.jd, result.fr, vel)
        else:
            pos = teme_to_itrf(pos, result.jd, result.fr)
        if frame == "geodetic":
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
