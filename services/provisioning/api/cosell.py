"""The servicer's co-sell part: partners, referrals, customers and plans."""

from __future__ import annotations

from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import resources_pb2 as res

from shared.auth import current_principal, requires
from shared.errors import Violations
from shared.paging import encode_token
from shared.wire import timestamp_to_datetime

from .. import domain
from ..app import cosell
from ..domain import validation
from ..domain.access import OPERATOR, PARTNER, READERS, WRITERS
from .base import Base
from .checks import need, need_text
from .convert import (
    check_money,
    customer_pb,
    enum_name,
    partner_pb,
    plan_pb,
    referral_pb,
    terms_from,
)
from .names import page_args, parse


class CoSell(Base):
    # --- partners -------------------------------------------------------------------------

    @requires(OPERATOR)
    async def CreatePartner(self, request, context):
        check = Violations()
        need(check, validation.resource_id(request.partner_id), "partner_id")
        need_text(check, request.partner.display_name, "partner.display_name")
        if request.partner.contact_email:
            need(check, validation.email(request.partner.contact_email), "partner.contact_email")
        return await self._mutate(
            "CreatePartner", request, check,
            lambda tx: cosell.create_partner(tx, request.partner_id,
                                                 request.partner.display_name.strip(),
                                                 request.partner.contact_email),
            pb.CreatePartnerResponse, lambda d: pb.CreatePartnerResponse(partner=partner_pb(d)))

    @requires(*READERS)
    async def GetPartner(self, request, context):
        (partner_id,) = parse(request.name, "partner", "name")
        return pb.GetPartnerResponse(partner=partner_pb(await self.store.get_partner(partner_id)))

    @requires(*READERS)
    async def ListPartners(self, request, context):
        after, size = page_args(request, "partners")
        items, last = await self.store.list_partners(after, size)
        return pb.ListPartnersResponse(
            partners=[partner_pb(d) for d in items],
            next_page_token=encode_token("partners", last) if last else "")

    # --- referrals ------------------------------------------------------------------------

    def _referral_fields(self, r: res.Referral, check: Violations, fields: set[str]) -> dict:
        out: dict = {}
        if "display_name" in fields:
            need_text(check, r.display_name, "referral.display_name")
            out["display_name"] = r.display_name.strip()
        if "deal_value" in fields:
            if check.require(r.HasField("deal_value") or None, "referral.deal_value"):
                check_money(check, r.deal_value, "referral.deal_value")
            out.update(deal_currency=r.deal_value.currency_code, deal_units=r.deal_value.units,
                       deal_nanos=r.deal_value.nanos)
        if "customer_profile" in fields:
            p = r.customer_profile
            if check.require(r.HasField("customer_profile") or None, "referral.customer_profile"):
                need_text(check, p.organization, "referral.customer_profile.organization")
                need(check, validation.country(p.country), "referral.customer_profile.country")
                need(check, validation.email(p.contact_email),
                     "referral.customer_profile.contact_email")
                check.check(p.sector != 0, "referral.customer_profile.sector", "is required")
            out.update(organization=p.organization.strip(), country=p.country,
                       contact_email=p.contact_email,
                       sector=enum_name(res.Sector, p.sector, "SECTOR_"))
        if "consent_share_contact" in fields:
            out["consent_share_contact"] = r.consent_share_contact
        if "consent_contact" in fields:
            out["consent_contact"] = r.consent_contact
        if "notes" in fields:
            need(check, validation.optional_text(r.notes, validation.MAX_NOTES), "referral.notes")
            out["notes"] = r.notes
        if "expire_time" in fields:
            out["expire_time"] = (timestamp_to_datetime(r.expire_time)
                                  if r.HasField("expire_time") else None)
        return out

    @requires(PARTNER, OPERATOR)
    async def CreateReferral(self, request, context):
        principal = current_principal()
        check = Violations()
        r = request.referral
        if not check.require(request.HasField("referral") or None, "referral"):
            check.raise_if_any()
        fields = self._referral_fields(r, check, {
            "display_name", "deal_value", "customer_profile", "consent_share_contact",
            "consent_contact", "notes", "expire_time"})
        counter = parse(r.counterparty, "partner", "referral.counterparty", check)
        if principal.has(OPERATOR):
            owner = parse(request.owner, "partner", "owner", check)
        else:
            owner = (principal.tenant,)
            check.check(not request.owner or request.owner == f"partners/{principal.tenant}",
                        "owner", "a partner creates referrals as itself; leave it empty")
        if owner and counter and owner[0] == counter[0]:
            check.add("referral.counterparty", "must be another partner than the owner")
        return await self._mutate(
            "CreateReferral", request, check,
            lambda tx: cosell.create_referral(tx, owner[0], counter[0], fields),
            pb.CreateReferralResponse,
            lambda pair: pb.CreateReferralResponse(referral=referral_pb(pair[0]),
                                                   counterparty_referral=referral_pb(pair[1])))

    @requires(PARTNER, OPERATOR)
    async def GetReferral(self, request, context):
        (referral_id,) = parse(request.name, "referral", "name")
        d = await self.store.get_referral(current_principal(), referral_id)
        return pb.GetReferralResponse(referral=referral_pb(d))

    @requires(PARTNER, OPERATOR)
    async def ListReferrals(self, request, context):
        after, size = page_args(request, "referrals")
        items, last = await self.store.list_referrals(current_principal(), after, size)
        return pb.ListReferralsResponse(
            referrals=[referral_pb(d) for d in items],
            next_page_token=encode_token("referrals", last) if last else "")

    UPDATABLE_REFERRAL = {"display_name", "status", "substatus", "deal_value",
                          "customer_profile", "consent_share_contact", "consent_contact",
                          "notes", "expire_time"}

    @requires(PARTNER, OPERATOR)
    async def UpdateReferral(self, request, context):
        check = Violations()
        r = request.referral
        ids = parse(r.name, "referral", "referral.name", check)
        paths = set(request.update_mask.paths)
        if not paths:
            check.add("update_mask", "is required (name the fields to change)")
        for path in sorted(paths - self.UPDATABLE_REFERRAL):
            check.add("update_mask", f"{path!r} cannot be updated")
        check.require(r.etag, "referral.etag", "is required (the etag the referral was read with)")
        fields = self._referral_fields(r, check, paths & self.UPDATABLE_REFERRAL)
        wanted = None
        if paths & {"status", "substatus"}:
            if paths & {"status", "substatus"} != {"status", "substatus"}:
                check.add("update_mask", "status and substatus change together")
            status = enum_name(res.Referral.Status, r.status, "STATUS_")
            substatus = enum_name(res.Referral.Substatus, r.substatus, "SUBSTATUS_")
            check.check(bool(status), "referral.status", "is required")
            check.check(bool(substatus), "referral.substatus", "is required")
            if status and substatus and substatus not in domain.SUBSTATUSES[status]:
                check.add("referral.substatus",
                          f"must be one of {', '.join(sorted(domain.SUBSTATUSES[status]))} "
                          f"for status {status}")
            wanted = (status, substatus)
        return await self._mutate(
            "UpdateReferral", request, check,
            lambda tx: cosell.update_referral(tx, ids[0], r.etag, fields, wanted),
            pb.UpdateReferralResponse, lambda d: pb.UpdateReferralResponse(referral=referral_pb(d)))

    # --- customers ------------------------------------------------------------------------

    @requires(*WRITERS)
    async def CreateCustomer(self, request, context):
        check = Violations()
        c = request.customer
        if not check.require(request.HasField("customer") or None, "customer"):
            check.raise_if_any()
        referral_id = None
        if c.referral:
            ref = parse(c.referral, "referral", "customer.referral", check)
            referral_id = ref[0] if ref else None
        from_referral = referral_id is not None
        # Fields left empty are taken from the referral's customer profile.
        if c.display_name or not from_referral:
            need_text(check, c.display_name, "customer.display_name")
        if c.country or not from_referral:
            need(check, validation.country(c.country), "customer.country")
        if c.contact_email or not from_referral:
            need(check, validation.email(c.contact_email), "customer.contact_email")
        if not from_referral:
            check.check(c.sector != 0, "customer.sector", "is required")
        need(check, validation.optional_uuid(c.azure_tenant_id), "customer.azure_tenant_id")
        need(check, validation.optional_uuid(c.azure_subscription_id),
             "customer.azure_subscription_id")
        need_text(check, c.tenant, "customer.tenant", required=False)
        fields = {"display_name": c.display_name.strip(), "country": c.country,
                  "contact_email": c.contact_email,
                  "sector": enum_name(res.Sector, c.sector, "SECTOR_"),
                  "azure_tenant_id": c.azure_tenant_id.lower(),
                  "azure_subscription_id": c.azure_subscription_id.lower(), "tenant": c.tenant}
        return await self._mutate(
            "CreateCustomer", request, check,
            lambda tx: cosell.create_customer(tx, dict(fields), referral_id),
            pb.CreateCustomerResponse, lambda d: pb.CreateCustomerResponse(customer=customer_pb(d)))

    @requires(*READERS)
    async def GetCustomer(self, request, context):
        (customer_id,) = parse(request.name, "customer", "name")
        d = await self.store.get_customer(domain.read_audience(current_principal()), customer_id)
        return pb.GetCustomerResponse(customer=customer_pb(d))

    @requires(*READERS)
    async def ListCustomers(self, request, context):
        after, size = page_args(request, "customers")
        items, last = await self.store.list_customers(
            domain.read_audience(current_principal()), after, size)
        return pb.ListCustomersResponse(
            customers=[customer_pb(d) for d in items],
            next_page_token=encode_token("customers", last) if last else "")

    # --- plans ----------------------------------------------------------------------------

    @requires(OPERATOR)
    async def CreatePlan(self, request, context):
        check = Violations()
        need(check, validation.resource_id(request.plan_id), "plan_id")
        need_text(check, request.plan.display_name, "plan.display_name")
        if check.require(request.plan.HasField("terms") or None, "plan.terms"):
            terms = terms_from(request.plan.terms, check, "plan.terms")
        return await self._mutate(
            "CreatePlan", request, check,
            lambda tx: cosell.create_plan(tx, request.plan_id,
                                              request.plan.display_name.strip(), terms),
            pb.CreatePlanResponse, lambda d: pb.CreatePlanResponse(plan=plan_pb(d)))

    @requires(*READERS)
    async def GetPlan(self, request, context):
        (plan_id,) = parse(request.name, "plan", "name")
        return pb.GetPlanResponse(plan=plan_pb(await self.store.get_plan(plan_id)))

    @requires(*READERS)
    async def ListPlans(self, request, context):
        after, size = page_args(request, "plans")
        items, last = await self.store.list_plans(after, size)
        return pb.ListPlansResponse(plans=[plan_pb(d) for d in items],
                                    next_page_token=encode_token("plans", last) if last else "")

    @requires(OPERATOR)
    async def UpdatePlan(self, request, context):
        check = Violations()
        ids = parse(request.plan.name, "plan", "plan.name", check)
        check.require(request.plan.etag, "plan.etag", "is required (the etag it was read with)")
        paths = set(request.update_mask.paths)
        if not paths:
            check.add("update_mask", "is required (name the fields to change)")
        term_paths = {p for p in paths if p == "terms" or p.startswith("terms.")}
        for path in sorted(paths - term_paths - {"display_name"}):
            check.add("update_mask", f"{path!r} cannot be updated")
        display_name = None
        if "display_name" in paths:
            need_text(check, request.plan.display_name, "plan.display_name")
            display_name = request.plan.display_name.strip()
        check.raise_if_any()
        if not term_paths:
            return await self._mutate(
                "UpdatePlan", request, check,
                lambda tx: cosell.update_plan(tx, ids[0], request.plan.etag, display_name,
                                                  None),
                pb.UpdatePlanResponse, lambda d: pb.UpdatePlanResponse(plan=plan_pb(d)))
        # Merge the masked term fields onto the current terms, then validate the result.
        current = plan_pb(await self.store.get_plan(ids[0])).terms
        merged = res.PlanTerms()
        merged.CopyFrom(current)
        if "terms" in term_paths:
            merged.CopyFrom(request.plan.terms)
        known = set(res.PlanTerms.DESCRIPTOR.fields_by_name)
        for path in sorted(term_paths - {"terms"}):
            field = path.removeprefix("terms.")
            if field not in known:
                check.add("update_mask", f"{path!r} is not a field of terms")
                continue
            if field == "regions":
                del merged.regions[:]
                merged.regions.extend(request.plan.terms.regions)
            elif field == "unit_price":
                merged.unit_price.CopyFrom(request.plan.terms.unit_price)
            else:
                setattr(merged, field, getattr(request.plan.terms, field))
        terms = terms_from(merged, check, "plan.terms")
        return await self._mutate(
            "UpdatePlan", request, check,
            lambda tx: cosell.update_plan(tx, ids[0], request.plan.etag, display_name,
                                              terms),
            pb.UpdatePlanResponse, lambda d: pb.UpdatePlanResponse(plan=plan_pb(d)))

