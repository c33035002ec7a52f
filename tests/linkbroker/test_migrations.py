"""Revision 0004 turns the link tables' float seconds into UTC DateTime: rows stored before
it read back as the same instants (whole microseconds), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from services.linkbroker import tables
from shared import db, migrations

HISTORY = Path(__file__).resolve().parents[2] / "services" / "linkbroker" / "migrations"
CREATED, UPDATED = 1_765_000_000.123456, 1_765_000_123.5


async def test_0004_keeps_every_stored_time(settings):
    location = db.locate(settings.database_url, "linkbroker", settings.db_schema_prefix)
    engine = db.create_engine(location)
    try:
        await migrations.upgrade(engine, location, HISTORY, "0003")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO gateways VALUES ('gw-one', 'One', 1.0, 2.0, 3.0, 4, 'westeurope', "
                "'ACTIVE', :c, :u)"), {"c": CREATED, "u": UPDATED})
            await conn.execute(sa.text(
                "INSERT INTO leases VALUES ('ab', 't', 'c', 'term', 's', 'westeurope', 10.0, "
                "'BEST_EFFORT', 1, 2, 0.0, 0.0, 0.0, 'ACTIVE', '', :p, 1, :c, :u)"),
                {"p": b"{}", "c": CREATED, "u": UPDATED})
            await conn.execute(sa.text(
                "INSERT INTO lease_events (lease_id, kind, state, reason, create_s) VALUES "
                "('ab', 'CREATED', 'ACTIVE', '', :c)"), {"c": CREATED})
            await conn.execute(sa.text(
                "INSERT INTO requests VALUES ('t', 'r-1', 'RequestLink', 'f', NULL, :c)"),
                {"c": CREATED})
            await conn.execute(sa.text("INSERT INTO feed_cursors VALUES ('feed', 'x', :u)"),
                               {"u": UPDATED})
        await migrations.upgrade(engine, location, HISTORY)
        created = datetime.fromtimestamp(CREATED, UTC)
        updated = datetime.fromtimestamp(UPDATED, UTC)
        async with engine.connect() as conn:
            gateway = (await conn.execute(sa.select(tables.gateways))).one()
            lease = (await conn.execute(sa.select(tables.leases))).one()
            event = (await conn.execute(sa.select(tables.lease_events))).one()
            request = (await conn.execute(sa.select(tables.requests))).one()
            cursor = (await conn.execute(sa.select(tables.feed_cursors))).one()
            # The index over the new column serves the same page query.
            page = (await conn.execute(sa.select(tables.leases.c.id).where(
                tables.leases.c.tenant == "t", tables.leases.c.create_time == created))).all()
    finally:
        await engine.dispose()
    assert (gateway.create_time, gateway.update_time) == (created, updated)
    assert (lease.create_time, lease.update_time) == (created, updated)
    assert lease.state == "ACTIVE" and lease.plan == b"{}"
    assert event.create_time == created and request.create_time == created
    assert cursor.update_time == updated and cursor.cursor == "x"
    assert [row.id for row in page] == ["ab"]
    assert created.microsecond == 123456
