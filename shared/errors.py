"""Domain errors, with canonical codes (AIP-193), and nothing of gRPC.

Domain code raises the exceptions below: each names its canonical code (`google.rpc.Code`),
a reason in UPPER_SNAKE_CASE, the fields that are wrong and metadata. Their wire form, a
`google.rpc.Status`, and the reading of it back from a failed call are in `shared.status`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.rpc import code_pb2

_REASON = re.compile(r"^[A-Z][A-Z0-9_]*[A-Z0-9]$")


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: a path like `note.text` or `points[3].latitude_deg`, and why."""

    field: str
    description: str


class DomainError(Exception):
    """An error a client caused or can act on. Subclasses fix the canonical code."""

    #: A `google.rpc.Code` value.
    code: int = code_pb2.UNKNOWN
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
    code = code_pb2.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class OutOfRange(DomainError):
    code = code_pb2.OUT_OF_RANGE
    default_reason = "OUT_OF_RANGE"


class NotFound(DomainError):
    code = code_pb2.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = code_pb2.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    code = code_pb2.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    code = code_pb2.ABORTED
    default_reason = "ABORTED"


class ResourceExhausted(DomainError):
    code = code_pb2.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class PermissionDenied(DomainError):
    code = code_pb2.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    code = code_pb2.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class Unimplemented(DomainError):
    code = code_pb2.UNIMPLEMENTED
    default_reason = "UNIMPLEMENTED"


class Unavailable(DomainError):
    code = code_pb2.UNAVAILABLE
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
