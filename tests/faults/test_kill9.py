"""kill -9 mid-load, then a restart on the same port: no acknowledged write is lost and
nothing is half-written.

Writers keep registering terminals through the suite's channel (retry policy and
wait_for_ready); a call that fails UNAVAILABLE (or passes its deadline) is re-sent with the
same request_id, so its outcome is always settled: acknowledged, or refused for good."""

from __future__ import annotations

import json

from tests.faults.harness import POSTGRES_ONLY
from tests.faults.provisioning_load import (
        check_store,
    customer_token,
    seed_customer,
    stub_for,
    terminal_writers,
)
from tests.waiting import until

#: Acknowledged writes wanted before the kill, and again after the restart.
BATCH = 60


@POSTGRES_ONLY
async def test_provisioning_survives_kill_9_mid_load(services, settings, minter, tmp_path):
    """SIGKILL with writes in flight, restart on the same port, carry on: every
    acknowledged terminal is there afterwards, the terminals are exactly the acknowledged
    ones, no subscription is over its quantity, and the outbox has no gap (see
    `check_store` for each check)."""
    service = await services.start("provisioning")
    channel, stub = stub_for(settings, service.target)
    try:
        meta = customer_token(minter)
        customer, subscriptions = await seed_customer(stub, meta)
        writers = terminal_writers(stub, meta, customer, subscriptions).start()
        assert await until(lambda: writers.ok >= BATCH, within=120)
        service.kill()
        assert await service.wait() == -9
        at_kill = writers.ok
        await service.start()
        await service.serving()
        assert await until(lambda: writers.ok >= at_kill + BATCH, within=120)
        outcomes = await writers.finish()
        assert outcomes.failed == []
        figures = await check_store(settings, stub, minter, customer, outcomes)
    finally:
        await channel.close()
    figures["acknowledged_before_kill"] = at_kill
    print(f"\nkill -9 provisioning: {json.dumps(figures)}")
    (tmp_path / "kill9-provisioning.json").write_text(json.dumps(figures))
