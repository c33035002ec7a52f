"""Housekeeping, on any replica: lapse the subscriptions whose activation window closed,
purge idempotency keys past their retention."""

from __future__ import annotations

from sqlalchemy import delete

from ..domain import subscriptions as rules
from ..domain.events import IDEMPOTENCY_RETENTION, EventType
from ..domain.names import subscription_name
from ..store import rows
from ..store import subscriptions as store
from ..store.tables import CustomerRow, IdempotencyRow
from .operations import decommission_all
from .subscriptions import changed, set_state
from .unit_of_work import Tx, UnitOfWork


async def lapse(tx: Tx, subscription_id: str) -> int:
    """Lapse one subscription if it is still pending past its deadline (1), else 0."""
    row = await store.locked_pending(tx.session, subscription_id)
    if row is None or row.activation_deadline >= tx.now:
        return 0
    customer = await tx.session.get(CustomerRow, row.customer_id)
    assert customer is not None
    before = rows.subscription(row)
    await decommission_all(tx, customer, row)
    set_state(tx, row, rules.subscription_next(
        row.state, "lapse", subscription_name(row.customer_id, row.id)),
        "activation window lapsed")
    changed(tx, EventType.SUBSCRIPTION_UNSUBSCRIBED, customer, row, "subscription.lapse",
            before)
    return 1


async def sweep(uow: UnitOfWork) -> dict[str, int]:
    """One pass of housekeeping; returns what it did."""
    now = uow.store.clock()
    lapsed = 0
    for sub_id in await store.lapse_candidates(uow.store.sessions, now):
        lapsed += await uow.background(lambda tx, s=sub_id: lapse(tx, s))
    async with uow.store.sessions() as session, session.begin():
        purged = (await session.execute(delete(IdempotencyRow).where(
            IdempotencyRow.create_time < now - IDEMPOTENCY_RETENTION))).rowcount
    return {"lapsed": lapsed, "purged_keys": max(purged or 0, 0)}
