"""Rows to records (`domain/records.py`) and back: the only place that knows both."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..domain.plans import PlanTerms
from ..domain.records import (
    AuditRecord,
    Customer,
    Event,
    Operation,
    Partner,
    Plan,
    Referral,
    Subscription,
    Terminal,
    field_names,
)
from .tables import (
    AuditRow,
    CustomerRow,
    EventRow,
    OperationRow,
    PartnerRow,
    PlanRow,
    ReferralRow,
    SubscriptionRow,
)

TERMS = ("bandwidth_mbps", "priority_class", "min_quantity", "max_quantity",
         "price_currency", "price_units", "price_nanos", "regions")


def new_id() -> str:
    """A time-ordered id: microseconds since the epoch in hex, then 24 random bits."""
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(3)}"


def as_json(data: Any) -> str:
    """JSON as the audit records and events store it (sorted keys, no spaces)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def aware(value: datetime | None) -> datetime | None:
    """A naive UTC value read by a raw driver (the fast path) as the ORM gives it."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def terms_of(row: Any) -> PlanTerms:
    """The terms columns of a plan or subscription row (or any object or mapping with them)."""
    get = row.get if isinstance(row, Mapping) else lambda name: getattr(row, name)
    return PlanTerms(
        bandwidth_mbps=get("bandwidth_mbps"), priority_class=get("priority_class"),
        min_quantity=get("min_quantity"), max_quantity=get("max_quantity"),
        price_currency=get("price_currency"), price_units=get("price_units"),
        price_nanos=get("price_nanos"),
        regions=tuple(r for r in get("regions").split(",") if r))


def terms_columns(terms: PlanTerms) -> dict[str, Any]:
    """The terms as column values."""
    return {"bandwidth_mbps": terms.bandwidth_mbps, "priority_class": str(terms.priority_class),
            "min_quantity": terms.min_quantity, "max_quantity": terms.max_quantity,
            "price_currency": terms.price_currency, "price_units": terms.price_units,
            "price_nanos": terms.price_nanos, "regions": ",".join(terms.regions)}


def set_terms(row: PlanRow | SubscriptionRow, terms: PlanTerms) -> None:
    for name, value in terms_columns(terms).items():
        setattr(row, name, value)


def _columns(row: Any, names: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in names}


def partner(row: PartnerRow) -> Partner:
    return Partner(row.id, row.display_name, row.contact_email, row.create_time)


def referral(row: ReferralRow) -> Referral:
    return Referral(**_columns(row, field_names(Referral)))


def customer(row: CustomerRow) -> Customer:
    return Customer(**_columns(row, field_names(Customer)))


def plan(row: PlanRow) -> Plan:
    return Plan(id=row.id, display_name=row.display_name, revision=row.revision,
                terms=terms_of(row), create_time=row.create_time, update_time=row.update_time,
                version=row.version)


def subscription(row: Any) -> Subscription:
    """From a SubscriptionRow or any object with its columns (a fast-path read)."""
    values = {name: getattr(row, name) for name in field_names(Subscription)
              if name != "terms"}
    for name in Subscription.TIMES:
        values[name] = aware(values[name])
    return Subscription(terms=terms_of(row), **values)


def operation(row: OperationRow) -> Operation:
    return Operation(**_columns(row, field_names(Operation)))


def terminal(row: Any) -> Terminal:
    """From a TerminalRow, a Core row mapping or a fast-path read of its columns."""
    get = row.get if isinstance(row, Mapping) else lambda name: getattr(row, name)
    values = {name: get(name) for name in field_names(Terminal)}
    for name in Terminal.TIMES:
        values[name] = aware(values[name])
    return Terminal(**values)


def audit(row: AuditRow) -> AuditRecord:
    return AuditRecord(
        id=row.id, resource=row.resource, action=row.action, actor=row.actor,
        actor_tenant=row.actor_tenant, request_id=row.request_id,
        before=json.loads(row.before) if row.before else None,
        after=json.loads(row.after) if row.after else None, create_time=row.create_time)


def event(row: EventRow) -> Event:
    data = json.loads(row.payload)
    resource: Subscription | Terminal = (
        Subscription.from_payload(data) if row.type.startswith("SUBSCRIPTION")
        else Terminal.from_payload(data))
    assert row.position is not None  # only published events are read
    return Event(position=row.position, type=row.type, name=row.resource,
                 customer_id=row.customer_id, resource=resource, create_time=row.create_time)
