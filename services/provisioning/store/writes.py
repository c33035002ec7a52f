"""The writes a transaction ends with, as few statements as possible: the updates of rows
it locked, the answer for its idempotency key, its audit records and its events. On
PostgreSQL they go out as ONE statement of data-modifying CTEs (in order, so the events are
inserted last, after every row lock of the change); on SQLite one statement each."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import LargeBinary, TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.columns import UTCDateTime

#: kind -> (SQL with `{i}` after each parameter name, the parameters that need a type).
WRITES = {
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
def statement(kinds: tuple[str, ...], first: int = 0) -> TextClause:
    """One statement for these writes; built once per shape, so SQLAlchemy compiles it once."""
    parts, typed = [], []
    for i, kind in enumerate(kinds, first):
        sql, types = WRITES[kind]
        parts.append(sql.format(i=i))
        typed.extend(bindparam(f"{name}{i}", type_=_TYPES[name]) for name in types)
    if len(parts) == 1:
        return text(parts[0]).bindparams(*typed)
    ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts))
    return text(f"WITH {ctes} SELECT 1").bindparams(*typed)


async def write(session: AsyncSession, writes: list[tuple[str, dict[str, Any]]], *,
                one_statement: bool) -> None:
    """Send `writes` (kind in `WRITES`, parameters) after the ORM's pending changes."""
    await session.flush()
    if not writes:
        return
    if not one_statement:
        for i, (kind, values) in enumerate(writes):
            await session.execute(statement((kind,), i), {
                f"{name}{i}": value for name, value in values.items()})
        return
    kinds = tuple(kind for kind, _ in writes)
    await session.execute(statement(kinds), {
        f"{name}{i}": value for i, (_, values) in enumerate(writes)
        for name, value in values.items()})
