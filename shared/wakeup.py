"""Wake-ups across replicas through PostgreSQL LISTEN/NOTIFY, so feeds do not poll.

A feed (provisioning's `WatchEvents`) sleeps on an `asyncio.Event` that its own process
sets at each commit of new rows. With several replicas on one PostgreSQL, a row another
replica wrote would only be seen at the next poll; `PgWakeup` closes that gap:

- `notify()` (after a commit with new rows) sends one `NOTIFY <channel>` over its own
  autocommit connection; calls that arrive while one is on the wire are coalesced into the
  next, so a burst of commits costs a few notifications, not one each;
- one listening connection per process (`LISTEN <channel>`) turns every notification into
  `on_wake()`, which sets the local event; it reconnects after a failure.

The channel is named after the service's schema, so isolated test schemas and services
never wake each other. Feeds keep a slow poll (seconds) as a safety net for a notification
lost while the listener reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

log = logging.getLogger("skybridge.wakeup")


async def woken(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True when it was set.

    Every feed loop waits with this, never with ``asyncio.wait_for(event.wait(), ...)``:
    on Python 3.11, `wait_for` swallows a cancellation that lands as the event fires, so
    a feed woken by every commit could miss the drain's cancel and run on (seen: a
    provisioning drain sat out its whole grace behind one WatchEvents stream).
    ``asyncio.timeout`` passes the cancellation on.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


class PgWakeup:
    """NOTIFY on commits, LISTEN for other replicas' (PostgreSQL, psycopg 3)."""

    def __init__(self, dsn: str, channel: str, on_wake: Callable[[], None],
                 retry_seconds: float = 1.0) -> None:
        self.dsn = dsn
        self.channel = channel
        self.on_wake = on_wake
        self.retry_seconds = retry_seconds
        self._pending = False
        self._sender: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._notify_connection: psycopg.AsyncConnection[TupleRow] | None = None
        #: Set once the listener has issued its LISTEN (tests wait on it).
        self.listening = asyncio.Event()

    @staticmethod
    def channel_for(schema: str) -> str:
        return f"skybridge_{schema}"[:63]

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen())

    def notify(self) -> None:
        """Tell the other replicas that new rows were committed (coalesced)."""
        self._pending = True
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        import psycopg

        while self._pending:
            self._pending = False
            try:
                if self._notify_connection is None or self._notify_connection.closed:
                    self._notify_connection = await psycopg.AsyncConnection.connect(
                        self.dsn, autocommit=True)
                await self._notify_connection.execute("SELECT pg_notify(%s, '')",
                                                      (self.channel,))
            except Exception as error:  # noqa: BLE001 - the feeds' poll still covers it
                log.warning("cannot notify %s: %s", self.channel, error)
                self._notify_connection = None
                return

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.dsn, autocommit=True) as connection:
                    await connection.execute(f'LISTEN "{self.channel}"')
                    self.listening.set()
                    self.on_wake()  # rows committed while it was not listening
                    async for _ in connection.notifies():
                        self.on_wake()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - reconnect; the poll covers the gap
                self.listening.clear()
                log.warning("listening on %s failed (%s); retrying", self.channel, error)
                await asyncio.sleep(self.retry_seconds)

    async def close(self) -> None:
        for task in (self._listener, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._notify_connection is not None:
            with contextlib.suppress(Exception):
                await self._notify_connection.close()
