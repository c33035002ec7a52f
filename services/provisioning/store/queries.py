"""Queries every aggregate's module uses: locking a row, finding a customer the caller may
see, the visibility clause, one page of a list."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import NotFound

from ..domain.access import Audience
from ..domain.names import customer_name
from .tables import Base, CustomerRow

R = TypeVar("R", bound=Base)


async def locked(session: AsyncSession, model: type[R], *where: Any) -> R | None:
    """The row of `model` matching `where`, locked for update (SQLite: the write lock)."""
    return (await session.execute(select(model).where(*where).with_for_update())
            ).scalar_one_or_none()


def audience_clause(audience: Audience, tenant_col: Any, partner_col: Any) -> Any:
    """`audience`'s rule (`Audience.predicate`) over these two columns."""
    columns = {"tenant": tenant_col, "partner_id": partner_col}
    return audience.predicate().clause(columns.__getitem__)


async def customer_row(session: AsyncSession, customer_id: str, audience: Audience, *,
                       lock: bool = False) -> CustomerRow:
    """The customer, NOT_FOUND when it does not exist or `audience` may not see it."""
    query = select(CustomerRow).where(CustomerRow.id == customer_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None or not audience.predicate().holds(
            {"tenant": row.tenant, "partner_id": row.partner_id}):
        raise NotFound(f"{customer_name(customer_id)} does not exist",
                       reason="CUSTOMER_NOT_FOUND",
                       metadata={"resource": customer_name(customer_id)})
    return row


async def page(sessions: async_sessionmaker[AsyncSession], query: Select[Any], key_col: Any,
               after: Any, limit: int) -> tuple[list[Any], Any]:
    """Up to `limit` rows after the key `after`, and the last key when more follow."""
    if after is not None:
        query = query.where(key_col > after)
    async with sessions() as session:
        rows = list((await session.execute(query.order_by(key_col).limit(limit + 1))
                     ).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (getattr(rows[-1], key_col.key) if more and rows else None)
