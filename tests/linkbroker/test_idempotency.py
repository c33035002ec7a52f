"""Idempotency of every mutating link-broker call under retries and races, over gRPC with
real orbit, provisioning and two link-broker replicas on SQLite and PostgreSQL.

For each call: a sequential retry gets the first answer; 64 identical calls at once (spread
over both replicas) all get one answer and make one effect; the same request_id with
another body is REQUEST_ID_REUSED; and a key belongs to the caller's tenant, so an
operator acting for a customer retries under the operator's tenant (the fuzzer found its
retries answered INTERNAL) and the customer's own keys stay the customer's.
"""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import duration_pb2, timestamp_pb2
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import contacts_pb2 as cpb
from skybridge.linkbroker.v1 import contacts_pb2_grpc
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb

from tests.conftest import bearer
from tests.idempotency import RACERS, assert_reused, race, refusal
from tests.linkbroker.suite import rid, start_suite

LINK = pb.Link
SAT = "satellites/900000"  # the first satellite of the seeded Starlink Gen1 shells
QUINCY = "groundStations/quincy-wa"


@pytest.fixture
async def suite(settings, minter):
    """Orbit, provisioning and two link-broker replicas over one database."""
    suite = await start_suite(settings, minter)
    await suite.add_broker()
    await suite.add_broker()
    yield suite
    await suite.close()


def spread(suite, call_of):
    """A call factory alternating between the two replicas."""
    stubs = [suite.stub(0), suite.stub(1)]
    turn = iter(range(10**6))
    return lambda: call_of(stubs[next(turn) % 2])


async def scalar(kit, sql: str, **params):
    async with kit.engine.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).scalar()


async def lease_count(kit) -> int:
    return await scalar(kit, "SELECT count(*) FROM leases")


async def events_of(kit, link_name: str) -> list[tuple[str, str]]:
    async with kit.engine.connect() as conn:
        rows = await conn.execute(sa.text(
            "SELECT kind, state FROM lease_events WHERE lease_id = :id ORDER BY id"),
            {"id": link_name.removeprefix("links/")})
        return [tuple(r) for r in rows]


# --- links ------------------------------------------------------------------------------


async def test_request_link_retried_and_raced_by_the_customer_answers_one_link(suite):
    kit = suite.brokers[0]
    customer, _, terminal = await suite.active_terminal()
    who = suite.customer()
    request = suite.link_request(customer, terminal, mbps=5.0)
    first = (await suite.stub().RequestLink(request, metadata=who)).link
    again = (await suite.stub(1).RequestLink(request, metadata=who)).link
    assert again == first
    raced = pb.RequestLinkRequest()
    raced.CopyFrom(request)
    raced.request_id = rid()
    answers = await race(spread(suite, lambda stub: stub.RequestLink(raced, metadata=who)))
    assert len({a.link.SerializeToString(deterministic=True) for a in answers}) == 1
    assert answers[0].link.name != first.name
    assert await lease_count(kit) == 2
    changed = pb.RequestLinkRequest()
    changed.CopyFrom(raced)
    changed.bandwidth_mbps = 6.0
    await assert_reused(suite.stub().RequestLink(changed, metadata=who))
    assert await lease_count(kit) == 2


async def test_request_link_by_an_operator_is_keyed_to_the_operators_tenant(suite):
    kit = suite.brokers[0]
    customer, _, terminal = await suite.active_terminal()
    ops, who = suite.operator(), suite.customer()
    request = suite.link_request(customer, terminal, mbps=5.0)
    # The operator's sequential retry replays its link (it answered INTERNAL: the key was
    # stored under the customer's tenant and looked up under the operator's).
    first = (await suite.stub().RequestLink(request, metadata=ops)).link
    assert first.customer == customer.name
    again = (await suite.stub(1).RequestLink(request, metadata=ops)).link
    assert again == first
    # 64 of the operator's calls at once: one link, one answer.
    raced = pb.RequestLinkRequest()
    raced.CopyFrom(request)
    raced.request_id = rid()
    answers = await race(spread(suite, lambda stub: stub.RequestLink(raced, metadata=ops)))
    assert len({a.link.SerializeToString(deterministic=True) for a in answers}) == 1
    assert await lease_count(kit) == 2
    changed = pb.RequestLinkRequest()
    changed.CopyFrom(request)
    changed.bandwidth_mbps = 6.0
    await assert_reused(suite.stub().RequestLink(changed, metadata=ops))
    # The customer's keys are its own: the operator's request_id binds nothing for the
    # customer, who gets its own link for it, and replays that one.
    mine = (await suite.stub().RequestLink(changed, metadata=who)).link
    assert mine.name not in (first.name, answers[0].link.name)
    assert mine.bandwidth_mbps == 6.0
    assert (await suite.stub(1).RequestLink(changed, metadata=who)).link == mine
    await assert_reused(suite.stub().RequestLink(request, metadata=who))
    # ... and the operator still replays its own first answer.
    assert (await suite.stub().RequestLink(request, metadata=ops)).link == first
    assert await lease_count(kit) == 3


async def test_release_link_retried_and_raced_answers_one_release(suite):
    kit = suite.brokers[0]
    customer, _, terminal = await suite.active_terminal()
    who, ops = suite.customer(), suite.operator()
    links = [(await suite.stub().RequestLink(suite.link_request(customer, terminal, mbps=2.0),
                                             metadata=who)).link for _ in range(3)]
    release = pb.ReleaseLinkRequest(name=links[0].name, request_id=rid())
    answers = await race(spread(suite, lambda stub: stub.ReleaseLink(release, metadata=who)))
    assert len({a.link.SerializeToString(deterministic=True) for a in answers}) == 1
    assert answers[0].link.state == LINK.STATE_RELEASED
    assert (await suite.stub().ReleaseLink(release, metadata=who)).link == answers[0].link
    assert await events_of(kit, links[0].name) == [("CREATED", "ACTIVE"),
                                                   ("STATE_CHANGED", "RELEASED")]
    await assert_reused(suite.stub().ReleaseLink(
        pb.ReleaseLinkRequest(name=links[1].name, request_id=release.request_id),
        metadata=who))
    assert (await suite.stub().GetLink(pb.GetLinkRequest(name=links[1].name),
                                       metadata=who)).link.state == LINK.STATE_ACTIVE
    # The operator's key of the same name is the operator's: it releases the link asked.
    by_ops = pb.ReleaseLinkRequest(name=links[2].name, request_id=release.request_id)
    answers = await race(spread(suite, lambda stub: stub.ReleaseLink(by_ops, metadata=ops)))
    assert {a.link.name for a in answers} == {links[2].name}
    assert {a.link.state for a in answers} == {LINK.STATE_RELEASED}
    assert (await suite.stub().ReleaseLink(by_ops, metadata=ops)).link == answers[0].link


# --- gateways ---------------------------------------------------------------------------


def gateway_request(gateway_id="gw-race", antennas=2, request_id=None):
    return pb.CreateGatewayRequest(gateway_id=gateway_id, gateway=pb.Gateway(
        location=common_pb2.GeodeticPoint(latitude_deg=47.0, longitude_deg=-120.0),
        antennas=antennas, region="regions/westus2"), request_id=request_id or rid())


async def test_create_gateway_raced_with_one_request_id_replays_the_first_answer(suite):
    ops = suite.operator()
    request = gateway_request()
    # It answered ALREADY_EXISTS to some of 64 calls.
    answers = await race(spread(suite, lambda stub: stub.CreateGateway(request, metadata=ops)))
    assert len({a.gateway.SerializeToString(deterministic=True) for a in answers}) == 1
    assert answers[0].gateway.name == "gateways/gw-race"
    assert (await suite.stub(1).CreateGateway(request, metadata=ops)) == answers[0]
    await assert_reused(suite.stub().CreateGateway(
        gateway_request(antennas=3, request_id=request.request_id), metadata=ops))
    await assert_reused(suite.stub().CreateGateway(
        gateway_request("gw-other", request_id=request.request_id), metadata=ops))
    assert await scalar(suite.brokers[0], "SELECT count(*) FROM gateways "
                        "WHERE id IN ('gw-race', 'gw-other')") == 1
    # Another request_id for the same gateway is another request: ALREADY_EXISTS.
    error = await refusal(suite.stub().CreateGateway(gateway_request(), metadata=ops))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_drain_and_restore_raced_answer_the_first_answer_with_one_replan(suite):
    kit = suite.brokers[0]
    customer, _, terminal = await suite.active_terminal()
    who, ops = suite.customer(), suite.operator()
    link = (await suite.stub().RequestLink(suite.link_request(customer, terminal, mbps=5.0,
                                                        minutes=6, include_slots=True),
                                           metadata=who)).link
    now = kit.broker.now_slot()
    gateway = next(s.gateway for s in link.slots if s.start_time.seconds // 15 >= now + 3)
    drain = pb.DrainGatewayRequest(name=gateway, request_id=rid())
    answers = await race(spread(suite, lambda stub: stub.DrainGateway(drain, metadata=ops)))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert answers[0].gateway.state == pb.Gateway.STATE_DRAINED
    assert answers[0].replanned_links + answers[0].degraded_links == 1
    # One drain: the link was re-planned (or degraded) once.
    assert len(await events_of(kit, link.name)) == 2
    # A later retry gets the first answer, counts included.
    assert await suite.stub(1).DrainGateway(drain, metadata=ops) == answers[0]
    other = next(g for g in await kit.broker.store.gateways()
                 if f"gateways/{g.id}" != gateway)
    await assert_reused(suite.stub().DrainGateway(pb.DrainGatewayRequest(
        name=f"gateways/{other.id}", request_id=drain.request_id), metadata=ops))
    await assert_reused(suite.stub().RestoreGateway(pb.RestoreGatewayRequest(
        name=gateway, request_id=drain.request_id), metadata=ops))
    restore = pb.RestoreGatewayRequest(name=gateway, request_id=rid())
    answers = await race(spread(suite, lambda stub: stub.RestoreGateway(restore,
                                                                       metadata=ops)))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert answers[0].gateway.state == pb.Gateway.STATE_ACTIVE
    assert await suite.stub().RestoreGateway(restore, metadata=ops) == answers[0]
    assert (await scalar(kit, "SELECT state FROM gateways WHERE id = :id",
                         id=gateway.removeprefix("gateways/"))) == "ACTIVE"


# --- ground-station contacts ------------------------------------------------------------


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(int(round(seconds * 1e9)))
    return out


def _secs(stamp) -> float:
    return stamp.seconds + stamp.nanos * 1e-9


async def test_contact_calls_raced_make_one_profile_and_one_contact(suite):
    kit = suite.brokers[0]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{b.server.port}") for b in suite.brokers]
    suite.channels.extend(channels)
    stubs = [contacts_pb2_grpc.GroundStationServiceStub(c) for c in channels]
    turn = iter(range(10**6))

    def either():
        return stubs[next(turn) % 2]

    who = bearer(suite.minter, "contacts.write", tenant="contoso", subject="contoso-ops")
    ops = bearer(suite.minter, "linkbroker.operator", tenant="skybridge", subject="noc")
    profile = cpb.CreateContactProfileRequest(
        contact_profile_id="raced", request_id=rid(), contact_profile=cpb.ContactProfile(
            min_elevation_deg=10.0,
            min_viable_contact_duration=duration_pb2.Duration(seconds=60)))
    answers = await race(lambda: either().CreateContactProfile(profile, metadata=who))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    changed = cpb.CreateContactProfileRequest()
    changed.CopyFrom(profile)
    changed.contact_profile.min_elevation_deg = 11.0
    await assert_reused(either().CreateContactProfile(changed, metadata=who))
    now = suite.clock()  # the brokers' clock: the 15-minute lead time is counted on it
    available = await either().ListAvailableContacts(cpb.ListAvailableContactsRequest(
        spacecraft=SAT, ground_station=QUINCY, contact_profile="contactProfiles/raced",
        window=common_pb2.TimeWindow(start_time=_ts(now), end_time=_ts(now + 86_400)),
        page_size=1000), metadata=who)
    passes = [p for p in available.available_contacts
              if p.reservable and _secs(p.end_time) - _secs(p.start_time) >= 200]
    if len(passes) < 2:
        pytest.skip("fewer than two reservable passes of 200 s in the next day")
    reserve = [cpb.ReserveContactRequest(
        spacecraft=SAT, ground_station=QUINCY, contact_profile="contactProfiles/raced",
        start_time=p.start_time, end_time=p.end_time, request_id=rid()) for p in passes[:2]]
    answers = await race(lambda: either().ReserveContact(reserve[0], metadata=who))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    contact = answers[0].contact
    assert await scalar(kit, "SELECT count(*) FROM contacts") == 1
    assert (await either().ReserveContact(reserve[0], metadata=who)).contact == contact
    await assert_reused(either().ReserveContact(cpb.ReserveContactRequest(
        spacecraft=SAT, ground_station=QUINCY, contact_profile="contactProfiles/raced",
        start_time=reserve[1].start_time, end_time=reserve[1].end_time,
        request_id=reserve[0].request_id), metadata=who))
    second = (await either().ReserveContact(reserve[1], metadata=who)).contact
    # Cancelling: the customer's key and the operator's key of the same name are two keys.
    key = rid()
    cancel = cpb.CancelContactRequest(name=contact.name, request_id=key)
    answers = await race(lambda: either().CancelContact(cancel, metadata=who))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert answers[0].contact.state == cpb.Contact.STATE_CANCELLED
    provider = cpb.ProviderCancelContactRequest(name=second.name, reason="antenna fault",
                                                request_id=key)
    answers = await race(lambda: either().ProviderCancelContact(provider, metadata=ops),
                         n=RACERS // 4)
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert answers[0].contact.state == cpb.Contact.STATE_PROVIDER_CANCELLED
    await assert_reused(either().CancelContact(cpb.CancelContactRequest(
        name=second.name, request_id=key), metadata=who))
