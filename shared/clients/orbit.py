"""A small async client for other services: Propagate and VisibleSatellites as numpy.

    from shared.clients.orbit import propagate, visible_satellites
    stub = orbit_pb2_grpc.OrbitServiceStub(kit.channels.channel("orbit", [SERVICE]))
    states = await propagate(stub, group="groups/tracking-sensors", start=t0, step_s=15,
                             count=240, frame="itrf")
    states.positions   # (T, N, 3) float64, NaN where states.error_codes != 0

Arrays are assembled chunk by chunk with ``numpy.frombuffer`` (one copy per chunk into
the preallocated result); nothing loops over satellites, instants or points in Python.
Requests built here ask for the component-major layout (``(T, 3, N)`` on the wire, the
kernel's native order, which the server sends without repacking); ``positions`` and
``velocities`` are then ``(T, N, 3)`` *views* of ``(T, 3, N)`` buffers (not C-contiguous:
``numpy.ascontiguousarray`` them if a caller needs row-major memory). Requests built
elsewhere get the default ``(T, N, 3)`` layout, and the same shapes.
Errors are the server's ``grpc.aio.AioRpcError`` (read details with
``shared.status.details_of``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from google.protobuf import duration_pb2, timestamp_pb2
from numpy.typing import ArrayLike
from skybridge.common.v1 import common_pb2
from skybridge.orbit.v1 import orbit_pb2

from shared.wire import double_array, from_double_array, from_le_bytes

#: Call metadata: (key, value) pairs.
Metadata = Sequence[tuple[str, str]]

__all__ = [
    "Propagation",
    "PropagationChunk",
    "VisibleSet",
    "iter_propagate",
    "propagate",
    "selection",
    "visible_satellites",
]

_FRAMES = {"teme": orbit_pb2.FRAME_TEME, "itrf": orbit_pb2.FRAME_ITRF,
           "geodetic": orbit_pb2.FRAME_GEODETIC}


@dataclass(frozen=True)
class PropagationChunk:
    first_step: int
    times_unix_s: np.ndarray  # (T,)
    positions: np.ndarray  # (T, N, 3), possibly a view of (T, 3, N)
    velocities: np.ndarray | None
    error_codes: np.ndarray  # (T, N) int8


@dataclass(frozen=True)
class Propagation:
    """A whole Propagate answer. Positions are km (TEME/ITRF) or (lat_deg, lon_deg,
    alt_m) (geodetic); NaN where ``error_codes != 0``."""

    catalog_numbers: np.ndarray  # (N,) int64
    element_set_epochs_unix_s: np.ndarray  # (N,)
    times_unix_s: np.ndarray  # (T,)
    positions: np.ndarray  # (T, N, 3), possibly a view of (T, 3, N)
    velocities: np.ndarray | None
    error_codes: np.ndarray  # (T, N) int8
    catalog_version: int

    @property
    def ok(self) -> np.ndarray:
        return np.asarray(self.error_codes == 0)


@dataclass(frozen=True)
class VisibleSet:
    """VisibleSatellites as CSR columns: point i sees entries offsets[i]:offsets[i+1]."""

    offsets: np.ndarray  # (P + 1,) int64
    catalog_numbers: np.ndarray  # (K,) uint32
    azimuth_deg: np.ndarray
    elevation_deg: np.ndarray
    range_km: np.ndarray
    flagged_catalog_numbers: np.ndarray
    catalog_version: int

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def _timestamp(when: datetime | timestamp_pb2.Timestamp) -> timestamp_pb2.Timestamp:
    if isinstance(when, timestamp_pb2.Timestamp):
        return when
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when if when.tzinfo else when.replace(tzinfo=UTC))
    return ts


def selection(*, catalog_numbers: Sequence[int] | np.ndarray | None = None,
              group: str | None = None, all: bool = False) -> orbit_pb2.SatelliteSelection:
    """A SatelliteSelection (``group`` as ``groups/{id}`` or a bare id)."""
    sel = orbit_pb2.SatelliteSelection()
    if catalog_numbers is not None:
        sel.catalog_numbers.extend(np.asarray(catalog_numbers, dtype=np.int64).tolist())
    if group:
        sel.group = group if group.startswith("groups/") else f"groups/{group}"
    sel.all = all
    return sel


def propagate_request(
    *,
    catalog_numbers: Sequence[int] | np.ndarray | None = None,
    group: str | None = None,
    all: bool = False,
    start: datetime | None = None,
    step_s: float | None = None,
    count: int | None = None,
    times: Sequence[datetime] | None = None,
    frame: str = "itrf",
    include_velocity: bool = False,
    as_of: datetime | None = None,
    chunk_steps: int = 0,
    layout: orbit_pb2.StateLayout = orbit_pb2.STATE_LAYOUT_TIME_COMPONENT_SATELLITE,
) -> orbit_pb2.PropagateRequest:
    request = orbit_pb2.PropagateRequest(
        selection=selection(catalog_numbers=catalog_numbers, group=group, all=all),
        frame=_FRAMES[frame], include_velocity=include_velocity, chunk_steps=chunk_steps,
        layout=layout)
    if times is not None:
        request.time_list.times.extend(_timestamp(t) for t in times)
    else:
        if start is None or step_s is None or count is None:
            raise ValueError("give start, step_s and count, or times")
        request.grid.start_time.CopyFrom(_timestamp(start))
        request.grid.step.CopyFrom(duration_pb2.Duration())
        request.grid.step.FromTimedelta(timedelta(seconds=step_s))
        request.grid.count = count
    if as_of is not None:
        request.as_of_time.CopyFrom(_timestamp(as_of))
    return request


def _component_major(msg: orbit_pb2.PropagateResponse) -> bool:
    return msg.layout == orbit_pb2.STATE_LAYOUT_TIME_COMPONENT_SATELLITE


def _states(array: common_pb2.DoubleArray, component_major: bool) -> np.ndarray:
    """A chunk's (T, N, 3) states (a view of the wire's (T, 3, N) when component-major)."""
    values = from_double_array(array)
    return values.transpose(0, 2, 1) if component_major else values


async def iter_propagate(stub: Any, request: orbit_pb2.PropagateRequest, *,
                         metadata: Metadata | None = None,
                         rpc_timeout: float | None = None
                         ) -> AsyncIterator[tuple[orbit_pb2.PropagateResponse,
                                                  PropagationChunk]]:
    """Yield ``(raw message, chunk)`` per streamed chunk (bounded memory)."""
    async for msg in stub.Propagate(request, metadata=metadata, timeout=rpc_timeout):
        cm = _component_major(msg)
        pos = _states(msg.positions, cm)
        vel = _states(msg.velocities, cm) if msg.HasField("velocities") else None
        err = from_le_bytes(msg.error_codes, "i1").reshape(pos.shape[:2])
        yield msg, PropagationChunk(msg.first_step, from_double_array(msg.times), pos, vel,
                                    err)


async def propagate(stub: Any, request: orbit_pb2.PropagateRequest | None = None, *,
                    metadata: Metadata | None = None, rpc_timeout: float | None = None,
                    **kwargs: Any) -> Propagation:
    """The whole answer of Propagate as numpy arrays (see :func:`propagate_request` for
    the keyword form)."""
    request = request or propagate_request(**kwargs)
    assembly: _Assembly | None = None
    async for msg in stub.Propagate(request, metadata=metadata, timeout=rpc_timeout):
        if assembly is None:
            assembly = _Assembly.from_header(msg)
        assembly.add(msg)
        del msg
    if assembly is None:
        raise RuntimeError("Propagate answered with an empty stream")
    return assembly.result()


@dataclass
class _Assembly:
    """Arrays for a whole Propagate answer, filled chunk by chunk (one copy per chunk,
    contiguous in either layout)."""

    numbers: np.ndarray
    epochs: np.ndarray
    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None
    errors: np.ndarray
    component_major: bool
    version: int

    @classmethod
    def from_header(cls, msg: orbit_pb2.PropagateResponse) -> _Assembly:
        numbers = np.array(msg.catalog_numbers, dtype=np.int64)
        total, n = msg.total_steps, numbers.size
        cm = _component_major(msg)
        shape = (total, 3, n) if cm else (total, n, 3)
        return cls(numbers, from_double_array(msg.element_set_epochs), np.empty(total),
                   np.empty(shape), np.empty(shape) if msg.HasField("velocities") else None,
                   np.empty((total, n), np.int8), cm, int(msg.catalog_version))

    def add(self, msg: orbit_pb2.PropagateResponse) -> None:
        chunk = from_double_array(msg.positions)
        i = msg.first_step
        j = i + chunk.shape[0]
        self.positions[i:j] = chunk
        self.times[i:j] = from_double_array(msg.times)
        self.errors[i:j] = from_le_bytes(msg.error_codes, "i1").reshape(j - i, -1)
        if self.velocities is not None:
            self.velocities[i:j] = from_double_array(msg.velocities)

    def result(self) -> Propagation:
        pos, vel = self.positions, self.velocities
        if self.component_major:
            pos = pos.transpose(0, 2, 1)
            vel = vel.transpose(0, 2, 1) if vel is not None else None
        return Propagation(self.numbers, self.epochs, self.times, pos, vel, self.errors,
                           self.version)


async def visible_satellites(stub: Any, lat_deg: ArrayLike, lon_deg: ArrayLike,
                             alt_m: ArrayLike, when: datetime,
                             min_elevation_deg: float = 0.0, *,
                             catalog_numbers: Sequence[int] | np.ndarray | None = None,
                             group: str | None = None, as_of: datetime | None = None,
                             metadata: Metadata | None = None,
                             rpc_timeout: float | None = None) -> VisibleSet:
    """VisibleSatellites for ground points given as arrays (degrees, metres)."""
    lat, lon, alt = np.broadcast_arrays(np.atleast_1d(np.asarray(lat_deg, float)),
                                        np.atleast_1d(np.asarray(lon_deg, float)),
                                        np.atleast_1d(np.asarray(alt_m, float)))
    request = orbit_pb2.VisibleSatellitesRequest(
        point_array=double_array(np.stack((lat, lon, alt), axis=-1)),
        time=_timestamp(when), min_elevation_deg=min_elevation_deg)
    if catalog_numbers is not None or group:
        request.selection.CopyFrom(selection(catalog_numbers=catalog_numbers, group=group))
    if as_of is not None:
        request.as_of_time.CopyFrom(_timestamp(as_of))
    answer = await stub.VisibleSatellites(request, metadata=metadata, timeout=rpc_timeout)
    return VisibleSet(
        offsets=from_le_bytes(answer.offsets, "<i8"),
        catalog_numbers=from_le_bytes(answer.catalog_numbers, "<u4"),
        azimuth_deg=from_double_array(answer.azimuth_deg),
        elevation_deg=from_double_array(answer.elevation_deg),
        range_km=from_double_array(answer.range_km),
        flagged_catalog_numbers=np.array(answer.flagged_catalog_numbers, dtype=np.int64),
        catalog_version=answer.catalog_version)
