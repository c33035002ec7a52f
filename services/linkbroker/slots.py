"""Planning-slot arithmetic.

The link broker plans paths per synchronized slot of :data:`SLOT_SECONDS`
(15 s). Slots are aligned to the Unix epoch (1970-01-01T00:00:00Z): slot ``k``
covers the half-open UTC interval ``[k * 15 s, (k + 1) * 15 s)`` after the
epoch. Leap seconds are ignored, as they are by the Unix clock. All datetimes
must be timezone-aware; naive datetimes are rejected rather than guessed.

A planning window may span at most :data:`MAX_WINDOW_SECONDS` (24 h, 5,760
slots): satellite positions come from TLE/SGP4 propagation whose along-track
error grows to kilometres within a day or two, so plans further ahead are not
meaningful, and a bound keeps request sizes finite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = [
    "MAX_WINDOW_SECONDS",
    "MAX_WINDOW_SLOTS",
    "SLOT_SECONDS",
    "SlotWindowError",
    "slot_bounds",
    "slot_end",
    "slot_index",
    "slot_midpoint",
    "slot_start",
    "slots_in_window",
]

SLOT_SECONDS = 15
MAX_WINDOW_SECONDS = 24 * 3600
MAX_WINDOW_SLOTS = MAX_WINDOW_SECONDS // SLOT_SECONDS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SLOT = timedelta(seconds=SLOT_SECONDS)


class SlotWindowError(ValueError):
    """A window is empty, reversed, or longer than :data:`MAX_WINDOW_SECONDS`."""


def _require_aware(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (UTC)")
    return when.astimezone(UTC)


def slot_index(when: datetime) -> int:
    """Index of the slot containing ``when`` (floor; negative before 1970)."""
    delta = _require_aware(when) - _EPOCH
    # Integer microseconds avoid float rounding at slot boundaries.
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros // (SLOT_SECONDS * 1_000_000)


def slot_start(index: int) -> datetime:
    """UTC start (inclusive) of slot ``index``."""
    return _EPOCH + index * _SLOT


def slot_end(index: int) -> datetime:
    """UTC end (exclusive) of slot ``index``."""
    return _EPOCH + (index + 1) * _SLOT


def slot_midpoint(index: int) -> datetime:
    """UTC middle of slot ``index`` (7.5 s after its start)."""
    return _EPOCH + index * _SLOT + _SLOT / 2


def slot_bounds(index: int) -> tuple[datetime, datetime]:
    """``(start, end)`` of slot ``index``, end exclusive."""
    return slot_start(index), slot_end(index)


def slots_in_window(start: datetime, end: datetime) -> range:
    """Indices of every slot overlapping the half-open window ``[start, end)``.

    Raises :class:`SlotWindowError` if ``end <= start`` or the window is longer
    than :data:`MAX_WINDOW_SECONDS`.
    """
    start_utc, end_utc = _require_aware(start), _require_aware(end)
    if end_utc <= start_utc:
        raise SlotWindowError("window end must be after its start")
    if (end_utc - start_utc).total_seconds() > MAX_WINDOW_SECONDS:
        raise SlotWindowError(
            f"window longer than the {MAX_WINDOW_SECONDS} s maximum ({MAX_WINDOW_SLOTS} slots)"
        )
    first = slot_index(start_utc)
    # The slot holding the last instant before ``end``.
    last = slot_index(end_utc - timedelta(microseconds=1))
    return range(first, last + 1)
