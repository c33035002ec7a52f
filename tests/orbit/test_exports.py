"""ExportEphemeris through a real server, read back by independent readers: CCSDS OEM (KVN)
by a parser written here from CCSDS 502.0-B-3 (not the exporter's code), CZML by json and
czml3's models; both against Propagate of the same satellites at the same instants. Also:
the stream is chunked for a large selection, SGP4 flags stay out of the documents, and bad
requests are refused with the right code and the field."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from czml3 import Document, Packet
from google.protobuf import duration_pb2
from skybridge.common.v1 import common_pb2
from skybridge.orbit.v1 import orbit_pb2

from services.orbit import walker
from services.orbit.tle import parse_tle
from shared.clients import orbit as client
from shared.status import details_of
from shared.wire import datetime_to_timestamp
from tests.conftest import bearer
from tests.orbit.conftest import DECAY, failure, tle_text, violations

EPOCH = datetime(2026, 5, 12, 6, 0, tzinfo=UTC)
START = EPOCH + timedelta(hours=2)
Request = orbit_pb2.ExportEphemerisRequest
OEM, CZML = Request.FORMAT_OEM, Request.FORMAT_CZML


_ts = datetime_to_timestamp


def _request(fmt=OEM, *, start=START, end=None, step_s=60.0, **selection) -> Request:
    request = Request(selection=client.selection(**selection), format=fmt,
                      window=common_pb2.TimeWindow(start_time=_ts(start), end_time=_ts(
                          end or start + timedelta(minutes=90, seconds=30))))
    request.step.FromTimedelta(timedelta(seconds=step_s))
    return request


async def _export(stub, request, metadata) -> tuple[list, bytes]:
    messages = [m async for m in stub.ExportEphemeris(request, metadata=metadata)]
    return messages, b"".join(m.data for m in messages)


def _instants(start: datetime, end: datetime, step_s: float) -> list[datetime]:
    """What the contract promises: start + k * step before end, then end itself."""
    out, k = [], 0
    while start + timedelta(seconds=k * step_s) < end:
        out.append(start + timedelta(seconds=k * step_s))
        k += 1
    return [*out, end]


@pytest.fixture
async def loaded(orbit, minter):
    """12 imported TLE satellites (two shells; the first with an international
    designator), in group `tle`."""
    kit, stub = orbit
    shells = [walker.WalkerShell(3, 2, 1, 550.0, 53.0, name="LEO"),
              walker.WalkerShell(2, 3, 1, 1200.0, 87.9, name="POLAR")]
    sets = walker.walker_shells(shells, EPOCH, 70000)
    sets[0] = dataclasses.replace(sets[0], intl_designator="26012B")
    text = tle_text(sets)
    parsed, _ = parse_tle(text)
    await stub.ImportElementSets(orbit_pb2.ImportElementSetsRequest(text=text, group_id="tle"),
                                 metadata=bearer(minter, "orbit.write"))
    return stub, parsed, bearer(minter, "orbit.read")


# --- an OEM (KVN) reader, from CCSDS 502.0-B-3 --------------------------------------------
#
# KVN: one "KEYWORD = value" per line, blanks around "=" optional, blank lines allowed,
# COMMENT lines ("COMMENT text") at the start of the header, of a metadata block and of a
# data section. The header starts with CCSDS_OEM_VERS, then CREATION_DATE and ORIGINATOR
# (CLASSIFICATION and MESSAGE_ID optional). Each segment: META_START, then in this order
# OBJECT_NAME, OBJECT_ID, CENTER_NAME, REF_FRAME, [REF_FRAME_EPOCH], TIME_SYSTEM,
# START_TIME, [USEABLE_START_TIME], [USEABLE_STOP_TIME], STOP_TIME, [INTERPOLATION],
# [INTERPOLATION_DEGREE], META_STOP; then data lines "epoch x y z x_dot y_dot z_dot"
# ([x_ddot y_ddot z_ddot]), km and km/s, epochs increasing, within START..STOP; an
# optional covariance section (not written here). Epochs: YYYY-MM-DDThh:mm:ss[.d...][Z] or
# YYYY-DDDThh:mm:ss[.d...][Z].

_META_ORDER = ["OBJECT_NAME", "OBJECT_ID", "CENTER_NAME", "REF_FRAME", "REF_FRAME_EPOCH",
               "TIME_SYSTEM", "START_TIME", "USEABLE_START_TIME", "USEABLE_STOP_TIME",
               "STOP_TIME", "INTERPOLATION", "INTERPOLATION_DEGREE"]
_META_REQUIRED = {"OBJECT_NAME", "OBJECT_ID", "CENTER_NAME", "REF_FRAME", "TIME_SYSTEM",
                  "START_TIME", "STOP_TIME"}
_HEADER_KEYS = ["CCSDS_OEM_VERS", "CLASSIFICATION", "CREATION_DATE", "ORIGINATOR",
                "MESSAGE_ID"]
_KV = re.compile(r"^([A-Z_][A-Z0-9_]*)\s*=\s*(.*?)\s*$")
_EPOCH = re.compile(r"^(\d{4})-(?:(\d{2})-(\d{2})|(\d{3}))T(\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)Z?$")


def parse_epoch(text: str) -> datetime:
    m = _EPOCH.match(text)
    assert m, f"not a CCSDS epoch: {text!r}"
    year, month, day, doy, hh, mm, ss = m.groups()
    base = (datetime(int(year), int(month), int(day), tzinfo=UTC) if month else
            datetime(int(year), 1, 1, tzinfo=UTC) + timedelta(days=int(doy) - 1))
    return base + timedelta(hours=int(hh), minutes=int(mm), seconds=float(ss))


def parse_oem(text: str) -> tuple[dict, list[dict]]:
    """(header, segments); a segment is {"meta", "comments", "epochs", "states"}."""
    assert text.isascii(), "KVN is ASCII"
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    assert lines and _KV.match(lines[0]) and lines[0].startswith("CCSDS_OEM_VERS"), lines[:1]
    header: dict = {"COMMENT": []}
    i = 0
    while i < len(lines) and lines[i] != "META_START":
        if lines[i].startswith("COMMENT"):
            assert len(header) == 2, "header comments come right after CCSDS_OEM_VERS"
            header["COMMENT"].append(lines[i][7:].strip())
        else:
            m = _KV.match(lines[i])
            assert m and m.group(1) in _HEADER_KEYS, f"bad header line {lines[i]!r}"
            assert m.group(1) not in header, f"repeated {m.group(1)}"
            header[m.group(1)] = m.group(2)
        i += 1
    segments = []
    while i < len(lines):
        assert lines[i] == "META_START", lines[i]
        i += 1
        meta: dict = {}
        comments: list[str] = []
        while lines[i] != "META_STOP":
            if lines[i].startswith("COMMENT"):
                assert not meta, "metadata comments come first"
                comments.append(lines[i][7:].strip())
            else:
                m = _KV.match(lines[i])
                assert m and m.group(1) in _META_ORDER, f"bad metadata line {lines[i]!r}"
                meta[m.group(1)] = m.group(2)
            i += 1
        i += 1
        keys = list(meta)
        assert keys == sorted(keys, key=_META_ORDER.index), f"metadata order {keys}"
        assert _META_REQUIRED <= set(keys), f"missing {_META_REQUIRED - set(keys)}"
        data_comments, epochs, states = [], [], []
        while i < len(lines) and lines[i] != "META_START":
            if lines[i].startswith("COMMENT"):
                assert not epochs, "data comments come before the first data line"
                data_comments.append(lines[i][7:].strip())
            else:
                fields = lines[i].split()
                assert len(fields) in (7, 10), f"bad data line {lines[i]!r}"
                epochs.append(parse_epoch(fields[0]))
                states.append([float(v) for v in fields[1:7]])
            i += 1
        assert epochs, "a segment has at least one data line"
        assert all(b > a for a, b in zip(epochs, epochs[1:], strict=False)), "epochs increase"
        start, stop = parse_epoch(meta["START_TIME"]), parse_epoch(meta["STOP_TIME"])
        assert start <= epochs[0] and epochs[-1] <= stop
        segments.append({"meta": meta, "comments": comments, "data_comments": data_comments,
                         "epochs": epochs, "states": np.array(states)})
    return header, segments


# --- OEM ----------------------------------------------------------------------------------


async def test_oem_reads_back_as_propagate_teme(loaded):
    stub, sets, read = loaded
    end = START + timedelta(minutes=90, seconds=30)
    picked = [s.catalog_number for s in sets]
    messages, document = await _export(stub, _request(OEM, catalog_numbers=picked[::-1]),
                                       read)
    first = messages[0]
    assert first.media_type == "text/plain; charset=us-ascii"
    assert first.file_name.endswith(".oem") and "20260512T080000Z" in first.file_name
    assert first.satellite_count == 12 and first.catalog_version > 0
    times = _instants(START, end, 60.0)
    assert first.samples_per_satellite == len(times) == 92  # 91 minutes and the 90:30 end
    header, segments = parse_oem(document.decode("ascii"))
    assert header["CCSDS_OEM_VERS"] == "3.0" and header["ORIGINATOR"]
    created = parse_epoch(header["CREATION_DATE"])
    assert abs((created - datetime.now(UTC)).total_seconds()) < 3600
    expected = await client.propagate(stub, catalog_numbers=picked, times=times, frame="teme",
                                      include_velocity=True, metadata=read)
    by_number = {s.catalog_number: s for s in sets}
    assert len(segments) == 12  # catalog-number order, whatever the request's order
    for column, segment in enumerate(segments):
        meta = segment["meta"]
        es = by_number[picked[column]]
        assert meta["OBJECT_NAME"] == es.name
        assert meta["OBJECT_ID"] == ("2026-012B" if column == 0 else str(es.catalog_number))
        assert (meta["CENTER_NAME"], meta["REF_FRAME"], meta["TIME_SYSTEM"]) == (
            "EARTH", "TEME", "UTC")
        assert parse_epoch(meta["START_TIME"]) == START
        assert parse_epoch(meta["STOP_TIME"]) == end
        assert meta["INTERPOLATION"] == "LAGRANGE" and int(meta["INTERPOLATION_DEGREE"]) >= 1
        assert segment["epochs"] == times
        states = segment["states"]
        # 6 decimals of km (0.5 mm) and 9 of km/s
        assert np.abs(states[:, :3] - expected.positions[:, column]).max() < 1e-6
        assert np.abs(states[:, 3:] - expected.velocities[:, column]).max() < 1e-9
        assert 6900 < np.linalg.norm(states[0, :3]) < 7700


async def test_oem_leaves_flagged_samples_and_satellites_out(orbit, minter):
    _, stub = orbit
    await stub.ImportElementSets(orbit_pb2.ImportElementSetsRequest(text=DECAY),
                                 metadata=bearer(minter, "orbit.write"))
    read = bearer(minter, "orbit.read")
    (decay,), _ = parse_tle(DECAY)
    end = decay.epoch + timedelta(hours=2)
    times = _instants(decay.epoch, end, 300.0)
    expected = await client.propagate(stub, catalog_numbers=[28872], times=times,
                                      frame="teme", metadata=read)
    good = expected.error_codes[:, 0] == 0
    assert 0 < good.sum() < len(times)  # the kernel flags some of these instants
    messages, document = await _export(stub, _request(
        OEM, start=decay.epoch, end=end, step_s=300.0, catalog_numbers=[28872]), read)
    _, (segment,) = parse_oem(document.decode("ascii"))
    assert segment["meta"]["OBJECT_ID"] == "2005-037B"
    assert segment["epochs"] == [t for t, ok in zip(times, good, strict=True) if ok]
    assert np.abs(segment["states"][:, :3] - expected.positions[good, 0]).max() < 1e-6
    assert any("left out" in c for c in segment["data_comments"])
    assert not any(m.omitted_satellites for m in messages)
    # a window where every sample is flagged: the satellite is left out, and said so
    flagged = [t for t, ok in zip(times, good, strict=True) if not ok]
    for fmt in (OEM, CZML):
        messages, document = await _export(stub, _request(
            fmt, start=flagged[0], end=flagged[-1], step_s=300.0, catalog_numbers=[28872]),
            read)
        assert [s for m in messages for s in m.omitted_satellites] == ["satellites/28872"]
        if fmt == OEM:
            header, segments = parse_oem(document.decode("ascii"))
            assert segments == [] and header["CCSDS_OEM_VERS"] == "3.0"
        else:
            assert [p["id"] for p in json.loads(document)] == ["document"]


# --- CZML ---------------------------------------------------------------------------------


async def test_czml_round_trips_through_czml3_and_matches_propagate_itrf(loaded):
    stub, sets, read = loaded
    end = START + timedelta(minutes=90, seconds=30)
    messages, document = await _export(stub, _request(CZML, group="tle"), read)
    assert messages[0].media_type == "application/json"
    assert messages[0].file_name.endswith(".czml")
    packets = json.loads(document)
    assert isinstance(packets, list) and len(packets) == 1 + 12
    doc = Document.model_validate(packets)  # czml3's document rules (preamble first)
    assert len(doc.packets) == 13
    for raw in packets:  # each packet round-trips through czml3's model unchanged
        assert Packet.model_validate(raw).to_dict() == raw
    preamble = packets[0]
    assert preamble["id"] == "document" and preamble["version"] == "1.0"
    clock_start, clock_end = preamble["clock"]["interval"].split("/")
    assert (parse_epoch(clock_start), parse_epoch(clock_end)) == (START, end)
    times = _instants(START, end, 60.0)
    picked = [s.catalog_number for s in sets]
    expected = await client.propagate(stub, catalog_numbers=picked, times=times,
                                      frame="itrf", metadata=read)
    for column, packet in enumerate(packets[1:]):
        assert packet["id"] == f"satellites/{picked[column]}"
        assert packet["name"] == sets[column].name
        assert packet["label"]["text"] == sets[column].name and "point" in packet
        position = packet["position"]
        assert position["referenceFrame"] == "FIXED"
        assert position["interpolationAlgorithm"] == "LAGRANGE"
        assert parse_epoch(position["epoch"]) == START
        samples = np.array(position["cartesian"]).reshape(-1, 4)
        assert samples.shape[0] == messages[0].samples_per_satellite == len(times)
        offsets = [(t - START).total_seconds() for t in times]
        assert np.allclose(samples[:, 0], offsets, rtol=0, atol=1e-6)
        # metres, rounded to the millimetre
        assert np.abs(samples[:, 1:] - expected.positions[:, column] * 1000.0).max() < 1e-3


# --- a large selection ----------------------------------------------------------------------


@pytest.fixture
async def big(orbit, minter):
    """400 generated satellites in group `big`."""
    _, stub = orbit
    await stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
        shells=[orbit_pb2.WalkerShell(planes=20, satellites_per_plane=20, phasing=1,
                                      altitude_km=550.0, inclination_deg=53.0,
                                      name_prefix="BIG")],
        group_id="big", epoch_time=_ts(EPOCH)), metadata=bearer(minter, "orbit.write"))
    return stub, bearer(minter, "orbit.read")


async def test_a_large_selection_streams_in_bounded_chunks(big):
    stub, read = big
    # 400 satellites x 601 samples: more than one computing batch and many messages
    end = START + timedelta(hours=10)
    for fmt in (OEM, CZML):
        messages, document = await _export(stub, _request(fmt, end=end, group="big"), read)
        assert len(messages) > 2, fmt
        assert all(0 < len(m.data) <= 1 << 20 for m in messages)
        assert [bool(m.media_type) for m in messages] == [True] + [False] * (len(messages) - 1)
        assert messages[0].satellite_count == 400 and messages[0].samples_per_satellite == 601
        if fmt == OEM:
            _, segments = parse_oem(document.decode("ascii"))
            assert len(segments) == 400
            assert all(len(s["epochs"]) == 601 for s in segments)
        else:
            packets = json.loads(document)
            assert len(packets) == 401 and len({p["id"] for p in packets}) == 401
            assert all(len(p["position"]["cartesian"]) == 4 * 601 for p in packets[1:])
        del document, messages


async def test_too_many_samples_is_resource_exhausted(big):
    stub, read = big
    # 400 satellites x 100,000 samples (the most per satellite) = 40 million
    request = _request(OEM, end=START + timedelta(seconds=99_999), step_s=1.0, group="big")
    error = await failure(_export(stub, request, read))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = details_of(error)
    assert details.reason == "TOO_MANY_SAMPLES"
    assert "20000000" in violations(error)["step"]


# --- bad requests ---------------------------------------------------------------------------


async def test_bad_requests_name_the_field(loaded, minter):
    stub, _, read = loaded

    async def refused(request, code=grpc.StatusCode.INVALID_ARGUMENT, metadata=read):
        error = await failure(_export(stub, request, metadata))
        assert error.code() == code, (request, error)
        return violations(error)

    assert "window.end_time" in await refused(_request(end=START, group="tle"))  # empty
    assert "window.end_time" in await refused(_request(end=START - timedelta(hours=1),
                                                       group="tle"))  # reversed
    for step in (0.0, -60.0, 2 * 86_400.0, 1e-4):
        assert "step" in await refused(_request(step_s=step, group="tle")), step
    request = _request(group="tle")
    request.step.CopyFrom(duration_pb2.Duration(seconds=1, nanos=500))  # finer than 1 us
    assert "microseconds" in (await refused(request))["step"]
    request = _request(group="tle")
    request.window.start_time.nanos = 1
    assert "window.start_time" in await refused(request)
    request = _request(group="tle")
    request.ClearField("step")
    assert "step" in await refused(request)
    request = _request(group="tle")
    request.ClearField("window")
    assert "window" in await refused(request)
    request = _request(group="tle")
    request.ClearField("selection")
    assert "selection" in await refused(request)
    # more than 100,000 samples for one satellite
    fields = await refused(_request(end=START + timedelta(days=2), step_s=1.0, group="tle"))
    assert "100000" in fields["step"]
    # formats: unspecified and unknown
    assert "format" in await refused(_request(fmt=Request.FORMAT_UNSPECIFIED, group="tle"))
    assert "format" in await refused(_request(fmt=7, group="tle"))
    # names: malformed, unknown, unknown group
    request = _request(group="tle")
    request.selection.ClearField("group")
    request.selection.satellites.extend(["satellites/70000", "satellites/12345"])
    assert set(await refused(request, grpc.StatusCode.NOT_FOUND)) == {
        "selection.satellites[1]"}
    request.selection.satellites[1] = "satellite/7"
    assert "selection.satellites[1]" in await refused(request)
    assert "selection.group" in await refused(_request(group="nope"),
                                              grpc.StatusCode.NOT_FOUND)
    # a window too far from the element sets' epochs
    error = await failure(_export(stub, _request(start=EPOCH + timedelta(days=60),
                                                 group="tle"), read))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(error).reason == "TOO_FAR_FROM_EPOCH" and "window" in violations(error)
    # the scope
    error = await failure(_export(stub, _request(group="tle"),
                                  bearer(minter, "orbit.write")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
