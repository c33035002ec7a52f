"""Ingest helpers: detections (numpy columns) to IngestDetections request messages.

Bulk floats travel as `skybridge.common.v1.DoubleArray.le_bytes` by default (the server
accepts packed `repeated double` too): packed values go through a Python float each when
filled, bytes do not. This follows the orbit service's measurement (recorded in
orbit.proto); the threat batches were not measured separately.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
from google.protobuf import timestamp_pb2
from skybridge.common.v1 import common_pb2
from skybridge.threat.v1 import threat_pb2

from services.threat.detections import Detections


def double_array(values: np.ndarray, packed: bool = False) -> common_pb2.DoubleArray:
    values = np.asarray(values, float)
    if packed:
        return common_pb2.DoubleArray(shape=list(values.shape),
                                      packed=common_pb2.PackedDoubles(values=values.ravel()))
    return common_pb2.DoubleArray(shape=list(values.shape),
                                  le_bytes=np.ascontiguousarray(values, "<f8").tobytes())


def batch_request(dets: Detections, *, sensor_ids: np.ndarray | None = None,
                  request_id: str = "", packed: bool = False,
                  azimuth_elevation: tuple[np.ndarray, np.ndarray] | None = None,
                  with_noise: bool = True) -> threat_pb2.IngestDetectionsRequest:
    """One request for all of ``dets``; sensor ids default to ``sensor_index + 1``."""
    base = float(np.floor(dets.time.min())) if len(dets) else 0.0
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dets.epoch + timedelta(seconds=base))
    ids = dets.sensor_index + 1 if sensor_ids is None else sensor_ids
    batch = threat_pb2.DetectionBatch(
        base_time=stamp, time_offsets_s=double_array(dets.time - base, packed),
        sensor_ids=np.asarray(ids, np.uint32).tolist(),
        intensity=double_array(dets.intensity, packed))
    if with_noise:
        batch.noise_rad.CopyFrom(double_array(dets.noise_rad, packed))
    if azimuth_elevation is None:
        batch.los_ecef.CopyFrom(double_array(dets.los_unit_ecef, packed))
    else:
        batch.los_sensor_frame.azimuth_rad.CopyFrom(double_array(azimuth_elevation[0], packed))
        batch.los_sensor_frame.elevation_rad.CopyFrom(double_array(azimuth_elevation[1], packed))
    return threat_pb2.IngestDetectionsRequest(batch=batch, request_id=request_id)


def chunked(dets: Detections, chunk_s: float, start_s: float | None = None,
            end_s: float | None = None) -> Iterator[Detections]:
    """Consecutive time slices ``[a, a + chunk_s)`` of ``dets`` (times from its epoch)."""
    if not len(dets):
        return
    a = float(np.floor(dets.time.min())) if start_s is None else start_s
    end = float(dets.time.max()) + 1e-9 if end_s is None else end_s
    while a < end:
        sel = (dets.time >= a) & (dets.time < min(a + chunk_s, end))
        if np.any(sel):
            yield dets.take(sel)
        a += chunk_s


def unix_seconds(epoch: datetime, t_s: float) -> float:
    return epoch.timestamp() + t_s
