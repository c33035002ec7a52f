"""Ground-station contact rules, without a server or a database."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.linkbroker import contacts as rules
from services.linkbroker.contacts import Bookings, RuleViolation, State

NOW = 1_700_000_000.0


def test_spacecraft_names_and_bare_numbers_parse():
    assert rules.parse_spacecraft("satellites/25544") == 25544
    assert rules.parse_spacecraft("900001") == 900001
    for bad in ("", "satellites/", "satellite/1", "satellites/-1", "satellites/1x", "1.5"):
        assert rules.parse_spacecraft(bad) is None, bad


def test_profile_ids():
    assert rules.profile_id_problem("eo-downlink") is None
    assert rules.profile_id_problem("") == "is required"
    for bad in ("ab", "1abc", "Upper", "a_b_c", "x" * 41):
        assert rules.profile_id_problem(bad) is not None, bad


def test_profile_numbers_name_each_bad_field():
    assert rules.profile_problems(10.0, 60.0, None) == []
    assert rules.profile_problems(0.0, 1.0, 0.0) == []
    fields = [f for f, _ in rules.profile_problems(91.0, 0.5, 3601.0)]
    assert fields == ["min_elevation_deg", "min_viable_contact_duration", "guard_gap"]
    assert [f for f, _ in rules.profile_problems(float("nan"), None, -1.0)] == [
        "min_elevation_deg", "min_viable_contact_duration", "guard_gap"]


def test_lead_time_is_fifteen_minutes_by_default():
    assert rules.DEFAULT_LEAD_TIME_S == 900.0
    ok = rules.reservation_problems(NOW + 900.0, NOW + 1500.0, NOW, 60.0)
    assert ok == []
    soon = rules.reservation_problems(NOW + 899.0, NOW + 1500.0, NOW, 60.0)
    assert [(f, r) for f, _, r in soon] == [("start_time", "LEAD_TIME_NOT_MET")]
    assert "15 minutes" in soon[0][1]
    custom = rules.reservation_problems(NOW + 100.0, NOW + 500.0, NOW, 60.0, lead_time_s=60.0)
    assert custom == []


def test_reservation_times():
    reasons = {r for _, _, r in rules.reservation_problems(NOW + 2000, NOW + 1990, NOW, 60)}
    assert reasons == {"INVALID_WINDOW"}
    short = rules.reservation_problems(NOW + 2000, NOW + 2030, NOW, 60)
    assert [(f, r) for f, _, r in short] == [("end_time", "CONTACT_TOO_SHORT")]
    far = rules.reservation_problems(NOW + 8 * 86400, NOW + 8 * 86400 + 600, NOW, 60)
    assert [(f, r) for f, _, r in far] == [("start_time", "TOO_FAR_AHEAD")]
    long = rules.reservation_problems(NOW + 2000, NOW + 2000 + 86401, NOW, 60)
    assert [r for _, _, r in long] == ["CONTACT_TOO_LONG"]


def test_availability_window():
    f = {"start_field": "window.start_time", "end_field": "window.end_time"}
    assert rules.window_problems(NOW - 3600, NOW + 3600, NOW, **f) == []
    assert [x for x, _ in rules.window_problems(NOW + 10, NOW, NOW, **f)] == ["window.end_time"]
    past = rules.window_problems(NOW - 7200, NOW - 3600, NOW, **f)
    assert [d for _, d in past] == ["must be in the future"]
    assert [x for x, _ in rules.window_problems(NOW, NOW + 8 * 86400, NOW, **f)] == [
        "window.end_time"]
    assert [x for x, _ in rules.window_problems(NOW + 8 * 86400, NOW + 8 * 86400 + 60, NOW,
                                                **f)] == ["window.start_time"]


def test_covering_pass_allows_one_second_of_slack():
    rise = np.array([100.0, 1000.0, 5000.0])
    sets = np.array([400.0, 1500.0, 5600.0])
    assert rules.covering_pass(rise, sets, 1000.0, 1500.0) == 1
    assert rules.covering_pass(rise, sets, 999.5, 1500.8) == 1
    assert rules.covering_pass(rise, sets, 1100.0, 1200.0) == 1
    assert rules.covering_pass(rise, sets, 998.0, 1500.0) is None
    assert rules.covering_pass(rise, sets, 300.0, 1100.0) is None  # spans two passes
    assert rules.covering_pass(np.array([]), np.array([]), 0.0, 1.0) is None


def test_guard_gap_conflicts_per_antenna():
    # antenna 0 busy 1000..1600 with a 120 s gap; antenna 1 busy 5000..5600
    booked = Bookings.of([(1000.0, 1600.0, 120.0, 0), (5000.0, 5600.0, 120.0, 1)])
    starts = np.array([1600.0, 1719.0, 1720.0, 100.0, 4000.0])
    ends = np.array([1900.0, 2000.0, 2000.0, 880.0, 5000.0])
    busy = rules.busy_antennas(starts, ends, 120.0, booked, 2)
    np.testing.assert_array_equal(busy, [
        [True, False],   # starts when the contact on 0 ends
        [True, False],   # 119 s after: inside the guard gap
        [False, False],  # exactly the gap: allowed
        [False, False],  # ends exactly 120 s before
        [False, True],   # ends when the contact on 1 starts
    ])
    # the larger of the two gaps counts
    assert rules.busy_antennas(np.array([1800.0]), np.array([2000.0]), 300.0, booked, 2)[0, 0]


def test_antenna_assignment_takes_the_lowest_free_then_refuses():
    booked = Bookings.empty()
    assert rules.assign_antenna(1000.0, 1500.0, 120.0, booked, 2) == 0
    booked = Bookings.of([(1000.0, 1500.0, 120.0, 0)])
    assert rules.assign_antenna(1000.0, 1500.0, 120.0, booked, 2) == 1
    assert rules.assign_antenna(1620.0, 2000.0, 120.0, booked, 1) == 0
    booked = Bookings.of([(1000.0, 1500.0, 120.0, 0), (1100.0, 1400.0, 60.0, 1)])
    with pytest.raises(RuleViolation) as refused:
        rules.assign_antenna(1450.0, 1800.0, 120.0, booked, 2)
    assert refused.value.reason == "NO_ANTENNA_AVAILABLE"
    assert refused.value.kind == "state"
    assert refused.value.metadata["conflicting_contacts"] == "2"
    assert refused.value.metadata["earliest_free_unix_s"] == "1520"  # 1400 + 120


@given(st.lists(st.tuples(st.floats(0, 10_000), st.floats(1, 2_000), st.floats(0, 600),
                          st.integers(0, 2)), max_size=12),
       st.floats(0, 10_000), st.floats(1, 2_000), st.floats(0, 600))
def test_vectorized_conflicts_match_the_pairwise_rule(rows, start, length, gap):
    booked = Bookings.of([(s, s + d, g, a) for s, d, g, a in rows])
    busy = rules.busy_antennas(np.array([start]), np.array([start + length]), gap, booked, 3)[0]
    for antenna in range(3):
        expected = any(a == antenna and start < s + d + max(g, gap)
                       and s < start + length + max(g, gap) for s, d, g, a in rows)
        assert busy[antenna] == expected


def test_ended_scheduled_contacts_read_as_succeeded():
    assert rules.effective_state(State.SCHEDULED, NOW + 1, NOW) == State.SCHEDULED
    assert rules.effective_state(State.SCHEDULED, NOW, NOW) == State.SUCCEEDED
    assert rules.effective_state(State.CANCELLED, NOW - 1, NOW) == State.CANCELLED
    assert rules.effective_state(State.FAILED, NOW - 1, NOW) == State.FAILED


def test_state_machine():
    rules.check_cancel(State.SCHEDULED, NOW + 10, NOW)
    for state, start, reason in [(State.CANCELLED, NOW + 10, "CONTACT_NOT_SCHEDULED"),
                                 (State.SUCCEEDED, NOW - 100, "CONTACT_NOT_SCHEDULED"),
                                 (State.SCHEDULED, NOW - 1, "CONTACT_STARTED")]:
        with pytest.raises(RuleViolation) as refused:
            rules.check_cancel(state, start, NOW)
        assert refused.value.reason == reason

    rules.check_provider_cancel(State.SCHEDULED, NOW + 1, NOW)  # even while in progress
    for state, end in [(State.SCHEDULED, NOW), (State.CANCELLED, NOW + 10),
                       (State.FAILED, NOW + 10)]:
        with pytest.raises(RuleViolation):
            rules.check_provider_cancel(state, end, NOW)

    for current in (State.SCHEDULED, State.SUCCEEDED, State.FAILED):
        rules.check_outcome(current, State.FAILED, NOW - 1, NOW)
        rules.check_outcome(current, State.SUCCEEDED, NOW - 1, NOW)
    for current, outcome, start, reason in [
            (State.CANCELLED, State.FAILED, NOW - 1, "CONTACT_CANCELLED"),
            (State.PROVIDER_CANCELLED, State.SUCCEEDED, NOW - 1, "CONTACT_CANCELLED"),
            (State.SCHEDULED, State.FAILED, NOW + 1, "CONTACT_NOT_STARTED"),
            (State.SCHEDULED, State.CANCELLED, NOW - 1, "INVALID_OUTCOME")]:
        with pytest.raises(RuleViolation) as refused:
            rules.check_outcome(current, outcome, start, NOW)
        assert refused.value.reason == reason


def test_default_ground_stations_are_sane():
    ids = [s.station_id for s in rules.DEFAULT_GROUND_STATIONS]
    assert len(ids) == len(set(ids)) >= 4
    for s in rules.DEFAULT_GROUND_STATIONS:
        assert rules.profile_id_problem(s.station_id) is None
        assert -90 <= s.latitude_deg <= 90 and -180 <= s.longitude_deg <= 180
        assert 1 <= s.antennas <= 64 and 0 <= s.min_elevation_deg < 90
    assert {"quincy-wa", "columbus-oh"} <= set(ids)


def test_guard_gap_boundary_survives_the_microsecond_round_trip():
    """Epoch-scale times at whole microseconds (what the DateTime columns keep): a contact
    starting exactly one guard gap after another ends is free, one microsecond earlier it
    is not, and the round trip through an aware datetime keeps both values exactly."""
    from datetime import UTC, datetime

    end = 1_765_000_000.123456
    back = datetime.fromtimestamp(end, UTC).timestamp()
    assert back == end
    booked = Bookings.of([(end - 600.0, back, 120.0, 0)])
    exact, early = 1_765_000_120.123456, 1_765_000_120.123455
    busy = rules.busy_antennas(np.array([exact, early]), np.array([exact + 300, early + 300]),
                               120.0, booked, 1)
    np.testing.assert_array_equal(busy, [[False], [True]])
