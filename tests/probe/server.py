"""A test-only service that exercises the shared runtime (see probe.proto)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc
from sqlalchemy import select

from shared.auth import current_principal, requires
from shared.config import Settings
from shared.errors import InvalidArgument, Violations
from shared.service import ServiceKit
from tests.probe.store import NoteRow

SERVICE = probe_pb2.DESCRIPTOR.services_by_name["ProbeService"]
MAX_SLEEP_SECONDS = 60.0


async def _until_exists(path: str) -> None:
    """Wait for a file a test writes from another process (its signal to go on)."""
    while not os.path.exists(path):  # noqa: ASYNC110, ASYNC240 - a stat, not a clock
        await asyncio.sleep(0.01)


def _note(row: NoteRow) -> probe_pb2.Note:
    return probe_pb2.Note(name=f"notes/{row.id}", text=row.text, priority=row.priority)


class ProbeServicer(probe_pb2_grpc.ProbeServiceServicer):
    def __init__(self, sessions, peer: probe_pb2_grpc.ProbeServiceStub | None = None,
                 draining: asyncio.Event | None = None,
                 release_sleeps: asyncio.Event | None = None,
                 sleep_files: str | None = None):
        self.sessions = sessions
        self.peer = peer
        self.draining = draining or asyncio.Event()
        #: Set when a Sleep call has reached its handler (tests wait on it, not on a clock).
        self.sleeping = asyncio.Event()
        #: When given, a Sleep call lasts until the test sets it, whatever its duration.
        self.release_sleeps = release_sleeps
        #: The same across processes: a Sleep writes `started` in this directory, then
        #: lasts until the test writes `release` there (PROBE_SLEEP_FILES).
        self.sleep_files = sleep_files

    @requires("probe.read")
    async def Echo(self, request, context):
        caller = current_principal()
        return probe_pb2.EchoResponse(message=request.message, subject=caller.subject,
                                      tenant=caller.tenant)

    @requires("probe.read")
    async def Sleep(self, request, context):
        seconds = request.duration.ToTimedelta().total_seconds()
        if not 0 <= seconds <= MAX_SLEEP_SECONDS:
            raise InvalidArgument("bad duration", violations=[
                ("duration", f"must be between 0 and {MAX_SLEEP_SECONDS:g} seconds")])
        self.sleeping.set()
        if self.release_sleeps is not None:
            await self.release_sleeps.wait()
        elif self.sleep_files is not None:
            with open(os.path.join(self.sleep_files, "started"), "w"):  # noqa: ASYNC230
                pass
            await _until_exists(os.path.join(self.sleep_files, "release"))
        else:
            await asyncio.sleep(seconds)
        return probe_pb2.SleepResponse()

    @requires("probe.read")
    async def Explode(self, request, context):
        raise RuntimeError("database password is hunter2")

    @requires("probe.write")
    async def CreateNote(self, request, context):
        check = Violations()
        if check.require(request.HasField("note") or None, "note"):
            text = request.note.text
            check.check(1 <= len(text) <= 200, "note.text", "must be 1 to 200 characters")
            check.check(0 <= request.note.priority <= 10, "note.priority",
                        "must be between 0 and 10")
        check.raise_if_any("the note is invalid")
        async with self.sessions.begin() as session:
            if request.request_id:
                existing = await session.scalar(
                    select(NoteRow).where(NoteRow.request_id == request.request_id))
                if existing is not None:
                    return probe_pb2.CreateNoteResponse(note=_note(existing))
            row = NoteRow(text=request.note.text, priority=request.note.priority,
                          request_id=request.request_id or None)
            session.add(row)
            await session.flush()
            return probe_pb2.CreateNoteResponse(note=_note(row))

    @requires("probe.write")
    async def RelayNote(self, request, context):
        if self.peer is None:
            raise InvalidArgument("this probe has no peer", violations=[("note", "no peer")])
        answer = await self.peer.CreateNote(
            probe_pb2.CreateNoteRequest(note=request.note, request_id=request.request_id))
        return probe_pb2.RelayNoteResponse(note=answer.note)

    @requires("probe.read")
    async def Ticks(self, request, context):
        seconds = request.interval.ToTimedelta().total_seconds()
        if not 0.001 <= seconds <= 10:
            raise InvalidArgument("bad interval", violations=[
                ("interval", "must be between 1 ms and 10 s")])
        sequence = 0
        while True:  # until the caller cancels, or the server's drain ends the stream
            yield probe_pb2.TicksResponse(sequence=sequence)
            sequence += 1
            await asyncio.sleep(seconds)

    @requires("probe.admin")
    async def AdminPing(self, request, context):
        return probe_pb2.AdminPingResponse()

    @requires("probe.read")
    async def Collect(self, request_iterator, context):
        parts = [request.message async for request in request_iterator]
        return probe_pb2.CollectResponse(message=" ".join(parts))

    @requires("probe.read")
    async def Chat(self, request_iterator, context):
        async for request in request_iterator:
            yield probe_pb2.ChatResponse(message=request.message)


async def build(settings: Settings, *, name: str = "probe", port: int = 0,
                peer_target: str | None = None, span_processors=(),
                startup_gate: asyncio.Event | None = None,
                release_sleeps: asyncio.Event | None = None) -> ServiceKit:
    """The probe. Tests that need to know where a start-up or a call stands hold them
    rather than time them: `startup_gate` (or the file PROBE_STARTUP_GATE, from another
    process) keeps the service starting until it is set (or written); `release_sleeps` (or
    the directory PROBE_SLEEP_FILES) keeps every Sleep call in its handler until then."""
    kit = ServiceKit.create(name, settings, client_scopes=("probe.write",),
                            span_processors=span_processors, port=port)
    kit.use_store(Path(__file__).parent / "migrations")
    peer = None
    if peer_target:
        peer = probe_pb2_grpc.ProbeServiceStub(kit.channels.channel(name, [SERVICE],
                                                                    target=peer_target))
    files = os.environ.get("PROBE_SLEEP_FILES")
    servicer = ProbeServicer(kit.sessions, peer, kit.server.draining, release_sleeps,
                             files or None)
    kit.server.add(servicer, probe_pb2_grpc.add_ProbeServiceServicer_to_server, SERVICE)
    kit.servicer = servicer
    if startup_gate is not None:
        kit.server.on_startup(startup_gate.wait)
    gate_file = os.environ.get("PROBE_STARTUP_GATE")
    if gate_file:
        async def gated_start() -> None:
            await _until_exists(gate_file)

        kit.server.on_startup(gated_start)
    return kit
