"""ExportPathCzml over gRPC with real orbit and provisioning servers and a real database:
the CZML parses, round-trips through czml3's models, every polyline end names a packet that
has a position, the round trips per slot are EstimatePath's (or the link's), the serving
satellite's sampled position gives the slot's elevation back, and bad input names the field.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import grpc
import numpy as np
import pytest
from czml3 import Document
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb

from services.linkbroker.export_czml import (
    MAX_EXPORT_SLOTS,
    Place,
    Samples,
    path_czml,
    wanted_samples,
)
from services.linkbroker.plan import SlotPath
from shared.geodesy import enu_rotation, geodetic_to_ecef
from shared.status import details_of

QUINCY = common_pb2.GeodeticPoint(latitude_deg=47.23, longitude_deg=-119.85, altitude_m=0.0)


async def export(stub, request, who) -> tuple[list, list[pb.ExportPathCzmlResponse]]:
    chunks = [c async for c in stub.ExportPathCzml(request, metadata=who)]
    assert chunks and all(c.content_type == "application/json" for c in chunks)
    return json.loads(b"".join(chunk.data for chunk in chunks)), chunks


async def refused(stub, request, who) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.ExportPathCzml(request, metadata=who):
            pass
    return caught.value


def fields_of(error) -> set[str]:
    return {v.field for v in details_of(error).violations}


def unresolved(packets: list[dict]) -> list[str]:
    """Polyline ends (``id#position``) that name no packet with a position."""
    positioned = {p["id"] for p in packets if "position" in p}
    missing = []
    for p in packets:
        for ref in p.get("polyline", {}).get("positions", {}).get("references", []):
            target, _, prop = ref.partition("#")
            if prop != "position" or target not in positioned:
                missing.append(ref)
    return missing


def check_document(packets: list[dict]) -> dict[str, dict]:
    """The document is CZML czml3 reads and writes back unchanged; ids are unique and
    every reference resolves. Returns the packets by id."""
    text = json.dumps(packets)
    again = json.loads(Document.model_validate_json(text).model_dump_json(exclude_none=True))
    assert again == packets
    assert packets[0]["id"] == "document" and packets[0]["version"] == "1.0"
    ids = [p["id"] for p in packets]
    assert len(ids) == len(set(ids))
    assert unresolved(packets) == []
    return {p["id"]: p for p in packets}


def interval_start(interval: str) -> int:
    start = interval.split("/")[0]
    return int(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp())


def covers(availability: list[str], t: float) -> bool:
    for interval in availability:
        a, b = (datetime.fromisoformat(x.replace("Z", "+00:00")).timestamp()
                for x in interval.split("/"))
        if a <= t < b:
            return True
    return False


def sample_at(packet: dict, epoch: datetime, t: float) -> np.ndarray:
    """The position sample of a satellite packet at ``t`` (Unix seconds)."""
    position = packet["position"]
    assert position["referenceFrame"] == "FIXED"
    values = np.array(position["cartesian"]).reshape(-1, 4)
    base = datetime.fromisoformat(position["epoch"].replace("Z", "+00:00")).timestamp()
    assert base == epoch.timestamp()
    row = np.flatnonzero(np.abs(values[:, 0] - (t - base)) < 1e-6)
    assert row.size == 1, f"no sample at {t}"
    return values[row[0], 1:]


def test_a_reference_to_a_missing_packet_is_caught():
    """Negative control of the reference check: a satellite's packet taken out leaves its
    links' ends unresolved."""
    path = SlotPath(100, 7, (7, 8), "gw-a", 10.0, 25.0, 40.0)
    slots, numbers = wanted_samples([path])
    assert sorted(zip(slots.tolist(), numbers.tolist(), strict=True)) == [(100, 7), (100, 8)]
    doc = json.loads(path_czml(
        "t", [path], Place("terminal", "T", 47.0, -120.0), {"gw-a": Place(
            "gateways/gw-a", "A", 46.0, -119.0)}, Place("regions/westus2", "West US 2", 47.2,
                                                      -119.8),
        Samples(slots, numbers, np.array([[7.0e6, 0, 0], [0, 7.0e6, 0]]))))
    assert unresolved(doc) == []
    broken = [p for p in doc if p["id"] != "satellites/8"]
    assert set(unresolved(broken)) == {"satellites/8#position"}


async def test_estimate_export_is_estimate_path_as_czml(suite):
    stub = suite.stub()
    who = suite.customer(write=False)
    window = suite.window(minutes=10)
    estimate = pb.EstimatePathRequest(location=QUINCY, region="westus2", window=window)
    expected = await stub.EstimatePath(estimate, metadata=who)
    packets, chunks = await export(stub, pb.ExportPathCzmlRequest(estimate=estimate), who)
    assert chunks[0].slots == len(expected.slots) >= 40
    by_id = check_document(packets)
    # Round trips per slot: exactly EstimatePath's.
    terminal = by_id["terminal"]
    rtt = {interval_start(i["interval"]): i["number"]
           for i in terminal["properties"]["roundTripMs"]}
    assert rtt == {s.start_time.seconds: pytest.approx(s.round_trip_ms, abs=1e-9)
                   for s in expected.slots if s.routed}
    assert len(terminal["description"]) == len(expected.slots)
    serving = {interval_start(i["interval"]): i["number"]
               for i in terminal["properties"]["servingSatellite"]}
    assert serving == {s.start_time.seconds: s.serving_satellite for s in expected.slots}
    assert terminal["position"]["cartographicDegrees"] == [QUINCY.longitude_deg,
                                                           QUINCY.latitude_deg, 0.0]
    epoch = datetime.fromtimestamp(expected.slots[0].start_time.seconds, UTC)
    ground = np.asarray(geodetic_to_ecef(QUINCY.latitude_deg, QUINCY.longitude_deg, 0.0)
                        ).reshape(3)
    up = enu_rotation(np.array([QUINCY.latitude_deg]), np.array([QUINCY.longitude_deg]))[0, 2]
    for s in expected.slots:
        mid = s.start_time.seconds + 7.5
        hops = list(s.hops)
        # Every satellite, laser link, user, feeder and fibre link of the slot is there
        # and available in the slot.
        names = ([f"satellites/{n}" for n in hops] + [f"userLinks/{hops[0]}"]
                 + [f"laserLinks/{min(a, b)}-{max(a, b)}" for a, b in zip(hops, hops[1:],
                                                                         strict=False)]
                 + [f"feederLinks/{hops[-1]}-{s.gateway.removeprefix('gateways/')}",
                    f"fibre/{s.gateway.removeprefix('gateways/')}"])
        for name in names:
            assert covers(by_id[name]["availability"], mid), (name, s.start_time.seconds)
        assert s.gateway in by_id and "regions/westus2" in by_id
        # The serving satellite's sample at the slot's midpoint is where the planner saw
        # it: the same elevation above the terminal.
        r = sample_at(by_id[f"satellites/{hops[0]}"], epoch, mid)
        assert 6_700e3 < np.linalg.norm(r) < 7_100e3
        line = r - ground
        elevation = np.degrees(np.arcsin(line @ up / np.linalg.norm(line)))
        assert elevation == pytest.approx(s.elevation_deg, abs=0.01)
    # A satellite that serves no slot of this slot is not available then.
    first = expected.slots[0]
    others = {p for p in by_id if p.startswith("userLinks/")} - {
        f"userLinks/{first.serving_satellite}"}
    for name in others:
        assert not covers(by_id[name]["availability"], first.start_time.seconds + 7.5)


async def test_link_export_is_the_links_stored_plan(suite):
    stub = suite.stub()
    customer, _, terminal = await suite.active_terminal()
    who = suite.customer()
    link = (await stub.RequestLink(suite.link_request(customer, terminal, minutes=8),
                                   metadata=who)).link
    stored = (await stub.GetLink(pb.GetLinkRequest(name=link.name, include_slots=True),
                                 metadata=who)).link
    packets, chunks = await export(stub, pb.ExportPathCzmlRequest(link=link.name), who)
    assert chunks[0].slots == len(stored.slots)
    by_id = check_document(packets)
    assert packets[0]["name"] == link.name
    rtt = {interval_start(i["interval"]): i["number"]
           for i in by_id["terminal"]["properties"]["roundTripMs"]}
    assert rtt == {s.start_time.seconds: pytest.approx(s.round_trip_ms, abs=1e-9)
                   for s in stored.slots}
    lon, lat, _ = by_id["terminal"]["position"]["cartographicDegrees"]
    assert (lat, lon) == pytest.approx((47.23, -119.85))
    # A sub-window: only its slots.
    part = common_pb2.TimeWindow(start_time=stored.slots[4].start_time,
                                 end_time=stored.slots[10].start_time)
    packets, chunks = await export(stub, pb.ExportPathCzmlRequest(link=link.name,
                                                                  window=part), who)
    assert chunks[0].slots == 6
    sub = check_document(packets)
    assert sorted(interval_start(i["interval"]) for i in
                  sub["terminal"]["properties"]["roundTripMs"]) == [
        s.start_time.seconds for s in stored.slots[4:10]]
    # Outside the link's window, another tenant's, a malformed or unknown name.
    later = common_pb2.TimeWindow(start_time=stored.window.end_time)
    later.end_time.seconds = stored.window.end_time.seconds + 600
    error = await refused(stub, pb.ExportPathCzmlRequest(link=link.name, window=later), who)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(error) == {"window"}
    error = await refused(stub, pb.ExportPathCzmlRequest(link=link.name),
                          suite.customer("fabrikam"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and fields_of(error) == {"link"}
    error = await refused(stub, pb.ExportPathCzmlRequest(link="links/nope"), who)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(error) == {"link"}
    error = await refused(stub, pb.ExportPathCzmlRequest(link="links/" + "0" * 32), who)
    assert error.code() == grpc.StatusCode.NOT_FOUND and fields_of(error) == {"link"}


async def test_bad_export_requests_name_the_field(suite):
    stub = suite.stub()
    who = suite.customer(write=False)
    error = await refused(stub, pb.ExportPathCzmlRequest(), who)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(error) == {"link"}
    where = common_pb2.GeodeticPoint(latitude_deg=91, longitude_deg=0)
    error = await refused(stub, pb.ExportPathCzmlRequest(estimate=pb.EstimatePathRequest(
        location=where, region="atlantis", window=suite.window(minutes=-5))), who)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(error) == {"estimate.location.latitude_deg", "estimate.region",
                                "estimate.window.end_time"}
    error = await refused(stub, pb.ExportPathCzmlRequest(
        estimate=pb.EstimatePathRequest(location=QUINCY, region="westus2",
                                        window=suite.window()),
        window=suite.window()), who)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(error) == {"window"}
    # Over the export's size limit (planned nothing): RESOURCE_EXHAUSTED naming the window
    # and the limit.
    long = pb.ExportPathCzmlRequest(estimate=pb.EstimatePathRequest(
        location=QUINCY, region="westus2", window=suite.window(minutes=7 * 60)))
    error = await refused(stub, long, who)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    (violation,) = details_of(error).violations
    assert violation.field == "estimate.window"
    assert str(MAX_EXPORT_SLOTS) in violation.description
    error = await refused(stub, pb.ExportPathCzmlRequest(estimate=pb.EstimatePathRequest(
        location=QUINCY, region="westus2", window=suite.window())), suite.customer()[:0])
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
