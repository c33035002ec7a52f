"""The tracker's per-track state as one columnar type.

One row per track; every column has the same length K.  ``M`` is the number of
IMM models.  Positions and velocities are ECEF (metres, metres per second);
times are seconds from the tracker's epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

Index = npt.NDArray[np.bool_] | npt.NDArray[np.intp] | npt.NDArray[np.int64] | slice


@dataclass(frozen=True, slots=True)
class TrackColumns:
    """Per-track columns of a tracker (K rows, M IMM models)."""

    track_id: npt.NDArray[np.int64]
    """(K,) track identifiers, unique, increasing with birth."""
    status: npt.NDArray[np.int8]
    """(K,) life-cycle codes (:class:`services.threat.tracker.lifecycle.Status`)."""
    time_s: npt.NDArray[np.float64]
    """(K,) time of the estimate, s from the epoch."""
    x: npt.NDArray[np.float64]
    """(K,M,6) per-model state: ECEF position m, then velocity m/s."""
    P: npt.NDArray[np.float64]
    """(K,M,6,6) per-model covariance of ``x`` (m^2, m^2/s, m^2/s^2)."""
    mu: npt.NDArray[np.float64]
    """(K,M) IMM model probabilities (rows sum to 1)."""
    hit_bits: npt.NDArray[np.uint64]
    """(K,) hits of the last N opportunities, newest in bit 0."""
    n_opportunities: npt.NDArray[np.int64]
    """(K,) processed frames since birth (birth frame included)."""
    n_hits: npt.NDArray[np.int64]
    """(K,) frames with an associated detection (birth frame included)."""
    created_s: npt.NDArray[np.float64]
    """(K,) birth time, s from the epoch."""
    last_hit_s: npt.NDArray[np.float64]
    """(K,) time of the last associated detection, s from the epoch."""

    def __post_init__(self) -> None:
        k = self.track_id.shape[0]
        for f in fields(self):
            col = getattr(self, f.name)
            if col.shape[:1] != (k,):
                raise ValueError(f"column {f.name} has {col.shape[:1]} rows, track_id {k}")
        m = self.x.shape[1:2]
        if self.x.shape[2:] != (6,) or self.P.shape[1:] != m + (6, 6) or self.mu.shape[1:] != m:
            raise ValueError(f"inconsistent model columns: x {self.x.shape}, P {self.P.shape}, "
                             f"mu {self.mu.shape}")

    def __len__(self) -> int:
        return int(self.track_id.shape[0])

    @property
    def n_models(self) -> int:
        return int(self.x.shape[1])

    @classmethod
    def empty(cls, m: int) -> TrackColumns:
        """No tracks, ``m`` IMM models."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0), np.zeros((0, m, 6)),
                   np.zeros((0, m, 6, 6)), np.zeros((0, m)), np.zeros(0, np.uint64),
                   np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

    @classmethod
    def of(cls, **columns: Any) -> TrackColumns:
        """Columns from array-likes, converted to their dtypes (always copied)."""
        return cls(
            np.array(columns["track_id"], np.int64), np.array(columns["status"], np.int8),
            np.array(columns["time_s"], np.float64), np.array(columns["x"], np.float64),
            np.array(columns["P"], np.float64), np.array(columns["mu"], np.float64),
            np.array(columns["hit_bits"], np.uint64), np.array(columns["n_opportunities"], np.int64),
            np.array(columns["n_hits"], np.int64), np.array(columns["created_s"], np.float64),
            np.array(columns["last_hit_s"], np.float64),
        )

    def take(self, index: Index) -> TrackColumns:
        """The rows selected by a boolean mask, an integer index array or a slice (a copy,
        except for a slice, which gives views)."""
        return TrackColumns(*(getattr(self, f.name)[index] for f in fields(self)))

    @classmethod
    def concat(cls, parts: Sequence[TrackColumns]) -> TrackColumns:
        """The rows of ``parts`` one after the other (at least one part)."""
        if not parts:
            raise ValueError("concat needs at least one part")
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def copy(self) -> TrackColumns:
        return TrackColumns(*(getattr(self, f.name).copy() for f in fields(self)))

    def equals(self, other: TrackColumns) -> bool:
        """Same columns, dtypes and values (bit for bit, NaN equal to NaN)."""
        return all(
            getattr(self, f.name).dtype == getattr(other, f.name).dtype
            and np.array_equal(getattr(self, f.name), getattr(other, f.name), equal_nan=True)
            for f in fields(self)
        )
