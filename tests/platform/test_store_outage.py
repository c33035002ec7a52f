"""A database outage is UNAVAILABLE (retryable), never INTERNAL.

The probe service talks to PostgreSQL through a TCP relay that the test cuts: the relay's
open connections are closed and new ones refused, as in a PostgreSQL restart or failover.
The driver's errors are real (psycopg's OperationalError, SQLAlchemy's wrappers)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg.errors import AdminShutdown
from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc
from sqlalchemy import exc

from shared import db
from shared.status import details_of
from tests.conftest import PG_URL, bearer
from tests.probe.server import build


class Relay:
    """A TCP relay to PostgreSQL that can be cut and restored on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                 reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, upstream_writer]

        async def pipe(source, sink) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def cut(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_now(health) -> int:
    return (await health.Check(health_pb2.HealthCheckRequest(), timeout=60)).status


async def health_becomes(health, status: int) -> None:
    """Wait, on the health Watch stream, until the server's health is `status` (the stream
    sends the current status first, then each change; the deadline only ends a hang)."""
    call = health.Watch(health_pb2.HealthCheckRequest(), timeout=120)
    try:
        async for answer in call:
            if answer.status == status:
                return
    finally:
        call.cancel()
    raise AssertionError(f"health never became {status}")


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
async def test_a_database_outage_is_unavailable_and_the_service_recovers(settings, minter):
    """Calls fail UNAVAILABLE DATABASE_UNAVAILABLE and health turns NOT_SERVING while the
    database is cut; once it is back, health is SERVING and writes succeed, with no restart."""
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    await relay.start()
    kit = await build(replace(settings, db_probe_seconds=0.05, database_url=url.set(
        port=relay.port).render_as_string(hide_password=False)))
    await kit.server.start()
    await kit.server.become_ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    stub = probe_pb2_grpc.ProbeServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    write = bearer(minter, "probe.write")
    try:
        assert await health_now(health) == SERVING
        await stub.CreateNote(probe_pb2.CreateNoteRequest(
            note=probe_pb2.Note(text="before"), request_id="n-1"), metadata=write)
        await relay.cut()
        codes = []
        for i in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreateNote(probe_pb2.CreateNoteRequest(
                    note=probe_pb2.Note(text="during"), request_id=f"d-{i}"), metadata=write)
            codes.append((caught.value.code(), details_of(caught.value).reason))
        assert codes == [(grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")] * 3
        await health_becomes(health, NOT_SERVING)
        await relay.start()  # PostgreSQL is back, on the same address
        await health_becomes(health, SERVING)
        answer = await stub.CreateNote(probe_pb2.CreateNoteRequest(
            note=probe_pb2.Note(text="after"), request_id="d-0"), metadata=write)
        assert answer.note.text == "after"
    finally:
        await channel.close()
        await kit.server.drain(0)
        with contextlib.suppress(Exception):
            await relay.cut()


def test_outages_are_told_from_bugs():
    shutdown = AdminShutdown("terminating connection due to administrator command")
    wrapped = exc.OperationalError("INSERT ...", {}, shutdown)
    assert db.is_outage(shutdown) and db.is_outage(wrapped)
    assert db.is_outage(exc.TimeoutError("QueuePool limit of size 5 overflow 0 reached"))
    assert db.is_outage(ConnectionRefusedError(111, "Connection refused"))
    import sqlite3

    assert db.is_outage(exc.OperationalError("x", {}, sqlite3.OperationalError(
        "database is locked")))
    assert not db.is_outage(exc.OperationalError("x", {}, sqlite3.OperationalError(
        "no such table: notes")))
    assert not db.is_outage(exc.IntegrityError("x", {}, ValueError("duplicate key")))
    assert not db.is_outage(KeyError("bug"))
