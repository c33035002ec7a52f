"""The link broker's engine: plans with the constellation, holds capacity through the store.

- Geometry comes in blocks of slots from the orbit service (:mod:`.ephemeris`), fetched once
  per block and shared by every request (one fetch at a time per block), and kept under
  the ``GEOMETRY_BUDGET_MB`` memory budget. A plan goes block by block, holding one block
  at a time; a block to load waits while the blocks held already fill the budget, so no
  window however long, nor any number of callers, holds more than the budget (and one
  block) of geometry.
- ``request``: plan every slot, reserve in one transaction; when a resource is full the
  slot is re-planned without it (up to ``MAX_PLAN_ROUNDS`` rounds); a government-priority
  request first pre-empts best-effort links holding the full resource.
- Gateways drained or restored, and catalog updates, re-plan the live links they touch.
- A sweeper expires links whose window ended and drops past ledger rows, and reloads the
  gateway table when another replica changed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import astuple
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from services.linkbroker.capacity_model import CapacityModel
from services.linkbroker.constellation import Constellation, GeometryUnloaded
from services.linkbroker.gateways import Gateway, GatewayState, GatewayTable, default_gateways
from services.linkbroker.ledger import Oversubscribed
from services.linkbroker.plan import LinkPlan, bucket_of, capacity_lookup
from services.linkbroker.records import (
    GatewayRecord,
    GatewayStatus,
    Lease,
    LinkState,
    NewGateway,
    NewLease,
    Priority,
)
from services.linkbroker.settings import BrokerSettings
from services.linkbroker.slots import slot_index
from services.linkbroker.store import Store
from shared.errors import Unavailable
from shared.idempotency import Key

__all__ = ["LinkBroker", "NoCoverage"]

log = logging.getLogger(__name__)

MAX_PLAN_ROUNDS = 4
#: Plans tried when the geometry is dropped under them (catalog changes) before UNAVAILABLE.
PLAN_ATTEMPTS = 3
_STATE_CODES = {GatewayStatus.ACTIVE: GatewayState.ACTIVE,
                GatewayStatus.DRAINED: GatewayState.DRAINED}


class NoCoverage(Exception):
    """No satellite serves the location in ``slot`` (geometry, not capacity)."""

    def __init__(self, slot: int):
        super().__init__(f"no satellite is above the elevation mask in slot {slot}")
        self.slot = slot


def gateway_rows(table: GatewayTable) -> list[NewGateway]:
    return [NewGateway(id=str(table.ids[i]), display_name=f"Gateway {table.backhaul_region[i]}",
                       latitude_deg=float(table.latitude_deg[i]),
                       longitude_deg=float(table.longitude_deg[i]),
                       altitude_m=float(table.altitude_m[i]), antennas=int(table.antennas[i]),
                       region=str(table.backhaul_region[i]), state=GatewayStatus.ACTIVE)
            for i in range(len(table))]


class LinkBroker:
    def __init__(self, store: Store, settings: BrokerSettings, capacity: CapacityModel,
                 source, run_cpu, clock: Callable[[], float]):
        self.store = store
        self.settings = settings
        self.capacity = capacity.replace(
            terminal_min_elevation_deg=settings.terminal_min_elevation_deg)
        self.source = source
        self.run_cpu = run_cpu
        self.clock = clock
        self.constellation = Constellation(default_gateways(self.capacity), self.capacity,
                                           budget_bytes=int(settings.geometry_budget_mb * 2**20))
        self.capacity_of = capacity_lookup(self.capacity, self.constellation.gateways)
        self.gateway_records: dict[str, GatewayRecord] = {}
        self._gateway_stamp: tuple = ()
        self._block_locks: dict[int, asyncio.Lock] = {}
        #: first slot -> plans holding that block; a block to load waits on `_room`.
        self._held: dict[int, int] = {}
        self._room = asyncio.Condition()
        self._block_bytes = 0  # the largest block seen (its own arrays and its k-d tree)
        self._catalog_version: int | None = None
        self._tasks: list[asyncio.Task] = []
        #: Set (and replaced) whenever this replica changes a lease: wakes watchers at once.
        self.changed = asyncio.Event()

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.seed_gateways(gateway_rows(default_gateways(self.capacity)))
        await self.reload_gateways()
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="linkbroker-sweep"))
        self._tasks.append(asyncio.create_task(self._catalog_loop(),
                                               name="linkbroker-catalog"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def now_slot(self) -> int:
        return slot_index(datetime.fromtimestamp(self.clock(), UTC))

    def notify(self) -> None:
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    # --- gateways ---------------------------------------------------------------------------

    async def reload_gateways(self) -> bool:
        """Load the gateway table from the store; True when it changed."""
        rows = await self.store.gateways()
        stamp = tuple((r.id, r.state, r.update_time) for r in rows)
        if stamp == self._gateway_stamp:
            return False
        table = GatewayTable.from_gateways([Gateway(
            id=r.id, latitude_deg=r.latitude_deg, longitude_deg=r.longitude_deg,
            altitude_m=r.altitude_m, antennas=r.antennas,
            capacity_gbps=self.capacity.gateway_capacity_gbps(r.antennas),
            backhaul_region=r.region, state=_STATE_CODES[r.state]) for r in rows])
        self.gateway_records = {r.id: r for r in rows}
        self.constellation.set_gateways(table)
        self.capacity_of = capacity_lookup(self.capacity, table)
        self._gateway_stamp = stamp
        return True

    async def create_gateway(self, record: NewGateway, key: Key) -> GatewayRecord | None:
        """Add a gateway once per idempotency `key` (a retry gets it as it is now) and
        route over it from now on."""
        if await self.store.replay(*astuple(key)):
            return await self.store.gateway(record.id)
        row = await self.store.create_gateway(record, key)
        await self.reload_gateways()
        return row

    async def gateway_state_once(self, gateway_id: str, state: GatewayStatus, key: Key,
                                 encode: Callable[[GatewayRecord, int, int], bytes]) -> bytes:
        """:meth:`set_gateway_state`, or the answer an earlier call with `key` stored."""
        first = await self.store.replay(*astuple(key))
        if first is None:
            first = await self.set_gateway_state(gateway_id, state, key, encode)
        if first == gateway_id.encode():  # a key stored before answers were: as it is now
            first = encode(await self.store.gateway(gateway_id), 0, 0)
        return first

    async def set_gateway_state(self, gateway_id: str, state: GatewayStatus, key: Key,
                                encode: Callable[[GatewayRecord, int, int], bytes]) -> bytes:
        """Drain or restore once per idempotency `key`; returns the first call's answer,
        ``encode(gateway, links re-planned, links degraded)``. A gateway already in `state`
        changes nothing (0, 0). A twin of a call still re-planning waits for its answer
        (if that never comes, the gateway as it is now with (0, 0) becomes the answer)."""
        record, changed, first = await self.store.set_gateway_state(gateway_id, state, key)
        if record is None:
            if first is not None:
                return first
            return await self.store.answer(
                key, encode(await self.store.gateway(gateway_id), 0, 0))
        replanned = degraded = 0
        try:
            if changed:
                await self.reload_gateways()
            if changed and state == GatewayStatus.DRAINED:
                resource = f"g:{gateway_id}"
                replanned, degraded = await self.replan_where(
                    lambda plan, start: any(resource in p.resources() for p in plan.paths
                                            if p.slot >= start),
                    reason=f"gateways/{gateway_id} drained")
        except Exception:
            # The state change is made: a retry must not wait for an answer that will not
            # come, and gets the gateway as it is now.
            await self.store.answer(key, encode(record, 0, 0))
            raise
        return await self.store.answer(key, encode(record, replanned, degraded))

    # --- geometry -----------------------------------------------------------------------------

    def _may_hold(self, first_slot: int) -> bool:
        """A plan may hold this block: it is held already, or the held blocks leave room
        for one more (one block is always allowed)."""
        if first_slot in self._held or not self._held:
            return True
        room = self.constellation.cache.budget_bytes // max(self._block_bytes, 1)
        return len(self._held) < room

    @contextlib.asynccontextmanager
    async def holding(self, first_slot: int):
        """Hold the block starting at `first_slot` (loading it if needed) for the body:
        it is not evicted meanwhile. Yields the block."""
        async with self._room:
            await self._room.wait_for(lambda: self._may_hold(first_slot))
            self._held[first_slot] = self._held.get(first_slot, 0) + 1
        self.constellation.hold(first_slot)
        try:
            yield await self._load(first_slot)
        finally:
            self.constellation.release(first_slot)
            async with self._room:
                self._held[first_slot] -= 1
                if not self._held[first_slot]:
                    del self._held[first_slot]
                self._room.notify_all()

    async def _load(self, start: int):
        block = self.constellation.blocks.get(start)
        if block is not None:
            return block
        lock = self._block_locks.setdefault(start, asyncio.Lock())
        async with lock:
            block = self.constellation.blocks.get(start)
            if block is not None:
                return block
            block = await self.source.block(start, self.settings.block_slots)
            if self._catalog_version is None:
                self._catalog_version = block.catalog_version
            elif block.catalog_version != self._catalog_version:
                self._forget_catalog(block.catalog_version)
                self._tasks.append(asyncio.create_task(self._replan_all(
                    block.catalog_version), name="linkbroker-replan"))
            self._block_bytes = max(self._block_bytes, block.nbytes)
            self.constellation.add_block(block)
            self._block_locks.pop(start, None)
        now = self.now_slot()
        stale = [f for f, b in self.constellation.blocks.items() if b.end_slot <= now]
        if stale:
            self.constellation.drop_blocks(
                keep=[f for f in self.constellation.blocks if f not in stale])
        return block

    async def plan(self, latitude_deg: float, longitude_deg: float, altitude_m: float,
                   first_slot: int, end_slot: int, region: str, exclusions=None) -> LinkPlan:
        """A terminal's plan over [first_slot, end_slot), block by block. A block dropped
        while the plan ran (a catalog change re-loads the geometry), or parts planned on
        two catalog versions, and the plan is run again; geometry that keeps changing is
        UNAVAILABLE, which the caller may retry."""
        size = self.settings.block_slots
        for _ in range(PLAN_ATTEMPTS):
            paths, versions = [], set()
            try:
                for start in range(first_slot // size * size, end_slot, size):
                    async with self.holding(start) as block:
                        versions.add(block.catalog_version)
                        part = await self.run_cpu(
                            self.constellation.plan, latitude_deg, longitude_deg, altitude_m,
                            max(first_slot, start), min(end_slot, start + size), region,
                            exclusions)
                    paths += part.paths
            except GeometryUnloaded:
                continue
            if len(versions) == 1:
                return LinkPlan.from_paths(paths)
        raise Unavailable(f"the constellation's geometry changed {PLAN_ATTEMPTS} times while "
                          "this link was planned; retry", reason="GEOMETRY_CHANGED")

    async def positions(self, slots: NDArray[np.int64], catalog_numbers: NDArray[np.int64]
                        ) -> NDArray[np.float64]:
        """``(M, 3)`` ITRF metres of satellite ``catalog_numbers[i]`` at the midpoint of slot
        ``slots[i]``, from the blocks a plan of those slots uses (held, and loaded when
        needed, as :meth:`plan` does); NaN where the catalog lacks the satellite or its
        propagation failed."""
        slots = np.asarray(slots, np.int64)
        catalog_numbers = np.asarray(catalog_numbers, np.int64)
        out = np.full((slots.size, 3), np.nan)
        size = self.settings.block_slots
        for start in np.unique(slots // size * size).tolist():
            async with self.holding(int(start)) as block:
                sel = np.flatnonzero((slots >= block.first_slot) & (slots < block.end_slot))
                if sel.size == 0 or block.catalog_numbers.size == 0:
                    continue
                order = np.argsort(block.catalog_numbers)
                at = np.searchsorted(block.catalog_numbers, catalog_numbers[sel], sorter=order)
                rows = order[np.minimum(at, order.size - 1)]
                k = slots[sel] - block.first_slot
                ok = (block.catalog_numbers[rows] == catalog_numbers[sel]) & block.ok[k, rows]
                out[sel[ok]] = block.positions_m[k[ok], rows[ok]]
        return out

    # --- links ----------------------------------------------------------------------------------

    async def request(self, lease: NewLease, request: Key):
        """Plan and reserve; returns (lease row, plan, pre-empted leases). Raises
        :class:`NoCoverage` or :class:`Oversubscribed`."""
        exclusions: dict[int, set[str]] = {}
        last: Oversubscribed | None = None
        for _ in range(MAX_PLAN_ROUNDS):
            plan = await self.plan(lease.latitude_deg, lease.longitude_deg,
                                   lease.altitude_m, lease.first_slot, lease.end_slot,
                                   lease.region,
                                   {s: frozenset(k) for s, k in exclusions.items()})
            unrouted = plan.unrouted_slots()
            if unrouted:
                if last is not None:
                    raise last
                raise NoCoverage(unrouted[0])
            try:
                row, preempted = await self.store.create_lease(
                    lease, plan, self.capacity_of, preempt=lease.priority == Priority.GOVERNMENT,
                    request=request, now_slot=self.now_slot())
            except Oversubscribed as full:
                # The ledger counts per bucket: avoid the resource in every slot of the
                # bucket where this plan uses it, and name the first such slot.
                using = [p.slot for p in plan.paths
                         if bucket_of(p.slot) == full.slot and full.resource in p.resources()]
                for slot in using:
                    exclusions.setdefault(slot, set()).add(full.resource)
                last = Oversubscribed(using[0] if using else max(full.slot, plan.first_slot),
                                      full.resource, full.used_mbps, full.capacity_mbps)
                continue
            self.notify()
            return row, plan, preempted
        assert last is not None
        raise last

    async def replayed_link(self, key: Key) -> Lease | None:
        """The lease an earlier RequestLink with `key` created, as it is now; or None."""
        replay = await self.store.replay(*astuple(key))
        return None if replay is None else await self.store.lease(replay.decode())

    async def request_link_once(self, key: Key, lease_for: Callable[[], Awaitable[NewLease]]
                                ) -> tuple[Lease, LinkPlan | None]:
        """RequestLink once per `key`: the lease an earlier call with `key` created, as it
        is now (and no plan: it is the stored one); else ``await lease_for()`` (the
        caller's entitlement check, which may refuse) planned and held by
        :meth:`request_link`."""
        replayed = await self.replayed_link(key)
        if replayed is not None:
            return replayed, None
        return await self.request_link(await lease_for(), key)

    async def request_link(self, lease: NewLease, key: Key) -> tuple[Lease, LinkPlan | None]:
        """:meth:`request` once per `key`: a concurrent twin that lost the race to store
        the key gets the lease the winner stored (and no plan: it is the stored one)."""
        try:
            row, plan, _preempted = await self.request(lease, key)
        except sa.exc.IntegrityError:
            replayed = await self.replayed_link(key)
            if replayed is None:
                raise
            return replayed, None
        return row, plan

    async def release_once(self, lease_id: str, reason: str, key: Key) -> Lease | None:
        """Release a lease once per `key` (a retry gets the link as it is now; the key is
        claimed with the release, so a concurrent twin gets the same link)."""
        if await self.store.replay(*astuple(key)):
            return await self.store.lease(lease_id)
        return await self.end(lease_id, LinkState.RELEASED, reason, key)

    async def end(self, lease_id: str, state: LinkState, reason: str,
                  request: Key | None = None) -> Lease | None:
        row = await self.store.end_lease(lease_id, state, reason, self.now_slot(), request)
        self.notify()
        return row

    async def revoke_subscription(self, subscription: str, state: LinkState, reason: str
                                  ) -> int:
        """End every live lease of ``subscription`` (SUSPENDED or RELEASED)."""
        live = await self.store.live_leases(subscription=subscription,
                                            from_slot=self.now_slot() - 1)
        for row in live:
            await self.store.end_lease(row.id, state, reason, self.now_slot())
        if live:
            self.notify()
        return len(live)

    async def replan_where(self, affected: Callable[[LinkPlan, int], bool], reason: str
                           ) -> tuple[int, int]:
        """Re-plan the live leases for which ``affected(plan, from_slot)`` from the next
        slot on; returns (re-planned, degraded)."""
        start = self.now_slot() + 1
        replanned = degraded = 0
        for row in await self.store.live_leases(from_slot=start):
            if not affected(LinkPlan.decode(row.plan), start):
                continue

            async def plan_of(lease: Lease, first: int, _conn) -> LinkPlan:
                plan = await self.plan(lease.latitude_deg, lease.longitude_deg,
                                       lease.altitude_m, first, lease.end_slot,
                                       lease.region)
                if plan.unrouted_slots():
                    raise LookupError(f"no coverage in slot {plan.unrouted_slots()[0]}")
                return plan

            outcome = await self.store.replan_lease(row.id, start, plan_of,
                                                    self.capacity_of)
            if outcome is None:
                continue
            if outcome[0] == LinkState.ACTIVE:
                replanned += 1
            else:
                degraded += 1
            log.info("link re-planned", extra={"link": row.id, "state": str(outcome[0]),
                                               "why": reason})
        if replanned or degraded:
            self.notify()
        return replanned, degraded

    # --- background -------------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_seconds)
            try:
                if await self.store.expire(self.now_slot()):
                    self.notify()
                await self.reload_gateways()
            except Exception:  # keep sweeping; the next round retries
                log.exception("link sweep failed")

    async def check_catalog(self) -> bool:
        """Ask orbit for its catalog version; when it changed since the geometry was
        fetched, forget that geometry and re-plan every live link. True when it changed."""
        version = await self.source.catalog_version(datetime.fromtimestamp(self.clock(), UTC))
        if self._catalog_version is None or version == self._catalog_version:
            return False
        await self._catalog_changed(version)
        return True

    async def _catalog_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.catalog_poll_seconds)
            try:
                await self.check_catalog()
            except Exception:
                log.exception("catalog poll failed")

    def _forget_catalog(self, version: int) -> None:
        log.info("orbit catalog changed", extra={"catalog_version": version})
        self._catalog_version = version
        self.constellation.drop_blocks()

    async def _catalog_changed(self, version: int) -> None:
        """Forget the geometry of the old catalog and re-plan every live link."""
        self._forget_catalog(version)
        await self._replan_all(version)

    async def _replan_all(self, version: int) -> None:
        await self.replan_where(lambda plan, start: True,
                                reason=f"orbit catalog version {version}")

