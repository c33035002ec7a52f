"""The link broker's queries: gateways, leases with their capacity, events, idempotency keys
and the provisioning feed cursor (tables in :mod:`services.linkbroker.tables`).

Every change of a lease happens in one transaction with its ledger rows and its event: a
lease is never stored without its capacity, and capacity is never held by a lease that is
not active. Lease rows are locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
serializes writers with ``BEGIN IMMEDIATE``) before their state changes, so two replicas
racing to release, pre-empt or re-plan one lease apply exactly one of the changes.

Idempotency keys (`requests`, primary key (tenant, request_id); the contract and whose key
it is: :mod:`shared.idempotency`) are written in the transaction of the change they
answer, so a change and its key commit together or not at all: a lease's key with the
lease (a concurrent twin's insert fails on the primary key, and the caller replays), a
release's and a gateway's key claimed first, before any row lock. A drain is the one
change whose answer (the links it re-planned) is known only after further transactions:
its key is claimed with the state change and no answer (in flight), and the answer is
stored when the re-planning is done; a twin that finds the key in flight waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.linkbroker import ledger
from services.linkbroker.ledger import Oversubscribed
from services.linkbroker.plan import LEDGER_BUCKET_SLOTS, LinkPlan, bucket_of
from services.linkbroker.records import (
    LIVE_STATES,
    EventKind,
    GatewayRecord,
    GatewayStatus,
    Lease,
    LeaseEvent,
    LinkState,
    LiveLease,
    NewGateway,
    NewLease,
    Priority,
)
from services.linkbroker.tables import (
    feed_cursors,
    gateways,
    lease_events,
    leases,
    requests,
)
from shared import idempotency
from shared.db import FastReads
from shared.errors import AlreadyExists
from shared.idempotency import Key

__all__ = ["LIVE_STATES", "Store", "fingerprint"]

#: Pre-emption rounds before a government request gives up (each frees one full resource).
MAX_PREEMPTION_ROUNDS = 64
#: How long a call waits for a twin's answer that is still in flight (a drain re-planning
#: its links) before it answers the resource as it is now, and stores that.
IN_FLIGHT_WAIT_S = 30.0


def fingerprint(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


@dataclass(frozen=True)
class Preempted:
    lease_id: str
    slot: int
    resource: str


class Store:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float],
                 fast: FastReads | None = None):
        self.engine = engine
        self.clock = clock
        #: PostgreSQL: autocommit connections for the one-statement lease creation.
        self.fast = fast

    def _now(self) -> datetime:
        """The store's clock as an aware UTC datetime (the tables' time type)."""
        return datetime.fromtimestamp(self.clock(), UTC)

    def _lock(self, query):
        return query.with_for_update() if self.engine.dialect.name == "postgresql" else query

    # --- gateways ---------------------------------------------------------------------

    async def gateways(self) -> list[GatewayRecord]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(gateways).order_by(gateways.c.id))
            return [GatewayRecord.of(r._mapping) for r in rows]

    async def seed_gateways(self, rows: Iterable[NewGateway]) -> int:
        """Insert the defaults into an empty table (idempotent; safe with two replicas)."""
        now = self._now()
        async with self.engine.begin() as conn:
            if await conn.scalar(sa.select(sa.func.count()).select_from(gateways)):
                return 0
            values = [{**asdict(r), "create_time": now, "update_time": now} for r in rows]
            await conn.execute(gateways.insert(), values)
            return len(values)

    async def create_gateway(self, gateway: NewGateway, key: Key) -> GatewayRecord | None:
        """Insert the gateway with its idempotency key in one transaction; a replay (the key
        was there, or a concurrent twin made it) returns the gateway the key's first call
        made, as it is now. Another request's gateway with this id is ALREADY_EXISTS."""
        now = self._now()
        row = asdict(gateway)
        async with self.engine.begin() as conn:
            first = await self.claim(conn, key, gateway.id.encode())
            if first is None:
                made = await conn.execute(
                    self._insert(gateways).values(**row, create_time=now, update_time=now)
                    .on_conflict_do_nothing().returning(gateways.c.id))
                if made.first() is None:  # rolls the key back with it
                    raise AlreadyExists(f"gateways/{gateway.id} already exists",
                                        reason="GATEWAY_EXISTS")
        gateway_id = gateway.id if first is None else first.response.decode()
        return await self.gateway(gateway_id)

    async def gateway(self, gateway_id: str) -> GatewayRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(gateways).where(gateways.c.id == gateway_id))
                   ).first()
            return GatewayRecord.of(row._mapping) if row else None

    async def set_gateway_state(self, gateway_id: str, state: GatewayStatus, key: Key
                                ) -> tuple[GatewayRecord | None, bool, bytes | None]:
        """Claim `key` and set the gateway's state in one transaction. Returns (gateway,
        changed, None) to the call that claimed the key (`changed`: the state was another
        one; the caller stores its answer with :meth:`answer`), or (None, False, first
        answer) to a replay, waiting while that answer is in flight."""
        async with self.engine.begin() as conn:
            first = await self.claim(conn, key, None)
            if first is None:
                current = (await conn.execute(self._lock(sa.select(gateways.c.state).where(
                    gateways.c.id == gateway_id)))).scalar()
                changed = current is not None and current != state
                if changed:
                    await conn.execute(gateways.update().where(gateways.c.id == gateway_id)
                                       .values(state=state, update_time=self._now()))
        if first is not None:
            return None, False, await self.wait_answer(key)
        return await self.gateway(gateway_id), changed, None

    # --- idempotency --------------------------------------------------------------------

    def _insert(self, table: sa.Table):
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    async def replayed(self, conn: AsyncConnection, tenant: str, request_id: str, method: str,
                       digest: str) -> bytes | None:
        """The stored answer of an earlier call with this key, or None (none yet, or one
        still in flight); a different request under the same key is INVALID_ARGUMENT
        (REQUEST_ID_REUSED)."""
        row = (await conn.execute(sa.select(requests.c.method, requests.c.fingerprint,
                                            requests.c.response)
                                  .where(requests.c.tenant == tenant,
                                         requests.c.request_id == request_id))).first()
        if row is None:
            return None
        return idempotency.replayed(row, Key(tenant, request_id, method, digest)).response

    async def replay(self, tenant: str, request_id: str, method: str, digest: str
                     ) -> bytes | None:
        """A read-only look for the key before any work (the race between twins is settled
        when the key is written with the change)."""
        if self.fast is not None:  # one prepared autocommit read: no BEGIN/ROLLBACK
            row = await self.fast.fetchone(
                "SELECT method, fingerprint, response FROM requests "
                "WHERE tenant = %(tenant)s AND request_id = %(request_id)s",
                {"tenant": tenant, "request_id": request_id})
            if row is None:
                return None
            if row[0] != method or row[1] != digest:
                raise idempotency.reused(request_id, row[0])
            return row[2]
        async with self.engine.connect() as conn:
            return await self.replayed(conn, tenant, request_id, method, digest)

    async def claim(self, conn: AsyncConnection, key: Key, response: bytes | None):
        """Claim `key` in the caller's transaction with `response` as its answer (None: in
        flight, stored later with :meth:`answer`): None when claimed, else the key row of
        the call that holds it (see :func:`shared.idempotency.claim`)."""
        return await idempotency.claim(conn, requests, key, response=response,
                                       create_time=self._now())

    async def answer(self, key: Key, response: bytes) -> bytes:
        """Store the answer of an in-flight key (unless a waiter stored one already), and
        return the answer that is stored."""
        async with self.engine.begin() as conn:
            await conn.execute(requests.update().where(
                requests.c.tenant == key.tenant, requests.c.request_id == key.request_id,
                requests.c.response.is_(None)).values(response=response))
            return await conn.scalar(sa.select(requests.c.response).where(
                requests.c.tenant == key.tenant, requests.c.request_id == key.request_id))

    async def wait_answer(self, key: Key, within_s: float = IN_FLIGHT_WAIT_S
                          ) -> bytes | None:
        """The answer stored under `key`, waiting while its first call is still working;
        None when it has not come within `within_s` (the caller then answers the resource
        as it is now and stores that with :meth:`answer`)."""
        deadline = time.monotonic() + within_s
        pause = 0.01
        while True:
            async with self.engine.connect() as conn:
                stored = await self.replayed(conn, key.tenant, key.request_id, key.method,
                                             key.fingerprint)
            if stored is not None or time.monotonic() >= deadline:
                return stored
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    async def remember(self, conn: AsyncConnection, tenant: str, request_id: str, method: str,
                       digest: str, response: bytes) -> None:
        await conn.execute(requests.insert().values(
            tenant=tenant, request_id=request_id, method=method, fingerprint=digest,
            response=response, create_time=self._now()))

    # --- leases ---------------------------------------------------------------------------

    async def create_lease(self, lease: NewLease, plan: LinkPlan,
                           capacity_of: Callable[[str], float], *, preempt: bool,
                           request: Key, now_slot: int
                           ) -> tuple[Lease, list[Preempted]]:
        """Reserve the plan's capacity and store the lease, in one transaction.

        ``request`` is the call's idempotency key, stored with the lease (under the
        caller's tenant, which for an operator is not the lease's); a concurrent twin with
        the same key makes this raise ``sqlalchemy.exc.IntegrityError`` (the caller
        replays). With
        ``preempt``, a full resource is freed by pre-empting best-effort leases on it.
        Raises :class:`Oversubscribed` when a resource stays full.
        """
        slots, keys, caps = plan.ledger_rows(capacity_of)
        bw = lease.bandwidth_mbps
        now = self._now()
        preempted: list[Preempted] = []
        row = {**asdict(lease), "plan": plan.encode(), "plan_revision": 1, "create_time": now,
               "update_time": now, "state": LinkState.ACTIVE, "state_reason": ""}
        if self.fast is not None and await self._create_in_one_statement(
                row, request, slots, keys, caps):
            return Lease.of(row), preempted
        async with self.engine.begin() as conn:
            # The lease, its event and its idempotency key first; the ledger last, so the
            # hot (slot, resource) rows stay locked only from the upsert to the commit.
            await conn.execute(leases.insert().values(**row))
            await self._event(conn, lease.id, EventKind.CREATED, LinkState.ACTIVE, "", now)
            await self.remember(conn, request.tenant, request.request_id, request.method,
                                request.fingerprint, lease.id.encode())
            for _ in range(MAX_PREEMPTION_ROUNDS):
                try:
                    await ledger.reserve(conn, bw, slots, keys, caps)
                    break
                except Oversubscribed as full:
                    if not preempt:
                        raise
                    victim = await self._preempt_one(conn, full, now_slot, lease.id)
                    if victim is None:
                        raise
                    preempted.append(victim)
            else:
                raise Oversubscribed(preempted[-1].slot, preempted[-1].resource, 0.0, 0.0)
        return Lease.of(row), preempted

    #: psycopg form (``%(name)s``) of the whole creation, for the autocommit pool.
    _PG_CREATE = (
        "WITH lease AS (INSERT INTO leases (id, tenant, customer, terminal, subscription, "
        "region, bandwidth_mbps, priority, first_slot, end_slot, latitude_deg, longitude_deg, "
        "altitude_m, state, state_reason, plan, plan_revision, create_time, update_time) VALUES "
        "(%(id)s, %(tenant)s, %(customer)s, %(terminal)s, %(subscription)s, %(region)s, "
        "%(bw)s, %(priority)s, %(first_slot)s, %(end_slot)s, %(lat)s, %(lon)s, %(alt)s, "
        f"'{LinkState.ACTIVE}', '', %(plan)s, 1, %(now)s, %(now)s)), "
        "event AS (INSERT INTO lease_events (lease_id, kind, state, reason, create_time) "
        "VALUES "
        f"(%(id)s, '{EventKind.CREATED}', '{LinkState.ACTIVE}', '', %(now)s)), "
        "request AS (INSERT INTO requests (tenant, request_id, method, fingerprint, response, "
        "create_time) VALUES (%(key_tenant)s, %(request_id)s, %(method)s, %(digest)s, %(response)s, "
        "%(now)s)) "
        + ledger.PG_RESERVE_SQL.replace(":bw", "%(bw)s").replace(":slots", "%(slots)s")
        .replace(":keys", "%(keys)s").replace(":caps", "%(caps)s"))

    async def _create_in_one_statement(self, row: dict, request: Key,
                                       slots: list[int], keys: list[str], caps: list[float]
                                       ) -> bool:
        """PostgreSQL fast path: lease, event, idempotency key and ledger rows in one
        autocommit statement (all of it or nothing; the hot ledger rows are locked only
        while the statement runs). False when a
        resource is full (the caller takes the slow path, which names it or pre-empts);
        a duplicate request_id raises ``IntegrityError`` (the caller replays)."""
        params = {"id": row["id"], "tenant": row["tenant"], "customer": row["customer"],
                  "terminal": row["terminal"], "subscription": row["subscription"],
                  "region": row["region"], "bw": row["bandwidth_mbps"],
                  "priority": str(row["priority"]), "first_slot": row["first_slot"],
                  "end_slot": row["end_slot"], "lat": row["latitude_deg"],
                  "lon": row["longitude_deg"], "alt": row["altitude_m"], "plan": row["plan"],
                  # Naive UTC, as UTCDateTime binds it (this SQL bypasses the column type).
                  "now": row["create_time"].astimezone(UTC).replace(tzinfo=None),
                  "key_tenant": request.tenant,
                  "request_id": request.request_id, "method": request.method,
                  "digest": request.fingerprint, "response": row["id"].encode(),
                  # Array literals as text: much cheaper to send than element-wise dumping
                  # (keys are [a-z0-9:-], which need no quoting).
                  "slots": "{" + ",".join(map(str, slots)) + "}",
                  "keys": "{" + ",".join(keys) + "}",
                  "caps": "{" + ",".join(map(repr, caps)) + "}"}
        import psycopg

        try:
            await self.fast.execute(self._PG_CREATE, params)
        except psycopg.errors.CheckViolation:  # a resource is full
            return False
        except psycopg.errors.UniqueViolation as error:  # a twin with this request_id won
            raise sa.exc.IntegrityError(self._PG_CREATE, None, error) from None
        return True

    async def _preempt_one(self, conn: AsyncConnection, full: Oversubscribed, now_slot: int,
                           by: str) -> Preempted | None:
        """Pre-empt the newest best-effort live lease holding ``full.resource`` in
        ``full.slot``; None when there is none."""
        query = self._lock(
            sa.select(leases.c.id, leases.c.plan, leases.c.bandwidth_mbps, leases.c.end_slot)
            .where(leases.c.priority == Priority.BEST_EFFORT, leases.c.state.in_(LIVE_STATES),
                   leases.c.first_slot < full.slot + LEDGER_BUCKET_SLOTS,
                   leases.c.end_slot > full.slot)
            .order_by(leases.c.create_time.desc(), leases.c.id))
        for lease_id, blob, bw, _end in (await conn.execute(query)).all():
            plan = LinkPlan.decode(blob)
            if full.resource in plan.resources_in_bucket(full.slot):
                reason = (f"pre-empted by government-priority links/{by} "
                          f"({full.resource} in slot {full.slot})")
                await self._free(conn, plan, bw, now_slot)
                await conn.execute(leases.update().where(leases.c.id == lease_id).values(
                    state=LinkState.PREEMPTED, state_reason=reason, update_time=self._now()))
                await self._event(conn, lease_id, EventKind.STATE_CHANGED, LinkState.PREEMPTED,
                                  reason, self._now())
                return Preempted(lease_id, full.slot, full.resource)
        return None

    async def _free(self, conn: AsyncConnection, plan: LinkPlan, bw: float, from_slot: int
                    ) -> None:
        # Whole buckets, the current one included: a lease that stops holding frees the
        # minute it is in at once.
        slots, keys, _ = plan.ledger_rows(lambda _k: 0.0, from_slot=bucket_of(from_slot))
        await ledger.release(conn, bw, slots, keys)

    async def _event(self, conn: AsyncConnection, lease_id: str, kind: EventKind,
                     state: LinkState, reason: str, when: datetime) -> None:
        await conn.execute(lease_events.insert().values(
            lease_id=lease_id, kind=kind, state=state, reason=reason[:500], create_time=when))

    async def lease(self, lease_id: str) -> Lease | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(leases).where(leases.c.id == lease_id))).first()
            return Lease.of(row._mapping) if row else None

    async def list_leases(self, tenant: str | None, customer: str | None,
                          after: tuple[datetime, str] | None, limit: int) -> list[Lease]:
        """Newest first; ``after`` is the (create_time, id) of the previous page's last row."""
        query = sa.select(leases)
        if tenant is not None:
            query = query.where(leases.c.tenant == tenant)
        if customer is not None:
            query = query.where(leases.c.customer == customer)
        if after is not None:
            query = query.where(sa.or_(leases.c.create_time < after[0], sa.and_(
                leases.c.create_time == after[0], leases.c.id > after[1])))
        query = query.order_by(leases.c.create_time.desc(), leases.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [Lease.of(r._mapping) for r in await conn.execute(query)]

    async def end_lease(self, lease_id: str, state: LinkState, reason: str, now_slot: int,
                        request: Key | None = None) -> Lease | None:
        """Move a live lease to a final ``state``, freeing its capacity from ``now_slot``
        on; a lease already final is returned unchanged. ``request``: the call's
        idempotency key, claimed first; when a twin holds it, nothing changes here and the
        lease its first call ended is returned as it is now."""
        async with self.engine.begin() as conn:
            first = None if request is None else await self.claim(conn, request,
                                                                 lease_id.encode())
            row = None
            if first is None:
                row = (await conn.execute(self._lock(
                    sa.select(leases).where(leases.c.id == lease_id)))).first()
                if row is None:
                    return None
            if row is not None and row.state in LIVE_STATES:
                await self._free(conn, LinkPlan.decode(row.plan), row.bandwidth_mbps,
                                 max(now_slot, row.first_slot))
                now = self._now()
                await conn.execute(leases.update().where(leases.c.id == lease_id).values(
                    state=state, state_reason=reason, update_time=now))
                await self._event(conn, lease_id, EventKind.STATE_CHANGED, state, reason, now)
        return await self.lease(lease_id if first is None else first.response.decode())

    async def replan_lease(self, lease_id: str, from_slot: int, plan_of: Callable,
                           capacity_of: Callable[[str], float]
                           ) -> tuple[LinkState, str] | None:
        """Replace a live lease's plan from ``from_slot`` on.

        ``plan_of(lease, from_slot, conn)`` returns the new plan for ``from_slot .. end_slot`` (or raises
        :class:`Oversubscribed`/``LookupError`` when there is none). On success the lease
        is ACTIVE with the new path; when no path has room, its future capacity is freed
        and it is DEGRADED. Returns (state, reason), or None when the lease is not live.
        """
        async with self.engine.begin() as conn:
            row = (await conn.execute(self._lock(
                sa.select(leases).where(leases.c.id == lease_id)))).first()
            if row is None or row.state not in LIVE_STATES or row.end_slot <= from_slot:
                return None
            old = LinkPlan.decode(row.plan)
            start = max(from_slot, row.first_slot)
            await self._free(conn, old, row.bandwidth_mbps, start)
            now = self._now()
            try:
                new = old.splice(await plan_of(Lease.of(row._mapping), start, conn))
                # The current ledger bucket holds both the old path (slots before
                # ``start``) and the new one: exactly what was freed above is re-held.
                slots, keys, caps = new.ledger_rows(capacity_of, from_slot=bucket_of(start))
                await ledger.reserve(conn, row.bandwidth_mbps, slots, keys, caps)
                state, reason, plan = LinkState.ACTIVE, "", new
                kind = EventKind.REPLANNED
            except (Oversubscribed, LookupError) as why:
                state = LinkState.DEGRADED
                reason = f"no path with capacity from slot {start}: {why}"[:500]
                plan, kind = old, EventKind.STATE_CHANGED
            await conn.execute(leases.update().where(leases.c.id == lease_id).values(
                state=state, state_reason=reason, plan=plan.encode(),
                plan_revision=row.plan_revision + 1, update_time=now))
            await self._event(conn, lease_id, kind, state, reason, now)
            return state, reason

    async def live_leases(self, *, subscription: str | None = None, from_slot: int
                          ) -> list[LiveLease]:
        query = sa.select(leases.c.id, leases.c.plan, leases.c.subscription).where(
            leases.c.state.in_(LIVE_STATES), leases.c.end_slot > from_slot)
        if subscription is not None:
            query = query.where(leases.c.subscription == subscription)
        async with self.engine.connect() as conn:
            return [LiveLease(r.id, bytes(r.plan), r.subscription)
                    for r in await conn.execute(query)]

    async def events(self, lease_id: str, after_id: int) -> list[LeaseEvent]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(lease_events).where(
                lease_events.c.lease_id == lease_id, lease_events.c.id > after_id)
                .order_by(lease_events.c.id))
            return [LeaseEvent.of(r._mapping) for r in rows]

    async def last_event_id(self, lease_id: str) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.coalesce(
                sa.func.max(lease_events.c.id), 0)).where(lease_events.c.lease_id == lease_id)))

    # --- housekeeping ---------------------------------------------------------------------

    async def expire(self, now_slot: int) -> int:
        """Live leases whose window ended become EXPIRED; ledger rows of past minutes go."""
        async with self.engine.connect() as conn:
            due = list((await conn.execute(sa.select(leases.c.id).where(
                leases.c.state.in_(LIVE_STATES), leases.c.end_slot <= now_slot)
                .limit(500))).scalars())
        for lease_id in due:
            await self.end_lease(lease_id, LinkState.EXPIRED, "the window ended", now_slot)
        async with self.engine.begin() as conn:
            # Rows are per bucket (keyed by its first slot): drop buckets that ended more
            # than a bucket ago, never the current one.
            await conn.execute(sa.text("DELETE FROM capacity_usage WHERE slot < :s"),
                               {"s": bucket_of(now_slot) - LEDGER_BUCKET_SLOTS})
            await conn.execute(requests.delete().where(
                requests.c.create_time < self._now() - timedelta(hours=48)))
        return len(due)

    # --- provisioning feed cursor -----------------------------------------------------------

    async def cursor(self, name: str) -> str:
        async with self.engine.connect() as conn:
            return await conn.scalar(sa.select(feed_cursors.c.cursor).where(
                feed_cursors.c.name == name)) or ""

    async def save_cursor(self, name: str, cursor: str) -> None:
        async with self.engine.begin() as conn:
            updated = await conn.execute(feed_cursors.update().where(
                feed_cursors.c.name == name).values(cursor=cursor, update_time=self._now()))
            if not updated.rowcount:
                try:
                    async with conn.begin_nested():
                        await conn.execute(feed_cursors.insert().values(
                            name=name, cursor=cursor, update_time=self._now()))
                except sa.exc.IntegrityError:
                    await conn.execute(feed_cursors.update().where(
                        feed_cursors.c.name == name).values(cursor=cursor,
                                                           update_time=self._now()))
