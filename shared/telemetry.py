"""OpenTelemetry traces and metrics, and JSON logs that carry the trace id.

Each service gets its own tracer and meter providers (so that four services in one
supervisor process still report their own `service.name`), configured from the standard
variables the SDK defines:

- traces are exported over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and `OTEL_TRACES_EXPORTER` may say `otlp`,
  `console` or `none`; metrics likewise with `OTEL_METRICS_EXPORTER`. Nothing is exported by
  default;
- sampling follows `OTEL_TRACES_SAMPLER`; `OTEL_SDK_DISABLED=true` turns everything off;
- `OTEL_RESOURCE_ATTRIBUTES` adds resource attributes.

Instrumentation: SERVER spans and the RPC latency histogram `rpc.server.duration`
(milliseconds) come from `shared.interceptors` (see there why not the library's server
interceptor); CLIENT spans from opentelemetry-instrumentation-grpc's aio client interceptors;
SQL spans from opentelemetry-instrumentation-sqlalchemy, per engine. Health checks and
reflection are never traced. Context crosses services in the W3C `traceparent` header.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.instrumentation.grpc import filters as grpc_filters
from opentelemetry.metrics import Meter, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.trace import NoOpTracerProvider

if TYPE_CHECKING:
    import grpc
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

#: Calls never traced: the health protocol (polled constantly) and reflection.
EXCLUDED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                     "grpc.reflection.v1.ServerReflection")


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _exporter_choice(signal: str) -> str:
    """'otlp', 'console' or 'none' for `signal` ('TRACES' or 'METRICS')."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return "none"
    chosen = _env(f"OTEL_{signal}_EXPORTER").lower()
    endpoint = _env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    if chosen in ("none", "console"):
        return chosen
    if chosen in ("", "otlp") and endpoint:
        return "otlp"
    return "none"


def _untraced(details: grpc.aio.ClientCallDetails) -> bool:
    method = getattr(details, "method", "") or ""
    if isinstance(method, bytes):
        method = method.decode()
    return any(method.startswith(f"/{service}/") for service in EXCLUDED_SERVICES)


def _traced_filter() -> Callable[[grpc.aio.ClientCallDetails], bool]:
    return grpc_filters.negate(_untraced)


class Telemetry:
    """Tracer and meter providers for one service, and the instrumentation built on them."""

    def __init__(self, service: str, *, span_processors: Sequence[SpanProcessor] = (),
                 metric_readers: Sequence[MetricReader] = ()):
        self.service = service
        resource = Resource.create({"service.name": f"skybridge-{service}",
                                    "service.namespace": "skybridge"})
        trace_choice = _exporter_choice("TRACES")
        self.enabled = _env("OTEL_SDK_DISABLED").lower() != "true"
        if self.enabled:
            self.tracer_provider: TracerProvider | NoOpTracerProvider = TracerProvider(
                resource=resource)
            for processor in span_processors:
                self.tracer_provider.add_span_processor(processor)
            if trace_choice == "otlp":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

                self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            elif trace_choice == "console":
                self.tracer_provider.add_span_processor(
                    SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
            readers = list(metric_readers)
            metric_choice = _exporter_choice("METRICS")
            if metric_choice == "otlp":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                    OTLPMetricExporter,
                )

                readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
            elif metric_choice == "console":
                readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
            self.meter_provider: MeterProvider | NoOpMeterProvider = MeterProvider(
                resource=resource, metric_readers=readers)
        else:
            self.tracer_provider = NoOpTracerProvider()
            self.meter_provider = NoOpMeterProvider()
        self.tracer = self.tracer_provider.get_tracer(f"skybridge.{service}")
        self.meter: Meter = self.meter_provider.get_meter(f"skybridge.{service}")
        self.rpc_duration = self.meter.create_histogram(
            "rpc.server.duration", unit="ms", description="Duration of inbound RPCs")

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        # opentelemetry-instrumentation-grpc leaves this factory unannotated.
        return list(aio_client_interceptors(  # type: ignore[no-untyped-call]
            tracer_provider=self.tracer_provider, filter_=_traced_filter()))

    def instrument_engine(self, engine: AsyncEngine | Engine) -> None:
        """Trace every statement an (async) SQLAlchemy engine runs."""
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.instrumentation.sqlalchemy.version import __version__ as version

        sync_engine = getattr(engine, "sync_engine", engine)
        tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", version,
                                  self.tracer_provider)
        connections = self.meter.create_up_down_counter(
            "db.client.connections.usage", unit="connections",
            description="Connections in use or idle")
        # opentelemetry-instrumentation-sqlalchemy leaves EngineTracer unannotated.
        EngineTracer(tracer, sync_engine, connections)  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        for provider in (self.tracer_provider, self.meter_provider):
            shutdown = getattr(provider, "shutdown", None)
            if shutdown is not None:
                shutdown()


def current_trace_id() -> str | None:
    """The current trace id in hex, or None outside of a recorded span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x")


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the trace and span ids of the current span."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        for key in ("service", "method", "code"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger to stderr in JSON (or plain text) at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
