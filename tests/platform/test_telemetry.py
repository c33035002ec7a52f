"""Telemetry: exporters chosen from OTEL_* variables, JSON logs with the trace id, metrics."""

from __future__ import annotations

import json
import logging

import grpc
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc

from shared.service import ServiceKit
from shared.telemetry import JsonFormatter, Telemetry, _exporter_choice
from tests.conftest import bearer
from tests.probe.server import SERVICE, ProbeServicer
from tests.waiting import until


def test_nothing_is_exported_by_default(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert _exporter_choice("TRACES") == "none"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert _exporter_choice("TRACES") == "otlp"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert _exporter_choice("TRACES") == "none"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert _exporter_choice("TRACES") == "console"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert _exporter_choice("TRACES") == "none"


def test_json_log_lines_carry_the_trace_id():
    telemetry = Telemetry("logtest")
    formatter = JsonFormatter()
    record = logging.LogRecord("skybridge.test", logging.INFO, __file__, 1, "hello %s",
                               ("world",), None)
    assert "trace_id" not in json.loads(formatter.format(record))
    with telemetry.tracer.start_as_current_span("work") as span:
        line = json.loads(formatter.format(record))
    assert line["message"] == "hello world" and line["level"] == "INFO"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")


async def test_rpc_latency_is_recorded_per_method_and_code(settings, minter):
    reader = InMemoryMetricReader()
    kit = ServiceKit.create("probe", settings, metric_readers=[reader], port=0)
    kit.use_store(None)
    kit.server.add(ProbeServicer(kit.sessions), probe_pb2_grpc.add_ProbeServiceServicer_to_server,
                   SERVICE)
    await kit.server.start()
    await kit.server.become_ready()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{kit.server.port}") as channel:
        stub = probe_pb2_grpc.ProbeServiceStub(channel)
        await stub.Echo(probe_pb2.EchoRequest(), metadata=bearer(minter, "probe.read"))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Echo(probe_pb2.EchoRequest())  # no token: UNAUTHENTICATED

    def echo_counts() -> dict[str, int]:
        points = []
        for resource_metrics in reader.get_metrics_data().resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "rpc.server.duration":
                        points += metric.data.data_points
        return {p.attributes["rpc.grpc.status_code"]: p.count for p in points
                if p.attributes["rpc.method"] == "Echo"}

    # The server records a call when its handler has finished, which can be after the
    # client has its answer (the status is sent first): wait for the refused call's point.
    await until(lambda: len(echo_counts()) == 2)
    await kit.server.drain(0)
    assert echo_counts() == {"OK": 1, "UNAUTHENTICATED": 1}
