"""The OrbitService servicer: proto <-> domain, validation, limits. No science here.

Scopes: ``orbit.read`` for GetSatellite, ListSatellites, ListElementSets, GetGroup,
ListGroups, Propagate, VisibleSatellites, PredictPasses; ``orbit.write`` for
ImportElementSets and GenerateConstellation.

Limits (module constants; every refusal names the field and the limit in a BadRequest):

=================================  =============================================  ===================
what                               limit                                          answer
=================================  =============================================  ===================
page_size                          0 (default 100) .. 1000; negative refused      INVALID_ARGUMENT
import text                        1 byte .. 64 MiB, at least one record          INVALID_ARGUMENT
rejections listed in an answer     1000 (``rejected_count`` stays exact)          -
generated satellites per request   20,000; planes and per-plane 1..1000           INVALID_ARGUMENT
instants per Propagate             1 .. 100,000                                   INVALID_ARGUMENT
satellites x instants per request  20,000,000 (a catalog-day is ~15 million)      RESOURCE_EXHAUSTED
grid step                          1 ms .. 1 day                                  INVALID_ARGUMENT
time range                         1957-10-04 .. 2099-12-31 UTC                   INVALID_ARGUMENT
|time - element-set epoch|         30 days, for every selected satellite          INVALID_ARGUMENT
explicit selection                 50,000 catalog numbers or names, no repeats    INVALID_ARGUMENT
ground points (VisibleSatellites)  100,000; answer at most 48 MiB of pairs        INVALID_ARGUMENT / RESOURCE_EXHAUSTED
PredictPasses                      1,000 points, 7-day window,                    INVALID_ARGUMENT /
                                   points x satellites x coarse steps <= 2e8,     RESOURCE_EXHAUSTED
                                   100,000 passes
Propagate streams computing        2 at once (more wait their turn; a stream      -
                                   waiting on its reader holds no slot)
=================================  =============================================  ===================

Propagate streams time-major chunks of at most ``CHUNK_STATE_BUDGET`` states
(satellites x instants; ~15 MB of float64 positions), computing the next ``PIPELINE_DEPTH``
(2) chunks in the thread pool while the current one is written, so that a stream holds about
three chunks and two sets of work buffers in memory whatever its length (peak resident
memory of the service for a catalog-day: 385-470 MB, `bench/orbit.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import numpy as np
from google.protobuf import timestamp_pb2
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc

from services.orbit import omm, tle, walker
from services.orbit.catalog import CatalogSnapshot
from services.orbit.catalog_app import MAX_CATALOG_NUMBER, CatalogApp
from services.orbit.elements import ElementSet, RejectedRecord
from services.orbit.kernel import CatalogPropagator
from services.orbit.passes import predict_passes
from services.orbit.states import (
    FRAMES,
    chunk_steps_for,
    compute_chunk,
    compute_component_chunk,
    jd_to_unix,
)
from services.orbit.store import (
    Catalog,
    StoredElementSet,
    StoredGroup,
    StoredSatellite,
)
from services.orbit.visibility import TooManyPairs, visible_satellites
from services.orbit.visibility import prepare as prepare_visibility
from shared.auth import requires
from shared.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Violations,
)
from shared.frames import teme_to_itrf
from shared.geodesy import validate_geodetic
from shared.idempotency import request_id_problem
from shared.paging import decode_token, encode_token, page_size
from shared.validation import Rules
from shared.wire import (
    bytes_field,
    datetime_to_timestamp,
    double_array,
    double_array_field,
    from_double_array,
    timestamp_to_jd,
)

# --- limits ---------------------------------------------------------------------------
MAX_IMPORT_BYTES = 64 * 1024 * 1024
MAX_REJECTIONS_LISTED = 1000
MAX_GENERATED_SATELLITES = 20_000
MAX_PLANES = 1000
MAX_SATS_PER_PLANE = 1000
MIN_ALTITUDE_KM, MAX_ALTITUDE_KM = 150.0, 40_000.0
MAX_STEPS = 100_000
MAX_STATES_PER_REQUEST = 20_000_000
CHUNK_STATE_BUDGET = 640_000
#: Chunks of one Propagate stream computed at once (each holds a (T, 7, N) and a (T, 3, N)
#: float64 buffer: 2 x 51 MB at the chunk budget).
PIPELINE_DEPTH = 2
MIN_STEP_S, MAX_STEP_S = 0.001, 86_400.0
MIN_TIME = datetime(1957, 10, 4, tzinfo=UTC)
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
MAX_EPOCH_OFFSET_DAYS = 30.0
MAX_SELECTION = 50_000
MAX_VISIBILITY_POINTS = 100_000
MAX_VISIBILITY_ANSWER_BYTES = 48 * 1024 * 1024
_BYTES_PER_PAIR = 8 * 3 + 4
MAX_PASS_POINTS = 1000
MAX_PASS_WINDOW = timedelta(days=7)
MAX_PASS_WORK = 200_000_000
MAX_PASSES = 100_000
MAX_CONCURRENT_PROPAGATIONS = 2
_MAX_VIOLATIONS = 20

_GROUP_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_NAME_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,39}$")
_SATELLITE_NAME = re.compile(r"^satellites/(\d{1,10})$")
_GROUP_NAME = re.compile(r"^groups/([a-z][a-z0-9-]{0,62})$")
_FORMATS = {
    orbit_pb2.ImportElementSetsRequest.FORMAT_TLE: "tle",
    orbit_pb2.ImportElementSetsRequest.FORMAT_OMM_JSON: "omm_json",
    orbit_pb2.ImportElementSetsRequest.FORMAT_OMM_CSV: "omm_csv",
    orbit_pb2.ImportElementSetsRequest.FORMAT_OMM_XML: "omm_xml",
}
_FRAMES = {
    orbit_pb2.FRAME_UNSPECIFIED: "itrf",
    orbit_pb2.FRAME_TEME: "teme",
    orbit_pb2.FRAME_ITRF: "itrf",
    orbit_pb2.FRAME_GEODETIC: "geodetic",
}
_LAYOUTS = (orbit_pb2.STATE_LAYOUT_UNSPECIFIED, orbit_pb2.STATE_LAYOUT_TIME_SATELLITE_COMPONENT,
            orbit_pb2.STATE_LAYOUT_TIME_COMPONENT_SATELLITE)
_KINDS = {
    orbit_pb2.Group.KIND_CONSTELLATION: "constellation",
    orbit_pb2.Group.KIND_SENSORS: "sensors",
    orbit_pb2.Group.KIND_IMPORT: "import",
}
_KIND_ENUM = {v: k for k, v in _KINDS.items()}
_SEC_PER_DAY = 86_400.0

RunCpu = Callable[..., Awaitable]


# --- conversions ----------------------------------------------------------------------


def _ts(dt: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt)
    return ts


def element_set_message(stored: StoredElementSet) -> orbit_pb2.ElementSet:
    es = stored.elements
    return orbit_pb2.ElementSet(
        epoch_time=_ts(es.epoch),  # type: ignore[arg-type]
        mean_motion_rev_day=es.mean_motion_rev_day,
        eccentricity=es.eccentricity,
        inclination_deg=es.inclination_deg,
        raan_deg=es.raan_deg,
        arg_perigee_deg=es.arg_perigee_deg,
        mean_anomaly_deg=es.mean_anomaly_deg,
        bstar=es.bstar,
        mean_motion_dot=es.ndot,
        mean_motion_ddot=es.nddot,
        element_set_number=es.element_set_number,
        rev_at_epoch=es.rev_at_epoch,
        classification=es.classification,
        ephemeris_type=es.ephemeris_type,
        create_time=datetime_to_timestamp(stored.create_time),
        source_group=f"groups/{stored.source_group}" if stored.source_group else "",
    )


def satellite_message(sat: StoredSatellite) -> orbit_pb2.Satellite:
    msg = orbit_pb2.Satellite(
        name=f"satellites/{sat.catalog_number}",
        catalog_number=sat.catalog_number,
        object_name=sat.object_name,
        intl_designator=sat.intl_designator,
        element_set_count=sat.element_set_count,
        groups=[f"groups/{g}" for g in sat.groups],
        create_time=datetime_to_timestamp(sat.create_time),
        update_time=datetime_to_timestamp(sat.update_time),
    )
    if sat.element_set is not None:
        msg.element_set.CopyFrom(element_set_message(sat.element_set))
    return msg


def group_message(group: StoredGroup) -> orbit_pb2.Group:
    return orbit_pb2.Group(
        name=f"groups/{group.group_id}",
        display_name=group.display_name,
        kind=_KIND_ENUM.get(group.kind, orbit_pb2.Group.KIND_UNSPECIFIED),
        satellite_count=group.satellite_count,
        create_time=datetime_to_timestamp(group.create_time),
        update_time=datetime_to_timestamp(group.update_time),
    )


# --- validation helpers ---------------------------------------------------------------


def _page_size(check: Violations, value: int) -> int:
    return page_size(value, check)


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _encode_token(after: object, filters: str) -> str:
    """A page token holding the page's last key, bound to the request's filters."""
    return encode_token(filters, [after])


def _decode_token(check: Violations, token: str, filters: str, kind: type):
    """The last key of the previous page (None: first page, or a bad token, which goes to
    ``check`` as a ``page_token`` violation)."""
    try:
        key = decode_token(token, filters, kinds=(kind,))
    except InvalidArgument as error:
        check.extend((v.field, v.description) for v in error.violations)
        return None
    return None if key is None else key[0]


def _satellite_number(check: Violations, name: str, field: str) -> int | None:
    match = _SATELLITE_NAME.match(name)
    number = int(match.group(1)) if match else -1
    if not 0 <= number <= MAX_CATALOG_NUMBER:
        check.add(field, f"must be satellites/{{catalog_number}} with a catalog number "
                         f"0..{MAX_CATALOG_NUMBER}, got {name[:80]!r}")
        return None
    return number


def _group_id(check: Violations, name: str, field: str) -> str | None:
    match = _GROUP_NAME.match(name)
    if not match:
        check.add(field, f"must be groups/{{group_id}} with group_id matching "
                         f"{_GROUP_ID.pattern}, got {name[:80]!r}")
        return None
    return match.group(1)


def _time(check: Violations, ts: timestamp_pb2.Timestamp, field: str) -> datetime | None:
    if not 0 <= ts.nanos <= 999_999_999:
        check.add(field, "nanos must be 0..999999999")
        return None
    lo, hi = MIN_TIME.timestamp(), MAX_TIME.timestamp()
    if not lo <= ts.seconds < hi:
        check.add(field, f"must be between {MIN_TIME:%Y-%m-%d} and {MAX_TIME:%Y-%m-%d} UTC")
        return None
    return datetime.fromtimestamp(ts.seconds, UTC) + timedelta(microseconds=ts.nanos // 1000)


def _as_of(check: Violations, request, field: str = "as_of_time") -> int | None:
    if not request.HasField("as_of_time"):
        return None
    when = _time(check, request.as_of_time, field)
    if when is None:
        return None
    return request.as_of_time.seconds * 1_000_000 + request.as_of_time.nanos // 1000


def _rejection_violations(rejected: list[RejectedRecord]) -> list[tuple[str, str]]:
    out = []
    for r in rejected[:_MAX_VIOLATIONS]:
        where = f"record at line/record {r.line_number}" if r.line_number else "document"
        key = f" ({r.key})" if r.key else ""
        out.append(("text", f"{where}{key}: {r.reason}"))
    return out


def _parse_text(text: str, fmt: str) -> tuple[list[ElementSet], list[RejectedRecord]]:
    """Parse import text; never raises for bad content."""
    if fmt == "tle":
        return tle.parse_tle(text)
    return omm.parse_omm(text, fmt)


def _grid_jd(start: timestamp_pb2.Timestamp, step_s: float, count: int
             ) -> tuple[np.ndarray, np.ndarray]:
    jd0, fr0 = timestamp_to_jd(start)
    return CatalogPropagator.grid_jd(jd0, fr0, step_s, 0, count)


# --- the servicer ---------------------------------------------------------------------


_V1 = "skybridge.orbit.v1."

#: The contract checks beyond the descriptors (`shared.validation`): the caps of the
#: limits table above and the "exactly one of" groups that are not proto oneofs.
REQUEST_RULES = Rules(
    max_items={
        f"{_V1}TimeList.times": MAX_STEPS,
        f"{_V1}SatelliteSelection.satellites": MAX_SELECTION,
        f"{_V1}SatelliteSelection.catalog_numbers": MAX_SELECTION,
        f"{_V1}VisibleSatellitesRequest.points": MAX_VISIBILITY_POINTS,
        f"{_V1}PredictPassesRequest.points": MAX_PASS_POINTS,
        f"{_V1}GenerateConstellationRequest.shells": MAX_PLANES,
    },
    max_chars={f"{_V1}ImportElementSetsRequest.text": MAX_IMPORT_BYTES},
    at_most_one={
        f"{_V1}SatelliteSelection": [("catalog_numbers", "satellites", "group", "all")],
        f"{_V1}GenerateConstellationRequest": [("preset", "shells")],
        f"{_V1}VisibleSatellitesRequest": [("points", "point_array")],
    },
)


class OrbitServicer(orbit_pb2_grpc.OrbitServiceServicer):
    """Translates OrbitService calls to the catalog store and the orbit domain."""

    request_rules = REQUEST_RULES

    def __init__(self, catalog: Catalog, run_cpu: RunCpu):
        self.catalog = catalog
        self.run_cpu = run_cpu
        self.app = CatalogApp(catalog, run_cpu)
        self._streams = asyncio.Semaphore(MAX_CONCURRENT_PROPAGATIONS)

    # -- catalog snapshot & propagators (services.orbit.catalog_app) -----------------
    async def snapshot(self, as_of_us: int | None = None) -> CatalogSnapshot:
        return await self.app.snapshot(as_of_us)

    async def propagator(self, snap: CatalogSnapshot, idx: np.ndarray | None
                         ) -> CatalogPropagator:
        return await self.app.propagator(snap, idx)

    async def warm(self) -> None:
        """Load the catalog, build the whole-catalog propagator and compile the visibility
        kernel (start-up hook)."""
        await self.run_cpu(prepare_visibility)  # compile the look-angle kernel (~0.1 s)
        snap = await self.snapshot(None)
        if snap.size:
            await self.propagator(snap, None)

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
        snap = await self.snapshot(as_of_us)
        if how == "all":
            if snap.size == 0:
                raise InvalidArgument(
                    "the catalog is empty" + (" at as_of_time" if as_of_us else ""),
                    reason="EMPTY_CATALOG",
                    violations=[(f"{field}.all", "the catalog holds no satellites"
                                 + (" with an element set at or before as_of_time"
                                    if as_of_us else ""))])
            return snap, np.arange(snap.size)
        if how == "group":
            members = await self.catalog.group_numbers(group_id)  # type: ignore[arg-type]
            if members is None:
                raise NotFound(f"group {group_id} not found", reason="GROUP_NOT_FOUND",
                               violations=[(f"{field}.group", f"no group {selection.group!r}")])
            idx, _ = snap.indices(members)
            if idx.size == 0:
                raise InvalidArgument(
                    f"group {group_id} has no satellites to use", reason="EMPTY_GROUP",
                    violations=[(f"{field}.group", "the group has no satellites"
                                 + (" with an element set at or before as_of_time"
                                    if as_of_us else ""))])
            return snap, idx
        idx, missing = snap.indices(numbers)  # type: ignore[arg-type]
        if missing.size:
            raise NotFound(
                f"{missing.size} selected satellite(s) not in the catalog"
                + (" with an element set at or before as_of_time" if as_of_us else ""),
                reason="SATELLITE_NOT_FOUND",
                violations=[(f"{field}.{how}[{m}]", f"no satellite {int(numbers[m])}")  # type: ignore[index]
                            for m in missing[:_MAX_VIOLATIONS]])
        return snap, idx

    @staticmethod
    def _check_epoch_offset(snap: CatalogSnapshot, idx: np.ndarray, jd: np.ndarray,
                            fr: np.ndarray, field: str) -> None:
        offset, number = snap.epoch_offset_days(idx, jd, fr)
        if offset > MAX_EPOCH_OFFSET_DAYS:
            raise InvalidArgument(
                f"times are {offset:.1f} days from the epoch of satellite {number}; "
                f"the limit is {MAX_EPOCH_OFFSET_DAYS:g} days",
                reason="TOO_FAR_FROM_EPOCH",
                violations=[(field, f"must be within {MAX_EPOCH_OFFSET_DAYS:g} days of every "
                                    f"selected satellite's element-set epoch; satellite "
                                    f"{number} is {offset:.1f} days away")])

    # -- import & generation ------------------------------------------------------
    @requires("orbit.write")
    async def ImportElementSets(self, request, context):
        check = Violations()
        text = request.text
        check.require(text, "text", "is required (TLE or OMM text)")
        size = len(text.encode("utf-8", "surrogatepass"))
        check.check(size <= MAX_IMPORT_BYTES, "text",
                    f"at most {MAX_IMPORT_BYTES} bytes, got {size}")
        check.check(request.format in (0, *_FORMATS), "format", "unknown format")
        group_id = request.group_id
        if group_id:
            check.check(bool(_GROUP_ID.match(group_id)), "group_id",
                        f"must match {_GROUP_ID.pattern}")
        check.check(len(request.group_display_name) <= 200, "group_display_name",
                    "at most 200 characters")
        problem = request_id_problem(request.request_id, required=False)
        if problem:
            check.add("request_id", problem)
        check.raise_if_any("the import request is invalid")
        fmt = _FORMATS.get(request.format) or omm.detect_format(text)
        good, bad = await self.run_cpu(_parse_text, text, fmt)
        if not good:
            if not bad:
                raise InvalidArgument("the text holds no element sets", reason="EMPTY_CATALOG",
                                      violations=[("text", "contains no TLE or OMM records")])
            raise InvalidArgument(
                f"all {len(bad)} records were rejected; nothing was stored",
                reason="NO_VALID_RECORDS", violations=_rejection_violations(bad))
        group = None
        if group_id:
            group = (group_id, request.group_display_name or group_id, "import")

        def answer(outcome) -> orbit_pb2.ImportElementSetsResponse:
            return orbit_pb2.ImportElementSetsResponse(
                added_count=outcome.added,
                updated_count=outcome.updated,
                unchanged_count=outcome.unchanged,
                rejected_count=len(bad),
                rejected_records=[
                    orbit_pb2.RejectedRecord(line_number=r.line_number, reason=r.reason,
                                             field=r.key or "")
                    for r in bad[:MAX_REJECTIONS_LISTED]],
                group=f"groups/{group_id}" if group_id else "",
                catalog_version=outcome.version,
            )

        return await self.app.import_element_sets(
            request, good, group, answer,
            orbit_pb2.ImportElementSetsResponse.FromString)

    @requires("orbit.write")
    async def GenerateConstellation(self, request, context):
        check = Violations()
        shells: list[walker.WalkerShell] = []
        if bool(request.preset) == bool(len(request.shells)):
            check.add("preset", "set exactly one of preset and shells")
        elif request.preset:
            if request.preset not in walker.PRESETS:
                check.add("preset", f"unknown preset; known: {', '.join(sorted(walker.PRESETS))}")
            else:
                shells = list(walker.PRESETS[request.preset])
        else:
            for i, s in enumerate(request.shells):
                f = f"shells[{i}]"
                ok = check.check(1 <= s.planes <= MAX_PLANES, f"{f}.planes",
                                 f"must be 1..{MAX_PLANES}")
                ok &= check.check(1 <= s.satellites_per_plane <= MAX_SATS_PER_PLANE,
                                  f"{f}.satellites_per_plane", f"must be 1..{MAX_SATS_PER_PLANE}")
                ok &= check.check(0 <= s.phasing < max(s.planes, 1), f"{f}.phasing",
                                  "must be 0 <= phasing < planes")
                ok &= check.check(
                    np.isfinite(s.altitude_km) and MIN_ALTITUDE_KM <= s.altitude_km
                    <= MAX_ALTITUDE_KM, f"{f}.altitude_km",
                    f"must be {MIN_ALTITUDE_KM:g}..{MAX_ALTITUDE_KM:g} km")
                ok &= check.check(np.isfinite(s.inclination_deg)
                                  and 0.0 <= s.inclination_deg <= 180.0,
                                  f"{f}.inclination_deg", "must be 0..180 degrees")
                ok &= check.check(np.isfinite(s.raan_offset_deg)
                                  and 0.0 <= s.raan_offset_deg <= 360.0,
                                  f"{f}.raan_offset_deg", "must be 0..360 degrees")
                prefix = s.name_prefix or f"{request.group_id.upper()}-S{i + 1}"
                ok &= check.check(bool(_NAME_PREFIX.match(prefix[:40])) and len(prefix) <= 40,
                                  f"{f}.name_prefix", f"must match {_NAME_PREFIX.pattern}")
                if ok:
                    shells.append(walker.WalkerShell(
                        s.planes, s.satellites_per_plane, s.phasing, s.altitude_km,
                        s.inclination_deg, s.raan_offset_deg, name=prefix))
        total = sum(s.total for s in shells)
        check.check(total <= MAX_GENERATED_SATELLITES, "shells",
                    f"at most {MAX_GENERATED_SATELLITES} satellites per request, got {total}")
        if check.require(request.group_id, "group_id"):
            check.check(bool(_GROUP_ID.match(request.group_id)), "group_id",
                        f"must match {_GROUP_ID.pattern}")
        check.check(len(request.display_name) <= 200, "display_name", "at most 200 characters")
        check.check(request.kind in (0, *_KINDS), "kind", "unknown kind")
        epoch = datetime.now(UTC).replace(microsecond=0)
        if request.HasField("epoch_time"):
            epoch = _time(check, request.epoch_time, "epoch_time") or epoch
        first = request.first_catalog_number
        if first:
            check.check(first + total - 1 <= MAX_CATALOG_NUMBER, "first_catalog_number",
                        f"the last number must not exceed {MAX_CATALOG_NUMBER}")
        problem = request_id_problem(request.request_id, required=False)
        if problem:
            check.add("request_id", problem)
        check.raise_if_any("the constellation request is invalid")
        kind = _KINDS.get(request.kind) or (
            "sensors" if request.preset == "tracking_sensors" else "constellation")
        def answer(made) -> orbit_pb2.GenerateConstellationResponse:
            return orbit_pb2.GenerateConstellationResponse(
                group=group_message(made.group), satellite_count=made.count,
                first_catalog_number=made.first_catalog_number,
                last_catalog_number=made.first_catalog_number + made.count - 1,
                catalog_version=made.outcome.version)

        return await self.app.generate_constellation(
            request, group_id=request.group_id,
            display_name=request.display_name or request.group_id, kind=kind, shells=shells,
            epoch=epoch, first=first or None, answer=answer,
            decode=orbit_pb2.GenerateConstellationResponse.FromString)

    # -- queries -------------------------------------------------------------------
    @requires("orbit.read")
    async def GetSatellite(self, request, context):
        check = Violations()
        number = _satellite_number(check, request.name, "name")
        as_of = _as_of(check, request)
        check.raise_if_any()
        sat = await self.catalog.get_satellite(number, as_of)  # type: ignore[arg-type]
        if sat is None:
            raise NotFound(f"{request.name} not found", reason="SATELLITE_NOT_FOUND",
                           violations=[("name", f"no satellite {number}")])
        if as_of is not None and sat.element_set is None:
            raise NotFound(f"{request.name} has no element set at or before as_of_time",
                           reason="ELEMENT_SET_NOT_FOUND",
                           violations=[("as_of_time", "before the oldest element set")])
        return orbit_pb2.GetSatelliteResponse(satellite=satellite_message(sat))

    @requires("orbit.read")
    async def ListSatellites(self, request, context):
        check = Violations()
        size = _page_size(check, request.page_size)
        group_id = ""
        if request.group:
            group_id = _group_id(check, request.group, "group") or ""
        lo = request.min_catalog_number if request.HasField("min_catalog_number") else None
        hi = request.max_catalog_number if request.HasField("max_catalog_number") else None
        if lo is not None and hi is not None:
            check.check(lo <= hi, "max_catalog_number", "must be >= min_catalog_number")
        check.check(len(request.name_contains) <= 64, "name_contains", "at most 64 characters")
        filters = _digest(request.name_contains, request.group, lo, hi)
        after = _decode_token(check, request.page_token, filters, int)
        check.raise_if_any()
        if group_id and await self.catalog.get_group(group_id) is None:
            raise NotFound(f"group {group_id} not found", reason="GROUP_NOT_FOUND",
                           violations=[("group", f"no group {request.group!r}")])
        sats, total = await self.catalog.list_satellites(
            after=after, limit=size + 1, name_contains=request.name_contains,
            group_id=group_id, min_number=lo, max_number=hi)
        more = len(sats) > size
        sats = sats[:size]
        token = _encode_token(sats[-1].catalog_number, filters) if more and sats else ""
        return orbit_pb2.ListSatellitesResponse(
            satellites=[satellite_message(s) for s in sats], next_page_token=token,
            total_size=total)

    @requires("orbit.read")
    async def ListElementSets(self, request, context):
        check = Violations()
        number = _satellite_number(check, request.parent, "parent")
        size = _page_size(check, request.page_size)
        filters = _digest(request.parent)
        before = _decode_token(check, request.page_token, filters, int)
        check.raise_if_any()
        sets = await self.catalog.list_element_sets(number, before_us=before,  # type: ignore[arg-type]
                                                    limit=size + 1)
        if sets is None:
            raise NotFound(f"{request.parent} not found", reason="SATELLITE_NOT_FOUND",
                           violations=[("parent", f"no satellite {number}")])
        more = len(sets) > size
        sets = sets[:size]
        token = ""
        if more and sets:
            from services.orbit.store import epoch_us

            token = _encode_token(epoch_us(sets[-1].elements), filters)
        return orbit_pb2.ListElementSetsResponse(
            element_sets=[element_set_message(s) for s in sets], next_page_token=token)

    @requires("orbit.read")
    async def GetGroup(self, request, context):
        check = Violations()
        group_id = _group_id(check, request.name, "name")
        check.raise_if_any()
        group = await self.catalog.get_group(group_id)  # type: ignore[arg-type]
        if group is None:
            raise NotFound(f"{request.name} not found", reason="GROUP_NOT_FOUND",
                           violations=[("name", f"no group {request.name!r}")])
        return orbit_pb2.GetGroupResponse(group=group_message(group))

    @requires("orbit.read")
    async def ListGroups(self, request, context):
        check = Violations()
        size = _page_size(check, request.page_size)
        after = _decode_token(check, request.page_token, "groups", str)
        check.raise_if_any()
        groups = await self.catalog.list_groups(after=after, limit=size + 1)
        more = len(groups) > size
        groups = groups[:size]
        token = _encode_token(groups[-1].group_id, "groups") if more and groups else ""
        return orbit_pb2.ListGroupsResponse(groups=[group_message(g) for g in groups],
                                            next_page_token=token)

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
            step_s = grid.step.seconds + grid.step.nanos * 1e-9
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
        self._check_epoch_offset(snap, idx, jd, fr, time_field)
        prop = await self.propagator(snap, idx)
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
        self._check_epoch_offset(snap, idx, jd_a, fr_a, "time")
        prop = await self.propagator(snap, idx)
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
        start = end = None
        if check.require(request.HasField("window") or None, "window"):
            w = request.window
            if check.require(w.HasField("start_time") or None, "window.start_time"):
                start = _time(check, w.start_time, "window.start_time")
            if check.require(w.HasField("end_time") or None, "window.end_time"):
                end = _time(check, w.end_time, "window.end_time")
            if start and end:
                check.check(start < end, "window.end_time", "must be after window.start_time")
                check.check(end - start <= MAX_PASS_WINDOW, "window",
                            f"must be at most {MAX_PASS_WINDOW.days} days long")
        min_el = self._min_elevation(check, request.min_elevation_deg)
        min_dur = request.min_duration.seconds + request.min_duration.nanos * 1e-9
        check.check(0.0 <= min_dur <= 86_400.0, "min_duration", "must be 0 .. 1 day")
        as_of = _as_of(check, request)
        check.raise_if_any("the pass request is invalid")
        assert start is not None and end is not None
        snap, idx = await self._select(request.selection, "selection", as_of, default_all=True)
        jd0, fr0 = timestamp_to_jd(request.window.start_time)
        jd1, fr1 = timestamp_to_jd(request.window.end_time)
        self._check_epoch_offset(snap, idx, np.array([jd0, jd1]), np.array([fr0, fr1]),
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
        prop = await self.propagator(snap, idx)
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
                catalog_number=p.catalog_number, rise_time=_ts(p.rise),
                culmination_time=_ts(p.culmination), set_time=_ts(p.set),
                max_elevation_deg=p.max_elevation_deg, rise_azimuth_deg=p.rise_azimuth_deg,
                set_azimuth_deg=p.set_azimuth_deg, rise_clipped=p.rise_clipped,
                set_clipped=p.set_clipped) for p in passes],
            catalog_version=snap.version)
