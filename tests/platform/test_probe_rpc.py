"""The shared runtime through real gRPC servers on loopback and a real database."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc
from sqlalchemy import func, select, text

from shared.auth import TokenMinter
from shared.status import details_of
from tests.conftest import bearer
from tests.probe.server import build
from tests.probe.store import NoteRow


async def start(settings, **kwargs):
    kit = await build(settings, **kwargs)
    await kit.server.start()
    await kit.server.become_ready()
    return kit


@pytest.fixture
async def probe(settings):
    kit = await start(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    yield kit, probe_pb2_grpc.ProbeServiceStub(channel)
    await channel.close()
    await kit.server.drain(0)


async def failure(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_echo_sees_the_callers_subject_and_tenant(probe, minter):
    _, stub = probe
    answer = await stub.Echo(probe_pb2.EchoRequest(message="hi"),
                             metadata=bearer(minter, "probe.read", tenant="fabrikam",
                                             subject="alice"))
    assert (answer.message, answer.subject, answer.tenant) == ("hi", "alice", "fabrikam")


async def test_missing_token_is_unauthenticated(probe):
    _, stub = probe
    error = await failure(stub.Echo(probe_pb2.EchoRequest(message="hi")))
    details = details_of(error)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == "MISSING_CREDENTIALS"
    assert details.domain == "probe.skybridge"


async def test_forged_token_is_unauthenticated(probe, settings):
    _, stub = probe
    other_key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    forger = TokenMinter(other_key, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    error = await failure(stub.Echo(probe_pb2.EchoRequest(),
                                    metadata=bearer(forger, "probe.read")))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(error).reason == "TOKEN_INVALID"


async def test_expired_token_is_unauthenticated(probe, minter):
    _, stub = probe
    token = minter.mint("alice", ["probe.read"], "contoso", ttl_seconds=-120)
    error = await failure(stub.Echo(probe_pb2.EchoRequest(),
                                    metadata=(("authorization", f"Bearer {token}"),)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(error).reason == "TOKEN_EXPIRED"


async def test_wrong_scope_is_permission_denied(probe, minter):
    _, stub = probe
    error = await failure(stub.AdminPing(probe_pb2.AdminPingRequest(),
                                         metadata=bearer(minter, "probe.read")))
    details = details_of(error)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details.reason == "MISSING_SCOPE"
    assert details.metadata["required_scopes"] == "probe.admin"
    await stub.AdminPing(probe_pb2.AdminPingRequest(), metadata=bearer(minter, "probe.admin"))


async def test_bad_input_names_every_field_and_writes_nothing(probe, minter):
    kit, stub = probe
    request = probe_pb2.CreateNoteRequest(note=probe_pb2.Note(text="", priority=11))
    error = await failure(stub.CreateNote(request, metadata=bearer(minter, "probe.write")))
    details = details_of(error)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "INVALID_ARGUMENT"
    fields = {v.field: v.description for v in details.violations}
    assert set(fields) == {"note.text", "note.priority"}
    assert "between 0 and 10" in fields["note.priority"]
    async with kit.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(NoteRow)) == 0


async def test_missing_message_field_is_named(probe, minter):
    _, stub = probe
    error = await failure(stub.CreateNote(probe_pb2.CreateNoteRequest(),
                                          metadata=bearer(minter, "probe.write")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details_of(error).violations] == ["note"]


async def test_handler_exception_is_internal_without_internals(probe, minter, caplog):
    _, stub = probe
    error = await failure(stub.Explode(probe_pb2.ExplodeRequest(),
                                       metadata=bearer(minter, "probe.read")))
    details = details_of(error)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert details.reason == "INTERNAL"
    assert details.domain == "probe.skybridge"
    assert "hunter2" not in error.details() and "Traceback" not in error.details()
    trace_id = details.metadata["trace_id"]
    assert len(trace_id) == 32 and trace_id in error.details()
    logged = [r for r in caplog.records if r.name == "skybridge.rpc"]
    assert logged and logged[0].exc_info is not None


async def test_retry_with_the_same_request_id_returns_the_first_answer(probe, minter):
    kit, stub = probe
    request = probe_pb2.CreateNoteRequest(note=probe_pb2.Note(text="once", priority=3),
                                          request_id="r-1")
    first = await stub.CreateNote(request, metadata=bearer(minter, "probe.write"))
    again = await stub.CreateNote(request, metadata=bearer(minter, "probe.write"))
    assert first.note.name == again.note.name
    async with kit.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(NoteRow)) == 1


async def test_migrations_ran_on_a_fresh_store(probe, backend):
    kit, _ = probe
    async with kit.engine.connect() as connection:
        version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        if backend == "postgres":
            schema = await connection.scalar(text("SELECT current_schema()"))
            assert schema == kit.location.schema
    assert version == "0001"


async def test_health_is_not_serving_until_ready_and_while_draining(settings, minter):
    # The start-up is held by a gate and the drain by a call in flight (both released by
    # the test), so each check below lands where it is meant to however slow the machine.
    settings = replace(settings, drain_delay_seconds=0.5)
    gate, release = asyncio.Event(), asyncio.Event()
    kit = await build(settings, startup_gate=gate, release_sleeps=release)
    await kit.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    health = health_pb2_grpc.HealthStub(channel)
    stub = probe_pb2_grpc.ProbeServiceStub(channel)
    try:
        ready = asyncio.ensure_future(kit.server.become_ready())
        for service in ("", "skybridge.testing.v1.ProbeService"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        error = await failure(stub.Echo(probe_pb2.EchoRequest(),
                                        metadata=bearer(minter, "probe.read")))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert not ready.done()
        gate.set()
        await asyncio.wait_for(ready, 60)
        answer = await health.Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=60)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        slow = asyncio.ensure_future(stub.Sleep(probe_pb2.SleepRequest(),
                                                metadata=bearer(minter, "probe.read")))
        await asyncio.wait_for(kit.servicer.sleeping.wait(), 60)
        draining = asyncio.ensure_future(kit.server.drain(grace_seconds=3600))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        # still answering (the call in flight holds the drain), and still NOT_SERVING
        answer = await health.Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        release.set()
        assert await slow == probe_pb2.SleepResponse()
        await asyncio.wait_for(draining, 60)
    finally:
        release.set()
        await channel.close()
        await kit.server.drain(0)


async def test_drain_lets_in_flight_calls_finish_and_refuses_new_ones(settings, minter):
    release = asyncio.Event()
    kit = await start(settings, release_sleeps=release)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    stub = probe_pb2_grpc.ProbeServiceStub(channel)
    try:
        slow = asyncio.ensure_future(stub.Sleep(
            probe_pb2.SleepRequest(duration=duration_pb2.Duration(nanos=800_000_000)),
            metadata=bearer(minter, "probe.read")))
        await asyncio.wait_for(kit.servicer.sleeping.wait(), 60)  # the call is in its handler
        # An hour of grace: the drain may only end because the call did.
        draining = asyncio.ensure_future(kit.server.drain(grace_seconds=3600))
        await asyncio.wait_for(kit.server.draining.wait(), 60)  # new calls refused from here
        refused = await failure(stub.Echo(probe_pb2.EchoRequest(),
                                          metadata=bearer(minter, "probe.read")))
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        assert not draining.done() and not slow.done()  # waiting for the call in flight
        release.set()
        assert await slow == probe_pb2.SleepResponse()
        # It stopped once the call was done, not at the end of the grace period (the
        # deadline only ends a hang: the grace is an hour).
        await asyncio.wait_for(draining, 60)
    finally:
        release.set()
        await channel.close()
        await kit.server.drain(0)


async def test_streams_pass_through_the_stack_and_end_when_the_server_drains(settings, minter):
    kit = await start(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    stub = probe_pb2_grpc.ProbeServiceStub(channel)
    try:
        bad = stub.Ticks(probe_pb2.TicksRequest(), metadata=bearer(minter, "probe.read"))
        error = await failure(bad.read())
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in details_of(error).violations] == ["interval"]

        stream = stub.Ticks(
            probe_pb2.TicksRequest(interval=duration_pb2.Duration(nanos=50_000_000)),
            metadata=bearer(minter, "probe.read"))
        first = await stream.read()
        assert first.sequence == 0
        await kit.server.drain(grace_seconds=30)
        # The stream ended on the draining signal (the drain did not wait for it), with
        # UNAVAILABLE, which tells the client to re-subscribe elsewhere.
        assert kit.server.lifecycle.in_flight == 0
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while await stream.read() != grpc.aio.EOF:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert details_of(ended.value).reason == "DRAINING"
    finally:
        await channel.close()
        await kit.server.drain(0)
