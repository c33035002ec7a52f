"""The provisioning service through a real gRPC server on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import field_mask_pb2
from google.type import money_pb2
from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import resources_pb2 as res
from sqlalchemy import func, select

from services.provisioning.app import housekeeping, operations
from services.provisioning.store.tables import (
    AuditRow,
    CustomerRow,
    EventRow,
    SubscriptionRow,
    TerminalRow,
)
from shared.status import details_of
from tests.provisioning.conftest import failure, new_customer, new_subscription, new_terminal, rid

SUB = res.Subscription.State
TERM = res.Terminal.State
REASON = pb.EntitlementReason


async def count(kit, model) -> int:
    return await kit.store.count(model)


def fields_of(error) -> dict[str, str]:
    return {v.field: v.description for v in details_of(error).violations}


# --- catalog, partners, pagination ----------------------------------------------------------

async def test_seeded_partners_and_plans_page_through(prov, who):
    _, stub = prov
    partners = await stub.ListPartners(pb.ListPartnersRequest(), metadata=who.customer())
    assert {p.name for p in partners.partners} == {"partners/microsoft", "partners/spacex"}
    seen, token = [], ""
    while True:
        page = await stub.ListPlans(pb.ListPlansRequest(page_size=2, page_token=token),
                                    metadata=who.customer())
        seen += [p.name for p in page.plans]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 3
    error = await failure(stub.ListPlans(pb.ListPlansRequest(page_size=-1),
                                         metadata=who.customer()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_size" in fields_of(error)
    error = await failure(stub.ListPlans(pb.ListPlansRequest(page_token="garbage!"),
                                         metadata=who.customer()))
    assert "page_token" in fields_of(error)


async def test_only_operators_add_partners_and_plans(prov, who):
    _, stub = prov
    request = pb.CreatePartnerRequest(partner_id="fabrikam",
                                      partner=res.Partner(display_name="Fabrikam"),
                                      request_id=rid())
    error = await failure(stub.CreatePartner(request, metadata=who.partner()))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    created = await stub.CreatePartner(request, metadata=who.operator())
    assert created.partner.name == "partners/fabrikam"
    again = await failure(stub.CreatePartner(
        pb.CreatePartnerRequest(partner_id="fabrikam",
                                partner=res.Partner(display_name="Fabrikam 2"),
                                request_id=rid()), metadata=who.operator()))
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_plan_update_makes_a_revision_and_subscriptions_keep_their_terms(prov, who):
    kit, stub = prov
    customer = await new_customer(stub, who)
    old = await new_subscription(stub, who, customer.name, plan="plans/best-effort-50")
    plan = (await stub.GetPlan(pb.GetPlanRequest(name="plans/best-effort-50"),
                               metadata=who.customer())).plan
    plan.terms.bandwidth_mbps = 75
    updated = (await stub.UpdatePlan(pb.UpdatePlanRequest(
        plan=plan, update_mask=field_mask_pb2.FieldMask(paths=["terms.bandwidth_mbps"]),
        request_id=rid()), metadata=who.operator())).plan
    assert (updated.revision, updated.terms.bandwidth_mbps) == (2, 75)
    stale = await failure(stub.UpdatePlan(pb.UpdatePlanRequest(
        plan=plan, update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        request_id=rid()), metadata=who.operator()))
    assert stale.code() == grpc.StatusCode.ABORTED
    kept = (await stub.GetSubscription(pb.GetSubscriptionRequest(name=old.name),
                                       metadata=who.customer())).subscription
    assert (kept.plan_revision, kept.terms.bandwidth_mbps) == (1, 50)
    new = await new_subscription(stub, who, customer.name, plan="plans/best-effort-50")
    assert (new.plan_revision, new.terms.bandwidth_mbps) == (2, 75)


# --- referrals ------------------------------------------------------------------------------

def referral(**overrides) -> res.Referral:
    base = dict(
        counterparty="partners/spacex", display_name="Navy connectivity",
        deal_value=money_pb2.Money(currency_code="USD", units=2_500_000),
        customer_profile=res.CustomerProfile(organization="US Navy", country="US",
                                             contact_email="it@navy.example.mil",
                                             sector=res.SECTOR_PUBLIC),
        consent_share_contact=True)
    base.update(overrides)
    return res.Referral(**base)


async def update_state(stub, meta, ref: res.Referral, status, substatus):
    ref = res.Referral(name=ref.name, etag=ref.etag, status=status, substatus=substatus)
    return (await stub.UpdateReferral(pb.UpdateReferralRequest(
        referral=ref, update_mask=field_mask_pb2.FieldMask(paths=["status", "substatus"]),
        request_id=rid()), metadata=meta)).referral


async def test_referral_is_shared_accepted_won_and_becomes_a_customer(prov, who):
    _, stub = prov
    created = await stub.CreateReferral(pb.CreateReferralRequest(
        referral=referral(), request_id=rid()), metadata=who.partner("microsoft"))
    out, inbound = created.referral, created.counterparty_referral
    assert out.engagement_id == inbound.engagement_id
    assert (out.status, out.substatus) == (res.Referral.STATUS_NEW, res.Referral.SUBSTATUS_PENDING)
    assert inbound.owner == "partners/spacex"
    assert inbound.substatus == res.Referral.SUBSTATUS_RECEIVED
    # Each partner sees only its own side.
    hidden = await failure(stub.GetReferral(pb.GetReferralRequest(name=inbound.name),
                                            metadata=who.partner("microsoft")))
    assert hidden.code() == grpc.StatusCode.NOT_FOUND
    # The creator cannot accept its own referral: the current state is named.
    wrong = await failure(update_state(stub, who.partner("microsoft"), out,
                                       res.Referral.STATUS_ACTIVE,
                                       res.Referral.SUBSTATUS_ACCEPTED))
    assert wrong.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(wrong).metadata["current_state"] == "NEW/PENDING"
    accepted = await update_state(stub, who.partner("spacex"), inbound,
                                  res.Referral.STATUS_ACTIVE, res.Referral.SUBSTATUS_ACCEPTED)
    assert accepted.status == res.Referral.STATUS_ACTIVE
    mirrored = (await stub.GetReferral(pb.GetReferralRequest(name=out.name),
                                       metadata=who.partner("microsoft"))).referral
    assert mirrored.substatus == res.Referral.SUBSTATUS_ACCEPTED
    # A stale etag (the one read before the mirror) is ABORTED and changes nothing.
    stale = await failure(update_state(stub, who.partner("microsoft"), out,
                                       res.Referral.STATUS_CLOSED, res.Referral.SUBSTATUS_WON))
    assert stale.code() == grpc.StatusCode.ABORTED
    # A customer cannot come from a referral that is not won.
    early = await failure(stub.CreateCustomer(pb.CreateCustomerRequest(
        customer=res.Customer(referral=out.name, tenant="navy"), request_id=rid()),
        metadata=who.partner("microsoft")))
    assert early.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ACTIVE/ACCEPTED" in early.details()
    won = await update_state(stub, who.partner("microsoft"), mirrored,
                             res.Referral.STATUS_CLOSED, res.Referral.SUBSTATUS_WON)
    assert won.substatus == res.Referral.SUBSTATUS_WON
    customer = (await stub.CreateCustomer(pb.CreateCustomerRequest(
        customer=res.Customer(referral=out.name, tenant="navy"), request_id=rid()),
        metadata=who.partner("microsoft"))).customer
    assert customer.display_name == "US Navy" and customer.sector == res.SECTOR_PUBLIC
    assert (customer.source_partner, customer.referral) == ("partners/microsoft", out.name)
    twice = await failure(stub.CreateCustomer(pb.CreateCustomerRequest(
        customer=res.Customer(referral=out.name, tenant="navy"), request_id=rid()),
        metadata=who.partner("microsoft")))
    assert twice.code() == grpc.StatusCode.ALREADY_EXISTS
    # The customer's own token sees it; the sourcing partner too; the other partner not.
    await stub.GetCustomer(pb.GetCustomerRequest(name=customer.name),
                           metadata=who.customer("navy", "provisioning.read"))
    await stub.GetCustomer(pb.GetCustomerRequest(name=customer.name),
                           metadata=who.partner("microsoft"))
    other = await failure(stub.GetCustomer(pb.GetCustomerRequest(name=customer.name),
                                           metadata=who.partner("spacex")))
    assert other.code() == grpc.StatusCode.NOT_FOUND


async def test_closed_referral_accepts_no_transition(prov, who):
    _, stub = prov
    created = await stub.CreateReferral(pb.CreateReferralRequest(
        referral=referral(), request_id=rid()), metadata=who.partner("microsoft"))
    declined = await update_state(stub, who.partner("spacex"), created.counterparty_referral,
                                  res.Referral.STATUS_CLOSED, res.Referral.SUBSTATUS_DECLINED)
    again = await failure(update_state(stub, who.partner("spacex"), declined,
                                       res.Referral.STATUS_ACTIVE,
                                       res.Referral.SUBSTATUS_ACCEPTED))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(again).metadata["current_state"] == "CLOSED/DECLINED"
    outbound = (await stub.GetReferral(pb.GetReferralRequest(name=created.referral.name),
                                       metadata=who.partner("microsoft"))).referral
    assert outbound.substatus == res.Referral.SUBSTATUS_DECLINED
    mismatched = await failure(update_state(stub, who.partner("microsoft"), outbound,
                                            res.Referral.STATUS_NEW,
                                            res.Referral.SUBSTATUS_WON))
    assert mismatched.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "referral.substatus" in fields_of(mismatched)


async def test_bad_referral_input_names_every_field(prov, who):
    kit, stub = prov
    bad = referral(
        counterparty="partners/microsoft", display_name="x" * 201,
        deal_value=money_pb2.Money(currency_code="XYZ", units=-5),
        customer_profile=res.CustomerProfile(organization="Org", country="XX",
                                             contact_email="not-an-email"))
    error = await failure(stub.CreateReferral(pb.CreateReferralRequest(
        referral=bad, request_id=rid()), metadata=who.partner("microsoft")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields_of(error)) >= {
        "referral.counterparty", "referral.display_name", "referral.deal_value.currency_code",
        "referral.deal_value.units", "referral.customer_profile.country",
        "referral.customer_profile.contact_email", "referral.customer_profile.sector"}
    from services.provisioning.store.tables import ReferralRow
    assert await count(kit, ReferralRow) == 0


# --- customers and tenant scoping ------------------------------------------------------------

async def test_bad_customer_input_is_rejected_and_nothing_is_written(prov, who):
    kit, stub = prov
    customer = res.Customer(display_name="", country="usa", contact_email="a@@b",
                            azure_tenant_id="nope")
    error = await failure(stub.CreateCustomer(pb.CreateCustomerRequest(customer=customer),
                                              metadata=who.customer()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields_of(error)) == {"customer.display_name", "customer.country",
                                     "customer.contact_email", "customer.sector",
                                     "customer.azure_tenant_id", "request_id"}
    assert await count(kit, CustomerRow) == 0
    missing = await failure(stub.GetCustomer(pb.GetCustomerRequest(name="customers/nope"),
                                             metadata=who.customer()))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    malformed = await failure(stub.GetCustomer(pb.GetCustomerRequest(name="nope"),
                                               metadata=who.customer()))
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in fields_of(malformed)


async def test_a_customer_token_cannot_read_another_customers_records(prov, who):
    _, stub = prov
    mine = await new_customer(stub, who, "contoso")
    theirs = await new_customer(stub, who, "fabrikam")
    sub = await new_subscription(stub, who, theirs.name, tenant="fabrikam")
    terminal = await new_terminal(stub, who, theirs.name, sub.name, "UT-FAB-0001",
                                  tenant="fabrikam")
    me = who.customer("contoso", "provisioning.read")
    for call in (
        stub.GetCustomer(pb.GetCustomerRequest(name=theirs.name), metadata=me),
        stub.GetSubscription(pb.GetSubscriptionRequest(name=sub.name), metadata=me),
        stub.ListSubscriptions(pb.ListSubscriptionsRequest(parent=theirs.name), metadata=me),
        stub.GetTerminal(pb.GetTerminalRequest(name=terminal.name), metadata=me),
        stub.ListTerminals(pb.ListTerminalsRequest(parent=theirs.name), metadata=me),
        stub.ListAuditRecords(pb.ListAuditRecordsRequest(parent=sub.name), metadata=me),
        stub.ActivateTerminal(pb.ActivateTerminalRequest(name=terminal.name, request_id=rid()),
                              metadata=who.customer("contoso")),
        stub.CreateSubscription(pb.CreateSubscriptionRequest(
            parent=theirs.name, subscription=res.Subscription(plan="plans/enterprise-100",
                                                              quantity=1),
            request_id=rid()), metadata=who.customer("contoso")),
    ):
        error = await failure(call)
        assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)
    listed = await stub.ListCustomers(pb.ListCustomersRequest(), metadata=me)
    assert [c.name for c in listed.customers] == [mine.name]
    everyone = await stub.ListCustomers(pb.ListCustomersRequest(), metadata=who.operator())
    assert {c.name for c in everyone.customers} == {mine.name, theirs.name}
    denied = await failure(stub.CheckEntitlement(pb.CheckEntitlementRequest(
        customer=theirs.name, terminal=terminal.name, bandwidth_mbps=1, target_region="eastus"),
        metadata=who.customer("contoso")))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED


# --- subscriptions, terminals, entitlements -------------------------------------------------

async def entitlement(stub, who, terminal: res.Terminal, mbps=50.0, region="westeurope"):
    customer = terminal.name.split("/terminals/")[0]
    return await stub.CheckEntitlement(pb.CheckEntitlementRequest(
        customer=customer, terminal=terminal.name, bandwidth_mbps=mbps, target_region=region),
        metadata=who.broker())


async def test_subscription_lifecycle_and_entitlements(prov, who, clock):
    kit, stub = prov
    customer = await new_customer(stub, who)
    pending = await new_subscription(stub, who, customer.name, activate=False)
    assert pending.state == SUB.STATE_PENDING_FULFILLMENT_START
    terminal = await new_terminal(stub, who, customer.name, pending.name, "UT-0001")
    answer = await entitlement(stub, who, terminal)
    assert (answer.allowed, answer.reason) == (False, REASON.ENTITLEMENT_REASON_SUBSCRIPTION_NOT_ACTIVE)
    # The broker learns whose customer it is and where the terminal stands from the same answer.
    assert answer.customer_tenant == "contoso"
    assert (answer.terminal_location.latitude_deg, answer.terminal_location.longitude_deg) == (47.6, -122.3)
    mismatch = await failure(stub.ActivateSubscription(pb.ActivateSubscriptionRequest(
        name=pending.name, plan="plans/enterprise-100", quantity=3, request_id=rid()),
        metadata=who.customer()))
    assert mismatch.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "quantity" in fields_of(mismatch)
    early = await failure(stub.ActivateTerminal(pb.ActivateTerminalRequest(
        name=terminal.name, request_id=rid()), metadata=who.customer()))
    assert early.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(early).metadata["current_state"] == "REGISTERED"
    sub = (await stub.ActivateSubscription(pb.ActivateSubscriptionRequest(
        name=pending.name, plan="plans/enterprise-100", quantity=2, request_id=rid()),
        metadata=who.customer())).subscription
    assert sub.state == SUB.STATE_SUBSCRIBED
    for verb in ("ProvisionTerminal", "ActivateTerminal"):
        request = getattr(pb, f"{verb}Request")(name=terminal.name, request_id=rid())
        terminal = (await getattr(stub, verb)(request, metadata=who.customer())).terminal
    assert terminal.state == TERM.STATE_ACTIVE
    answer = await entitlement(stub, who, terminal)
    assert answer.allowed and answer.reason == REASON.ENTITLEMENT_REASON_ENTITLED
    assert (answer.max_bandwidth_mbps, answer.priority_class) == (
        100.0, res.PRIORITY_CLASS_ENTERPRISE)
    assert answer.subscription == sub.name
    too_much = await entitlement(stub, who, terminal, mbps=150)
    assert too_much.reason == REASON.ENTITLEMENT_REASON_BANDWIDTH_EXCEEDS_PLAN
    # Only the publisher side suspends; the suspension shows in the very next check.
    refused = await failure(stub.SuspendSubscription(pb.SuspendSubscriptionRequest(
        name=sub.name, request_id=rid()), metadata=who.customer()))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    await stub.SuspendSubscription(pb.SuspendSubscriptionRequest(
        name=sub.name, reason="unpaid", request_id=rid()), metadata=who.operator())
    answer = await entitlement(stub, who, terminal)
    assert (answer.allowed, answer.reason) == (False, REASON.ENTITLEMENT_REASON_SUBSCRIPTION_NOT_ACTIVE)
    twice = await failure(stub.SuspendSubscription(pb.SuspendSubscriptionRequest(
        name=sub.name, request_id=rid()), metadata=who.operator()))
    assert twice.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(twice).metadata["current_state"] == "SUSPENDED"
    assert "SUSPENDED" in twice.details()
    await stub.ReinstateSubscription(pb.ReinstateSubscriptionRequest(
        name=sub.name, request_id=rid()), metadata=who.operator())
    assert (await entitlement(stub, who, terminal)).allowed
    # After the grace period a suspension can no longer be reinstated.
    await stub.SuspendSubscription(pb.SuspendSubscriptionRequest(
        name=sub.name, request_id=rid()), metadata=who.operator())
    clock.advance(days=31)
    late = await failure(stub.ReinstateSubscription(pb.ReinstateSubscriptionRequest(
        name=sub.name, request_id=rid()), metadata=who.operator()))
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(late).reason == "GRACE_PERIOD_ENDED"
    unknown = await stub.CheckEntitlement(pb.CheckEntitlementRequest(
        customer="customers/nobody", terminal="customers/nobody/terminals/x1", bandwidth_mbps=1,
        target_region="eastus"), metadata=who.broker())
    assert unknown.reason == REASON.ENTITLEMENT_REASON_CUSTOMER_NOT_FOUND
    assert unknown.customer_tenant == "" and not unknown.HasField("terminal_location")
    bad = await failure(stub.CheckEntitlement(pb.CheckEntitlementRequest(
        customer="customers/x", terminal="terminals/y", bandwidth_mbps=-1, target_region=""),
        metadata=who.broker()))
    assert set(fields_of(bad)) == {"terminal", "bandwidth_mbps", "target_region"}


async def test_activation_window_lapses_and_the_record_stays_listed(prov, who, clock):
    kit, stub = prov
    customer = await new_customer(stub, who)
    pending = await new_subscription(stub, who, customer.name, activate=False)
    clock.advance(days=30, seconds=1)
    late = await failure(stub.ActivateSubscription(pb.ActivateSubscriptionRequest(
        name=pending.name, plan="plans/enterprise-100", quantity=2, request_id=rid()),
        metadata=who.customer()))
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(late).reason == "ACTIVATION_WINDOW_CLOSED"
    assert (await housekeeping.sweep(kit.uow))["lapsed"] == 1
    listed = await stub.ListSubscriptions(pb.ListSubscriptionsRequest(parent=customer.name),
                                          metadata=who.customer())
    assert [s.state for s in listed.subscriptions] == [SUB.STATE_UNSUBSCRIBED]


async def test_terminal_count_stays_within_the_quantity(prov, who):
    kit, stub = prov
    customer = await new_customer(stub, who)
    sub = await new_subscription(stub, who, customer.name, quantity=2)
    first = await new_terminal(stub, who, customer.name, sub.name, "UT-A-0001")
    await new_terminal(stub, who, customer.name, sub.name, "UT-A-0002")
    full = await failure(new_terminal(stub, who, customer.name, sub.name, "UT-A-0003"))
    assert full.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details_of(full).reason == "QUANTITY_EXCEEDED"
    dup = await failure(new_terminal(stub, who, customer.name, sub.name, "UT-A-0001"))
    assert dup.code() in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.RESOURCE_EXHAUSTED)
    await stub.DecommissionTerminal(pb.DecommissionTerminalRequest(
        name=first.name, etag=first.etag, request_id=rid()), metadata=who.customer())
    await new_terminal(stub, who, customer.name, sub.name, "UT-A-0003")
    dup = await failure(new_terminal(stub, who, customer.name, sub.name, "UT-A-0002"))
    assert dup.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    again = await failure(stub.DecommissionTerminal(pb.DecommissionTerminalRequest(
        name=first.name, request_id=rid()), metadata=who.customer()))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(again).metadata["current_state"] == "DECOMMISSIONED"
    stale = await failure(stub.ProvisionTerminal(pb.ProvisionTerminalRequest(
        name=first.name, etag=first.etag, request_id=rid()), metadata=who.customer()))
    assert stale.code() == grpc.StatusCode.ABORTED
    current = (await stub.GetSubscription(pb.GetSubscriptionRequest(name=sub.name),
                                          metadata=who.customer())).subscription
    assert current.terminal_count == 2


# --- long-running operations ---------------------------------------------------------------

async def test_quantity_and_plan_changes_and_cancellation_are_operations(prov, who):
    kit, stub = prov
    customer = await new_customer(stub, who)
    sub = await new_subscription(stub, who, customer.name, quantity=2)
    terminal = await new_terminal(stub, who, customer.name, sub.name, "UT-OP-0001")
    await new_terminal(stub, who, customer.name, sub.name, "UT-OP-0002")
    below = await failure(stub.ChangeSubscriptionQuantity(pb.ChangeSubscriptionQuantityRequest(
        name=sub.name, quantity=1, request_id=rid()), metadata=who.customer()))
    assert below.code() == grpc.StatusCode.FAILED_PRECONDITION
    outside = await failure(stub.ChangeSubscriptionQuantity(
        pb.ChangeSubscriptionQuantityRequest(name=sub.name, quantity=5000, request_id=rid()),
        metadata=who.customer()))
    assert outside.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "quantity" in fields_of(outside)
    op = (await stub.ChangeSubscriptionQuantity(pb.ChangeSubscriptionQuantityRequest(
        name=sub.name, quantity=4, request_id=rid()), metadata=who.customer())).operation
    assert op.state == res.SubscriptionOperation.STATE_RUNNING and not op.done
    # Never two changes at once.
    busy = await failure(stub.ChangeSubscriptionPlan(pb.ChangeSubscriptionPlanRequest(
        name=sub.name, plan="plans/gov-priority-200", request_id=rid()), metadata=who.customer()))
    assert busy.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(busy).reason == "OPERATION_IN_PROGRESS"
    assert await operations.run_pending(kit.uow) == 1
    op = (await stub.GetSubscriptionOperation(pb.GetSubscriptionOperationRequest(name=op.name),
                                              metadata=who.customer())).operation
    assert op.done and op.state == res.SubscriptionOperation.STATE_SUCCEEDED
    changed = await stub.ChangeSubscriptionPlan(pb.ChangeSubscriptionPlanRequest(
        name=sub.name, plan="plans/gov-priority-200", request_id=rid()), metadata=who.customer())
    await operations.run_pending(kit.uow)
    now = (await stub.GetSubscription(pb.GetSubscriptionRequest(name=sub.name),
                                      metadata=who.customer())).subscription
    assert (now.quantity, now.plan, now.terms.priority_class) == (
        4, "plans/gov-priority-200", res.PRIORITY_CLASS_GOVERNMENT_PRIORITY)
    cancel = (await stub.CancelSubscription(pb.CancelSubscriptionRequest(
        name=sub.name, reason="project over", request_id=rid()),
        metadata=who.customer())).operation
    await operations.run_pending(kit.uow)
    ops = await stub.ListSubscriptionOperations(pb.ListSubscriptionOperationsRequest(
        parent=sub.name), metadata=who.customer())
    assert [o.name for o in ops.operations] == [op.name, changed.operation.name, cancel.name]
    assert all(o.state == res.SubscriptionOperation.STATE_SUCCEEDED for o in ops.operations)
    ended = (await stub.GetSubscription(pb.GetSubscriptionRequest(name=sub.name),
                                        metadata=who.customer())).subscription
    assert (ended.state, ended.terminal_count) == (SUB.STATE_UNSUBSCRIBED, 0)
    gone = (await stub.GetTerminal(pb.GetTerminalRequest(name=terminal.name),
                                   metadata=who.customer())).terminal
    assert gone.state == TERM.STATE_DECOMMISSIONED
    final = await failure(stub.CancelSubscription(pb.CancelSubscriptionRequest(
        name=sub.name, request_id=rid()), metadata=who.customer()))
    assert final.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(final).metadata["current_state"] == "UNSUBSCRIBED"


async def test_an_operation_that_no_longer_fits_fails_with_its_reason(prov, who):
    kit, stub = prov
    customer = await new_customer(stub, who)
    sub = await new_subscription(stub, who, customer.name, quantity=2)
    op = (await stub.ChangeSubscriptionQuantity(pb.ChangeSubscriptionQuantityRequest(
        name=sub.name, quantity=3, request_id=rid()), metadata=who.customer())).operation
    await stub.SuspendSubscription(pb.SuspendSubscriptionRequest(
        name=sub.name, request_id=rid()), metadata=who.operator())
    await operations.run_pending(kit.uow)
    op = (await stub.GetSubscriptionOperation(pb.GetSubscriptionOperationRequest(name=op.name),
                                              metadata=who.customer())).operation
    assert op.state == res.SubscriptionOperation.STATE_FAILED
    assert op.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "SUSPENDED" in op.error.message


async def test_background_worker_completes_operations(settings, who, clock):
    from tests.provisioning.conftest import start

    kit = await start(settings, clock=clock)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    from skybridge.provisioning.v1 import provisioning_pb2_grpc

    stub = provisioning_pb2_grpc.ProvisioningServiceStub(channel)
    try:
        customer = await new_customer(stub, who)
        sub = await new_subscription(stub, who, customer.name)
        op = (await stub.ChangeSubscriptionQuantity(pb.ChangeSubscriptionQuantityRequest(
            name=sub.name, quantity=3, request_id=rid()), metadata=who.customer())).operation
        # The worker runs in the background: poll for its outcome (the deadline only ends a
        # hang; it was 5 s, which a loaded machine can take).
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            op = (await stub.GetSubscriptionOperation(
                pb.GetSubscriptionOperationRequest(name=op.name),
                metadata=who.customer())).operation
            if op.done or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert op.state == res.SubscriptionOperation.STATE_SUCCEEDED
    finally:
        await channel.close()
        await kit.server.drain(0)


# --- idempotency ------------------------------------------------------------------------------

async def test_request_id_replays_the_first_answer_and_rejects_a_different_payload(prov, who):
    kit, stub = prov
    customer = await new_customer(stub, who)
    request = pb.CreateSubscriptionRequest(
        parent=customer.name, subscription=res.Subscription(plan="plans/enterprise-100",
                                                            quantity=2), request_id="buy-1")
    first = await stub.CreateSubscription(request, metadata=who.customer())
    again = await stub.CreateSubscription(request, metadata=who.customer())
    assert first == again
    request.subscription.quantity = 3
    reused = await failure(stub.CreateSubscription(request, metadata=who.customer()))
    assert reused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(reused).reason == "REQUEST_ID_REUSED"
    assert "request_id" in fields_of(reused)
    assert await count(kit, SubscriptionRow) == 1
    missing = await failure(stub.CreateSubscription(pb.CreateSubscriptionRequest(
        parent=customer.name, subscription=res.Subscription(plan="plans/enterprise-100",
                                                            quantity=1)),
        metadata=who.customer()))
    assert "request_id" in fields_of(missing)


async def test_64_concurrent_calls_with_one_request_id_make_one_effect(prov, who):
    kit, stub = prov
    customer = await new_customer(stub, who)
    sub = await new_subscription(stub, who, customer.name, quantity=10)
    request = pb.CreateTerminalRequest(parent=customer.name, terminal=res.Terminal(
        serial_number="UT-SAME-0001", subscription=sub.name,
        location={"latitude_deg": 1.0, "longitude_deg": 2.0}), request_id="terminal-once")
    answers = await asyncio.gather(*(stub.CreateTerminal(request, metadata=who.customer())
                                     for _ in range(64)))
    assert len({a.terminal.name for a in answers}) == 1
    assert all(a == answers[0] for a in answers)
    assert await count(kit, TerminalRow) == 1
    current = (await stub.GetSubscription(pb.GetSubscriptionRequest(name=sub.name),
                                          metadata=who.customer())).subscription
    assert current.terminal_count == 1
    async with kit.sessions() as session:
        events = await session.scalar(select(func.count()).select_from(EventRow).where(
            EventRow.type == "TERMINAL_REGISTERED"))
    assert events == 1


# --- audit and events -------------------------------------------------------------------------

async def test_every_change_is_audited_with_before_and_after(prov, who):
    kit, stub = prov
    customer = await new_customer(stub, who)
    sub = await new_subscription(stub, who, customer.name)
    await stub.SuspendSubscription(pb.SuspendSubscriptionRequest(
        name=sub.name, reason="audit me", request_id="susp-1"), metadata=who.operator())
    records = (await stub.ListAuditRecords(pb.ListAuditRecordsRequest(parent=sub.name),
                                           metadata=who.customer())).audit_records
    assert [r.action for r in records] == ["subscription.create", "subscription.activate",
                                           "subscription.suspend"]
    last = records[-1]
    assert (last.actor, last.actor_tenant, last.request_id) == ("ops", "skybridge", "susp-1")
    assert last.before["state"] == "SUBSCRIBED" and last.after["state"] == "SUSPENDED"
    assert not records[0].HasField("before")
    assert await count(kit, AuditRow) >= 4


async def collect(stream, n: int) -> list[res.Event]:
    out = []
    async for answer in stream:
        out.append(answer.event)
        if len(out) == n:
            break
    stream.cancel()
    return out


async def test_event_feed_resumes_without_gaps_or_duplicates(prov, who):
    _, stub = prov
    customer = await new_customer(stub, who)
    sub = await new_subscription(stub, who, customer.name, quantity=3)
    terminal = await new_terminal(stub, who, customer.name, sub.name, "UT-EV-0001")
    await stub.ProvisionTerminal(pb.ProvisionTerminalRequest(
        name=terminal.name, request_id=rid()), metadata=who.customer())
    await stub.SuspendSubscription(pb.SuspendSubscriptionRequest(
        name=sub.name, request_id=rid()), metadata=who.operator())
    everything = await collect(stub.WatchEvents(pb.WatchEventsRequest(),
                                                metadata=who.operator()), 5)
    assert [e.type for e in everything] == [
        res.Event.TYPE_SUBSCRIPTION_CREATED, res.Event.TYPE_SUBSCRIPTION_ACTIVATED,
        res.Event.TYPE_TERMINAL_REGISTERED, res.Event.TYPE_TERMINAL_STATE_CHANGED,
        res.Event.TYPE_SUBSCRIPTION_SUSPENDED]
    assert everything[-1].subscription.state == SUB.STATE_SUSPENDED
    first = await collect(stub.WatchEvents(pb.WatchEventsRequest(), metadata=who.customer()), 2)
    # Resume after the second; events committed meanwhile arrive too (the stream follows).
    follow = stub.WatchEvents(pb.WatchEventsRequest(start_cursor=first[-1].cursor),
                              metadata=who.customer())
    pending = asyncio.ensure_future(collect(follow, 4))
    await stub.ReinstateSubscription(pb.ReinstateSubscriptionRequest(
        name=sub.name, request_id=rid()), metadata=who.operator())
    rest = await asyncio.wait_for(pending, 60)  # only ends a hang
    cursors = [e.cursor for e in first + rest]
    assert len(set(cursors)) == 6
    assert [e.type for e in first + rest][:5] == [e.type for e in everything]
    assert rest[-1].type == res.Event.TYPE_SUBSCRIPTION_REINSTATED
    # Another customer's token sees none of these events.
    other = await new_customer(stub, who, "fabrikam")
    await new_subscription(stub, who, other.name, tenant="fabrikam", activate=False)
    theirs = await collect(stub.WatchEvents(pb.WatchEventsRequest(),
                                            metadata=who.customer("fabrikam")), 1)
    assert theirs[0].customer == other.name
    bad = await failure(collect(stub.WatchEvents(pb.WatchEventsRequest(start_cursor="%%"),
                                                 metadata=who.customer()), 1))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_feed_followed_during_concurrent_writes_has_every_event_once_in_order(prov, who):
    """Writers commit concurrently (no lock shared by all of them) while a reader follows the
    feed: the reader gets every committed event exactly once, each terminal's events in the
    order of its changes, and a reader resuming from any cursor gets exactly the rest."""
    kit, stub = prov
    customer = await new_customer(stub, who)
    sub = await new_subscription(stub, who, customer.name, quantity=20)
    terminals = await asyncio.gather(*(new_terminal(stub, who, customer.name, sub.name,
                                                    f"UT-FEED-{i:04d}") for i in range(12)))
    steps = (("Provision", TERM.STATE_PROVISIONED), ("Activate", TERM.STATE_ACTIVE),
             ("Suspend", TERM.STATE_SUSPENDED), ("Activate", TERM.STATE_ACTIVE))
    total = 2 + len(terminals) * (1 + len(steps))
    follower = asyncio.ensure_future(collect(stub.WatchEvents(
        pb.WatchEventsRequest(), metadata=who.customer()), total))

    async def writer(terminal):
        for verb, _ in steps:
            await getattr(stub, f"{verb}Terminal")(getattr(pb, f"{verb}TerminalRequest")(
                name=terminal.name, request_id=rid()), metadata=who.customer())

    await asyncio.gather(*(writer(t) for t in terminals))
    feed = await asyncio.wait_for(follower, 120)  # only ends a hang
    assert await count(kit, EventRow) == total
    assert len({e.cursor for e in feed}) == total
    by_terminal: dict[str, list] = {}
    for event in feed:
        if event.HasField("terminal"):
            by_terminal.setdefault(event.resource, []).append(event.terminal)
    assert sorted(by_terminal) == sorted(t.name for t in terminals)
    for changes in by_terminal.values():
        assert [c.state for c in changes] == [TERM.STATE_REGISTERED] + [s for _, s in steps]
        assert [c.etag for c in changes] == [f'W/"{v}"' for v in range(1, len(steps) + 2)]
    for middle in (1, total // 2, total - 1):
        rest = await collect(stub.WatchEvents(pb.WatchEventsRequest(
            start_cursor=feed[middle - 1].cursor), metadata=who.customer()), total - middle)
        assert [e.cursor for e in rest] == [e.cursor for e in feed[middle:]]
    # The entitlement check reads the committed state: a suspension shows at once.
    check = pb.CheckEntitlementRequest(customer=customer.name, terminal=terminals[0].name,
                                       bandwidth_mbps=10, target_region="westeurope")
    assert (await stub.CheckEntitlement(check, metadata=who.broker())).allowed
    await stub.SuspendTerminal(pb.SuspendTerminalRequest(name=terminals[0].name,
                                                         request_id=rid()),
                               metadata=who.customer())
    answer = await stub.CheckEntitlement(check, metadata=who.broker())
    assert not answer.allowed
    gone = await stub.CheckEntitlement(pb.CheckEntitlementRequest(
        customer=customer.name, terminal=f"{customer.name}/terminals/nope", bandwidth_mbps=10,
        target_region="westeurope"), metadata=who.broker())
    assert gone.reason == REASON.ENTITLEMENT_REASON_TERMINAL_NOT_FOUND


async def test_a_negative_page_size_is_refused_where_other_checks_share_the_answer(prov, who):
    """ListAuditRecords, ListSubscriptions...: page_size < 0 with a parent is INVALID_ARGUMENT
    naming page_size (found by the contract fuzz as INTERNAL on PostgreSQL, where the
    negative LIMIT reached the database: an empty Violations was falsy and replaced)."""
    _, stub = prov
    customer = await new_customer(stub, who)
    sub = await new_subscription(stub, who, customer.name)
    for call in (
        stub.ListAuditRecords(pb.ListAuditRecordsRequest(parent=sub.name, page_size=-5),
                              metadata=who.customer()),
        stub.ListSubscriptions(pb.ListSubscriptionsRequest(parent=customer.name,
                                                           page_size=-2147483648),
                               metadata=who.customer())):
        error = await failure(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_size" in {v.field for v in details_of(error).violations}
