"""The gateway in front of the probe service: every kind of call, the error contract over
HTTP, deadlines, trace context, drains, development tokens and the console's files."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import urllib.error

import grpc
import pytest
from connectrpc.client import ConnectClient
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc

from services.gateway.procedures import procedures
from tests.conftest import bearer
from tests.gateway.conftest import PROBE_SERVICE, http, json_headers

ECHO = "/skybridge.testing.v1.ProbeService/Echo"
METHODS = {p.info.name: p.info for p in procedures([PROBE_SERVICE])}


def token(minter, *scopes: str, subject: str = "ada", tenant: str = "contoso") -> str:
    return minter.mint(subject, scopes, tenant)


def details(body: dict) -> dict[str, object]:
    """The Connect error's details, unpacked by type name."""
    found: dict[str, object] = {}
    for detail in body.get("details", []):
        raw = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
        kind = {"google.rpc.ErrorInfo": error_details_pb2.ErrorInfo,
                "google.rpc.BadRequest": error_details_pb2.BadRequest}[detail["type"]]
        found[detail["type"]] = kind.FromString(raw)
    return found


def fields(body: dict) -> dict[str, str]:
    bad = details(body).get("google.rpc.BadRequest")
    assert isinstance(bad, error_details_pb2.BadRequest), body
    return {v.field: v.description for v in bad.field_violations}


def reason(body: dict) -> str:
    info = details(body)["google.rpc.ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    return info.reason


async def test_json_unary_call_reaches_the_service_as_the_caller(probe_gateway, minter):
    reply = await http(probe_gateway.url + ECHO, b'{"message": "hello"}',
                       headers=json_headers(token(minter, "probe.read", subject="ada")))
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json() == {"message": "hello", "subject": "ada", "tenant": "contoso"}


@pytest.mark.parametrize("proto_json", [False, True], ids=["binary", "json"])
async def test_connect_client_unary_server_and_client_streams(probe_gateway, minter,
                                                              proto_json):
    headers = {"authorization": f"Bearer {token(minter, 'probe.read')}"}
    async with ConnectClient(probe_gateway.url, proto_json=proto_json) as client:
        echoed = await client.execute_unary(
            request=probe_pb2.EchoRequest(message="über"), method=METHODS["Echo"],
            headers=headers)
        assert echoed.message == "über"
        ticks = client.execute_server_stream(
            request=probe_pb2.TicksRequest(interval=duration_pb2.Duration(nanos=1_000_000)),
            method=METHODS["Ticks"], headers=headers)
        sequence = []
        async for tick in ticks:
            sequence.append(tick.sequence)
            if len(sequence) == 3:
                break
        assert sequence == [0, 1, 2]

        async def parts():
            for word in ("one", "two", "three"):
                yield probe_pb2.CollectRequest(message=word)

        collected = await client.execute_client_stream(request=parts(),
                                                       method=METHODS["Collect"],
                                                       headers=headers)
        assert collected.message == "one two three"


async def test_errors_keep_the_services_code_and_details(probe_gateway, minter):
    url = probe_gateway.url
    direct = probe_pb2_grpc.ProbeServiceStub(
        grpc.aio.insecure_channel(f"127.0.0.1:{probe_gateway.probe.server.port}"))
    with pytest.raises(grpc.aio.AioRpcError) as over_grpc:
        await direct.Echo(probe_pb2.EchoRequest(message="x"))
    missing = await http(url + ECHO, b'{"message": "x"}', headers=json_headers())
    assert missing.status == 401 and missing.json()["code"] == "unauthenticated"
    assert over_grpc.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert missing.json()["message"] == over_grpc.value.details()
    assert reason(missing.json()) == "MISSING_CREDENTIALS"

    wrong_scope = await http(url + ECHO, b'{"message": "x"}',
                             headers=json_headers(token(minter, "orbit.read")))
    assert wrong_scope.status == 403 and wrong_scope.json()["code"] == "permission_denied"

    too_long = json.dumps({"note": {"text": "x" * 201, "priority": 11}}).encode()
    invalid = await http(url + "/skybridge.testing.v1.ProbeService/CreateNote", too_long,
                         headers=json_headers(token(minter, "probe.write")))
    assert invalid.status == 400 and invalid.json()["code"] == "invalid_argument"
    assert set(fields(invalid.json())) == {"note.text", "note.priority"}

    exploded = await http(url + "/skybridge.testing.v1.ProbeService/Explode", b"{}",
                          headers=json_headers(token(minter, "probe.read")))
    assert exploded.status == 500 and exploded.json()["code"] == "internal"
    assert "hunter2" not in exploded.body.decode()


@pytest.mark.parametrize("body, content_type", [
    (b'{"message": ', "application/json"),
    (b'{"message": 7}', "application/json"),
    (b'{"nosuchfield": "x"}', "application/json"),
    (b'["message"]', "application/json"),
    (b"\xff\xfe\x00", "application/json"),
    (b"\x0a\xff\xff\xff\xff\x0f", "application/proto"),
    (b"\x07", "application/proto"),
], ids=["truncated", "wrong-type", "unknown-field", "array", "not-utf8", "bad-length",
        "bad-tag"])
async def test_a_body_that_is_not_the_request_is_invalid_argument(probe_gateway, minter, body,
                                                                  content_type):
    reply = await http(probe_gateway.url + ECHO, body, headers={
        "Content-Type": content_type,
        "Authorization": f"Bearer {token(minter, 'probe.read')}"})
    assert reply.status == 400, reply.body
    answer = reply.json()
    assert answer["code"] == "invalid_argument"
    assert reason(answer) == "MALFORMED_REQUEST"
    assert "skybridge.testing.v1.EchoRequest" in fields(answer)["request"]


async def test_unknown_procedure_is_404_with_a_connect_error(probe_gateway):
    for path in ("/skybridge.testing.v1.ProbeService/Nope", "/no.such.Service/Call"):
        reply = await http(probe_gateway.url + path, b"{}", headers=json_headers())
        assert reply.status == 404
        assert reply.json()["code"] == "unimplemented"
        assert reason(reply.json()) == "UNKNOWN_PROCEDURE"


async def test_a_body_over_the_limit_is_resource_exhausted_naming_it(probe_gateway, minter):
    limit = probe_gateway.gateway.server.app.max_body_bytes
    body = json.dumps({"message": "x" * (limit + 10)}).encode()
    reply = await http(probe_gateway.url + ECHO, body,
                       headers=json_headers(token(minter, "probe.read")))
    assert reply.status == 429 and reply.json()["code"] == "resource_exhausted"
    assert str(limit) in reply.json()["message"]
    assert str(limit) in fields(reply.json())["request"]


async def test_a_chunked_body_over_the_limit_is_cut_off(probe_gateway, minter):
    """No Content-Length: the gateway counts what arrives and stops at the limit."""
    limit = probe_gateway.gateway.server.app.max_body_bytes
    host, port = probe_gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {ECHO} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token(minter, 'probe.read')}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"x" * 65536
    try:
        for _ in range(limit // len(chunk) + 2):
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
    except ConnectionError:
        pass  # the gateway answered and closed while we were still sending
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 429"), head


async def test_the_callers_deadline_reaches_the_service(probe_gateway, minter):
    headers = json_headers(token(minter, "probe.read"))
    headers["Connect-Timeout-Ms"] = "300"
    call = asyncio.create_task(http(probe_gateway.url + "/skybridge.testing.v1.ProbeService/Sleep",
                                    b'{"duration": "60s"}', headers=headers))
    await probe_gateway.probe.servicer.sleeping.wait()
    reply = await call  # the sleep is never released: only the deadline ends it
    assert reply.status == 504, reply.body
    assert reply.json()["code"] == "deadline_exceeded"


async def test_the_callers_trace_continues_into_the_service(probe_gateway, minter):
    trace_id = secrets.token_hex(16)
    headers = json_headers(token(minter, "probe.read"))
    headers["traceparent"] = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    reply = await http(probe_gateway.url + ECHO, b'{"message": "t"}', headers=headers)
    assert reply.status == 200
    served = [span for span in probe_gateway.spans.get_finished_spans()
              if span.name == "/skybridge.testing.v1.ProbeService/Echo"]
    assert served and all(f"{span.context.trace_id:032x}" == trace_id for span in served)
    assert served[0].parent is not None  # the gateway's span, not the caller's


async def test_a_drain_ends_forwarded_streams_with_unavailable(probe_gateway, minter):
    headers = {"authorization": f"Bearer {token(minter, 'probe.read')}"}
    async with ConnectClient(probe_gateway.url) as client:
        ticks = client.execute_server_stream(
            request=probe_pb2.TicksRequest(interval=duration_pb2.Duration(nanos=10_000_000)),
            method=METHODS["Ticks"], headers=headers)
        seen = 0
        with pytest.raises(ConnectError) as ended:
            async for _ in ticks:
                seen += 1
                if seen == 1:
                    drain = asyncio.create_task(probe_gateway.gateway.server.drain(1.0))
        await drain
    assert ended.value.code is Code.UNAVAILABLE
    with pytest.raises(urllib.error.URLError):  # drained: it no longer listens
        await http(probe_gateway.url + "/healthz")


async def test_a_service_that_is_down_is_unavailable(probe_gateway, minter):
    await probe_gateway.probe.server.drain(0)
    reply = await http(probe_gateway.url + ECHO, b'{"message": "x"}',
                       headers=json_headers(token(minter, "probe.read")))
    assert reply.status == 503 and reply.json()["code"] == "unavailable"


async def test_health_says_serving_until_the_drain(probe_gateway):
    from shared.healthcheck import main as healthcheck

    reply = await http(probe_gateway.url + "/healthz")
    assert reply.status == 200 and reply.json() == {"status": "SERVING"}
    target = probe_gateway.url.removeprefix("http://")
    assert await asyncio.to_thread(healthcheck, [target, "--http", "--timeout", "5"]) == 0
    probe_gateway.gateway.server.app.serving = False  # what drain() does first
    assert (await http(probe_gateway.url + "/healthz")).status == 503
    assert await asyncio.to_thread(healthcheck, [target, "--http", "--timeout", "5"]) == 1
    refused = await http(probe_gateway.url + ECHO, b"{}", headers=json_headers())
    assert refused.status == 503 and refused.json()["code"] == "unavailable"


async def test_the_banner_names_the_console(probe_gateway, tmp_path):
    kit = probe_gateway.gateway
    assert "not built" in kit.banner[0]
    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "index.html").write_text("<!doctype html>")
    assert kit.banner[0].endswith(f":{kit.server.port}/, development sign-in on")


async def test_development_tokens_are_minted_for_the_chosen_scopes(probe_gateway):
    url = probe_gateway.url + "/dev/tokens"
    assert (await http(url)).json() == {"enabled": True}
    minted = await http(url, json.dumps({"subject": "grace", "tenant": "fabrikam",
                                         "scopes": ["probe.read"]}).encode(),
                        headers=json_headers())
    assert minted.status == 200, minted.body
    answer = minted.json()
    assert answer["expiresInSeconds"] == 3600
    echoed = await http(probe_gateway.url + ECHO, b'{"message": "m"}',
                        headers=json_headers(answer["token"]))
    assert echoed.json() == {"message": "m", "subject": "grace", "tenant": "fabrikam"}
    not_admin = await http(probe_gateway.url + "/skybridge.testing.v1.ProbeService/AdminPing",
                           b"{}", headers=json_headers(answer["token"]))
    assert not_admin.status == 403


@pytest.mark.parametrize("body, bad", [
    (b"not json", {"request"}),
    (b"[]", {"request"}),
    (b'{"subject": "", "tenant": "t", "scopes": ["a"]}', {"subject"}),
    (b'{"subject": "a\\u0000b", "tenant": "t", "scopes": ["a"]}', {"subject"}),
    (b'{"subject": "s", "tenant": "t", "scopes": []}', {"scopes"}),
    (b'{"subject": "s", "tenant": "t", "scopes": ["Orbit Read", 3]}',
     {"scopes[0]", "scopes[1]"}),
    (b'{"subject": "s", "tenant": "t", "scopes": ["a"], "ttlSeconds": 1e9}', {"ttlSeconds"}),
    (b'{"subject": "s", "tenant": "t", "scopes": ["a"], "ttlSeconds": true}', {"ttlSeconds"}),
    (b'{"subject": "s", "scopes": ["a"], "admin": true}', {"tenant", "admin"}),
])
async def test_a_bad_token_request_names_its_fields(probe_gateway, body, bad):
    reply = await http(probe_gateway.url + "/dev/tokens", body, headers=json_headers())
    assert reply.status == 400, reply.body
    assert reply.json()["code"] == "invalid_argument"
    assert set(fields(reply.json())) == bad


async def test_development_tokens_are_off_unless_enabled(orbit_gateway):
    reply = await http(orbit_gateway.url + "/dev/tokens")
    assert reply.status == 404 and reply.json()["code"] == "not_found"
    minted = await http(orbit_gateway.url + "/dev/tokens",
                        b'{"subject": "s", "tenant": "t", "scopes": ["orbit.write"]}',
                        headers=json_headers())
    assert minted.status == 404


async def test_the_console_says_when_it_is_not_built(probe_gateway):
    reply = await http(probe_gateway.url + "/")
    assert reply.status == 503 and b"not built" in reply.body


async def test_the_console_files_are_served_and_nothing_outside_them(probe_gateway, tmp_path):
    console = tmp_path / "console"
    (console / "assets").mkdir(parents=True)
    (console / "index.html").write_text("<!doctype html><title>console</title>")
    (console / "assets" / "app.js").write_text("export const x = 1;")
    (tmp_path / "secret.txt").write_text("hunter2")
    url = probe_gateway.url
    index = await http(url + "/")
    assert index.status == 200 and b"<title>console</title>" in index.body
    assert index.headers["cache-control"] == "no-cache"
    script = await http(url + "/assets/app.js")
    assert script.status == 200 and script.headers["content-type"] == "text/javascript"
    assert (await http(url + "/tracks/7")).body == index.body  # a route of the page
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt",
                 "/assets/missing.js"):
        reply = await http(url + path)
        assert reply.status == 404 and b"hunter2" not in reply.body, path
    posted = await http(url + "/", b"x", headers={"Content-Type": "text/plain"})
    assert posted.status == 405


def test_development_tokens_need_development_keys():
    from shared.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="SKYBRIDGE_DEV_KEYS"):
        Settings.from_env({"SKYBRIDGE_GATEWAY_DEV_TOKENS": "true",
                           "SKYBRIDGE_DEV_KEYS": "false"})


async def test_the_gateway_forwards_the_callers_token_not_its_own(probe_gateway, minter):
    """A caller with no token gets no identity from the gateway."""
    over_grpc = probe_pb2_grpc.ProbeServiceStub(
        grpc.aio.insecure_channel(f"127.0.0.1:{probe_gateway.probe.server.port}"))
    direct = await over_grpc.Echo(probe_pb2.EchoRequest(message="d"),
                                  metadata=bearer(minter, "probe.read", subject="zed"))
    via = await http(probe_gateway.url + ECHO, b'{"message": "d"}',
                     headers=json_headers(token(minter, "probe.read", subject="zed")))
    assert via.json()["subject"] == direct.subject == "zed"


def test_the_gateway_socket_sends_without_waiting_for_acks(probe_gateway):
    """uvicorn writes a response's head and body apart: with Nagle's algorithm on, the body
    waits for the client's delayed ACK. Accepted sockets inherit TCP_NODELAY from this one."""
    import socket

    listening = probe_gateway.gateway.server._socket
    assert listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_a_drain_lets_unary_calls_in_flight_finish(probe_gateway, minter):
    call = asyncio.create_task(http(probe_gateway.url + "/skybridge.testing.v1.ProbeService/Sleep",
                                    b'{"duration": "1s"}',
                                    headers=json_headers(token(minter, "probe.read"))))
    await probe_gateway.probe.servicer.sleeping.wait()
    drain = asyncio.create_task(probe_gateway.gateway.server.drain(10.0))
    await probe_gateway.gateway.server.draining.wait()
    probe_gateway.release_sleeps.set()  # the call, held in its handler, may now answer
    reply = await call
    await drain
    assert reply.status == 200, reply.body


async def test_a_call_without_a_deadline_gets_the_gateways_cap(probe_gateway, minter,
                                                               monkeypatch, settings):
    import dataclasses

    from services.gateway.server import build

    monkeypatch.setenv("SKYBRIDGE_GATEWAY_TIMEOUT_SECONDS", "0.3")
    capped = await build(dataclasses.replace(
        settings, targets={"testing": f"127.0.0.1:{probe_gateway.probe.server.port}"}),
        port=0, services=[PROBE_SERVICE])
    await capped.server.start()
    await capped.server.become_ready()
    try:
        call = asyncio.create_task(http(
            f"http://127.0.0.1:{capped.server.port}/skybridge.testing.v1.ProbeService/Sleep",
            b'{"duration": "60s"}', headers=json_headers(token(minter, "probe.read"))))
        await probe_gateway.probe.servicer.sleeping.wait()
        reply = await call  # never released: only the gateway's cap ends it
        assert reply.status == 504 and reply.json()["code"] == "deadline_exceeded"
    finally:
        await capped.server.drain(0)
