"""The gateway in front of the suite's own contracts (orbit running, the others down):
answers equal to gRPC's, GET for side-effect-free calls, streams, and a body fuzz over
every procedure of the four services that never meets a 500."""

from __future__ import annotations

import base64
import json
import random
import urllib.parse
from datetime import UTC, datetime

import grpc
import numpy as np
import pytest
from connectrpc.client import ConnectClient
from google.protobuf import json_format, timestamp_pb2
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc

from services.gateway.procedures import Kind, procedures
from shared.clients import orbit as orbit_client
from tests.gateway.conftest import http, json_headers

EPOCH = datetime(2026, 12, 1, tzinfo=UTC)
ORBIT = "/skybridge.orbit.v1.OrbitService"
METHODS = {p.info.name: p.info for p in procedures()}


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


async def _generate(orbit_gateway, minter) -> None:
    request = orbit_pb2.GenerateConstellationRequest(
        shells=[orbit_pb2.WalkerShell(planes=4, satellites_per_plane=5, phasing=1,
                                      altitude_km=550.0, inclination_deg=53.0)],
        group_id="small", epoch_time=_ts(EPOCH))
    body = json_format.MessageToJson(request).encode()
    reply = await http(orbit_gateway.url + f"{ORBIT}/GenerateConstellation", body,
                       headers=json_headers(minter.mint("ops", ["orbit.write"], "contoso")))
    assert reply.status == 200, reply.body


async def test_a_list_through_the_gateway_equals_the_grpc_answer(orbit_gateway, minter):
    await _generate(orbit_gateway, minter)
    read = minter.mint("ada", ["orbit.read"], "contoso")
    reply = await http(orbit_gateway.url + f"{ORBIT}/ListSatellites", b'{"pageSize": 3}',
                       headers=json_headers(read))
    assert reply.status == 200, reply.body
    async with grpc.aio.insecure_channel(orbit_gateway.orbit_target) as channel:
        direct = await orbit_pb2_grpc.OrbitServiceStub(channel).ListSatellites(
            orbit_pb2.ListSatellitesRequest(page_size=3),
            metadata=(("authorization", f"Bearer {read}"),))
    assert reply.json() == json.loads(json_format.MessageToJson(direct))
    assert len(reply.json()["satellites"]) == 3 and reply.json()["nextPageToken"]


async def test_a_side_effect_free_call_can_be_a_get(orbit_gateway, minter):
    await _generate(orbit_gateway, minter)
    message = urllib.parse.quote(json.dumps({"name": "satellites/900000"}))
    reply = await http(orbit_gateway.url + f"{ORBIT}/GetSatellite?encoding=json&message="
                       f"{message}", headers={"Authorization":
                                              f"Bearer {minter.mint('a', ['orbit.read'], 't')}"})
    assert reply.status == 200, reply.body
    assert reply.json()["satellite"]["name"] == "satellites/900000"
    missing = urllib.parse.quote(json.dumps({"name": "satellites/1"}))
    absent = await http(orbit_gateway.url + f"{ORBIT}/GetSatellite?encoding=json&message="
                        f"{missing}", headers={"Authorization":
                                               f"Bearer {minter.mint('a', ['orbit.read'], 't')}"})
    assert absent.status == 404 and absent.json()["code"] == "not_found"


async def test_propagate_streams_the_same_states_as_grpc(orbit_gateway, minter):
    await _generate(orbit_gateway, minter)
    read = minter.mint("ada", ["orbit.read"], "contoso")
    request = orbit_client.propagate_request(group="groups/small", start=EPOCH, step_s=60.0,
                                             count=30, chunk_steps=7)
    async with ConnectClient(orbit_gateway.url) as client:
        via = [chunk async for chunk in client.execute_server_stream(
            request=request, method=METHODS["Propagate"],
            headers={"authorization": f"Bearer {read}"})]
    async with grpc.aio.insecure_channel(orbit_gateway.orbit_target) as channel:
        direct = [chunk async for chunk in orbit_pb2_grpc.OrbitServiceStub(channel).Propagate(
            request, metadata=(("authorization", f"Bearer {read}"),))]
    assert len(via) == len(direct) > 1
    assert [c.SerializeToString(deterministic=True) for c in via] == \
        [c.SerializeToString(deterministic=True) for c in direct]


async def test_a_service_that_is_not_running_is_unavailable(orbit_gateway, minter):
    reply = await http(orbit_gateway.url + "/skybridge.provisioning.v1.ProvisioningService/"
                       "ListPlans", b"{}", headers=json_headers(
                           minter.mint("a", ["provisioning.read"], "t")))
    assert reply.status == 503 and reply.json()["code"] == "unavailable"


def _hostile_bodies(rng: random.Random) -> list[tuple[bytes, str]]:
    junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    deep = b'{"a":' * 200 + b"1" + b"}" * 200
    return [
        (b"", "application/json"), (b"{}", "application/json"), (b"null", "application/json"),
        (b'{"pageSize": "many"}', "application/json"), (b'{"name": 7}', "application/json"),
        (deep, "application/json"), (junk, "application/json"), (junk, "application/proto"),
        (b'{"requestId": "' + b"\\u202e" * 8 + b'"}', "application/json"),
        (json.dumps({"x": base64.b64encode(junk).decode()}).encode(), "application/json"),
    ]


@pytest.mark.parametrize("kind", [Kind.UNARY, Kind.SERVER_STREAM, Kind.CLIENT_STREAM])
async def test_no_body_makes_the_gateway_answer_500(orbit_gateway, minter, kind):
    """Every procedure of the suite, hostile bodies, a token with every read/write scope:
    the answer is a Connect error with a client's code (or the service's answer), never
    UNKNOWN or INTERNAL, and the gateway stays up."""
    await _generate(orbit_gateway, minter)
    rng = random.Random(15)
    token = minter.mint("fuzz", ["orbit.read", "orbit.write", "provisioning.read",
                                 "defense", "linkbroker.read"], "contoso")
    seen: dict[str, int] = {}
    for procedure in procedures():
        if procedure.kind is not kind:
            continue
        for body, content_type in _hostile_bodies(rng):
            if kind is not Kind.UNARY:
                # The streaming protocol: one enveloped message (flags 0, length, body).
                content_type = content_type.replace("application/", "application/connect+")
                body = b"\x00" + len(body).to_bytes(4, "big") + body
            reply = await http(orbit_gateway.url + procedure.path, body, headers={
                "Content-Type": content_type, "Authorization": f"Bearer {token}"})
            code = _code(reply)
            seen[code] = seen.get(code, 0) + 1
            assert code not in ("unknown", "internal"), (procedure.path, body[:40], reply.body)
            assert reply.status != 500, (procedure.path, body[:40], reply.body)
    assert seen and "invalid_argument" in seen
    health = await http(orbit_gateway.url + "/healthz")
    assert health.status == 200


def _code(reply) -> str:
    """The Connect code of a unary answer, or of a stream's end-of-stream message."""
    if reply.headers.get("content-type", "").startswith("application/connect+"):
        body = reply.body
        while body:
            flags, size = body[0], int.from_bytes(body[1:5], "big")
            payload, body = body[5:5 + size], body[5 + size:]
            if flags & 0x02:
                end = json.loads(payload or b"{}")
                return end.get("error", {}).get("code", "ok")
        return "ok"
    if reply.status == 200:
        return "ok"
    return json.loads(reply.body).get("code", "?")


def test_every_rpc_of_the_four_services_is_served():
    from skybridge.linkbroker.v1 import contacts_pb2, linkbroker_pb2
    from skybridge.provisioning.v1 import provisioning_pb2
    from skybridge.threat.v1 import threat_pb2

    expected = {f"/{service.full_name}/{method.name}"
                for module in (orbit_pb2, provisioning_pb2, linkbroker_pb2, contacts_pb2,
                               threat_pb2)
                for service in module.DESCRIPTOR.services_by_name.values()
                for method in service.methods}
    assert {p.path for p in procedures()} == expected
    assert np.unique([p.path for p in procedures()]).size == len(expected)


def _export_request(fmt: str) -> dict:
    return {"selection": {"group": "groups/small"},
            "window": {"startTime": "2026-12-01T00:00:00Z", "endTime": "2026-12-01T00:30:00Z"},
            "step": "60s", "format": fmt}


@pytest.mark.parametrize("fmt, media, suffix, start", [
    ("FORMAT_OEM", "text/plain", ".oem", b"CCSDS_OEM_VERS = 3.0"),
    ("FORMAT_CZML", "application/json", ".czml", b"["),
])
async def test_an_export_downloads_as_the_file_grpc_streams(orbit_gateway, minter, fmt, media,
                                                            suffix, start):
    await _generate(orbit_gateway, minter)
    read = minter.mint("ada", ["orbit.read"], "contoso")
    message = urllib.parse.quote(json.dumps(_export_request(fmt)))
    reply = await http(orbit_gateway.url + f"/download{ORBIT}/ExportEphemeris?message={message}",
                       headers={"Authorization": f"Bearer {read}"})
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"].startswith(media)
    assert reply.headers["content-disposition"].startswith("attachment; filename=")
    assert reply.headers["content-disposition"].endswith(f'{suffix}"')
    request = json_format.ParseDict(_export_request(fmt), orbit_pb2.ExportEphemerisRequest())
    async with grpc.aio.insecure_channel(orbit_gateway.orbit_target) as channel:
        chunks = [c.data async for c in orbit_pb2_grpc.OrbitServiceStub(channel).ExportEphemeris(
            request, metadata=(("authorization", f"Bearer {read}"),))]
    assert reply.body.startswith(start)
    # The same document but for its creation time (OEM's CREATION_DATE line).
    def strip(text: bytes) -> bytes:
        return b"\n".join(line for line in text.split(b"\n")
                          if not line.startswith(b"CREATION_DATE"))

    assert strip(reply.body) == strip(b"".join(chunks))
    posted = await http(orbit_gateway.url + f"/download{ORBIT}/ExportEphemeris",
                        json.dumps(_export_request(fmt)).encode(),
                        headers=json_headers(read))
    assert posted.status == 200 and strip(posted.body) == strip(reply.body)


async def test_a_bad_export_request_is_a_connect_error_before_any_byte(orbit_gateway, minter):
    await _generate(orbit_gateway, minter)
    read = minter.mint("ada", ["orbit.read"], "contoso")
    bad = dict(_export_request("FORMAT_OEM"), step="0s")
    reply = await http(orbit_gateway.url + f"/download{ORBIT}/ExportEphemeris",
                       json.dumps(bad).encode(), headers=json_headers(read))
    assert reply.status == 400 and reply.json()["code"] == "invalid_argument"
    malformed = await http(orbit_gateway.url + f"/download{ORBIT}/ExportEphemeris",
                           b'{"step": ', headers=json_headers(read))
    assert malformed.status == 400 and malformed.json()["code"] == "invalid_argument"
    anonymous = await http(orbit_gateway.url + f"/download{ORBIT}/ExportEphemeris",
                           json.dumps(_export_request("FORMAT_OEM")).encode(),
                           headers=json_headers())
    assert anonymous.status == 401
    for path in (f"/download{ORBIT}/ListSatellites", f"/download{ORBIT}/Propagate",
                 "/download/x"):
        missing = await http(orbit_gateway.url + path, b"{}", headers=json_headers(read))
        assert missing.status == 404 and missing.json()["code"] == "not_found", path
