"""Plain HTTP answers of the gateway (its own routes and refusals), with errors in the
Connect protocol's JSON form: `{"code", "message", "details": [{"type", "value"}]}`, the
details being the same `google.rpc` messages (`ErrorInfo`, `BadRequest`) a service sends,
base64 without padding, at the HTTP status the Connect protocol gives each code."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError

#: HTTP status per Connect code (the Connect protocol's table).
HTTP_STATUS = {
    Code.CANCELED: 499, Code.UNKNOWN: 500, Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504, Code.NOT_FOUND: 404, Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403, Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400, Code.ABORTED: 409, Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501, Code.INTERNAL: 500, Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500, Code.UNAUTHENTICATED: 401,
}

Send = Any
Header = tuple[bytes, bytes]

SECURITY_HEADERS: tuple[Header, ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


def error_body(error: ConnectError) -> bytes:
    body: dict[str, object] = {"code": error.code.value, "message": error.message}
    if error.details:
        body["details"] = [
            {"type": detail.type_url.rpartition("/")[2],
             "value": base64.b64encode(detail.value).decode().rstrip("=")}
            for detail in error.details
        ]
    return json.dumps(body).encode()


async def send_bytes(send: Send, status: int, body: bytes, content_type: bytes,
                     headers: Sequence[Header] = (), head_only: bool = False) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS, *headers]})
    await send({"type": "http.response.body", "body": b"" if head_only else body})


async def send_json(send: Send, status: int, value: object) -> None:
    await send_bytes(send, status, json.dumps(value).encode(), b"application/json")


async def send_error(send: Send, error: ConnectError, status: int | None = None) -> None:
    await send_bytes(send, HTTP_STATUS.get(error.code, 500) if status is None else status,
                     error_body(error), b"application/json")
