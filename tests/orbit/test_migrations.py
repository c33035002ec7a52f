"""Orbit's migrations keep the data they convert, on SQLite and PostgreSQL: a catalog
written under revision 0002 (times as integer microseconds) reads back after the upgrade to
head with the same instants, to the microsecond, as aware UTC datetimes; and a downgrade
gives the integers back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from services.orbit.store import Catalog
from shared import db, migrations

HISTORY = Path(__file__).resolve().parents[2] / "services" / "orbit" / "migrations"

CREATED = datetime(2026, 5, 12, 8, 30, 15, 123456, tzinfo=UTC)
UPDATED = datetime(2026, 6, 1, 23, 59, 59, 999999, tzinfo=UTC)
SET_MADE = datetime(2026, 5, 12, 8, 30, 15, 654321, tzinfo=UTC)


def micros(when: datetime) -> int:
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


async def test_upgrade_converts_integer_microseconds_to_utc_datetimes(settings):
    location = db.locate(settings.database_url, "orbit", settings.db_schema_prefix)
    engine = db.create_engine(location)
    try:
        await migrations.upgrade(engine, location, HISTORY, "0002")
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO satellites (catalog_number, object_name, object_name_lower, "
                "intl_designator, create_us, update_us) VALUES (25544, 'ISS (ZARYA)', "
                "'iss (zarya)', '98067A', :c, :u)"), {"c": micros(CREATED), "u": micros(UPDATED)})
            await conn.execute(text(
                "INSERT INTO element_sets (catalog_number, epoch_us, epoch_jd, epoch_fr, "
                "mean_motion, eccentricity, inclination, raan, arg_perigee, mean_anomaly, "
                "bstar, ndot, nddot, element_set_number, rev_at_epoch, classification, "
                "ephemeris_type, source_group, create_us) VALUES (25544, :e, 2458826.5, "
                "0.69339541, 15.501, 0.0007417, 51.6439, 211.2001, 17.6667, 85.6398, "
                "3.8792e-05, 1e-05, 0.0, 999, 20248, 'U', 0, 'stations', :c)"),
                {"e": micros(CREATED), "c": micros(SET_MADE)})
            await conn.execute(text(
                "INSERT INTO groups (group_id, display_name, kind, create_us, update_us) "
                "VALUES ('stations', 'Stations', 'import', :c, :u)"),
                {"c": micros(CREATED), "u": micros(UPDATED)})
            await conn.execute(text(
                "INSERT INTO group_members (group_id, catalog_number) VALUES ('stations', 25544)"))
        await migrations.upgrade(engine, location, HISTORY)
        catalog = Catalog(db.session_factory(engine))
        sat = await catalog.get_satellite(25544)
        assert sat is not None and sat.element_set is not None
        assert (sat.create_time, sat.update_time) == (CREATED, UPDATED)
        assert sat.element_set.create_time == SET_MADE
        assert sat.element_set.elements.epoch == CREATED  # epoch_us is kept as it was
        assert sat.groups == ("stations",)
        group = await catalog.get_group("stations")
        assert group is not None
        assert (group.create_time, group.update_time, group.satellite_count) == (
            CREATED, UPDATED, 1)
    finally:
        await engine.dispose()


async def test_downgrade_restores_integer_microseconds(settings):
    from alembic import command

    location = db.locate(settings.database_url, "orbit", settings.db_schema_prefix)
    engine = db.create_engine(location)
    try:
        await migrations.upgrade(engine, location, HISTORY)
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO groups (group_id, display_name, kind, create_time, update_time) "
                "VALUES ('stations', 'Stations', 'import', :c, :u)"),
                {"c": CREATED.replace(tzinfo=None), "u": UPDATED.replace(tzinfo=None)})
        async with engine.connect() as conn:
            await conn.run_sync(lambda sync: command.downgrade(
                migrations._config(HISTORY, sync), "0002"))
            await conn.commit()
        async with engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT create_us, update_us FROM groups WHERE group_id = 'stations'"))).one()
        assert tuple(row) == (micros(CREATED), micros(UPDATED))
    finally:
        await engine.dispose()
