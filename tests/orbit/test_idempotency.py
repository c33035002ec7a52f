"""Idempotency of the orbit service's mutating calls under retries and races, through a
real server on loopback with an empty catalog, on SQLite and PostgreSQL: the contract
every service keeps (`shared.idempotency`): the first answer for a retry, one effect for
64 identical calls, REQUEST_ID_REUSED for the same request_id with another body, and keys
that belong to the caller's tenant."""

from __future__ import annotations

from skybridge.orbit.v1 import orbit_pb2

from tests.conftest import bearer
from tests.idempotency import assert_reused, race
from tests.orbit.conftest import ISS_L1, ISS_L2

ISS = f"ISS (ZARYA)\n{ISS_L1}\n{ISS_L2}\n"


def writer(minter, tenant="skybridge"):
    return bearer(minter, "orbit.write", "orbit.read", tenant=tenant, subject=f"{tenant}-ops")


def constellation(group_id: str, request_id: str, planes=2
                  ) -> orbit_pb2.GenerateConstellationRequest:
    return orbit_pb2.GenerateConstellationRequest(
        group_id=group_id, request_id=request_id, shells=[orbit_pb2.WalkerShell(
            planes=planes, satellites_per_plane=3, phasing=1, altitude_km=550.0,
            inclination_deg=53.0)])


async def test_generate_constellation_retried_raced_and_reused(orbit, minter):
    _, stub = orbit
    who = writer(minter)
    # 64 at once on an empty catalog: one group, one answer.
    answers = await race(lambda: stub.GenerateConstellation(constellation("shell-a", "gen-a"),
                                                            metadata=who))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    first = answers[0]
    assert first.satellite_count == 6 and first.catalog_version == 1
    assert await stub.GenerateConstellation(constellation("shell-a", "gen-a"),
                                            metadata=who) == first
    await assert_reused(stub.GenerateConstellation(constellation("shell-a", "gen-a", planes=3),
                                                   metadata=who))
    await assert_reused(stub.GenerateConstellation(constellation("shell-b", "gen-a"),
                                                   metadata=who))
    listed = await stub.ListGroups(orbit_pb2.ListGroupsRequest(), metadata=who)
    assert [g.name for g in listed.groups] == ["groups/shell-a"]
    satellites = await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(page_size=100),
                                           metadata=who)
    assert len(satellites.satellites) == 6


async def test_import_element_sets_retried_raced_and_reused(orbit, minter):
    _, stub = orbit
    who = writer(minter)
    request = orbit_pb2.ImportElementSetsRequest(text=ISS, group_id="stations",
                                                 request_id="import-1")
    answers = await race(lambda: stub.ImportElementSets(request, metadata=who))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert (answers[0].added_count, answers[0].catalog_version) == (1, 1)
    assert await stub.ImportElementSets(request, metadata=who) == answers[0]
    await assert_reused(stub.ImportElementSets(orbit_pb2.ImportElementSetsRequest(
        text=ISS, group_id="other", request_id="import-1"), metadata=who))
    # Without a request_id an import is not idempotent: it runs again (nothing changes).
    again = await stub.ImportElementSets(orbit_pb2.ImportElementSetsRequest(text=ISS),
                                         metadata=who)
    assert again.unchanged_count == 1


async def test_orbit_keys_belong_to_the_callers_tenant(orbit, minter):
    _, stub = orbit
    ops, partner = writer(minter, "skybridge"), writer(minter, "spacex")
    ours = await stub.GenerateConstellation(constellation("shell-a", "gen-1"), metadata=ops)
    # spacex's gen-1 is spacex's own key: another body under it is not REQUEST_ID_REUSED,
    # and the same body is not a replay of our answer.
    theirs = await stub.GenerateConstellation(constellation("shell-b", "gen-1"),
                                              metadata=partner)
    assert theirs.group.name == "groups/shell-b"
    assert await stub.GenerateConstellation(constellation("shell-b", "gen-1"),
                                            metadata=partner) == theirs
    assert await stub.GenerateConstellation(constellation("shell-a", "gen-1"),
                                            metadata=ops) == ours
    await assert_reused(stub.GenerateConstellation(constellation("shell-a", "gen-1"),
                                                   metadata=partner))
    imported = orbit_pb2.ImportElementSetsRequest(text=ISS, request_id="gen-1")
    await assert_reused(stub.ImportElementSets(imported, metadata=ops))
    first = await stub.ImportElementSets(imported, metadata=writer(minter, "contoso"))
    assert first.added_count == 1
