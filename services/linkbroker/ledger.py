"""The capacity ledger: reserve and release (slot, resource) rows in one statement.

Reserving is one upsert of every (slot, resource) a plan holds, sorted by (slot,
resource) so that two writers lock rows in the same order:

    INSERT ... ON CONFLICT (slot, resource) DO UPDATE SET used_mbps = used_mbps + excluded

The table's CHECK constraint (``used_mbps <= capacity_mbps``) makes the database refuse an
oversubscription whichever replica attempts it; the statement then fails as a whole and the
caller's savepoint rolls back, so nothing is half-held. :func:`find_full` then names the
first (slot, resource) that had no room. PostgreSQL gets the rows as three arrays
(``unnest``), SQLite as one JSON text (``json_each``): one round trip either way.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.linkbroker.tables import CAPACITY_EPSILON_MBPS

__all__ = ["PG_RESERVE_SQL", "Oversubscribed", "find_full", "release", "reserve", "usage"]


class Oversubscribed(Exception):
    """No room for ``bandwidth_mbps`` on ``resource`` in ``slot``."""

    def __init__(self, slot: int, resource: str, used_mbps: float, capacity_mbps: float):
        super().__init__(f"{resource} is full in slot {slot}")
        self.slot, self.resource = slot, resource
        self.used_mbps, self.capacity_mbps = used_mbps, capacity_mbps


PG_RESERVE_SQL = (
    "INSERT INTO capacity_usage (slot, resource, used_mbps, capacity_mbps) "
    "SELECT s, r, :bw, c FROM unnest(CAST(:slots AS bigint[]), CAST(:keys AS text[]), "
    "CAST(:caps AS double precision[])) AS t(s, r, c) ORDER BY s, r "
    "ON CONFLICT (slot, resource) DO UPDATE SET "
    "used_mbps = capacity_usage.used_mbps + excluded.used_mbps, "
    "capacity_mbps = excluded.capacity_mbps")
_PG_RESERVE = sa.text(PG_RESERVE_SQL)
_SQLITE_RESERVE = sa.text(
    "INSERT INTO capacity_usage (slot, resource, used_mbps, capacity_mbps) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), :bw, "
    "json_extract(value, '$[2]') FROM json_each(:rows) WHERE true "
    "ON CONFLICT (slot, resource) DO UPDATE SET "
    "used_mbps = capacity_usage.used_mbps + excluded.used_mbps, "
    "capacity_mbps = excluded.capacity_mbps")
_PG_RELEASE = sa.text(
    "UPDATE capacity_usage u SET used_mbps = GREATEST(u.used_mbps - :bw, 0) "
    "FROM unnest(CAST(:slots AS bigint[]), CAST(:keys AS text[])) AS t(s, r) "
    "WHERE u.slot = t.s AND u.resource = t.r")
_SQLITE_RELEASE = sa.text(
    "UPDATE capacity_usage SET used_mbps = MAX(used_mbps - :bw, 0) "
    "WHERE (slot, resource) IN (SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]') FROM json_each(:rows))")
_PG_USAGE = sa.text(
    "SELECT u.slot, u.resource, u.used_mbps, u.capacity_mbps FROM capacity_usage u "
    "JOIN unnest(CAST(:slots AS bigint[]), CAST(:keys AS text[])) AS t(s, r) "
    "ON u.slot = t.s AND u.resource = t.r")
_SQLITE_USAGE = sa.text(
    "SELECT slot, resource, used_mbps, capacity_mbps FROM capacity_usage "
    "WHERE (slot, resource) IN (SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]') FROM json_each(:rows))")


def _pg(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


async def reserve(conn: AsyncConnection, bandwidth_mbps: float, slots: list[int],
                  keys: list[str], caps: list[float]) -> None:
    """Add ``bandwidth_mbps`` to every (slot, key); raises :class:`Oversubscribed` (after
    rolling back its own savepoint) when any row would go over its capacity."""
    if not slots:
        return
    savepoint = await conn.begin_nested()
    try:
        if _pg(conn):
            await conn.execute(_PG_RESERVE, {"bw": bandwidth_mbps, "slots": slots,
                                             "keys": keys, "caps": caps})
        else:
            rows = json.dumps([[s, k, c] for s, k, c in zip(slots, keys, caps, strict=True)])
            await conn.execute(_SQLITE_RESERVE, {"bw": bandwidth_mbps, "rows": rows})
    except sa.exc.IntegrityError:
        await savepoint.rollback()
        raise await find_full(conn, bandwidth_mbps, slots, keys, caps) from None
    await savepoint.commit()


async def usage(conn: AsyncConnection, slots: list[int], keys: list[str]
                ) -> dict[tuple[int, str], tuple[float, float]]:
    """(slot, key) -> (used, capacity) for the rows that exist."""
    if _pg(conn):
        result = await conn.execute(_PG_USAGE, {"slots": slots, "keys": keys})
    else:
        result = await conn.execute(_SQLITE_USAGE, {"rows": json.dumps(
            [[s, k] for s, k in zip(slots, keys, strict=True)])})
    return {(int(s), r): (float(u), float(c)) for s, r, u, c in result}


async def find_full(conn: AsyncConnection, bandwidth_mbps: float, slots: list[int],
                    keys: list[str], caps: list[float]) -> Oversubscribed:
    """The first (slot, key) without room for ``bandwidth_mbps``."""
    held = await usage(conn, slots, keys)
    for s, k, c in zip(slots, keys, caps, strict=True):
        used, cap = held.get((s, k), (0.0, c))
        cap = min(cap, c)
        if used + bandwidth_mbps > cap + CAPACITY_EPSILON_MBPS:
            return Oversubscribed(s, k, used, cap)
    # A concurrent release made room between the failure and this read: report the
    # fullest row, the caller retries.
    s, k = max(held, key=lambda x: held[x][0] / max(held[x][1], 1e-9), default=(slots[0],
                                                                                 keys[0]))
    used, cap = held.get((s, k), (0.0, caps[0]))
    return Oversubscribed(s, k, used, cap)


async def release(conn: AsyncConnection, bandwidth_mbps: float, slots: list[int],
                  keys: list[str]) -> None:
    """Take ``bandwidth_mbps`` off every (slot, key) (never below zero)."""
    if not slots:
        return
    if _pg(conn):
        await conn.execute(_PG_RELEASE, {"bw": bandwidth_mbps, "slots": slots, "keys": keys})
    else:
        await conn.execute(_SQLITE_RELEASE, {"bw": bandwidth_mbps, "rows": json.dumps(
            [[s, k] for s, k in zip(slots, keys, strict=True)])})
