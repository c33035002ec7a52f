"""Run a service's own Alembic history when it starts.

Each service keeps its history in `services/<name>/migrations/` (env.py calls
`run_env(metadata)`), with its own version table, `alembic_version`, inside its own schema
(PostgreSQL) or its own file (SQLite). On PostgreSQL the schema is created if missing and the
whole upgrade runs in one transaction under an advisory lock, so two replicas starting at
once migrate exactly once.

Revisions are written by hand in `versions/` (see any service's first revision).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import StoreLocation


def _config(script_location: Path, connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    return config


#: Alembic's `op` and `context` are process-wide proxies, so two histories must not run at
#: once in one process (the supervisor starts four services together).
_one_at_a_time = asyncio.Lock()


async def upgrade(engine: AsyncEngine, location: StoreLocation, script_location: Path,
                  revision: str = "head") -> None:
    """Bring the service's tables to `revision` (default: the newest)."""
    async with _one_at_a_time, engine.connect() as connection:
        if not location.is_sqlite:
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"skybridge-migrate:{location.schema}"},
            )
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{location.schema}"'))
        await connection.run_sync(
            lambda sync: command.upgrade(_config(script_location, sync), revision))
        await connection.commit()


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's `migrations/env.py` (online mode only)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through shared.migrations.upgrade(), "
                           "which passes the connection")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()
