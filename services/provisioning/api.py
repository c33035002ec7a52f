"""The provisioning servicer: proto <-> domain and input validation only.

Scopes and tenant rules
=======================

A token carries scopes and a tenant (see shared.auth). The provisioning service knows:

| scope | who holds it | what it allows |
|---|---|---|
| `provisioning.read` | a customer's users and apps | read the customers whose `tenant` is the token's tenant, and their subscriptions, operations, terminals, audit records and events; read partners and plans |
| `provisioning.write` | a customer's admins | the above, plus create itself (its tenant is the token's), buy subscriptions, activate them, change plan or quantity, cancel, register terminals and change their state |
| `partner` | a co-sell partner; the token's tenant is the partner id (`microsoft`, `spacex`) | its own referral records (create, read, update); customers it manages (created by it, or sourced by it through a Won referral) with everything `provisioning.write` can do to them, plus suspend and reinstate their subscriptions; their events and audit records |
| `operator` | Skybridge operations | everything: partners and plans (create, update), every customer and referral, suspend and reinstate, all events and audit records |
| `provisioning.entitlements` | the link broker's service token | CheckEntitlement and BatchCheckEntitlements only |
| `provisioning.events` | services following the feed | WatchEvents over all customers |

A resource the caller may not see answers NOT_FOUND, exactly like one that does not exist,
so a customer's token can never learn whether another customer's record exists.
Every mutating call requires a `request_id` (idempotency key, scoped to the token's tenant,
kept at least 24 hours): a retry returns the first answer, the same key with a different
request is INVALID_ARGUMENT (reason REQUEST_ID_REUSED).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.rpc import status_pb2
from google.type import money_pb2
from skybridge.common.v1 import common_pb2
from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import provisioning_pb2_grpc
from skybridge.provisioning.v1 import resources_pb2 as res

from shared.auth import current_principal, requires
from shared.errors import InvalidArgument, NotFound, Violations
from shared.paging import decode_token, encode_token, page_size
from shared.status import to_status
from shared.validation import Rules, item_violations
from shared.wakeup import woken

from . import domain, validation
from .domain import EVENTS, OPERATOR, PARTNER, READ, WRITE, PlanTerms
from .store import Store, etag_of

READERS = (READ, WRITE, PARTNER, OPERATOR)
WRITERS = (WRITE, PARTNER, OPERATOR)
EVENT_BATCH = 200

_ID = r"([a-z0-9][a-z0-9-]{0,62})"
_NAMES = {
    "partner": re.compile(rf"^partners/{_ID}$"),
    "referral": re.compile(rf"^referrals/{_ID}$"),
    "customer": re.compile(rf"^customers/{_ID}$"),
    "plan": re.compile(rf"^plans/{_ID}$"),
    "subscription": re.compile(rf"^customers/{_ID}/subscriptions/{_ID}$"),
    "operation": re.compile(rf"^customers/{_ID}/subscriptions/{_ID}/operations/{_ID}$"),
    "terminal": re.compile(rf"^customers/{_ID}/terminals/{_ID}$"),
}
_PATTERNS = {
    "partner": "partners/{partner}", "referral": "referrals/{referral}",
    "customer": "customers/{customer}", "plan": "plans/{plan}",
    "subscription": "customers/{customer}/subscriptions/{subscription}",
    "operation": "customers/{customer}/subscriptions/{subscription}/operations/{operation}",
    "terminal": "customers/{customer}/terminals/{terminal}",
}


# --- small helpers ----------------------------------------------------------------------

def parse(value: str, kind: str, path: str, check: Violations | None = None
          ) -> tuple[str, ...] | None:
    """The ids in a resource name, or a violation naming the field."""
    match = _NAMES[kind].match(value or "")
    if match:
        return match.groups()
    description = ("is required" if not value else
                   f"{value[:100]!r} is not a {kind} name ({_PATTERNS[kind]})")
    if check is None:
        raise InvalidArgument(f"{path} {description}", violations=[(path, description)])
    check.add(path, description)
    return None


def ts(value: str | None) -> timestamp_pb2.Timestamp | None:
    if not value:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(value))
    return stamp


def money(currency: str, units: int, nanos: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def enum_name(enum_type, value: int, prefix: str) -> str:
    """The domain name of a proto enum value (`STATE_SUBSCRIBED` -> `SUBSCRIBED`)."""
    return enum_type.Name(value).removeprefix(prefix) if value else ""


def page_args(request, scope: str, check: Violations | None = None) -> tuple:
    own = check if check is not None else Violations()  # (an empty one is falsy)
    size = page_size(request.page_size, own)
    after = None
    try:
        after = decode_token(request.page_token, scope)
    except InvalidArgument as error:
        own.extend((v.field, v.description) for v in error.violations)
    if check is None:
        own.raise_if_any()
    return after, size


# --- dict (from the store) -> proto -----------------------------------------------------

def partner_pb(d: dict) -> res.Partner:
    return res.Partner(name=f"partners/{d['id']}", display_name=d["display_name"],
                       contact_email=d["contact_email"], create_time=ts(d["create_time"]))


def referral_pb(d: dict) -> res.Referral:
    return res.Referral(
        name=f"referrals/{d['id']}", engagement_id=d["engagement_id"],
        owner=f"partners/{d['owner_id']}", counterparty=f"partners/{d['counterparty_id']}",
        direction=res.Referral.Direction.Value("DIRECTION_" + d["direction"]),
        display_name=d["display_name"],
        status=res.Referral.Status.Value("STATUS_" + d["status"]),
        substatus=res.Referral.Substatus.Value("SUBSTATUS_" + d["substatus"]),
        deal_value=money(d["deal_currency"], d["deal_units"], d["deal_nanos"]),
        customer_profile=res.CustomerProfile(
            organization=d["organization"], country=d["country"],
            contact_email=d["contact_email"], sector=res.Sector.Value("SECTOR_" + d["sector"])),
        consent_share_contact=d["consent_share_contact"], consent_contact=d["consent_contact"],
        notes=d["notes"], expire_time=ts(d["expire_time"]), create_time=ts(d["create_time"]),
        update_time=ts(d["update_time"]), etag=etag_of(d["version"]))


def customer_pb(d: dict) -> res.Customer:
    return res.Customer(
        name=f"customers/{d['id']}", display_name=d["display_name"],
        sector=res.Sector.Value("SECTOR_" + d["sector"]), country=d["country"],
        contact_email=d["contact_email"], azure_tenant_id=d["azure_tenant_id"],
        azure_subscription_id=d["azure_subscription_id"], tenant=d["tenant"],
        source_partner=f"partners/{d['partner_id']}" if d["partner_id"] else "",
        referral=f"referrals/{d['referral_id']}" if d["referral_id"] else "",
        create_time=ts(d["create_time"]), etag=etag_of(d["version"]))


def terms_pb(t: dict) -> res.PlanTerms:
    return res.PlanTerms(
        bandwidth_mbps=t["bandwidth_mbps"],
        priority_class=res.PriorityClass.Value("PRIORITY_CLASS_" + t["priority_class"]),
        min_quantity=t["min_quantity"], max_quantity=t["max_quantity"],
        unit_price=money(t["price_currency"], t["price_units"], t["price_nanos"]),
        regions=t["regions"])


def plan_pb(d: dict) -> res.Plan:
    return res.Plan(name=f"plans/{d['id']}", display_name=d["display_name"],
                    terms=terms_pb(d["terms"]), revision=d["revision"],
                    create_time=ts(d["create_time"]), update_time=ts(d["update_time"]),
                    etag=etag_of(d["version"]))


def subscription_pb(d: dict) -> res.Subscription:
    return res.Subscription(
        name=f"customers/{d['customer_id']}/subscriptions/{d['id']}",
        display_name=d["display_name"], plan=f"plans/{d['plan_id']}",
        plan_revision=d["plan_revision"], terms=terms_pb(d["terms"]), quantity=d["quantity"],
        state=res.Subscription.State.Value("STATE_" + d["state"]),
        activation_deadline=ts(d["activation_deadline"]),
        grace_end_time=ts(d["grace_end_time"]), state_reason=d["state_reason"],
        terminal_count=d["terminal_count"], create_time=ts(d["create_time"]),
        update_time=ts(d["update_time"]), etag=etag_of(d["version"]))


def operation_pb(d: dict) -> res.SubscriptionOperation:
    op = res.SubscriptionOperation(
        name=(f"customers/{d['customer_id']}/subscriptions/{d['subscription_id']}"
              f"/operations/{d['id']}"),
        kind=res.SubscriptionOperation.Kind.Value("KIND_" + d["kind"]),
        state=res.SubscriptionOperation.State.Value("STATE_" + d["state"]),
        done=d["state"] != "RUNNING", plan=f"plans/{d['plan_id']}" if d["plan_id"] else "",
        quantity=d["quantity"], requested_by=d["requested_by"],
        create_time=ts(d["create_time"]), end_time=ts(d["end_time"]))
    if d["state"] == "FAILED":
        op.error.CopyFrom(status_pb2.Status(code=d["error_code"], message=d["error_message"]))
    return op


def terminal_pb(d: dict) -> res.Terminal:
    return res.Terminal(
        name=f"customers/{d['customer_id']}/terminals/{d['id']}",
        serial_number=d["serial_number"],
        subscription=f"customers/{d['customer_id']}/subscriptions/{d['subscription_id']}",
        location=common_pb2.GeodeticPoint(latitude_deg=d["latitude_deg"],
                                          longitude_deg=d["longitude_deg"],
                                          altitude_m=d["altitude_m"]),
        state=res.Terminal.State.Value("STATE_" + d["state"]),
        create_time=ts(d["create_time"]), update_time=ts(d["update_time"]),
        etag=etag_of(d["version"]))


def struct(data: dict | None) -> struct_pb2.Struct | None:
    if data is None:
        return None
    out = struct_pb2.Struct()
    json_format.ParseDict(data, out)
    return out


def audit_pb(d: dict) -> res.AuditRecord:
    return res.AuditRecord(
        name=f"{d['resource']}/auditRecords/{d['id']}", resource=d["resource"],
        action=d["action"], actor=d["actor"], actor_tenant=d["actor_tenant"],
        request_id=d["request_id"], create_time=ts(d["create_time"]),
        before=struct(d["before"]), after=struct(d["after"]))


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"ev:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, seq = raw.partition(":")
        if prefix != "ev" or not seq.isdigit():
            raise ValueError
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("start_cursor is not a cursor from this feed",
                              violations=[("start_cursor",
                                           "is not an event cursor from this feed")]) from None


def event_pb(d: dict) -> res.Event:
    event = res.Event(cursor=encode_cursor(d["seq"]),
                      type=res.Event.Type.Value("TYPE_" + d["type"]), resource=d["resource"],
                      customer=f"customers/{d['customer_id']}",
                      create_time=ts(d["create_time"]))
    if d["type"].startswith("SUBSCRIPTION"):
        event.subscription.CopyFrom(subscription_pb(d["payload"]))
    else:
        event.terminal.CopyFrom(terminal_pb(d["payload"]))
    return event


# --- request -> domain values -----------------------------------------------------------

def check_money(check: Violations, value: money_pb2.Money, path: str, *,
                allow_zero: bool = True) -> None:
    for field, description in validation.money(value.currency_code, value.units, value.nanos,
                                                allow_zero=allow_zero):
        check.add(f"{path}.{field}", description)


def terms_from(message: res.PlanTerms, check: Violations, path: str) -> PlanTerms:
    terms = PlanTerms(
        bandwidth_mbps=message.bandwidth_mbps if math.isfinite(message.bandwidth_mbps) else -1.0,
        priority_class=enum_name(res.PriorityClass, message.priority_class, "PRIORITY_CLASS_"),
        min_quantity=message.min_quantity, max_quantity=message.max_quantity,
        price_currency=message.unit_price.currency_code, price_units=message.unit_price.units,
        price_nanos=message.unit_price.nanos, regions=tuple(message.regions))
    check.extend(terms.problems(path))
    return terms


def need_text(check: Violations, value: str, path: str, maximum: int = validation.MAX_NAME,
              *, required: bool = True) -> None:
    bad = validation.text(value, maximum, required=required)
    if bad:
        check.add(path, bad)


def need(check: Violations, problem: str | None, path: str) -> None:
    if problem:
        check.add(path, problem)


#: Checks one BatchCheckEntitlements call may carry.
MAX_BATCH_CHECKS = 500
#: The ErrorInfo domain of this service's errors (as the server interceptor names it).
DOMAIN = "provisioning.skybridge"


def _entitlement_args(request: pb.CheckEntitlementRequest, check: Violations,
                      prefix: str = "") -> tuple[str, str]:
    """(customer id, terminal id) of a check; violations (fields named `prefix` + field)
    go to `check`."""
    customer = parse(request.customer, "customer", prefix + "customer", check)
    terminal = parse(request.terminal, "terminal", prefix + "terminal", check)
    if customer and terminal and customer[0] != terminal[0]:
        check.add(prefix + "terminal", f"must be a terminal of {request.customer}")
    check.check(math.isfinite(request.bandwidth_mbps) and request.bandwidth_mbps > 0,
                prefix + "bandwidth_mbps", "must be a finite number above 0")
    need(check, validation.region(request.target_region), prefix + "target_region")
    return (customer[0] if customer else "", terminal[1] if terminal else "")


def _entitlement_pb(answer: domain.Entitlement) -> pb.CheckEntitlementResponse:
    location = answer.terminal_location
    return pb.CheckEntitlementResponse(
        allowed=answer.allowed,
        reason=pb.EntitlementReason.Value("ENTITLEMENT_REASON_" + answer.reason),
        message=answer.message, max_bandwidth_mbps=answer.max_bandwidth_mbps,
        priority_class=(res.PriorityClass.Value("PRIORITY_CLASS_" + answer.priority_class)
                        if answer.priority_class else 0),
        subscription=answer.subscription, customer_tenant=answer.customer_tenant,
        terminal_location=(common_pb2.GeodeticPoint(latitude_deg=location[0],
                                                    longitude_deg=location[1],
                                                    altitude_m=location[2])
                           if location else None))


#: The contract checks beyond the descriptors (`shared.validation`): a batch check that is
#: wrong fails alone, so the contract checks of each item run in BatchCheckEntitlements.
REQUEST_RULES = Rules(
    max_items={"skybridge.provisioning.v1.BatchCheckEntitlementsRequest.checks":
               MAX_BATCH_CHECKS},
    per_item=frozenset({"skybridge.provisioning.v1.BatchCheckEntitlementsRequest.checks"}),
)


class ProvisioningServicer(provisioning_pb2_grpc.ProvisioningServiceServicer):
    request_rules = REQUEST_RULES

    def __init__(self, store: Store):
        self.store = store

    async def _mutate(self, method: str, request, check: Violations,
                      work: Callable, response_type, to_response: Callable,
                      fast: Callable | None = None):
        """Validate request_id, then run `work(tx)` once per key; replay the first answer.
        `fast(call)`: the same change on the store's one-statement path (PostgreSQL)."""
        need(check, validation.request_id(request.request_id), "request_id")
        check.raise_if_any()
        payload = type(request)()
        payload.CopyFrom(request)
        payload.request_id = ""
        answer = await self.store.mutate(
            current_principal(), method, request.request_id,
            payload.SerializeToString(deterministic=True), work,
            lambda result: to_response(result).SerializeToString(deterministic=True), fast)
        return response_type.FromString(answer)

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
            lambda tx: self.store.create_partner(tx, request.partner_id,
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
            out["expire_time"] = (r.expire_time.ToDatetime(tzinfo=UTC)
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
            lambda tx: self.store.create_referral(tx, owner[0], counter[0], fields),
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
            lambda tx: self.store.update_referral(tx, ids[0], r.etag, fields, wanted),
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
            lambda tx: self.store.create_customer(tx, dict(fields), referral_id),
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
            lambda tx: self.store.create_plan(tx, request.plan_id,
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
                lambda tx: self.store.update_plan(tx, ids[0], request.plan.etag, display_name,
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
            lambda tx: self.store.update_plan(tx, ids[0], request.plan.etag, display_name,
                                              terms),
            pb.UpdatePlanResponse, lambda d: pb.UpdatePlanResponse(plan=plan_pb(d)))

    # --- subscriptions --------------------------------------------------------------------

    @requires(*WRITERS)
    async def CreateSubscription(self, request, context):
        check = Violations()
        parent = parse(request.parent, "customer", "parent", check)
        s = request.subscription
        if check.require(request.HasField("subscription") or None, "subscription"):
            plan = parse(s.plan, "plan", "subscription.plan", check)
            check.check(s.quantity > 0, "subscription.quantity", "must be at least 1")
            need_text(check, s.display_name, "subscription.display_name", required=False)
        return await self._mutate(
            "CreateSubscription", request, check,
            lambda tx: self.store.create_subscription(tx, parent[0], plan[0], s.quantity,
                                                      s.display_name.strip()),
            pb.CreateSubscriptionResponse,
            lambda d: pb.CreateSubscriptionResponse(subscription=subscription_pb(d)),
            lambda call: self.store.fast_create_subscription(call, parent[0], plan[0],
                                                             s.quantity, s.display_name.strip()))

    @requires(*READERS)
    async def GetSubscription(self, request, context):
        c, s = parse(request.name, "subscription", "name")
        d = await self.store.get_subscription(domain.read_audience(current_principal()), c, s)
        return pb.GetSubscriptionResponse(subscription=subscription_pb(d))

    @requires(*READERS)
    async def ListSubscriptions(self, request, context):
        check = Violations()
        parent = parse(request.parent, "customer", "parent", check)
        after, size = page_args(request, f"subs:{request.parent}", check)
        check.raise_if_any()
        items, last = await self.store.list_subscriptions(
            domain.read_audience(current_principal()), parent[0], after, size)
        return pb.ListSubscriptionsResponse(
            subscriptions=[subscription_pb(d) for d in items],
            next_page_token=encode_token(f"subs:{request.parent}", last) if last else "")

    def _subscription_call(self, method: str, request, response_type, work,
                           check: Violations | None = None, fast: Callable | None = None):
        check = check if check is not None else Violations()
        ids = parse(request.name, "subscription", "name", check)
        return self._mutate(
            method, request, check, lambda tx: work(tx, *ids), response_type,
            lambda d: response_type(subscription=subscription_pb(d)),
            fast and (lambda call: fast(call, *ids)))

    @requires(*WRITERS)
    async def ActivateSubscription(self, request, context):
        check = Violations()
        plan = parse(request.plan, "plan", "plan", check)
        check.check(request.quantity > 0, "quantity", "must be at least 1")
        return await self._subscription_call(
            "ActivateSubscription", request, pb.ActivateSubscriptionResponse,
            lambda tx, c, s: self.store.activate_subscription(tx, c, s, plan[0],
                                                              request.quantity), check,
            lambda call, c, s: self.store.fast_activate_subscription(call, c, s, plan[0],
                                                                     request.quantity))

    @requires(PARTNER, OPERATOR)
    async def SuspendSubscription(self, request, context):
        check = Violations()
        need(check, validation.optional_text(request.reason, validation.MAX_REASON), "reason")
        return await self._subscription_call(
            "SuspendSubscription", request, pb.SuspendSubscriptionResponse,
            lambda tx, c, s: self.store.suspend_subscription(tx, c, s, request.reason), check)

    @requires(PARTNER, OPERATOR)
    async def ReinstateSubscription(self, request, context):
        return await self._subscription_call(
            "ReinstateSubscription", request, pb.ReinstateSubscriptionResponse,
            lambda tx, c, s: self.store.reinstate_subscription(tx, c, s))

    async def _operation_call(self, method: str, request, response_type, kind: str,
                              check: Violations, **target):
        ids = parse(request.name, "subscription", "name", check)
        answer = await self._mutate(
            method, request, check,
            lambda tx: self.store.start_operation(tx, ids[0], ids[1], kind, **target),
            response_type, lambda d: response_type(operation=operation_pb(d)))
        return answer

    @requires(*WRITERS)
    async def ChangeSubscriptionPlan(self, request, context):
        check = Violations()
        plan = parse(request.plan, "plan", "plan", check)
        return await self._operation_call(
            "ChangeSubscriptionPlan", request, pb.ChangeSubscriptionPlanResponse,
            "CHANGE_PLAN", check, plan_id=plan[0] if plan else "")

    @requires(*WRITERS)
    async def ChangeSubscriptionQuantity(self, request, context):
        check = Violations()
        check.check(request.quantity > 0, "quantity", "must be at least 1")
        return await self._operation_call(
            "ChangeSubscriptionQuantity", request, pb.ChangeSubscriptionQuantityResponse,
            "CHANGE_QUANTITY", check, quantity=request.quantity)

    @requires(*WRITERS)
    async def CancelSubscription(self, request, context):
        check = Violations()
        need(check, validation.optional_text(request.reason, validation.MAX_REASON), "reason")
        return await self._operation_call(
            "CancelSubscription", request, pb.CancelSubscriptionResponse, "CANCEL", check,
            reason=request.reason)

    @requires(*READERS)
    async def GetSubscriptionOperation(self, request, context):
        c, s, o = parse(request.name, "operation", "name")
        d = await self.store.get_operation(domain.read_audience(current_principal()), c, s, o)
        return pb.GetSubscriptionOperationResponse(operation=operation_pb(d))

    @requires(*READERS)
    async def ListSubscriptionOperations(self, request, context):
        check = Violations()
        parent = parse(request.parent, "subscription", "parent", check)
        after, size = page_args(request, f"ops:{request.parent}", check)
        check.raise_if_any()
        items, last = await self.store.list_operations(
            domain.read_audience(current_principal()), parent[0], parent[1], after, size)
        return pb.ListSubscriptionOperationsResponse(
            operations=[operation_pb(d) for d in items],
            next_page_token=encode_token(f"ops:{request.parent}", last) if last else "")

    # --- terminals ------------------------------------------------------------------------

    @requires(*WRITERS)
    async def CreateTerminal(self, request, context):
        check = Violations()
        parent = parse(request.parent, "customer", "parent", check)
        t = request.terminal
        if not check.require(request.HasField("terminal") or None, "terminal"):
            check.raise_if_any()
        need(check, validation.serial_number(t.serial_number), "terminal.serial_number")
        sub = parse(t.subscription, "subscription", "terminal.subscription", check)
        if sub and parent and sub[0] != parent[0]:
            check.add("terminal.subscription", f"must be a subscription of {request.parent}")
        if check.require(t.HasField("location") or None, "terminal.location"):
            loc = t.location
            check.check(math.isfinite(loc.latitude_deg) and -90 <= loc.latitude_deg <= 90,
                        "terminal.location.latitude_deg", "must be between -90 and 90")
            check.check(math.isfinite(loc.longitude_deg) and -180 <= loc.longitude_deg <= 180,
                        "terminal.location.longitude_deg", "must be between -180 and 180")
            check.check(math.isfinite(loc.altitude_m) and -500 <= loc.altitude_m <= 10_000,
                        "terminal.location.altitude_m", "must be between -500 and 10000 m")
        location = (t.location.latitude_deg, t.location.longitude_deg, t.location.altitude_m)
        return await self._mutate(
            "CreateTerminal", request, check,
            lambda tx: self.store.create_terminal(tx, parent[0], sub[1], t.serial_number,
                                                  location),
            pb.CreateTerminalResponse, lambda d: pb.CreateTerminalResponse(terminal=terminal_pb(d)),
            lambda call: self.store.fast_create_terminal(call, parent[0], sub[1],
                                                         t.serial_number, location))

    @requires(*READERS)
    async def GetTerminal(self, request, context):
        c, t = parse(request.name, "terminal", "name")
        d = await self.store.get_terminal(domain.read_audience(current_principal()), c, t)
        return pb.GetTerminalResponse(terminal=terminal_pb(d))

    @requires(*READERS)
    async def ListTerminals(self, request, context):
        check = Violations()
        parent = parse(request.parent, "customer", "parent", check)
        after, size = page_args(request, f"terms:{request.parent}", check)
        check.raise_if_any()
        items, last = await self.store.list_terminals(
            domain.read_audience(current_principal()), parent[0], after, size)
        return pb.ListTerminalsResponse(
            terminals=[terminal_pb(d) for d in items],
            next_page_token=encode_token(f"terms:{request.parent}", last) if last else "")

    async def _terminal_call(self, method: str, action: str, request, response_type):
        check = Violations()
        ids = parse(request.name, "terminal", "name", check)
        return await self._mutate(
            method, request, check,
            lambda tx: self.store.transition_terminal(tx, ids[0], ids[1], action, request.etag),
            response_type, lambda d: response_type(terminal=terminal_pb(d)),
            lambda call: self.store.fast_transition_terminal(call, ids[0], ids[1], action,
                                                             request.etag))

    @requires(*WRITERS)
    async def ProvisionTerminal(self, request, context):
        return await self._terminal_call("ProvisionTerminal", "provision", request,
                                         pb.ProvisionTerminalResponse)

    @requires(*WRITERS)
    async def ActivateTerminal(self, request, context):
        return await self._terminal_call("ActivateTerminal", "activate", request,
                                         pb.ActivateTerminalResponse)

    @requires(*WRITERS)
    async def SuspendTerminal(self, request, context):
        return await self._terminal_call("SuspendTerminal", "suspend", request,
                                         pb.SuspendTerminalResponse)

    @requires(*WRITERS)
    async def DecommissionTerminal(self, request, context):
        return await self._terminal_call("DecommissionTerminal", "decommission", request,
                                         pb.DecommissionTerminalResponse)

    # --- entitlements ---------------------------------------------------------------------

    @requires(domain.ENTITLEMENTS, OPERATOR)
    async def CheckEntitlement(self, request, context):
        check = Violations()
        ids = _entitlement_args(request, check)
        check.raise_if_any()
        answer = await self.store.check_entitlement(*ids, request.bandwidth_mbps,
                                                    request.target_region)
        return _entitlement_pb(answer)

    @requires(domain.ENTITLEMENTS, OPERATOR)
    async def BatchCheckEntitlements(self, request, context):
        count = len(request.checks)
        if not 1 <= count <= MAX_BATCH_CHECKS:
            raise InvalidArgument(f"checks: {count} checks; send 1 to {MAX_BATCH_CHECKS}",
                                  violations=[("checks", f"must hold 1 to {MAX_BATCH_CHECKS} "
                                                         f"checks (got {count})")])
        results: list = [None] * count
        valid: list[int] = []
        checks: list[tuple[str, str, float, str]] = []
        for i, item in enumerate(request.checks):
            check = Violations()
            ids = _entitlement_args(item, check, f"checks[{i}].")
            # and the contract checks the batch's rules leave to each item, once per field
            named = {v.field for v in check.items}
            check.items.extend(v for v in item_violations(item, f"checks[{i}]")
                               if v.field not in named)
            if check:
                try:
                    check.raise_if_any(f"check {i} is invalid")
                except InvalidArgument as error:
                    results[i] = pb.BatchCheckEntitlementsResponse.Result(
                        error=to_status(error, DOMAIN))
            else:
                valid.append(i)
                checks.append((*ids, item.bandwidth_mbps, item.target_region))
        answers = await self.store.check_entitlements(checks)
        for i, answer in zip(valid, answers, strict=True):
            results[i] = pb.BatchCheckEntitlementsResponse.Result(answer=_entitlement_pb(answer))
        return pb.BatchCheckEntitlementsResponse(results=results)

    # --- event feed -----------------------------------------------------------------------

    @requires(*READERS, EVENTS)
    async def WatchEvents(self, request, context):
        after = decode_cursor(request.start_cursor)
        if any(t == 0 for t in request.types):
            raise InvalidArgument("types must not contain TYPE_UNSPECIFIED",
                                  violations=[("types", "must not contain TYPE_UNSPECIFIED")])
        types = frozenset(enum_name(res.Event.Type, t, "TYPE_") for t in request.types)
        audience = domain.read_audience(current_principal(), all_scopes=(OPERATOR, EVENTS))
        while True:
            signal = self.store.event_signal
            batch = await self.store.read_events(audience, after, EVENT_BATCH, types)
            for event in batch:
                yield pb.WatchEventsResponse(event=event_pb(event))
                after = event["seq"]
            if len(batch) < EVENT_BATCH:
                # Woken at once by this replica's commits and by other replicas' (LISTEN/
                # NOTIFY on PostgreSQL); the poll is a safety net.
                await woken(signal, self.store.event_poll_seconds)

    # --- audit ----------------------------------------------------------------------------

    @requires(*READERS)
    async def ListAuditRecords(self, request, context):
        check = Violations()
        after, size = page_args(request, f"audit:{request.parent}", check)
        check.require(request.parent, "parent")
        check.raise_if_any()
        await self._authorize_resource(request.parent)
        items, last = await self.store.list_audit(request.parent, after, size)
        return pb.ListAuditRecordsResponse(
            audit_records=[audit_pb(d) for d in items],
            next_page_token=encode_token(f"audit:{request.parent}", last) if last else "")

    async def _authorize_resource(self, name: str) -> None:
        """NOT_FOUND unless the caller may read `name` (the same rules as its Get)."""
        principal = current_principal()
        audience = domain.read_audience(principal)
        for kind, pattern in _NAMES.items():
            match = pattern.match(name)
            if not match:
                continue
            ids = match.groups()
            if kind == "partner":
                await self.store.get_partner(*ids)
            elif kind == "plan":
                await self.store.get_plan(*ids)
            elif kind == "referral":
                if not principal.has(PARTNER, OPERATOR):
                    break
                await self.store.get_referral(principal, *ids)
            elif kind == "customer":
                await self.store.get_customer(audience, *ids)
            elif kind == "subscription":
                await self.store.get_subscription(audience, *ids)
            elif kind == "operation":
                await self.store.get_operation(audience, *ids)
            elif kind == "terminal":
                await self.store.get_terminal(audience, *ids)
            return
        raise NotFound(f"{name[:200]} does not exist", reason="RESOURCE_NOT_FOUND",
                       metadata={"resource": name[:200]})
