"""Exports as files: `/download/<package>.<Service>/<Method>` answers a server-streaming
export (a response with a `bytes data` field: orbit's ExportEphemeris, the link broker's and
threat's exports) as one HTTP body, the chunks' `data` joined as they arrive, with the first
message's media type (`media_type` or `content_type`) and file name (`file_name`) as
`Content-Type` and `Content-Disposition`.

    curl -H "Authorization: Bearer $TOKEN" -o starlink.oem \\
      "http://127.0.0.1:8080/download/skybridge.orbit.v1.OrbitService/ExportEphemeris?message=$(
        jq -rn '{selection: {all: true}, window: {startTime: "2026-12-08T00:00:00Z",
        endTime: "2026-12-08T01:00:00Z"}, step: "60s", format: "FORMAT_OEM"} | @uri')"

The request is the method's request as JSON: the `message` query parameter (GET) or the
body (POST). The bearer token travels only in the `Authorization` header, never in the
URL. An error before the first chunk is a Connect error with its HTTP status; after it,
the body is cut short (the chunked transfer never ends cleanly), so a client never takes a
partial file for a whole one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from connectrpc.errors import ConnectError
from connectrpc.request import Headers, RequestContext
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.gateway.codecs import StrictJSONCodec
from services.gateway.procedures import Kind, Procedure
from services.gateway.responses import SECURITY_HEADERS

PREFIX = "/download"
_TYPE_FIELDS = ("media_type", "content_type")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class Download:
    procedure: Procedure
    stream: Callable[[Message, Any], Any]


def downloadable(procedure: Procedure) -> bool:
    """A server stream whose messages carry `bytes data`."""
    data = procedure.response_type.DESCRIPTOR.fields_by_name.get("data")
    return procedure.kind is Kind.SERVER_STREAM and data is not None and \
        data.type == FieldDescriptor.TYPE_BYTES


def downloads(procedures: list[Procedure],
              streams: Mapping[str, Callable[[Message, Any], Any]]) -> dict[str, Download]:
    return {PREFIX + p.path: Download(p, streams[p.path])
            for p in procedures if downloadable(p) and p.path in streams}


def request_from(download: Download, method: str, query: bytes, body: bytes) -> Message:
    """The method's request from the `message` query parameter (GET) or the body (POST)."""
    if method == "GET":
        values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("message", [""])
        text = values[0].encode() or b"{}"
    else:
        text = body or b"{}"
    codec: StrictJSONCodec[Message] = StrictJSONCodec()
    return codec.decode(text, download.procedure.request_type())


def context(download: Download, method: str, headers: list[tuple[bytes, bytes]]) -> Any:
    """The RequestContext the forwarder reads (headers, deadline) for a plain HTTP call."""
    copied = Headers()
    timeout_ms: int | None = None
    for name, value in headers:
        key = name.decode("latin-1").lower()
        copied.add(key, value.decode("latin-1"))
        if key == "connect-timeout-ms" and value.isdigit():
            timeout_ms = int(value)
    return RequestContext(method=download.procedure.info, http_method=method,
                          request_headers=copied, timeout_ms=timeout_ms)


def file_headers(first: Message) -> list[tuple[bytes, bytes]]:
    media = next((getattr(first, name) for name in _TYPE_FIELDS
                  if name in first.DESCRIPTOR.fields_by_name and getattr(first, name)),
                 "application/octet-stream")
    headers = [(b"content-type", str(media).encode("latin-1", "replace")), *SECURITY_HEADERS,
               (b"cache-control", b"no-store")]
    name = getattr(first, "file_name", "") if "file_name" in first.DESCRIPTOR.fields_by_name \
        else ""
    if name:
        safe = _SAFE_NAME.sub("_", str(name))[:120]
        headers.append((b"content-disposition", f'attachment; filename="{safe}"'.encode()))
    return headers


async def send(download: Download, request: Message, ctx: Any, send_message: Any,
               send_error: Callable[[ConnectError], Any]) -> None:
    """Streams the export's `data` as the body; see the module's docstring for errors."""
    started = False
    stream = download.stream(request, ctx)
    try:
        async for message in stream:
            if not started:
                await send_message({"type": "http.response.start", "status": 200,
                                    "headers": file_headers(message)})
                started = True
            if message.data:
                await send_message({"type": "http.response.body", "body": message.data,
                                    "more_body": True})
    except ConnectError as error:
        if not started:
            await send_error(error)
            return
        raise  # the body is cut short: uvicorn closes the connection mid-transfer
    finally:
        await stream.aclose()
    if not started:
        await send_message({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/octet-stream"),
                                        *SECURITY_HEADERS]})
    await send_message({"type": "http.response.body", "body": b"", "more_body": False})
