"""The server interceptor every service runs: lifecycle, tracing, auth, errors and metrics.

One interceptor, wrapping each method's handler once when its servicer is registered, runs
small synchronous stages around a single coroutine frame per call:

    Lifecycle.enter   refuse with UNAVAILABLE while starting or draining; count the call in
                      flight; remember
                      the inbound deadline so outgoing calls are capped (`shared.channels`)
    Tracing.start     a SERVER span named after the full method, parented by the caller's
                      W3C `traceparent` (OpenTelemetry semantic conventions for RPC)
    Authenticator     verify the bearer token and the method's declared scopes; bind the
                      caller for `shared.auth.current_principal()`
    RequestReader     parse the request bytes (grpcio hands them over unparsed, so that a
                      body that is not the request type is INVALID_ARGUMENT
                      `MALFORMED_REQUEST`, not grpcio's UNKNOWN) and check them against the
                      contract (`shared.validation`); for a request stream, each message as
                      the servicer reads it
    -> the servicer method
    ErrorMapper       `DomainError` -> google.rpc.Status (ErrorInfo, BadRequest); the
                      database out of reach -> UNAVAILABLE `DATABASE_UNAVAILABLE` (retryable);
                      anything else -> logged with its trace id, INTERNAL without internals
    Tracing.end, rpc.server.duration histogram, Lifecycle.exit

Why not opentelemetry-instrumentation-grpc's server interceptor: measured in
`bench/platform.py`, it costs about 160 us a call on this machine (it proxies the servicer
context with wrapt, rebuilds the handler and parses the peer on every call), which alone
takes a unary call to about half the throughput of a bare server; the span it makes is built
here for 23-39 us (measured in isolation), with the same names and attributes. Client spans (`shared.channels`) and
SQL spans (`shared.telemetry.Telemetry.instrument_engine`) do come from the OpenTelemetry
instrumentation libraries. Health and reflection pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import DecodeError, Message
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Histogram
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared import auth, db, errors
from shared.status import as_grpc_status, grpc_code, internal_status, to_status
from shared.telemetry import current_trace_id
from shared.validation import Validator

log = logging.getLogger("skybridge.rpc")

#: Absolute `time.monotonic()` deadline of the inbound call being handled, if it has one.
inbound_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "skybridge_inbound_deadline", default=None
)


_TRACE_HEADERS = frozenset(("traceparent", "tracestate"))

T = TypeVar("T")

# grpcio ships no type stubs, so its handlers, contexts and call details are dynamic here:
#: A servicer method, or a stage around one: (request or request stream, context) -> the
#: response (None when a streaming response was written through the context).
Behaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
#: Turns what grpcio hands over (request bytes, or a stream of them) into the checked request.
Read = Callable[[Any], object]
#: The stages around one method: `around(behaviour, read, request, context)`.
Around = Callable[[Behaviour, Read, Any, grpc.aio.ServicerContext], Awaitable[Any]]
#: Wraps one method's handler (`ServerInterceptor.wrap`).
Wrap = Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]


class Lifecycle:
    """Readiness gate and in-flight accounting (so a drain can wait for calls to end).

    `refusal` is None while the service serves, else why a new call is refused (UNAVAILABLE,
    which clients may retry elsewhere): it is starting, or it is draining.
    """

    STARTING = "the service is starting; retry shortly"
    DRAINING = "the service is shutting down; retry on another instance"

    def __init__(self) -> None:
        self.refusal: str | None = self.STARTING
        #: Set when the drain starts: long-lived streams (watches, feeds) end on it, so that
        #: they do not hold the shutdown for the whole grace period.
        self.draining = asyncio.Event()
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def exit(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class Tracing:
    """SERVER spans for inbound calls, parented by the caller's trace context."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def start(
        self, method: str, attributes: dict[str, str], carrier: dict[str, str]
    ) -> tuple[trace.Span, contextvars.Token[otel_context.Context]]:
        parent = extract(carrier) if carrier else None
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER,
                                      attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token

    @staticmethod
    def end(span: trace.Span, token: contextvars.Token[otel_context.Context],
            code: grpc.StatusCode) -> None:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, code.name))
        span.end()
        otel_context.detach(token)


class Authenticator:
    """Bearer tokens and per-method scopes; a method that declared nothing is refused."""

    def __init__(self, verifier: auth.TokenVerifier) -> None:
        self.verifier = verifier
        self.scopes: dict[str, frozenset[str] | None] = {}

    def register(self, service_full_name: str, servicer: object,
                 method_names: Iterable[str]) -> None:
        """Record the scopes `servicer` declared for each method of a service."""
        for name in method_names:
            self.scopes[f"/{service_full_name}/{name}"] = auth.declared_scopes(servicer, name)

    def authenticate(self, method: str, needed: frozenset[str] | None,
                     authorization: str | None) -> auth.Principal | None:
        if needed is None:
            raise errors.PermissionDenied(
                f"{method} declares no access rule; refused by default",
                reason="UNDECLARED_METHOD")
        if not needed:
            return None
        principal = self.verifier.verify_header(authorization)
        auth.authorize(principal, needed, method)
        return principal


class StreamQuota:
    """Open streaming calls per caller (subject and tenant), so that no caller can hold an
    unbounded share of a server's streams: one more is RESOURCE_EXHAUSTED
    `TOO_MANY_STREAMS` with a `QuotaFailure` naming the caller."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[tuple[str, str], int] = {}

    def acquire(self, principal: auth.Principal | None) -> tuple[str, str] | None:
        if principal is None:
            return None
        key = (principal.tenant, principal.subject)
        count = self.open.get(key, 0)
        if count >= self.limit:
            raise errors.ResourceExhausted(
                f"{principal.subject} of {principal.tenant} already holds {count} open "
                f"streams on this server, the most a caller may; close one first",
                reason="TOO_MANY_STREAMS",
                metadata={"resource": f"streams of {principal.subject}@{principal.tenant}",
                          "limit": str(self.limit)})
        self.open[key] = count + 1
        return key

    def release(self, key: tuple[str, str] | None) -> None:
        if key is None:
            return
        count = self.open[key] - 1
        if count:
            self.open[key] = count
        else:
            del self.open[key]


class RequestReader:
    """Request bytes -> a checked request message, for one method's request type."""

    def __init__(self, deserialize: Callable[[bytes], Message], validator: Validator) -> None:
        self.deserialize = deserialize
        self.validator = validator
        owner = getattr(deserialize, "__self__", None)
        self.type_name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "the request")

    def parse(self, raw: bytes, where: str = "request", what: str = "the request") -> Message:
        try:
            message = self.deserialize(raw)
        except (DecodeError, RecursionError, ValueError) as error:
            cause = str(error).rpartition(": ")[2] or "it is not protobuf"
            description = f"does not parse as {self.type_name} ({cause[:100]})"
            raise errors.InvalidArgument(f"{what} {description}", reason="MALFORMED_REQUEST",
                                         violations=[(where, description)]) from None
        self.validator.validate(message, what)
        return message

    def unary(self, raw: bytes) -> Message:
        return self.parse(raw)

    async def stream(self, raw_messages: AsyncIterable[bytes]) -> AsyncIterator[Message]:
        """The request stream as messages; a message that is wrong ends the call."""
        index = 0
        async for raw in raw_messages:
            yield self.parse(raw, f"requests[{index}]", f"message {index} of the request stream")
            index += 1


class ErrorMapper:
    """Domain errors to google.rpc.Status; unexpected ones to a bare INTERNAL."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        #: Called (synchronously, with no argument) when a call meets a database outage:
        #: the store probe (`shared.store_probe`) checks at once, so health follows.
        self.outage_listeners: list[Callable[[], None]] = []

    def status_for(self, error: BaseException,
                   method: str) -> tuple[grpc.StatusCode, grpc.Status]:
        if isinstance(error, errors.DomainError):
            return (grpc_code(error.code),
                    as_grpc_status(to_status(error, self.domain)))
        trace_id = current_trace_id()
        if db.is_outage(error):
            log.warning("%s: the database is unavailable (%s)", method, type(error).__name__,
                        extra={"service": self.domain, "method": method,
                               "code": "UNAVAILABLE", "trace_id": trace_id})
            outage = errors.Unavailable(
                "the database is unavailable; retry (with the same request_id for a write)",
                reason="DATABASE_UNAVAILABLE")
            for listener in self.outage_listeners:
                listener()
            return (grpc_code(outage.code),
                    as_grpc_status(to_status(outage, self.domain)))
        log.error("unexpected error in %s", method, exc_info=error,
                  extra={"service": self.domain, "method": method, "code": "INTERNAL"})
        return grpc.StatusCode.INTERNAL, as_grpc_status(
            internal_status(self.domain, trace_id))


def _is_abort(error: BaseException) -> bool:
    """The servicer (or a stage) already ended the call with context.abort()."""
    return type(error).__name__ == "AbortError"


def _aborted_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


class ServerInterceptor:
    """Runs the stages around every call of the services registered through it.

    The wrapping happens once per method, when a servicer is registered
    (`GrpcService.add` passes a `registrar(server)` to the generated
    `add_*Servicer_to_server`), not per call through grpc.aio's interceptor pipeline: the
    per-call pipeline alone cost about 20 us a call here. Health and reflection are
    registered directly on the server and so pass untouched.
    """

    def __init__(self, domain: str, verifier: auth.TokenVerifier, tracer: trace.Tracer,
                 rpc_duration: Histogram | None = None,
                 max_streams_per_caller: int = 100) -> None:
        self.lifecycle = Lifecycle()
        self.tracing = Tracing(tracer)
        self.auth = Authenticator(verifier)
        self.errors = ErrorMapper(domain)
        self.validator = Validator()
        self.streams = StreamQuota(max_streams_per_caller)
        self.rpc_duration = rpc_duration

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler for `method` (`/package.Service/Method`) inside the stages."""
        reader = RequestReader(handler.request_deserializer, self.validator)
        streaming = handler.request_streaming or handler.response_streaming
        return _wrap_handler(handler, self._around(method, streaming), reader,
                             self.lifecycle.draining)

    def registrar(self, server: grpc.aio.Server) -> _Registrar:
        return _Registrar(server, self.wrap)

    def _around(self, method: str, streaming: bool = False) -> Around:
        service_name, _, method_name = method.lstrip("/").partition("/")
        span_attributes = {"rpc.system": "grpc", "rpc.service": service_name,
                           "rpc.method": method_name}
        needed = self.auth.scopes.get(method)
        lifecycle, tracing, authenticator, mapper = (
            self.lifecycle, self.tracing, self.auth, self.errors)
        histogram = self.rpc_duration
        quota = self.streams if streaming else None
        metric_attributes: dict[grpc.StatusCode, dict[str, str]] = {}

        async def around(behaviour: Behaviour, read: Read, request: Any,
                         context: grpc.aio.ServicerContext) -> Any:
            if lifecycle.refusal is not None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, lifecycle.refusal)
            started = time.perf_counter()
            remaining = context.time_remaining()
            deadline_token = inbound_deadline.set(
                None if remaining is None else time.monotonic() + remaining)
            lifecycle.enter()
            carrier: dict[str, str] = {}
            authorization = None
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    authorization = value
                elif key in _TRACE_HEADERS:
                    carrier[key] = value
            span, span_token = tracing.start(method, span_attributes, carrier)
            principal_token = None
            stream_key = None
            code = grpc.StatusCode.OK
            try:
                principal = authenticator.authenticate(method, needed, authorization)
                principal_token = auth.bind_principal(principal)
                if quota is not None:
                    stream_key = quota.acquire(principal)
                return await behaviour(read(request), context)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as error:  # noqa: BLE001 - every failure gets a status
                if _is_abort(error):
                    code = _aborted_code(context)
                    raise
                code, status = mapper.status_for(error, method)
                await context.abort_with_status(status)
            finally:
                if stream_key is not None:  # only ever set through `quota`
                    cast(StreamQuota, quota).release(stream_key)
                if principal_token is not None:
                    auth.unbind_principal(principal_token)
                tracing.end(span, span_token, code)
                lifecycle.exit()
                inbound_deadline.reset(deadline_token)
                if histogram is not None:
                    labels = metric_attributes.get(code)
                    if labels is None:
                        labels = metric_attributes[code] = {
                            **span_attributes, "rpc.grpc.status_code": code.name}
                    histogram.record((time.perf_counter() - started) * 1000.0, labels)

        return around


class _Registrar:
    """Stands in for the server while generated code registers a servicer's handlers, so
    that each method handler is wrapped once before it reaches the real server."""

    def __init__(self, server: grpc.aio.Server, wrap: Wrap) -> None:
        self._server = server
        self._wrap = wrap

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        # The generated code registers the same handlers both ways; the registered-method
        # path below carries them, wrapped.
        pass

    def add_registered_method_handlers(self, service_name: str,
                                       method_handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        wrapped = {name: self._wrap(f"/{service_name}/{name}", handler)
                   for name, handler in method_handlers.items()}
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service_name, wrapped),))
        self._server.add_registered_method_handlers(service_name, wrapped)


DRAINED = "the service is shutting down; re-subscribe on another instance"


async def _until_drain(work: Awaitable[T], draining: asyncio.Event) -> T:
    """Run a streaming call's `work` unless the server starts draining first; then the work
    is cancelled and the call ends UNAVAILABLE `DRAINING`, which tells a client to
    re-subscribe elsewhere (a stream that ended OK would look like the end of what it
    watched), and the drain does not wait for long-lived streams."""
    if draining.is_set():
        raise errors.Unavailable(DRAINED, reason="DRAINING")
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(draining.wait())
    try:
        done, _ = await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the caller went away (cancelled): take the work down with it
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise
    waiter.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise errors.Unavailable(DRAINED, reason="DRAINING")


#: A message on its way out when a drain ends the stream gets this long to leave before the
#: stream's status is sent (grpc refuses a status while a write is pending).
FLUSH_ON_DRAIN_SECONDS = 0.5


async def _write_through_cancel(context: grpc.aio.ServicerContext, item: Any) -> None:
    """`context.write(item)`; a cancellation (the drain ending the stream) waits for the
    write to finish, up to FLUSH_ON_DRAIN_SECONDS, then goes on. Cancelled mid-write, the
    stream's UNAVAILABLE status would otherwise meet grpc's one-pending-send rule
    (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS) and the client would not get it."""
    write = asyncio.ensure_future(context.write(item))
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(FLUSH_ON_DRAIN_SECONDS):
                await write
        raise


def _wrap_handler(handler: grpc.RpcMethodHandler, around: Around,
                  reader: RequestReader, draining: asyncio.Event) -> grpc.RpcMethodHandler:
    """A handler whose behaviour runs inside `around(behaviour, read, request, context)`.

    grpcio hands the handler the request bytes (no deserializer is registered); `read`
    turns them into the checked request (or request stream) once the caller is
    authenticated. For streaming responses the inner stream is written with `context.write`
    inside `around`, so an error raised mid-stream is handled like a unary one. Every
    streaming call (either way) ends on the server's drain (`_until_drain`).
    """
    read: Read = reader.stream if handler.request_streaming else reader.unary
    if handler.unary_unary:
        inner = handler.unary_unary

        async def unary_unary(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            return await around(inner, read, request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, None, handler.response_serializer)
    if handler.stream_unary:
        inner = handler.stream_unary

        async def whole_stream_unary(request_iterator: AsyncIterable[Message],
                                     context: grpc.aio.ServicerContext) -> Any:
            return await _until_drain(inner(request_iterator, context), draining)

        async def stream_unary(request_iterator: AsyncIterable[bytes],
                               context: grpc.aio.ServicerContext) -> Any:
            return await around(whole_stream_unary, read, request_iterator, context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, None, handler.response_serializer)
    if handler.unary_stream:
        inner = handler.unary_stream
        make = grpc.unary_stream_rpc_method_handler
    else:
        inner = handler.stream_stream
        make = grpc.stream_stream_rpc_method_handler

    async def write_all(request: Any, context: grpc.aio.ServicerContext) -> None:
        result = inner(request, context)
        if inspect.isasyncgen(result):
            async for item in result:
                await _write_through_cancel(context, item)
        elif inspect.isawaitable(result):
            await result

    async def whole(request: Any, context: grpc.aio.ServicerContext) -> None:
        await _until_drain(write_all(request, context), draining)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> None:
        await around(whole, read, request, context)

    return make(streaming, None, handler.response_serializer)
