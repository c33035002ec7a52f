"""Leases under pressure, over gRPC with real orbit, provisioning and link-broker servers on
SQLite and PostgreSQL: exhaustion, pre-emption, two replicas, gateway drains, watching,
revocation across a restart, expiry and paging.

Capacities are made small with ``CapacityModel`` so that a few links fill a resource.
Waits poll a condition, or read a stream, until a generous deadline that only ends a hang; no
test asserts a duration. The brokers' clock stands still unless a test moves it (see
tests/linkbroker/suite.py), so no slot boundary or window end passes on its own.
"""

from __future__ import annotations

import asyncio
import base64
from collections import defaultdict
from datetime import datetime

import grpc
import pytest
import sqlalchemy as sa
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb
from skybridge.provisioning.v1 import provisioning_pb2 as prov

from services.linkbroker.capacity_model import CapacityModel
from services.linkbroker.plan import LinkPlan, bucket_of
from services.linkbroker.revocation import CURSOR
from services.linkbroker.slots import slot_start
from shared.status import details_of
from tests.linkbroker.suite import rid, start_suite
from tests.waiting import until

LINK = pb.Link
WATCH = pb.WatchLinkResponse
#: The seeded terminals' default spot (Quincy, Washington): every terminal of a test stands
#: here, so they are all served by the same satellite in every slot (the planner is
#: deterministic: same place, same slot, same exclusions -> same path).
HERE = (47.23, -119.85)


async def failure(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def fields_of(error) -> set[str]:
    return {v.field for v in details_of(error).violations}


@pytest.fixture
async def suite(settings, minter):
    """Orbit and provisioning running; each test adds its broker(s) with its capacities."""
    suite = await start_suite(settings, minter)
    yield suite
    await suite.close()


async def ledger(kit, *, first_slot: int = 0) -> dict[tuple[int, str], tuple[float, float]]:
    async with kit.engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT slot, resource, used_mbps, capacity_mbps FROM capacity_usage "
            "WHERE slot >= :first"), {"first": first_slot})).all()
    return {(int(s), r): (float(u), float(c)) for s, r, u, c in rows}


async def lease_rows(kit) -> list:
    async with kit.engine.connect() as conn:
        return (await conn.execute(sa.text(
            "SELECT id, state, bandwidth_mbps, plan FROM leases"))).all()


async def held(kit, first_slot: int = 0) -> dict:
    return {k: v for k, v in (await ledger(kit, first_slot=first_slot)).items() if v[0] > 1e-9}


async def assert_ledger_matches_leases(kit) -> None:
    """Every ledger row within its capacity, and every future row (the ledger counts per
    bucket of LEDGER_BUCKET_SLOTS slots: a lease holds its bandwidth on (bucket, resource)
    when its stored plan uses the resource in any slot of the bucket) holding exactly the
    bandwidth of the ACTIVE leases whose stored plan uses that resource in that bucket."""
    now = kit.broker.now_slot()
    everything = await ledger(kit)
    for key, (used, capacity) in everything.items():
        assert used <= capacity + 1e-6, f"{key} oversubscribed: {used} > {capacity}"
    expected: dict[tuple[int, str], float] = defaultdict(float)
    for _id, state, bw, blob in await lease_rows(kit):
        if state != "ACTIVE":
            continue
        for key in {(bucket_of(p.slot), r) for p in LinkPlan.decode(blob).paths
                    for r in p.resources()}:
            expected[key] += bw
    # Buckets that start after the current slot only: past rows are history the sweeper
    # drops.
    actual = {k: v[0] for k, v in everything.items() if k[0] > now and v[0] > 1e-9}
    wanted = {k: v for k, v in expected.items() if k[0] > now}
    assert actual.keys() == wanted.keys()
    for key, used in actual.items():
        assert used == pytest.approx(wanted[key]), key


# --- 1. exhaustion ------------------------------------------------------------------------


async def test_bandwidth_no_user_beam_carries_is_resource_exhausted_and_holds_nothing(suite):
    kit = await suite.add_broker(capacity=CapacityModel(user_beam_capacity_gbps=0.05))
    stub = suite.stub()
    customer, _, terminal = await suite.active_terminal()  # enterprise-100: 80 Mbps allowed
    request = suite.link_request(customer, terminal, mbps=80.0, minutes=3)
    for _attempt in range(2):  # a retry with the same request_id is refused the same way
        error = await failure(stub.RequestLink(request, metadata=suite.customer()))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = details_of(error)
        assert info.reason == "CAPACITY_EXHAUSTED"
        assert {"slot", "slot_start", "resource"} <= info.metadata.keys()
        slot = int(info.metadata["slot"])
        assert datetime.fromisoformat(info.metadata["slot_start"]) == slot_start(slot)
        assert info.metadata["resource"].startswith("u:")  # 50 Mbit/s user beams everywhere
        # The slot named is one of the window's (the first where the path used it).
        assert request.window.start_time.seconds // 15 <= slot
        assert slot < -(-request.window.end_time.seconds // 15)
    assert await held(kit) == {}
    assert await lease_rows(kit) == []
    listed = await stub.ListLinks(pb.ListLinksRequest(), metadata=suite.customer())
    assert not listed.links
    # The same terminal still gets what a beam carries.
    fits = await stub.RequestLink(suite.link_request(customer, terminal, mbps=40.0, minutes=3),
                                  metadata=suite.customer())
    assert fits.link.state == LINK.STATE_ACTIVE
    await assert_ledger_matches_leases(kit)


# --- 2. pre-emption -----------------------------------------------------------------------


async def next_state_change(call) -> pb.WatchLinkResponse:
    """The next message of a WatchLink stream, which must be a STATE_CHANGED one (the clock
    stands still: no handover comes in between)."""
    message = await asyncio.wait_for(call.read(), 60)
    assert message is not grpc.aio.EOF, "the watch ended before a state change"
    assert message.kind == WATCH.KIND_STATE_CHANGED, message
    return message


async def test_government_request_preempts_best_effort_never_enterprise(suite):
    # User beams of 100 Mbit/s; every terminal stands at HERE, so the best-effort link and
    # the government link are served by the same satellite in every shared slot. A
    # government request that finds a resource full pre-empts best-effort links on it in the
    # same transaction *before* any re-planning around the resource, so the collision cannot
    # be routed away: the outcome is deterministic.
    kit = await suite.add_broker(capacity=CapacityModel(user_beam_capacity_gbps=0.1))
    stub = suite.stub()
    who = suite.customer()
    be_customer, _, be_terminal = await suite.active_terminal(plan="plans/best-effort-50")
    gov_customer, _, gov_terminal = await suite.active_terminal(plan="plans/gov-priority-200")
    ent_customer, _, ent_terminal = await suite.active_terminal(plan="plans/enterprise-100")

    best_effort = (await stub.RequestLink(suite.link_request(be_customer, be_terminal, mbps=50.0,
                                                       minutes=3), metadata=who)).link
    assert best_effort.priority == LINK.PRIORITY_BEST_EFFORT
    watch = stub.WatchLink(pb.WatchLinkRequest(name=best_effort.name), metadata=who)
    first = await watch.read()
    assert first.kind == WATCH.KIND_CURRENT and first.state == LINK.STATE_ACTIVE

    gov = (await stub.RequestLink(suite.link_request(gov_customer, gov_terminal, mbps=100.0,
                                               minutes=3, include_slots=True),
                                  metadata=who)).link
    assert gov.state == LINK.STATE_ACTIVE and gov.priority == LINK.PRIORITY_GOVERNMENT
    victim = (await stub.GetLink(pb.GetLinkRequest(name=best_effort.name), metadata=who)).link
    assert victim.state == LINK.STATE_PREEMPTED
    assert gov.name in victim.state_reason
    change = await next_state_change(watch)
    assert change.state == LINK.STATE_PREEMPTED and gov.name in change.reason
    assert await asyncio.wait_for(watch.read(), 60) is grpc.aio.EOF
    # The government link holds its beam alone: 100 of 100 Mbit/s.
    rows = await ledger(kit)
    for s in gov.slots:
        bucket = bucket_of(s.start_time.seconds // 15)
        if bucket > kit.broker.now_slot():
            assert rows[(bucket, f"u:{s.serving_satellite}")][0] == pytest.approx(100.0)
    await assert_ledger_matches_leases(kit)

    # An enterprise link is never pre-empted: with the government link gone, an enterprise
    # link takes 50 of 100 Mbit/s of the same beams, and a second government request for
    # 100 either routes around it or is refused.
    await stub.ReleaseLink(pb.ReleaseLinkRequest(name=gov.name, request_id=rid()),
                           metadata=who)
    enterprise = (await stub.RequestLink(suite.link_request(ent_customer, ent_terminal, mbps=50.0,
                                                      minutes=3), metadata=who)).link
    try:
        again = (await stub.RequestLink(suite.link_request(gov_customer, gov_terminal, mbps=100.0,
                                                     minutes=3), metadata=who)).link
        assert again.state == LINK.STATE_ACTIVE
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        assert details_of(error).reason == "CAPACITY_EXHAUSTED"
    kept = (await stub.GetLink(pb.GetLinkRequest(name=enterprise.name), metadata=who)).link
    assert kept.state == LINK.STATE_ACTIVE and not kept.state_reason
    await assert_ledger_matches_leases(kit)


# --- 3. two replicas ----------------------------------------------------------------------


async def test_two_replicas_never_oversubscribe(suite, backend):
    if backend == "sqlite":
        pytest.skip("two replicas share one database only on PostgreSQL (SQLite is a "
                    "single-host file: one writer at a time by construction)")
    capacity = CapacityModel(user_beam_capacity_gbps=0.2)  # 200 Mbit/s beams
    first = await suite.add_broker(capacity=capacity)
    await suite.add_broker(capacity=capacity)
    stubs = [suite.stub(0), suite.stub(1)]
    who = suite.customer()
    terminals = [await suite.active_terminal() for _ in range(3)]
    # 30 x 25 Mbit/s from one spot over 3 minutes (12 slots): 8 fill the serving beam, and a
    # request re-plans around at most 4 full (slot, resource) pairs, so not all fit.
    requests = [suite.link_request(c, t, mbps=25.0, minutes=3) for c, _, t in terminals
                for _ in range(10)]

    async def call(i, request):
        try:
            return (await stubs[i % 2].RequestLink(request, metadata=who)).link
        except grpc.aio.AioRpcError as error:
            return error

    outcomes = await asyncio.gather(*(call(i, r) for i, r in enumerate(requests)))
    links = [o for o in outcomes if isinstance(o, pb.Link)]
    errors = [o for o in outcomes if not isinstance(o, pb.Link)]
    assert [e.code() for e in errors if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED] == []
    assert links and errors
    assert all(link.state == LINK.STATE_ACTIVE for link in links)
    assert len({link.name for link in links}) == len(links)
    stored = await lease_rows(first)
    assert sorted(r.id for r in stored) == sorted(x.name.removeprefix("links/") for x in links)
    await assert_ledger_matches_leases(first)


# --- 4. gateways and WatchLink ---------------------------------------------------------------


async def test_watch_drain_restore_and_release(suite):
    kit = await suite.add_broker()
    stub = suite.stub()
    who, ops = suite.customer(), suite.operator()
    customer, _, terminal = await suite.active_terminal()
    link = (await stub.RequestLink(suite.link_request(customer, terminal, mbps=20.0, minutes=4,
                                                include_slots=True), metadata=who)).link
    watch = stub.WatchLink(pb.WatchLinkRequest(name=link.name), metadata=who)
    current = await watch.read()
    assert current.kind == WATCH.KIND_CURRENT and current.state == LINK.STATE_ACTIVE
    now = kit.broker.now_slot()
    by_slot = {s.start_time.seconds // 15: s for s in link.slots}
    assert current.slot.routed
    assert current.slot.start_time.seconds // 15 == now
    assert current.slot == by_slot[current.slot.start_time.seconds // 15]
    # Drain the gateway the link uses a few slots ahead (a re-plan starts at the next slot).
    ahead = [s for slot, s in sorted(by_slot.items()) if slot >= now + 2]
    drained = ahead[0].gateway
    answer = await stub.DrainGateway(pb.DrainGatewayRequest(name=drained, request_id=rid()),
                                     metadata=ops)
    after = kit.broker.now_slot()
    assert answer.gateway.state == pb.Gateway.STATE_DRAINED
    assert answer.replanned_links + answer.degraded_links == 1
    # The clock stands still: no handover comes before the re-plan's message.
    message = await asyncio.wait_for(watch.read(), 60)
    assert message is not grpc.aio.EOF
    assert message.kind in (WATCH.KIND_REPLANNED, WATCH.KIND_STATE_CHANGED), message
    if message.kind == WATCH.KIND_REPLANNED:
        assert answer.replanned_links == 1
        assert message.state == LINK.STATE_ACTIVE and message.slot.routed
        assert message.slot.gateway != drained
        fresh = (await stub.GetLink(pb.GetLinkRequest(name=link.name, include_slots=True),
                                    metadata=who)).link
        assert fresh.plan_revision == link.plan_revision + 1
        later = [s for s in fresh.slots if s.start_time.seconds // 15 > after]
        assert later and all(s.routed and s.gateway != drained for s in later)
        rows = await held(kit, first_slot=after + 1)
        assert not [k for k in rows if k[1] == "g:" + drained.removeprefix("gateways/")]
        await assert_ledger_matches_leases(kit)
    else:
        assert message.state == LINK.STATE_DEGRADED and answer.degraded_links == 1
    # Draining again changes nothing; restoring brings the gateway back.
    again = await stub.DrainGateway(pb.DrainGatewayRequest(name=drained, request_id=rid()),
                                    metadata=ops)
    assert again.replanned_links == again.degraded_links == 0
    restored = await stub.RestoreGateway(pb.RestoreGatewayRequest(name=drained,
                                                                  request_id=rid()),
                                         metadata=ops)
    assert restored.gateway.state == pb.Gateway.STATE_ACTIVE
    got = await stub.GetGateway(pb.GetGatewayRequest(name=drained), metadata=who)
    assert got.gateway.state == pb.Gateway.STATE_ACTIVE
    # Release: the watcher is told, and its stream ends.
    await stub.ReleaseLink(pb.ReleaseLinkRequest(name=link.name, request_id=rid()),
                           metadata=who)
    change = await next_state_change(watch)
    assert change.state == LINK.STATE_RELEASED
    assert await asyncio.wait_for(watch.read(), 60) is grpc.aio.EOF
    assert await held(kit, first_slot=kit.broker.now_slot()) == {}


async def test_gateway_bad_input_unknown_and_permissions(suite):
    await suite.add_broker()
    stub = suite.stub()
    ops = suite.operator()
    bad = pb.CreateGatewayRequest(gateway_id="9-Bad!", gateway=pb.Gateway(
        antennas=0, region="atlantis"), request_id="")
    error = await failure(stub.CreateGateway(bad, metadata=ops))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(error) == {"gateway_id", "gateway.location", "gateway.antennas",
                                "gateway.region", "request_id"}
    where = common_pb2.GeodeticPoint(latitude_deg=-91, longitude_deg=181, altitude_m=20_000)
    bad = pb.CreateGatewayRequest(gateway_id="gw-test", gateway=pb.Gateway(
        location=where, antennas=65, region="westus2"), request_id=rid())
    error = await failure(stub.CreateGateway(bad, metadata=ops))
    assert fields_of(error) == {"gateway.location.latitude_deg",
                                "gateway.location.longitude_deg",
                                "gateway.location.altitude_m", "gateway.antennas"}
    good = pb.CreateGatewayRequest(gateway_id="gw-test", gateway=pb.Gateway(
        location=common_pb2.GeodeticPoint(latitude_deg=47.0, longitude_deg=-120.0),
        antennas=2, region="regions/westus2"), request_id=rid())
    made = (await stub.CreateGateway(good, metadata=ops)).gateway
    assert made.name == "gateways/gw-test" and made.state == pb.Gateway.STATE_ACTIVE
    assert made.region == "regions/westus2" and made.antennas == 2
    replay = (await stub.CreateGateway(good, metadata=ops)).gateway
    assert replay.name == made.name
    good.request_id = rid()
    twin = await failure(stub.CreateGateway(good, metadata=ops))
    assert twin.code() == grpc.StatusCode.ALREADY_EXISTS
    for method, request in (
            (stub.DrainGateway, pb.DrainGatewayRequest(name="gateways/gw-nope",
                                                       request_id=rid())),
            (stub.RestoreGateway, pb.RestoreGatewayRequest(name="gateways/gw-nope",
                                                           request_id=rid())),
            (stub.GetGateway, pb.GetGatewayRequest(name="gateways/gw-nope"))):
        missing = await failure(method(request, metadata=ops))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
        assert details_of(missing).reason == "GATEWAY_NOT_FOUND"
        assert fields_of(missing) == {"name"}
    malformed = await failure(stub.DrainGateway(pb.DrainGatewayRequest(
        name="gw-test", request_id=rid()), metadata=ops))
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(malformed) == {"name"}
    no_key = await failure(stub.DrainGateway(pb.DrainGatewayRequest(name=made.name),
                                             metadata=ops))
    assert fields_of(no_key) == {"request_id"}
    for who in (suite.customer(), suite.customer(write=False)):
        denied = await failure(stub.DrainGateway(pb.DrainGatewayRequest(
            name=made.name, request_id=rid()), metadata=who))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        denied = await failure(stub.CreateGateway(pb.CreateGatewayRequest(
            gateway_id="gw-mine", gateway=good.gateway, request_id=rid()), metadata=who))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    still = await stub.GetGateway(pb.GetGatewayRequest(name=made.name), metadata=ops)
    assert still.gateway.state == pb.Gateway.STATE_ACTIVE


# --- 5. revocation across a restart ----------------------------------------------------------


def cursor_position(cursor: str) -> int:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    assert raw.startswith("ev:")
    return int(raw[3:])


async def stored_cursor(kit) -> str:
    return await kit.broker.store.cursor(CURSOR)


async def link_state(stub, name, who):
    return (await stub.GetLink(pb.GetLinkRequest(name=name), metadata=who)).link.state


async def test_revocation_while_the_broker_is_down_applies_after_restart(suite):
    first = await suite.add_broker()
    stub = suite.stub(0)
    who = suite.customer()
    prov_stub = suite.prov_stub()
    c1, sub1, t1 = await suite.active_terminal()
    c2, sub2, t2 = await suite.active_terminal()
    c3, sub3, t3 = await suite.active_terminal()
    one = (await stub.RequestLink(suite.link_request(c1, t1), metadata=who)).link
    two = (await stub.RequestLink(suite.link_request(c2, t2), metadata=who)).link
    three = (await stub.RequestLink(suite.link_request(c3, t3), metadata=who)).link
    # While it runs: a suspension is applied and the cursor stored.
    await prov_stub.SuspendSubscription(prov.SuspendSubscriptionRequest(
        name=sub1.name, request_id=rid()), metadata=suite.operator())

    async def one_suspended():
        return await link_state(stub, one.name, who) == LINK.STATE_SUSPENDED

    assert await until(one_suspended)
    before = await until(lambda: stored_cursor(first))
    assert before
    # Down: a suspension and a cancellation happen meanwhile.
    await first.server.drain(0)
    await prov_stub.SuspendSubscription(prov.SuspendSubscriptionRequest(
        name=sub2.name, request_id=rid()), metadata=suite.operator())
    await prov_stub.CancelSubscription(prov.CancelSubscriptionRequest(
        name=sub3.name, request_id=rid()), metadata=who)
    # Back: both are applied from the stored cursor.
    second = await suite.add_broker()
    stub = suite.stub(1)

    async def caught_up():
        return (await link_state(stub, two.name, who) == LINK.STATE_SUSPENDED
                and await link_state(stub, three.name, who) == LINK.STATE_RELEASED)

    assert await until(caught_up)
    assert await link_state(stub, one.name, who) == LINK.STATE_SUSPENDED

    async def advanced():
        return cursor_position(await stored_cursor(second)) > cursor_position(before)

    assert await until(advanced)
    assert await held(second, first_slot=second.broker.now_slot()) == {}


async def test_feed_is_published_while_another_deployments_relay_holds_its_lock(
        suite, settings, backend):
    """PostgreSQL advisory locks belong to the whole database: the outbox relay's lock must
    be this deployment's, or a busy relay of another schema (another test, a benchmark on
    the same server) keeps the events of this one unpublished, and links stay ACTIVE."""
    if backend == "sqlite":
        pytest.skip("advisory locks are PostgreSQL's; SQLite has one file per deployment")
    import psycopg

    from services.provisioning.store import OUTBOX_LOCK_SQL
    from tests.conftest import PG_URL

    await suite.add_broker()
    stub = suite.stub()
    who = suite.customer()
    customer, sub, terminal = await suite.active_terminal()
    link = (await stub.RequestLink(suite.link_request(customer, terminal), metadata=who)).link
    other = f"{settings.db_schema_prefix}elsewhere_provisioning"
    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{other}"')
        await conn.execute(f'SET search_path TO "{other}"')
        async with conn.transaction():  # the other relay, mid-publish
            assert (await (await conn.execute(str(OUTBOX_LOCK_SQL))).fetchone())[0]
            await suite.prov_stub().SuspendSubscription(prov.SuspendSubscriptionRequest(
                name=sub.name, request_id=rid()), metadata=suite.operator())

            async def suspended():
                return await link_state(stub, link.name, who) == LINK.STATE_SUSPENDED

            assert await until(suspended)


# --- 6. expiry ----------------------------------------------------------------------------


async def test_link_expires_after_its_window_and_frees_its_capacity(suite):
    kit = await suite.add_broker()
    stub = suite.stub()
    who = suite.customer()
    customer, _, terminal = await suite.active_terminal()
    short = suite.link_request(customer, terminal, mbps=30.0)
    short.window.CopyFrom(suite.window(minutes=20 / 60))
    link = (await stub.RequestLink(short, metadata=who)).link
    longer = (await stub.RequestLink(suite.link_request(customer, terminal, mbps=10.0, minutes=4),
                                     metadata=who)).link
    end_slot = link.window.end_time.seconds // 15
    assert end_slot <= kit.broker.now_slot() + 3
    assert await link_state(stub, link.name, who) == LINK.STATE_ACTIVE
    # The window ends when the brokers' clock says so; the sweeper (every 0.5 s) expires it.
    suite.clock.now = slot_start(end_slot).timestamp() + 1.0

    async def expired():
        return await link_state(stub, link.name, who) == LINK.STATE_EXPIRED

    assert await until(expired)
    assert kit.broker.now_slot() == end_slot
    got = (await stub.GetLink(pb.GetLinkRequest(name=link.name), metadata=who)).link
    assert got.state_reason
    # Nothing of it is held from now on; the longer link is untouched and alone.
    assert await link_state(stub, longer.name, who) == LINK.STATE_ACTIVE
    rows = await held(kit, first_slot=kit.broker.now_slot())
    assert rows and all(used == pytest.approx(10.0) for used, _ in rows.values())
    await assert_ledger_matches_leases(kit)
    watch = stub.WatchLink(pb.WatchLinkRequest(name=link.name), metadata=who)
    told = await asyncio.wait_for(watch.read(), 60)
    assert told.kind == WATCH.KIND_STATE_CHANGED and told.state == LINK.STATE_EXPIRED
    assert await asyncio.wait_for(watch.read(), 60) is grpc.aio.EOF


# --- 7. paging ----------------------------------------------------------------------------


async def test_list_links_pages_and_binds_tokens_to_the_filter(suite):
    await suite.add_broker()
    stub = suite.stub()
    who = suite.customer()
    customer, _, terminal = await suite.active_terminal()
    other, _, other_terminal = await suite.active_terminal()

    async def make(c, t) -> str:
        # Links are listed newest first: each is made a second after the last on the
        # brokers' clock (which stands still otherwise), all in the same slot.
        suite.clock.advance(1.0)
        return (await stub.RequestLink(suite.link_request(c, t, mbps=5.0, minutes=3),
                                       metadata=who)).link.name

    made = [await make(customer, terminal) for _ in range(5)]
    mine = set(made)
    made.append(await make(other, other_terminal))
    pages, tokens, token = [], [], ""
    while True:
        page = await stub.ListLinks(pb.ListLinksRequest(customer=customer.name, page_size=2,
                                                        page_token=token), metadata=who)
        pages.append([x.name for x in page.links])
        token = page.next_page_token
        if not token:
            break
        tokens.append(token)
    first_token = tokens[0]
    assert len(set(tokens)) == 2
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = [name for p in pages for name in p]
    assert set(listed) == mine and len(listed) == 5
    assert listed == [n for n in reversed(made) if n in mine]  # newest first
    everything = await stub.ListLinks(pb.ListLinksRequest(page_size=4), metadata=who)
    assert len(everything.links) == 4 and everything.next_page_token
    rest = await stub.ListLinks(pb.ListLinksRequest(
        page_size=4, page_token=everything.next_page_token), metadata=who)
    assert [x.name for x in [*everything.links, *rest.links]] == list(reversed(made))
    assert not rest.next_page_token
    for request in (pb.ListLinksRequest(customer=other.name, page_size=2,
                                        page_token=first_token),
                    pb.ListLinksRequest(page_size=2, page_token=first_token),
                    pb.ListLinksRequest(customer=customer.name, page_token="garbage")):
        error = await failure(stub.ListLinks(request, metadata=who))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fields_of(error) == {"page_token"}
    negative = await failure(stub.ListLinks(pb.ListLinksRequest(page_size=-1), metadata=who))
    assert fields_of(negative) == {"page_size"}
    theirs = await stub.ListLinks(pb.ListLinksRequest(customer=customer.name),
                                  metadata=suite.customer("fabrikam"))
    assert not theirs.links
