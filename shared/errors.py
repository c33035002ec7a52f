"""Domain errors and their wire form: `google.rpc.Status` with canonical codes (AIP-193).

Domain code raises the exceptions below; it knows nothing of gRPC. The server's error
handling (`shared.interceptors`) turns them into a `google.rpc.Status` carrying:

- always an `ErrorInfo` (reason in UPPER_SNAKE_CASE, domain = the service);
- for bad input, a `BadRequest` whose field violations name each field and what is wrong;
- for quota or capacity, a `QuotaFailure` naming the resource.

Anything else that escapes a handler is logged with its trace id and becomes INTERNAL with
a generic message: no exception text or stack trace leaves the process.

Clients read the details back with `details_of(rpc_error)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

_REASON = re.compile(r"^[A-Z][A-Z0-9_]*[A-Z0-9]$")


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: a path like `note.text` or `points[3].latitude_deg`, and why."""

    field: str
    description: str


class DomainError(Exception):
    """An error a client caused or can act on. Subclasses fix the gRPC code."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    default_reason: str = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: Iterable[FieldViolation | tuple[str, str]] = (),
        metadata: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        if not _REASON.match(self.reason):
            raise ValueError(f"reason {self.reason!r} must be UPPER_SNAKE_CASE")
        self.violations = tuple(
            v if isinstance(v, FieldViolation) else FieldViolation(*v) for v in violations
        )
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class OutOfRange(DomainError):
    code = grpc.StatusCode.OUT_OF_RANGE
    default_reason = "OUT_OF_RANGE"


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class Violations:
    """Collects field violations so that one answer names every bad field.

    >>> v = Violations()
    >>> v.require(text, "note.text", "is required")
    >>> v.check(0 <= p <= 10, "note.priority", "must be between 0 and 10")
    >>> v.raise_if_any("the note is invalid")
    """

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        if not ok:
            self.add(field, description)
        return bool(ok)

    def require(self, value: object, field: str, description: str = "is required") -> bool:
        """A violation when `value` is missing: None or an empty string or bytes."""
        return self.check(value is not None and value != "" and value != b"", field, description)

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        for field, description in pairs:
            self.add(field, description)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, message: str = "the request has invalid fields",
                     reason: str = "INVALID_ARGUMENT") -> None:
        if self.items:
            summary = "; ".join(f"{v.field}: {v.description}" for v in self.items[:5])
            raise InvalidArgument(f"{message}: {summary}", reason=reason, violations=self.items)


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
    status = status_pb2.Status(code=error.code.value[0], message=message, details=details)
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
