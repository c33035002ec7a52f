"""Fixtures for the provisioning tests: a real server on loopback over SQLite or PostgreSQL,
a clock the test can move, and callers with the documented scopes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import provisioning_pb2_grpc
from skybridge.provisioning.v1 import resources_pb2 as res

from services.provisioning.server import build
from tests.conftest import bearer


class Clock:
    """A clock that tests move forward."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


async def start(settings, **kwargs):
    kit = await build(settings, port=0, **kwargs)
    await kit.server.start()
    await kit.server.become_ready()
    return kit


_ids = itertools.count()


def rid() -> str:
    return f"req-{next(_ids)}-{datetime.now(UTC).timestamp()}"


class Callers:
    """Call metadata for each kind of caller."""

    def __init__(self, minter):
        self.minter = minter

    def operator(self):
        return bearer(self.minter, "operator", tenant="skybridge", subject="ops")

    def partner(self, name="microsoft"):
        return bearer(self.minter, "partner", tenant=name, subject=f"{name}-seller")

    def customer(self, tenant="contoso", *scopes):
        return bearer(self.minter, *(scopes or ("provisioning.write",)), tenant=tenant,
                      subject=f"{tenant}-admin")

    def broker(self):
        return bearer(self.minter, "provisioning.entitlements", "service", tenant="skybridge",
                      subject="service:linkbroker")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def prov(settings, clock):
    kit = await start(settings, clock=clock, background=False)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    yield kit, provisioning_pb2_grpc.ProvisioningServiceStub(channel)
    await channel.close()
    await kit.server.drain(0)


@pytest.fixture
def who(minter) -> Callers:
    return Callers(minter)


async def failure(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def new_customer(stub, who, tenant="contoso", **fields) -> res.Customer:
    customer = res.Customer(display_name=f"{tenant} Ltd", sector=res.SECTOR_PRIVATE,
                            country="US", contact_email=f"it@{tenant}.example.com", **fields)
    answer = await stub.CreateCustomer(pb.CreateCustomerRequest(customer=customer,
                                                                request_id=rid()),
                                       metadata=who.customer(tenant))
    return answer.customer


async def new_subscription(stub, who, customer: str, tenant="contoso", quantity=2,
                           plan="plans/enterprise-100", activate=True) -> res.Subscription:
    answer = await stub.CreateSubscription(pb.CreateSubscriptionRequest(
        parent=customer, subscription=res.Subscription(plan=plan, quantity=quantity),
        request_id=rid()), metadata=who.customer(tenant))
    sub = answer.subscription
    if activate:
        sub = (await stub.ActivateSubscription(pb.ActivateSubscriptionRequest(
            name=sub.name, plan=plan, quantity=quantity, request_id=rid()),
            metadata=who.customer(tenant))).subscription
    return sub


async def new_terminal(stub, who, customer: str, subscription: str, serial: str,
                       tenant="contoso") -> res.Terminal:
    from skybridge.common.v1 import common_pb2

    answer = await stub.CreateTerminal(pb.CreateTerminalRequest(
        parent=customer, terminal=res.Terminal(
            serial_number=serial, subscription=subscription,
            location=common_pb2.GeodeticPoint(latitude_deg=47.6, longitude_deg=-122.3)),
        request_id=rid()), metadata=who.customer(tenant))
    return answer.terminal
