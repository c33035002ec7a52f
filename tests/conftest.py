"""Fixtures shared by the whole suite.

`backend` runs a test on SQLite and on PostgreSQL. PostgreSQL is found at
`SKYBRIDGE_TEST_PG_URL` (default: 127.0.0.1:5432, database `test`, trust auth); when it is
unreachable its tests are skipped with the reason, unless `SKYBRIDGE_REQUIRE_PG=1` (CI),
which turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from shared.auth import TokenMinter, ensure_dev_keys
from shared.config import Settings

# Developers explore new random examples on every run; CI replays a fixed set, so that a
# landing never fails on a counterexample nobody has seen yet (failures print their blob).
# No example has a deadline: how long one takes says how loaded the machine is, not whether
# the code is right (hypothesis' default of 200 ms fails a slow example as a flaky one).
hypothesis_settings.register_profile("skybridge", deadline=None)
hypothesis_settings.register_profile("ci", parent=hypothesis_settings.get_profile("skybridge"),
                                     derandomize=True, print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "skybridge")

PG_URL = os.environ.get("SKYBRIDGE_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("SKYBRIDGE_REQUIRE_PG", "") == "1"
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

_pg_state: dict[str, str | None] = {}


def postgres_unavailable() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per run)."""
    if "reason" not in _pg_state:
        import psycopg

        dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        try:
            with psycopg.connect(dsn, connect_timeout=3) as connection:
                connection.execute("SELECT 1")
            _pg_state["reason"] = None
        except Exception as error:  # noqa: BLE001 - any failure means unavailable
            _pg_state["reason"] = f"PostgreSQL unreachable at {PG_URL}: {error}".splitlines()[0]
    return _pg_state["reason"]


def drop_schemas(prefix: str) -> None:
    import psycopg

    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as connection:
        # A call cancelled by a test's drain(0) can leave a connection behind until the
        # garbage collector closes it; it must not block the drop.
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
            (f"skybridge:{prefix}%",))
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix + "%",)
        ).fetchall()
        for (name,) in rows:
            connection.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    if request.param == "postgres":
        reason = postgres_unavailable()
        if reason is not None:
            if REQUIRE_PG:
                pytest.fail(f"SKYBRIDGE_REQUIRE_PG=1 but {reason}")
            pytest.skip(reason)
    return request.param


@pytest.fixture
def settings(tmp_path, backend) -> Settings:
    """Settings isolated to this test: its own keys, SQLite file or PostgreSQL schemas."""
    keys = tmp_path / "keys"
    private, public = keys / "jwt.pem", keys / "jwt.pub.pem"
    ensure_dev_keys(private, public)
    base = Settings(
        jwt_private_key_path=private,
        jwt_public_key_path=public,
        dev_keys=False,
        grace_seconds=5.0,
        drain_delay_seconds=0.0,  # in-process servers: no client to wait for
        log_format="text",
    )
    if backend == "sqlite":
        yield replace(base, database_url=f"sqlite+aiosqlite:///{tmp_path / 'skybridge.db'}")
        return
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield replace(base, database_url=PG_URL, db_schema_prefix=prefix)
    drop_schemas(prefix)


@pytest.fixture
def minter(settings) -> TokenMinter:
    return TokenMinter(settings.jwt_private_key_path.read_bytes(),
                       issuer=settings.jwt_issuer, audience=settings.jwt_audience)


def bearer(minter: TokenMinter, *scopes: str, tenant: str = "contoso",
           subject: str = "tester") -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a fresh token."""
    return (("authorization", f"Bearer {minter.mint(subject, scopes, tenant)}"),)


def shared_data(name: str) -> Path:
    """A file from ../shared/data, or a clean skip when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present (optional benchmark data)")
    return path
