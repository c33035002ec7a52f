"""The records the store hands the application and the servicer: frozen, typed, times as
timezone-aware UTC datetimes.

`payload()` is a record as JSON-ready data (times as ISO 8601 strings): the `before` and
`after` of its audit records and the snapshot in its events, unchanged from the dicts the
service wrote before records existed, so stored history reads back the same.
`from_payload()` reads one back (an event's snapshot).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, Self, TypeVar

from .plans import PlanTerms

T = TypeVar("T")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def field_names(record: Any) -> tuple[str, ...]:
    """The data fields of a record class or record (not its ClassVars)."""
    return tuple(f.name for f in dataclasses.fields(record))


class _Record:
    """What every record shares: its payload form and back."""

    #: Fields that hold times (datetime or None).
    TIMES: ClassVar[tuple[str, ...]] = ("create_time",)

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in self.TIMES:
                value = _iso(value)
            elif isinstance(value, PlanTerms):
                value = value.as_dict()
            out[f.name] = value
        return out

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Self:
        values = dict(data)
        for name in cls.TIMES:
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        if "terms" in values and isinstance(values["terms"], dict):
            values["terms"] = PlanTerms.from_dict(values["terms"])
        return cls(**values)

    def changed(self, **values: Any) -> Self:
        return dataclasses.replace(self, **values)  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class Partner(_Record):
    id: str
    display_name: str
    contact_email: str
    create_time: datetime


@dataclass(frozen=True, slots=True)
class Referral(_Record):
    TIMES: ClassVar[tuple[str, ...]] = ("expire_time", "create_time", "update_time")

    id: str
    engagement_id: str
    owner_id: str
    counterparty_id: str
    direction: str
    display_name: str
    status: str
    substatus: str
    deal_currency: str
    deal_units: int
    deal_nanos: int
    organization: str
    country: str
    contact_email: str
    sector: str
    consent_share_contact: bool
    consent_contact: bool
    notes: str
    expire_time: datetime | None
    create_time: datetime
    update_time: datetime
    version: int


@dataclass(frozen=True, slots=True)
class Customer(_Record):
    id: str
    display_name: str
    sector: str
    country: str
    contact_email: str
    azure_tenant_id: str
    azure_subscription_id: str
    tenant: str
    partner_id: str | None
    referral_id: str | None
    engagement_id: str | None
    create_time: datetime
    version: int


@dataclass(frozen=True, slots=True)
class Plan(_Record):
    TIMES: ClassVar[tuple[str, ...]] = ("create_time", "update_time")

    id: str
    display_name: str
    revision: int
    terms: PlanTerms
    create_time: datetime
    update_time: datetime
    version: int


@dataclass(frozen=True, slots=True)
class Subscription(_Record):
    TIMES: ClassVar[tuple[str, ...]] = ("activation_deadline", "grace_end_time", "create_time",
                                        "update_time")

    id: str
    customer_id: str
    display_name: str
    plan_id: str
    plan_revision: int
    terms: PlanTerms
    quantity: int
    terminal_count: int
    state: str
    activation_deadline: datetime
    grace_end_time: datetime | None
    state_reason: str
    create_time: datetime
    update_time: datetime
    version: int


@dataclass(frozen=True, slots=True)
class Operation(_Record):
    TIMES: ClassVar[tuple[str, ...]] = ("create_time", "end_time")

    id: str
    subscription_id: str
    customer_id: str
    kind: str
    state: str
    plan_id: str
    quantity: int
    reason: str
    error_code: int
    error_reason: str
    error_message: str
    requested_by: str
    create_time: datetime
    end_time: datetime | None


@dataclass(frozen=True, slots=True)
class Terminal(_Record):
    TIMES: ClassVar[tuple[str, ...]] = ("create_time", "update_time")

    id: str
    customer_id: str
    subscription_id: str
    serial_number: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    state: str
    create_time: datetime
    update_time: datetime
    version: int


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    resource: str
    action: str
    actor: str
    actor_tenant: str
    request_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    create_time: datetime


@dataclass(frozen=True, slots=True)
class Event:
    """One published change, at feed position `position`; `resource` is the changed
    subscription or terminal as it was after the change."""

    position: int
    type: str
    name: str
    customer_id: str
    resource: Subscription | Terminal
    create_time: datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, with the key of its last item when more follow."""

    items: list[T]
    last: Any

    def __iter__(self) -> Iterator[Any]:
        """`items, last = page`."""
        return iter((self.items, self.last))
