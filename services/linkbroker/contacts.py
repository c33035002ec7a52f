"""Ground-station contacts: the rules, without a server or a database.

A contact books one antenna of a ground station for ``[start, end)`` while a spacecraft is
above the contact's elevation mask. Times are Unix seconds (float, UTC); elevations and
azimuths are degrees (geodetic, topocentric at the station; azimuth from north through
east).

Rules:

- **Lead time**: a contact starts at least :data:`DEFAULT_LEAD_TIME_S` (15 minutes) after
  the reservation, so that the station has time to configure the antenna (Azure Orbital
  and AWS Ground Station both require a few minutes to tens of minutes); at most
  :data:`MAX_AHEAD_S` (7 days) ahead, the horizon over which an element set predicts passes
  to within seconds.
- **Guard gap**: consecutive contacts on one antenna are at least the guard gap apart
  (slew to the next spacecraft, reconfigure); each contact keeps the gap of the profile it
  was reserved with (default :data:`DEFAULT_GUARD_GAP_S`, 2 minutes) and two contacts use
  the larger of their gaps.
- **Antennas**: one contact per antenna at a time; a reservation gets the lowest-numbered
  free antenna (so later reservations find the higher antennas free as long as possible).
- **States**: SCHEDULED -> CANCELLED (customer, before the start), SCHEDULED ->
  PROVIDER_CANCELLED (operator, before the end), SCHEDULED -> SUCCEEDED (the end passed;
  see :func:`effective_state`) and SCHEDULED/SUCCEEDED/FAILED -> SUCCEEDED/FAILED (operator
  outcome once started; an outcome may be corrected). CANCELLED and PROVIDER_CANCELLED are
  final.
- **SUCCEEDED is lazy**: nothing sweeps the table; a SCHEDULED contact whose end has passed
  *reads* as SUCCEEDED everywhere (:func:`effective_state`, and the same test in SQL for
  list filters), and the first write that touches it stores it. So the answer never depends
  on when a sweeper last ran, and two replicas need no coordination for it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A contact starts at least this long after it is reserved, s (15 minutes).
DEFAULT_LEAD_TIME_S = 15 * 60.0
#: Guard gap when a profile sets none, s (2 minutes).
DEFAULT_GUARD_GAP_S = 120.0
#: Largest guard gap a profile may ask for, s.
MAX_GUARD_GAP_S = 3600.0
#: How far ahead a contact may start, and the longest availability window, s (7 days).
MAX_AHEAD_S = 7 * 86_400.0
MAX_WINDOW_S = 7 * 86_400.0
#: Longest contact, s (1 day: a geostationary downlink; a LEO pass lasts minutes).
MAX_CONTACT_S = 86_400.0
#: Bounds of a profile's minimum viable contact duration, s.
MIN_VIABLE_DURATION_S = (1.0, 86_400.0)
#: Rise and set from the orbit service are good to about a second: a requested contact
#: may overhang its pass by this much, s.
PASS_TOLERANCE_S = 1.0

_PROFILE_ID = re.compile(r"^[a-z][a-z0-9-]{2,39}$")
_SPACECRAFT = re.compile(r"^(?:satellites/)?([0-9]{1,9})$")


class State(enum.IntEnum):
    """Contact states; the numbers are those of ``Contact.State`` in contacts.proto."""

    SCHEDULED = 1
    SUCCEEDED = 2
    FAILED = 3
    CANCELLED = 4
    PROVIDER_CANCELLED = 5


FINAL = frozenset({State.CANCELLED, State.PROVIDER_CANCELLED})
OUTCOMES = frozenset({State.SUCCEEDED, State.FAILED})


class RuleViolation(Exception):
    """A request the rules refuse: `reason` (UPPER_SNAKE), the field at fault (or None),
    and `kind`: ``"argument"`` (the request is wrong) or ``"state"`` (the contact or the
    station is not in a state that allows it)."""

    def __init__(self, message: str, reason: str, field: str | None = None,
                 kind: str = "state", metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.field = field
        self.kind = kind
        self.metadata = metadata or {}


# --------------------------------------------------------------------------- ground stations

@dataclass(frozen=True)
class GroundStationSpec:
    """A ground station: WGS84 location (deg, deg, m), antennas, site mask (deg)."""

    station_id: str
    display_name: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    antennas: int
    min_elevation_deg: float
    provider: str
    region: str  # Azure region id, e.g. ``westus2``


#: Stations inserted at every start when missing (reference data, like the regions): the
#: Azure Orbital sites Microsoft operates and partner sites, at approximate public
#: coordinates, each landing in the nearest Azure region; Columbus stands for a site in
#: the US East (the AWS Ground Station Ohio location).
DEFAULT_GROUND_STATIONS: tuple[GroundStationSpec, ...] = (
    GroundStationSpec("quincy-wa", "Microsoft Quincy, Washington", 47.2332, -119.8525, 380.0,
                      2, 5.0, "Microsoft", "westus2"),
    GroundStationSpec("columbus-oh", "Columbus, Ohio", 39.9612, -82.9988, 240.0, 1, 5.0,
                      "Microsoft", "eastus2"),
    GroundStationSpec("gavle-se", "Microsoft Gävle, Sweden", 60.6749, 17.1413, 20.0, 2, 5.0,
                      "Microsoft", "swedencentral"),
    GroundStationSpec("singapore", "Microsoft Singapore", 1.3521, 103.8198, 15.0, 1, 5.0,
                      "Microsoft", "southeastasia"),
    GroundStationSpec("svalbard-no", "KSAT Svalbard, Norway", 78.2298, 15.4078, 500.0, 3, 5.0,
                      "KSAT", "norwayeast"),
    GroundStationSpec("johannesburg-za", "Johannesburg, South Africa", -25.8870, 27.7072,
                      1550.0, 1, 5.0, "Microsoft", "southafricanorth"),
)


# --------------------------------------------------------------------------- parsing

def parse_spacecraft(value: str) -> int | None:
    """The catalog number of ``satellites/{n}`` or a bare ``n``; None when malformed."""
    match = _SPACECRAFT.match(value or "")
    return int(match.group(1)) if match else None


def profile_id_problem(value: str) -> str | None:
    """Why a profile id is malformed, or None."""
    if not value:
        return "is required"
    if not _PROFILE_ID.match(value):
        return "must be 3 to 40 of a-z, 0-9 and '-', starting with a letter"
    return None


def profile_problems(min_elevation_deg: float, min_duration_s: float | None,
                     guard_gap_s: float | None) -> list[tuple[str, str]]:
    """Violations (field relative to the profile, description) of a profile's numbers.
    ``min_duration_s`` None means unset; ``guard_gap_s`` None means the default."""
    problems = []
    if not (np.isfinite(min_elevation_deg) and 0.0 <= min_elevation_deg <= 90.0):
        problems.append(("min_elevation_deg", "must be 0 to 90 degrees"))
    low, high = MIN_VIABLE_DURATION_S
    if min_duration_s is None:
        problems.append(("min_viable_contact_duration", "is required"))
    elif not low <= min_duration_s <= high:
        problems.append(("min_viable_contact_duration", f"must be {low:g} s to {high:g} s"))
    if guard_gap_s is not None and not 0.0 <= guard_gap_s <= MAX_GUARD_GAP_S:
        problems.append(("guard_gap", f"must be 0 to {MAX_GUARD_GAP_S:g} s"))
    return problems


# --------------------------------------------------------------------------- windows

def window_problems(start_s: float, end_s: float, now_s: float, *, start_field: str,
                    end_field: str) -> list[tuple[str, str]]:
    """Violations of an availability window: it ends after it starts and after now, is
    at most :data:`MAX_WINDOW_S` long and starts at most :data:`MAX_AHEAD_S` ahead."""
    problems = []
    if end_s <= start_s:
        problems.append((end_field, "must be after the start"))
    elif end_s - start_s > MAX_WINDOW_S:
        problems.append((end_field, f"the window must be at most {MAX_WINDOW_S / 86400:g} "
                                    "days long"))
    elif end_s <= now_s:
        problems.append((end_field, "must be in the future"))
    if start_s - now_s > MAX_AHEAD_S:
        problems.append((start_field, f"must be at most {MAX_AHEAD_S / 86400:g} days ahead"))
    return problems


def reservation_problems(start_s: float, end_s: float, now_s: float, min_duration_s: float,
                         lead_time_s: float = DEFAULT_LEAD_TIME_S
                         ) -> list[tuple[str, str, str]]:
    """Violations ``(field, description, reason)`` of a requested contact's times."""
    problems = []
    if end_s <= start_s:
        problems.append(("end_time", "must be after start_time", "INVALID_WINDOW"))
    else:
        duration = end_s - start_s
        if duration + 1e-6 < min_duration_s:
            problems.append(("end_time", f"the contact lasts {duration:.0f} s, less than the "
                             f"profile's minimum viable duration of {min_duration_s:g} s",
                             "CONTACT_TOO_SHORT"))
        if duration > MAX_CONTACT_S:
            problems.append(("end_time", f"a contact lasts at most {MAX_CONTACT_S:g} s",
                             "CONTACT_TOO_LONG"))
    if start_s < now_s + lead_time_s:
        problems.append(("start_time", f"must be at least {lead_time_s / 60:g} minutes from "
                         f"now (the lead time); it is {(start_s - now_s) / 60:.1f} minutes",
                         "LEAD_TIME_NOT_MET"))
    elif start_s - now_s > MAX_AHEAD_S:
        problems.append(("start_time", f"must be at most {MAX_AHEAD_S / 86400:g} days ahead",
                         "TOO_FAR_AHEAD"))
    return problems


def covering_pass(rise_s: np.ndarray, set_s: np.ndarray, start_s: float, end_s: float,
                  tolerance_s: float = PASS_TOLERANCE_S) -> int | None:
    """Index of the pass ``[rise, set]`` that contains ``[start, end]`` (give or take
    `tolerance_s`), or None: a contact must lie inside one pass."""
    rise_s, set_s = np.asarray(rise_s, float), np.asarray(set_s, float)
    inside = (rise_s <= start_s + tolerance_s) & (set_s >= end_s - tolerance_s)
    hits = np.flatnonzero(inside)
    return int(hits[0]) if hits.size else None


# --------------------------------------------------------------------------- antennas

@dataclass(frozen=True)
class Bookings:
    """Contacts holding antennas of one station (columns, seconds): start, end, guard gap
    and antenna index."""

    start_s: np.ndarray
    end_s: np.ndarray
    gap_s: np.ndarray
    antenna: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[tuple[float, float, float, int]]) -> Bookings:
        table = np.asarray(rows, float).reshape(-1, 4)
        return cls(table[:, 0], table[:, 1], table[:, 2], table[:, 3].astype(np.int64))

    @classmethod
    def empty(cls) -> Bookings:
        return cls.of([])


def busy_antennas(start_s: np.ndarray, end_s: np.ndarray, gap_s: float, bookings: Bookings,
                  antennas: int) -> np.ndarray:
    """``(P, antennas)`` bool: antenna ``a`` is busy for candidate ``p`` when a booking on
    it comes closer than the larger guard gap to ``[start_s[p], end_s[p])``.

    Two intervals conflict when ``s1 < e2 + g`` and ``s2 < e1 + g`` with ``g`` the larger
    of the two gaps: back to back with exactly ``g`` between them is allowed.
    """
    start_s = np.atleast_1d(np.asarray(start_s, float))[:, None]
    end_s = np.atleast_1d(np.asarray(end_s, float))[:, None]
    gap = np.maximum(gap_s, bookings.gap_s)[None, :]
    overlap = (start_s < bookings.end_s[None, :] + gap) & (
        bookings.start_s[None, :] < end_s + gap)  # (P, C)
    valid = (bookings.antenna >= 0) & (bookings.antenna < antennas)
    onehot = np.zeros((bookings.antenna.size, antennas), dtype=np.int64)
    onehot[np.flatnonzero(valid), bookings.antenna[valid]] = 1
    busy: np.ndarray = (overlap.astype(np.int64) @ onehot) > 0
    return busy


def assign_antenna(start_s: float, end_s: float, gap_s: float, bookings: Bookings,
                   antennas: int) -> int:
    """The lowest free antenna for ``[start_s, end_s)``; :class:`RuleViolation`
    NO_ANTENNA_AVAILABLE when every antenna is busy."""
    busy = busy_antennas(np.array([start_s]), np.array([end_s]), gap_s, bookings, antennas)[0]
    free = np.flatnonzero(~busy)
    if free.size:
        return int(free[0])
    gap = np.maximum(gap_s, bookings.gap_s)
    clash = (start_s < bookings.end_s + gap) & (bookings.start_s < end_s + gap)
    earliest = float(np.min(bookings.end_s[clash] + gap[clash])) if clash.any() else end_s
    raise RuleViolation(
        f"all {antennas} antenna(s) of the station are reserved within the guard gap "
        f"({gap_s:g} s) of this contact; choose another pass or station",
        "NO_ANTENNA_AVAILABLE", kind="state",
        metadata={"antennas": str(antennas), "conflicting_contacts": str(int(clash.sum())),
                  "earliest_free_unix_s": f"{earliest:.0f}"})


# --------------------------------------------------------------------------- states

def effective_state(stored: State, end_s: float, now_s: float) -> State:
    """The state as read: a SCHEDULED contact whose end has passed has SUCCEEDED."""
    if stored == State.SCHEDULED and end_s <= now_s:
        return State.SUCCEEDED
    return stored


def check_cancel(current: State, start_s: float, now_s: float) -> None:
    """A customer cancels a SCHEDULED contact that has not started."""
    if current != State.SCHEDULED:
        raise RuleViolation(f"the contact is {current.name}, not SCHEDULED",
                            "CONTACT_NOT_SCHEDULED")
    if start_s <= now_s:
        raise RuleViolation("the contact has already started; only the provider can cancel "
                            "it now", "CONTACT_STARTED")


def check_provider_cancel(current: State, end_s: float, now_s: float) -> None:
    """The provider cancels a SCHEDULED contact that has not ended."""
    if current != State.SCHEDULED or end_s <= now_s:
        raise RuleViolation(f"the contact is {effective_state(current, end_s, now_s).name}, "
                            "not SCHEDULED", "CONTACT_NOT_SCHEDULED")


def check_outcome(current: State, outcome: State, start_s: float, now_s: float) -> None:
    """An operator records SUCCEEDED or FAILED for a contact that has started and was not
    cancelled (a recorded outcome may be corrected)."""
    if outcome not in OUTCOMES:
        raise RuleViolation("the outcome must be STATE_SUCCEEDED or STATE_FAILED",
                            "INVALID_OUTCOME", field="outcome", kind="argument")
    if current in FINAL:
        raise RuleViolation(f"the contact is {current.name}; a cancelled contact has no "
                            "outcome", "CONTACT_CANCELLED")
    if start_s > now_s:
        raise RuleViolation("the contact has not started yet", "CONTACT_NOT_STARTED")
