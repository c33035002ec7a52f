"""Entitlement checks: one indexed query per check (a batch in one statement on
PostgreSQL), decided by `domain.entitlements`; no cache, so a change committed by any
replica shows in the next answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from ..domain.entitlements import Entitlement, decide_entitlement
from ..domain.names import customer_name, subscription_name
from .rows import terms_of

if TYPE_CHECKING:
    from . import Store

#: Customer, terminal and subscription by primary key; no row: no such customer.
_ONE_SQL = (
    "SELECT t.state, s.state, s.bandwidth_mbps, s.priority_class, s.regions, s.id, "
    "s.min_quantity, s.max_quantity, c.tenant, t.latitude_deg, t.longitude_deg, "
    "t.altitude_m FROM customers c "
    "LEFT JOIN terminals t ON t.id = {terminal} AND t.customer_id = c.id "
    "LEFT JOIN subscriptions s ON s.id = t.subscription_id WHERE c.id = {customer}")
_ONE = text(_ONE_SQL.format(terminal=":terminal", customer=":customer"))
_ONE_FAST = _ONE_SQL.format(terminal="%(terminal)s", customer="%(customer)s")

#: The batched form: one row per check, in the checks' order (PostgreSQL).
_BATCH_SQL = (
    "SELECT c.id IS NOT NULL, t.state, s.state, s.bandwidth_mbps, s.priority_class, "
    "s.regions, s.id, s.min_quantity, s.max_quantity, c.tenant, t.latitude_deg, "
    "t.longitude_deg, t.altitude_m "
    "FROM unnest(%(customers)s::text[], %(terminals)s::text[]) WITH ORDINALITY "
    "AS q(customer, terminal, n) "
    "LEFT JOIN customers c ON c.id = q.customer "
    "LEFT JOIN terminals t ON t.id = q.terminal AND t.customer_id = c.id "
    "LEFT JOIN subscriptions s ON s.id = t.subscription_id ORDER BY q.n")


def decide(row: Sequence[Any] | None, customer_id: str, bandwidth: float,
           region: str) -> Entitlement:
    """The decision for one query row (None: the customer does not exist)."""
    if row is None:
        return Entitlement(False, "CUSTOMER_NOT_FOUND",
                           f"{customer_name(customer_id)} does not exist")
    if row[0] is None:
        return dataclasses.replace(decide_entitlement(
            terminal_state=None, subscription_state=None, terms=None,
            bandwidth_mbps=bandwidth, region=region), customer_tenant=row[8])
    t_state, s_state, bw, priority, regions, sub_id, lo, hi, tenant, lat, lon, alt = row
    terms = terms_of({"bandwidth_mbps": bw, "priority_class": priority, "min_quantity": lo,
                      "max_quantity": hi, "price_currency": "", "price_units": 0,
                      "price_nanos": 0, "regions": regions})
    return dataclasses.replace(decide_entitlement(
        terminal_state=t_state, subscription_state=s_state, terms=terms,
        bandwidth_mbps=bandwidth, region=region,
        subscription=subscription_name(customer_id, sub_id)),
        customer_tenant=tenant, terminal_location=(lat, lon, alt))


async def check_one(store: Store, customer_id: str, terminal_id: str, bandwidth: float,
                    region: str) -> Entitlement:
    """On an autocommit connection (PostgreSQL: a prepared statement, no BEGIN/ROLLBACK)."""
    params = {"terminal": terminal_id, "customer": customer_id}
    if store.fast_reads is not None:
        row = await store.fast_reads.fetchone(_ONE_FAST, params)
    else:
        async with store.engine.connect() as connection:
            row = (await connection.execute(_ONE, params)).first()
    return decide(row, customer_id, bandwidth, region)


async def check_many(store: Store, checks: Sequence[tuple[str, str, float, str]]
                     ) -> list[Entitlement]:
    """`check_one` for each (customer id, terminal id, bandwidth, region), as of one moment:
    on PostgreSQL one statement for the whole batch (so the batch costs about one check's
    round trip), elsewhere one connection for all of them."""
    if not checks:
        return []
    if store.fast_reads is not None:
        found = await store.fast_reads.fetchall(_BATCH_SQL, {
            "customers": [c[0] for c in checks], "terminals": [c[1] for c in checks]})
        return [decide(row[1:] if row[0] else None, customer, bandwidth, region)
                for row, (customer, _, bandwidth, region) in zip(found, checks, strict=True)]
    answers = []
    async with store.engine.connect() as connection:
        for customer, terminal, bandwidth, region in checks:
            row = (await connection.execute(
                _ONE, {"terminal": terminal, "customer": customer})).first()
            answers.append(decide(row, customer, bandwidth, region))
    return answers
