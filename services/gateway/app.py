"""The gateway's ASGI application: one router in front of the Connect procedures.

    /<package>.<Service>/<Method>   every RPC of the suite (Connect: JSON or binary, unary
                                    and streaming; GET for side-effect-free unary calls)
    /download/<package>.<Service>/<Method>
                                    an export as a file (downloads.py)
    /dev/tokens                     development tokens (GET: enabled?; POST: mint)
    /healthz                        200 SERVING, 503 while starting or draining
    anything else (GET/HEAD)        the console's files

Bodies are counted as they arrive: a body over the limit (`max_body_bytes`, by its
Content-Length or by what was read) is RESOURCE_EXHAUSTED naming the limit, so no caller
makes the gateway hold more than that. An unknown procedure is HTTP 404 with a Connect
error (`unimplemented`, as gRPC answers an unknown method).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.server import ConnectASGIApplication

from services.gateway import dev_tokens, downloads
from services.gateway.console_files import NOT_BUILT, ConsoleFiles
from services.gateway.responses import send_bytes, send_error, send_json
from services.gateway.translate import domain_error
from shared import errors
from shared.auth import TokenMinter

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: A body announced over the limit is read into nothing up to this many limits, then cut.
DISCARD_FACTOR = 4

_PROCEDURE = re.compile(r"/[A-Za-z_][\w.]*\.[A-Za-z_]\w*/[A-Za-z_]\w*")


class _Procedures(ConnectASGIApplication[None]):
    """connect-python's application over the gateway's endpoints."""

    @property
    def path(self) -> str:
        return "/"


def too_large(limit: int) -> ConnectError:
    return domain_error(errors.ResourceExhausted(
        f"the request body is larger than the gateway's limit of {limit} bytes "
        "(SKYBRIDGE_GATEWAY_MAX_BODY_BYTES); send large imports straight to the gRPC service",
        reason="REQUEST_TOO_LARGE", violations=[("request", f"exceeds {limit} bytes")],
        metadata={"limit_bytes": str(limit)}))


def _limited(receive: Receive, limit: int) -> Receive:
    read = 0

    async def counted() -> dict[str, Any]:
        nonlocal read
        message = await receive()
        if message["type"] == "http.request":
            read += len(message.get("body", b""))
            if read > limit:
                raise too_large(limit)
        return message

    return counted


class GatewayApp:
    def __init__(self, endpoints: Mapping[str, Any], *, max_body_bytes: int,
                 console: ConsoleFiles, minter: TokenMinter | None,
                 files: Mapping[str, downloads.Download] | None = None) -> None:
        self.paths = frozenset(endpoints)
        self.files = dict(files or {})
        self.procedures = _Procedures(service=None, endpoints=lambda _: endpoints,
                                      read_max_bytes=max_body_bytes)
        self.max_body_bytes = max_body_bytes
        self.console = console
        self.minter = minter
        self.serving = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path in self.paths:
            await self._procedure(scope, receive, send)
        elif path.startswith(downloads.PREFIX + "/"):
            await self._download(scope, receive, send)
        elif path == "/healthz":
            await send_json(send, 200 if self.serving else 503,
                            {"status": "SERVING" if self.serving else "NOT_SERVING"})
        elif path == "/dev/tokens":
            await self._dev_tokens(scope, receive, send)
        elif _PROCEDURE.fullmatch(path):
            await send_error(send, domain_error(errors.Unimplemented(
                f"the gateway serves no procedure {path[:200]}", reason="UNKNOWN_PROCEDURE")),
                status=404)
        else:
            await self._console(scope, send)

    async def _procedure(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.serving:
            await send_error(send, ConnectError(Code.UNAVAILABLE,
                                                "the gateway is starting or draining"))
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and \
                    int(value) > self.max_body_bytes:
                # Read the body into nothing (up to a bound) so the caller, still sending,
                # reads the answer instead of a reset connection.
                await _discard(receive, DISCARD_FACTOR * self.max_body_bytes)
                await send_error(send, too_large(self.max_body_bytes))
                return
        await self.procedures(scope, _limited(receive, self.max_body_bytes), send)

    async def _download(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.files.get(scope["path"])
        if found is None:
            await send_error(send, domain_error(errors.NotFound(
                f"no export at {scope['path'][:200]}; exports are the server-streaming "
                "methods whose messages carry `data`", reason="UNKNOWN_EXPORT")))
            return
        if not self.serving:
            await send_error(send, ConnectError(Code.UNAVAILABLE,
                                                "the gateway is starting or draining"))
            return
        if scope["method"] not in ("GET", "POST"):
            await send_bytes(send, 405, b"", b"text/plain", [(b"allow", b"GET, POST")])
            return
        body = b""
        try:
            if scope["method"] == "POST":
                async for chunk in _body(_limited(receive, self.max_body_bytes)):
                    body += chunk
            request = downloads.request_from(found, scope["method"],
                                             scope.get("query_string", b""), body)
        except ConnectError as error:
            await send_error(send, error)
            return
        ctx = downloads.context(found, scope["method"], scope.get("headers", []))
        await downloads.send(found, request, ctx, send, lambda e: send_error(send, e))

    async def _dev_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.minter is None:
            await send_error(send, domain_error(errors.NotFound(
                "development tokens are off (SKYBRIDGE_GATEWAY_DEV_TOKENS)",
                reason="DEV_TOKENS_DISABLED")))
            return
        if scope["method"] == "GET":
            await send_json(send, 200, {"enabled": True})
            return
        if scope["method"] != "POST":
            await send_bytes(send, 405, b"", b"text/plain", [(b"allow", b"GET, POST")])
            return
        body = b""
        try:
            async for chunk in _body(_limited(receive, dev_tokens.MAX_BODY_BYTES)):
                body += chunk
            request = dev_tokens.parse(body)
        except ConnectError as error:
            await send_error(send, error)
            return
        except errors.DomainError as error:
            await send_error(send, domain_error(error))
            return
        await send_json(send, 200, dev_tokens.mint(self.minter, request))

    async def _console(self, scope: Scope, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await send_bytes(send, 405, b"", b"text/plain", [(b"allow", b"GET, HEAD")])
            return
        head = scope["method"] == "HEAD"
        if not self.console.built:
            await send_bytes(send, 503 if scope["path"] == "/" else 404, NOT_BUILT,
                             b"text/html; charset=utf-8", head_only=head)
            return
        found = await self.console.read(scope["path"])
        if found is None:
            await send_bytes(send, 404, b"not found", b"text/plain", head_only=head)
            return
        await send_bytes(send, 200, found.body, found.content_type.encode(),
                         [(b"cache-control", found.cache_control.encode())], head_only=head)


async def _discard(receive: Receive, limit: int) -> None:
    read = 0
    while read <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _body(receive: Receive) -> Any:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
