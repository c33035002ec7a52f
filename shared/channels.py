"""Client channels for calls between services.

`ChannelFactory.channel(service, descriptors)` opens a `grpc.aio` channel that:

- retries idempotent methods through the channel's service config: a method is retried
  (UNAVAILABLE only, up to 4 attempts with exponential backoff) exactly when its contract
  marks it `idempotency_level = NO_SIDE_EFFECTS` or `IDEMPOTENT`, so the rule lives in the
  .proto file, not in client code;
- balances round robin over the target's addresses and watches each server's health
  (the gRPC health protocol): a server that says NOT_SERVING (draining, starting, its
  database unreachable) gets no new calls, so a drain never has calls queued that its
  stop would cancel;
- caps every call's deadline: a unary call gets at most `SKYBRIDGE_CALL_TIMEOUT_SECONDS`,
  and any call made while handling an inbound call gets no more than that call has left
  (`context.time_remaining()`, which is None for a call without a deadline);
- carries the calling service's own bearer token;
- propagates the trace context (W3C traceparent) through the OpenTelemetry interceptors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor

from shared.auth import ServiceCredentials
from shared.interceptors import inbound_deadline

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.telemetry import Telemetry

RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
#: Round robin over the target's addresses, each watched with the health protocol (the
#: whole server's status, service name "").
BALANCING = {"loadBalancingConfig": [{"round_robin": {}}],
             "healthCheckConfig": {"serviceName": ""}}
_RETRYABLE_LEVELS = (
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT,
)
#: Smallest timeout handed to gRPC; a call whose budget is gone fails DEADLINE_EXCEEDED.
MIN_TIMEOUT_SECONDS = 0.001

#: What grpc.aio passes an interceptor to go on with the call: (call details, the request or
#: request iterator) -> the call. grpcio ships no type stubs, so the call is dynamic.
Continuation = Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]]


def retry_service_config(descriptors: Iterable[ServiceDescriptor]) -> str:
    """The service config JSON that retries the idempotent methods of `descriptors`."""
    names: list[dict[str, str]] = []
    for service in descriptors:
        for method in service.methods:
            level = method.GetOptions().idempotency_level
            if level in _RETRYABLE_LEVELS:
                names.append({"service": service.full_name, "method": method.name})
    methods: list[dict[str, object]] = []
    if names:
        methods.append({"name": names, "retryPolicy": RETRY_POLICY})
    config = {"methodConfig": methods, **BALANCING}
    return json.dumps(config)


def capped_timeout(requested: float | None, default_cap: float | None) -> float | None:
    """The timeout for an outgoing call: the smallest of what was asked, the default cap
    and what the inbound call has left."""
    candidates = [t for t in (requested, default_cap) if t is not None]
    deadline = inbound_deadline.get()
    if deadline is not None:
        candidates.append(deadline - time.monotonic())
    if not candidates:
        return None
    return max(min(candidates), MIN_TIMEOUT_SECONDS)


def channel_options(descriptors: Iterable[ServiceDescriptor]) -> list[tuple[str, Any]]:
    """The channel options every client of the suite uses: retries of the idempotent
    methods, round robin with health checks, 64 MiB messages, keepalive."""
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", retry_service_config(descriptors)),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 30_000),
    ]


class _Outgoing:
    """Adds the service token and caps the deadline of an outgoing call."""

    def __init__(self, credentials: ServiceCredentials | None, unary_cap: float):
        self.credentials = credentials
        self.unary_cap = unary_cap

    def details(self, details: grpc.aio.ClientCallDetails,
                unary_response: bool) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if self.credentials is not None and "authorization" not in metadata:
            metadata.add("authorization", self.credentials.authorization())
        timeout = capped_timeout(details.timeout, self.unary_cap if unary_response else None)
        return grpc.aio.ClientCallDetails(details.method, timeout, metadata,
                                          details.credentials, details.wait_for_ready)


# grpc.aio files each interceptor object under exactly one kind of call, so each kind
# gets its own small interceptor around the shared `_Outgoing`.
class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc: no stubs
    def __init__(self, outgoing: _Outgoing) -> None:
        self.outgoing = outgoing

    async def intercept_unary_unary(self, continuation: Continuation,
                                    client_call_details: grpc.aio.ClientCallDetails,
                                    request: Any) -> Any:
        return await continuation(self.outgoing.details(client_call_details, True), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]  # grpc: no stubs
    def __init__(self, outgoing: _Outgoing) -> None:
        self.outgoing = outgoing

    async def intercept_unary_stream(self, continuation: Continuation,
                                     client_call_details: grpc.aio.ClientCallDetails,
                                     request: Any) -> Any:
        return await continuation(self.outgoing.details(client_call_details, False), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]  # grpc: no stubs
    def __init__(self, outgoing: _Outgoing) -> None:
        self.outgoing = outgoing

    async def intercept_stream_unary(self, continuation: Continuation,
                                     client_call_details: grpc.aio.ClientCallDetails,
                                     request_iterator: Any) -> Any:
        return await continuation(self.outgoing.details(client_call_details, True),
                                  request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]  # grpc: no stubs
    def __init__(self, outgoing: _Outgoing) -> None:
        self.outgoing = outgoing

    async def intercept_stream_stream(self, continuation: Continuation,
                                      client_call_details: grpc.aio.ClientCallDetails,
                                      request_iterator: Any) -> Any:
        return await continuation(self.outgoing.details(client_call_details, False),
                                  request_iterator)


def outgoing_interceptors(credentials: ServiceCredentials | None,
                          unary_cap: float) -> list[grpc.aio.ClientInterceptor]:
    """One interceptor per kind of call, all adding the token and capping the deadline."""
    outgoing = _Outgoing(credentials, unary_cap)
    return [kind(outgoing) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


class ChannelFactory:
    """Opens channels from one service to the others."""

    def __init__(self, settings: Settings, telemetry: Telemetry | None = None,
                 credentials: ServiceCredentials | None = None) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.credentials = credentials
        self._channels: list[grpc.aio.Channel] = []

    def channel(self, service: str, descriptors: Iterable[ServiceDescriptor], *,
                target: str | None = None) -> grpc.aio.Channel:
        interceptors: list[grpc.aio.ClientInterceptor] = []
        if self.telemetry is not None:
            interceptors += self.telemetry.client_interceptors()
        interceptors += outgoing_interceptors(self.credentials,
                                              self.settings.call_timeout_seconds)
        channel = grpc.aio.insecure_channel(
            target or self.settings.target(service),
            options=channel_options(descriptors),
            interceptors=interceptors,
        )
        self._channels.append(channel)
        return channel

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
