"""Each service's tables as its code declares them are the tables its migrations build.

The schema is written twice (SQLAlchemy tables for the code, hand-written Alembic revisions
for the database); Alembic's `compare_metadata` between a database migrated to head and the
declared metadata must find nothing, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared import db, migrations

ROOT = Path(__file__).resolve().parents[2]

#: service -> (module, attribute) of the metadata its migrations/env.py hands Alembic.
#: (The link broker's contact tables join its metadata from `contact_store`, which its
#: env.py imports as well.)
METADATA = {
    "orbit": ("services.orbit.store", "Base"),
    "provisioning": ("services.provisioning.store.tables", "Base"),
    "linkbroker": ("services.linkbroker.tables", "metadata"),
    "threat": ("services.threat.store", "metadata"),
}


def declared(service: str):
    importlib.import_module("services.linkbroker.contact_store")
    module, name = METADATA[service]
    value = getattr(importlib.import_module(module), name)
    return getattr(value, "metadata", value)


def test_every_service_with_migrations_is_checked():
    with_history = {p.parent.parent.name for p in ROOT.glob("services/*/migrations/env.py")}
    assert with_history == set(METADATA)
    for service in METADATA:  # the metadata named here is the one env.py hands Alembic
        env = (ROOT / "services" / service / "migrations" / "env.py").read_text()
        module, name = METADATA[service]
        assert f"from {module} import {name}" in env


@pytest.mark.parametrize("service", sorted(METADATA))
async def test_migrations_build_the_declared_tables(service, settings):
    location = db.locate(settings.database_url, service, settings.db_schema_prefix)
    engine = db.create_engine(location)
    try:
        await migrations.upgrade(engine, location,
                                 ROOT / "services" / service / "migrations")
        async with engine.connect() as connection:
            diff = await connection.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}),
                declared(service)))
    finally:
        await engine.dispose()
    assert diff == [], f"{service}: the migrations and the tables disagree: {diff}"
