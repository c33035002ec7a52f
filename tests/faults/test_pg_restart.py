"""PostgreSQL restarted under load: a provisioning process keeps running through it."""

from __future__ import annotations

import asyncio
import contextlib
import json

import grpc
from grpc_health.v1 import health_pb2

from tests.faults.harness import (
    NOT_SERVING,
    POSTGRES_ONLY,
    SERVING,
    ensure_pg_running,
    health_statuses,
    pg_cluster_command,
    run,
)
from tests.faults.provisioning_load import (
    check_store,
    customer_token,
    seed_customer,
    stub_for,
    terminal_writers,
)
from tests.waiting import until

BATCH = 60
ROOMY = (1000, 1000, 1000, 1000)  # no create is refused for its quantity here


@POSTGRES_ONLY
async def test_provisioning_rides_out_a_postgres_restart(services, settings, minter, tmp_path):
    """While writers register terminals, PostgreSQL is restarted (`pg_ctlcluster ...
    restart`, which ends every connection). Every attempt is OK or UNAVAILABLE, and an
    UNAVAILABLE that carries an ErrorInfo says DATABASE_UNAVAILABLE (never INTERNAL); the
    same process recovers with no restart (health SERVING again, writes succeed); and no
    acknowledged write is lost (the `check_store` checks)."""
    service = await services.start("provisioning", SKYBRIDGE_DB_PROBE_SECONDS="0.2")
    channel, stub = stub_for(settings, service.target)
    health: list = []
    watching = asyncio.Event()
    watcher = asyncio.create_task(health_statuses(channel, health, watching))
    try:
        meta = customer_token(minter)
        customer, subscriptions = await seed_customer(stub, meta, ROOMY)
        assert await until(watching.is_set, within=120)
        writers = terminal_writers(stub, meta, customer, subscriptions).start()
        assert await until(lambda: writers.ok >= BATCH, within=120)
        try:
            code, output = await run(*pg_cluster_command("restart"))
            assert code == 0, output
        finally:
            await ensure_pg_running()
        at_restart = writers.ok
        assert await until(lambda: writers.ok >= at_restart + BATCH, within=120)
        assert await until(lambda: health and health[-1][1] == SERVING, within=120)
        # The restart was seen (not a test that passes without its fault): health said
        # NOT_SERVING in between.
        assert NOT_SERVING in [status for _, status in health], health
        outcomes = await writers.finish()
        assert service.proc.returncode is None  # the same process throughout
        seen = set(outcomes.attempts)
        assert {code for code, _ in seen} <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, \
            outcomes.summary()
        assert {reason for code, reason in seen
                if code == grpc.StatusCode.UNAVAILABLE} <= {"DATABASE_UNAVAILABLE", None}, \
            outcomes.summary()
        assert outcomes.failed == [] and outcomes.refused == {}
        figures = await check_store(settings, stub, minter, customer, outcomes)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await channel.close()
        await ensure_pg_running()
    names = health_pb2.HealthCheckResponse.ServingStatus.Name
    figures["acknowledged_when_restarted"] = at_restart
    figures["health_seen"] = [names(status) if isinstance(status, int) else str(status)
                              for _, status in health]
    figures["unavailable_details"] = {f"{c}/{r}: {d}": n
                                      for (c, r, d), n in outcomes.details.items()}
    print(f"\npostgres restart under provisioning load: {json.dumps(figures)}")
    (tmp_path / "pg-restart-provisioning.json").write_text(json.dumps(figures))
