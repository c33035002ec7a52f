"""Ground-station contacts over real gRPC: a real orbit server (seeded catalog) and the
link broker on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from dataclasses import replace

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import duration_pb2, timestamp_pb2
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import contacts_pb2 as pb
from skybridge.linkbroker.v1 import contacts_pb2_grpc
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc

from services.linkbroker.contact_store import contact_profiles, contacts
from shared.paging import decode_token, encode_token
from shared.status import details_of
from tests.conftest import bearer


def timestamp_to_s(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos * 1e-9


SAT = "satellites/900000"  # the first satellite of the seeded Starlink Gen1 shells
QUINCY = "groundStations/quincy-wa"  # 2 antennas
COLUMBUS = "groundStations/columbus-oh"  # 1 antenna
OPERATOR = "linkbroker.operator"
State = pb.Contact.State
_ids = itertools.count()


def rid() -> str:
    return f"req-{next(_ids)}-{time.time_ns()}"


def ts(seconds: float) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(int(round(seconds * 1e9)))
    return out


def secs(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos * 1e-9


class Clock:
    """The brokers' clock: it stands still at the time the test started unless the test moves
    it, so that whether a pass is outside the 15-minute lead time, or a contact has ended,
    never changes while a test runs (the tests count "now" on it too)."""

    def __init__(self) -> None:
        self.start = self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Env:
    def __init__(self, orbit, brokers, channels, minter, clock):
        self.orbit, self.brokers, self.channels = orbit, brokers, channels
        self.minter, self.clock = minter, clock
        self.stubs = [contacts_pb2_grpc.GroundStationServiceStub(c) for c in channels[1:]]
        self.stub = self.stubs[0]
        self.orbit_stub = orbit_pb2_grpc.OrbitServiceStub(channels[0])

    def customer(self, tenant="contoso", *scopes):
        return bearer(self.minter, *(scopes or ("contacts.write",)), tenant=tenant,
                      subject=f"{tenant}-ops")

    def operator(self):
        return bearer(self.minter, OPERATOR, tenant="skybridge", subject="noc")

    async def profile(self, profile_id="downlink", tenant="contoso", min_el=10.0,
                      min_s=60, gap_s=None):
        profile = pb.ContactProfile(display_name="EO downlink", min_elevation_deg=min_el,
                                    min_viable_contact_duration=duration_pb2.Duration(
                                        seconds=min_s))
        if gap_s is not None:
            profile.guard_gap.CopyFrom(duration_pb2.Duration(seconds=gap_s))
        answer = await self.stub.CreateContactProfile(pb.CreateContactProfileRequest(
            contact_profile_id=profile_id, contact_profile=profile, request_id=rid()),
            metadata=self.customer(tenant))
        return answer.contact_profile

    async def available(self, station=QUINCY, profile="contactProfiles/downlink",
                        tenant="contoso", hours=24.0, spacecraft=SAT):
        now = self.clock()
        answer = await self.stub.ListAvailableContacts(pb.ListAvailableContactsRequest(
            spacecraft=spacecraft, ground_station=station, contact_profile=profile,
            window=common_pb2.TimeWindow(start_time=ts(now), end_time=ts(now + hours * 3600)),
            page_size=1000), metadata=self.customer(tenant, "contacts.read"))
        return list(answer.available_contacts)

    async def reserve(self, start, end, station=QUINCY, profile="contactProfiles/downlink",
                      tenant="contoso", request_id=None, stub=None, spacecraft=SAT):
        return (await (stub or self.stub).ReserveContact(pb.ReserveContactRequest(
            spacecraft=spacecraft, ground_station=station, contact_profile=profile,
            start_time=ts(start), end_time=ts(end), request_id=request_id or rid()),
            metadata=self.customer(tenant))).contact

    async def count_contacts(self) -> int:
        async with self.brokers[0].sessions() as session:
            return int(await session.scalar(sa.select(sa.func.count()).select_from(contacts)))


async def _start(kit):
    await kit.server.start()
    await kit.server.become_ready()
    return kit


@pytest.fixture
async def env(settings, minter):
    from services.linkbroker.server import build as build_broker
    from services.orbit.server import build as build_orbit

    orbit = await _start(await build_orbit(replace(settings, seed=True), port=0, warm=False))
    clock = Clock()
    target = f"127.0.0.1:{orbit.server.port}"
    brokers = [await _start(await build_broker(settings, port=0, orbit_target=target,
                                               clock=clock)) for _ in range(2)]
    channels = [grpc.aio.insecure_channel(target)] + [
        grpc.aio.insecure_channel(f"127.0.0.1:{b.server.port}") for b in brokers]
    try:
        yield Env(orbit, brokers, channels, minter, clock)
    finally:
        for channel in channels:
            await channel.close()
        for kit in brokers:
            await kit.server.drain(0)
        await orbit.server.drain(0)


async def failure(call) -> tuple[grpc.StatusCode, str | None, dict[str, str], dict]:
    """Code, reason, violations (field -> description) and ErrorInfo metadata of a call
    that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = details_of(caught.value)
    return (details.code, details.reason, {v.field: v.description for v in details.violations},
            details.metadata)


def long_pass(now, available, minimum_s=400.0, starting_after_s=0.0):
    """The first reservable pass lasting at least `minimum_s` that rises at least
    `starting_after_s` after `now` (the brokers' clock)."""
    for item in available:
        if item.reservable and secs(item.end_time) - secs(item.start_time) >= minimum_s \
                and secs(item.start_time) >= now + starting_after_s:
            return item
    pytest.skip(f"no reservable pass of {minimum_s:g} s in the window")


# ------------------------------------------------------------------------------------ tests

async def test_ground_stations_and_available_contacts_match_the_orbit_passes(env):
    stations = await env.stub.ListGroundStations(pb.ListGroundStationsRequest(page_size=2),
                                                 metadata=env.customer("contoso",
                                                                       "contacts.read"))
    assert len(stations.ground_stations) == 2 and stations.next_page_token
    rest = await env.stub.ListGroundStations(pb.ListGroundStationsRequest(
        page_token=stations.next_page_token), metadata=env.customer())
    names = [s.name for s in [*stations.ground_stations, *rest.ground_stations]]
    assert QUINCY in names and COLUMBUS in names and names == sorted(names)
    quincy = (await env.stub.GetGroundStation(pb.GetGroundStationRequest(name=QUINCY),
                                              metadata=env.customer())).ground_station
    assert quincy.antennas == 2 and quincy.region == "regions/westus2"
    assert abs(quincy.location.latitude_deg - 47.23) < 0.1

    await env.profile(min_el=10.0, min_s=60)
    now = env.clock()
    window = common_pb2.TimeWindow(start_time=ts(now), end_time=ts(now + 86400))
    available = await env.stub.ListAvailableContacts(pb.ListAvailableContactsRequest(
        spacecraft="900000", ground_station=QUINCY, contact_profile="contactProfiles/downlink",
        window=window), metadata=env.customer("contoso", "contacts.read"))
    passes = (await env.orbit_stub.PredictPasses(orbit_pb2.PredictPassesRequest(
        points=[quincy.location], window=window, min_elevation_deg=10.0,
        min_duration=duration_pb2.Duration(seconds=60),
        selection=orbit_pb2.SatelliteSelection(catalog_numbers=[900000])),
        metadata=bearer(env.minter, "orbit.read"))).passes
    items = available.available_contacts
    assert len(passes) >= 2 and len(items) == len(passes)
    for item, p in zip(items, passes, strict=True):
        assert item.spacecraft == SAT and item.ground_station == QUINCY
        # the same passes (the window travels as float seconds: microseconds apart)
        assert secs(item.start_time) == pytest.approx(secs(p.rise_time), abs=0.01)
        assert secs(item.end_time) == pytest.approx(secs(p.set_time), abs=0.01)
        assert item.max_elevation_deg == pytest.approx(p.max_elevation_deg)
        assert item.max_elevation_deg >= 10.0
        assert list(item.free_antenna_indices) == [0, 1]
        assert item.reservable == (secs(item.start_time) >= now + 15 * 60)  # the lead time

    # pages of one pass each walk the same passes
    seen, token = [], ""
    for _ in range(len(items) + 1):
        page = await env.stub.ListAvailableContacts(pb.ListAvailableContactsRequest(
            spacecraft=SAT, ground_station=QUINCY, contact_profile="contactProfiles/downlink",
            window=window, page_size=1, page_token=token), metadata=env.customer())
        seen += [secs(i.start_time) for i in page.available_contacts]
        token = page.next_page_token
        if not token:
            break
    assert seen == [secs(i.start_time) for i in items]

    # a reservation shows as a busy antenna on its pass
    target = next(i for i in items if i.reservable)
    contact = await env.reserve(secs(target.start_time), secs(target.end_time))
    assert contact.antenna_index == 0
    again = await env.available()
    match = min(again, key=lambda i: abs(secs(i.start_time) - secs(target.start_time)))
    assert abs(secs(match.start_time) - secs(target.start_time)) < 1.0
    assert list(match.free_antenna_indices) == [1] and match.reservable


async def test_reserve_guard_gap_next_antenna_and_all_busy(env):
    await env.profile(min_el=10.0, min_s=60, gap_s=120)
    p = long_pass(env.clock(), await env.available())
    rise = secs(p.start_time)
    first = await env.reserve(rise, rise + 120)
    assert first.state == State.STATE_SCHEDULED and first.antenna_index == 0
    assert first.name.startswith("contacts/") and first.spacecraft == SAT
    assert first.ground_station == QUINCY and first.contact_profile == "contactProfiles/downlink"
    assert first.guard_gap.seconds == 120 and first.min_elevation_deg == 10.0
    assert 10.0 <= first.max_elevation_deg <= p.max_elevation_deg + 1e-6
    # 60 s after the first ends: inside its 120 s guard gap -> the other antenna
    second = await env.reserve(rise + 180, rise + 300)
    assert second.antenna_index == 1
    # 120 s after the first ends: antenna 0 is free again (back to back with the gap)
    third = await env.reserve(rise + 240, rise + 330)
    assert third.antenna_index == 0
    # now both antennas are busy around [rise+250, rise+330]
    before = await env.count_contacts()
    code, reason, fields, meta = await failure(env.reserve(rise + 250, rise + 330))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and reason == "NO_ANTENNA_AVAILABLE"
    assert meta["antennas"] == "2"
    assert await env.count_contacts() == before  # nothing written

    got = (await env.stub.GetContact(pb.GetContactRequest(name=second.name),
                                     metadata=env.customer("contoso", "contacts.read"))).contact
    assert got == second
    listed = await env.stub.ListContacts(pb.ListContactsRequest(ground_station=QUINCY,
                                                                page_size=2),
                                         metadata=env.customer())
    assert [c.name for c in listed.contacts] == [first.name, second.name]
    rest = await env.stub.ListContacts(pb.ListContactsRequest(
        ground_station=QUINCY, page_size=2, page_token=listed.next_page_token),
        metadata=env.customer())
    assert [c.name for c in rest.contacts] == [third.name] and not rest.next_page_token
    # The key is (start in integer microseconds, id); a token from before the times became
    # DateTime held the start as float seconds and is refused, naming page_token.
    scope = json.loads(base64.urlsafe_b64decode(listed.next_page_token + "==="))["s"]
    micros, last = decode_token(listed.next_page_token, scope, kinds=(int, str))
    assert micros == int(round(timestamp_to_s(second.start_time) * 1e6))
    with pytest.raises(grpc.aio.AioRpcError) as old:
        await env.stub.ListContacts(pb.ListContactsRequest(
            ground_station=QUINCY, page_size=2,
            page_token=encode_token(scope, [micros / 1e6, last])), metadata=env.customer())
    assert old.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in old.value.details()


async def test_lead_time_and_contact_outside_a_pass(env):
    await env.profile(min_el=10.0, min_s=60)
    # a pass that rises well after the 15-minute lead time, so that a request 5 minutes
    # before it is refused for not being in a pass whatever the time of day
    p = long_pass(env.clock(), await env.available(), 200.0, starting_after_s=25 * 60)
    rise, set_ = secs(p.start_time), secs(p.end_time)
    # the broker's clock moves to 10 minutes before the pass: inside the 15-minute lead time
    env.clock.now = rise - 600
    code, reason, fields, _ = await failure(env.reserve(rise, set_))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and reason == "LEAD_TIME_NOT_MET"
    assert set(fields) == {"start_time"} and "15 minutes" in fields["start_time"]
    env.clock.now = env.clock.start
    # longer than the pass, or before it: not inside one pass
    for start, end in [(rise - 300, set_), (rise, set_ + 300)]:
        code, reason, fields, _ = await failure(env.reserve(start, end))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and reason == "NOT_IN_PASS"
        assert set(fields) == {"start_time", "end_time"}
    # shorter than the profile's minimum viable duration
    code, reason, fields, _ = await failure(env.reserve(rise, rise + 30))
    assert (code, reason, set(fields)) == (grpc.StatusCode.INVALID_ARGUMENT,
                                           "CONTACT_TOO_SHORT", {"end_time"})
    assert await env.count_contacts() == 0


async def test_cancel_provider_cancel_and_outcomes(env):
    await env.profile(min_el=10.0, min_s=60)
    p = long_pass(env.clock(), await env.available(station=COLUMBUS), 200.0)
    rise, set_ = secs(p.start_time), secs(p.end_time)
    contact = await env.reserve(rise, set_, station=COLUMBUS)
    # the only antenna is taken
    code, reason, _, _ = await failure(env.reserve(rise, set_, station=COLUMBUS))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_ANTENNA_AVAILABLE")

    # the customer cancels: the antenna is free at once
    key = rid()
    cancelled = (await env.stub.CancelContact(pb.CancelContactRequest(
        name=contact.name, request_id=key), metadata=env.customer())).contact
    assert cancelled.state == State.STATE_CANCELLED and "contoso-ops" in cancelled.state_reason
    replay = (await env.stub.CancelContact(pb.CancelContactRequest(
        name=contact.name, request_id=key), metadata=env.customer())).contact
    assert replay == cancelled  # a retry gets the first answer
    code, reason, _, _ = await failure(env.stub.CancelContact(pb.CancelContactRequest(
        name=contact.name, request_id=rid()), metadata=env.customer()))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_NOT_SCHEDULED")

    again = await env.reserve(rise, set_, station=COLUMBUS)
    assert again.antenna_index == 0

    # only the operator provider-cancels and records outcomes
    code, _, _, _ = await failure(env.stub.ProviderCancelContact(
        pb.ProviderCancelContactRequest(name=again.name, reason="x", request_id=rid()),
        metadata=env.customer()))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, reason, fields, _ = await failure(env.stub.ProviderCancelContact(
        pb.ProviderCancelContactRequest(name=again.name, request_id=rid()),
        metadata=env.operator()))
    assert (code, set(fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"reason"})
    # not started yet: no outcome
    code, reason, _, _ = await failure(env.stub.CompleteContact(pb.CompleteContactRequest(
        name=again.name, outcome=State.STATE_FAILED, reason="rf", request_id=rid()),
        metadata=env.operator()))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_NOT_STARTED")
    provider = (await env.stub.ProviderCancelContact(pb.ProviderCancelContactRequest(
        name=again.name, reason="antenna maintenance", request_id=rid()),
        metadata=env.operator())).contact
    assert provider.state == State.STATE_PROVIDER_CANCELLED
    assert provider.state_reason == "antenna maintenance"
    code, reason, _, _ = await failure(env.stub.CompleteContact(pb.CompleteContactRequest(
        name=again.name, outcome=State.STATE_SUCCEEDED, request_id=rid()),
        metadata=env.operator()))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_CANCELLED")
    seen = (await env.stub.GetContact(pb.GetContactRequest(name=again.name),
                                      metadata=env.customer())).contact
    assert seen.state == State.STATE_PROVIDER_CANCELLED


async def test_a_contact_succeeds_after_its_end_unless_marked_failed(env):
    await env.profile(min_el=10.0, min_s=60)
    items = [i for i in await env.available() if i.reservable]
    assert len(items) >= 2
    a, b = items[0], items[1]
    one = await env.reserve(secs(a.start_time), secs(a.end_time))
    two = await env.reserve(secs(b.start_time), secs(b.end_time))
    scheduled = await env.stub.ListContacts(pb.ListContactsRequest(
        state=State.STATE_SCHEDULED), metadata=env.customer())
    assert [c.name for c in scheduled.contacts] == [one.name, two.name]

    # the broker's clock passes the end of the first contact (a minute of slack)
    env.clock.now = secs(a.end_time) + 60
    got = (await env.stub.GetContact(pb.GetContactRequest(name=one.name),
                                     metadata=env.customer())).contact
    assert got.state == State.STATE_SUCCEEDED
    succeeded = await env.stub.ListContacts(pb.ListContactsRequest(
        state=State.STATE_SUCCEEDED), metadata=env.customer())
    assert [c.name for c in succeeded.contacts] == [one.name]
    scheduled = await env.stub.ListContacts(pb.ListContactsRequest(
        state=State.STATE_SCHEDULED), metadata=env.customer())
    assert [c.name for c in scheduled.contacts] == [two.name]
    code, reason, _, _ = await failure(env.stub.CancelContact(pb.CancelContactRequest(
        name=one.name, request_id=rid()), metadata=env.customer()))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_NOT_SCHEDULED")

    # an operator marks it FAILED (a reason is required), then may correct it
    code, _, fields, _ = await failure(env.stub.CompleteContact(pb.CompleteContactRequest(
        name=one.name, outcome=State.STATE_FAILED, request_id=rid()),
        metadata=env.operator()))
    assert (code, set(fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"reason"})
    code, _, fields, _ = await failure(env.stub.CompleteContact(pb.CompleteContactRequest(
        name=one.name, outcome=State.STATE_CANCELLED, request_id=rid()),
        metadata=env.operator()))
    assert (code, set(fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"outcome"})
    failed = (await env.stub.CompleteContact(pb.CompleteContactRequest(
        name=one.name, outcome=State.STATE_FAILED, reason="no carrier lock",
        request_id=rid()), metadata=env.operator())).contact
    assert failed.state == State.STATE_FAILED and failed.state_reason == "no carrier lock"
    # the operator sees it; the customer reads the stored FAILED too
    got = (await env.stub.GetContact(pb.GetContactRequest(name=one.name),
                                     metadata=env.customer())).contact
    assert got.state == State.STATE_FAILED
    fixed = (await env.stub.CompleteContact(pb.CompleteContactRequest(
        name=one.name, outcome=State.STATE_SUCCEEDED, request_id=rid()),
        metadata=env.operator())).contact
    assert fixed.state == State.STATE_SUCCEEDED
    # deleting the profile waits for the second contact to end
    code, reason, _, _ = await failure(env.stub.DeleteContactProfile(
        pb.DeleteContactProfileRequest(name="contactProfiles/downlink", request_id=rid()),
        metadata=env.customer()))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PROFILE_IN_USE")
    env.clock.now = secs(b.end_time) + 1
    deleted = await env.stub.DeleteContactProfile(pb.DeleteContactProfileRequest(
        name="contactProfiles/downlink", request_id=rid()), metadata=env.customer())
    assert deleted.contact_profile.name == "contactProfiles/downlink"
    code, _, _, _ = await failure(env.stub.GetContactProfile(pb.GetContactProfileRequest(
        name="contactProfiles/downlink"), metadata=env.customer()))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_idempotent_replay_and_request_id_reuse(env):
    key = rid()
    profile = pb.ContactProfile(min_elevation_deg=5.0, min_viable_contact_duration=
                                duration_pb2.Duration(seconds=30))
    request = pb.CreateContactProfileRequest(contact_profile_id="replayed",
                                             contact_profile=profile, request_id=key)
    first = await env.stub.CreateContactProfile(request, metadata=env.customer())
    again = await env.stub.CreateContactProfile(request, metadata=env.customer())
    assert first == again and first.contact_profile.guard_gap.seconds == 120  # the default
    code, reason, fields, _ = await failure(env.stub.CreateContactProfile(
        pb.CreateContactProfileRequest(contact_profile_id="replayed", contact_profile=profile,
                                       request_id=rid()), metadata=env.customer()))
    assert (code, reason, set(fields)) == (grpc.StatusCode.ALREADY_EXISTS,
                                           "CONTACT_PROFILE_ALREADY_EXISTS",
                                           {"contact_profile_id"})

    await env.profile(min_el=10.0, min_s=60)
    p = long_pass(env.clock(), await env.available(), 200.0)
    rise, set_ = secs(p.start_time), secs(p.end_time)
    key = rid()
    contact = await env.reserve(rise, set_, request_id=key)
    # a retry, on the other replica, after the lead time has passed: the first answer
    env.clock.now = rise - 60
    replay = await env.reserve(rise, set_, request_id=key, stub=env.stubs[1])
    assert replay == contact
    assert await env.count_contacts() == 1
    code, reason, fields, _ = await failure(env.reserve(rise, set_ - 10, request_id=key))
    assert (code, reason, set(fields)) == (grpc.StatusCode.INVALID_ARGUMENT,
                                           "REQUEST_ID_REUSED", {"request_id"})
    # keys are per tenant: another tenant's same key is its own request
    await env.profile(tenant="fabrikam", min_el=10.0, min_s=60)
    env.clock.now = env.clock.start
    other = await env.reserve(rise, set_, tenant="fabrikam", request_id=key)
    assert other.name != contact.name and other.antenna_index == 1


async def test_tenant_isolation(env):
    await env.profile(min_el=10.0, min_s=60)
    p = long_pass(env.clock(), await env.available(), 200.0)
    contact = await env.reserve(secs(p.start_time), secs(p.end_time))
    fabrikam = env.customer("fabrikam")
    for call in (env.stub.GetContact(pb.GetContactRequest(name=contact.name),
                                     metadata=fabrikam),
                 env.stub.CancelContact(pb.CancelContactRequest(name=contact.name,
                                                                request_id=rid()),
                                        metadata=fabrikam),
                 env.stub.GetContactProfile(pb.GetContactProfileRequest(
                     name="contactProfiles/downlink"), metadata=fabrikam)):
        code, reason, fields, _ = await failure(call)
        assert code == grpc.StatusCode.NOT_FOUND and "name" in fields
    # fabrikam cannot use contoso's profile
    code, reason, fields, _ = await failure(env.reserve(
        secs(p.start_time), secs(p.end_time), tenant="fabrikam"))
    assert (code, reason, set(fields)) == (grpc.StatusCode.NOT_FOUND,
                                           "CONTACT_PROFILE_NOT_FOUND", {"contact_profile"})
    listed = await env.stub.ListContacts(pb.ListContactsRequest(), metadata=fabrikam)
    assert list(listed.contacts) == []
    profiles = await env.stub.ListContactProfiles(pb.ListContactProfilesRequest(),
                                                  metadata=fabrikam)
    assert list(profiles.contact_profiles) == []
    # the operator sees every tenant's contacts
    seen = await env.stub.ListContacts(pb.ListContactsRequest(), metadata=env.operator())
    assert [c.name for c in seen.contacts] == [contact.name]
    # a read scope cannot write; no scope at all is refused
    code, _, _, _ = await failure(env.stub.ReserveContact(pb.ReserveContactRequest(
        spacecraft=SAT, ground_station=QUINCY, contact_profile="contactProfiles/downlink",
        start_time=p.start_time, end_time=p.end_time, request_id=rid()),
        metadata=env.customer("contoso", "contacts.read")))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _, _, _ = await failure(env.stub.ListContacts(
        pb.ListContactsRequest(), metadata=env.customer("contoso", "links.read")))
    assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_bad_input_names_each_field(env):
    code, reason, fields, _ = await failure(env.stub.ReserveContact(
        pb.ReserveContactRequest(), metadata=env.customer()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {"spacecraft", "ground_station", "contact_profile", "start_time",
                           "end_time", "request_id"}
    code, _, fields, _ = await failure(env.stub.ReserveContact(pb.ReserveContactRequest(
        spacecraft="sat/1", ground_station="stations/x", contact_profile="contactProfiles/X!",
        start_time=ts(env.clock() + 7200),
        end_time=ts(env.clock() + 3600), request_id="x" * 129), metadata=env.customer()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert {"spacecraft", "ground_station", "contact_profile", "request_id"} <= set(fields)
    # A Timestamp the type does not allow is refused by the contract checks, by path.
    code, _, fields, _ = await failure(env.stub.ReserveContact(pb.ReserveContactRequest(
        spacecraft="sat/1", start_time=timestamp_pb2.Timestamp(seconds=10, nanos=-1)),
        metadata=env.customer()))
    assert (code, set(fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"start_time"})

    code, _, fields, _ = await failure(env.stub.CreateContactProfile(
        pb.CreateContactProfileRequest(
            contact_profile_id="Bad Id", contact_profile=pb.ContactProfile(
                display_name="x" * 201, min_elevation_deg=95.0,
                min_viable_contact_duration=duration_pb2.Duration(seconds=0),
                guard_gap=duration_pb2.Duration(seconds=7200))), metadata=env.customer()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {"contact_profile_id", "contact_profile.display_name",
                           "contact_profile.min_elevation_deg",
                           "contact_profile.min_viable_contact_duration",
                           "contact_profile.guard_gap", "request_id"}
    code, _, fields, _ = await failure(env.stub.CreateContactProfile(
        pb.CreateContactProfileRequest(contact_profile_id="abc", request_id=rid()),
        metadata=env.customer()))
    assert (code, set(fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"contact_profile"})

    await env.profile(min_el=10.0, min_s=60)
    now = env.clock()
    ok_window = common_pb2.TimeWindow(start_time=ts(now), end_time=ts(now + 3600))
    cases = [
        (dict(window=common_pb2.TimeWindow(start_time=ts(now), end_time=ts(now - 10))),
         grpc.StatusCode.INVALID_ARGUMENT, "window.end_time"),
        (dict(window=common_pb2.TimeWindow(start_time=ts(now), end_time=ts(now + 8 * 86400))),
         grpc.StatusCode.INVALID_ARGUMENT, "window.end_time"),
        (dict(window=common_pb2.TimeWindow(end_time=ts(now + 60))),
         grpc.StatusCode.INVALID_ARGUMENT, "window.start_time"),
        (dict(window=ok_window, page_size=-1), grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
        (dict(window=ok_window, page_token="garbage"), grpc.StatusCode.INVALID_ARGUMENT,
         "page_token"),
        (dict(window=ok_window, spacecraft="satellites/12345"), grpc.StatusCode.NOT_FOUND,
         "spacecraft"),
        (dict(window=ok_window, ground_station="groundStations/atlantis"),
         grpc.StatusCode.NOT_FOUND, "ground_station"),
        (dict(window=ok_window, contact_profile="contactProfiles/nope"),
         grpc.StatusCode.NOT_FOUND, "contact_profile"),
    ]
    for overrides, expected, field in cases:
        request = pb.ListAvailableContactsRequest(
            spacecraft=SAT, ground_station=QUINCY, contact_profile="contactProfiles/downlink")
        for key, value in overrides.items():
            if key == "window":
                request.window.CopyFrom(value)
            else:
                setattr(request, key, value)
        code, _, fields, _ = await failure(env.stub.ListAvailableContacts(
            request, metadata=env.customer()))
        assert (code, set(fields)) == (expected, {field}), overrides

    # reserving an unknown spacecraft at an otherwise valid time
    start = now + 3600
    code, reason, fields, _ = await failure(env.reserve(start, start + 120,
                                                        spacecraft="satellites/12345"))
    assert (code, reason, set(fields)) == (grpc.StatusCode.NOT_FOUND, "SPACECRAFT_NOT_FOUND",
                                           {"spacecraft"})
    for call in (env.stub.GetContact(pb.GetContactRequest(name="contacts/nope"),
                                     metadata=env.customer()),
                 env.stub.GetGroundStation(pb.GetGroundStationRequest(
                     name="groundStations/atlantis"), metadata=env.customer())):
        code, _, fields, _ = await failure(call)
        assert (code, set(fields)) == (grpc.StatusCode.NOT_FOUND, {"name"})
    for call in (env.stub.GetContact(pb.GetContactRequest(name="contact/1"),
                                     metadata=env.customer()),
                 env.stub.ListContacts(pb.ListContactsRequest(state=42),
                                       metadata=env.customer()),
                 env.stub.CancelContact(pb.CancelContactRequest(name="contacts/x"),
                                        metadata=env.customer())):
        code, _, fields, _ = await failure(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and fields
    assert await env.count_contacts() == 0
    async with env.brokers[0].sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(
            contact_profiles)) == 1


async def test_concurrent_reservations_of_one_slot_fill_exactly_the_antennas(env):
    """24 reservations of one slot at once, alternating between two replicas on one
    database: exactly as many succeed as the station has antennas."""
    await env.profile(min_el=10.0, min_s=60)
    p = long_pass(env.clock(), await env.available(), 200.0)
    rise, set_ = secs(p.start_time), secs(p.end_time)
    calls = [env.reserve(rise, set_, stub=env.stubs[k % 2]) for k in range(24)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, pb.Contact)]
    lost = [o for o in outcomes if not isinstance(o, pb.Contact)]
    assert sorted(c.antenna_index for c in won) == [0, 1]
    for error in lost:
        assert isinstance(error, grpc.aio.AioRpcError), error
        details = details_of(error)
        assert (details.code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                  "NO_ANTENNA_AVAILABLE")
    assert await env.count_contacts() == 2
