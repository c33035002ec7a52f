"""Client channel policy and settings, without servers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from skybridge.testing.v1 import probe_pb2

from shared.channels import MIN_TIMEOUT_SECONDS, capped_timeout, retry_service_config
from shared.config import ConfigError, Settings
from shared.db import locate
from shared.interceptors import inbound_deadline

SERVICE = probe_pb2.DESCRIPTOR.services_by_name["ProbeService"]


def test_only_idempotent_methods_are_retried():
    config = json.loads(retry_service_config([SERVICE]))
    (method_config,) = config["methodConfig"]
    names = {entry["method"] for entry in method_config["name"]}
    assert names == {"Echo", "Sleep", "Ticks"}  # marked NO_SIDE_EFFECTS in probe.proto
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_outgoing_timeout_is_capped_by_the_inbound_deadline(monkeypatch):
    # What the inbound call has left is read off a clock that stands still here, so the
    # cap is exact: no time passes between setting the deadline and reading it.
    import shared.channels

    monkeypatch.setattr(shared.channels, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    assert capped_timeout(None, None) is None
    assert capped_timeout(30.0, 10.0) == 10.0
    token = inbound_deadline.set(1002.0)
    try:
        assert capped_timeout(30.0, 10.0) == 2.0
        assert capped_timeout(None, None) == 2.0
        assert capped_timeout(1.5, 10.0) == 1.5
    finally:
        inbound_deadline.reset(token)
    token = inbound_deadline.set(999.0)
    try:
        assert capped_timeout(5.0, 10.0) == MIN_TIMEOUT_SECONDS
    finally:
        inbound_deadline.reset(token)


def test_settings_defaults_run_locally():
    settings = Settings.from_env({})
    assert settings.port("orbit") == 50051 and settings.port("threat") == 50054
    assert settings.target("linkbroker") == "127.0.0.1:50053"
    assert settings.is_sqlite and "var" in settings.database_url


def test_settings_read_ports_and_targets():
    settings = Settings.from_env({"SKYBRIDGE_ORBIT_PORT": "6000",
                                  "SKYBRIDGE_ORBIT_TARGET": "orbit:6000",
                                  "SKYBRIDGE_SERVICES": "orbit,threat"})
    assert settings.port("orbit") == 6000
    assert settings.target("orbit") == "orbit:6000"
    assert settings.services == ("orbit", "threat")


@pytest.mark.parametrize("env, named", [
    ({"SKYBRIDGE_ORBIT_PORT": "x"}, "SKYBRIDGE_ORBIT_PORT"),
    ({"SKYBRIDGE_ORBIT_PORT": "70000"}, "SKYBRIDGE_ORBIT_PORT"),
    ({"SKYBRIDGE_GRACE_SECONDS": "nan"}, "SKYBRIDGE_GRACE_SECONDS"),
    ({"SKYBRIDGE_SEED": "maybe"}, "SKYBRIDGE_SEED"),
    ({"SKYBRIDGE_SERVICES": "orbit,weather"}, "SKYBRIDGE_SERVICES"),
    ({"SKYBRIDGE_DATABASE_URL": "mysql://x"}, "SKYBRIDGE_DATABASE_URL"),
])
def test_bad_settings_name_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_each_service_gets_its_own_store():
    sqlite = locate("sqlite+aiosqlite:////data/skybridge.db", "orbit")
    assert sqlite.schema is None and sqlite.url.endswith("/data/skybridge-orbit.db")
    pg = locate("postgresql+psycopg://u@h/db", "orbit", prefix="t1_")
    assert pg.schema == "t1_orbit"
    with pytest.raises(ValueError):
        locate("postgresql+psycopg://u@h/db", "Orbit; DROP")
