"""Helpers for the idempotency tests of every service (AIP-155 `request_id` replay).

The contract they pin (see `shared/idempotency.py`): a retry with the same request_id and
body, sequential or concurrent, gets the first answer and makes no second effect; the same
request_id with a different body is INVALID_ARGUMENT `REQUEST_ID_REUSED` with a BadRequest
naming `request_id`; a key belongs to the caller's tenant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc

from shared.status import details_of

#: How many identical calls race in the concurrency tests.
RACERS = 64


async def race(call: Callable[[], Awaitable], n: int = RACERS) -> list:
    """Start `n` calls at once; every one must answer (any error fails the test with its
    code, reason and message, so an INTERNAL or ALREADY_EXISTS shows what it was)."""
    answers = await asyncio.gather(*(call() for _ in range(n)), return_exceptions=True)
    errors = [a for a in answers if isinstance(a, BaseException)]
    if errors:
        summary = sorted({describe(e) for e in errors})
        raise AssertionError(f"{len(errors)} of {n} identical calls failed: {summary}")
    return answers


def describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        details = details_of(error)
        return f"{details.code.name} {details.reason}: {details.message[:200]}"
    return repr(error)


async def refusal(call: Awaitable) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded")


async def assert_reused(call: Awaitable) -> None:
    """The call is refused as a request_id reused for a different request."""
    error = await refusal(call)
    details = details_of(error)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT, describe(error)
    assert details.reason == "REQUEST_ID_REUSED", describe(error)
    assert "request_id" in {v.field for v in details.violations}, details.violations
