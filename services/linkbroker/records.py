"""The records the link broker's stores hand the broker and the servicers: frozen, slotted,
typed; and the states they hold, as `StrEnum`s whose values are the strings stored in the
tables and named on the wire (``STATE_`` + value), unchanged from the bare strings used
before.

Times of the link tables are timezone-aware UTC datetimes; the contact tables' times are
still Unix seconds (float, UTC), as those tables hold them. Slots are slot indices
(:mod:`services.linkbroker.slots`). Conversion to protobuf: :mod:`services.linkbroker.convert`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Self

__all__ = [
    "ContactRecord",
    "EventKind",
    "GatewayRecord",
    "GatewayStatus",
    "LIVE_STATES",
    "Lease",
    "LeaseEvent",
    "LinkState",
    "LiveLease",
    "NewGateway",
    "NewLease",
    "Priority",
    "ProfileRecord",
    "StationRecord",
]


class LinkState(StrEnum):
    """A link's state (``leases.state``, ``lease_events.state``; ``Link.State`` less its
    ``STATE_`` prefix)."""

    ACTIVE = "ACTIVE"
    DEGRADED = "DEGRADED"
    PREEMPTED = "PREEMPTED"
    SUSPENDED = "SUSPENDED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


#: States that hold capacity.
LIVE_STATES = (LinkState.ACTIVE, LinkState.DEGRADED)


class Priority(StrEnum):
    """A link's priority (``leases.priority``; ``Link.Priority`` less ``PRIORITY_``)."""

    GOVERNMENT = "GOVERNMENT"
    ENTERPRISE = "ENTERPRISE"
    BEST_EFFORT = "BEST_EFFORT"


class EventKind(StrEnum):
    """What a lease event records (``lease_events.kind``)."""

    CREATED = "CREATED"
    STATE_CHANGED = "STATE_CHANGED"
    REPLANNED = "REPLANNED"


class GatewayStatus(StrEnum):
    """A gateway's stored state (``gateways.state``; ``Gateway.State`` less ``STATE_``).
    The routing arrays hold it as :class:`services.linkbroker.gateways.GatewayState`."""

    ACTIVE = "ACTIVE"
    DRAINED = "DRAINED"


def _of(cls: Any, mapping: Any) -> Any:
    return cls(**{name: mapping[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class GatewayRecord:
    id: str
    display_name: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    antennas: int
    region: str
    state: GatewayStatus
    create_time: datetime
    update_time: datetime

    @classmethod
    def of(cls, mapping: Any) -> Self:
        """A record from a row mapping of ``gateways``."""
        record: Self = _of(cls, {**mapping, "state": GatewayStatus(mapping["state"])})
        return record


@dataclass(frozen=True, slots=True)
class NewGateway:
    """A gateway to add (CreateGateway, or the defaults seeded into an empty table)."""

    id: str
    display_name: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    antennas: int
    region: str
    state: GatewayStatus = GatewayStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class NewLease:
    """What a RequestLink asks the broker to plan and hold (the servicer builds it from
    the request and provisioning's entitlement answer)."""

    id: str
    tenant: str
    customer: str
    terminal: str
    subscription: str
    region: str
    bandwidth_mbps: float
    priority: Priority
    first_slot: int
    end_slot: int
    latitude_deg: float
    longitude_deg: float
    altitude_m: float


@dataclass(frozen=True, slots=True)
class Lease:
    """A link as stored (``leases``): who, where, the window (``first_slot`` inclusive,
    ``end_slot`` exclusive), state, priority and the packed plan."""

    id: str
    tenant: str
    customer: str
    terminal: str
    subscription: str
    region: str
    bandwidth_mbps: float
    priority: Priority
    first_slot: int
    end_slot: int
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    state: LinkState
    state_reason: str
    plan: bytes
    plan_revision: int
    create_time: datetime
    update_time: datetime

    @classmethod
    def of(cls, mapping: Any) -> Self:
        """A record from a row mapping of ``leases`` (or the values inserted)."""
        record: Self = _of(cls, {**mapping, "state": LinkState(mapping["state"]),
                                 "priority": Priority(mapping["priority"]),
                                 "plan": bytes(mapping["plan"])})
        return record


@dataclass(frozen=True, slots=True)
class LiveLease:
    """What a re-plan or a revocation needs of a live lease to choose it."""

    id: str
    plan: bytes
    subscription: str


@dataclass(frozen=True, slots=True)
class LeaseEvent:
    """What happened to a link (``lease_events``), for WatchLink."""

    id: int
    lease_id: str
    kind: EventKind
    state: LinkState
    reason: str
    create_time: datetime

    @classmethod
    def of(cls, mapping: Any) -> Self:
        record: Self = _of(cls, {**mapping, "kind": EventKind(mapping["kind"]),
                                 "state": LinkState(mapping["state"])})
        return record


@dataclass(frozen=True, slots=True)
class StationRecord:
    """A ground station (``ground_stations``)."""

    id: str
    display_name: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    antennas: int
    min_elevation_deg: float
    provider: str
    region: str
    create_time: datetime

    @classmethod
    def of(cls, mapping: Any) -> Self:
        record: Self = _of(cls, mapping)
        return record


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """A tenant's contact profile (``contact_profiles``)."""

    tenant: str
    id: str
    display_name: str
    min_elevation_deg: float
    min_duration_s: float
    guard_gap_s: float
    create_time: datetime

    @classmethod
    def of(cls, mapping: Any) -> Self:
        record: Self = _of(cls, mapping)
        return record


@dataclass(frozen=True, slots=True)
class ContactRecord:
    """A reserved contact (``contacts``); ``state`` is the stored name of
    :class:`services.linkbroker.contacts.State` (read it through ``effective_state``)."""

    id: str
    tenant: str
    spacecraft: int
    ground_station: str
    profile: str
    antenna: int
    start_time: datetime
    end_time: datetime
    max_elevation_deg: float
    start_azimuth_deg: float
    end_azimuth_deg: float
    min_elevation_deg: float
    guard_gap_s: float
    state: str
    state_reason: str
    create_time: datetime
    update_time: datetime

    @property
    def start_s(self) -> float:
        """The start in Unix seconds (what the contact rules compute with)."""
        return self.start_time.timestamp()

    @property
    def end_s(self) -> float:
        """The end in Unix seconds."""
        return self.end_time.timestamp()

    @classmethod
    def of(cls, mapping: Any) -> Self:
        record: Self = _of(cls, mapping)
        return record


def utc_instant(seconds: float) -> datetime:
    """Unix seconds as an aware UTC datetime, rounded to the whole microsecond a
    contact-table column holds (so what the rules check is what the row keeps)."""
    return datetime.fromtimestamp(seconds, UTC)


def instant_micros(value: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact: page tokens)."""
    return (value - _EPOCH) // timedelta(microseconds=1)


def micros_instant(micros: int) -> datetime | None:
    """Integer microseconds since the epoch as an aware datetime; None when out of range."""
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
