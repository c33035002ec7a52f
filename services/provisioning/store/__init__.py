"""Provisioning's store: one module per aggregate behind this facade.

- `tables` (the schema), `rows` (rows to records), `queries` (what every aggregate uses);
- `partners` (partners and plans), `referrals` (referrals and customers), `subscriptions`
  (and operations), `terminals`, `entitlements`;
- `writes` (the batched end of a transaction), `outbox` (events and audit records);
- `fast`, `fast_subscriptions`, `fast_terminals`: the PostgreSQL one-statement paths.

`Store` holds what a replica shares across calls (engine, sessions, clock, the autocommit
pools, the outbox, the terminals it wrote last) and answers the reads; the mutations are
the application's use cases (`app/`), which run in the unit of work.

Reads are scoped by `domain.Audience`: a resource the caller may not see is NOT_FOUND, the
same answer as for a resource that does not exist.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import Principal
from shared.db import FastReads
from shared.wakeup import PgWakeup

from ..domain.access import Audience
from ..domain.entitlements import Entitlement
from ..domain.records import (
    AuditRecord,
    Customer,
    Event,
    Operation,
    Page,
    Partner,
    Plan,
    Referral,
    Subscription,
    Terminal,
)
from . import entitlements, partners, referrals, subscriptions, terminals
from .fast import KEY_SQL, FastCall
from .outbox import OUTBOX_LOCK_SQL, Outbox
from .tables import Base

__all__ = ["OUTBOX_LOCK_SQL", "Base", "Store"]

#: Terminals a replica remembers as it last wrote them (`Store.known_terminal`).
KNOWN_TERMINALS = 10_000


class Store:
    """The provisioning store of one replica (see the module doc)."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                 clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.sessions = sessions
        self.clock = clock or (lambda: datetime.now(UTC))
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.outbox = Outbox(sessions, self.is_sqlite)
        #: PostgreSQL: autocommit connections for the entitlement check and fast reads.
        self.fast_reads: FastReads | None = None
        #: PostgreSQL: autocommit connections for the one-statement mutations (`store.fast`);
        #: None: every mutation takes the transactional path.
        self.fast_writes: FastReads | None = None
        #: terminal id -> (the terminal, customer tenant, customer partner) as last written.
        self.known_terminals: collections.OrderedDict[
            str, tuple[Terminal, str, str | None]] = collections.OrderedDict()
        #: Set when an operation was queued (wakes this replica's worker).
        self.operations_queued = asyncio.Event()

    # --- the outbox -----------------------------------------------------------------------

    @property
    def wakeup(self) -> PgWakeup | None:
        return self.outbox.wakeup

    @wakeup.setter
    def wakeup(self, value: PgWakeup | None) -> None:
        self.outbox.wakeup = value

    @property
    def event_signal(self) -> asyncio.Event:
        return self.outbox.signal

    @property
    def event_poll_seconds(self) -> float:
        return self.outbox.poll_seconds

    def wake_events(self) -> None:
        self.outbox.wake()

    def notify_events(self) -> None:
        self.outbox.notify()

    async def publish_events(self) -> int:
        return await self.outbox.publish()

    async def read_events(self, audience: Audience, after: int, limit: int,
                          types: frozenset[str]) -> list[Event]:
        return await self.outbox.read(audience, after, limit, types)

    async def list_audit(self, resource: str, after: int | None,
                         limit: int) -> Page[AuditRecord]:
        return await self.outbox.audit(resource, after, limit)

    # --- the fast path --------------------------------------------------------------------

    async def fast_write(self, call: FastCall, sql: str, params: dict[str, Any],
                         answer: bytes) -> tuple[Any, ...] | bytes | None:
        """Run a fast-path statement: its result row when it committed the change, else the
        replayed answer of the call that holds the key, else None (decline)."""
        import psycopg

        assert self.fast_writes is not None and self.fast_reads is not None
        try:
            row = await self.fast_writes.execute(sql, params)
        except psycopg.errors.DivisionByZero:
            return None  # `fast.ABORT`: rolled back; the rows changed since the read
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            return None
        if row[0]:
            call.events += 1
            return tuple(row)  # committed
        # Another call with this key committed first: replay it if it was this request.
        key = await self.fast_reads.fetchone(KEY_SQL, params)
        return None if key is None else call.replay(*key)

    def known_terminal(self, terminal: Terminal, tenant: str, partner: str | None) -> None:
        """Remember a terminal as this replica last committed it (the fast path plans the
        next change from it; the write checks it is still so)."""
        known = self.known_terminals
        known[terminal.id] = (terminal, tenant, partner)
        known.move_to_end(terminal.id)
        if len(known) > KNOWN_TERMINALS:
            known.popitem(last=False)

    def forget_terminal(self, terminal_id: str) -> None:
        self.known_terminals.pop(terminal_id, None)

    # --- reads ----------------------------------------------------------------------------

    async def get_partner(self, partner_id: str) -> Partner:
        return await partners.get_partner(self.sessions, partner_id)

    async def list_partners(self, after: str | None, limit: int) -> Page[Partner]:
        return await partners.list_partners(self.sessions, after, limit)

    async def get_plan(self, plan_id: str) -> Plan:
        return await partners.get_plan(self.sessions, plan_id)

    async def list_plans(self, after: str | None, limit: int) -> Page[Plan]:
        return await partners.list_plans(self.sessions, after, limit)

    async def get_referral(self, principal: Principal, referral_id: str) -> Referral:
        return await referrals.get_referral(self.sessions, principal, referral_id)

    async def list_referrals(self, principal: Principal, after: str | None,
                             limit: int) -> Page[Referral]:
        return await referrals.list_referrals(self.sessions, principal, after, limit)

    async def get_customer(self, audience: Audience, customer_id: str) -> Customer:
        return await referrals.get_customer(self.sessions, audience, customer_id)

    async def list_customers(self, audience: Audience, after: str | None,
                             limit: int) -> Page[Customer]:
        return await referrals.list_customers(self.sessions, audience, after, limit)

    async def get_subscription(self, audience: Audience, customer_id: str,
                               subscription_id: str) -> Subscription:
        return await subscriptions.get_subscription(self.sessions, audience, customer_id,
                                                    subscription_id)

    async def list_subscriptions(self, audience: Audience, customer_id: str,
                                 after: str | None, limit: int) -> Page[Subscription]:
        return await subscriptions.list_subscriptions(self.sessions, audience, customer_id,
                                                      after, limit)

    async def get_operation(self, audience: Audience, customer_id: str, subscription_id: str,
                            op_id: str) -> Operation:
        return await subscriptions.get_operation(self.sessions, audience, customer_id,
                                                 subscription_id, op_id)

    async def list_operations(self, audience: Audience, customer_id: str,
                              subscription_id: str, after: str | None,
                              limit: int) -> Page[Operation]:
        return await subscriptions.list_operations(self.sessions, audience, customer_id,
                                                   subscription_id, after, limit)

    async def get_terminal(self, audience: Audience, customer_id: str,
                           terminal_id: str) -> Terminal:
        return await terminals.get_terminal(self.sessions, audience, customer_id, terminal_id)

    async def list_terminals(self, audience: Audience, customer_id: str, after: str | None,
                             limit: int) -> Page[Terminal]:
        return await terminals.list_terminals(self.sessions, audience, customer_id, after,
                                              limit)

    async def check_entitlement(self, customer_id: str, terminal_id: str, bandwidth: float,
                                region: str) -> Entitlement:
        return await entitlements.check_one(self, customer_id, terminal_id, bandwidth, region)

    async def check_entitlements(self, checks: Sequence[tuple[str, str, float, str]]
                                 ) -> list[Entitlement]:
        return await entitlements.check_many(self, checks)

    async def count(self, model: type[Base]) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)
