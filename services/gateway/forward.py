"""Forwarding one Connect call to the gRPC service that owns it.

One endpoint per `Procedure`, built by kind from the descriptors (`endpoints`): the request
goes out on the owner's channel with the caller's bearer token, the trace context of the
gateway's SERVER span (W3C `traceparent`, injected here), and the caller's deadline
(`Connect-Timeout-Ms`) as the call's timeout; a unary call without one, or with a longer
one, gets `unary_cap_s` (`SKYBRIDGE_GATEWAY_TIMEOUT_SECONDS`). The answer, or the gRPC error
with its code and `google.rpc` details, goes back to the caller.

The channels carry no client interceptors: the gateway sets the metadata and the timeout
itself, which saves grpc.aio's intercepted-call tasks and a second span on every call
(measured: ADR 0011). They keep the suite's channel options (`shared.channels`: retries of
the idempotent methods, round robin over healthy servers).

Server streams the gateway forwards are tracked so that a drain ends them at once
(UNAVAILABLE, "the gateway is draining"; the client reconnects elsewhere) instead of waiting
out the grace period; unary calls and uploads in flight finish, as in the services' drain
(ADR 0007).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from connectrpc.server import Endpoint
from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.gateway.procedures import Kind, Procedure
from services.gateway.translate import connect_error, forwarded_metadata, trace_carrier
from shared.channels import MIN_TIMEOUT_SECONDS

Context = RequestContext[Message, Message]


class Forwarder:
    """Sends each procedure's calls to its owner's channel."""

    def __init__(self, channels: Mapping[str, grpc.aio.Channel], tracer: trace.Tracer, *,
                 unary_cap_s: float) -> None:
        self.channels = channels
        self.tracer = tracer
        self.unary_cap_s = unary_cap_s
        self.open_streams: set[Any] = set()
        self.draining = False
        #: The server-stream forwarders by path (the download route reuses them).
        self.streams: dict[str, Callable[[Message, Context], Any]] = {}

    def drain(self) -> None:
        """End every forwarded server stream now (new calls are refused by the app)."""
        self.draining = True
        for call in list(self.open_streams):
            call.cancel()

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels.values()))

    def _start_span(self, procedure: Procedure, ctx: Context) -> trace.Span:
        """The gateway's SERVER span, parented by the caller's trace context."""
        parent = extract(trace_carrier(ctx.request_headers()))
        attributes = {"rpc.system": "connect_rpc", "rpc.service": procedure.info.service_name,
                      "rpc.method": procedure.info.name}
        return self.tracer.start_span(procedure.path, context=parent, kind=SpanKind.SERVER,
                                      attributes=attributes)

    @contextmanager
    def _span(self, procedure: Procedure, ctx: Context) -> Iterator[trace.Span]:
        with trace.use_span(self._start_span(procedure, ctx), end_on_exit=True) as span:
            yield span

    def _outgoing(self, span: trace.Span, ctx: Context,
                  cap_s: float | None) -> tuple[tuple[tuple[str, str], ...], float | None]:
        """(metadata, timeout) for the call: the caller's token, this span's trace context,
        and the caller's deadline capped at `cap_s`."""
        carrier: dict[str, str] = {}
        inject(carrier, context=trace.set_span_in_context(span))
        metadata = forwarded_metadata(ctx.request_headers()) + tuple(carrier.items())
        remaining_ms = ctx.timeout_ms()
        candidates = [t for t in (None if remaining_ms is None else remaining_ms / 1000.0,
                                  cap_s) if t is not None]
        timeout = max(min(candidates), MIN_TIMEOUT_SECONDS) if candidates else None
        return metadata, timeout

    def _ended_by_drain(self, call: Any) -> bool:
        """grpc.aio raises CancelledError from a call `drain` cancelled; that is the drain,
        not this task being cancelled (a client that went away)."""
        task = asyncio.current_task()
        return self.draining and call.cancelled() and (task is None or task.cancelling() == 0)

    def _draining(self, span: trace.Span) -> ConnectError:
        span.set_status(Status(StatusCode.ERROR, "UNAVAILABLE"))
        return ConnectError(Code.UNAVAILABLE, "the gateway is draining; call again")

    def _failed(self, span: trace.Span, error: grpc.aio.AioRpcError) -> ConnectError:
        if self.draining and error.code() is grpc.StatusCode.CANCELLED:
            failure = ConnectError(Code.UNAVAILABLE, "the gateway is draining; call again")
        else:
            failure = connect_error(error)
        span.set_status(Status(StatusCode.ERROR, failure.code.name))
        return failure

    def unary(self, procedure: Procedure) -> Callable[[Message, Context], Any]:
        multicallable = self.channels[procedure.service].unary_unary(
            procedure.path, request_serializer=procedure.request_type.SerializeToString,
            response_deserializer=procedure.response_type.FromString)

        async def call(request: Message, ctx: Context) -> Message:
            with self._span(procedure, ctx) as span:
                metadata, timeout = self._outgoing(span, ctx, self.unary_cap_s)
                try:
                    response: Message = await multicallable(request, metadata=metadata,
                                                            timeout=timeout)
                    return response
                except grpc.aio.AioRpcError as error:
                    raise self._failed(span, error) from None

        return call

    def server_stream(self, procedure: Procedure) -> Callable[[Message, Context], Any]:
        multicallable = self.channels[procedure.service].unary_stream(
            procedure.path, request_serializer=procedure.request_type.SerializeToString,
            response_deserializer=procedure.response_type.FromString)

        async def call(request: Message, ctx: Context) -> AsyncIterator[Message]:
            # The span lasts as long as the stream but is never attached to the context: a
            # context attached across the generator's yields would leak.
            span = self._start_span(procedure, ctx)
            metadata, timeout = self._outgoing(span, ctx, None)
            pending = multicallable(request, metadata=metadata, timeout=timeout)
            self.open_streams.add(pending)
            try:
                async for response in pending:
                    yield response
            except grpc.aio.AioRpcError as error:
                raise self._failed(span, error) from None
            except asyncio.CancelledError:
                if self._ended_by_drain(pending):
                    raise self._draining(span) from None
                raise
            finally:
                self.open_streams.discard(pending)
                pending.cancel()
                span.end()

        return call

    def client_stream(self, procedure: Procedure) -> Callable[[AsyncIterator[Message], Context],
                                                               Any]:
        multicallable = self.channels[procedure.service].stream_unary(
            procedure.path, request_serializer=procedure.request_type.SerializeToString,
            response_deserializer=procedure.response_type.FromString)

        async def call(requests: AsyncIterator[Message], ctx: Context) -> Message:
            # A request message that does not parse ends the upload: the call is cancelled
            # and the caller gets that error (as gRPC ends a call on a bad message).
            refused: list[ConnectError] = []

            async def relay() -> AsyncIterator[Message]:
                try:
                    async for request in requests:
                        yield request
                except ConnectError as error:
                    refused.append(error)
                    pending.cancel()

            with self._span(procedure, ctx) as span:
                metadata, timeout = self._outgoing(span, ctx, None)
                pending = multicallable(relay(), metadata=metadata, timeout=timeout)
                try:
                    response: Message = await pending
                    return response
                except grpc.aio.AioRpcError as error:
                    if refused:
                        raise refused[0] from None
                    raise self._failed(span, error) from None
                except asyncio.CancelledError:
                    if refused:
                        raise refused[0] from None
                    raise

        return call

    def endpoints(self, procedures: Sequence[Procedure]) -> dict[str, Any]:
        """Connect endpoints by path for `procedures` (bidirectional streams, which no
        service of the suite declares, are left out)."""
        made: dict[str, Any] = {}
        for procedure in procedures:
            if procedure.kind is Kind.UNARY:
                made[procedure.path] = Endpoint.unary(procedure.info, self.unary(procedure))
            elif procedure.kind is Kind.SERVER_STREAM:
                self.streams[procedure.path] = self.server_stream(procedure)
                made[procedure.path] = Endpoint.server_stream(
                    procedure.info, self.streams[procedure.path])
            elif procedure.kind is Kind.CLIENT_STREAM:
                made[procedure.path] = Endpoint.client_stream(
                    procedure.info, self.client_stream(procedure))
        return made
