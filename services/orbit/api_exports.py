"""The OrbitService export RPC: ExportEphemeris (CCSDS OEM or CZML, streamed).

Translation only: the request to a selection, sample instants and a format (validated
against the limits of :mod:`services.orbit.api`), the selection through
:class:`services.orbit.catalog_app.CatalogApp`, the document's chunks from
:mod:`services.orbit.export_app` to ExportEphemerisResponse messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
from google.protobuf import timestamp_pb2
from skybridge.orbit.v1 import orbit_pb2

from services.orbit.api_fields import (
    MAX_STEP_S,
    MIN_STEP_S,
    RunCpu,
    _as_of,
    _time,
    window_field,
)
from services.orbit.catalog import CatalogSnapshot
from services.orbit.catalog_app import CatalogApp
from services.orbit.export_app import (
    MAX_EXPORT_SAMPLES,
    MAX_SAMPLES_PER_SATELLITE,
    ExportFormat,
    export_chunks,
    plan_export,
    sample_count,
    sample_times,
    unix_us_to_jd,
)
from shared.auth import requires
from shared.errors import ResourceExhausted, Violations

__all__ = ["ExportRpcs"]

_Request = orbit_pb2.ExportEphemerisRequest
_EXPORT_FORMATS = {_Request.FORMAT_OEM: ExportFormat.OEM,
                   _Request.FORMAT_CZML: ExportFormat.CZML}
_MIN_STEP_US, _MAX_STEP_US = round(MIN_STEP_S * 1e6), round(MAX_STEP_S * 1e6)


def _micros(check: Violations, ts: timestamp_pb2.Timestamp, field: str) -> int | None:
    """A window bound as integer UTC microseconds (None, with a violation, when it is
    missing, out of range or finer than a microsecond)."""
    if _time(check, ts, field) is None:
        return None
    if ts.nanos % 1000:
        check.add(field, "must be a whole number of microseconds")
        return None
    return ts.seconds * 1_000_000 + ts.nanos // 1000


class ExportRpcs:
    """The export part of :class:`services.orbit.api.OrbitServicer`."""

    app: CatalogApp
    run_cpu: RunCpu
    _streams: asyncio.Semaphore
    # from services.orbit.api_geometry.GeometryRpcs, the other half of the servicer
    _select: Callable[..., Awaitable[tuple[CatalogSnapshot, np.ndarray]]]

    @requires("orbit.read")
    async def ExportEphemeris(self, request, context):
        check = Violations()
        check.require(request.HasField("selection") or None, "selection")
        step = None
        start, end = window_field(check, request, _micros)
        if check.require(request.HasField("step") or None, "step"):
            d = request.step
            step = d.seconds * 1_000_000 + d.nanos // 1000
            in_range = check.check(_MIN_STEP_US <= step <= _MAX_STEP_US, "step",
                                   f"must be {MIN_STEP_S:g} s .. {MAX_STEP_S:g} s (1 day)")
            if not (in_range and check.check(d.nanos % 1000 == 0, "step",
                                             "must be a whole number of microseconds")):
                step = None
        fmt = _EXPORT_FORMATS.get(request.format)
        check.check(fmt is not None, "format", "set FORMAT_OEM or FORMAT_CZML")
        as_of = _as_of(check, request)
        samples = 0
        if start is not None and end is not None and step is not None:
            samples = sample_count(start, end, step)
            check.check(samples <= MAX_SAMPLES_PER_SATELLITE, "step",
                        f"at most {MAX_SAMPLES_PER_SATELLITE} samples per satellite; the "
                        f"window and step give {samples}")
        check.raise_if_any("the export request is invalid")
        assert start is not None and end is not None and step is not None and fmt is not None
        snap, idx = await self._select(request.selection, "selection", as_of,
                                       default_all=False)
        total = int(idx.size) * samples
        if total > MAX_EXPORT_SAMPLES:
            raise ResourceExhausted(
                f"{idx.size} satellites x {samples} samples = {total}; the limit is "
                f"{MAX_EXPORT_SAMPLES} per export",
                reason="TOO_MANY_SAMPLES",
                metadata={"resource": "export_samples", "limit": str(MAX_EXPORT_SAMPLES)},
                violations=[("step", f"satellites x samples must be at most "
                                     f"{MAX_EXPORT_SAMPLES} (got {idx.size} x {samples}); "
                                     "use a longer step, a shorter window or fewer "
                                     "satellites")])
        times = sample_times(start, end, step)
        jd, fr = unix_us_to_jd(times[[0, -1]])
        self.app.check_epoch_offset(snap, idx, jd, fr, "window")
        plan = plan_export(fmt, snap, idx, times)
        first = True
        async for chunk in export_chunks(plan, self.run_cpu, self._streams):
            msg = orbit_pb2.ExportEphemerisResponse(
                data=chunk.data, omitted_satellites=[f"satellites/{n}" for n in chunk.omitted])
            if first:
                msg.media_type = plan.media_type
                msg.file_name = plan.file_name
                msg.satellite_count = int(idx.size)
                msg.samples_per_satellite = samples
                msg.catalog_version = snap.version
                first = False
            yield msg
