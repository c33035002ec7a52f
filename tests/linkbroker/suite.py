"""A running suite for the link-broker service tests: orbit (seeded Gen1), provisioning and
one or two link brokers on loopback, over one database; and the provisioning steps that
give a customer an active terminal.

The brokers run on the suite's `Clock`, which stands still unless a test moves it: no 15 s
slot boundary, window end or expiry passes while a test runs, however loaded the machine.
Windows of requests come from the same clock (`Suite.window`, `Suite.link_request`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import timestamp_pb2
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb
from skybridge.linkbroker.v1 import linkbroker_pb2_grpc
from skybridge.provisioning.v1 import provisioning_pb2 as prov
from skybridge.provisioning.v1 import provisioning_pb2_grpc
from skybridge.provisioning.v1 import resources_pb2 as res

from services.linkbroker.capacity_model import DEFAULT_CAPACITY_MODEL
from services.linkbroker.settings import BrokerSettings
from services.linkbroker.slots import SLOT_SECONDS
from tests.conftest import bearer

_ids = itertools.count()


def rid() -> str:
    return f"req-{next(_ids)}-{datetime.now(UTC).timestamp()}"


def ts(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def window(minutes: float = 10, start_in_s: float = 0, *,
           now: float | None = None) -> common_pb2.TimeWindow:
    """A window starting ``start_in_s`` after ``now`` (Unix seconds; the wall clock when
    not given: the suite's brokers want `Suite.window`, on their clock)."""
    start = (datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)) \
        + timedelta(seconds=start_in_s)
    return common_pb2.TimeWindow(start_time=ts(start),
                                 end_time=ts(start + timedelta(minutes=minutes)))


class Clock:
    """The brokers' clock (Unix seconds): it stands still until a test moves it. It starts
    one second into the current slot of real time, so that a test knows where it stands."""

    def __init__(self, now: float | None = None) -> None:
        real = time.time() if now is None else now
        self.now = real - real % SLOT_SECONDS + 1.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


#: Small blocks keep each test's geometry to a few seconds of CPU.
TEST_BROKER = BrokerSettings(block_slots=60, sweep_seconds=0.5, feed_retry_seconds=0.2,
                             catalog_poll_seconds=3600)


@dataclass
class Suite:
    settings: object
    minter: object
    orbit: object = None
    provisioning: object = None
    brokers: list = field(default_factory=list)
    channels: list = field(default_factory=list)
    #: Every broker's clock (see the module).
    clock: Clock = field(default_factory=Clock)

    def window(self, minutes: float = 10, start_in_s: float = 0) -> common_pb2.TimeWindow:
        return window(minutes, start_in_s, now=self.clock())

    def link_request(self, customer, terminal, **kwargs) -> pb.RequestLinkRequest:
        return link_request(customer, terminal, now=self.clock(), **kwargs)

    def stub(self, i: int = 0):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.brokers[i].server.port}")
        self.channels.append(channel)
        return linkbroker_pb2_grpc.LinkBrokerServiceStub(channel)

    def prov_stub(self):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.provisioning.server.port}")
        self.channels.append(channel)
        return provisioning_pb2_grpc.ProvisioningServiceStub(channel)

    def customer(self, tenant="contoso", write=True):
        scopes = ("links.write",) if write else ("links.read",)
        return bearer(self.minter, "provisioning.write", *scopes, tenant=tenant,
                      subject=f"{tenant}-admin")

    def operator(self):
        return bearer(self.minter, "linkbroker.operator", "operator", tenant="skybridge",
                      subject="ops")

    async def add_broker(self, capacity=DEFAULT_CAPACITY_MODEL, broker=TEST_BROKER):
        from services.linkbroker.server import build

        kit = await build(self.settings, port=0, clock=self.clock,
                          orbit_target=f"127.0.0.1:{self.orbit.server.port}",
                          provisioning_target=f"127.0.0.1:{self.provisioning.server.port}",
                          broker_settings=broker, capacity=capacity)
        await kit.server.start()
        await kit.server.become_ready()
        self.brokers.append(kit)
        return kit

    async def close(self):
        for channel in self.channels:
            await channel.close()
        for kit in [*self.brokers, self.provisioning, self.orbit]:
            if kit is not None:
                await kit.server.drain(0)

    async def active_terminal(self, tenant="contoso", plan="plans/enterprise-100",
                              lat=47.23, lon=-119.85, serial=None):
        """A customer of ``tenant`` with an active subscription and an active terminal."""
        stub = self.prov_stub()
        who = self.customer(tenant)
        customer = (await stub.CreateCustomer(prov.CreateCustomerRequest(customer=res.Customer(
            display_name=f"{tenant} Ltd", sector=res.SECTOR_PRIVATE, country="US",
            contact_email=f"it@{tenant}.example.com"), request_id=rid()),
            metadata=who)).customer
        sub = (await stub.CreateSubscription(prov.CreateSubscriptionRequest(
            parent=customer.name, subscription=res.Subscription(plan=plan, quantity=5),
            request_id=rid()), metadata=who)).subscription
        sub = (await stub.ActivateSubscription(prov.ActivateSubscriptionRequest(
            name=sub.name, plan=plan, quantity=5, request_id=rid()), metadata=who)).subscription
        terminal = (await stub.CreateTerminal(prov.CreateTerminalRequest(
            parent=customer.name, terminal=res.Terminal(
                serial_number=serial or f"UT-{next(_ids):06d}", subscription=sub.name,
                location=common_pb2.GeodeticPoint(latitude_deg=lat, longitude_deg=lon)),
            request_id=rid()), metadata=who)).terminal
        for step in (prov.ProvisionTerminalRequest, prov.ActivateTerminalRequest):
            method = getattr(stub, step.DESCRIPTOR.name.removesuffix("Request"))
            terminal = (await method(step(name=terminal.name, request_id=rid()),
                                     metadata=who)).terminal
        return customer, sub, terminal


async def start_suite(settings, minter, *, provisioning_background=True) -> Suite:
    from services.orbit.server import build as build_orbit
    from services.provisioning.server import build as build_provisioning

    suite = Suite(settings, minter)
    suite.orbit = await build_orbit(replace(settings, seed=True), port=0, warm=False)
    await suite.orbit.server.start()
    await suite.orbit.server.become_ready()
    suite.provisioning = await build_provisioning(settings, port=0,
                                                  background=provisioning_background)
    await suite.provisioning.server.start()
    await suite.provisioning.server.become_ready()
    return suite


def link_request(customer, terminal, *, region="westus2", mbps=10.0, minutes=10,
                 request_id=None, now: float | None = None, **extra) -> pb.RequestLinkRequest:
    return pb.RequestLinkRequest(customer=customer.name, terminal=terminal.name, region=region,
                                 bandwidth_mbps=mbps, window=window(minutes, now=now),
                                 request_id=request_id or rid(), **extra)
