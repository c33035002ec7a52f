"""What crosses the gateway besides the message: gRPC errors as Connect errors, and the
HTTP request's headers as gRPC metadata.

A gRPC failure keeps its code, its message and its `google.rpc.Status` details
(`ErrorInfo`, `BadRequest`, ...), which Connect carries as the error's `details`; the
status code's name maps one to one onto Connect's codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import Headers
from google.rpc import status_pb2

from shared import errors
from shared.status import grpc_code, to_status

#: Where Connect errors raised by the gateway itself say they come from.
DOMAIN = "gateway.skybridge"

#: Request headers forwarded to the service as gRPC metadata (lower case). The deadline is
#: forwarded as the call's timeout, not as a header.
FORWARDED = ("authorization",)
#: The W3C trace context, read into the gateway's own span (whose context then travels on).
TRACE_HEADERS = ("traceparent", "tracestate")

#: gRPC's status codes as Connect's (the same names, but CANCELLED is spelt CANCELED).
_CODES = {status: Code[status.name.replace("CANCELLED", "CANCELED")]
          for status in grpc.StatusCode if status is not grpc.StatusCode.OK}


def forwarded_metadata(headers: Headers) -> tuple[tuple[str, str], ...]:
    """The request headers a service needs, as gRPC metadata."""
    return tuple((name, value) for name in FORWARDED
                 if (value := headers.get(name)) is not None)


def trace_carrier(headers: Headers) -> dict[str, str]:
    return {name: value for name in TRACE_HEADERS if (value := headers.get(name)) is not None}


def connect_error(error: grpc.aio.AioRpcError) -> ConnectError:
    """A failed gRPC call as the Connect error the HTTP caller gets."""
    details: Sequence[object] = ()
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status()
            status.ParseFromString(value)
            details = list(status.details)
            break
    code = _CODES.get(error.code(), Code.UNKNOWN)
    return ConnectError(code, error.details() or "", details=details)  # type: ignore[arg-type]


def domain_error(error: errors.DomainError) -> ConnectError:
    """One of the gateway's own refusals (a body that does not parse, a body too large, an
    unknown path, a bad development-token request), with the same details a service sends."""
    status = to_status(error, DOMAIN)
    return ConnectError(_CODES.get(grpc_code(status.code), Code.UNKNOWN), status.message,
                        details=list(status.details))
