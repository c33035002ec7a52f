"""The wire form of domain errors: `google.rpc.Status` (AIP-193), and reading it back.

The server's error handling (`shared.interceptors`) turns a `shared.errors.DomainError`
into a `google.rpc.Status` carrying:

- always an `ErrorInfo` (reason in UPPER_SNAKE_CASE, domain = the service);
- for bad input, a `BadRequest` whose field violations name each field and what is wrong;
- for quota or capacity, a `QuotaFailure` naming the resource.

Anything else that escapes a handler is logged with its trace id and becomes INTERNAL with
a generic message: no exception text or stack trace leaves the process.

Clients read the details back with `details_of(rpc_error)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from shared.errors import DomainError, FieldViolation, ResourceExhausted

_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


def grpc_code(code: int) -> grpc.StatusCode:
    """The grpc status code of a `google.rpc.Code` value."""
    return _GRPC_CODES.get(code, grpc.StatusCode.UNKNOWN)


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


#: Bounds of what an error carries, so that its status fits the trailing metadata (grpc's
#: default hard limit is 16 KiB for all of it; the details travel base64-encoded) whatever
#: the request held: a message or description that quotes a 50 KB value is cut short.
MAX_MESSAGE_CHARS = 1024
MAX_FIELD_CHARS = 200
MAX_DESCRIPTION_CHARS = 300
MAX_VIOLATIONS = 20
MAX_METADATA_CHARS = 300
#: The serialized status (sent base64-encoded in `grpc-status-details-bin`) stays below this.
MAX_STATUS_BYTES = 6 * 1024


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def to_status(error: DomainError, domain: str) -> status_pb2.Status:
    """The `google.rpc.Status` for a domain error raised by the service `domain`."""
    metadata = {_cut(k, 64): _cut(v, MAX_METADATA_CHARS)
                for k, v in list(error.metadata.items())[:16]}
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=domain,
                                          metadata=metadata))
    ]
    if error.violations:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=_cut(v.field, MAX_FIELD_CHARS),
                description=_cut(v.description, MAX_DESCRIPTION_CHARS))
            for v in error.violations[:MAX_VIOLATIONS]
        ])))
    message = _cut(error.message, MAX_MESSAGE_CHARS)
    if isinstance(error, ResourceExhausted) and "resource" in error.metadata:
        details.append(_pack(error_details_pb2.QuotaFailure(violations=[
            error_details_pb2.QuotaFailure.Violation(
                subject=metadata["resource"], description=message)
        ])))
    status = status_pb2.Status(code=error.code, message=message, details=details)
    # Non-ASCII text can still be too big for the headers (a character is up to 4 bytes,
    # then base64 or percent-encoded): keep fewer violations, then a shorter message.
    while status.ByteSize() > MAX_STATUS_BYTES or len(status.message.encode()) > 1024:
        bad = error_details_pb2.BadRequest()
        if len(status.details) > 1 and status.details[1].Unpack(bad) and \
                len(bad.field_violations) > 1:
            del bad.field_violations[len(bad.field_violations) // 2:]
            status.details[1].Pack(bad)
        elif len(status.message) > 80:
            status.message = _cut(status.message, len(status.message) // 2)
        else:
            break
    return status


def internal_status(domain: str, trace_id: str | None) -> status_pb2.Status:
    """The INTERNAL answer for an unexpected failure: no internals, only a trace id."""
    message = "internal error"
    metadata = {}
    if trace_id:
        message += f" (trace {trace_id})"
        metadata["trace_id"] = trace_id
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=domain, metadata=metadata)
    return status_pb2.Status(code=code_pb2.INTERNAL, message=message, details=[_pack(info)])


def as_grpc_status(status: status_pb2.Status) -> grpc.Status:
    return rpc_status.to_status(status)


@dataclass(frozen=True)
class ErrorDetails:
    """What a client reads back from a failed call."""

    code: grpc.StatusCode
    message: str
    reason: str | None
    domain: str | None
    metadata: dict[str, str]
    violations: tuple[FieldViolation, ...]


def details_of(error: grpc.RpcError) -> ErrorDetails:
    """Unpack the `google.rpc.Status` details of a failed call (sync or aio)."""
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    reason = domain = None
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return ErrorDetails(
        code=error.code(),
        message=error.details() or "",
        reason=reason,
        domain=domain,
        metadata=metadata,
        violations=tuple(violations),
    )
