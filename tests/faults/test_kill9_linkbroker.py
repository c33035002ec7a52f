"""kill -9 of a link broker mid-load, then a restart on the same port: every acknowledged
link is there, and no lease is without its capacity or the reverse.

Orbit and provisioning run as their own processes; writers request links (each with its
own request_id and window, re-sent unchanged while the outcome is unknown) for active
terminals through the suite's channel."""

from __future__ import annotations

import itertools
import json
import time

import grpc
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb
from skybridge.linkbroker.v1 import linkbroker_pb2_grpc

from services.linkbroker.plan import LEDGER_BUCKET_SLOTS, LinkPlan, bucket_of
from services.linkbroker.slots import SLOT_SECONDS
from services.linkbroker.store import LIVE_STATES
from tests.conftest import bearer
from tests.faults.harness import HANG, POSTGRES_ONLY, Load, channel_to, rows
from tests.faults.provisioning_load import stub_for
from tests.faults.test_sigterm import active_terminal
from tests.linkbroker.suite import window
from tests.waiting import until

SERVICE = pb.DESCRIPTOR.services_by_name["LinkBrokerService"]
BATCH = 15
#: Codes a link request may be refused with for good (no coverage, full capacity...).
DEFINITIVE = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION)
#: The ledger is compared from this many buckets ahead on (the sweeper drops past rows).
AHEAD_BUCKETS = 2
_ids = itertools.count()


def link_writers(stub, meta, terminals: list[tuple[str, str]]) -> Load:
    """One writer per (customer, terminal), requesting 10-minute links of 5 Mbit/s one
    after the other."""
    tag = next(_ids)
    load = Load(None, definitive=DEFINITIVE, workers=len(terminals))

    def call_for(worker: int, n: int):
        customer, terminal = terminals[worker]
        request = pb.RequestLinkRequest(
            customer=customer, terminal=terminal, region="westus2",
            bandwidth_mbps=5.0, window=window(10, start_in_s=60 + 15 * (n % 8)),
            request_id=f"l{tag}-w{worker}-{n}")

        def attempt():
            return stub.RequestLink(request, metadata=meta, wait_for_ready=True)

        return attempt, request.request_id

    def on_ok(request_id, answer) -> None:
        load.outcomes.acked[request_id] = answer.link.name

    def on_refused(request_id, error) -> None:
        load.outcomes.refused[request_id] = (error.code().name, error.details())

    load.call_for, load.on_ok, load.on_refused = call_for, on_ok, on_refused
    return load


async def check_ledger(settings, stub, meta, outcomes) -> dict:
    """- every acknowledged link (request_id -> link) answers GetLink, live;
    - the leases are exactly the acknowledged links (every attempt was settled);
    - no lease without its capacity, no capacity without its lease: from `AHEAD_BUCKETS`
      buckets ahead on, each (bucket, resource) row of `capacity_usage` holds exactly the
      bandwidth of the live leases whose plans use it, and every such pair has its row;
    - no idempotency key without its answer."""
    for request_id, name in outcomes.acked.items():
        link = (await stub.GetLink(pb.GetLinkRequest(name=name), metadata=meta,
                                   wait_for_ready=True, timeout=HANG)).link
        assert pb.Link.State.Name(link.state).removeprefix("STATE_") in LIVE_STATES, \
            (request_id, name, link.state)
    leases = await rows(settings, "linkbroker",
                        "SELECT id, state, bandwidth_mbps, plan FROM leases")
    assert {f"links/{lease_id}" for lease_id, *_ in leases} == set(outcomes.acked.values())
    from_bucket = bucket_of(int(time.time() // SLOT_SECONDS)) + AHEAD_BUCKETS * LEDGER_BUCKET_SLOTS
    expected: dict[tuple[int, str], float] = {}
    for _, state, bandwidth, plan in leases:
        if state not in LIVE_STATES:
            continue
        buckets, keys, _ = LinkPlan.decode(bytes(plan)).ledger_rows(lambda key: 0.0)
        for bucket, key in zip(buckets, keys, strict=True):
            if bucket >= from_bucket:
                expected[(bucket, key)] = expected.get((bucket, key), 0.0) + bandwidth
    ledger = {(slot, resource): used for slot, resource, used in await rows(
        settings, "linkbroker",
        "SELECT slot, resource, used_mbps FROM capacity_usage WHERE slot >= %s",
        (from_bucket,))}
    missing = {key: mbps for key, mbps in expected.items()
               if abs(ledger.get(key, 0.0) - mbps) > 1e-6}
    orphaned = {key: used for key, used in ledger.items()
                if key not in expected and used > 1e-6}
    assert not missing, f"leases without (all) their capacity: {list(missing.items())[:5]}"
    assert not orphaned, f"capacity held by no lease: {list(orphaned.items())[:5]}"
    (unanswered,), = await rows(settings, "linkbroker",
                                "SELECT count(*) FROM requests WHERE response IS NULL")
    assert unanswered == 0
    return {"acknowledged": len(outcomes.acked), "refused": len(outcomes.refused),
            "leases": len(leases), "ledger_rows_checked": len(ledger),
            "attempts": outcomes.summary()}


@POSTGRES_ONLY
async def test_linkbroker_survives_kill_9_mid_load(services, settings, minter, tmp_path):
    orbit = await services.start("orbit")
    provisioning = await services.start("provisioning")
    broker = await services.start("linkbroker", SKYBRIDGE_ORBIT_PORT=orbit.port,
                                  SKYBRIDGE_PROVISIONING_PORT=provisioning.port,
                                  SKYBRIDGE_LINKBROKER_BLOCK_SLOTS="60")
    meta = bearer(minter, "provisioning.write", "links.write", tenant="contoso",
                  subject="contoso-admin")
    prov_channel, prov_stub = stub_for(settings, provisioning.target)
    channel = channel_to(settings, "linkbroker", SERVICE, broker.target)
    stub = linkbroker_pb2_grpc.LinkBrokerServiceStub(channel)
    try:
        # One customer per terminal, one writer per terminal.
        terminals = [await active_terminal(prov_stub, meta, tag=f"K{i}") for i in range(4)]
        writers = link_writers(stub, meta, terminals).start()
        acked = writers.outcomes.acked
        assert await until(lambda: len(acked) >= BATCH, within=HANG)
        broker.kill()
        assert await broker.wait() == -9
        at_kill = len(acked)
        await broker.start()
        await broker.serving()
        assert await until(lambda: len(acked) >= at_kill + BATCH, within=HANG)
        outcomes = await writers.finish()
        assert outcomes.failed == [], outcomes.failed
        figures = await check_ledger(settings, stub, meta, outcomes)
    finally:
        await channel.close()
        await prov_channel.close()
    figures["acknowledged_before_kill"] = at_kill
    figures["refusals"] = sorted({f"{code}: {details[:120]}"
                                  for code, details in outcomes.refused.values()})
    print(f"\nkill -9 linkbroker: {json.dumps(figures)}")
    (tmp_path / "kill9-linkbroker.json").write_text(json.dumps(figures))
