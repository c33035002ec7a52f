"""The OrbitService geometry RPCs: Propagate, VisibleSatellites, PredictPasses.

Translation only: the request to instants, points and a satellite selection (validated
against the limits of :mod:`services.orbit.api`), the snapshot, selection and cached
propagator from :class:`services.orbit.catalog_app.CatalogApp`, the domain's arrays to
columnar messages (serialized in the CPU pool)."""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import timedelta

import numpy as np
from skybridge.orbit.v1 import orbit_pb2

from services.orbit.api_fields import (
    _BYTES_PER_PAIR,
    _FRAMES,
    _LAYOUTS,
    _MAX_VIOLATIONS,
    CHUNK_STATE_BUDGET,
    MAX_PASS_POINTS,
    MAX_PASS_WINDOW,
    MAX_PASS_WORK,
    MAX_PASSES,
    MAX_SELECTION,
    MAX_STATES_PER_REQUEST,
    MAX_STEP_S,
    MAX_STEPS,
    MAX_TIME,
    MAX_VISIBILITY_ANSWER_BYTES,
    MAX_VISIBILITY_POINTS,
    MIN_STEP_S,
    MIN_TIME,
    PIPELINE_DEPTH,
    RunCpu,
    _as_of,
    _grid_jd,
    _group_id,
    _satellite_number,
    _time,
    window_field,
)
from services.orbit.catalog import CatalogSnapshot
from services.orbit.catalog_app import CatalogApp
from services.orbit.passes import predict_passes
from services.orbit.states import (
    FRAMES,
    chunk_steps_for,
    compute_chunk,
    compute_component_chunk,
    jd_to_unix,
)
from services.orbit.visibility import TooManyPairs, visible_satellites
from shared.auth import requires
from shared.errors import ResourceExhausted, Violations
from shared.frames import teme_to_itrf
from shared.geodesy import validate_geodetic
from shared.wire import (
    bytes_field,
    datetime_to_timestamp,
    double_array,
    double_array_field,
    duration_to_seconds,
    from_double_array,
    timestamp_to_jd,
)

__all__ = ["GeometryRpcs"]


class GeometryRpcs:
    """The geometry half of :class:`services.orbit.api.OrbitServicer`."""

    app: CatalogApp
    run_cpu: RunCpu
    _streams: asyncio.Semaphore

    async def _select(self, selection: orbit_pb2.SatelliteSelection, field: str,
                      as_of_us: int | None, *, default_all: bool) -> tuple[CatalogSnapshot,
                                                                           np.ndarray]:
        """Resolve a SatelliteSelection to (snapshot, column indices)."""
        check = Violations()
        chosen = [name for name, present in (
            ("catalog_numbers", len(selection.catalog_numbers) > 0),
            ("satellites", len(selection.satellites) > 0),
            ("group", bool(selection.group)),
            ("all", selection.all)) if present]
        if not chosen and default_all:
            chosen = ["all"]
        if len(chosen) != 1:
            check.add(field, "set exactly one of catalog_numbers, satellites, group, all"
                      + (f" (got {', '.join(chosen)})" if chosen else ""))
            check.raise_if_any("the satellite selection is invalid")
        how = chosen[0]
        numbers: np.ndarray | None = None
        if how in ("catalog_numbers", "satellites"):
            if how == "catalog_numbers":
                numbers = np.array(selection.catalog_numbers, dtype=np.int64)
            else:
                parsed = [_satellite_number(check, n, f"{field}.satellites[{i}]")
                          for i, n in enumerate(selection.satellites[:MAX_SELECTION + 1])]
                numbers = np.array([p if p is not None else -1 for p in parsed], dtype=np.int64)
            if numbers.size > MAX_SELECTION:
                check.add(f"{field}.{how}", f"at most {MAX_SELECTION} entries, got {numbers.size}")
            else:
                uniq, first, counts = np.unique(numbers, return_index=True, return_counts=True)
                for u in np.flatnonzero(counts > 1)[:_MAX_VIOLATIONS]:
                    check.add(f"{field}.{how}", f"catalog number {uniq[u]} is repeated")
            check.raise_if_any("the satellite selection is invalid")
        group_id = None
        if how == "group":
            group_id = _group_id(check, selection.group, f"{field}.group")
            check.raise_if_any("the satellite selection is invalid")
        return await self.app.select(field, as_of_us, numbers=numbers, group_id=group_id,
                                     how=how)

    # -- propagation ---------------------------------------------------------------
    def _times(self, check: Violations, request) -> tuple[np.ndarray, np.ndarray, str]:
        """(jd, fr, field) of the request's instants; violations on ``check``."""
        which = request.WhichOneof("times")
        empty = np.zeros(0), np.zeros(0), "times"
        if which is None:
            check.add("grid", "set grid or time_list")
            return empty
        if which == "grid":
            grid = request.grid
            start = _time(check, grid.start_time, "grid.start_time") if grid.HasField(
                "start_time") else check.add("grid.start_time", "is required")
            step_s = duration_to_seconds(grid.step)
            ok_step = check.check(MIN_STEP_S <= step_s <= MAX_STEP_S, "grid.step",
                                  f"must be {MIN_STEP_S:g} s .. {MAX_STEP_S:g} s (1 day)")
            ok_count = check.check(1 <= grid.count <= MAX_STEPS, "grid.count",
                                   f"must be 1..{MAX_STEPS}, got {grid.count}")
            if start is None or not (ok_step and ok_count):
                return empty
            end = start + timedelta(seconds=step_s * (grid.count - 1))
            if not check.check(end < MAX_TIME, "grid.count",
                               f"the grid must end before {MAX_TIME:%Y-%m-%d}"):
                return empty
            jd, fr = _grid_jd(grid.start_time, step_s, grid.count)
            return jd, fr, "grid.start_time"
        times = request.time_list.times
        n = len(times)
        if not check.check(1 <= n <= MAX_STEPS, "time_list.times",
                           f"must hold 1..{MAX_STEPS} instants, got {n}"):
            return empty
        secs = np.fromiter((t.seconds for t in times), dtype=np.int64, count=n)
        nanos = np.fromiter((t.nanos for t in times), dtype=np.int64, count=n)
        lo, hi = int(MIN_TIME.timestamp()), int(MAX_TIME.timestamp())
        bad = np.flatnonzero((secs < lo) | (secs >= hi) | (nanos < 0) | (nanos > 999_999_999))
        for i in bad[:_MAX_VIOLATIONS]:
            check.add(f"time_list.times[{i}]",
                      f"must be between {MIN_TIME:%Y-%m-%d} and {MAX_TIME:%Y-%m-%d} UTC")
        if bad.size:
            return empty
        days, rem = np.divmod(secs, 86_400)
        jd = 2440587.5 + days.astype(np.float64)
        fr = (rem * 1_000_000_000 + nanos).astype(np.float64) / 86_400_000_000_000
        return jd, fr, "time_list.times"

    @requires("orbit.read")
    async def Propagate(self, request, context):
        check = Violations()
        if not request.HasField("selection"):
            check.add("selection", "is required")
        jd, fr, time_field = self._times(check, request)
        check.check(request.frame in _FRAMES, "frame", "unknown frame")
        check.check(request.chunk_steps <= MAX_STEPS, "chunk_steps", f"at most {MAX_STEPS}")
        check.check(request.layout in _LAYOUTS, "layout", "unknown layout")
        as_of = _as_of(check, request)
        check.raise_if_any("the propagation request is invalid")
        layout = request.layout or orbit_pb2.STATE_LAYOUT_TIME_SATELLITE_COMPONENT
        frame = _FRAMES[request.frame]
        assert frame in FRAMES
        snap, idx = await self._select(request.selection, "selection", as_of, default_all=False)
        n_sats, n_steps = int(idx.size), int(jd.size)
        if n_sats * n_steps > MAX_STATES_PER_REQUEST:
            raise ResourceExhausted(
                f"{n_sats} satellites x {n_steps} instants = {n_sats * n_steps} states; "
                f"the limit is {MAX_STATES_PER_REQUEST} per request",
                reason="TOO_MANY_STATES",
                metadata={"resource": "states_per_request",
                          "limit": str(MAX_STATES_PER_REQUEST)},
                violations=[(time_field.split(".")[0],
                             f"satellites x instants must be at most {MAX_STATES_PER_REQUEST} "
                             f"(got {n_sats} x {n_steps}); split the request in time")])
        self.app.check_epoch_offset(snap, idx, jd, fr, time_field)
        prop = await self.app.propagator(snap, idx)
        steps = chunk_steps_for(n_sats, n_steps, CHUNK_STATE_BUDGET, request.chunk_steps)
        velocity = request.include_velocity
        frame_enum = request.frame or orbit_pb2.FRAME_ITRF
        component_major = layout == orbit_pb2.STATE_LAYOUT_TIME_COMPONENT_SATELLITE
        version = snap.version
        # Chunks are computed PIPELINE_DEPTH at a time in the CPU pool while the stream
        # sends the oldest: with one in flight, the kernel (which takes both cores for
        # ~15 ms a chunk) and the send of the previous chunk took turns, and one straggling
        # kernel thread held up the whole chunk. Chunk k uses buffer set k % depth: the
        # kernel's (T, 7, N) output and the (T, 3, N) positions, reused for the whole
        # stream; chunk k + depth is only submitted once chunk k has been collected.
        depth = PIPELINE_DEPTH
        buffers = [(np.empty((steps, 7, n_sats)), np.empty((steps, 3, n_sats)))
                   if component_major else (None, None) for _ in range(depth)]
        header = orbit_pb2.PropagateResponse(
            catalog_numbers=snap.catalog_numbers[idx].tolist(),
            element_set_epochs=double_array(jd_to_unix(snap.epoch_jd[idx],
                                                       snap.epoch_fr[idx])),
            total_steps=n_steps).SerializeToString()

        def chunk_message(k: int, i: int, j: int) -> bytes:
            """The serialized PropagateResponse of steps [i, j) (chunk k), built in the CPU
            pool: the arrays are copied once, into the message bytes."""
            work, positions = buffers[k % depth]
            if component_major:
                chunk = compute_component_chunk(prop, jd[i:j], fr[i:j], frame, velocity,
                                                work=work[:j - i],  # type: ignore[index]
                                                out=positions[:j - i])  # type: ignore[index]
            else:
                chunk = compute_chunk(prop, jd[i:j], fr[i:j], frame, velocity)
            error = np.ascontiguousarray(chunk.error, dtype=np.int8)
            small = orbit_pb2.PropagateResponse(
                frame=frame_enum, catalog_version=version, first_step=i,
                times=double_array(chunk.unix_s),
                flagged_count=int(np.count_nonzero(error)), layout=layout).SerializeToString()
            pieces = [header] if k == 0 else []
            pieces += [small,
                       *double_array_field(8, np.ascontiguousarray(chunk.position, "<f8")),
                       *bytes_field(10, error)]
            if chunk.velocity is not None:
                pieces += double_array_field(9, np.ascontiguousarray(chunk.velocity, "<f8"))
            return b"".join(pieces)

        bounds = [(i, min(i + steps, n_steps)) for i in range(0, n_steps, steps)]

        def submit(k: int) -> asyncio.Future:
            return asyncio.ensure_future(self.run_cpu(chunk_message, k, *bounds[k]))

        # A slot is held while this stream's next chunk is computed, never while the stream
        # waits for its reader (flow control): two clients that stop reading must not stop
        # every other propagation. A stream that waits holds at most `depth` computed chunks.
        pending: deque[asyncio.Future] = deque()
        try:
            for k in range(len(bounds)):
                async with self._streams:
                    if k == 0:
                        pending.extend(submit(j) for j in range(min(depth, len(bounds))))
                    msg = await pending.popleft()
                    if k + depth < len(bounds):
                        pending.append(submit(k + depth))
                yield msg
                del msg
        finally:
            # (a job already running finishes in the pool, on this stream's own buffers,
            # and its message is dropped)
            for future in pending:
                future.cancel()

    # -- visibility & passes -------------------------------------------------------
    @staticmethod
    def _points(check: Violations, request, limit: int) -> tuple[np.ndarray, ...]:
        n_list = len(request.points)
        has_array = request.HasField("point_array") if hasattr(request, "point_array") else False
        if n_list and has_array:
            check.add("points", "set points or point_array, not both")
            return (np.zeros(0),) * 3
        if has_array:
            try:
                arr = from_double_array(request.point_array)
            except ValueError as exc:
                check.add("point_array", str(exc))
                return (np.zeros(0),) * 3
            if arr.ndim != 2 or arr.shape[1] != 3:
                check.add("point_array.shape", f"must be (P, 3), got {list(arr.shape)}")
                return (np.zeros(0),) * 3
            if not check.check(1 <= arr.shape[0] <= limit, "point_array",
                               f"must hold 1..{limit} points, got {arr.shape[0]}"):
                return (np.zeros(0),) * 3
            lat, lon, alt = arr[:, 0], arr[:, 1], arr[:, 2]
            field = "point_array"
        else:
            if not check.check(1 <= n_list <= limit, "points",
                               f"must hold 1..{limit} points, got {n_list}"):
                return (np.zeros(0),) * 3
            pts = request.points
            lat = np.fromiter((p.latitude_deg for p in pts), np.float64, n_list)
            lon = np.fromiter((p.longitude_deg for p in pts), np.float64, n_list)
            alt = np.fromiter((p.altitude_m for p in pts), np.float64, n_list)
            field = "points"
        problems = validate_geodetic(lat, lon, alt, field=field)
        if field == "point_array":
            problems = [(p.replace(".latitude_deg", "[0]").replace(".longitude_deg", "[1]")
                         .replace(".altitude_m", "[2]"), d) for p, d in problems]
        check.extend(problems[:_MAX_VIOLATIONS])
        return lat, lon, alt

    @staticmethod
    def _min_elevation(check: Violations, value: float) -> float:
        check.check(bool(np.isfinite(value)) and -90.0 <= value <= 90.0, "min_elevation_deg",
                    "must be a finite number of degrees in -90..90")
        return float(value)

    @requires("orbit.read")
    async def VisibleSatellites(self, request, context):
        check = Violations()
        lat, lon, alt = self._points(check, request, MAX_VISIBILITY_POINTS)
        when = None
        if check.require(request.HasField("time") or None, "time"):
            when = _time(check, request.time, "time")
        min_el = self._min_elevation(check, request.min_elevation_deg)
        as_of = _as_of(check, request)
        check.raise_if_any("the visibility request is invalid")
        assert when is not None
        snap, idx = await self._select(request.selection, "selection", as_of, default_all=True)
        jd, fr = timestamp_to_jd(request.time)
        jd_a, fr_a = np.array([jd]), np.array([fr])
        self.app.check_epoch_offset(snap, idx, jd_a, fr_a, "time")
        prop = await self.app.propagator(snap, idx)
        numbers = snap.catalog_numbers[idx]

        max_pairs = MAX_VISIBILITY_ANSWER_BYTES // _BYTES_PER_PAIR

        def work():
            # one trip to the CPU pool: propagate to the instant, visibility (memory
            # bounded, stops early past the answer limit), then the columnar answer
            result = prop.propagate_jd(jd_a, fr_a, with_velocity=False)
            itrf = teme_to_itrf(result.position_km[0], jd, fr)
            try:
                vis = visible_satellites(lat, lon, alt, itrf, min_el, max_pairs=max_pairs)
            except TooManyPairs as exc:
                raise ResourceExhausted(
                    f"at least {exc.found} visible pairs exceed the answer limit of "
                    f"{max_pairs} pairs",
                    reason="ANSWER_TOO_LARGE",
                    metadata={"resource": "visible_pairs", "limit": str(max_pairs)},
                    violations=[("points", "too many (point, satellite) pairs: send fewer "
                                           "points or raise min_elevation_deg"),
                                ("min_elevation_deg", "raise it to shrink the answer")],
                ) from None
            flagged = np.flatnonzero(result.error[0])
            # serialized here, in the pool (the server passes bytes through): the columns
            # are copied once, into the answer
            small = orbit_pb2.VisibleSatellitesResponse(
                flagged_catalog_numbers=numbers[flagged].tolist(),
                catalog_version=snap.version).SerializeToString()
            return b"".join([
                small,
                *bytes_field(1, vis.offsets.astype("<i8")),
                *bytes_field(2, np.take(numbers, vis.sat_index).astype("<u4")),
                *double_array_field(3, np.ascontiguousarray(vis.azimuth_deg, "<f8")),
                *double_array_field(4, np.ascontiguousarray(vis.elevation_deg, "<f8")),
                *double_array_field(5, np.ascontiguousarray(vis.range_km, "<f8"))])

        return await self.run_cpu(work)

    @requires("orbit.read")
    async def PredictPasses(self, request, context):
        check = Violations()
        lat, lon, alt = self._points(check, request, MAX_PASS_POINTS)
        start, end = window_field(check, request, _time)
        if start is not None and end is not None:
            check.check(end - start <= MAX_PASS_WINDOW, "window",
                        f"must be at most {MAX_PASS_WINDOW.days} days long")
        min_el = self._min_elevation(check, request.min_elevation_deg)
        min_dur = duration_to_seconds(request.min_duration)
        check.check(0.0 <= min_dur <= 86_400.0, "min_duration", "must be 0 .. 1 day")
        as_of = _as_of(check, request)
        check.raise_if_any("the pass request is invalid")
        assert start is not None and end is not None
        snap, idx = await self._select(request.selection, "selection", as_of, default_all=True)
        jd0, fr0 = timestamp_to_jd(request.window.start_time)
        jd1, fr1 = timestamp_to_jd(request.window.end_time)
        self.app.check_epoch_offset(snap, idx, np.array([jd0, jd1]), np.array([fr0, fr1]),
                                 "window")
        sets = snap.subset(idx)
        min_period_s = min(e.period_min for e in sets) * 60.0
        step = min(min_period_s / 90.0, max(min_dur, 10.0))
        work = lat.size * len(sets) * ((end - start).total_seconds() / step + 1)
        if work > MAX_PASS_WORK:
            raise ResourceExhausted(
                f"points x satellites x coarse steps = {work:.3g}; the limit is "
                f"{MAX_PASS_WORK:.3g}", reason="TOO_MUCH_WORK",
                metadata={"resource": "pass_work", "limit": str(MAX_PASS_WORK)},
                violations=[("points", "fewer points, satellites or a shorter window: "
                                       f"points x satellites x window/{step:.0f}s must be "
                                       f"at most {MAX_PASS_WORK:.3g}")])
        prop = await self.app.propagator(snap, idx)
        passes = await self.run_cpu(
            lambda: predict_passes(sets, lat, lon, alt, start, end, min_el, min_dur,
                                   propagator=prop))
        if len(passes) > MAX_PASSES:
            raise ResourceExhausted(
                f"{len(passes)} passes exceed the limit of {MAX_PASSES}",
                reason="TOO_MANY_PASSES",
                metadata={"resource": "passes", "limit": str(MAX_PASSES)},
                violations=[("window", f"at most {MAX_PASSES} passes per answer; "
                                       "shorten the window")])
        return orbit_pb2.PredictPassesResponse(
            passes=[orbit_pb2.Pass(
                point_index=p.point_index, satellite=f"satellites/{p.catalog_number}",
                catalog_number=p.catalog_number, rise_time=datetime_to_timestamp(p.rise),
                culmination_time=datetime_to_timestamp(p.culmination),
                set_time=datetime_to_timestamp(p.set),
                max_elevation_deg=p.max_elevation_deg, rise_azimuth_deg=p.rise_azimuth_deg,
                set_azimuth_deg=p.set_azimuth_deg, rise_clipped=p.rise_clipped,
                set_clipped=p.set_clipped) for p in passes],
            catalog_version=snap.version)

