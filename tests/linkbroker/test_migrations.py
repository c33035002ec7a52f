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


START, END = 1_765_000_600.000001, 1_765_001_200.654321


async def test_0005_keeps_every_contact_time(settings):
    """A contact written at 0004 reads back at head as the same instants; its durations
    stay float seconds and the page index serves the new column."""
    from services.linkbroker import contact_store

    location = db.locate(settings.database_url, "linkbroker", settings.db_schema_prefix)
    engine = db.create_engine(location)
    try:
        await migrations.upgrade(engine, location, HISTORY, "0004")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO ground_stations VALUES ('gs-one', 'One', 1.0, 2.0, 3.0, 2, 5.0, "
                "'p', 'westeurope', :c)"), {"c": CREATED})
            await conn.execute(sa.text(
                "INSERT INTO contact_profiles VALUES ('t', 'prof', 'P', 10.0, 300.0, 120.0, :c)"),
                {"c": CREATED})
            await conn.execute(sa.text(
                "INSERT INTO contacts VALUES ('c1', 't', 25544, 'gs-one', 'prof', 1, :s, :e, "
                "45.0, 10.0, 200.0, 10.0, 120.0, 'SCHEDULED', '', :c, :u)"),
                {"s": START, "e": END, "c": CREATED, "u": UPDATED})
            await conn.execute(sa.text(
                "INSERT INTO contact_requests VALUES ('t', 'r-1', 'ReserveContact', 'f', NULL, "
                ":c)"), {"c": CREATED})
        await migrations.upgrade(engine, location, HISTORY)
        at = lambda s: datetime.fromtimestamp(s, UTC)  # noqa: E731
        async with engine.connect() as conn:
            station = (await conn.execute(sa.select(contact_store.ground_stations))).one()
            profile = (await conn.execute(sa.select(contact_store.contact_profiles))).one()
            contact = (await conn.execute(sa.select(contact_store.contacts))).one()
            request = (await conn.execute(sa.select(contact_store.contact_requests))).one()
            page = (await conn.execute(sa.select(contact_store.contacts.c.id).where(
                contact_store.contacts.c.tenant == "t",
                contact_store.contacts.c.start_time == at(START)))).all()
    finally:
        await engine.dispose()
    assert station.create_time == at(CREATED) and profile.create_time == at(CREATED)
    assert (profile.min_duration_s, profile.guard_gap_s) == (300.0, 120.0)
    assert (contact.start_time, contact.end_time) == (at(START), at(END))
    assert (contact.create_time, contact.update_time) == (at(CREATED), at(UPDATED))
    assert contact.start_time.timestamp() == START and contact.end_time.timestamp() == END
    assert contact.guard_gap_s == 120.0 and contact.antenna == 1
    assert request.create_time == at(CREATED)
    assert [row.id for row in page] == ["c1"]
    assert (at(START).microsecond, at(END).microsecond) == (1, 654321)
