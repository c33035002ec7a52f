"""The link broker over gRPC with real orbit and provisioning servers and a real database."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest
import sqlalchemy as sa
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb
from skybridge.provisioning.v1 import provisioning_pb2 as prov

from services.linkbroker.latency import physical_floor_rtt_ms
from services.linkbroker.plan import bucket_of
from shared.status import details_of
from tests.linkbroker.suite import rid
from tests.waiting import until

LINK = pb.Link


async def failure(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def fields_of(error) -> set[str]:
    return {v.field for v in details_of(error).violations}


async def usage_rows(kit, *, from_now: bool = True) -> list[tuple]:
    """Ledger rows holding capacity (from the current slot on, unless ``from_now`` is
    False: a slot that has passed keeps what it held)."""
    first = kit.broker.now_slot() if from_now else 0
    async with kit.engine.connect() as conn:
        return (await conn.execute(sa.text(
            "SELECT slot, resource, used_mbps, capacity_mbps FROM capacity_usage "
            "WHERE used_mbps > 0 AND slot >= :first ORDER BY slot, resource"),
            {"first": first})).all()


async def test_estimate_path_is_physical_and_within_public_starlink_round_trips(suite):
    stub = suite.stub()
    # Quincy, Washington (next to the westus2 datacentres) to westus2; Dallas to southcentralus.
    for lat, lon, region in ((47.23, -119.85, "westus2"), (32.78, -96.80, "southcentralus")):
        answer = await stub.EstimatePath(pb.EstimatePathRequest(
            location=common_pb2.GeodeticPoint(latitude_deg=lat, longitude_deg=lon),
            region=region, window=suite.window(minutes=5)), metadata=suite.customer())
        assert len(answer.slots) >= 20
        assert answer.routed_fraction == 1.0
        for slot in answer.slots:
            assert slot.routed and slot.elevation_deg >= 25.0 - 1e-6
            assert slot.hops[0] == slot.serving_satellite
            assert slot.laser_links == len(slot.hops) - 1
            assert slot.round_trip_ms >= physical_floor_rtt_ms(550.0)
            assert 20.0 <= slot.round_trip_ms <= 50.0
            assert slot.gateway.startswith("gateways/gw-")
        starts = [s.start_time.seconds for s in answer.slots]
        assert all(b - a == 15 for a, b in zip(starts, starts[1:], strict=False))
        assert starts[0] % 15 == 0
        assert 20.0 <= answer.median_round_trip_ms <= 50.0


async def test_request_get_list_release_and_capacity(suite):
    stub = suite.stub()
    customer, sub, terminal = await suite.active_terminal()
    request = suite.link_request(customer, terminal, mbps=25.0, include_slots=True)
    link = (await stub.RequestLink(request, metadata=suite.customer())).link
    assert link.state == LINK.STATE_ACTIVE and link.priority == LINK.PRIORITY_ENTERPRISE
    assert link.subscription == sub.name and link.region == "regions/westus2"
    assert len(link.slots) >= 40 and all(s.routed for s in link.slots)
    assert 20.0 <= link.median_round_trip_ms <= 50.0
    # Every ledger minute holds 25 Mbit/s on each resource its slots' paths use, nothing else.
    rows = await usage_rows(suite.brokers[0], from_now=False)
    expected = set()
    for s in link.slots:
        slot = bucket_of(s.start_time.seconds // 15)
        expected |= {(slot, f"u:{s.serving_satellite}"), (slot, f"f:{s.hops[-1]}"),
                     (slot, "g:" + s.gateway.removeprefix("gateways/"))}
        expected |= {(slot, f"i:{min(a, b)}-{max(a, b)}") for a, b in zip(s.hops, s.hops[1:],
                                                                          strict=False)}
    assert {(r[0], r[1]) for r in rows} == expected
    assert all(r[2] == pytest.approx(25.0) for r in rows)
    # Replay: same answer, nothing more held; the same key for another request is refused.
    again = (await stub.RequestLink(request, metadata=suite.customer())).link
    assert again.name == link.name
    assert await usage_rows(suite.brokers[0], from_now=False) == rows
    request.bandwidth_mbps = 30.0
    reused = await failure(stub.RequestLink(request, metadata=suite.customer()))
    assert reused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(reused).reason == "REQUEST_ID_REUSED"
    # Get and list for the tenant; another tenant sees nothing.
    got = (await stub.GetLink(pb.GetLinkRequest(name=link.name),
                              metadata=suite.customer(write=False))).link
    assert got.name == link.name and not got.slots
    listed = await stub.ListLinks(pb.ListLinksRequest(), metadata=suite.customer())
    assert [x.name for x in listed.links] == [link.name]
    other = await stub.ListLinks(pb.ListLinksRequest(), metadata=suite.customer("fabrikam"))
    assert not other.links
    hidden = await failure(stub.GetLink(pb.GetLinkRequest(name=link.name),
                                        metadata=suite.customer("fabrikam")))
    assert hidden.code() == grpc.StatusCode.NOT_FOUND
    # Release frees everything.
    released = (await stub.ReleaseLink(pb.ReleaseLinkRequest(name=link.name, request_id=rid()),
                                       metadata=suite.customer())).link
    assert released.state == LINK.STATE_RELEASED
    assert await usage_rows(suite.brokers[0]) == []


async def test_bad_input_names_the_field_and_holds_nothing(suite):
    stub = suite.stub()
    customer, _, terminal = await suite.active_terminal()
    who = suite.customer()
    bad = pb.RequestLinkRequest(customer="customer/x", terminal="t", region="atlantis",
                                bandwidth_mbps=-1, window=suite.window(minutes=-5),
                                request_id="")
    error = await failure(stub.RequestLink(bad, metadata=who))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(error) >= {"customer", "terminal", "region", "bandwidth_mbps",
                                "window.end_time", "request_id"}
    long = suite.link_request(customer, terminal, minutes=25 * 60)
    assert "window" in fields_of(await failure(stub.RequestLink(long, metadata=who)))
    past = suite.link_request(customer, terminal)
    past.window.CopyFrom(suite.window(minutes=5, start_in_s=-3600))
    assert "window.end_time" in fields_of(await failure(stub.RequestLink(past, metadata=who)))
    far = suite.link_request(customer, terminal)
    far.window.CopyFrom(suite.window(minutes=5, start_in_s=8 * 86400))
    assert "window.start_time" in fields_of(await failure(stub.RequestLink(far, metadata=who)))
    nan = suite.link_request(customer, terminal, mbps=math.nan)
    assert "bandwidth_mbps" in fields_of(await failure(stub.RequestLink(nan, metadata=who)))
    unknown = suite.link_request(customer, terminal)
    unknown.terminal = customer.name + "/terminals/nope"
    missing = await failure(stub.RequestLink(unknown, metadata=who))
    assert missing.code() == grpc.StatusCode.NOT_FOUND and "terminal" in fields_of(missing)
    theirs = await failure(stub.RequestLink(suite.link_request(customer, terminal),
                                            metadata=suite.customer("fabrikam")))
    assert theirs.code() == grpc.StatusCode.NOT_FOUND and "customer" in fields_of(theirs)
    over = await failure(stub.RequestLink(suite.link_request(customer, terminal, mbps=500),
                                          metadata=who))
    assert over.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(over).reason == "BANDWIDTH_EXCEEDS_PLAN"
    where = common_pb2.GeodeticPoint(latitude_deg=91, longitude_deg=-181, altitude_m=1e9)
    estimate = await failure(stub.EstimatePath(pb.EstimatePathRequest(
        location=where, region="westus2", window=suite.window()), metadata=who))
    assert fields_of(estimate) == {"location.latitude_deg", "location.longitude_deg",
                                   "location.altitude_m"}
    reader = await failure(stub.RequestLink(suite.link_request(customer, terminal),
                                            metadata=suite.customer(write=False)))
    assert reader.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await usage_rows(suite.brokers[0]) == []


async def test_suspended_subscription_suspends_its_links(suite):
    stub = suite.stub()
    customer, sub, terminal = await suite.active_terminal()
    link = (await stub.RequestLink(suite.link_request(customer, terminal),
                                   metadata=suite.customer())).link
    prov_stub = suite.prov_stub()
    await prov_stub.SuspendSubscription(prov.SuspendSubscriptionRequest(
        name=sub.name, request_id=rid()), metadata=suite.operator())

    async def suspended():
        return (await stub.GetLink(pb.GetLinkRequest(name=link.name),
                                   metadata=suite.customer())).link.state \
            == LINK.STATE_SUSPENDED

    # The revocation feed is followed in the background: wait for its outcome (the
    # deadline only ends a hang; how soon it comes is a benchmark's business, not a test's).
    assert await until(suspended)
    assert await usage_rows(suite.brokers[0]) == []


async def test_a_catalog_update_replans_live_links(suite):
    from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc

    from tests.conftest import bearer
    from tests.orbit.conftest import ISS_L1, ISS_L2

    stub = suite.stub()
    customer, _, terminal = await suite.active_terminal()
    link = (await stub.RequestLink(suite.link_request(customer, terminal),
                                   metadata=suite.customer())).link
    broker = suite.brokers[0].broker
    assert not await broker.check_catalog()  # nothing changed yet
    watch = stub.WatchLink(pb.WatchLinkRequest(name=link.name), metadata=suite.customer())
    first = await watch.read()
    assert first.kind == pb.WatchLinkResponse.KIND_CURRENT
    orbit_channel = grpc.aio.insecure_channel(f"127.0.0.1:{suite.orbit.server.port}")
    suite.channels.append(orbit_channel)
    await orbit_pb2_grpc.OrbitServiceStub(orbit_channel).ImportElementSets(
        orbit_pb2.ImportElementSetsRequest(text=f"ISS\n{ISS_L1}\n{ISS_L2}\n", group_id="extra"),
        metadata=bearer(suite.minter, "orbit.write", tenant="skybridge", subject="ops"))
    assert await broker.check_catalog()
    # The brokers' clock stands still (tests/linkbroker/suite.py): no slot ends while this
    # runs, so no handover can come first; the next message is the re-plan.
    change = await asyncio.wait_for(watch.read(), 60)
    assert change.kind == pb.WatchLinkResponse.KIND_REPLANNED
    assert change.state == LINK.STATE_ACTIVE
    again = (await stub.GetLink(pb.GetLinkRequest(name=link.name),
                                metadata=suite.customer())).link
    assert again.plan_revision == 2 and again.state == LINK.STATE_ACTIVE
    watch.cancel()


async def test_watch_tells_each_handover_when_the_clock_reaches_it(suite):
    """Handovers come from the brokers' clock, not the wall's: nothing is told while it stands
    still; moved past two changes of serving satellite or gateway, the watcher is told both,
    in order."""
    stub = suite.stub()
    customer, _, terminal = await suite.active_terminal()
    link = (await stub.RequestLink(suite.link_request(customer, terminal, include_slots=True),
                                   metadata=suite.customer())).link
    broker = suite.brokers[0].broker
    now = broker.now_slot()
    changes, before = [], None
    for s in link.slots:  # as LinkPlan.changes: the slots whose path differs from the last
        key = (s.serving_satellite, s.gateway)
        if key != before:
            changes.append(s)
            before = key
    ahead = [s for s in changes if s.start_time.seconds // 15 > now]
    assert len(ahead) >= 2, "ten minutes from one spot without two handovers"
    watch = stub.WatchLink(pb.WatchLinkRequest(name=link.name), metadata=suite.customer())
    first = await asyncio.wait_for(watch.read(), 60)
    assert first.kind == pb.WatchLinkResponse.KIND_CURRENT
    assert first.slot.start_time.seconds // 15 == now
    suite.clock.now = ahead[1].start_time.seconds + 1.0
    broker.notify()  # wake the watcher now rather than at its next poll
    for expected in ahead[:2]:
        told = await asyncio.wait_for(watch.read(), 60)
        assert told.kind == pb.WatchLinkResponse.KIND_HANDOVER
        assert told.slot == expected and told.state == LINK.STATE_ACTIVE
    watch.cancel()


async def test_geometry_dropped_while_a_plan_runs_is_loaded_again(suite, monkeypatch):
    """A catalog change drops every block while EstimatePath is planning (found by the
    contract fuzz as INTERNAL, a KeyError): the broker loads the window again and
    answers; geometry dropped under every attempt is UNAVAILABLE GEOMETRY_CHANGED."""
    stub = suite.stub()
    constellation = suite.brokers[0].broker.constellation
    plan = constellation.plan
    drops = {"left": 1}

    def plan_while_dropping(*args):
        if drops["left"]:
            drops["left"] -= 1
            constellation.drop_blocks()  # as a catalog change does, mid-plan
        return plan(*args)

    monkeypatch.setattr(constellation, "plan", plan_while_dropping)
    request = pb.EstimatePathRequest(
        location=common_pb2.GeodeticPoint(latitude_deg=47.23, longitude_deg=-119.85),
        region="westus2", window=suite.window(minutes=5))
    answer = await stub.EstimatePath(request, metadata=suite.customer())
    assert answer.routed_fraction == 1.0 and drops["left"] == 0
    drops["left"] = 100
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.EstimatePath(request, metadata=suite.customer())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    from shared.status import details_of

    assert details_of(caught.value).reason == "GEOMETRY_CHANGED"
