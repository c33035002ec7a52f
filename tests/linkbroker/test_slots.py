from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.linkbroker.slots import (
    MAX_WINDOW_SECONDS,
    MAX_WINDOW_SLOTS,
    SLOT_SECONDS,
    SlotWindowError,
    slot_bounds,
    slot_index,
    slot_midpoint,
    slot_start,
    slots_in_window,
)


def test_epoch_alignment_and_boundaries():
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert slot_index(epoch) == 0
    assert slot_index(epoch + timedelta(seconds=14, microseconds=999_999)) == 0
    assert slot_index(epoch + timedelta(seconds=15)) == 1
    assert slot_index(epoch - timedelta(microseconds=1)) == -1
    t = datetime(2026, 5, 12, 12, 0, 7, tzinfo=UTC)
    k = slot_index(t)
    start, end = slot_bounds(k)
    assert start <= t < end
    assert (end - start).total_seconds() == SLOT_SECONDS
    assert start.timestamp() % SLOT_SECONDS == 0
    assert slot_start(k) == start
    assert slot_midpoint(k) == start + timedelta(seconds=7.5)


def test_other_timezones_and_naive():
    t = datetime(2026, 5, 12, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert slot_index(t) == slot_index(datetime(2026, 5, 12, 12, 0, 0, tzinfo=UTC))
    with pytest.raises(ValueError):
        slot_index(datetime(2026, 5, 12))


def test_window():
    start = datetime(2026, 5, 12, 0, 0, 10, tzinfo=UTC)
    r = slots_in_window(start, start + timedelta(seconds=20))
    assert list(r) == [slot_index(start), slot_index(start) + 1]
    aligned = slot_start(100)
    assert list(slots_in_window(aligned, slot_start(102))) == [100, 101]
    full = slots_in_window(aligned, aligned + timedelta(seconds=MAX_WINDOW_SECONDS))
    assert len(full) == MAX_WINDOW_SLOTS
    with pytest.raises(SlotWindowError):
        slots_in_window(aligned, aligned + timedelta(seconds=MAX_WINDOW_SECONDS + 1))
    with pytest.raises(SlotWindowError):
        slots_in_window(aligned, aligned)
