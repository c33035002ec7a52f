"""Request fields of the link-broker and ground-station contacts APIs, read and checked:
each parser adds a violation naming the field (and returns None) when the value is missing
or malformed."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2
from skybridge.common.v1 import common_pb2

from shared.errors import InvalidArgument, Violations
from shared.idempotency import request_id_problem
from shared.paging import page_size
from shared.wire import duration_to_seconds, timestamp_to_unix

from . import contacts as rules
from .settings import BrokerSettings
from .slots import SLOT_SECONDS

__all__ = ["contact_id_field", "duration_field", "links_after", "location_field",
           "page_of", "require_request_id", "resource_id", "spacecraft_field", "time_field",
           "window_field"]

_MIN_TS, _MAX_TS = -62_135_596_800, 253_402_300_799  # 0001-01-01 .. 9999-12-31 (UTC)


def time_field(check: Violations, message: Any, name: str, field: str) -> float | None:
    """The Timestamp field `name` of `message` in Unix seconds; a violation when unset or
    out of range."""
    if not message.HasField(name):
        check.add(field, "is required")
        return None
    ts: timestamp_pb2.Timestamp = getattr(message, name)
    if not (0 <= ts.nanos < 1_000_000_000 and _MIN_TS <= ts.seconds <= _MAX_TS):
        check.add(field, "is not a valid timestamp")
        return None
    return timestamp_to_unix(ts)


def duration_field(check: Violations, duration: duration_pb2.Duration, field: str
                ) -> float | None:
    if abs(duration.nanos) >= 1_000_000_000 or (duration.seconds and duration.nanos
                                                  and (duration.seconds > 0) != (
                                                      duration.nanos > 0)):
        check.add(field, "is not a valid duration")
        return None
    return duration_to_seconds(duration)


def resource_id(check: Violations, value: str, collection: str, field: str) -> str | None:
    """The id of ``{collection}/{id}``; a violation when missing or malformed."""
    if not value:
        check.add(field, "is required")
        return None
    prefix, _, rid = value.partition("/")
    if prefix != collection or rules.profile_id_problem(rid):
        check.add(field, f"must be {collection}/{{id}} with an id of 3 to 40 of a-z, 0-9 "
                         "and '-'")
        return None
    return rid


def contact_id_field(check: Violations, value: str, field: str = "name") -> str | None:
    prefix, _, cid = (value or "").partition("/")
    if not value:
        check.add(field, "is required")
    elif prefix != "contacts" or not cid or len(cid) > 32 or not cid.isalnum():
        check.add(field, "must be contacts/{id}")
    else:
        return cid
    return None


def spacecraft_field(check: Violations, value: str, field: str = "spacecraft") -> int | None:
    if not value:
        check.add(field, "is required")
        return None
    number = rules.parse_spacecraft(value)
    if number is None:
        check.add(field, "must be satellites/{catalog_number} or a catalog number")
    return number


def require_request_id(check: Violations, value: str) -> None:
    problem = request_id_problem(value, required=True)
    if problem:
        check.add("request_id", problem)


def page_of(check: Violations, size: int) -> int:
    return page_size(size, check)


# --- links ------------------------------------------------------------------------------


def location_field(point: common_pb2.GeodeticPoint, path: str, check: Violations,
                   present: bool) -> None:
    """Violations of a required GeodeticPoint at `path` (`present`: the field is set)."""
    if not present:
        check.add(path, "is required")
        return
    check.check(math.isfinite(point.latitude_deg) and -90 <= point.latitude_deg <= 90,
                f"{path}.latitude_deg", "must be within [-90, 90] degrees")
    check.check(math.isfinite(point.longitude_deg) and -180 <= point.longitude_deg <= 180,
                f"{path}.longitude_deg", "must be within [-180, 180] degrees")
    check.check(math.isfinite(point.altitude_m) and -500 <= point.altitude_m <= 10_000,
                f"{path}.altitude_m", "must be within [-500, 10000] m")


def window_field(request: Any, check: Violations, now: float, settings: BrokerSettings
                 ) -> tuple[int, int] | None:
    """The (first slot, end slot) of `request.window`: start clamped to the current slot
    (`now`, Unix seconds), end rounded up; None with violations when it is missing, empty,
    past, too far ahead or too long."""
    if not request.HasField("window"):
        check.add("window", "is required")
        return None
    w = request.window
    ok = check.check(w.HasField("start_time"), "window.start_time", "is required")
    ok &= check.check(w.HasField("end_time"), "window.end_time", "is required")
    if not ok:
        return None
    start = timestamp_to_unix(w.start_time)
    end = timestamp_to_unix(w.end_time)
    if not check.check(end > start, "window.end_time", "must be after window.start_time"):
        return None
    ok = check.check(end > now, "window.end_time", "is in the past")
    ok &= check.check(start <= now + settings.max_lead_days * 86_400, "window.start_time",
                      f"must be at most {settings.max_lead_days:g} days ahead")
    ok &= check.check(end - start <= settings.max_window_hours * 3600 + 1e-6,
                      "window", f"must span at most {settings.max_window_hours:g} hours")
    if not ok:
        return None
    first = int(max(start, now) // SLOT_SECONDS)
    end_slot = int(-(-end // SLOT_SECONDS))
    return first, max(end_slot, first + 1)


def links_after(key: Any) -> tuple[datetime, str] | None:
    """The (create_time, id) a ListLinks page token holds: the time as ISO 8601, or as
    Unix seconds in the tokens issued before the times were datetimes."""
    if key is None:
        return None
    try:
        when, lease_id = key
        if isinstance(when, str):
            created = datetime.fromisoformat(when)
        elif isinstance(when, int | float) and not isinstance(when, bool):
            created = datetime.fromtimestamp(when, UTC)
        else:
            raise TypeError
        if created.tzinfo is None or not isinstance(lease_id, str):
            raise TypeError
    except (TypeError, ValueError, OverflowError, OSError):
        raise InvalidArgument("page_token is not valid for this request", violations=[(
            "page_token", "is not a token from a previous response to the same request")]
        ) from None
    return created, lease_id
