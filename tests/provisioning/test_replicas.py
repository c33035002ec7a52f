"""Two replicas of the service on one PostgreSQL database keep every invariant."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from skybridge.common.v1 import common_pb2
from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import provisioning_pb2_grpc
from skybridge.provisioning.v1 import resources_pb2 as res
from sqlalchemy import select

from services.provisioning import domain
from services.provisioning.app import operations
from services.provisioning.store.tables import AuditRow, EventRow, TerminalRow
from tests.provisioning.conftest import new_customer, new_subscription, rid, start


async def test_two_replicas_on_one_database(settings, backend, who, clock):
    if backend == "sqlite":
        pytest.skip("replicas share PostgreSQL; SQLite is the single-process embedded default")
    kits = await asyncio.gather(start(settings, clock=clock), start(settings, clock=clock))
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{k.server.port}") for k in kits]
    stubs = [provisioning_pb2_grpc.ProvisioningServiceStub(c) for c in channels]
    try:
        partners = await stubs[1].ListPartners(pb.ListPartnersRequest(), metadata=who.customer())
        assert len(partners.partners) == 2  # both seeded, once
        customer = await new_customer(stubs[0], who)
        sub = await new_subscription(stubs[0], who, customer.name, quantity=5)

        # 24 registrations spread over both replicas: exactly the quantity succeed.
        async def register(i):
            request = pb.CreateTerminalRequest(parent=customer.name, terminal=res.Terminal(
                serial_number=f"UT-R-{i:04d}", subscription=sub.name,
                location=common_pb2.GeodeticPoint(latitude_deg=1, longitude_deg=2)),
                request_id=rid())
            try:
                return (await stubs[i % 2].CreateTerminal(request,
                                                          metadata=who.customer())).terminal
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return None

        made = [t for t in await asyncio.gather(*(register(i) for i in range(24))) if t]
        assert len(made) == 5
        # One request_id sent 32 times to both replicas: one effect.
        request = pb.DecommissionTerminalRequest(name=made[0].name, request_id="decom-once")
        answers = await asyncio.gather(*(stubs[i % 2].DecommissionTerminal(
            request, metadata=who.customer()) for i in range(32)))
        assert len({a.terminal.etag for a in answers}) == 1
        # Suspend and reinstate race on both replicas; each either applies or is refused.
        async def flip(i):
            call = (stubs[i % 2].SuspendSubscription(pb.SuspendSubscriptionRequest(
                name=sub.name, request_id=rid()), metadata=who.operator()) if i % 3 else
                stubs[i % 2].ReinstateSubscription(pb.ReinstateSubscriptionRequest(
                    name=sub.name, request_id=rid()), metadata=who.operator()))
            try:
                await call
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

        await asyncio.gather(*(flip(i) for i in range(20)))
        await flip(0)  # reinstate (or find it subscribed already)
        # A suspension committed through one replica shows in the other's very next check.
        live = made[1]
        for verb in ("Provision", "Activate"):
            await getattr(stubs[0], f"{verb}Terminal")(getattr(pb, f"{verb}TerminalRequest")(
                name=live.name, request_id=rid()), metadata=who.customer())
        check = pb.CheckEntitlementRequest(customer=customer.name, terminal=live.name,
                                           bandwidth_mbps=10, target_region="westeurope")
        assert (await stubs[0].CheckEntitlement(check, metadata=who.broker())).allowed
        await stubs[1].SuspendSubscription(pb.SuspendSubscriptionRequest(
            name=sub.name, request_id=rid()), metadata=who.operator())
        answer = await stubs[0].CheckEntitlement(check, metadata=who.broker())
        assert (answer.allowed, answer.reason) == (
            False, pb.EntitlementReason.ENTITLEMENT_REASON_SUBSCRIPTION_NOT_ACTIVE)
        await stubs[0].ReinstateSubscription(pb.ReinstateSubscriptionRequest(
            name=sub.name, request_id=rid()), metadata=who.operator())
        assert (await stubs[1].CheckEntitlement(check, metadata=who.broker())).allowed
        # Quantity changes queued through either replica; the workers of both apply them.
        op = (await stubs[1].ChangeSubscriptionQuantity(pb.ChangeSubscriptionQuantityRequest(
            name=sub.name, quantity=6, request_id=rid()), metadata=who.customer()))
        await asyncio.gather(*(operations.run_pending(k.uow) for k in kits))
        done = (await stubs[0].GetSubscriptionOperation(pb.GetSubscriptionOperationRequest(
            name=op.operation.name), metadata=who.customer())).operation
        assert done.done

        store = kits[0].store
        async with store.sessions() as session:
            live = len([t for t in (await session.execute(select(TerminalRow))).scalars()
                        if t.state != domain.DECOMMISSIONED])
            audits = list((await session.execute(select(AuditRow).where(
                AuditRow.resource == sub.name).order_by(AuditRow.id))).scalars())
            seqs = list((await session.execute(select(EventRow.seq).order_by(EventRow.seq))
                         ).scalars())
        current = (await stubs[1].GetSubscription(pb.GetSubscriptionRequest(name=sub.name),
                                                  metadata=who.customer())).subscription
        assert current.terminal_count == live == 4
        previous = None
        for record in audits:  # every change an allowed edge, in one continuous chain
            after = json.loads(record.after)["state"]
            if record.before:
                before = json.loads(record.before)["state"]
                assert before == after or (before, after) in domain.SUBSCRIPTION_EDGES
                assert before == previous
            previous = after
        assert previous == res.Subscription.State.Name(current.state).removeprefix("STATE_")
        # The feed read through replica 0 holds every event, whichever replica wrote it.
        feed = []
        stream = stubs[0].WatchEvents(pb.WatchEventsRequest(), metadata=who.operator())
        async for answer in stream:
            feed.append(answer.event)
            if len(feed) == len(seqs):
                break
        stream.cancel()
        assert len({e.cursor for e in feed}) == len(seqs)
    finally:
        for channel in channels:
            await channel.close()
        await asyncio.gather(*(k.server.drain(0) for k in kits))


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
async def test_a_feed_is_woken_by_another_replicas_commit(settings, who, clock, monkeypatch):
    """A WatchEvents stream on one replica gets an event another replica committed by
    PostgreSQL NOTIFY, not by polling: the poll is made an hour long here."""
    from services.provisioning.store import Store

    monkeypatch.setattr(Store, "event_poll_seconds", property(lambda self: 3600.0))
    kits = await asyncio.gather(start(settings, clock=clock), start(settings, clock=clock))
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{k.server.port}") for k in kits]
    stubs = [provisioning_pb2_grpc.ProvisioningServiceStub(c) for c in channels]
    try:
        for kit in kits:
            await asyncio.wait_for(kit.store.wakeup.listening.wait(), 30)
        feed = stubs[0].WatchEvents(pb.WatchEventsRequest(), metadata=who.operator())
        customer = await new_customer(stubs[1], who)
        # Each subscription is made on replica 1 while replica 0's feed is asleep (it has
        # read everything before): only the notification can wake it within the hour.
        for quantity in (1, 2):
            sub = await new_subscription(stubs[1], who, customer.name, quantity=quantity)
            while True:
                answer = await asyncio.wait_for(feed.read(), 30)
                assert answer is not grpc.aio.EOF
                if answer.event.type == res.Event.TYPE_SUBSCRIPTION_CREATED and \
                        answer.event.resource == sub.name:
                    break
        feed.cancel()
    finally:
        for channel in channels:
            await channel.close()
        await asyncio.gather(*(k.server.drain(0) for k in kits))
