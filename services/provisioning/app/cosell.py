"""Use cases of the co-sell catalogue: partners, plans, referrals and the customers created
(directly, by a partner, or from a Won referral)."""

from __future__ import annotations

from typing import Any

from shared.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied

from ..domain import referrals as rules
from ..domain.access import OPERATOR, PARTNER
from ..domain.names import check_etag, customer_name, partner_name, plan_name, referral_name
from ..domain.plans import PlanTerms
from ..domain.records import Customer, Partner, Plan, Referral
from ..store import partners as partner_store
from ..store import referrals as store
from ..store import rows
from .unit_of_work import Tx

# --- partners and plans (the operator's) -----------------------------------------------------

async def create_partner(tx: Tx, partner_id: str, display_name: str,
                         contact_email: str) -> Partner:
    partner = await partner_store.insert_partner(tx.session, partner_id, display_name,
                                                 contact_email, tx.now)
    tx.audit(partner_name(partner_id), "partner.create", None, partner)
    return partner


async def create_plan(tx: Tx, plan_id: str, display_name: str, terms: PlanTerms) -> Plan:
    plan = await partner_store.insert_plan(tx.session, plan_id, display_name, terms, tx.now)
    tx.audit(plan_name(plan_id), "plan.create", None, plan)
    return plan


async def update_plan(tx: Tx, plan_id: str, etag: str, display_name: str | None,
                      terms: PlanTerms | None) -> Plan:
    """A new display name and/or new terms (new terms are a new revision; subscriptions
    keep the terms they bought until they change plan)."""
    row = await partner_store.plan_row(tx.session, plan_id, lock=True)
    check_etag(etag, row.version, plan_name(plan_id))
    before = rows.plan(row)
    partner_store.revise_plan(tx.session, row, display_name, terms, tx.now)
    after = rows.plan(row)
    tx.audit(plan_name(plan_id), "plan.update", before, after)
    return after


# --- referrals --------------------------------------------------------------------------------

async def create_referral(tx: Tx, owner_id: str, counterparty_id: str,
                          fields: dict[str, Any]) -> tuple[Referral, Referral]:
    """An engagement: the owner's OUTBOUND record and the counterparty's INBOUND one."""
    for pid, path in ((owner_id, "owner"), (counterparty_id, "referral.counterparty")):
        if not await partner_store.partner_exists(tx.session, pid):
            raise NotFound(f"{partner_name(pid)} does not exist", reason="PARTNER_NOT_FOUND",
                           metadata={"resource": partner_name(pid), "field": path})
    engagement = rows.new_id()
    made = await store.insert_referrals(tx.session, [
        dict(id=rows.new_id(), engagement_id=engagement, owner_id=owner, counterparty_id=other,
             direction=direction, status=rules.NEW, substatus=sub, create_time=tx.now,
             update_time=tx.now, version=1, **fields)
        for direction, owner, other, sub in (
            (rules.OUTBOUND, owner_id, counterparty_id, rules.R_PENDING),
            (rules.INBOUND, counterparty_id, owner_id, rules.RECEIVED))])
    records = [rows.referral(r) for r in made]
    for record in records:
        tx.audit(referral_name(record.id), "referral.create", None, record)
    return records[0], records[1]


async def update_referral(tx: Tx, referral_id: str, etag: str, changes: dict[str, Any],
                          wanted: tuple[str, str] | None) -> Referral:
    """Change the caller's own record; a status move is mirrored on the counterparty's."""
    name = referral_name(referral_id)
    head = await store.visible_referral(tx.session, tx.principal, referral_id)
    both = await store.engagement(tx.session, head.engagement_id)
    row = next(r for r in both if r.id == referral_id)
    other = next((r for r in both if r.id != referral_id), None)
    check_etag(etag, row.version, name)
    before = rows.referral(row)
    moves = wanted is not None
    rules.check_open(row.status, row.substatus, set(changes), moves, name)
    for key, value in changes.items():
        setattr(row, key, value)
    if wanted is not None and wanted != (row.status, row.substatus):
        row.status, row.substatus = rules.referral_next(
            row.direction, (row.status, row.substatus), wanted, name)
        if other is not None:
            mirrored = rules.referral_mirror((other.status, other.substatus), wanted)
            if mirrored is not None:
                other_before = rows.referral(other)
                other.status, other.substatus = mirrored
                other.version += 1
                other.update_time = tx.now
                tx.audit(referral_name(other.id), "referral.mirror", other_before,
                         rows.referral(other))
    row.version += 1
    row.update_time = tx.now
    after = rows.referral(row)
    tx.audit(name, "referral.update", before, after)
    return after


# --- customers --------------------------------------------------------------------------------

async def create_customer(tx: Tx, fields: dict[str, Any], referral_id: str | None) -> Customer:
    """A customer: a customer creating itself (its tenant is the token's), a partner
    creating one it manages, or anyone who may see a CLOSED/WON referral creating its
    customer (attributed to the sourcing partner; fields left empty come from the
    referral's customer profile; one customer per engagement)."""
    p = tx.principal
    partner_id = None
    engagement = None
    if referral_id:
        ref = await store.visible_referral(tx.session, p, referral_id, lock=True,
                                           field="customer.referral")
        rules.check_won(ref.status, ref.substatus, referral_name(referral_id))
        engagement = ref.engagement_id
        partner_id = rules.sourcing_partner(ref.direction, ref.owner_id, ref.counterparty_id)
        for key, value in (("display_name", ref.organization), ("country", ref.country),
                           ("contact_email", ref.contact_email), ("sector", ref.sector)):
            if not fields.get(key):
                fields[key] = value
        existing = await store.customer_of_engagement(tx.session, engagement)
        if existing is not None:
            raise AlreadyExists(
                f"{customer_name(existing)} was already created from this engagement",
                reason="CUSTOMER_EXISTS_FOR_ENGAGEMENT",
                metadata={"resource": customer_name(existing)})
    elif p.has(PARTNER) and not p.has(OPERATOR):
        partner_id = p.tenant
    if not p.has(OPERATOR, PARTNER):
        # A customer creates itself: its tenant is the token's.
        if fields.get("tenant") and fields["tenant"] != p.tenant:
            raise PermissionDenied("a customer can only create itself in its own tenant",
                                   reason="TENANT_MISMATCH",
                                   violations=[("customer.tenant",
                                                "must be the token's tenant")])
        fields["tenant"] = p.tenant
    elif p.has(PARTNER) and not p.has(OPERATOR) and partner_id != p.tenant:
        raise NotFound(f"{referral_name(referral_id or '')} does not exist",
                       reason="REFERRAL_NOT_FOUND")
    if not fields.get("tenant"):
        raise InvalidArgument("the customer's tenant is required",
                              violations=[("customer.tenant", "is required")])
    customer = await store.insert_customer(tx.session, dict(
        id=rows.new_id(), partner_id=partner_id, referral_id=referral_id or None,
        engagement_id=engagement, create_time=tx.now, version=1, **fields))
    tx.audit(customer_name(customer.id), "customer.create", None, customer)
    return customer
