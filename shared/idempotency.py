"""Idempotency keys (AIP-155 `request_id`): whose a key is, and claiming one in the database.

Every service follows one contract for a mutating call that carries a `request_id`:

- **A key belongs to the caller's tenant**: the `tenant` claim of the token that makes the
  call (:func:`key_tenant`), whatever resource the call acts on. Every service's key table
  is keyed by (tenant, request_id). An operator acting for a customer (the link broker's
  `linkbroker.operator`, provisioning's `operator`) keys its calls under the operator's own
  tenant, so its retries find its key and replay its answer; the customer's calls with the
  same request_id are the customer's own keys: they never replay the operator's answer nor
  collide with it, and no tenant can read another's answers by guessing its keys. Two
  callers of one tenant (two replicas of an application, two admins) share the tenant's
  keys: a retry from either replays.
- **A retry with the same request_id and body gets the first answer**, sequential or
  concurrent, never INTERNAL or ALREADY_EXISTS, and makes no second effect. The key is
  claimed in the same transaction as the effect, with a unique key on (tenant,
  request_id): of concurrent twins one inserts the key and the rest find it (PostgreSQL
  blocks a conflicting insert on the unique index until the inserting transaction ends;
  SQLite's `BEGIN IMMEDIATE` queues writers) and read back the answer it stored.
- **The same request_id with a different body** (another method, or another request
  fingerprint) is INVALID_ARGUMENT `REQUEST_ID_REUSED` with a BadRequest naming
  `request_id` (:func:`reused`).
- A refused call (an error) stores no key, so fixing the request and retrying with the same
  request_id runs it.
- **One shape of key**: 1 to `MAX_REQUEST_ID` (128) printable characters
  (:func:`request_id_problem`), in every service.

:func:`claim` is the database half for tables with the columns `tenant`, `request_id`,
`method`, `fingerprint` and `response`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.auth import Principal, current_principal
from shared.errors import InvalidArgument

__all__ = ["MAX_REQUEST_ID", "Key", "claim", "fingerprint", "key_tenant", "replayed",
           "request_id_problem", "reused"]

#: The longest request_id of any service (a UUID is 36).
MAX_REQUEST_ID = 128


def request_id_problem(value: str, *, required: bool) -> str | None:
    """What is wrong with a `request_id` (a BadRequest description), or None. An empty
    one is a problem only where the call needs a key (`required`)."""
    if not value:
        return "is required for a mutating call (an idempotency key)" if required else None
    if len(value) > MAX_REQUEST_ID or not value.isprintable():
        return f"must be 1 to {MAX_REQUEST_ID} printable characters"
    return None


def key_tenant(principal: Principal | None = None) -> str:
    """The tenant a request_id belongs to: the caller's (see the module doc)."""
    return (principal or current_principal()).tenant


def fingerprint(method: str, payload: bytes) -> str:
    """What makes two requests under one key the same request: the method and the request
    serialized deterministically with its request_id cleared."""
    return hashlib.sha256(method.encode() + b"\0" + payload).hexdigest()


@dataclass(frozen=True)
class Key:
    """One call's idempotency key and what it must match."""

    tenant: str
    request_id: str
    method: str
    fingerprint: str


def reused(request_id: str, first_method: str | None = None) -> InvalidArgument:
    """The refusal of a request_id already used for a different request."""
    what = f" ({first_method})" if first_method else ""
    return InvalidArgument(
        f"request_id {request_id[:64]!r} was already used for a different request{what}",
        reason="REQUEST_ID_REUSED",
        violations=[("request_id", "was already used with a different request")])


def replayed(row: Any, key: Key) -> Any:
    """`row` (a stored key) when it was made by the same request as `key`; else raises
    REQUEST_ID_REUSED."""
    if row.method != key.method or row.fingerprint != key.fingerprint:
        raise reused(key.request_id, row.method)
    return row


def _dialect(conn: AsyncConnection | AsyncSession) -> str:
    bind = conn.get_bind() if hasattr(conn, "get_bind") else conn
    return bind.dialect.name


async def claim(conn: AsyncConnection | AsyncSession, table: sa.Table, key: Key,
                **values: Any) -> Any | None:
    """Claim `key` in `table` inside the caller's transaction (`conn`: an AsyncConnection
    or AsyncSession): None when this transaction now holds it (do the work, store the
    answer in `response`, commit), else the stored row of the request that holds it, after
    that transaction committed. Raises REQUEST_ID_REUSED when that row is another request.
    `values`: the table's other columns (creation time, a first `response`)."""
    insert = postgresql.insert if _dialect(conn) == "postgresql" else sqlite.insert
    claimed = await conn.execute(
        insert(table).values(tenant=key.tenant, request_id=key.request_id, method=key.method,
                             fingerprint=key.fingerprint, **values)
        .on_conflict_do_nothing().returning(table.c.request_id))
    if claimed.first() is not None:
        return None
    row = (await conn.execute(sa.select(table).where(
        table.c.tenant == key.tenant, table.c.request_id == key.request_id))).one()
    return replayed(row, key)
