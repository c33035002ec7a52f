"""Referral records and the customers created from them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.auth import Principal
from shared.errors import AlreadyExists, NotFound

from ..domain.access import OPERATOR, Audience, sees_referral
from ..domain.names import referral_name
from ..domain.records import Customer, Page, Referral
from . import rows
from .queries import audience_clause, customer_row, locked, page
from .tables import CustomerRow, ReferralRow

Sessions = async_sessionmaker[AsyncSession]


def _not_found(referral_id: str, **metadata: str) -> NotFound:
    return NotFound(f"{referral_name(referral_id)} does not exist",
                    reason="REFERRAL_NOT_FOUND",
                    metadata={"resource": referral_name(referral_id), **metadata})


async def visible_referral(session: AsyncSession, principal: Principal, referral_id: str, *,
                           lock: bool = False, field: str = "") -> ReferralRow:
    """The referral record if `principal` may see it (its owner partner, the operator)."""
    row = (await locked(session, ReferralRow, ReferralRow.id == referral_id) if lock
           else await session.get(ReferralRow, referral_id))
    if row is None or not sees_referral(principal, row.owner_id):
        raise _not_found(referral_id, **({"field": field} if field else {}))
    return row


async def engagement(session: AsyncSession, engagement_id: str) -> list[ReferralRow]:
    """Both records of an engagement, locked in id order."""
    return list((await session.execute(
        select(ReferralRow).where(ReferralRow.engagement_id == engagement_id)
        .order_by(ReferralRow.id).with_for_update())).scalars())


async def get_referral(sessions: Sessions, principal: Principal, referral_id: str) -> Referral:
    async with sessions() as session:
        return rows.referral(await visible_referral(session, principal, referral_id))


async def list_referrals(sessions: Sessions, principal: Principal, after: str | None,
                         limit: int) -> Page[Referral]:
    query = select(ReferralRow)
    if not principal.has(OPERATOR):
        query = query.where(ReferralRow.owner_id == principal.tenant)
    found, last = await page(sessions, query, ReferralRow.id, after, limit)
    return Page([rows.referral(r) for r in found], last)


async def customer_of_engagement(session: AsyncSession, engagement_id: str) -> str | None:
    return (await session.execute(select(CustomerRow.id).where(
        CustomerRow.engagement_id == engagement_id))).scalar_one_or_none()


async def insert_customer(session: AsyncSession, values: dict[str, Any]) -> Customer:
    row = CustomerRow(**values)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExists("a customer was already created from this engagement",
                            reason="CUSTOMER_EXISTS_FOR_ENGAGEMENT") from None
    return rows.customer(row)


async def get_customer(sessions: Sessions, audience: Audience, customer_id: str) -> Customer:
    async with sessions() as session:
        return rows.customer(await customer_row(session, customer_id, audience))


async def list_customers(sessions: Sessions, audience: Audience, after: str | None,
                         limit: int) -> Page[Customer]:
    query = select(CustomerRow).where(
        audience_clause(audience, CustomerRow.tenant, CustomerRow.partner_id))
    found, last = await page(sessions, query, CustomerRow.id, after, limit)
    return Page([rows.customer(r) for r in found], last)


async def insert_referrals(session: AsyncSession, values: list[dict[str, Any]]
                           ) -> list[ReferralRow]:
    """Both records of a new engagement."""
    made = [ReferralRow(**v) for v in values]
    session.add_all(made)
    await session.flush()
    return made
