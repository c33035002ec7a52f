"""Waiting on a condition in tests, never on a clock."""

from __future__ import annotations

import asyncio
import inspect


async def until(condition, *, within: float = 60.0, every: float = 0.02):
    """Poll ``condition()`` (plain or async) until it is truthy and return its value, or
    its last value once ``within`` seconds have gone: a deadline that only ends a hang,
    never a verdict on how fast something happened. Use as ``assert await until(...)``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(every)
