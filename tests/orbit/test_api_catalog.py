"""OrbitService catalog RPCs through a real server on loopback, on SQLite and PostgreSQL:
import (TLE, OMM, Alpha-5, history), generation and seeding, queries, errors, auth."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from skybridge.orbit.v1 import orbit_pb2
from sqlalchemy import func, select

from services.orbit import walker
from services.orbit.store import Catalog
from services.orbit.tables import ElementSetRow, SatelliteRow
from services.orbit.tle import parse_tle
from shared.status import details_of
from tests.conftest import bearer
from tests.orbit.conftest import ISS_L1, ISS_L2, failure, start_orbit, tle_text, violations
from tests.orbit.test_omm import RECORD

GEO = (
    "1 26900U 01039A   06106.74503247  .00000045  00000-0  10000-3 0  8290\n"
    "2 26900   0.0164 266.5378 0003319  86.1794 182.2590  1.00273847 16981\n"
)
EPOCH = datetime(2026, 5, 12, 6, 0, tzinfo=UTC)


def _ts(dt: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt)
    return ts


async def _count(kit, row) -> int:
    async with kit.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(row)))


def _import(text: str, **kw) -> orbit_pb2.ImportElementSetsRequest:
    return orbit_pb2.ImportElementSetsRequest(text=text, **kw)


async def test_mixed_tle_import_counts_and_rejections(orbit, minter):
    kit, stub = orbit
    bad_checksum = ISS_L2[:-1] + str((int(ISS_L2[-1]) + 1) % 10)
    text = (
        f"ISS (ZARYA)\n{ISS_L1}\n{ISS_L2}\n"  # lines 1-3: good 3-line record
        f"BROKEN\n{ISS_L1}\n{bad_checksum}\n"  # lines 4-6: wrong checksum
        f"{GEO}"  # lines 7-8: good 2-line record
        "this is not a TLE line\n"  # line 9: garbage
    )
    answer = await stub.ImportElementSets(_import(text, group_id="mixed"),
                                          metadata=bearer(minter, "orbit.write"))
    assert (answer.added_count, answer.updated_count, answer.unchanged_count,
            answer.rejected_count) == (2, 0, 0, 2)
    rejected = {r.line_number: r.reason for r in answer.rejected_records}
    assert set(rejected) == {4, 9}
    assert "checksum" in rejected[4]
    assert answer.group == "groups/mixed" and answer.catalog_version >= 1
    assert await _count(kit, SatelliteRow) == 2
    read = bearer(minter, "orbit.read")
    sat = (await stub.GetSatellite(orbit_pb2.GetSatelliteRequest(name="satellites/25544"),
                                   metadata=read)).satellite
    assert sat.object_name == "ISS (ZARYA)" and sat.intl_designator == "98067A"
    assert sat.element_set.inclination_deg == pytest.approx(51.6439)
    assert list(sat.groups) == ["groups/mixed"]
    group = (await stub.GetGroup(orbit_pb2.GetGroupRequest(name="groups/mixed"),
                                 metadata=read)).group
    assert group.satellite_count == 2 and group.kind == orbit_pb2.Group.KIND_IMPORT

    # the same file again: nothing new, nothing lost
    again = await stub.ImportElementSets(_import(text, group_id="mixed"),
                                         metadata=bearer(minter, "orbit.write"))
    assert (again.added_count, again.updated_count, again.unchanged_count,
            again.rejected_count) == (0, 0, 2, 2)
    assert again.catalog_version == answer.catalog_version  # no change, no new version


async def test_all_bad_records_is_invalid_argument_and_stores_nothing(orbit, minter):
    kit, stub = orbit
    bad = ISS_L1[:20] + "X" + ISS_L1[21:]
    error = await failure(stub.ImportElementSets(
        _import(f"{bad}\n{ISS_L2}\n"), metadata=bearer(minter, "orbit.write")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = details_of(error)
    assert details.reason == "NO_VALID_RECORDS"
    assert details.violations[0].field == "text"
    assert "line/record 1" in details.violations[0].description
    for text in ("", "   \n\n"):
        error = await failure(stub.ImportElementSets(_import(text),
                                                     metadata=bearer(minter, "orbit.write")))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "text" in violations(error)
    assert await _count(kit, SatelliteRow) == 0


async def test_import_is_one_transaction(orbit, minter, monkeypatch):
    """A failure after the element sets were written leaves the catalog as it was."""
    kit, stub = orbit
    await stub.ImportElementSets(_import(GEO), metadata=bearer(minter, "orbit.write"))

    async def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Catalog, "_add_members", explode)
    error = await failure(stub.ImportElementSets(
        _import(f"{ISS_L1}\n{ISS_L2}\n", group_id="doomed"),
        metadata=bearer(minter, "orbit.write")))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert await _count(kit, SatelliteRow) == 1
    assert await _count(kit, ElementSetRow) == 1


async def test_omm_json_csv_xml_and_unknown_keys(orbit, minter):
    _, stub = orbit
    write = bearer(minter, "orbit.write")
    records = [RECORD, dict(RECORD, NORAD_CAT_ID=25545, SHINY=True),
               dict(RECORD, NORAD_CAT_ID=25546, INCLINATION="51.6")]
    answer = await stub.ImportElementSets(
        _import(json.dumps(records), format=orbit_pb2.ImportElementSetsRequest.FORMAT_OMM_JSON),
        metadata=write)
    assert (answer.added_count, answer.rejected_count) == (1, 2)
    by_line = {r.line_number: r for r in answer.rejected_records}
    assert by_line[2].field == "SHINY" and "unknown key" in by_line[2].reason
    assert by_line[3].field == "INCLINATION"
    csv_text = ",".join(RECORD) + "\n" + ",".join(
        str(dict(RECORD, NORAD_CAT_ID=40000)[k]) for k in RECORD) + "\n"
    answer = await stub.ImportElementSets(_import(csv_text), metadata=write)  # detected
    assert (answer.added_count, answer.rejected_count) == (1, 0)
    sat = (await stub.GetSatellite(orbit_pb2.GetSatelliteRequest(name="satellites/40000"),
                                   metadata=bearer(minter, "orbit.read"))).satellite
    assert sat.element_set.epoch_time.ToDatetime(UTC) == datetime(
        2019, 12, 9, 16, 38, 29, 363424, tzinfo=UTC)


async def test_alpha5_and_large_catalog_numbers(orbit, minter):
    _, stub = orbit
    sets = walker.walker_delta(walker.WalkerShell(1, 2, 0, 550.0, 53.0, name="A5"), EPOCH,
                               first_catalog_number=123456)  # Alpha-5 "C3456"
    text = tle_text(sets)
    assert "1 C3456U" in text
    answer = await stub.ImportElementSets(_import(text), metadata=bearer(minter, "orbit.write"))
    assert answer.added_count == 2
    omm = json.dumps([dict(RECORD, NORAD_CAT_ID=700000123)])
    answer = await stub.ImportElementSets(_import(omm), metadata=bearer(minter, "orbit.write"))
    assert answer.added_count == 1
    page = await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(min_catalog_number=100000),
                                     metadata=bearer(minter, "orbit.read"))
    assert [s.catalog_number for s in page.satellites] == [123456, 123457, 700000123]
    assert page.satellites[0].name == "satellites/123456"


async def test_history_by_epoch_newest_by_default(orbit, minter):
    _, stub = orbit
    write, read = bearer(minter, "orbit.write"), bearer(minter, "orbit.read")
    (old,), _ = parse_tle(f"{ISS_L1}\n{ISS_L2}\n")
    newer = dataclasses.replace(old, epoch=old.epoch + timedelta(days=1), epoch_jd=None,
                                epoch_fr=None, mean_anomaly_deg=100.0, _satrec_cache=[])
    # newer first, then the older one: order of arrival does not matter
    first = await stub.ImportElementSets(_import(tle_text([newer])), metadata=write)
    second = await stub.ImportElementSets(_import(tle_text([old])), metadata=write)
    assert (first.added_count, second.updated_count) == (1, 1)
    sat = (await stub.GetSatellite(orbit_pb2.GetSatelliteRequest(name="satellites/25544"),
                                   metadata=read)).satellite
    assert sat.element_set_count == 2
    assert sat.element_set.mean_anomaly_deg == pytest.approx(100.0)
    as_of = await stub.GetSatellite(orbit_pb2.GetSatelliteRequest(
        name="satellites/25544", as_of_time=_ts(old.epoch + timedelta(hours=1))), metadata=read)
    assert as_of.satellite.element_set.mean_anomaly_deg == pytest.approx(85.6398)
    error = await failure(stub.GetSatellite(orbit_pb2.GetSatelliteRequest(
        name="satellites/25544", as_of_time=_ts(old.epoch - timedelta(days=1))), metadata=read))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "as_of_time" in violations(error)
    history = await stub.ListElementSets(orbit_pb2.ListElementSetsRequest(
        parent="satellites/25544", page_size=1), metadata=read)
    assert history.element_sets[0].mean_anomaly_deg == pytest.approx(100.0)
    rest = await stub.ListElementSets(orbit_pb2.ListElementSetsRequest(
        parent="satellites/25544", page_size=1, page_token=history.next_page_token),
        metadata=read)
    assert rest.element_sets[0].mean_anomaly_deg == pytest.approx(85.6398)
    assert rest.next_page_token == ""
    # same epoch, different values: an update of that element set, not a new one
    changed = dataclasses.replace(newer, mean_anomaly_deg=120.0, _satrec_cache=[])
    third = await stub.ImportElementSets(_import(tle_text([changed])), metadata=write)
    assert third.updated_count == 1
    sat = (await stub.GetSatellite(orbit_pb2.GetSatelliteRequest(name="satellites/25544"),
                                   metadata=read)).satellite
    assert sat.element_set_count == 2 and sat.element_set.mean_anomaly_deg == pytest.approx(120.0)


async def test_generator_presets_shells_and_conflicts(orbit, minter):
    _, stub = orbit
    write, read = bearer(minter, "orbit.write"), bearer(minter, "orbit.read")
    gen1 = await stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        preset="starlink_gen1", group_id="gen1", epoch_time=_ts(EPOCH)), metadata=write)
    assert gen1.satellite_count == 1584 + 1584 + 720 + 348 + 172 == 4408
    assert gen1.group.satellite_count == 4408
    assert gen1.group.kind == orbit_pb2.Group.KIND_CONSTELLATION
    assert (gen1.first_catalog_number, gen1.last_catalog_number) == (900000, 904407)
    sensors = await stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        preset="tracking_sensors", group_id="sensors", epoch_time=_ts(EPOCH)), metadata=write)
    assert sensors.satellite_count == 4 and sensors.first_catalog_number == 904408
    assert sensors.group.kind == orbit_pb2.Group.KIND_SENSORS
    shell = orbit_pb2.WalkerShell(planes=3, satellites_per_plane=4, phasing=1, altitude_km=800,
                                  inclination_deg=60, name_prefix="DEMO")
    custom = await stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        shells=[shell], group_id="demo", first_catalog_number=500000, epoch_time=_ts(EPOCH)),
        metadata=write)
    assert custom.satellite_count == 12
    sat = (await stub.GetSatellite(orbit_pb2.GetSatelliteRequest(name="satellites/500005"),
                                   metadata=read)).satellite
    assert sat.object_name == "DEMO-01-01"
    assert sat.element_set.inclination_deg == 60.0
    # conflicts
    error = await failure(stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        shells=[shell], group_id="demo"), metadata=write))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS and "group_id" in violations(error)
    error = await failure(stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        shells=[shell], group_id="demo2", first_catalog_number=500010), metadata=write))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "first_catalog_number" in violations(error)
    bad = orbit_pb2.WalkerShell(planes=0, satellites_per_plane=4, phasing=1,
                                altitude_km=100.0, inclination_deg=200)
    error = await failure(stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        shells=[bad], group_id="Bad Id"), metadata=write))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"shells[0].planes", "shells[0].altitude_km", "shells[0].inclination_deg",
            "group_id"} <= set(violations(error))
    # A non-finite number is refused by the contract checks before the domain's, by path.
    bad.altitude_km = float("nan")
    error = await failure(stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        shells=[bad], group_id="Bad Id"), metadata=write))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(error)) == {"shells[0].altitude_km"}
    error = await failure(stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        preset="nope", group_id="x"), metadata=write))
    assert "preset" in violations(error)
    groups = await stub.ListGroups(orbit_pb2.ListGroupsRequest(page_size=2), metadata=read)
    rest = await stub.ListGroups(orbit_pb2.ListGroupsRequest(
        page_size=2, page_token=groups.next_page_token), metadata=read)
    assert [g.name for g in [*groups.groups, *rest.groups]] == [
        "groups/demo", "groups/gen1", "groups/sensors"]


async def test_request_id_replays_the_first_answer(orbit, minter):
    kit, stub = orbit
    write = bearer(minter, "orbit.write")
    request = orbit_pb2.GenerateConstellationRequest(
        preset="tracking_sensors", group_id="trk", epoch_time=_ts(EPOCH), request_id="r-1")
    first = await stub.GenerateConstellation(request, metadata=write)
    again = await stub.GenerateConstellation(request, metadata=write)
    assert again == first and await _count(kit, SatelliteRow) == 4
    other = orbit_pb2.GenerateConstellationRequest(preset="tracking_sensors", group_id="trk2",
                                                   request_id="r-1")
    error = await failure(stub.GenerateConstellation(other, metadata=write))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in violations(error)


async def test_list_filters_and_pagination(orbit, minter):
    _, stub = orbit
    write, read = bearer(minter, "orbit.write"), bearer(minter, "orbit.read")
    await stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        preset="tracking_sensors", group_id="sensors", epoch_time=_ts(EPOCH)), metadata=write)
    await stub.ImportElementSets(_import(f"ISS (ZARYA)\n{ISS_L1}\n{ISS_L2}\n{GEO}"),
                                 metadata=write)
    seen, token = [], ""
    while True:
        page = await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(
            page_size=2, page_token=token), metadata=read)
        assert page.total_size == 6
        seen += [s.catalog_number for s in page.satellites]
        token = page.next_page_token
        if not token:
            break
    assert seen == [25544, 26900, 900000, 900001, 900002, 900003]
    by_name = await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(name_contains="zarya"),
                                        metadata=read)
    assert [s.catalog_number for s in by_name.satellites] == [25544]
    by_group = await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(
        group="groups/sensors", max_catalog_number=900001), metadata=read)
    assert [s.catalog_number for s in by_group.satellites] == [900000, 900001]
    # a token only works with the filters it was made for
    first = await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(page_size=1),
                                      metadata=read)
    error = await failure(stub.ListSatellites(orbit_pb2.ListSatellitesRequest(
        page_size=1, page_token=first.next_page_token, name_contains="x"), metadata=read))
    assert "page_token" in violations(error)
    for bad in (orbit_pb2.ListSatellitesRequest(page_size=-1),
                orbit_pb2.ListSatellitesRequest(page_token="garbage!"),
                orbit_pb2.ListSatellitesRequest(group="nogroups/x"),
                orbit_pb2.ListSatellitesRequest(min_catalog_number=5, max_catalog_number=4)):
        error = await failure(stub.ListSatellites(bad, metadata=read))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert violations(error)
    error = await failure(stub.ListSatellites(orbit_pb2.ListSatellitesRequest(
        group="groups/unknown"), metadata=read))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_unknown_and_malformed_names(orbit, minter):
    _, stub = orbit
    read = bearer(minter, "orbit.read")
    error = await failure(stub.GetSatellite(orbit_pb2.GetSatelliteRequest(
        name="satellites/99999"), metadata=read))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "name" in violations(error)
    for name in ("satellite/1", "satellites/-1", "satellites/abc", ""):
        error = await failure(stub.GetSatellite(orbit_pb2.GetSatelliteRequest(name=name),
                                                metadata=read))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "name" in violations(error)
    error = await failure(stub.GetGroup(orbit_pb2.GetGroupRequest(name="groups/none"),
                                        metadata=read))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await failure(stub.ListElementSets(orbit_pb2.ListElementSetsRequest(
        parent="satellites/1"), metadata=read))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_scopes(orbit, minter):
    _, stub = orbit
    error = await failure(stub.ImportElementSets(_import(GEO), metadata=bearer(minter,
                                                                              "orbit.read")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details_of(error).metadata["required_scopes"] == "orbit.write"
    error = await failure(stub.ListSatellites(orbit_pb2.ListSatellitesRequest(),
                                              metadata=bearer(minter, "orbit.write")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await failure(stub.ListSatellites(orbit_pb2.ListSatellitesRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(),
                              metadata=bearer(minter, "orbit.read"))


async def test_seeding_is_idempotent(settings, minter):
    kit = await start_orbit(settings, seed=True)
    await kit.server.drain(0)
    kit = await start_orbit(settings, seed=True)  # same store: nothing added twice
    try:
        groups = await kit.servicer.catalog.list_groups(after=None, limit=10)
        assert {(g.group_id, g.satellite_count, g.kind) for g in groups} == {
            ("starlink-gen1", 4408, "constellation"), ("tracking-sensors", 4, "sensors")}
        assert await _count(kit, SatelliteRow) == 4412
    finally:
        await kit.server.drain(0)


async def test_creation_and_update_times_are_the_writes_times(orbit, minter):
    """create_time is the first write's, update_time the latest change's, to the
    microsecond, for satellites, element sets and groups (both backends)."""
    _, stub = orbit
    write, read = bearer(minter, "orbit.write"), bearer(minter, "orbit.read")
    (old,), _ = parse_tle(f"{ISS_L1}\n{ISS_L2}\n")
    before = datetime.now(UTC)
    await stub.ImportElementSets(_import(tle_text([old]), group_id="stations"), metadata=write)
    between = datetime.now(UTC)
    newer = dataclasses.replace(old, epoch=old.epoch + timedelta(days=1), epoch_jd=None,
                                epoch_fr=None, _satrec_cache=[])
    await stub.ImportElementSets(_import(tle_text([newer])), metadata=write)
    after = datetime.now(UTC)
    sat = (await stub.GetSatellite(orbit_pb2.GetSatelliteRequest(name="satellites/25544"),
                                   metadata=read)).satellite
    created = sat.create_time.ToDatetime(tzinfo=UTC)
    updated = sat.update_time.ToDatetime(tzinfo=UTC)
    assert before <= created <= between <= updated <= after
    assert sat.element_set.create_time.ToDatetime(tzinfo=UTC) == updated  # the newer set
    history = await stub.ListElementSets(orbit_pb2.ListElementSetsRequest(
        parent="satellites/25544"), metadata=read)
    assert [s.create_time.ToDatetime(tzinfo=UTC) for s in history.element_sets] == [
        updated, created]
    group = (await stub.GetGroup(orbit_pb2.GetGroupRequest(name="groups/stations"),
                                 metadata=read)).group
    assert group.create_time.ToDatetime(tzinfo=UTC) == created
    assert group.update_time.ToDatetime(tzinfo=UTC) == created  # no member added since
