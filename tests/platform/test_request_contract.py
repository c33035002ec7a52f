"""Request bodies through a real server: a body that does not parse, or breaks the contract,
is INVALID_ARGUMENT with ErrorInfo and BadRequest, for all four method kinds, and the
server goes on serving."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc

from shared.status import details_of
from tests.conftest import bearer
from tests.probe.server import build

#: Not a protobuf message: a field 1 of wire type 7, which does not exist.
NOT_PROTOBUF = b"\x0f\xff\xff\xff"
#: Field 1 (a string) holding bytes that are not UTF-8.
BAD_UTF8 = b"\x0a\x02\xff\xfe"


@pytest.fixture
async def probe(settings):
    kit = await build(settings)
    await kit.server.start()
    await kit.server.become_ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    yield kit, channel
    await channel.close()
    await kit.server.drain(0)


def _raw(channel, kind: str, method: str):
    """A multicallable that sends bytes as they are and reads the method's response."""
    response = getattr(probe_pb2, f"{method}Response")
    return getattr(channel, kind)(f"/skybridge.testing.v1.ProbeService/{method}",
                                  request_serializer=lambda body: body,
                                  response_deserializer=response.FromString)


async def _refusal(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        result = await call if hasattr(call, "__await__") else None
        if result is None:
            async for _ in call:
                pass
    return caught.value


def _assert_malformed(error: grpc.aio.AioRpcError, field: str, method: str = "Echo") -> None:
    details = details_of(error)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert details.reason == "MALFORMED_REQUEST"
    assert details.domain == "probe.skybridge"
    assert [v.field for v in details.violations] == [field]
    assert f"skybridge.testing.v1.{method}Request" in details.violations[0].description


@pytest.mark.parametrize("body", [NOT_PROTOBUF, BAD_UTF8])
async def test_a_unary_body_that_does_not_parse_is_malformed_request(probe, minter, body):
    _, channel = probe
    read = bearer(minter, "probe.read")
    error = await _refusal(_raw(channel, "unary_unary", "Echo")(body, metadata=read))
    _assert_malformed(error, "request")


async def test_a_server_streaming_body_that_does_not_parse_ends_the_stream(probe, minter):
    _, channel = probe
    call = channel.unary_stream("/skybridge.testing.v1.ProbeService/Ticks",
                                request_serializer=lambda body: body,
                                response_deserializer=probe_pb2.TicksResponse.FromString)
    error = await _refusal(call(NOT_PROTOBUF, metadata=bearer(minter, "probe.read")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(error).reason == "MALFORMED_REQUEST"
    assert [v.field for v in details_of(error).violations] == ["request"]


async def test_a_client_stream_message_that_does_not_parse_ends_the_call(probe, minter):
    _, channel = probe
    good = probe_pb2.CollectRequest(message="one").SerializeToString()

    async def messages():
        yield good
        yield good
        yield NOT_PROTOBUF

    call = _raw(channel, "stream_unary", "Collect")(messages(),
                                                    metadata=bearer(minter, "probe.read"))
    error = await _refusal(call)
    _assert_malformed(error, "requests[2]", "Collect")
    # the same stream without the bad message is answered
    answer = await _raw(channel, "stream_unary", "Collect")(
        iter([good, good]), metadata=bearer(minter, "probe.read"))
    assert answer.message == "one one"


async def test_a_bidi_stream_message_that_does_not_parse_ends_the_stream(probe, minter):
    _, channel = probe
    good = probe_pb2.ChatRequest(message="hi").SerializeToString()
    call = _raw(channel, "stream_stream", "Chat")(iter([good, BAD_UTF8, good]),
                                                  metadata=bearer(minter, "probe.read"))
    answers = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for answer in call:
            answers.append(answer.message)
    assert answers == ["hi"]
    _assert_malformed(caught.value, "requests[1]", "Chat")


async def test_a_body_is_parsed_only_after_the_caller_is_authenticated(probe):
    _, channel = probe
    error = await _refusal(_raw(channel, "unary_unary", "Echo")(NOT_PROTOBUF))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_stream_message_that_breaks_the_contract_names_its_field(probe, minter):
    _, channel = probe
    stub = probe_pb2_grpc.ProbeServiceStub(channel)
    call = stub.Collect(iter([probe_pb2.CollectRequest(message="ok"),
                              probe_pb2.CollectRequest(message="bad\x00")]),
                        metadata=bearer(minter, "probe.read"))
    error = await _refusal(call)
    details = details_of(error)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "INVALID_ARGUMENT"
    assert [v.field for v in details.violations] == ["message"]
    assert "message 1 of the request stream" in error.details()


async def test_the_server_serves_after_malformed_bodies(probe, minter):
    _, channel = probe
    read = bearer(minter, "probe.read")
    for body in (NOT_PROTOBUF, BAD_UTF8, b"\xff" * 1000):
        await _refusal(_raw(channel, "unary_unary", "Echo")(body, metadata=read))
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = probe_pb2_grpc.ProbeServiceStub(channel)
    answer = await stub.Echo(probe_pb2.EchoRequest(message="still here"), metadata=read)
    assert answer.message == "still here"


async def test_a_client_that_cancels_a_stream_is_cancelled_not_an_error(probe, minter, caplog):
    """A caller going away is not the server's failure: nothing is logged as an error, the
    stream's slot is free again, and the call is recorded CANCELLED (span status and the
    duration metric's code) while the server writes (a 1 ms tick stream). A bidi stream
    waiting on its reader may instead see its input end first (grpc ends the request
    stream and cancels the handler independently), and then it ends OK, not as an error."""
    kit, channel = probe
    stub = probe_pb2_grpc.ProbeServiceStub(channel)
    read = bearer(minter, "probe.read")
    codes: dict[str, str] = {}
    tracing = kit.server.interceptor.tracing
    end = tracing.end

    def recording(span, token, code):
        codes[span.name.rpartition("/")[2]] = code.name
        end(span, token, code)

    tracing.end = recording
    never = asyncio.Event()

    async def one_message():
        yield probe_pb2.ChatRequest(message="hi")
        await never.wait()

    caplog.set_level("WARNING")
    ticks = stub.Ticks(probe_pb2.TicksRequest(interval=duration_pb2.Duration(nanos=1_000_000)),
                       metadata=read)
    for _ in range(20):  # the server is mid-stream, writing
        await ticks.read()
    chat = stub.Chat(one_message(), metadata=read)
    assert (await chat.read()).message == "hi"
    ticks.cancel()
    chat.cancel()
    while kit.server.lifecycle.in_flight:  # noqa: ASYNC110 - a condition, not a clock
        await asyncio.sleep(0.01)
    never.set()
    assert codes["Ticks"] == "CANCELLED" and codes["Chat"] in ("CANCELLED", "OK"), codes
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] \
        == []
    assert kit.server.interceptor.streams.open == {}  # no stream slot left behind


async def test_a_drain_ends_every_kind_of_stream_with_unavailable(settings, minter):
    """Long-lived streams of all three streaming kinds end UNAVAILABLE `DRAINING` when the
    server drains, and the drain does not wait for them (its grace here is 60 s)."""
    kit = await build(settings)
    kit.server.grace_seconds = 60.0
    await kit.server.start()
    await kit.server.become_ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    stub = probe_pb2_grpc.ProbeServiceStub(channel)
    read = bearer(minter, "probe.read")
    never = asyncio.Event()

    async def forever(message):
        yield message
        await never.wait()

    ticks = stub.Ticks(probe_pb2.TicksRequest(interval=duration_pb2.Duration(seconds=1)),
                       metadata=read)
    chat = stub.Chat(forever(probe_pb2.ChatRequest(message="hi")), metadata=read)
    collect = stub.Collect(forever(probe_pb2.CollectRequest(message="a")), metadata=read)
    assert (await ticks.read()).sequence == 0
    assert (await chat.read()).message == "hi"
    # the Collect call has reached its handler (it answers nothing before its end)
    while kit.server.lifecycle.in_flight < 3:  # noqa: ASYNC110 - a condition, not a clock
        await asyncio.sleep(0.01)
    drained = asyncio.ensure_future(kit.server.drain())
    outcomes = []
    for call in (ticks, chat):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            while True:
                if await call.read() == grpc.aio.EOF:
                    break
        outcomes.append((caught.value.code(), details_of(caught.value).reason))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect
    outcomes.append((caught.value.code(), details_of(caught.value).reason))
    assert outcomes == [(grpc.StatusCode.UNAVAILABLE, "DRAINING")] * 3
    await drained
    assert kit.server.lifecycle.in_flight == 0
    never.set()
    await channel.close()


async def test_streams_per_caller_are_capped_with_a_quota_failure(settings, minter):
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    kit = await build(replace(settings, max_streams_per_caller=2))
    await kit.server.start()
    await kit.server.become_ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    stub = probe_pb2_grpc.ProbeServiceStub(channel)
    alice = bearer(minter, "probe.read", subject="alice")
    every_second = probe_pb2.TicksRequest(interval=duration_pb2.Duration(seconds=1))
    try:
        held = [stub.Ticks(every_second, metadata=alice) for _ in range(2)]
        for call in held:
            assert (await call.read()).sequence == 0
        third = stub.Ticks(every_second, metadata=alice)
        error = await failure_of(third.read())
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details_of(error).reason == "TOO_MANY_STREAMS"
        status = rpc_status.from_call(error)
        quota = [d for d in status.details if d.Is(error_details_pb2.QuotaFailure.DESCRIPTOR)]
        assert len(quota) == 1
        # another caller is not held back by alice's streams, nor are alice's unary calls
        bob = stub.Ticks(every_second, metadata=bearer(minter, "probe.read", subject="bob"))
        assert (await bob.read()).sequence == 0
        assert (await stub.Echo(probe_pb2.EchoRequest(message="x"), metadata=alice)).message
        # a stream alice closes frees its place
        held[0].cancel()
        while kit.server.interceptor.streams.open.get(("contoso", "alice")) != 1:  # noqa: ASYNC110 - a condition
            await asyncio.sleep(0.01)
        again = stub.Ticks(every_second, metadata=alice)
        assert (await again.read()).sequence == 0
    finally:
        await channel.close()
        await kit.server.drain(0)


async def failure_of(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value


async def test_a_request_above_the_servers_cap_is_refused_before_it_is_read(probe, minter):
    """grpcio refuses a body larger than the server's cap (4 MiB here) from its length
    prefix, before buffering it or running any of our code; one just below is served."""
    _, channel = probe
    read = bearer(minter, "probe.read")
    stub = probe_pb2_grpc.ProbeServiceStub(channel)
    error = await failure_of(stub.Echo(probe_pb2.EchoRequest(message="x" * (5 << 20)),
                                       metadata=read))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    answer = await stub.Echo(probe_pb2.EchoRequest(message="x" * 60_000), metadata=read)
    assert len(answer.message) == 60_000


def test_an_error_that_quotes_huge_values_stays_within_the_header_limits():
    """A message or violation that quotes what a client sent (50,000 non-ASCII characters,
    a hundred bad fields) is cut so that the status fits grpc's 16 KiB of trailing
    metadata; the reason and at least the first violation survive."""
    from shared.errors import InvalidArgument
    from shared.status import to_status

    huge = "é" * 50_000
    error = InvalidArgument(f"the record {huge} is bad", reason="BAD_RECORD",
                            violations=[(f"records[{i}].{huge}", huge) for i in range(100)],
                            metadata={"example": huge})
    status = to_status(error, "probe.skybridge")
    assert status.ByteSize() <= 6 * 1024 and len(status.message.encode()) <= 1024
    from google.rpc import error_details_pb2

    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and info.reason == "BAD_RECORD"
    assert status.details[1].Unpack(bad) and bad.field_violations
    assert bad.field_violations[0].field.startswith("records[0].")
