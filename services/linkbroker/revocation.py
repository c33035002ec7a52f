"""Revocation: follow provisioning's event feed and end the links of revoked subscriptions.

The broker reads ``WatchEvents`` (types SUBSCRIPTION_SUSPENDED and
SUBSCRIPTION_UNSUBSCRIBED) from the cursor stored in its own ``feed_cursors`` table, and
saves the cursor after each event is applied, so a restart resumes where it stopped (an
event applied twice is harmless: ending a link that is already final changes nothing).
Suspended subscriptions: their live links move to SUSPENDED; ended ones: to RELEASED; both
free their capacity at once. Every replica follows the feed; applying an event is
idempotent, so two replicas never double-free (the lease row is locked first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from skybridge.provisioning.v1 import provisioning_pb2 as prov
from skybridge.provisioning.v1 import resources_pb2 as res

from services.linkbroker.broker import LinkBroker
from services.linkbroker.records import LinkState

__all__ = ["RevocationFollower"]

log = logging.getLogger(__name__)
CURSOR = "provisioning-events"
_ENDS = {res.Event.TYPE_SUBSCRIPTION_SUSPENDED: (LinkState.SUSPENDED,
                                                 "the subscription was suspended"),
         res.Event.TYPE_SUBSCRIPTION_UNSUBSCRIBED: (LinkState.RELEASED, "the subscription ended")}


class RevocationFollower:
    def __init__(self, stub, broker: LinkBroker, retry_seconds: float):
        self.stub = stub
        self.broker = broker
        self.retry_seconds = retry_seconds
        self._task: asyncio.Task | None = None
        self.applied = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="linkbroker-revocation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        store = self.broker.store
        while True:
            try:
                cursor = await store.cursor(CURSOR)
                stream = self.stub.WatchEvents(prov.WatchEventsRequest(
                    start_cursor=cursor, types=list(_ENDS)), timeout=None)
                async for message in stream:
                    event = message.event
                    state, reason = _ENDS[event.type]
                    ended = await self.broker.revoke_subscription(event.resource, state, reason)
                    await store.save_cursor(CURSOR, event.cursor)
                    self.applied += 1
                    log.info("subscription revoked", extra={
                        "subscription": event.resource, "links": ended, "state": str(state)})
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                log.warning("provisioning feed interrupted: %s", error.code().name)
            except Exception:
                log.exception("revocation follower failed")
            await asyncio.sleep(self.retry_seconds)
