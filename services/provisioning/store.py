"""The provisioning store: its queries and transactions (tables in `tables.py`).

Every mutation runs through `Store.mutate()`, one database transaction that:

1. claims the idempotency key (tenant, request_id) with INSERT ... ON CONFLICT DO NOTHING.
   A concurrent duplicate blocks on the key's unique index until the first transaction ends
   (PostgreSQL) or waits for the write lock (SQLite, BEGIN IMMEDIATE); it then finds the key
   and replays the stored answer, so 64 concurrent calls make one effect. The same key with a
   different request (method + payload fingerprint) is INVALID_ARGUMENT;
2. does the work under row locks (`SELECT ... FOR UPDATE`), always in the order
   customer -> subscription -> operation/terminal, so replicas cannot deadlock;
3. stores the encoded answer with the idempotency key and writes the audit records and the
   outbox events: on PostgreSQL in one statement (data-modifying CTEs), then commits. No lock
   is shared by all writers: the events get no feed position here;
4. after commit, `publish_events` (one relay at a time: a transaction-scoped advisory lock on
   PostgreSQL, the write lock on SQLite) gives the committed, unpublished events the next
   positions in `seq` order. A relay's positions become visible all at once and only after
   every earlier relay's, so a reader following `position > cursor` can never skip an event
   (no gaps) nor see one twice (no duplicates on resume); an event exists exactly when its
   change committed. Two changes of one resource are ordered by their row locks, so their
   events keep that order in the feed. Readers of the feed run the relay before they read.

On PostgreSQL the hot mutations (create and activate a subscription, register a terminal,
provision/activate/suspend a terminal) first try a fast path with the same guarantees
(`_Call`): steps 1-3 as ONE autocommit statement of data-modifying CTEs (the key is claimed
with the answer stored in it; the rows change only if the key was claimed and they are still
the version and state the change was planned from; the audit record and the event come from
the changed row), planned from one autocommit read (none for a registration, nor for a
transition of a terminal this replica wrote last). No row lock outlives its statement, so no
lock waits on the event loop. A claimed key whose change cannot be made aborts the statement
(division by zero, on purpose), and anything but the plain success or a plain replay falls
back to the transaction above, which reports errors exactly as before.

Reads are scoped by `domain.Audience`: a resource the caller may not see is NOT_FOUND, the
same answer as for a resource that does not exist.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hashlib
import json
import logging
import secrets
import time
import types
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    LargeBinary,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import Principal
from shared.db import FastReads
from shared.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from shared.wakeup import PgWakeup

from . import domain
from .domain import Audience, PlanTerms
from .tables import (
    AuditRow,
    Base,
    CustomerRow,
    EventRow,
    IdempotencyRow,
    OperationRow,
    PartnerRow,
    PlanRevisionRow,
    PlanRow,
    ReferralRow,
    SubscriptionRow,
    TerminalRow,
    UTCDateTime,
)

__all__ = ["Base", "Store", "Tx", "SYSTEM"]

_T, _S, _C = TerminalRow.__table__, SubscriptionRow.__table__, CustomerRow.__table__

log = logging.getLogger("skybridge.provisioning")

#: The service itself, as the actor of background changes (lapses, operations).
SYSTEM = Principal(subject="service:provisioning", scopes=frozenset({domain.OPERATOR}),
                   tenant="skybridge", expires_at=float("inf"))
#: The outbox relay's lock (PostgreSQL): one replica at a time publishes events. Advisory
#: locks belong to the whole database, so the key names this deployment's schema: another
#: deployment (another schema prefix: a test, a benchmark) has its own relay and its own
#: events, and a busy relay there must not keep this one from publishing.
OUTBOX_LOCK_SQL = text(
    "SELECT pg_try_advisory_xact_lock(hashtext('skybridge-outbox:' || current_schema()))")
#: Events published per relay transaction.
PUBLISH_BATCH = 5000
#: Terminals a replica remembers as it last wrote them (`Store._known_terminal`).
KNOWN_TERMINALS = 10_000
_RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock, serialization failure


def new_id() -> str:
    """A time-ordered id: microseconds since the epoch in hex, then 24 random bits."""
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(3)}"


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def fingerprint(method: str, payload: bytes) -> str:
    return hashlib.sha256(method.encode() + b"\0" + payload).hexdigest()


def _json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


# --- row -> plain dict (what the servicer turns into protos; also audit and event payloads) ---

def terms_of(row) -> PlanTerms:
    return PlanTerms(
        bandwidth_mbps=row.bandwidth_mbps, priority_class=row.priority_class,
        min_quantity=row.min_quantity, max_quantity=row.max_quantity,
        price_currency=row.price_currency, price_units=row.price_units,
        price_nanos=row.price_nanos,
        regions=tuple(r for r in row.regions.split(",") if r))


def set_terms(row, terms: PlanTerms) -> None:
    row.bandwidth_mbps = terms.bandwidth_mbps
    row.priority_class = terms.priority_class
    row.min_quantity = terms.min_quantity
    row.max_quantity = terms.max_quantity
    row.price_currency = terms.price_currency
    row.price_units = terms.price_units
    row.price_nanos = terms.price_nanos
    row.regions = ",".join(terms.regions)


def _columns(row) -> dict:
    out = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        out[column.key] = iso(value) if isinstance(value, datetime) else value
    return out


def partner_dict(row: PartnerRow) -> dict:
    return {"id": row.id, "display_name": row.display_name, "contact_email": row.contact_email,
            "create_time": iso(row.create_time)}


def referral_dict(row: ReferralRow) -> dict:
    return _columns(row)


def customer_dict(row: CustomerRow) -> dict:
    return _columns(row)


def plan_dict(row: PlanRow) -> dict:
    return {"id": row.id, "display_name": row.display_name, "revision": row.revision,
            "terms": terms_of(row).as_dict(), "create_time": iso(row.create_time),
            "update_time": iso(row.update_time), "version": row.version}


def subscription_dict(row: SubscriptionRow) -> dict:
    return {"id": row.id, "customer_id": row.customer_id, "display_name": row.display_name,
            "plan_id": row.plan_id, "plan_revision": row.plan_revision,
            "terms": terms_of(row).as_dict(), "quantity": row.quantity,
            "terminal_count": row.terminal_count, "state": row.state,
            "activation_deadline": iso(row.activation_deadline),
            "grace_end_time": iso(row.grace_end_time), "state_reason": row.state_reason,
            "create_time": iso(row.create_time), "update_time": iso(row.update_time),
            "version": row.version}


def operation_dict(row: OperationRow) -> dict:
    return _columns(row)


def terminal_dict(row: TerminalRow) -> dict:
    return _columns(row)


def audit_dict(row: AuditRow) -> dict:
    return {"id": row.id, "resource": row.resource, "action": row.action, "actor": row.actor,
            "actor_tenant": row.actor_tenant, "request_id": row.request_id,
            "before": json.loads(row.before) if row.before else None,
            "after": json.loads(row.after) if row.after else None,
            "create_time": iso(row.create_time)}


def event_dict(row: EventRow) -> dict:
    return {"seq": row.position, "type": row.type, "resource": row.resource,
            "customer_id": row.customer_id, "payload": json.loads(row.payload),
            "create_time": iso(row.create_time)}


#: The writes a transaction ends with (`Tx.writes`, the answer, audit records, events):
#: SQL with `{i}` after each parameter name, and the parameters that need a column type.
_WRITES = {
    "terminal": ("UPDATE terminals SET state = :state{i}, version = :version{i}, "
                 "update_time = :update_time{i} WHERE id = :id{i}", ("update_time",)),
    "terminal_count": ("UPDATE subscriptions SET terminal_count = terminal_count + :delta{i}, "
                       "version = version + 1 WHERE id = :id{i}", ()),
    "answer": ("UPDATE idempotency_keys SET response = :response{i} "
               "WHERE tenant = :tenant{i} AND request_id = :request_id{i}", ("response",)),
    "audit": ("INSERT INTO audit_records (resource, action, actor, actor_tenant, request_id, "
              "before, after, create_time) VALUES (:resource{i}, :action{i}, :actor{i}, "
              ":actor_tenant{i}, :request_id{i}, :before{i}, :after{i}, :create_time{i})",
              ("create_time",)),
    "event": ("INSERT INTO events (type, resource, customer_id, tenant, partner_id, payload, "
              "create_time) VALUES (:type{i}, :resource{i}, :customer_id{i}, :tenant{i}, "
              ":partner_id{i}, :payload{i}, :create_time{i})", ("create_time",)),
}
_TYPES = {"update_time": UTCDateTime(), "create_time": UTCDateTime(), "response": LargeBinary()}


@functools.lru_cache(maxsize=256)
def _write_statement(kinds: tuple[str, ...], first: int = 0):
    """One statement for these writes (PostgreSQL: data-modifying CTEs, in order, so the
    events are inserted last); built once per shape, so SQLAlchemy compiles it once."""
    parts, typed = [], []
    for i, kind in enumerate(kinds, first):
        sql, types = _WRITES[kind]
        parts.append(sql.format(i=i))
        typed.extend(bindparam(f"{name}{i}", type_=_TYPES[name]) for name in types)
    if len(parts) == 1:
        return text(parts[0]).bindparams(*typed)
    ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts))
    return text(f"WITH {ctes} SELECT 1").bindparams(*typed)


@dataclass(frozen=True)
class _Owner:
    """What an event needs of the customer it belongs to."""

    id: str
    tenant: str
    partner_id: str | None


def customer_name(customer_id: str) -> str:
    return f"customers/{customer_id}"


def subscription_name(customer_id: str, subscription_id: str) -> str:
    return f"customers/{customer_id}/subscriptions/{subscription_id}"


def terminal_name(customer_id: str, terminal_id: str) -> str:
    return f"customers/{customer_id}/terminals/{terminal_id}"


def etag_of(version: int) -> str:
    return f'W/"{version}"'


def check_etag(etag: str, version: int, resource: str) -> None:
    if etag and etag != etag_of(version):
        raise Aborted(f"{resource} changed since it was read (etag {etag} is stale, current "
                      f"{etag_of(version)}); read it again and retry",
                      reason="STALE_ETAG", metadata={"resource": resource,
                                                     "current_etag": etag_of(version)})


# --- the unit of work ---------------------------------------------------------------------

@dataclass
class Tx:
    """One mutation's transaction: the session, who acts, and what to audit and publish."""

    session: AsyncSession
    principal: Principal
    request_id: str
    now: datetime
    audits: list[dict] = field(default_factory=list)  # audit_records rows to insert
    events: list[dict] = field(default_factory=list)  # events rows to insert
    #: Updates of rows this transaction locked, (kind in `_WRITES`, parameters), written
    #: with the answer, the audit records and the events.
    writes: list[tuple[str, dict]] = field(default_factory=list)
    kick_worker: bool = False

    def audit(self, resource: str, action: str, before: dict | None, after: dict | None) -> None:
        self.audits.append(dict(
            resource=resource, action=action, actor=self.principal.subject,
            actor_tenant=self.principal.tenant, request_id=self.request_id,
            before=_json(before) if before is not None else "",
            after=_json(after) if after is not None else "", create_time=self.now))

    def event(self, type_: str, resource: str, customer, payload: dict) -> None:
        self.events.append(dict(
            type=type_, resource=resource, customer_id=customer.id, tenant=customer.tenant,
            partner_id=customer.partner_id, payload=_json(payload), create_time=self.now))


Work = Callable[[Tx], Awaitable[Any]]


def _naive(value: datetime) -> datetime:
    """A timestamp as the columns hold it (naive UTC; see `UTCDateTime`)."""
    return value.astimezone(UTC).replace(tzinfo=None)


def _iso_naive(value: datetime | None) -> str | None:
    """A naive UTC column value as `iso()` gives it for the same value read by the ORM."""
    return None if value is None else value.replace(tzinfo=UTC).isoformat()


@dataclass
class _Call:
    """One mutation on the PostgreSQL fast path (`Store.mutate(fast=...)`).

    The change is planned from one autocommit read (which also looks up the idempotency key)
    and written by ONE autocommit statement: data-modifying CTEs that claim the key (INSERT
    ... ON CONFLICT DO NOTHING, storing the answer with it), then lock and change the rows
    only if the key was claimed and only if they are still as read (their version, their
    state), then insert the audit record and the outbox event from the changed row. Row
    locks are held for that one statement only: never while the event loop gets round to a
    next statement or a COMMIT. Outcomes:

    - key claimed and change made: committed, the answer is returned;
    - key not claimed (another call with this key committed first, or a concurrent
      duplicate committed while this one waited on the key): nothing was written; the
      stored answer is replayed if it is for the same request, else the transactional path
      reports REQUEST_ID_REUSED;
    - key claimed but the rows changed since the read (or a limit was reached): the
      statement divides by zero on purpose (`_ABORT`), so it rolls back as a whole, and the
      transactional path runs the call again against the current rows.
    """

    principal: Principal
    method: str
    request_id: str
    fingerprint: str
    now: datetime
    encode: Callable[[Any], bytes]
    events: int = 0

    def key_params(self, answer: bytes) -> dict:
        return {"k_tenant": self.principal.tenant, "k_request_id": self.request_id,
                "k_method": self.method, "k_fingerprint": self.fingerprint,
                "k_response": answer, "now": _naive(self.now),
                "actor": self.principal.subject, "actor_tenant": self.principal.tenant}

    def replay(self, key_print: str | None, response: bytes | None) -> bytes | None:
        """The stored answer when it is this request's (else None: the slow path decides)."""
        if key_print == self.fingerprint and response is not None:
            return bytes(response)
        return None


FastWork = Callable[[_Call], Awaitable[bytes | None]]

#: The CTE that claims the idempotency key and stores the answer with it.
_CLAIM_CTE = (
    "claim AS (INSERT INTO idempotency_keys (tenant, request_id, method, fingerprint, "
    "response, create_time) VALUES (%(k_tenant)s, %(k_request_id)s, %(k_method)s, "
    "%(k_fingerprint)s, %(k_response)s, %(now)s) ON CONFLICT DO NOTHING RETURNING 1)")


def _audit_event_ctes(tenant: str = "%(c_tenant)s", partner: str = "%(c_partner)s",
                      source: str = "changed") -> str:
    """The audit record and the event of a change, one each per row of the CTE `changed`
    (the event after every row lock of the change: its `seq` orders the resource's changes).
    """
    return (
        "audit AS (INSERT INTO audit_records (resource, action, actor, actor_tenant, "
        "request_id, before, after, create_time) SELECT %(resource)s, %(action)s, %(actor)s, "
        "%(actor_tenant)s, %(k_request_id)s, %(before)s, %(after)s, %(now)s FROM changed), "
        "event AS (INSERT INTO events (type, resource, customer_id, tenant, partner_id, "
        f"payload, create_time) SELECT %(event_type)s, %(resource)s, %(customer)s, {tenant}, "
        f"{partner}, %(after)s, %(now)s FROM {source})")


_AUDIT_EVENT_CTES = _audit_event_ctes()
#: The statement's result: whether the key was claimed; a claimed key without its change
#: divides by zero, which rolls the whole statement back.
_ABORT = ("SELECT n.claimed, 1 / (1 - n.claimed + n.changed){} FROM (SELECT "
          "(SELECT count(*) FROM claim) AS claimed, (SELECT count(*) FROM changed) AS changed"
          ") AS n")


def _entitlement(row, customer_id: str, bandwidth: float, region: str) -> domain.Entitlement:
    """The decision for one entitlement query row (None: the customer does not exist)."""
    if row is None:
        return domain.Entitlement(False, "CUSTOMER_NOT_FOUND",
                                  f"{customer_name(customer_id)} does not exist")
    if row[0] is None:
        return dataclasses.replace(domain.decide_entitlement(
            terminal_state=None, subscription_state=None, terms=None,
            bandwidth_mbps=bandwidth, region=region), customer_tenant=row[8])
    t_state, s_state, bw, priority, regions, sub_id, lo, hi, tenant, lat, lon, alt = row
    terms = PlanTerms(bandwidth_mbps=bw, priority_class=priority, min_quantity=lo,
                      max_quantity=hi, price_currency="", price_units=0, price_nanos=0,
                      regions=tuple(r for r in regions.split(",") if r))
    return dataclasses.replace(domain.decide_entitlement(
        terminal_state=t_state, subscription_state=s_state, terms=terms,
        bandwidth_mbps=bandwidth, region=region,
        subscription=subscription_name(customer_id, sub_id)),
        customer_tenant=tenant, terminal_location=(lat, lon, alt))


class Store:
    """Queries and transactions of the provisioning service."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                 clock: Callable[[], datetime] | None = None):
        self.engine = engine
        self.sessions = sessions
        self.clock = clock or (lambda: datetime.now(UTC))
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._insert = sqlite.insert if self.is_sqlite else postgresql.insert
        self._event_signal = asyncio.Event()
        #: PostgreSQL: tells the other replicas of commits with events (LISTEN/NOTIFY).
        self.wakeup: PgWakeup | None = None
        self._publishing = asyncio.Lock()
        #: PostgreSQL: autocommit connections for the entitlement check (`use_fast_reads`).
        self.fast_reads: FastReads | None = None
        #: PostgreSQL: autocommit connections for the one-statement mutations (`_Call`).
        self.fast_writes: FastReads | None = None
        #: terminal id -> (its dict, customer tenant, customer partner) as last written here.
        self._terminals: collections.OrderedDict[str, tuple[dict, str, str | None]] = (
            collections.OrderedDict())
        #: Set when an operation was queued (wakes this replica's worker).
        self.operations_queued = asyncio.Event()

    @property
    def event_signal(self) -> asyncio.Event:
        """Set at the next commit of events by this replica (take it before reading)."""
        return self._event_signal

    @property
    def event_poll_seconds(self) -> float:
        """How long a feed sleeps without a wake-up: long when other replicas' commits
        arrive by notification, short when they can only be polled (SQLite)."""
        return 0.2 if self.wakeup is None else 5.0

    def wake_events(self) -> None:
        """Wake this process's feeds (new events were committed somewhere)."""
        signal, self._event_signal = self._event_signal, asyncio.Event()
        signal.set()

    def notify_events(self) -> None:
        """After a commit with events: wake this process's feeds and the other replicas'."""
        self.wake_events()
        if self.wakeup is not None:
            self.wakeup.notify()

    # --- transactions ---------------------------------------------------------------------

    async def mutate(self, principal: Principal, method: str, request_id: str,
                     payload: bytes, work: Work, encode: Callable[[Any], bytes],
                     fast: FastWork | None = None) -> bytes:
        """Run `work` once per (tenant, request_id); returns the encoded (first) answer.

        `fast` (PostgreSQL, with a request_id): the same change in one autocommit read and
        one autocommit write statement (`_Call`); when it declines (an error to report, a
        replay that is not plain, a race), `work` runs in a transaction as usual."""
        print_ = fingerprint(method, payload)
        if fast is not None and request_id and self.fast_writes is not None:
            call = _Call(principal, method, request_id, print_, self.clock(), encode)
            answer = await fast(call)
            if answer is not None:
                if call.events:
                    self.notify_events()
                return answer
        for attempt in range(5):
            try:
                return await self._mutate_once(principal, method, request_id, print_, work,
                                               encode)
            except DBAPIError as error:
                state = getattr(error.orig, "sqlstate", None)
                if state not in _RETRYABLE_SQLSTATES or attempt == 4:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _mutate_once(self, principal, method, request_id, print_, work, encode) -> bytes:
        async with self.sessions() as session, session.begin():
            now = self.clock()
            if request_id:
                claimed = await session.execute(
                    self._insert(IdempotencyRow)
                    .values(tenant=principal.tenant, request_id=request_id, method=method,
                            fingerprint=print_, response=None, create_time=now)
                    .on_conflict_do_nothing()
                    .returning(IdempotencyRow.request_id))
                if claimed.first() is None:
                    first = (await session.execute(
                        select(IdempotencyRow).where(
                            IdempotencyRow.tenant == principal.tenant,
                            IdempotencyRow.request_id == request_id))).scalar_one()
                    if first.fingerprint != print_:
                        raise InvalidArgument(
                            f"request_id {request_id!r} was already used for a different "
                            f"request ({first.method})", reason="REQUEST_ID_REUSED",
                            violations=[("request_id",
                                         "was already used with a different request")])
                    return first.response or b""
            tx = Tx(session, principal, request_id, now)
            result = await work(tx)
            answer = encode(result)
            await self._flush(tx, answer if request_id else None)
        if tx.events:
            self.notify_events()
        if tx.kick_worker:
            self.operations_queued.set()
        return answer

    async def _flush(self, tx: Tx, answer: bytes | None = None) -> None:
        """Write the ORM's pending changes, then the answer (for the idempotency key), the
        audit records and the events: on PostgreSQL in one statement."""
        await tx.session.flush()
        writes = list(tx.writes)
        if answer is not None:
            writes.append(("answer", {"response": answer, "tenant": tx.principal.tenant,
                                      "request_id": tx.request_id}))
        writes.extend(("audit", row) for row in tx.audits)
        # After every row lock of the change: `seq` orders two changes of one resource.
        writes.extend(("event", row) for row in tx.events)
        if not writes:
            return
        kinds = tuple(kind for kind, _ in writes)
        params = {f"{name}{i}": value for i, (_, values) in enumerate(writes)
                  for name, value in values.items()}
        if self.is_sqlite:
            for i, (kind, values) in enumerate(writes):
                await tx.session.execute(_write_statement((kind,), i), {
                    f"{name}{i}": value for name, value in values.items()})
        else:
            await tx.session.execute(_write_statement(kinds), params)

    # --- the outbox relay -----------------------------------------------------------------

    _PUBLISH = text(
        "UPDATE events SET position = numbered.position FROM ("
        " SELECT pending.seq, (SELECT coalesce(max(position), 0) FROM events)"
        " + row_number() OVER (ORDER BY pending.seq) AS position"
        " FROM (SELECT seq FROM events WHERE position IS NULL ORDER BY seq"
        f" LIMIT {PUBLISH_BATCH}) AS pending) AS numbered"
        " WHERE events.seq = numbered.seq")

    async def publish_events(self) -> int:
        """Give the committed events without a feed position the next positions, in `seq`
        order; one relay at a time (another replica's relay running: nothing to do now).
        Returns how many events were published.

        Shielded: a caller cancelled mid-way (a WatchEvents stream closed by its client or
        by a drain) must not abandon the relay transaction half-way, which would leave its
        connection idle in a transaction holding the lock and the `events` rows."""
        return await asyncio.shield(self._publish_events())

    async def _publish_events(self) -> int:
        async with self._publishing:
            published = 0
            while True:
                async with self.sessions() as session, session.begin():
                    if not self.is_sqlite and not await session.scalar(OUTBOX_LOCK_SQL):
                        return published
                    count = (await session.execute(self._PUBLISH)).rowcount or 0
                published += count
                if count < PUBLISH_BATCH:
                    return published

    async def _locked(self, session: AsyncSession, model, *where):
        return (await session.execute(select(model).where(*where).with_for_update())
                ).scalar_one_or_none()

    # --- access ---------------------------------------------------------------------------

    async def _customer(self, session: AsyncSession, customer_id: str, audience: Audience,
                        *, lock: bool = False) -> CustomerRow:
        query = select(CustomerRow).where(CustomerRow.id == customer_id)
        if lock:
            query = query.with_for_update()
        row = (await session.execute(query)).scalar_one_or_none()
        if row is None or not domain.admits(audience, row.tenant, row.partner_id):
            raise NotFound(f"{customer_name(customer_id)} does not exist",
                           reason="CUSTOMER_NOT_FOUND",
                           metadata={"resource": customer_name(customer_id)})
        return row

    @staticmethod
    def _audience_filter(audience: Audience, tenant_col, partner_col):
        if audience.everything:
            return True
        clauses = []
        if audience.tenant is not None:
            clauses.append(tenant_col == audience.tenant)
        if audience.partner is not None:
            clauses.append(partner_col == audience.partner)
        return or_(*clauses) if clauses else False

    async def _page(self, query, key_col, after, limit: int):
        if after is not None:
            query = query.where(key_col > after)
        async with self.sessions() as session:
            rows = list((await session.execute(query.order_by(key_col).limit(limit + 1))
                         ).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (getattr(rows[-1], key_col.key) if more and rows else None)

    # --- partners -------------------------------------------------------------------------

    async def create_partner(self, tx: Tx, partner_id: str, display_name: str,
                             contact_email: str) -> dict:
        if await tx.session.get(PartnerRow, partner_id) is not None:
            raise AlreadyExists(f"partners/{partner_id} already exists",
                                metadata={"resource": f"partners/{partner_id}"})
        row = PartnerRow(id=partner_id, display_name=display_name, contact_email=contact_email,
                         create_time=tx.now)
        tx.session.add(row)
        try:
            await tx.session.flush()
        except IntegrityError:
            raise AlreadyExists(f"partners/{partner_id} already exists") from None
        tx.audit(f"partners/{partner_id}", "partner.create", None, partner_dict(row))
        return partner_dict(row)

    async def get_partner(self, partner_id: str) -> dict:
        async with self.sessions() as session:
            row = await session.get(PartnerRow, partner_id)
        if row is None:
            raise NotFound(f"partners/{partner_id} does not exist", reason="PARTNER_NOT_FOUND",
                           metadata={"resource": f"partners/{partner_id}"})
        return partner_dict(row)

    async def list_partners(self, after: str | None, limit: int):
        rows, last = await self._page(select(PartnerRow), PartnerRow.id, after, limit)
        return [partner_dict(r) for r in rows], last

    # --- referrals ------------------------------------------------------------------------

    @staticmethod
    def _referral_visible(principal: Principal, row: ReferralRow) -> bool:
        return principal.has(domain.OPERATOR) or (
            principal.has(domain.PARTNER) and row.owner_id == principal.tenant)

    async def create_referral(self, tx: Tx, owner_id: str, counterparty_id: str,
                              fields: dict) -> tuple[dict, dict]:
        for pid, path in ((owner_id, "owner"), (counterparty_id, "referral.counterparty")):
            if await tx.session.get(PartnerRow, pid) is None:
                raise NotFound(f"partners/{pid} does not exist", reason="PARTNER_NOT_FOUND",
                               metadata={"resource": f"partners/{pid}", "field": path})
        engagement = new_id()
        rows = []
        for direction, owner, other, sub in (
                (domain.OUTBOUND, owner_id, counterparty_id, domain.R_PENDING),
                (domain.INBOUND, counterparty_id, owner_id, domain.RECEIVED)):
            row = ReferralRow(id=new_id(), engagement_id=engagement, owner_id=owner,
                              counterparty_id=other, direction=direction, status=domain.NEW,
                              substatus=sub, create_time=tx.now, update_time=tx.now, version=1,
                              **fields)
            tx.session.add(row)
            rows.append(row)
        await tx.session.flush()
        for row in rows:
            tx.audit(f"referrals/{row.id}", "referral.create", None, referral_dict(row))
        return referral_dict(rows[0]), referral_dict(rows[1])

    async def get_referral(self, principal: Principal, referral_id: str) -> dict:
        async with self.sessions() as session:
            row = await session.get(ReferralRow, referral_id)
        if row is None or not self._referral_visible(principal, row):
            raise NotFound(f"referrals/{referral_id} does not exist",
                           reason="REFERRAL_NOT_FOUND",
                           metadata={"resource": f"referrals/{referral_id}"})
        return referral_dict(row)

    async def list_referrals(self, principal: Principal, after: str | None, limit: int):
        query = select(ReferralRow)
        if not principal.has(domain.OPERATOR):
            query = query.where(ReferralRow.owner_id == principal.tenant)
        rows, last = await self._page(query, ReferralRow.id, after, limit)
        return [referral_dict(r) for r in rows], last

    async def update_referral(self, tx: Tx, referral_id: str, etag: str, changes: dict,
                              wanted: tuple[str, str] | None) -> dict:
        name = f"referrals/{referral_id}"
        head = await tx.session.get(ReferralRow, referral_id)
        if head is None or not self._referral_visible(tx.principal, head):
            raise NotFound(f"{name} does not exist", reason="REFERRAL_NOT_FOUND",
                           metadata={"resource": name})
        # Lock both sides of the engagement, in id order.
        rows = list((await tx.session.execute(
            select(ReferralRow).where(ReferralRow.engagement_id == head.engagement_id)
            .order_by(ReferralRow.id).with_for_update())).scalars())
        row = next(r for r in rows if r.id == referral_id)
        other = next((r for r in rows if r.id != referral_id), None)
        check_etag(etag, row.version, name)
        before = referral_dict(row)
        if row.status == domain.CLOSED and (wanted is not None or set(changes) - {"notes"}):
            raise FailedPrecondition(
                f"{name} is {row.status}/{row.substatus}: only notes can change",
                reason="REFERRAL_CLOSED",
                metadata={"resource": name, "current_state": f"{row.status}/{row.substatus}"})
        for key, value in changes.items():
            setattr(row, key, value)
        if wanted is not None and wanted != (row.status, row.substatus):
            row.status, row.substatus = domain.referral_next(
                row.direction, (row.status, row.substatus), wanted, name)
            if other is not None:
                mirrored = domain.referral_mirror((other.status, other.substatus), wanted)
                if mirrored is not None:
                    other_before = referral_dict(other)
                    other.status, other.substatus = mirrored
                    other.version += 1
                    other.update_time = tx.now
                    tx.audit(f"referrals/{other.id}", "referral.mirror", other_before,
                             referral_dict(other))
        row.version += 1
        row.update_time = tx.now
        tx.audit(name, "referral.update", before, referral_dict(row))
        return referral_dict(row)

    # --- customers ------------------------------------------------------------------------

    async def create_customer(self, tx: Tx, fields: dict, referral_id: str | None) -> dict:
        p = tx.principal
        partner_id = None
        engagement = None
        if referral_id:
            ref = await self._locked(tx.session, ReferralRow, ReferralRow.id == referral_id)
            if ref is None or not self._referral_visible(p, ref):
                raise NotFound(f"referrals/{referral_id} does not exist",
                               reason="REFERRAL_NOT_FOUND",
                               metadata={"resource": f"referrals/{referral_id}",
                                         "field": "customer.referral"})
            if (ref.status, ref.substatus) != (domain.CLOSED, domain.WON):
                raise FailedPrecondition(
                    f"referrals/{referral_id} is {ref.status}/{ref.substatus}; a customer can "
                    "only be created from a CLOSED/WON referral", reason="REFERRAL_NOT_WON",
                    metadata={"resource": f"referrals/{referral_id}",
                              "current_state": f"{ref.status}/{ref.substatus}"})
            engagement = ref.engagement_id
            # Attribution: the partner who sourced the deal is the outbound side's owner.
            partner_id = ref.owner_id if ref.direction == domain.OUTBOUND else ref.counterparty_id
            for key, value in (("display_name", ref.organization), ("country", ref.country),
                               ("contact_email", ref.contact_email), ("sector", ref.sector)):
                if not fields.get(key):
                    fields[key] = value
            existing = (await tx.session.execute(select(CustomerRow.id).where(
                CustomerRow.engagement_id == engagement))).scalar_one_or_none()
            if existing is not None:
                raise AlreadyExists(
                    f"customers/{existing} was already created from this engagement",
                    reason="CUSTOMER_EXISTS_FOR_ENGAGEMENT",
                    metadata={"resource": f"customers/{existing}"})
        elif p.has(domain.PARTNER) and not p.has(domain.OPERATOR):
            partner_id = p.tenant
        if not p.has(domain.OPERATOR, domain.PARTNER):
            # A customer creates itself: its tenant is the token's.
            if fields.get("tenant") and fields["tenant"] != p.tenant:
                raise PermissionDenied("a customer can only create itself in its own tenant",
                                       reason="TENANT_MISMATCH",
                                       violations=[("customer.tenant", "must be the token's tenant")])
            fields["tenant"] = p.tenant
        elif p.has(domain.PARTNER) and not p.has(domain.OPERATOR) and partner_id != p.tenant:
            raise NotFound(f"referrals/{referral_id} does not exist",
                           reason="REFERRAL_NOT_FOUND")
        if not fields.get("tenant"):
            raise InvalidArgument("the customer's tenant is required",
                                  violations=[("customer.tenant", "is required")])
        row = CustomerRow(id=new_id(), partner_id=partner_id, referral_id=referral_id or None,
                          engagement_id=engagement, create_time=tx.now, version=1, **fields)
        tx.session.add(row)
        try:
            await tx.session.flush()
        except IntegrityError:
            raise AlreadyExists("a customer was already created from this engagement",
                                reason="CUSTOMER_EXISTS_FOR_ENGAGEMENT") from None
        tx.audit(customer_name(row.id), "customer.create", None, customer_dict(row))
        return customer_dict(row)

    async def get_customer(self, audience: Audience, customer_id: str) -> dict:
        async with self.sessions() as session:
            return customer_dict(await self._customer(session, customer_id, audience))

    async def list_customers(self, audience: Audience, after: str | None, limit: int):
        query = select(CustomerRow).where(
            self._audience_filter(audience, CustomerRow.tenant, CustomerRow.partner_id))
        rows, last = await self._page(query, CustomerRow.id, after, limit)
        return [customer_dict(r) for r in rows], last

    # --- plans ----------------------------------------------------------------------------

    async def create_plan(self, tx: Tx, plan_id: str, display_name: str,
                          terms: PlanTerms) -> dict:
        if await tx.session.get(PlanRow, plan_id) is not None:
            raise AlreadyExists(f"plans/{plan_id} already exists",
                                metadata={"resource": f"plans/{plan_id}"})
        row = PlanRow(id=plan_id, display_name=display_name, revision=1, create_time=tx.now,
                      update_time=tx.now, version=1)
        set_terms(row, terms)
        tx.session.add(row)
        try:
            await tx.session.flush()
        except IntegrityError:
            raise AlreadyExists(f"plans/{plan_id} already exists") from None
        tx.session.add(PlanRevisionRow(plan_id=plan_id, revision=1, terms=_json(terms.as_dict()),
                                       create_time=tx.now))
        tx.audit(f"plans/{plan_id}", "plan.create", None, plan_dict(row))
        return plan_dict(row)

    async def _plan(self, session: AsyncSession, plan_id: str, field_path: str = "plan",
                    *, lock: bool = False) -> PlanRow:
        query = select(PlanRow).where(PlanRow.id == plan_id)
        row = (await session.execute(query.with_for_update() if lock else query)
               ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"plans/{plan_id} does not exist", reason="PLAN_NOT_FOUND",
                           metadata={"resource": f"plans/{plan_id}", "field": field_path})
        return row

    async def get_plan(self, plan_id: str) -> dict:
        async with self.sessions() as session:
            return plan_dict(await self._plan(session, plan_id))

    async def list_plans(self, after: str | None, limit: int):
        rows, last = await self._page(select(PlanRow), PlanRow.id, after, limit)
        return [plan_dict(r) for r in rows], last

    async def update_plan(self, tx: Tx, plan_id: str, etag: str, display_name: str | None,
                          terms: PlanTerms | None) -> dict:
        row = await self._plan(tx.session, plan_id, lock=True)
        check_etag(etag, row.version, f"plans/{plan_id}")
        before = plan_dict(row)
        if display_name is not None:
            row.display_name = display_name
        if terms is not None and terms != terms_of(row):
            set_terms(row, terms)
            row.revision += 1
            tx.session.add(PlanRevisionRow(plan_id=plan_id, revision=row.revision,
                                           terms=_json(terms.as_dict()), create_time=tx.now))
        row.version += 1
        row.update_time = tx.now
        tx.audit(f"plans/{plan_id}", "plan.update", before, plan_dict(row))
        return plan_dict(row)

    # --- subscriptions --------------------------------------------------------------------

    def _sub_event(self, tx: Tx, type_: str, customer: CustomerRow, row: SubscriptionRow,
                   action: str, before: dict | None) -> dict:
        after = subscription_dict(row)
        name = subscription_name(row.customer_id, row.id)
        tx.audit(name, action, before, after)
        if type_:
            tx.event(type_, name, customer, after)
        return after

    async def create_subscription(self, tx: Tx, customer_id: str, plan_id: str, quantity: int,
                                  display_name: str) -> dict:
        customer = await self._customer(tx.session, customer_id,
                                        domain.write_audience(tx.principal))
        plan = await self._plan(tx.session, plan_id, "subscription.plan")
        terms = terms_of(plan)
        bad = terms.quantity_problem(quantity)
        if bad:
            raise InvalidArgument(f"subscription.quantity {bad}",
                                  violations=[("subscription.quantity", bad)])
        row = SubscriptionRow(
            id=new_id(), customer_id=customer_id, display_name=display_name, plan_id=plan_id,
            plan_revision=plan.revision, quantity=quantity, terminal_count=0,
            state=domain.PENDING, activation_deadline=tx.now + domain.ACTIVATION_WINDOW,
            grace_end_time=None, state_reason="", create_time=tx.now, update_time=tx.now,
            version=1)
        set_terms(row, terms)
        tx.session.add(row)
        await tx.session.flush()
        return self._sub_event(tx, "SUBSCRIPTION_CREATED", customer, row, "subscription.create",
                               None)

    # PostgreSQL fast paths (`_Call`) of creating and activating a subscription.

    _TERMS = ("bandwidth_mbps", "priority_class", "min_quantity", "max_quantity",
              "price_currency", "price_units", "price_nanos", "regions")
    _FAST_SUB_CREATE_READ = (
        "SELECT k.fingerprint, k.response, c.tenant, c.partner_id, p.revision, "
        + ", ".join(f"p.{name}" for name in _TERMS) + " FROM (SELECT 1) AS one "
        "LEFT JOIN idempotency_keys k ON k.tenant = %(k_tenant)s "
        "AND k.request_id = %(k_request_id)s "
        "LEFT JOIN customers c ON c.id = %(customer)s "
        "LEFT JOIN plans p ON p.id = %(plan)s")
    _FAST_SUB_CREATE = (
        f"WITH {_CLAIM_CTE}, "
        "changed AS (INSERT INTO subscriptions (id, customer_id, display_name, plan_id, "
        "plan_revision, " + ", ".join(_TERMS) + ", quantity, terminal_count, state, "
        "activation_deadline, grace_end_time, state_reason, create_time, update_time, version)"
        " SELECT %(subscription)s, %(customer)s, %(display_name)s, %(plan)s, %(revision)s, "
        + ", ".join(f"%({name})s" for name in _TERMS) + ", %(quantity)s, 0, %(state)s, "
        "%(deadline)s, NULL, '', %(now)s, %(now)s, 1 WHERE EXISTS (SELECT FROM claim) "
        "RETURNING id), "
        f"{_AUDIT_EVENT_CTES} {_ABORT.format('')}")

    async def fast_create_subscription(self, call: _Call, customer_id: str, plan_id: str,
                                       quantity: int, display_name: str) -> bytes | None:
        params = {"k_tenant": call.principal.tenant, "k_request_id": call.request_id,
                  "customer": customer_id, "plan": plan_id}
        row = await self.fast_reads.fetchone(self._FAST_SUB_CREATE_READ, params)
        key_print, response, c_tenant, c_partner, revision = row[:5]
        if key_print is not None:
            return call.replay(key_print, response)
        if (c_tenant is None or revision is None
                or not domain.admits(domain.write_audience(call.principal), c_tenant, c_partner)):
            return None
        stored = dict(zip(self._TERMS, row[5:], strict=True))
        terms = PlanTerms(**{**stored, "regions": tuple(
            r for r in stored["regions"].split(",") if r)})
        if terms.quantity_problem(quantity):
            return None
        deadline = call.now + domain.ACTIVATION_WINDOW
        sub_id = new_id()
        after = {"id": sub_id, "customer_id": customer_id, "display_name": display_name,
                 "plan_id": plan_id, "plan_revision": revision, "terms": terms.as_dict(),
                 "quantity": quantity, "terminal_count": 0, "state": domain.PENDING,
                 "activation_deadline": iso(deadline), "grace_end_time": None,
                 "state_reason": "", "create_time": iso(call.now),
                 "update_time": iso(call.now), "version": 1}
        answer = call.encode(after)
        params.update(call.key_params(answer))
        params.update(stored)
        params.update(
            subscription=sub_id, display_name=display_name, revision=revision,
            quantity=quantity, state=domain.PENDING, deadline=_naive(deadline),
            resource=subscription_name(customer_id, sub_id), action="subscription.create",
            before="", after=_json(after), event_type="SUBSCRIPTION_CREATED",
            c_tenant=c_tenant, c_partner=c_partner)
        row = await self._fast_write(call, self._FAST_SUB_CREATE, params, answer)
        return answer if isinstance(row, tuple) else row

    _SUB_COLUMNS = tuple(c.key for c in _S.columns)
    _FAST_SUB_ACTIVATE_READ = (
        "SELECT k.fingerprint, k.response, c.tenant, c.partner_id, "
        + ", ".join(f"s.{name}" for name in _SUB_COLUMNS) + " FROM (SELECT 1) AS one "
        "LEFT JOIN idempotency_keys k ON k.tenant = %(k_tenant)s "
        "AND k.request_id = %(k_request_id)s "
        "LEFT JOIN subscriptions s ON s.id = %(subscription)s AND s.customer_id = %(customer)s "
        "LEFT JOIN customers c ON c.id = s.customer_id")
    #: Changed only if it is still the version and state that was read (every change of a
    #: subscription, its terminal count included, increments its version).
    _FAST_SUB_ACTIVATE = (
        f"WITH {_CLAIM_CTE}, "
        "changed AS (UPDATE subscriptions SET state = %(state)s, state_reason = '', "
        "version = %(new_version)s, update_time = %(now)s WHERE id = %(subscription)s "
        "AND version = %(version)s AND state = %(old_state)s "
        "AND EXISTS (SELECT FROM claim) RETURNING id), "
        f"{_AUDIT_EVENT_CTES} {_ABORT.format('')}")

    async def fast_activate_subscription(self, call: _Call, customer_id: str,
                                         subscription_id: str, plan_id: str,
                                         quantity: int) -> bytes | None:
        params = {"k_tenant": call.principal.tenant, "k_request_id": call.request_id,
                  "customer": customer_id, "subscription": subscription_id}
        row = await self.fast_reads.fetchone(self._FAST_SUB_ACTIVATE_READ, params)
        key_print, response, c_tenant, c_partner = row[:4]
        if key_print is not None:
            return call.replay(key_print, response)
        if c_tenant is None or not domain.admits(domain.write_audience(call.principal),
                                                 c_tenant, c_partner):
            return None
        sub = types.SimpleNamespace(**{
            name: (value.replace(tzinfo=UTC) if isinstance(value, datetime) else value)
            for name, value in zip(self._SUB_COLUMNS, row[4:], strict=True)})
        name = subscription_name(customer_id, subscription_id)
        try:
            new_state = domain.subscription_next(sub.state, "activate", name)
            domain.check_activation_window(call.now, sub.activation_deadline, name)
        except DomainError:
            return None
        if plan_id != sub.plan_id or quantity != sub.quantity:
            return None
        before = subscription_dict(sub)
        after = {**before, "state": new_state, "state_reason": "",
                 "version": sub.version + 1, "update_time": iso(call.now)}
        answer = call.encode(after)
        params.update(call.key_params(answer))
        params.update(
            state=new_state, new_version=sub.version + 1, version=sub.version,
            old_state=sub.state, resource=name, action="subscription.activate",
            before=_json(before), after=_json(after), event_type="SUBSCRIPTION_ACTIVATED",
            c_tenant=c_tenant, c_partner=c_partner)
        row = await self._fast_write(call, self._FAST_SUB_ACTIVATE, params, answer)
        return answer if isinstance(row, tuple) else row

    async def _locked_subscription(self, tx: Tx, customer_id: str, subscription_id: str,
                                   audience: Audience) -> tuple[CustomerRow, SubscriptionRow]:
        customer = await self._customer(tx.session, customer_id, audience)
        row = await self._locked(tx.session, SubscriptionRow,
                                 SubscriptionRow.id == subscription_id,
                                 SubscriptionRow.customer_id == customer_id)
        if row is None:
            name = subscription_name(customer_id, subscription_id)
            raise NotFound(f"{name} does not exist", reason="SUBSCRIPTION_NOT_FOUND",
                           metadata={"resource": name})
        return customer, row

    async def get_subscription(self, audience: Audience, customer_id: str,
                               subscription_id: str) -> dict:
        async with self.sessions() as session:
            await self._customer(session, customer_id, audience)
            row = (await session.execute(select(SubscriptionRow).where(
                SubscriptionRow.id == subscription_id,
                SubscriptionRow.customer_id == customer_id))).scalar_one_or_none()
        if row is None:
            name = subscription_name(customer_id, subscription_id)
            raise NotFound(f"{name} does not exist", reason="SUBSCRIPTION_NOT_FOUND",
                           metadata={"resource": name})
        return subscription_dict(row)

    async def list_subscriptions(self, audience: Audience, customer_id: str,
                                 after: str | None, limit: int):
        async with self.sessions() as session:
            await self._customer(session, customer_id, audience)
        rows, last = await self._page(
            select(SubscriptionRow).where(SubscriptionRow.customer_id == customer_id),
            SubscriptionRow.id, after, limit)
        return [subscription_dict(r) for r in rows], last

    async def activate_subscription(self, tx: Tx, customer_id: str, subscription_id: str,
                                    plan_id: str, quantity: int) -> dict:
        customer, row = await self._locked_subscription(
            tx, customer_id, subscription_id, domain.write_audience(tx.principal))
        name = subscription_name(customer_id, subscription_id)
        new_state = domain.subscription_next(row.state, "activate", name)
        domain.check_activation_window(tx.now, row.activation_deadline, name)
        mismatch = []
        if plan_id != row.plan_id:
            mismatch.append(("plan", f"must be the plan bought, plans/{row.plan_id}"))
        if quantity != row.quantity:
            mismatch.append(("quantity", f"must be the quantity bought, {row.quantity}"))
        if mismatch:
            raise InvalidArgument("the activation does not match the purchase",
                                  reason="ACTIVATION_MISMATCH", violations=mismatch)
        before = subscription_dict(row)
        self._set_state(tx, row, new_state, "")
        return self._sub_event(tx, "SUBSCRIPTION_ACTIVATED", customer, row,
                               "subscription.activate", before)

    @staticmethod
    def _set_state(tx: Tx, row: SubscriptionRow, state: str, reason: str) -> None:
        row.state = state
        row.state_reason = reason
        row.version += 1
        row.update_time = tx.now

    async def suspend_subscription(self, tx: Tx, customer_id: str, subscription_id: str,
                                   reason: str) -> dict:
        customer, row = await self._locked_subscription(
            tx, customer_id, subscription_id, domain.manage_audience(tx.principal))
        name = subscription_name(customer_id, subscription_id)
        new_state = domain.subscription_next(row.state, "suspend", name)
        before = subscription_dict(row)
        self._set_state(tx, row, new_state, reason)
        row.grace_end_time = tx.now + domain.GRACE_PERIOD
        return self._sub_event(tx, "SUBSCRIPTION_SUSPENDED", customer, row,
                               "subscription.suspend", before)

    async def reinstate_subscription(self, tx: Tx, customer_id: str,
                                     subscription_id: str) -> dict:
        customer, row = await self._locked_subscription(
            tx, customer_id, subscription_id, domain.manage_audience(tx.principal))
        name = subscription_name(customer_id, subscription_id)
        new_state = domain.subscription_next(row.state, "reinstate", name)
        domain.check_grace_period(tx.now, row.grace_end_time, name)
        before = subscription_dict(row)
        self._set_state(tx, row, new_state, "")
        row.grace_end_time = None
        return self._sub_event(tx, "SUBSCRIPTION_REINSTATED", customer, row,
                               "subscription.reinstate", before)

    async def start_operation(self, tx: Tx, customer_id: str, subscription_id: str, kind: str,
                              *, plan_id: str = "", quantity: int = 0,
                              reason: str = "") -> dict:
        """Validate and queue a plan change, quantity change or cancellation."""
        _, row = await self._locked_subscription(
            tx, customer_id, subscription_id, domain.write_audience(tx.principal))
        name = subscription_name(customer_id, subscription_id)
        action = {"CHANGE_PLAN": "change_plan", "CHANGE_QUANTITY": "change_quantity",
                  "CANCEL": "cancel"}[kind]
        domain.subscription_next(row.state, action, name)
        running = (await tx.session.execute(select(OperationRow.id).where(
            OperationRow.subscription_id == subscription_id,
            OperationRow.state == "RUNNING"))).scalar_one_or_none()
        if running is not None:
            raise FailedPrecondition(
                f"{name} already has a running operation ({name}/operations/{running}); "
                "plan and quantity never change at once", reason="OPERATION_IN_PROGRESS",
                metadata={"resource": name, "current_state": row.state,
                          "operation": f"{name}/operations/{running}"})
        if kind == "CHANGE_PLAN":
            await self._check_plan_change(tx.session, row, plan_id, name)
        elif kind == "CHANGE_QUANTITY":
            self._check_quantity_change(row, quantity)
        op = OperationRow(id=new_id(), subscription_id=subscription_id, customer_id=customer_id,
                          kind=kind, state="RUNNING", plan_id=plan_id, quantity=quantity,
                          reason=reason, error_code=0, error_reason="", error_message="",
                          requested_by=tx.principal.subject, create_time=tx.now, end_time=None)
        tx.session.add(op)
        try:
            await tx.session.flush()
        except IntegrityError:
            raise FailedPrecondition(f"{name} already has a running operation",
                                     reason="OPERATION_IN_PROGRESS",
                                     metadata={"resource": name,
                                               "current_state": row.state}) from None
        tx.audit(f"{name}/operations/{op.id}", "operation.create", None, operation_dict(op))
        tx.kick_worker = True
        return operation_dict(op)

    async def _check_plan_change(self, session, row: SubscriptionRow, plan_id: str,
                                 name: str) -> PlanRow:
        plan = await self._plan(session, plan_id)
        if plan_id == row.plan_id:
            raise InvalidArgument(f"{name} already has plans/{plan_id}",
                                  violations=[("plan", "is already the subscription's plan")])
        bad = terms_of(plan).quantity_problem(row.quantity)
        if bad:
            raise InvalidArgument(
                f"the quantity {row.quantity} does not fit plans/{plan_id}",
                reason="QUANTITY_OUT_OF_PLAN_BOUNDS",
                violations=[("plan", f"the subscription's quantity {bad}")])
        return plan

    @staticmethod
    def _check_quantity_change(row: SubscriptionRow, quantity: int) -> None:
        bad = terms_of(row).quantity_problem(quantity)
        if bad:
            raise InvalidArgument(f"quantity {bad}", reason="QUANTITY_OUT_OF_PLAN_BOUNDS",
                                  violations=[("quantity", bad)])
        if quantity < row.terminal_count:
            raise FailedPrecondition(
                f"quantity {quantity} is below the {row.terminal_count} terminals in use; "
                "decommission terminals first", reason="QUANTITY_BELOW_TERMINAL_COUNT",
                metadata={"current_state": row.state,
                          "terminal_count": str(row.terminal_count)})
        if quantity == row.quantity:
            raise InvalidArgument(f"the quantity is already {quantity}",
                                  violations=[("quantity", "is already the quantity")])

    async def run_pending_operations(self) -> int:
        """Apply every RUNNING operation (any replica may run this; each applies once)."""
        async with self.sessions() as session:
            ids = list((await session.execute(
                select(OperationRow.id, OperationRow.subscription_id)
                .where(OperationRow.state == "RUNNING").order_by(OperationRow.id).limit(100)
            )).all())
        done = 0
        for op_id, sub_id in ids:
            done += await self._apply_operation(op_id, sub_id)
        return done

    async def _apply_operation(self, op_id: str, subscription_id: str) -> int:
        async with self.sessions() as session, session.begin():
            tx = Tx(session, SYSTEM, "", self.clock())
            row = await self._locked(session, SubscriptionRow,
                                     SubscriptionRow.id == subscription_id)
            op = await self._locked(session, OperationRow, OperationRow.id == op_id)
            if row is None or op is None or op.state != "RUNNING":
                return 0
            customer = await session.get(CustomerRow, row.customer_id)
            name = subscription_name(row.customer_id, row.id)
            op_name = f"{name}/operations/{op.id}"
            op_before = operation_dict(op)
            before = subscription_dict(row)
            tx.principal = Principal(subject=op.requested_by, scopes=SYSTEM.scopes,
                                     tenant=SYSTEM.tenant, expires_at=SYSTEM.expires_at)
            try:
                if op.kind == "CHANGE_PLAN":
                    domain.subscription_next(row.state, "change_plan", name)
                    plan = await self._check_plan_change(session, row, op.plan_id, name)
                    row.plan_id, row.plan_revision = plan.id, plan.revision
                    set_terms(row, terms_of(plan))
                    event = "SUBSCRIPTION_PLAN_CHANGED"
                elif op.kind == "CHANGE_QUANTITY":
                    domain.subscription_next(row.state, "change_quantity", name)
                    self._check_quantity_change(row, op.quantity)
                    row.quantity = op.quantity
                    event = "SUBSCRIPTION_QUANTITY_CHANGED"
                else:
                    domain.subscription_next(row.state, "cancel", name)
                    await self._decommission_all(tx, customer, row)
                    row.state = domain.UNSUBSCRIBED
                    row.state_reason = op.reason or "cancelled"
                    row.grace_end_time = None
                    event = "SUBSCRIPTION_UNSUBSCRIBED"
                row.version += 1
                row.update_time = tx.now
                self._sub_event(tx, event, customer, row, f"subscription.{op.kind.lower()}",
                                before)
                op.state = "SUCCEEDED"
            except DomainError as error:
                op.state = "FAILED"
                op.error_code = error.code
                op.error_reason = error.reason
                op.error_message = error.message
            op.end_time = tx.now
            tx.audit(op_name, "operation.finish", op_before, operation_dict(op))
            await self._flush(tx)
        if tx.events:
            self.notify_events()
        return 1

    async def _decommission_all(self, tx: Tx, customer: CustomerRow,
                                row: SubscriptionRow) -> None:
        terminals = (await tx.session.execute(
            select(TerminalRow).where(TerminalRow.subscription_id == row.id,
                                      TerminalRow.state != domain.DECOMMISSIONED)
            .order_by(TerminalRow.id).with_for_update())).scalars()
        for terminal in terminals:
            before = terminal_dict(terminal)
            terminal.state = domain.DECOMMISSIONED
            terminal.version += 1
            terminal.update_time = tx.now
            self._terminal_event(tx, customer, terminal, "terminal.decommission", before)
        row.terminal_count = 0

    async def get_operation(self, audience: Audience, customer_id: str, subscription_id: str,
                            op_id: str) -> dict:
        async with self.sessions() as session:
            await self._customer(session, customer_id, audience)
            op = (await session.execute(select(OperationRow).where(
                OperationRow.id == op_id, OperationRow.subscription_id == subscription_id,
                OperationRow.customer_id == customer_id))).scalar_one_or_none()
        if op is None:
            name = f"{subscription_name(customer_id, subscription_id)}/operations/{op_id}"
            raise NotFound(f"{name} does not exist", reason="OPERATION_NOT_FOUND",
                           metadata={"resource": name})
        return operation_dict(op)

    async def list_operations(self, audience: Audience, customer_id: str, subscription_id: str,
                              after: str | None, limit: int):
        await self.get_subscription(audience, customer_id, subscription_id)
        rows, last = await self._page(
            select(OperationRow).where(OperationRow.subscription_id == subscription_id),
            OperationRow.id, after, limit)
        return [operation_dict(r) for r in rows], last

    # --- terminals ------------------------------------------------------------------------

    def _terminal_event(self, tx: Tx, customer: CustomerRow, row: TerminalRow, action: str,
                        before: dict | None) -> dict:
        after = terminal_dict(row)
        name = terminal_name(row.customer_id, row.id)
        tx.audit(name, action, before, after)
        tx.event("TERMINAL_REGISTERED" if before is None else "TERMINAL_STATE_CHANGED", name,
                 customer, after)
        return after

    async def create_terminal(self, tx: Tx, customer_id: str, subscription_id: str,
                              serial: str, location: tuple[float, float, float]) -> dict:
        """Three statements: lock the subscription (with its customer), insert the terminal
        unless its serial number is taken, and (in `_flush`) count it on the subscription."""
        audience = domain.write_audience(tx.principal)
        query = (select(_S, _C.c.tenant.label("c_tenant"), _C.c.partner_id.label("c_partner"))
                 .join_from(_S, _C, _C.c.id == _S.c.customer_id)
                 .where(_S.c.id == subscription_id, _S.c.customer_id == customer_id))
        if not self.is_sqlite:
            query = query.with_for_update(of=_S)
        sub = (await tx.session.execute(query)).first()
        if sub is None or not domain.admits(audience, sub.c_tenant, sub.c_partner):
            await self._customer(tx.session, customer_id, audience)  # NOT_FOUND if unseen
            name = subscription_name(customer_id, subscription_id)
            raise NotFound(f"{name} does not exist", reason="SUBSCRIPTION_NOT_FOUND",
                           metadata={"resource": name})
        customer = _Owner(customer_id, sub.c_tenant, sub.c_partner)
        name = subscription_name(customer_id, subscription_id)
        if sub.state == domain.UNSUBSCRIBED:
            raise FailedPrecondition(f"{name} is UNSUBSCRIBED: no terminals can join it",
                                     reason="SUBSCRIPTION_ENDED",
                                     metadata={"resource": name, "current_state": sub.state})
        if sub.terminal_count >= sub.quantity:
            raise ResourceExhausted(
                f"{name} already has {sub.terminal_count} of {sub.quantity} terminals; "
                "raise the quantity or decommission a terminal", reason="QUANTITY_EXCEEDED",
                metadata={"resource": name, "quantity": str(sub.quantity),
                          "terminal_count": str(sub.terminal_count)})
        values = dict(id=new_id(), customer_id=customer_id, subscription_id=subscription_id,
                      serial_number=serial, latitude_deg=location[0],
                      longitude_deg=location[1], altitude_m=location[2],
                      state=domain.REGISTERED, create_time=tx.now, update_time=tx.now,
                      version=1)
        inserted = (await tx.session.execute(
            self._insert(_T).values(values)
            .on_conflict_do_nothing(index_elements=[_T.c.serial_number])
            .returning(_T.c.id))).first()
        if inserted is None:
            raise AlreadyExists(f"a terminal with serial number {serial} already exists",
                                reason="SERIAL_NUMBER_TAKEN",
                                violations=[("terminal.serial_number", "is already registered")])
        tx.writes.append(("terminal_count", {"delta": 1, "id": subscription_id}))
        after = {key: (iso(v) if isinstance(v, datetime) else v) for key, v in values.items()}
        return self._terminal_change(tx, customer, after, "terminal.create", None)

    def _terminal_change(self, tx: Tx, customer, after: dict, action: str,
                         before: dict | None) -> dict:
        name = terminal_name(after["customer_id"], after["id"])
        tx.audit(name, action, before, after)
        tx.event("TERMINAL_REGISTERED" if before is None else "TERMINAL_STATE_CHANGED", name,
                 customer, after)
        return after

    # PostgreSQL fast paths (`_Call`): the happy path of the hot terminal mutations in one
    # read and one write statement; anything else declines (None) to the methods above.

    #: Count the terminal on its subscription (locked; the audience, the state and the
    #: limit checked on the current row), insert it unless its serial number is taken,
    #: audit, publish: one statement, no read before it (the answer is the request's).
    _FAST_CREATE = (
        f"WITH {_CLAIM_CTE}, "
        "counted AS (UPDATE subscriptions s SET terminal_count = s.terminal_count + 1, "
        "version = s.version + 1 FROM customers c WHERE s.id = %(subscription)s "
        "AND s.customer_id = %(customer)s AND c.id = s.customer_id "
        "AND (%(everyone)s OR c.tenant = %(a_tenant)s OR c.partner_id = %(a_partner)s) "
        "AND s.state <> 'UNSUBSCRIBED' AND s.terminal_count < s.quantity "
        "AND EXISTS (SELECT FROM claim) RETURNING s.id, c.tenant, c.partner_id), "
        "changed AS (INSERT INTO terminals (id, customer_id, subscription_id, serial_number, "
        "latitude_deg, longitude_deg, altitude_m, state, create_time, update_time, version) "
        "SELECT %(terminal)s, %(customer)s, counted.id, %(serial)s, %(lat)s, %(lon)s, %(alt)s, "
        "%(state)s, %(now)s, %(now)s, 1 FROM counted "
        "ON CONFLICT (serial_number) DO NOTHING RETURNING id), "
        + _audit_event_ctes("counted.tenant", "counted.partner_id", "changed, counted")
        + " " + _ABORT.format(", (SELECT tenant FROM counted), "
                              "(SELECT partner_id FROM counted)"))

    async def fast_create_terminal(self, call: _Call, customer_id: str, subscription_id: str,
                                   serial: str, location: tuple[float, float, float]
                                   ) -> bytes | None:
        audience = domain.write_audience(call.principal)
        now = iso(call.now)
        after = dict(id=new_id(), customer_id=customer_id, subscription_id=subscription_id,
                     serial_number=serial, latitude_deg=location[0],
                     longitude_deg=location[1], altitude_m=location[2],
                     state=domain.REGISTERED, create_time=now, update_time=now, version=1)
        answer = call.encode(after)
        params = call.key_params(answer)
        params.update(
            subscription=subscription_id, customer=customer_id, everyone=audience.everything,
            a_tenant=audience.tenant, a_partner=audience.partner,
            terminal=after["id"], serial=serial, lat=location[0], lon=location[1],
            alt=location[2], state=domain.REGISTERED,
            resource=terminal_name(customer_id, after["id"]), action="terminal.create",
            before="", after=_json(after), event_type="TERMINAL_REGISTERED")
        row = await self._fast_write(call, self._FAST_CREATE, params, answer)
        if isinstance(row, tuple):
            self._known_terminal(after, row[2], row[3])
            return answer
        return row

    def _known_terminal(self, after: dict, tenant: str, partner: str | None) -> None:
        """Remember a terminal as this replica last committed it (`fast_transition_terminal`
        plans the next change from it; the write checks it is still so)."""
        known = self._terminals
        known[after["id"]] = (after, tenant, partner)
        known.move_to_end(after["id"])
        if len(known) > KNOWN_TERMINALS:
            known.popitem(last=False)

    async def _fast_write(self, call: _Call, sql: str, params: dict,
                          answer: bytes) -> tuple | bytes | None:
        """Run a `_Call` statement: its result row when it committed the change, else the
        replayed answer of the call that holds the key, else None (decline)."""
        import psycopg

        try:
            row = await self.fast_writes.execute(sql, params)
        except psycopg.errors.DivisionByZero:
            return None  # `_ABORT`: rolled back; the rows changed since the read
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            return None
        if row[0]:
            call.events += 1
            return row  # committed
        # Another call with this key committed first: replay it if it was this request.
        key = await self.fast_reads.fetchone(
            "SELECT fingerprint, response FROM idempotency_keys "
            "WHERE tenant = %(k_tenant)s AND request_id = %(k_request_id)s", params)
        return None if key is None else call.replay(*key)

    _FAST_TRANSITION_READ = (
        "SELECT k.fingerprint, k.response, t.subscription_id, t.serial_number, "
        "t.latitude_deg, t.longitude_deg, t.altitude_m, t.state, t.create_time, "
        "t.update_time, t.version, c.tenant, c.partner_id FROM (SELECT 1) AS one "
        "LEFT JOIN idempotency_keys k ON k.tenant = %(k_tenant)s "
        "AND k.request_id = %(k_request_id)s "
        "LEFT JOIN terminals t ON t.id = %(terminal)s AND t.customer_id = %(customer)s "
        "LEFT JOIN customers c ON c.id = t.customer_id")
    #: Lock order as in `transition_terminal`: key, subscription (shared: unchanged until
    #: the end; for an activation it must still be SUBSCRIBED), then the terminal, changed
    #: only if it is still the version and state that was read.
    _FAST_TRANSITION = (
        f"WITH {_CLAIM_CTE}, "
        "sub AS (SELECT id FROM subscriptions WHERE id = %(subscription)s "
        "AND (CAST(%(need_state)s AS text) = '' OR state = CAST(%(need_state)s AS text)) "
        "AND EXISTS (SELECT FROM claim) FOR SHARE), "
        "changed AS (UPDATE terminals SET state = %(state)s, version = %(new_version)s, "
        "update_time = %(now)s WHERE id = %(terminal)s AND version = %(version)s "
        "AND state = %(old_state)s AND EXISTS (SELECT FROM sub) RETURNING id), "
        f"{_AUDIT_EVENT_CTES} {_ABORT.format('')}")

    async def fast_transition_terminal(self, call: _Call, customer_id: str, terminal_id: str,
                                       action: str, etag: str) -> bytes | None:
        """Provision, activate, suspend (a decommission changes the count: not here)."""
        if action == "decommission":
            return None
        audience = domain.write_audience(call.principal)
        params = {"k_tenant": call.principal.tenant, "k_request_id": call.request_id,
                  "terminal": terminal_id, "customer": customer_id}
        known = self._terminals.get(terminal_id)
        if known is not None and known[0]["customer_id"] == customer_id:
            # As this replica last wrote it; the write below checks it still is.
            before, c_tenant, c_partner = known
        else:
            row = await self.fast_reads.fetchone(self._FAST_TRANSITION_READ, params)
            (key_print, response, sub_id, serial, lat, lon, alt, state, created, updated,
             version, c_tenant, c_partner) = row
            if key_print is not None:
                return call.replay(key_print, response)
            if state is None:
                return None
            before = dict(id=terminal_id, customer_id=customer_id, subscription_id=sub_id,
                          serial_number=serial, latitude_deg=lat, longitude_deg=lon,
                          altitude_m=alt, state=state, create_time=_iso_naive(created),
                          update_time=_iso_naive(updated), version=version)
        if not domain.admits(audience, c_tenant, c_partner):
            return None
        state, version = before["state"], before["version"]
        if etag and etag != etag_of(version):
            return None
        try:
            new_state = domain.terminal_next(state, action, terminal_name(customer_id,
                                                                          terminal_id))
        except DomainError:
            return None
        after = {**before, "state": new_state, "version": version + 1,
                 "update_time": iso(call.now)}
        answer = call.encode(after)
        params.update(call.key_params(answer))
        params.update(
            subscription=before["subscription_id"],
            need_state=domain.SUBSCRIBED if action == "activate" else "",
            state=new_state, new_version=version + 1, version=version, old_state=state,
            resource=terminal_name(customer_id, terminal_id), action=f"terminal.{action}",
            before=_json(before), after=_json(after), event_type="TERMINAL_STATE_CHANGED",
            c_tenant=c_tenant, c_partner=c_partner)
        row = await self._fast_write(call, self._FAST_TRANSITION, params, answer)
        if isinstance(row, tuple):
            self._known_terminal(after, c_tenant, c_partner)
            return answer
        self._terminals.pop(terminal_id, None)  # declined: read it next time
        return row

    async def get_terminal(self, audience: Audience, customer_id: str, terminal_id: str) -> dict:
        async with self.sessions() as session:
            await self._customer(session, customer_id, audience)
            row = (await session.execute(select(TerminalRow).where(
                TerminalRow.id == terminal_id, TerminalRow.customer_id == customer_id))
            ).scalar_one_or_none()
        if row is None:
            name = terminal_name(customer_id, terminal_id)
            raise NotFound(f"{name} does not exist", reason="TERMINAL_NOT_FOUND",
                           metadata={"resource": name})
        return terminal_dict(row)

    async def list_terminals(self, audience: Audience, customer_id: str, after: str | None,
                             limit: int):
        async with self.sessions() as session:
            await self._customer(session, customer_id, audience)
        rows, last = await self._page(
            select(TerminalRow).where(TerminalRow.customer_id == customer_id),
            TerminalRow.id, after, limit)
        return [terminal_dict(r) for r in rows], last

    async def transition_terminal(self, tx: Tx, customer_id: str, terminal_id: str,
                                  action: str, etag: str) -> dict:
        """One statement reads and locks the terminal, its subscription (lock order:
        subscription, then terminal, as create and cancel take them) and its customer; the
        updates go out with the audit record and the event (`_flush`)."""
        audience = domain.write_audience(tx.principal)
        name = terminal_name(customer_id, terminal_id)
        query = (select(_T, _S.c.state.label("s_state"), _C.c.tenant.label("c_tenant"),
                        _C.c.partner_id.label("c_partner"))
                 .join_from(_T, _S, _S.c.id == _T.c.subscription_id)
                 .join(_C, _C.c.id == _T.c.customer_id)
                 .where(_T.c.id == terminal_id, _T.c.customer_id == customer_id))
        if not self.is_sqlite:
            # A change of the terminal count needs the subscription exclusively; any other
            # transition only needs it unchanged until commit (suspending it waits).
            query = query.suffix_with(
                "FOR UPDATE OF subscriptions, terminals" if action == "decommission" else
                "FOR SHARE OF subscriptions FOR UPDATE OF terminals")
        found = (await tx.session.execute(query)).first()
        if found is None or not domain.admits(audience, found.c_tenant, found.c_partner):
            await self._customer(tx.session, customer_id, audience)  # NOT_FOUND if unseen
            raise NotFound(f"{name} does not exist", reason="TERMINAL_NOT_FOUND",
                           metadata={"resource": name})
        row = found._mapping
        check_etag(etag, row["version"], name)
        new_state = domain.terminal_next(row["state"], action, name)
        if action == "activate" and found.s_state != domain.SUBSCRIBED:
            sname = subscription_name(customer_id, row["subscription_id"])
            raise FailedPrecondition(
                f"cannot activate {name}: its subscription {sname} is {found.s_state}",
                reason="SUBSCRIPTION_NOT_ACTIVE",
                metadata={"resource": sname, "current_state": found.s_state})
        before = {c.key: (iso(row[c.key]) if isinstance(row[c.key], datetime) else row[c.key])
                  for c in _T.columns}
        if domain.counts_against_quantity(row["state"]) and not domain.counts_against_quantity(
                new_state):
            tx.writes.append(("terminal_count", {"delta": -1, "id": row["subscription_id"]}))
        after = {**before, "state": new_state, "version": row["version"] + 1,
                 "update_time": iso(tx.now)}
        tx.writes.append(("terminal", {"state": new_state, "version": row["version"] + 1,
                                       "update_time": tx.now, "id": terminal_id}))
        return self._terminal_change(tx, _Owner(customer_id, found.c_tenant, found.c_partner),
                                     after, f"terminal.{action}", before)

    # --- entitlements ---------------------------------------------------------------------

    #: Customer, terminal and subscription by primary key; no row: no such customer.
    _ENTITLEMENT_SQL = (
        "SELECT t.state, s.state, s.bandwidth_mbps, s.priority_class, s.regions, s.id, "
        "s.min_quantity, s.max_quantity, c.tenant, t.latitude_deg, t.longitude_deg, "
        "t.altitude_m FROM customers c "
        "LEFT JOIN terminals t ON t.id = {terminal} AND t.customer_id = c.id "
        "LEFT JOIN subscriptions s ON s.id = t.subscription_id WHERE c.id = {customer}")
    _ENTITLEMENT = text(_ENTITLEMENT_SQL.format(terminal=":terminal", customer=":customer"))

    #: The batched form: one row per check, in the checks' order (PostgreSQL).
    _ENTITLEMENTS_SQL = (
        "SELECT c.id IS NOT NULL, t.state, s.state, s.bandwidth_mbps, s.priority_class, "
        "s.regions, s.id, s.min_quantity, s.max_quantity, c.tenant, t.latitude_deg, "
        "t.longitude_deg, t.altitude_m "
        "FROM unnest(%(customers)s::text[], %(terminals)s::text[]) WITH ORDINALITY "
        "AS q(customer, terminal, n) "
        "LEFT JOIN customers c ON c.id = q.customer "
        "LEFT JOIN terminals t ON t.id = q.terminal AND t.customer_id = c.id "
        "LEFT JOIN subscriptions s ON s.id = t.subscription_id ORDER BY q.n")

    async def check_entitlement(self, customer_id: str, terminal_id: str, bandwidth: float,
                                region: str) -> domain.Entitlement:
        """One indexed query (primary keys of customers, terminals, subscriptions) on an
        autocommit connection (PostgreSQL: a prepared statement, no BEGIN/ROLLBACK); no cache,
        so a change committed by any replica shows in the next answer."""
        if self.fast_reads is not None:
            row = await self.fast_reads.fetchone(
                self._ENTITLEMENT_SQL.format(terminal="%(terminal)s", customer="%(customer)s"),
                {"terminal": terminal_id, "customer": customer_id})
        else:
            async with self.engine.connect() as connection:
                row = (await connection.execute(
                    self._ENTITLEMENT, {"terminal": terminal_id, "customer": customer_id})
                ).first()
        return _entitlement(row, customer_id, bandwidth, region)

    async def check_entitlements(self, checks: Sequence[tuple[str, str, float, str]]
                                 ) -> list[domain.Entitlement]:
        """`check_entitlement` for each (customer id, terminal id, bandwidth, region), as of
        one moment: on PostgreSQL one statement for the whole batch (so the batch costs
        about one check's round trip), elsewhere one connection for all of them."""
        if not checks:
            return []
        if self.fast_reads is not None:
            rows = await self.fast_reads.fetchall(self._ENTITLEMENTS_SQL, {
                "customers": [c[0] for c in checks], "terminals": [c[1] for c in checks]})
            return [_entitlement(row[1:] if row[0] else None, customer, bandwidth, region)
                    for row, (customer, _, bandwidth, region) in zip(rows, checks, strict=True)]
        answers = []
        async with self.engine.connect() as connection:
            for customer, terminal, bandwidth, region in checks:
                row = (await connection.execute(
                    self._ENTITLEMENT, {"terminal": terminal, "customer": customer})).first()
                answers.append(_entitlement(row, customer, bandwidth, region))
        return answers

    # --- events and audit -----------------------------------------------------------------

    async def read_events(self, audience: Audience, after: int, limit: int,
                          types: frozenset[str]) -> list[dict]:
        await self.publish_events()
        query = select(EventRow).where(
            EventRow.position > after,
            self._audience_filter(audience, EventRow.tenant, EventRow.partner_id))
        if types:
            query = query.where(EventRow.type.in_(sorted(types)))
        async with self.sessions() as session:
            rows = (await session.execute(query.order_by(EventRow.position).limit(limit))
                    ).scalars()
            return [event_dict(r) for r in rows]

    async def list_audit(self, resource: str, after: int | None, limit: int):
        rows, last = await self._page(select(AuditRow).where(AuditRow.resource == resource),
                                      AuditRow.id, after, limit)
        return [audit_dict(r) for r in rows], last

    # --- housekeeping ---------------------------------------------------------------------

    async def sweep(self) -> dict[str, int]:
        """Lapse subscriptions whose activation window closed; purge old idempotency keys."""
        now = self.clock()
        async with self.sessions() as session:
            due = list((await session.execute(select(SubscriptionRow.id).where(
                SubscriptionRow.state == domain.PENDING,
                SubscriptionRow.activation_deadline < now).limit(500))).scalars())
        lapsed = 0
        for sub_id in due:
            async with self.sessions() as session, session.begin():
                tx = Tx(session, SYSTEM, "", self.clock())
                row = await self._locked(session, SubscriptionRow, and_(
                    SubscriptionRow.id == sub_id, SubscriptionRow.state == domain.PENDING))
                if row is None or row.activation_deadline >= tx.now:
                    continue
                customer = await session.get(CustomerRow, row.customer_id)
                before = subscription_dict(row)
                await self._decommission_all(tx, customer, row)
                self._set_state(tx, row, domain.subscription_next(
                    row.state, "lapse", subscription_name(row.customer_id, row.id)),
                    "activation window lapsed")
                self._sub_event(tx, "SUBSCRIPTION_UNSUBSCRIBED", customer, row,
                                "subscription.lapse", before)
                await self._flush(tx)
                lapsed += 1
        async with self.sessions() as session, session.begin():
            purged = (await session.execute(delete(IdempotencyRow).where(
                IdempotencyRow.create_time < now - domain.IDEMPOTENCY_RETENTION))).rowcount
        if lapsed:
            self.notify_events()
        return {"lapsed": lapsed, "purged_keys": max(purged or 0, 0)}

    async def count(self, model) -> int:
        async with self.sessions() as session:
            return await session.scalar(select(func.count()).select_from(model))
