"""The orbit servicer's field rules and conversions (proto <-> domain), shared by its
catalog RPCs (:mod:`services.orbit.api_catalog`) and its geometry RPCs
(:mod:`services.orbit.api_geometry`): the limits of :mod:`services.orbit.api`, resource
names, times, page tokens and the Satellite, ElementSet and Group messages."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
from google.protobuf import timestamp_pb2
from skybridge.orbit.v1 import orbit_pb2

from services.orbit import omm, tle
from services.orbit.catalog import GroupKind
from services.orbit.catalog_app import MAX_CATALOG_NUMBER, MAX_EPOCH_OFFSET_DAYS
from services.orbit.catalog_app import MAX_VIOLATIONS as _MAX_VIOLATIONS
from services.orbit.elements import ElementFormat, ElementSet, RejectedRecord
from services.orbit.kernel import CatalogPropagator
from services.orbit.records import StoredElementSet, StoredGroup, StoredSatellite
from services.orbit.states import Frame
from shared.errors import InvalidArgument, Violations
from shared.paging import decode_token, encode_token, page_size
from shared.wire import datetime_to_timestamp, timestamp_to_datetime, timestamp_to_jd

T = TypeVar("T")

__all__ = ["MAX_CATALOG_NUMBER", "MAX_EPOCH_OFFSET_DAYS"]

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
MAX_SELECTION = 50_000
MAX_VISIBILITY_POINTS = 100_000
MAX_VISIBILITY_ANSWER_BYTES = 48 * 1024 * 1024
_BYTES_PER_PAIR = 8 * 3 + 4
MAX_PASS_POINTS = 1000
MAX_PASS_WINDOW = timedelta(days=7)
MAX_PASS_WORK = 200_000_000
MAX_PASSES = 100_000
MAX_CONCURRENT_PROPAGATIONS = 2

_GROUP_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_NAME_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,39}$")
_SATELLITE_NAME = re.compile(r"^satellites/(\d{1,10})$")
_GROUP_NAME = re.compile(r"^groups/([a-z][a-z0-9-]{0,62})$")
_FORMATS = {
    orbit_pb2.ImportElementSetsRequest.FORMAT_TLE: ElementFormat.TLE,
    orbit_pb2.ImportElementSetsRequest.FORMAT_OMM_JSON: ElementFormat.OMM_JSON,
    orbit_pb2.ImportElementSetsRequest.FORMAT_OMM_CSV: ElementFormat.OMM_CSV,
    orbit_pb2.ImportElementSetsRequest.FORMAT_OMM_XML: ElementFormat.OMM_XML,
}
_FRAMES = {
    orbit_pb2.FRAME_UNSPECIFIED: Frame.ITRF,
    orbit_pb2.FRAME_TEME: Frame.TEME,
    orbit_pb2.FRAME_ITRF: Frame.ITRF,
    orbit_pb2.FRAME_GEODETIC: Frame.GEODETIC,
}
_LAYOUTS = (orbit_pb2.STATE_LAYOUT_UNSPECIFIED, orbit_pb2.STATE_LAYOUT_TIME_SATELLITE_COMPONENT,
            orbit_pb2.STATE_LAYOUT_TIME_COMPONENT_SATELLITE)
_KINDS = {
    orbit_pb2.Group.KIND_CONSTELLATION: GroupKind.CONSTELLATION,
    orbit_pb2.Group.KIND_SENSORS: GroupKind.SENSORS,
    orbit_pb2.Group.KIND_IMPORT: GroupKind.IMPORT,
}
_KIND_ENUM = {v: k for k, v in _KINDS.items()}
_SEC_PER_DAY = 86_400.0
RunCpu = Callable[..., Awaitable]


# --- conversions ----------------------------------------------------------------------


def element_set_message(stored: StoredElementSet) -> orbit_pb2.ElementSet:
    es = stored.elements
    return orbit_pb2.ElementSet(
        epoch_time=datetime_to_timestamp(es.epoch),  # type: ignore[arg-type]
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
    return timestamp_to_datetime(ts)


def window_field(check: Violations, request: Any,
                 convert: Callable[[Violations, timestamp_pb2.Timestamp, str], T | None]
                 ) -> tuple[T, T] | tuple[None, None]:
    """`request.window` (a required `TimeWindow`) as (start, end), each converted by
    `convert(check, timestamp, field)`, start before end; (None, None) with the violations
    (`window`, `window.start_time`, `window.end_time`) added to `check` otherwise."""
    if not check.require(request.HasField("window") or None, "window"):
        return None, None
    w = request.window
    start = end = None
    if check.require(w.HasField("start_time") or None, "window.start_time"):
        start = convert(check, w.start_time, "window.start_time")
    if check.require(w.HasField("end_time") or None, "window.end_time"):
        end = convert(check, w.end_time, "window.end_time")
    if start is None or end is None or not check.check(
            start < end, "window.end_time", "must be after window.start_time"):  # type: ignore[operator]
        return None, None
    return start, end


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


def _parse_text(text: str, fmt: ElementFormat) -> tuple[list[ElementSet], list[RejectedRecord]]:
    """Parse import text; never raises for bad content."""
    if fmt == ElementFormat.TLE:
        return tle.parse_tle(text)
    return omm.parse_omm(text, fmt)


def _grid_jd(start: timestamp_pb2.Timestamp, step_s: float, count: int
             ) -> tuple[np.ndarray, np.ndarray]:
    jd0, fr0 = timestamp_to_jd(start)
    return CatalogPropagator.grid_jd(jd0, fr0, step_s, 0, count)

