"""One trace from a caller through two services to SQL."""

from __future__ import annotations

import grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc

from shared.channels import ChannelFactory
from shared.telemetry import Telemetry
from tests.conftest import bearer
from tests.probe.server import SERVICE, build


async def test_call_across_services_to_sql_is_one_trace(settings, minter):
    seen_by_b, seen_by_a, seen_by_caller = (InMemorySpanExporter() for _ in range(3))
    b = await build(settings, name="probe_b", span_processors=[SimpleSpanProcessor(seen_by_b)])
    await b.server.start()
    await b.server.become_ready()
    a = await build(settings, name="probe_a", peer_target=f"127.0.0.1:{b.server.port}",
                    span_processors=[SimpleSpanProcessor(seen_by_a)])
    await a.server.start()
    await a.server.become_ready()
    caller = Telemetry("caller", span_processors=[SimpleSpanProcessor(seen_by_caller)])
    for exporter in (seen_by_a, seen_by_b):
        exporter.clear()  # start-up migrations are traces of their own
    channels = ChannelFactory(settings, caller)
    try:
        stub = probe_pb2_grpc.ProbeServiceStub(
            channels.channel("probe_a", [SERVICE], target=f"127.0.0.1:{a.server.port}"))
        with caller.tracer.start_as_current_span("caller") as root:
            answer = await stub.RelayNote(
                probe_pb2.RelayNoteRequest(note=probe_pb2.Note(text="traced", priority=1)),
                metadata=bearer(minter, "probe.write"))
        assert answer.note.text == "traced"
    finally:
        await channels.close()
        await a.server.drain(0)
        await b.server.drain(0)

    trace_id = root.get_span_context().trace_id
    spans = [*seen_by_caller.get_finished_spans(), *seen_by_a.get_finished_spans(),
             *seen_by_b.get_finished_spans()]
    assert {s.context.trace_id for s in spans} == {trace_id}

    def one(exporter, kind, name_part):
        found = [s for s in exporter.get_finished_spans()
                 if s.kind == kind and name_part in s.name]
        assert len(found) == 1, [(s.name, s.kind) for s in exporter.get_finished_spans()]
        return found[0]

    caller_client = one(seen_by_caller, SpanKind.CLIENT, "RelayNote")
    a_server = one(seen_by_a, SpanKind.SERVER, "RelayNote")
    a_client = one(seen_by_a, SpanKind.CLIENT, "CreateNote")
    b_server = one(seen_by_b, SpanKind.SERVER, "CreateNote")
    inserts = [s for s in seen_by_b.get_finished_spans()
               if s.kind == SpanKind.CLIENT and s.name.startswith("INSERT")]
    assert inserts, [s.name for s in seen_by_b.get_finished_spans()]
    # The chain of parents: caller -> A server -> A client -> B server -> SQL.
    assert caller_client.parent.span_id == root.get_span_context().span_id
    assert a_server.parent.span_id == caller_client.context.span_id
    assert a_client.parent.span_id == a_server.context.span_id
    assert b_server.parent.span_id == a_client.context.span_id
    assert inserts[0].parent.span_id == b_server.context.span_id


async def test_health_checks_are_not_traced(settings):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    exporter = InMemorySpanExporter()
    kit = await build(settings, span_processors=[SimpleSpanProcessor(exporter)])
    await kit.server.start()
    await kit.server.become_ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}")
    try:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await channel.close()
        await kit.server.drain(0)
    assert [s.name for s in exporter.get_finished_spans() if "Health" in s.name] == []


async def test_service_token_rides_on_every_kind_of_call(settings, minter):
    """grpc.aio files an interceptor under one kind of call only: unary and streaming
    calls through the channel factory must both carry the service's token."""
    from google.protobuf import duration_pb2

    from shared.auth import ServiceCredentials

    kit = await build(settings)
    await kit.server.start()
    await kit.server.become_ready()
    channels = ChannelFactory(settings, Telemetry("caller"),
                              ServiceCredentials(minter, "caller", ["probe.read"]))
    try:
        stub = probe_pb2_grpc.ProbeServiceStub(
            channels.channel("probe", [SERVICE], target=f"127.0.0.1:{kit.server.port}"))
        answer = await stub.Echo(probe_pb2.EchoRequest(message="x"))
        assert answer.subject == "service:caller"
        stream = stub.Ticks(
            probe_pb2.TicksRequest(interval=duration_pb2.Duration(nanos=10_000_000)))
        assert (await stream.read()).sequence == 0
        stream.cancel()
    finally:
        await channels.close()
        await kit.server.drain(0)
