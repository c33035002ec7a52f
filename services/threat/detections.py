"""Columnar detection batch: the single input type of the threat tracker.

A :class:`Detections` holds ``N`` line-of-sight detections as parallel numpy
columns (no per-detection Python objects).  Frame: ECEF (WGS84), metres;
times are float seconds from ``epoch`` (a timezone-aware UTC ``datetime``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

DEFAULT_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Detections:
    """``N`` infrared line-of-sight detections.

    Columns (all length ``N``):

    * ``time`` ``(N,)`` float64 -- seconds after ``epoch`` (frame time).
    * ``sensor_index`` ``(N,)`` int32 -- which sensor satellite reported it.
    * ``sensor_position_ecef_m`` ``(N,3)`` float64 -- sensor position at ``time``, ECEF m.
    * ``los_unit_ecef`` ``(N,3)`` float64 -- unit line of sight sensor->target, ECEF.
    * ``noise_rad`` ``(N,)`` float64 -- 1-sigma angular noise per axis, radians.
    * ``intensity`` ``(N,)`` float64 -- irradiance proxy, arbitrary units (W/m^2-like).
    * ``truth_id`` ``(N,)`` int64 -- simulator truth label; ``-1`` for false alarms
      or when unknown (real data).  The tracker never reads it.
    * ``epoch`` -- UTC datetime of ``time == 0``.
    """

    time: np.ndarray
    sensor_index: np.ndarray
    sensor_position_ecef_m: np.ndarray
    los_unit_ecef: np.ndarray
    noise_rad: np.ndarray
    intensity: np.ndarray
    truth_id: np.ndarray
    epoch: datetime = field(default=DEFAULT_EPOCH)

    def __post_init__(self) -> None:
        cols: dict[str, np.ndarray] = {
            "time": np.asarray(self.time, dtype=np.float64).reshape(-1),
            "sensor_index": np.asarray(self.sensor_index, dtype=np.int32).reshape(-1),
            "sensor_position_ecef_m": np.asarray(
                self.sensor_position_ecef_m, dtype=np.float64
            ).reshape(-1, 3),
            "los_unit_ecef": np.asarray(self.los_unit_ecef, dtype=np.float64).reshape(-1, 3),
            "noise_rad": np.asarray(self.noise_rad, dtype=np.float64).reshape(-1),
            "intensity": np.asarray(self.intensity, dtype=np.float64).reshape(-1),
            "truth_id": np.asarray(self.truth_id, dtype=np.int64).reshape(-1),
        }
        n = cols["time"].shape[0]
        for name, arr in cols.items():
            if arr.shape[0] != n:
                raise ValueError(f"column {name} has {arr.shape[0]} rows, expected {n}")
            object.__setattr__(self, name, arr)
        if n:
            norms = np.linalg.norm(cols["los_unit_ecef"], axis=1)
            if not np.all(np.abs(norms - 1.0) < 1e-6):
                raise ValueError("los_unit_ecef rows must be unit vectors")
            if not np.all(cols["noise_rad"] > 0):
                raise ValueError("noise_rad must be positive")
            if not np.all(np.isfinite(cols["time"])):
                raise ValueError("time must be finite")
        if self.epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware (UTC)")

    # ------------------------------------------------------------------ helpers
    def __len__(self) -> int:
        return int(self.time.shape[0])

    @classmethod
    def empty(cls, epoch: datetime = DEFAULT_EPOCH) -> Detections:
        z = np.zeros(0)
        return cls(z, z, np.zeros((0, 3)), np.zeros((0, 3)), z, z, z, epoch)

    def take(self, index: np.ndarray | slice | Sequence[int]) -> Detections:
        """Rows selected by an index array, boolean mask or slice."""
        return Detections(
            self.time[index],
            self.sensor_index[index],
            self.sensor_position_ecef_m[index],
            self.los_unit_ecef[index],
            self.noise_rad[index],
            self.intensity[index],
            self.truth_id[index],
            self.epoch,
        )

    def sort_order(self) -> np.ndarray:
        """Row order of a stable sort by (time, sensor_index)."""
        return np.lexsort((self.sensor_index, self.time))

    def sorted(self) -> Detections:
        """Stable sort by (time, sensor_index)."""
        return self.take(self.sort_order())

    def rebased(self, epoch: datetime) -> Detections:
        """Same detections with times re-expressed relative to ``epoch``."""
        shift = (self.epoch - epoch).total_seconds()
        d = self.take(slice(None))
        object.__setattr__(d, "time", d.time + shift)
        object.__setattr__(d, "epoch", epoch)
        return d

    @classmethod
    def concat(cls, parts: Sequence[Detections]) -> Detections:
        """Concatenate batches (times re-based onto the first batch's epoch)."""
        parts = [p for p in parts if p is not None]
        if not parts:
            return cls.empty()
        epoch = parts[0].epoch
        parts = [p if p.epoch == epoch else p.rebased(epoch) for p in parts]
        return cls(
            np.concatenate([p.time for p in parts]),
            np.concatenate([p.sensor_index for p in parts]),
            np.concatenate([p.sensor_position_ecef_m for p in parts]),
            np.concatenate([p.los_unit_ecef for p in parts]),
            np.concatenate([p.noise_rad for p in parts]),
            np.concatenate([p.intensity for p in parts]),
            np.concatenate([p.truth_id for p in parts]),
            epoch,
        )
