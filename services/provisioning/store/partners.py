"""Partners and plans: the catalogue the operator keeps (partners, plans, plan revisions)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import AlreadyExists, NotFound

from ..domain.names import partner_name, plan_name
from ..domain.plans import PlanTerms
from ..domain.records import Page, Partner, Plan
from . import rows
from .queries import page
from .tables import PartnerRow, PlanRevisionRow, PlanRow

Sessions = async_sessionmaker[AsyncSession]


async def insert_partner(session: AsyncSession, partner_id: str, display_name: str,
                         contact_email: str, now: datetime) -> Partner:
    if await session.get(PartnerRow, partner_id) is not None:
        raise AlreadyExists(f"{partner_name(partner_id)} already exists",
                            metadata={"resource": partner_name(partner_id)})
    row = PartnerRow(id=partner_id, display_name=display_name, contact_email=contact_email,
                     create_time=now)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExists(f"{partner_name(partner_id)} already exists") from None
    return rows.partner(row)


async def partner_exists(session: AsyncSession, partner_id: str) -> bool:
    return await session.get(PartnerRow, partner_id) is not None


async def get_partner(sessions: Sessions, partner_id: str) -> Partner:
    async with sessions() as session:
        row = await session.get(PartnerRow, partner_id)
    if row is None:
        raise NotFound(f"{partner_name(partner_id)} does not exist", reason="PARTNER_NOT_FOUND",
                       metadata={"resource": partner_name(partner_id)})
    return rows.partner(row)


async def list_partners(sessions: Sessions, after: str | None, limit: int) -> Page[Partner]:
    found, last = await page(sessions, select(PartnerRow), PartnerRow.id, after, limit)
    return Page([rows.partner(r) for r in found], last)


async def insert_plan(session: AsyncSession, plan_id: str, display_name: str, terms: PlanTerms,
                      now: datetime) -> Plan:
    if await session.get(PlanRow, plan_id) is not None:
        raise AlreadyExists(f"{plan_name(plan_id)} already exists",
                            metadata={"resource": plan_name(plan_id)})
    row = PlanRow(id=plan_id, display_name=display_name, revision=1, create_time=now,
                  update_time=now, version=1, **rows.terms_columns(terms))
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExists(f"{plan_name(plan_id)} already exists") from None
    session.add(PlanRevisionRow(plan_id=plan_id, revision=1,
                                terms=rows.as_json(terms.as_dict()), create_time=now))
    return rows.plan(row)


async def plan_row(session: AsyncSession, plan_id: str, field_path: str = "plan", *,
                   lock: bool = False) -> PlanRow:
    """The plan, NOT_FOUND naming the request's field `field_path`."""
    query = select(PlanRow).where(PlanRow.id == plan_id)
    row = (await session.execute(query.with_for_update() if lock else query)
           ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{plan_name(plan_id)} does not exist", reason="PLAN_NOT_FOUND",
                       metadata={"resource": plan_name(plan_id), "field": field_path})
    return row


def revise_plan(session: AsyncSession, row: PlanRow, display_name: str | None,
                terms: PlanTerms | None, now: datetime) -> None:
    """Change a locked plan; new terms make a new revision (kept for its subscriptions)."""
    if display_name is not None:
        row.display_name = display_name
    if terms is not None and terms != rows.terms_of(row):
        rows.set_terms(row, terms)
        row.revision += 1
        session.add(PlanRevisionRow(plan_id=row.id, revision=row.revision,
                                    terms=rows.as_json(terms.as_dict()), create_time=now))
    row.version += 1
    row.update_time = now


async def get_plan(sessions: Sessions, plan_id: str) -> Plan:
    async with sessions() as session:
        return rows.plan(await plan_row(session, plan_id))


async def list_plans(sessions: Sessions, after: str | None, limit: int) -> Page[Plan]:
    found, last = await page(sessions, select(PlanRow), PlanRow.id, after, limit)
    return Page([rows.plan(r) for r in found], last)
