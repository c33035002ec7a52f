"""Terminals: the locked reads their mutations start from, inserting, finding, listing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import NotFound

from ..domain.access import Audience
from ..domain.names import terminal_name
from ..domain.records import Page, Terminal, field_names
from . import rows
from .queries import customer_row, page
from .tables import CustomerRow, SubscriptionRow, TerminalRow

Sessions = async_sessionmaker[AsyncSession]
_T, _S, _C = TerminalRow.__table__, SubscriptionRow.__table__, CustomerRow.__table__


def not_found(customer_id: str, terminal_id: str) -> NotFound:
    name = terminal_name(customer_id, terminal_id)
    return NotFound(f"{name} does not exist", reason="TERMINAL_NOT_FOUND",
                    metadata={"resource": name})


def _sqlite(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "sqlite"


async def subscription_for_terminal(session: AsyncSession, customer_id: str,
                                    subscription_id: str) -> Row[Any] | None:
    """The subscription a terminal joins, locked, with its customer's tenant and partner
    (`c_tenant`, `c_partner`)."""
    query = (select(_S, _C.c.tenant.label("c_tenant"), _C.c.partner_id.label("c_partner"))
             .join_from(_S, _C, _C.c.id == _S.c.customer_id)
             .where(_S.c.id == subscription_id, _S.c.customer_id == customer_id))
    if not _sqlite(session):
        query = query.with_for_update(of=_S)
    return (await session.execute(query)).first()


async def insert_terminal(session: AsyncSession, record: Terminal) -> bool:
    """Insert unless the serial number is taken (False)."""
    insert = sqlite.insert if _sqlite(session) else postgresql.insert
    values = {name: getattr(record, name) for name in field_names(record)}
    inserted = (await session.execute(
        insert(_T).values(values)
        .on_conflict_do_nothing(index_elements=[_T.c.serial_number])
        .returning(_T.c.id))).first()
    return inserted is not None


async def terminal_for_change(session: AsyncSession, customer_id: str, terminal_id: str,
                              counting: bool) -> Row[Any] | None:
    """One statement reads and locks the terminal, its subscription (lock order:
    subscription, then terminal, as registering and cancelling take them) and its customer:
    the terminal's columns, `s_state`, `c_tenant`, `c_partner`. A change of the terminal
    count (`counting`) takes the subscription exclusively; any other transition only needs
    it unchanged until commit (suspending it waits)."""
    query = (select(_T, _S.c.state.label("s_state"), _C.c.tenant.label("c_tenant"),
                    _C.c.partner_id.label("c_partner"))
             .join_from(_T, _S, _S.c.id == _T.c.subscription_id)
             .join(_C, _C.c.id == _T.c.customer_id)
             .where(_T.c.id == terminal_id, _T.c.customer_id == customer_id))
    if not _sqlite(session):
        query = query.suffix_with(
            "FOR UPDATE OF subscriptions, terminals" if counting else
            "FOR SHARE OF subscriptions FOR UPDATE OF terminals")
    return (await session.execute(query)).first()


async def get_terminal(sessions: Sessions, audience: Audience, customer_id: str,
                       terminal_id: str) -> Terminal:
    async with sessions() as session:
        await customer_row(session, customer_id, audience)
        row = (await session.execute(select(TerminalRow).where(
            TerminalRow.id == terminal_id, TerminalRow.customer_id == customer_id))
        ).scalar_one_or_none()
    if row is None:
        raise not_found(customer_id, terminal_id)
    return rows.terminal(row)


async def list_terminals(sessions: Sessions, audience: Audience, customer_id: str,
                         after: str | None, limit: int) -> Page[Terminal]:
    async with sessions() as session:
        await customer_row(session, customer_id, audience)
    found, last = await page(
        sessions, select(TerminalRow).where(TerminalRow.customer_id == customer_id),
        TerminalRow.id, after, limit)
    return Page([rows.terminal(r) for r in found], last)
