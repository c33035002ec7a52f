"""Slow readers, a stream flood and an oversized message against a real provisioning
process: it stays SERVING, keeps taking writes, refuses what is too much with the right
code, and its resident memory stays within a stated budget."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc
from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import resources_pb2 as res

from shared.clients import orbit as orbit_client
from shared.config import Settings
from tests.conftest import bearer
from tests.faults.harness import HANG, POSTGRES_ONLY, SERVING, channel_to, code_of
from tests.faults.provisioning_load import (
    check_store,
    customer_token,
    feed_token,
    seed_customer,
    stub_for,
    terminal_writers,
)
from tests.waiting import until

#: Streams the flood opens: the per-caller limit, then more.
STREAM_LIMIT = Settings().max_streams_per_caller
SLOW_READERS = 40
#: Growth of the process's resident memory the test allows over its size before the load
#: (slow readers hold what flow control lets through: a window per stream, not the feed).
RSS_BUDGET_MIB = 256
BATCH = 400


@POSTGRES_ONLY
async def test_provisioning_under_slow_readers_a_stream_flood_and_an_oversized_message(
        services, settings, minter, tmp_path):
    """`SLOW_READERS` WatchEvents streams that read nothing while writers add events; a
    flood of streams past the per-caller limit (RESOURCE_EXHAUSTED TOO_MANY_STREAMS for the
    extra, the rest still open); a request over the 4 MiB request cap (RESOURCE_EXHAUSTED,
    before any handler runs). Health stays SERVING, writes go on, nothing acknowledged is
    lost, and VmRSS grows by at most `RSS_BUDGET_MIB`."""
    service = await services.start("provisioning")
    channel, stub = stub_for(settings, service.target)
    health = health_pb2_grpc.HealthStub(channel)
    streams: list = []
    try:
        meta = customer_token(minter)
        customer, subscriptions = await seed_customer(stub, meta, (1000,) * 4)
        baseline = service.rss_kib()
        feed = feed_token(minter)
        # Slow readers: open, one message read (so they are surely open), then never read.
        for _ in range(SLOW_READERS):
            call = stub.WatchEvents(pb.WatchEventsRequest(), metadata=feed, timeout=HANG)
            assert (await call.read()) is not grpc.aio.EOF
            streams.append(call)
        writers = terminal_writers(stub, meta, customer, subscriptions).start()
        assert await until(lambda: writers.ok >= BATCH, within=HANG)

        # A flood from one caller (a tenant with no events: its streams wait, open): up to
        # the limit they are served, the rest refused at once.
        flooder = customer_token(minter, "fabrikam")
        flood = [stub.WatchEvents(pb.WatchEventsRequest(), metadata=flooder, timeout=HANG)
                 for _ in range(STREAM_LIMIT + 5)]
        streams.extend(flood)
        assert await until(lambda: sum(call.done() for call in flood) >= 5, within=HANG)
        ended = [call for call in flood if call.done()]
        flood_ends = [code_of(error) for error in
                      await asyncio.gather(*(_failure(call) for call in ended))]
        assert set(flood_ends) == {(grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_STREAMS")}
        exhausted = flood_ends

        oversized = pb.CreateCustomerRequest(
            customer=res.Customer(display_name="x" * (5 * 1024 * 1024), country="US",
                                  sector=res.SECTOR_PRIVATE,
                                  contact_email="it@contoso.example.com"),
            request_id="oversized-1")
        try:
            await stub.CreateCustomer(oversized, metadata=meta, timeout=HANG)
            raise AssertionError("a 5 MiB request was taken")
        except grpc.aio.AioRpcError as error:
            too_big = error.code()
        assert too_big in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)

        at_flood = writers.ok
        assert await until(lambda: writers.ok >= at_flood + BATCH, within=HANG)
        peak = service.rss_kib()
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=HANG)
        assert answer.status == SERVING
        outcomes = await writers.finish()
        assert outcomes.failed == []
        for call in streams:
            call.cancel()
        streams.clear()
        figures = await check_store(settings, stub, minter, customer, outcomes)
    finally:
        for call in streams:
            call.cancel()
        await channel.close()
    grown_mib = (peak - baseline) / 1024
    figures.update({"rss_baseline_mib": round(baseline / 1024, 1),
                    "rss_peak_mib": round(peak / 1024, 1), "rss_growth_mib": round(grown_mib, 1),
                    "rss_budget_mib": RSS_BUDGET_MIB, "slow_readers": SLOW_READERS,
                    "flood_streams": STREAM_LIMIT + 5, "flood_refused": len(exhausted),
                    "oversized": too_big.name})
    print(f"\noverload provisioning: {json.dumps(figures)}")
    (tmp_path / "overload-provisioning.json").write_text(json.dumps(figures))
    assert len(exhausted) == 5, figures
    assert grown_mib <= RSS_BUDGET_MIB, figures


async def _failure(call) -> grpc.aio.AioRpcError:
    try:
        await call.read()
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("an ended stream gave a message")


#: Propagate streams that read one chunk and then nothing.
SLOW_PROPAGATIONS = 8
#: Growth allowed over the orbit process's size before them: each waiting stream holds at
#: most its pipeline's computed chunks and what flow control let through.
ORBIT_RSS_BUDGET_MIB = 512


@POSTGRES_ONLY
async def test_orbit_under_slow_propagate_readers_and_an_oversized_import(
        services, settings, minter, tmp_path):
    """`SLOW_PROPAGATIONS` big Propagate streams (Gen1, 4,000 steps, one chunk each) that
    stop reading after their first chunk must not stop another caller's Propagate (it runs
    to its end), nor take health off SERVING; an import over the 65 MiB request cap is
    RESOURCE_EXHAUSTED; VmRSS grows by at most `ORBIT_RSS_BUDGET_MIB`."""
    service = await services.start("orbit")
    descriptor = orbit_pb2.DESCRIPTOR.services_by_name["OrbitService"]
    channel = channel_to(settings, "orbit", descriptor, service.target)
    stub = orbit_pb2_grpc.OrbitServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    read = bearer(minter, "orbit.read", tenant="skybridge", subject="slow-reader")
    slow: list = []
    try:
        baseline = service.rss_kib()
        big = orbit_client.propagate_request(group="groups/starlink-gen1",
                                             start=datetime.now(UTC), step_s=60.0, count=4000,
                                             chunk_steps=1)
        for _ in range(SLOW_PROPAGATIONS):
            call = stub.Propagate(big, metadata=read, timeout=HANG)
            assert (await call.read()) is not grpc.aio.EOF
            slow.append(call)
        other = bearer(minter, "orbit.read", tenant="skybridge", subject="other-caller")
        small = orbit_client.propagate_request(group="groups/starlink-gen1",
                                               start=datetime.now(UTC), step_s=60.0, count=200,
                                               chunk_steps=10)
        chunks = 0
        async for _ in stub.Propagate(small, metadata=other, timeout=HANG):
            chunks += 1
        assert chunks >= 20  # the header and 20 chunks of 10 steps (header may ride along)
        peak = service.rss_kib()
        oversized = orbit_pb2.ImportElementSetsRequest(text="x" * (66 * 1024 * 1024),
                                                       group_id="oversized")
        try:
            await stub.ImportElementSets(oversized, metadata=bearer(
                minter, "orbit.write", tenant="skybridge", subject="importer"), timeout=HANG)
            raise AssertionError("a 66 MiB import was taken")
        except grpc.aio.AioRpcError as error:
            too_big = error.code()
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=HANG)
        assert answer.status == SERVING
        peak = max(peak, service.rss_kib())
    finally:
        for call in slow:
            call.cancel()
        await channel.close()
    grown_mib = (peak - baseline) / 1024
    figures = {"rss_baseline_mib": round(baseline / 1024, 1), "rss_peak_mib": round(peak / 1024, 1),
               "rss_growth_mib": round(grown_mib, 1), "rss_budget_mib": ORBIT_RSS_BUDGET_MIB,
               "slow_propagations": SLOW_PROPAGATIONS, "other_caller_chunks": chunks,
               "oversized_import": too_big.name}
    print(f"\noverload orbit: {json.dumps(figures)}")
    (tmp_path / "overload-orbit.json").write_text(json.dumps(figures))
    assert too_big in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
    assert grown_mib <= ORBIT_RSS_BUDGET_MIB, figures
