"""The unit of work: every mutation of provisioning is one call of `UnitOfWork.run`.

One database transaction that:

1. claims the idempotency key (tenant, request_id) (`shared.idempotency.claim`). A
   concurrent duplicate blocks on the key's unique index until the first transaction ends
   (PostgreSQL) or waits for the write lock (SQLite, BEGIN IMMEDIATE); it then finds the key
   and replays the stored answer, so 64 concurrent calls make one effect. The same key with
   a different request (method + payload fingerprint) is INVALID_ARGUMENT REQUEST_ID_REUSED;
2. runs the use case (`work(tx)`) under row locks (`SELECT ... FOR UPDATE`), always in the
   order customer -> subscription -> operation/terminal, so replicas cannot deadlock;
3. stores the encoded answer with the key and writes the audit records and the outbox
   events (`store/writes.py`: on PostgreSQL one statement), then commits. No lock is shared
   by all writers: the events get their feed positions after commit (`store/outbox.py`).

On PostgreSQL, with a request_id, a use case may first offer `fast`: the same change as
one autocommit statement (`store/fast.py`). When it declines (an error to report, a replay
that is not plain, a race), the transaction above runs and reports exactly as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from shared import idempotency
from shared.auth import Principal

from ..domain.access import OPERATOR
from ..store.fast import FastCall
from ..store.rows import as_json
from ..store.tables import IdempotencyRow
from ..store.writes import write

if TYPE_CHECKING:
    from ..store import Store

#: The service itself, as the actor of background changes (lapses, operations).
SYSTEM = Principal(subject="service:provisioning", scopes=frozenset({OPERATOR}),
                   tenant="skybridge", expires_at=float("inf"))
_RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock, serialization failure


class Snapshot(Protocol):
    def payload(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Owner:
    """What an event needs of the customer it belongs to."""

    id: str
    tenant: str
    partner_id: str | None


@dataclass(frozen=True)
class Request:
    """One mutating call: who makes it, its method and idempotency key, the request as
    bytes (serialized deterministically without its request_id: its fingerprint) and how
    its answer is encoded (what a retry is given back)."""

    principal: Principal
    method: str
    request_id: str
    payload: bytes
    encode: Callable[[Any], bytes]


@dataclass
class Tx:
    """One mutation's transaction: the session, who acts, and what to audit and publish."""

    session: AsyncSession
    principal: Principal
    request_id: str
    now: datetime
    audits: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Updates of rows this transaction locked (kind in `store.writes.WRITES`, parameters),
    #: written with the answer, the audit records and the events.
    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    kick_worker: bool = False

    def audit(self, resource: str, action: str, before: Snapshot | None,
              after: Snapshot | None) -> None:
        self.audits.append(dict(
            resource=resource, action=action, actor=self.principal.subject,
            actor_tenant=self.principal.tenant, request_id=self.request_id,
            before=as_json(before.payload()) if before is not None else "",
            after=as_json(after.payload()) if after is not None else "", create_time=self.now))

    def event(self, type_: str, resource: str, owner: Owner, snapshot: Snapshot) -> None:
        self.events.append(dict(
            type=str(type_), resource=resource, customer_id=owner.id, tenant=owner.tenant,
            partner_id=owner.partner_id, payload=as_json(snapshot.payload()),
            create_time=self.now))


Work = Callable[[Tx], Awaitable[Any]]
FastWork = Callable[[FastCall], Awaitable[bytes | None]]


class UnitOfWork:
    """Runs mutations against one store (see the module doc)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def run(self, request: Request, work: Work, fast: FastWork | None = None) -> bytes:
        """`work` once per (tenant, request_id); returns the encoded (first) answer."""
        store = self.store
        print_ = idempotency.fingerprint(request.method, request.payload)
        if fast is not None and request.request_id and store.fast_writes is not None:
            call = FastCall(request.principal, request.method, request.request_id, print_,
                            store.clock(), request.encode)
            answer = await fast(call)
            if answer is not None:
                if call.events:
                    store.notify_events()
                return answer
        for attempt in range(5):
            try:
                return await self._once(request, print_, work)
            except DBAPIError as error:
                state = getattr(error.orig, "sqlstate", None)
                if state not in _RETRYABLE_SQLSTATES or attempt == 4:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _once(self, request: Request, print_: str, work: Work) -> bytes:
        store = self.store
        async with store.sessions() as session, session.begin():
            now = store.clock()
            if request.request_id:
                key = idempotency.Key(request.principal.tenant, request.request_id,
                                      request.method, print_)
                first = await idempotency.claim(session, IdempotencyRow.__table__, key,
                                                response=None, create_time=now)
                if first is not None:
                    return bytes(first.response or b"")
            tx = Tx(session, request.principal, request.request_id, now)
            answer = request.encode(await work(tx))
            await self.finish(tx, answer if request.request_id else None)
        if tx.events:
            store.notify_events()
        if tx.kick_worker:
            store.operations_queued.set()
        return answer

    async def finish(self, tx: Tx, answer: bytes | None = None) -> None:
        """Write the ORM's pending changes, then the answer (for the idempotency key), the
        audit records and the events (`store.writes`)."""
        writes = list(tx.writes)
        if answer is not None:
            writes.append(("answer", {"response": answer, "tenant": tx.principal.tenant,
                                      "request_id": tx.request_id}))
        writes.extend(("audit", row) for row in tx.audits)
        # After every row lock of the change: `seq` orders two changes of one resource.
        writes.extend(("event", row) for row in tx.events)
        await write(tx.session, writes, one_statement=not self.store.is_sqlite)

    async def background(self, work: Work) -> int:
        """A change of the service's own (`SYSTEM`, no key): `work(tx)` returns how many
        changes it made; their events are published."""
        store = self.store
        async with store.sessions() as session, session.begin():
            tx = Tx(session, SYSTEM, "", store.clock())
            done = int(await work(tx))
            await self.finish(tx)
        if tx.events:
            store.notify_events()
        return done
