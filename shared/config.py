"""Settings from environment variables: the one place the suite reads its environment.

Every variable has a default that runs locally (SQLite under `var/`, loopback ports, a
development signing key). `Settings.from_env()` is called once at start-up by the
supervisor or by `python -m services.<name>`, and the frozen result is passed down.
Service-specific settings (the link broker's capacity assumptions, the threat sensor
model...) are read through the same `EnvReader`, so a bad value always fails at start-up
with the variable's name, never half-way through a request.

OpenTelemetry exporters are configured by the standard `OTEL_*` variables, which the
OpenTelemetry SDK reads itself (see `shared.telemetry`).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The services of the suite, in start order, with their default ports.
SERVICE_PORTS: dict[str, int] = {
    "orbit": 50051,
    "provisioning": 50052,
    "linkbroker": 50053,
    "threat": 50054,
    "gateway": 8080,
}


class ConfigError(ValueError):
    """A variable is set to a value that cannot be used; the message names it."""


class EnvReader:
    """Typed access to an environment mapping, with errors that name the variable."""

    def __init__(self, env: Mapping[str, str] | None = None, prefix: str = "SKYBRIDGE_"):
        self.env = os.environ if env is None else env
        self.prefix = prefix

    def raw(self, name: str) -> str | None:
        value = self.env.get(self.prefix + name)
        return None if value is None or value.strip() == "" else value.strip()

    def str(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    # Inside the class body `str`, `int`, `float`... name the methods above, so the
    # annotations below spell the built-in types `builtins.str` and so on.
    def int(self, name: builtins.str, default: int, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{self.prefix}{name}={value!r} is not an integer") from None
        self._check_range(name, number, minimum, maximum)
        return number

    def float(self, name: builtins.str, default: builtins.float, *,
              minimum: builtins.float | None = None,
              maximum: builtins.float | None = None) -> builtins.float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{self.prefix}{name}={value!r} is not a number") from None
        if number != number:
            raise ConfigError(f"{self.prefix}{name} is NaN")
        self._check_range(name, number, minimum, maximum)
        return number

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{self.prefix}{name}={value!r} is not a boolean (true/false)")

    def list(self, name: builtins.str,
             default: tuple[builtins.str, ...]) -> tuple[builtins.str, ...]:
        value = self.raw(name)
        if value is None:
            return default
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def _check_range(self, name: builtins.str, number: builtins.float,
                     minimum: builtins.float | None, maximum: builtins.float | None) -> None:
        if minimum is not None and number < minimum:
            raise ConfigError(f"{self.prefix}{name}={number} is below the minimum {minimum}")
        if maximum is not None and number > maximum:
            raise ConfigError(f"{self.prefix}{name}={number} is above the maximum {maximum}")


@dataclass(frozen=True)
class Settings:
    """The suite-wide settings. Variables are `SKYBRIDGE_<NAME>`."""

    #: Interface the servers bind (`SKYBRIDGE_HOST`).
    host: str = "127.0.0.1"
    #: Listening port per service (`SKYBRIDGE_<SERVICE>_PORT`).
    ports: Mapping[str, int] = field(default_factory=lambda: dict(SERVICE_PORTS))
    #: Address other services use to reach each service (`SKYBRIDGE_<SERVICE>_TARGET`).
    targets: Mapping[str, str] = field(default_factory=dict)
    #: SQLAlchemy URL (`SKYBRIDGE_DATABASE_URL`). SQLite: each service gets its own file
    #: beside this one (`skybridge-<service>.db`); PostgreSQL: its own schema.
    database_url: str = f"sqlite+aiosqlite:///{ROOT / 'var' / 'skybridge.db'}"
    #: Prefix for PostgreSQL schema names and SQLite files (`SKYBRIDGE_DB_SCHEMA_PREFIX`);
    #: tests use it to isolate runs.
    db_schema_prefix: str = ""
    #: Run each service's Alembic migrations on start (`SKYBRIDGE_MIGRATE_ON_START`).
    migrate_on_start: bool = True
    #: Seed default data on start (`SKYBRIDGE_SEED`).
    seed: bool = True
    #: Ed25519 public key (PEM) that verifies bearer tokens (`SKYBRIDGE_JWT_PUBLIC_KEY`).
    jwt_public_key_path: Path = ROOT / "var" / "keys" / "jwt-ed25519.pub.pem"
    #: Ed25519 private key (PEM) that signs service tokens (`SKYBRIDGE_JWT_PRIVATE_KEY`).
    jwt_private_key_path: Path = ROOT / "var" / "keys" / "jwt-ed25519.pem"
    #: Create a development key pair when none exists (`SKYBRIDGE_DEV_KEYS`).
    dev_keys: bool = True
    #: Token issuer and audience (`SKYBRIDGE_JWT_ISSUER`, `SKYBRIDGE_JWT_AUDIENCE`).
    jwt_issuer: str = "skybridge"
    jwt_audience: str = "skybridge"
    #: Seconds in-flight calls get to finish after SIGTERM (`SKYBRIDGE_GRACE_SECONDS`).
    grace_seconds: float = 10.0
    #: Seconds between health turning NOT_SERVING and refusing new calls, so that clients
    #: that watch health (the suite's channels do) and load balancers stop routing here
    #: first (`SKYBRIDGE_DRAIN_DELAY_SECONDS`).
    drain_delay_seconds: float = 0.25
    #: Streaming calls one caller (subject and tenant) may hold open on one server
    #: (`SKYBRIDGE_MAX_STREAMS_PER_CALLER`); one more is RESOURCE_EXHAUSTED.
    max_streams_per_caller: int = 100
    #: Seconds between probes of the database for health (`SKYBRIDGE_DB_PROBE_SECONDS`); a
    #: call that meets an outage also probes at once. Health is NOT_SERVING while it fails.
    db_probe_seconds: float = 2.0
    #: Upper bound on the deadline of any outgoing call (`SKYBRIDGE_CALL_TIMEOUT_SECONDS`).
    call_timeout_seconds: float = 10.0
    #: Log level and format: json or text (`SKYBRIDGE_LOG_LEVEL`, `SKYBRIDGE_LOG_FORMAT`).
    log_level: str = "INFO"
    log_format: str = "json"
    #: Worker threads for CPU work (propagation, geometry, filtering) (`SKYBRIDGE_CPU_THREADS`).
    cpu_threads: int = 2
    #: The gateway mints development tokens at `POST /dev/tokens`
    #: (`SKYBRIDGE_GATEWAY_DEV_TOKENS`; `make run` sets it; never in production: it needs
    #: `SKYBRIDGE_DEV_KEYS`).
    gateway_dev_tokens: bool = False
    #: The built console the gateway serves at `/` (`SKYBRIDGE_CONSOLE_DIR`).
    console_dir: Path = ROOT / "services" / "gateway" / "console" / "dist"
    #: Services the supervisor starts (`SKYBRIDGE_SERVICES`, comma separated).
    services: tuple[str, ...] = tuple(SERVICE_PORTS)

    def port(self, service: str) -> int:
        return self.ports[service]

    def target(self, service: str) -> str:
        """Where to reach `service`: its explicit target, or loopback on its port."""
        explicit = self.targets.get(service)
        if explicit:
            return explicit
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "[::]") else self.host
        return f"{host}:{self.ports[service]}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        read = EnvReader(env)
        defaults = cls()
        ports = {
            name: read.int(f"{name.upper()}_PORT", port, minimum=0, maximum=65535)
            for name, port in SERVICE_PORTS.items()
        }
        targets = {
            name: read.str(f"{name.upper()}_TARGET", "") for name in SERVICE_PORTS
        }
        log_format = read.str("LOG_FORMAT", defaults.log_format).lower()
        if log_format not in ("json", "text"):
            raise ConfigError(f"SKYBRIDGE_LOG_FORMAT={log_format!r} must be json or text")
        services = read.list("SERVICES", defaults.services)
        unknown = [s for s in services if s not in SERVICE_PORTS]
        if unknown:
            raise ConfigError(
                f"SKYBRIDGE_SERVICES names unknown services {unknown}; "
                f"known: {', '.join(SERVICE_PORTS)}"
            )
        database_url = read.str("DATABASE_URL", defaults.database_url)
        if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+psycopg://")):
            raise ConfigError(
                "SKYBRIDGE_DATABASE_URL must start with sqlite+aiosqlite:// or "
                "postgresql+psycopg://"
            )
        dev_keys = read.bool("DEV_KEYS", defaults.dev_keys)
        gateway_dev_tokens = read.bool("GATEWAY_DEV_TOKENS", defaults.gateway_dev_tokens)
        if gateway_dev_tokens and not dev_keys:
            raise ConfigError(
                "SKYBRIDGE_GATEWAY_DEV_TOKENS=true needs SKYBRIDGE_DEV_KEYS=true: the gateway "
                "mints development tokens only with development keys, never in production"
            )
        return cls(
            host=read.str("HOST", defaults.host),
            ports=ports,
            targets=targets,
            database_url=database_url,
            db_schema_prefix=read.str("DB_SCHEMA_PREFIX", ""),
            migrate_on_start=read.bool("MIGRATE_ON_START", defaults.migrate_on_start),
            seed=read.bool("SEED", defaults.seed),
            jwt_public_key_path=Path(read.str("JWT_PUBLIC_KEY", str(defaults.jwt_public_key_path))),
            jwt_private_key_path=Path(
                read.str("JWT_PRIVATE_KEY", str(defaults.jwt_private_key_path))
            ),
            dev_keys=dev_keys,
            gateway_dev_tokens=gateway_dev_tokens,
            console_dir=Path(read.str("CONSOLE_DIR", str(defaults.console_dir))),
            jwt_issuer=read.str("JWT_ISSUER", defaults.jwt_issuer),
            jwt_audience=read.str("JWT_AUDIENCE", defaults.jwt_audience),
            grace_seconds=read.float("GRACE_SECONDS", defaults.grace_seconds, minimum=0),
            drain_delay_seconds=read.float(
                "DRAIN_DELAY_SECONDS", defaults.drain_delay_seconds, minimum=0
            ),
            call_timeout_seconds=read.float(
                "CALL_TIMEOUT_SECONDS", defaults.call_timeout_seconds, minimum=0.001
            ),
            max_streams_per_caller=read.int("MAX_STREAMS_PER_CALLER",
                                            defaults.max_streams_per_caller, minimum=1),
            db_probe_seconds=read.float("DB_PROBE_SECONDS", defaults.db_probe_seconds,
                                        minimum=0.01),
            log_level=read.str("LOG_LEVEL", defaults.log_level).upper(),
            log_format=log_format,
            cpu_threads=read.int("CPU_THREADS", defaults.cpu_threads, minimum=1, maximum=64),
            services=services,
        )
