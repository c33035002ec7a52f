"""Server interceptors shared by every service: lifecycle, errors, auth.

Each interceptor wraps the method handler once per method (the wrapped handlers are cached),
so a call pays one extra coroutine frame per interceptor and nothing else. Order, outermost
first: OpenTelemetry (from `shared.telemetry`), lifecycle, errors, auth, the servicer.

- `LifecycleInterceptor`: refuses calls with UNAVAILABLE until the service is ready, counts
  calls in flight (so shutdown can wait for them), and remembers the inbound deadline so that
  outgoing calls made while handling it are capped (`shared.channels`).
- `ErrorInterceptor`: turns `DomainError` into `google.rpc.Status` (ErrorInfo, BadRequest);
  logs anything unexpected with its trace id and answers INTERNAL with no internals; records
  the `rpc.server.duration` histogram with the final status code.
- `AuthInterceptor`: verifies the bearer token and the method's declared scopes, and binds
  the caller for `shared.auth.current_principal()`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import Callable

import grpc

from shared import auth, errors
from shared.telemetry import EXCLUDED_SERVICES, current_trace_id

log = logging.getLogger("skybridge.rpc")

#: Absolute `time.monotonic()` deadline of the inbound call being handled, if it has one.
inbound_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "skybridge_inbound_deadline", default=None
)


def is_infrastructure(method: str) -> bool:
    """Health and reflection: always reachable, never authenticated or traced."""
    return any(method.startswith(f"/{service}/") for service in EXCLUDED_SERVICES)


def _wrap_handler(handler: grpc.RpcMethodHandler, around: Callable) -> grpc.RpcMethodHandler:
    """A handler whose behaviour runs inside `around(behaviour, request, context)`.

    For streaming responses the inner stream is written with `context.write` inside
    `around`, so an error raised mid-stream is handled like a unary one.
    """
    if handler.unary_unary:
        inner = handler.unary_unary

        async def unary_unary(request, context):
            return await around(inner, request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer)
    if handler.stream_unary:
        inner = handler.stream_unary

        async def stream_unary(request_iterator, context):
            return await around(inner, request_iterator, context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        inner = handler.unary_stream
        make = grpc.unary_stream_rpc_method_handler
    else:
        inner = handler.stream_stream
        make = grpc.stream_stream_rpc_method_handler

    async def streaming_writer(request, context):
        async def drain(req, ctx):
            result = inner(req, ctx)
            if inspect.isasyncgen(result):
                async for item in result:
                    await ctx.write(item)
            elif inspect.isawaitable(result):
                await result

        await around(drain, request, context)

    return make(streaming_writer, handler.request_deserializer, handler.response_serializer)


class _CachingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each method's handler once and reuses it."""

    def __init__(self) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or is_infrastructure(method):
            return handler
        wrapped = self.wrap(method, handler)
        self._cache[method] = wrapped
        return wrapped

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        raise NotImplementedError


class LifecycleInterceptor(_CachingInterceptor):
    """Readiness gate, in-flight accounting and inbound deadline capture."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def wrap(self, method, handler):
        async def around(behaviour, request, context):
            if not self.ready:
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    "the service is starting; retry shortly")
            remaining = context.time_remaining()
            token = inbound_deadline.set(
                None if remaining is None else time.monotonic() + remaining)
            self.in_flight += 1
            self._idle.clear()
            try:
                return await behaviour(request, context)
            finally:
                self.in_flight -= 1
                if self.in_flight == 0:
                    self._idle.set()
                inbound_deadline.reset(token)

        return _wrap_handler(handler, around)


class ErrorInterceptor(_CachingInterceptor):
    """Domain errors to google.rpc.Status; unexpected ones to a bare INTERNAL."""

    def __init__(self, domain: str, rpc_duration=None) -> None:
        super().__init__()
        self.domain = domain
        self.rpc_duration = rpc_duration

    def wrap(self, method, handler):
        service_name, _, method_name = method.lstrip("/").partition("/")
        histogram = self.rpc_duration
        domain = self.domain

        async def around(behaviour, request, context):
            started = time.perf_counter()
            code = "OK"
            try:
                return await behaviour(request, context)
            except errors.DomainError as error:
                code = error.code.name
                await context.abort_with_status(
                    errors.as_grpc_status(errors.to_status(error, domain)))
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except Exception as error:
                if _is_abort(error):
                    code = _code_name(context)
                    raise
                code = "INTERNAL"
                trace_id = current_trace_id()
                log.exception("unexpected error in %s", method,
                              extra={"service": domain, "method": method, "code": code})
                await context.abort_with_status(
                    errors.as_grpc_status(errors.internal_status(domain, trace_id)))
            finally:
                if histogram is not None:
                    histogram.record(
                        (time.perf_counter() - started) * 1000.0,
                        {"rpc.service": service_name, "rpc.method": method_name,
                         "rpc.grpc.status_code": code},
                    )

        return _wrap_handler(handler, around)


def _is_abort(error: BaseException) -> bool:
    return type(error).__name__ == "AbortError" or isinstance(error, grpc.RpcError)


def _code_name(context) -> str:
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - best effort for a metric label
        return "UNKNOWN"
    if code is None:
        return "UNKNOWN"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class AuthInterceptor(_CachingInterceptor):
    """Bearer token and per-method scopes; closed by default."""

    def __init__(self, verifier: auth.TokenVerifier) -> None:
        super().__init__()
        self.verifier = verifier
        self.scopes: dict[str, frozenset[str] | None] = {}

    def register(self, service_full_name: str, servicer: object, method_names) -> None:
        """Record the scopes `servicer` declared for each method of a service."""
        for name in method_names:
            self.scopes[f"/{service_full_name}/{name}"] = auth.declared_scopes(servicer, name)

    def wrap(self, method, handler):
        needed = self.scopes.get(method)
        verifier = self.verifier

        async def around(behaviour, request, context):
            if needed is None:
                raise errors.PermissionDenied(
                    f"{method} declares no access rule; refused by default",
                    reason="UNDECLARED_METHOD")
            if not needed:  # public
                return await behaviour(request, context)
            authorization = None
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    authorization = value
                    break
            principal = verifier.verify_header(authorization)
            auth.authorize(principal, needed, method)
            token = auth.bind_principal(principal)
            try:
                return await behaviour(request, context)
            finally:
                auth.unbind_principal(token)

        return _wrap_handler(handler, around)
