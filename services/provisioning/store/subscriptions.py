"""Subscriptions and their operations: finding, locking, listing, inserting."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import FailedPrecondition, NotFound

from ..domain.access import Audience
from ..domain.names import operation_name, subscription_name
from ..domain.records import Operation, Page, Subscription, field_names
from ..domain.subscriptions import PENDING, OperationState
from . import rows
from .queries import customer_row, locked, page
from .tables import CustomerRow, OperationRow, SubscriptionRow, TerminalRow

Sessions = async_sessionmaker[AsyncSession]


def _not_found(customer_id: str, subscription_id: str) -> NotFound:
    name = subscription_name(customer_id, subscription_id)
    return NotFound(f"{name} does not exist", reason="SUBSCRIPTION_NOT_FOUND",
                    metadata={"resource": name})


async def locked_subscription(session: AsyncSession, customer_id: str, subscription_id: str,
                              audience: Audience) -> tuple[CustomerRow, SubscriptionRow]:
    """The customer (visible to `audience`) and its subscription, locked."""
    customer = await customer_row(session, customer_id, audience)
    row = await locked(session, SubscriptionRow, SubscriptionRow.id == subscription_id,
                       SubscriptionRow.customer_id == customer_id)
    if row is None:
        raise _not_found(customer_id, subscription_id)
    return customer, row


async def insert_subscription(session: AsyncSession, record: Subscription) -> SubscriptionRow:
    values = {name: getattr(record, name) for name in field_names(record)
              if name != "terms"}
    row = SubscriptionRow(**values, **rows.terms_columns(record.terms))
    session.add(row)
    await session.flush()
    return row


async def get_subscription(sessions: Sessions, audience: Audience, customer_id: str,
                           subscription_id: str) -> Subscription:
    async with sessions() as session:
        await customer_row(session, customer_id, audience)
        row = (await session.execute(select(SubscriptionRow).where(
            SubscriptionRow.id == subscription_id,
            SubscriptionRow.customer_id == customer_id))).scalar_one_or_none()
    if row is None:
        raise _not_found(customer_id, subscription_id)
    return rows.subscription(row)


async def list_subscriptions(sessions: Sessions, audience: Audience, customer_id: str,
                             after: str | None, limit: int) -> Page[Subscription]:
    async with sessions() as session:
        await customer_row(session, customer_id, audience)
    found, last = await page(
        sessions, select(SubscriptionRow).where(SubscriptionRow.customer_id == customer_id),
        SubscriptionRow.id, after, limit)
    return Page([rows.subscription(r) for r in found], last)


async def live_terminals(session: AsyncSession, subscription_id: str,
                         decommissioned: str) -> list[TerminalRow]:
    """The subscription's terminals still counted, locked in id order."""
    return list((await session.execute(
        select(TerminalRow).where(TerminalRow.subscription_id == subscription_id,
                                  TerminalRow.state != decommissioned)
        .order_by(TerminalRow.id).with_for_update())).scalars())


async def lapse_candidates(sessions: Sessions, now: datetime, limit: int = 500) -> list[str]:
    """Pending subscriptions whose activation window closed before `now`."""
    async with sessions() as session:
        return list((await session.execute(select(SubscriptionRow.id).where(
            SubscriptionRow.state == PENDING,
            SubscriptionRow.activation_deadline < now).limit(limit))).scalars())


async def locked_pending(session: AsyncSession, subscription_id: str) -> SubscriptionRow | None:
    return await locked(session, SubscriptionRow, and_(
        SubscriptionRow.id == subscription_id, SubscriptionRow.state == PENDING))


# --- operations ----------------------------------------------------------------------------

async def running_operation(session: AsyncSession, subscription_id: str) -> str | None:
    return (await session.execute(select(OperationRow.id).where(
        OperationRow.subscription_id == subscription_id,
        OperationRow.state == OperationState.RUNNING))).scalar_one_or_none()


async def insert_operation(session: AsyncSession, values: dict[str, Any],
                           state: str) -> OperationRow:
    """The new RUNNING operation; FAILED_PRECONDITION when another one won the race (the
    partial unique index on RUNNING operations)."""
    op = OperationRow(**values)
    session.add(op)
    try:
        await session.flush()
    except IntegrityError:
        name = subscription_name(values["customer_id"], values["subscription_id"])
        raise FailedPrecondition(f"{name} already has a running operation",
                                 reason="OPERATION_IN_PROGRESS",
                                 metadata={"resource": name, "current_state": state}) from None
    return op


async def pending_operations(sessions: Sessions, limit: int = 100) -> list[tuple[str, str]]:
    """(operation id, subscription id) of RUNNING operations, oldest first."""
    async with sessions() as session:
        return [(op, sub) for op, sub in (await session.execute(
            select(OperationRow.id, OperationRow.subscription_id)
            .where(OperationRow.state == OperationState.RUNNING)
            .order_by(OperationRow.id).limit(limit))).all()]


async def get_operation(sessions: Sessions, audience: Audience, customer_id: str,
                        subscription_id: str, op_id: str) -> Operation:
    async with sessions() as session:
        await customer_row(session, customer_id, audience)
        op = (await session.execute(select(OperationRow).where(
            OperationRow.id == op_id, OperationRow.subscription_id == subscription_id,
            OperationRow.customer_id == customer_id))).scalar_one_or_none()
    if op is None:
        name = operation_name(customer_id, subscription_id, op_id)
        raise NotFound(f"{name} does not exist", reason="OPERATION_NOT_FOUND",
                       metadata={"resource": name})
    return rows.operation(op)


async def list_operations(sessions: Sessions, audience: Audience, customer_id: str,
                          subscription_id: str, after: str | None,
                          limit: int) -> Page[Operation]:
    await get_subscription(sessions, audience, customer_id, subscription_id)
    found, last = await page(
        sessions, select(OperationRow).where(OperationRow.subscription_id == subscription_id),
        OperationRow.id, after, limit)
    return Page([rows.operation(r) for r in found], last)
