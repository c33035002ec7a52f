"""Whether a service's database answers, for its health.

While the database cannot be reached the service's health is NOT_SERVING (so a load
balancer or an orchestrator routes elsewhere, and `grpc_health_probe` says why a pod is not
ready), and SERVING again once it answers, with no restart. Calls are not refused meanwhile:
one that needs the database fails UNAVAILABLE `DATABASE_UNAVAILABLE` by itself
(`shared.interceptors.ErrorMapper`), and one that does not (a propagation from the cached
catalog) still succeeds.

The probe is one `SELECT 1` through the service's own pool, every `interval_s` seconds and
at once when a call has just met an outage (`suspect()`), so that health follows the first
failed call rather than the next tick. Its statements are not traced: an idle service would
otherwise emit a span every tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import db

log = logging.getLogger("skybridge.store")

#: What a probe reports: the database answered (True) or not (False).
Listener = Callable[[bool], Awaitable[None]]


class StoreProbe:
    """Probes one engine and tells `on_change` when reachability flips."""

    def __init__(self, name: str, engine: AsyncEngine, on_change: Listener, *,
                 interval_s: float = 2.0, timeout_s: float = 2.0) -> None:
        self.name = name
        self.engine = engine
        self.on_change = on_change
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.reachable = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def suspect(self) -> None:
        """A call just met an outage: probe now rather than at the next tick."""
        self._wake.set()

    async def check(self) -> bool:
        """One probe: True when the database answered `SELECT 1` within the timeout."""
        try:
            with suppress_instrumentation():
                async with asyncio.timeout(self.timeout_s):
                    async with self.engine.connect() as connection:
                        await connection.execute(text("SELECT 1"))
        except TimeoutError:
            return False
        except Exception as error:  # noqa: BLE001 - only an outage is an answer here
            if db.is_outage(error):
                return False
            raise
        return True

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                reachable = await self.check()
            except Exception:  # noqa: BLE001 - a broken probe must not stop probing
                log.exception("%s: the database probe failed", self.name)
                continue
            if reachable != self.reachable:
                self.reachable = reachable
                if reachable:
                    log.info("%s: the database answers again; health SERVING", self.name,
                             extra={"service": self.name})
                else:
                    log.warning("%s: the database cannot be reached; health NOT_SERVING "
                                "until it answers", self.name, extra={"service": self.name})
                await self.on_change(reachable)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self.name}-store-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
