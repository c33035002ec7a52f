"""Running suite code in its own process for a test: a free port, and the environment that
points a `python -m ...` process at the test's database, schemas and keys."""

from __future__ import annotations

import os
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(settings, **extra) -> dict[str, str]:
    """This process's environment with the test's settings (`extra`: more variables)."""
    env = dict(os.environ)
    env.update({
        "SKYBRIDGE_DATABASE_URL": settings.database_url,
        "SKYBRIDGE_DB_SCHEMA_PREFIX": settings.db_schema_prefix,
        "SKYBRIDGE_JWT_PUBLIC_KEY": str(settings.jwt_public_key_path),
        "SKYBRIDGE_JWT_PRIVATE_KEY": str(settings.jwt_private_key_path),
        "SKYBRIDGE_DEV_KEYS": "false",
        "SKYBRIDGE_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    })
    env.update({key: str(value) for key, value in extra.items()})
    return env
