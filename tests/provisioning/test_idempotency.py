"""Idempotency of provisioning's mutating calls under retries and races, through a real
server on loopback on SQLite and PostgreSQL (whose one-statement fast path the
subscription and terminal calls take): the contract every service keeps
(`shared.idempotency`): the first answer for a retry, one effect for 64 identical calls,
REQUEST_ID_REUSED for the same request_id with another body, and keys that belong to the
caller's tenant, an operator acting for a customer included."""

from __future__ import annotations

import sqlalchemy as sa
from skybridge.common.v1 import common_pb2
from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import resources_pb2 as res

from tests.idempotency import assert_reused, race
from tests.provisioning.conftest import new_customer, new_subscription, rid


async def count(kit, table: str) -> int:
    async with kit.engine.connect() as conn:
        return (await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar()


def customer_request(request_id: str, name="Contoso Ltd") -> pb.CreateCustomerRequest:
    return pb.CreateCustomerRequest(customer=res.Customer(
        display_name=name, sector=res.SECTOR_PRIVATE, country="US",
        contact_email="it@contoso.example.com"), request_id=request_id)


async def test_create_customer_retried_raced_and_reused(prov, who):
    kit, stub = prov
    request = customer_request(rid())
    answers = await race(lambda: stub.CreateCustomer(request, metadata=who.customer()))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert await stub.CreateCustomer(request, metadata=who.customer()) == answers[0]
    assert await count(kit, "customers") == 1
    await assert_reused(stub.CreateCustomer(customer_request(request.request_id, "Other"),
                                            metadata=who.customer()))
    assert await count(kit, "customers") == 1


async def test_subscription_and_terminal_calls_raced_make_one_effect(prov, who):
    kit, stub = prov
    customer = await new_customer(stub, who)
    create = pb.CreateSubscriptionRequest(parent=customer.name, subscription=res.Subscription(
        plan="plans/enterprise-100", quantity=2), request_id=rid())
    answers = await race(lambda: stub.CreateSubscription(create, metadata=who.customer()))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert await count(kit, "subscriptions") == 1
    sub = answers[0].subscription
    activate = pb.ActivateSubscriptionRequest(name=sub.name, plan="plans/enterprise-100",
                                              quantity=2, request_id=rid())
    answers = await race(lambda: stub.ActivateSubscription(activate,
                                                           metadata=who.customer()))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    register = pb.CreateTerminalRequest(parent=customer.name, terminal=res.Terminal(
        serial_number="UT-RACE-1", subscription=sub.name,
        location=common_pb2.GeodeticPoint(latitude_deg=47.6, longitude_deg=-122.3)),
        request_id=rid())
    answers = await race(lambda: stub.CreateTerminal(register, metadata=who.customer()))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert await count(kit, "terminals") == 1
    other = pb.CreateTerminalRequest()
    other.CopyFrom(register)
    other.terminal.serial_number = "UT-RACE-2"
    await assert_reused(stub.CreateTerminal(other, metadata=who.customer()))
    assert await count(kit, "terminals") == 1


async def test_an_operators_keys_are_the_operators_and_a_customers_the_customers(prov, who):
    kit, stub = prov
    customer = await new_customer(stub, who)
    sub = await new_subscription(stub, who, customer.name)
    key = rid()
    # The operator suspends the customer's subscription: its key is the operator's.
    suspend = pb.SuspendSubscriptionRequest(name=sub.name, request_id=key)
    answers = await race(lambda: stub.SuspendSubscription(suspend, metadata=who.operator()))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert await stub.SuspendSubscription(suspend, metadata=who.operator()) == answers[0]
    suspended = answers[0]
    # The customer's same request_id is the customer's own key: another request under it
    # runs (no REQUEST_ID_REUSED, no replay of the operator's answer) ...
    mine = await stub.CreateSubscription(pb.CreateSubscriptionRequest(
        parent=customer.name, subscription=res.Subscription(plan="plans/enterprise-100",
                                                            quantity=1),
        request_id=key), metadata=who.customer())
    assert mine.subscription.name != sub.name
    assert await count(kit, "subscriptions") == 2
    # ... and each replays its own first answer.
    assert await stub.SuspendSubscription(suspend, metadata=who.operator()) == suspended
    await assert_reused(stub.CreateSubscription(pb.CreateSubscriptionRequest(
        parent=customer.name, subscription=res.Subscription(plan="plans/enterprise-100",
                                                            quantity=2),
        request_id=key), metadata=who.customer()))
    await assert_reused(stub.CreateSubscription(pb.CreateSubscriptionRequest(
        parent=customer.name, subscription=res.Subscription(plan="plans/enterprise-100",
                                                            quantity=1),
        request_id=key), metadata=who.operator()))
