"""Checking a columnar detection batch and turning its lines of sight into ECEF.

Pure numpy, no per-detection Python loops. Field names in violations follow the proto
(`batch.time_offsets_s`, `batch.sensor_ids`, `batch.los_ecef`...). A batch with any
violation is refused whole (the tracker never sees it); detections that are merely late
are not violations: the tracker drops and counts them (see `services.threat.engine`).

Sensor frame for azimuth/elevation (documented in the proto): nadir-pointing, built from
the satellite's ECEF position r and velocity v: z = -r/|r| (nadir), x = v made
perpendicular to z and normalised (along track), y = z x x (cross track);
los = cos(el) cos(az) x + cos(el) sin(az) y + sin(el) z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from shared.errors import FieldViolation

UNIT_TOLERANCE = 1e-6
MAX_LISTED_ROWS = 5


@dataclass
class RawBatch:
    """One decoded batch: times in tracker seconds, columns as numpy arrays."""

    time_s: np.ndarray  # (N,)
    sensor_ids: np.ndarray  # (N,) int64, `sensors/{id}`
    los_ecef: np.ndarray | None  # (N,3) or None when azimuth/elevation are given
    azimuth_rad: np.ndarray | None
    elevation_rad: np.ndarray | None
    noise_rad: np.ndarray | None  # (N,) or None: the sensor model's
    intensity: np.ndarray | None  # (N,) or None

    def __len__(self) -> int:
        return int(self.time_s.shape[0])


def _rows(mask: np.ndarray) -> str:
    bad = np.flatnonzero(mask)
    listed = ", ".join(str(int(r)) for r in bad[:MAX_LISTED_ROWS])
    more = f" and {bad.size - MAX_LISTED_ROWS} more" if bad.size > MAX_LISTED_ROWS else ""
    return f"rows {listed}{more} ({bad.size} of {mask.size})"


def check(batch: RawBatch, *, known_sensor_ids: np.ndarray, min_time_s: float,
          max_time_s: float) -> list[FieldViolation]:
    """Every problem of the batch, one violation per field and kind of problem."""
    out: list[FieldViolation] = []
    n = len(batch)
    t = batch.time_s
    finite_t = np.isfinite(t)
    if not np.all(finite_t):
        out.append(FieldViolation("batch.time_offsets_s", f"{_rows(~finite_t)}: not finite"))
    early = finite_t & (t < min_time_s)
    if np.any(early):
        out.append(FieldViolation("batch.time_offsets_s",
                                  f"{_rows(early)}: before the tracker epoch"))
    future = finite_t & (t > max_time_s)
    if np.any(future):
        out.append(FieldViolation(
            "batch.time_offsets_s",
            f"{_rows(future)}: too far in the future of the server clock"))
    unknown = ~np.isin(batch.sensor_ids, known_sensor_ids)
    if np.any(unknown):
        ids = sorted({int(i) for i in batch.sensor_ids[unknown][:100]})[:MAX_LISTED_ROWS]
        out.append(FieldViolation(
            "batch.sensor_ids",
            f"{_rows(unknown)}: unknown sensor ids {ids}; known: "
            f"{[int(i) for i in known_sensor_ids]}"))
    if batch.los_ecef is not None:
        los = batch.los_ecef
        finite = np.all(np.isfinite(los), axis=1)
        if not np.all(finite):
            out.append(FieldViolation("batch.los_ecef", f"{_rows(~finite)}: not finite (NaN)"))
        norm = np.linalg.norm(np.where(finite[:, None], los, 1.0), axis=1)
        off = finite & (np.abs(norm - 1.0) > UNIT_TOLERANCE)
        if np.any(off):
            out.append(FieldViolation(
                "batch.los_ecef",
                f"{_rows(off)}: not a unit vector (norm must be within {UNIT_TOLERANCE:g} of 1)"))
    else:
        az, el = batch.azimuth_rad, batch.elevation_rad
        assert az is not None and el is not None  # one of the two line-of-sight forms
        bad_az = ~np.isfinite(az)
        if np.any(bad_az):
            out.append(FieldViolation("batch.los_sensor_frame.azimuth_rad",
                                      f"{_rows(bad_az)}: not finite"))
        bad_el = ~(np.isfinite(el) & (np.abs(el) <= np.pi / 2))
        if np.any(bad_el):
            out.append(FieldViolation("batch.los_sensor_frame.elevation_rad",
                                      f"{_rows(bad_el)}: must be finite, -pi/2 to pi/2"))
    if batch.noise_rad is not None:
        bad = ~(np.isfinite(batch.noise_rad) & (batch.noise_rad > 0) & (batch.noise_rad < 0.1))
        if np.any(bad):
            out.append(FieldViolation(
                "batch.noise_rad", f"{_rows(bad)}: must be positive and below 0.1 rad"))
    if batch.intensity is not None:
        bad = ~(np.isfinite(batch.intensity) & (batch.intensity >= 0))
        if np.any(bad):
            out.append(FieldViolation("batch.intensity",
                                      f"{_rows(bad)}: must be finite and not negative"))
    del n
    return out


def sensor_frame(position_m: np.ndarray, velocity_m_s: np.ndarray) -> np.ndarray:
    """Rows x, y, z of the nadir-pointing sensor frame, ``(N, 3, 3)`` (see module doc)."""
    z = -position_m / np.linalg.norm(position_m, axis=1, keepdims=True)
    x = velocity_m_s - np.einsum("ni,ni->n", velocity_m_s, z)[:, None] * z
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def los_from_angles(azimuth_rad: np.ndarray, elevation_rad: np.ndarray,
                    position_m: np.ndarray, velocity_m_s: np.ndarray) -> np.ndarray:
    """Unit ECEF lines of sight from sensor-frame azimuth/elevation."""
    ce = np.cos(elevation_rad)
    local = np.stack([ce * np.cos(azimuth_rad), ce * np.sin(azimuth_rad),
                      np.sin(elevation_rad)], axis=1)
    los = np.einsum("nk,nki->ni", local, sensor_frame(position_m, velocity_m_s))
    return cast(np.ndarray, los / np.linalg.norm(los, axis=1, keepdims=True))


def angles_from_los(los: np.ndarray, position_m: np.ndarray, velocity_m_s: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`los_from_angles` (for clients and tests)."""
    local = np.einsum("nki,ni->nk", sensor_frame(position_m, velocity_m_s), los)
    return np.arctan2(local[:, 1], local[:, 0]), np.arcsin(np.clip(local[:, 2], -1, 1))
