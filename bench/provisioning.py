"""Provisioning benchmark: a mixed workload over gRPC against PostgreSQL.

The service runs as a subprocess (`python -m services.provisioning`) on a fresh schema prefix
of the PostgreSQL database at $SKYBRIDGE_TEST_PG_URL (default 127.0.0.1:5432/test), with the
log level at WARNING; the load generator runs in this process on the same machine.

Phase 1 (mutations): callers create subscriptions and activate them, register terminals,
and move terminals through provisioned -> active -> suspended -> active; every call carries a
request_id, so every call runs the full idempotent path (idempotency key, row locks, audit
records, outbox events). It runs twice:
  1a. capacity: `--concurrency` closed-loop callers, each sending its next call when the
      last is answered: the most the service sustains (its p99 is mostly queueing, since
      32 callers keep 32 calls waiting);
  1b. latency at the target rate: steps started on a fixed schedule (`--mutation-rate`
      steps/s, 500 by default, which is about 525 mutating calls/s since a new subscription
      is two calls), each step's latency counted from when it was due, so a service that
      falls behind pays for it (no coordinated omission). The target is read here: 500
      mutations/s sustained with p99 under 50 ms.
While phase 1 runs, --watchers WatchEvents streams follow the event feed (so the outbox relay
that gives events their feed positions runs too); after it, the bench checks that each follower
received every event in the database exactly once.
Phase 2 (entitlement checks): `--check-concurrency` closed-loop callers check active
terminals, first one CheckEntitlement call per check (unary), then as the link broker sends
them: through `shared.clients.entitlements.EntitlementChecker` (one per channel),
which sends concurrent checks together in BatchCheckEntitlements calls. The target is read
on the second.

Targets (issue 4): >= 500 mutations/s with p99 < 50 ms; >= 2,000 checks/s.
Usage: .venv/bin/python bench/provisioning.py [--seconds 10] [--concurrency 32]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a platform.py that would shadow the standard library's module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import tempfile
import time
import uuid

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from skybridge.common.v1 import common_pb2  # noqa: E402
from skybridge.provisioning.v1 import provisioning_pb2 as pb  # noqa: E402
from skybridge.provisioning.v1 import provisioning_pb2_grpc  # noqa: E402
from skybridge.provisioning.v1 import resources_pb2 as res  # noqa: E402

from shared.auth import TokenMinter  # noqa: E402
from shared.clients.entitlements import EntitlementChecker  # noqa: E402

PREFIX = ""
PG_URL = os.environ.get("SKYBRIDGE_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop_schemas(prefix: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as connection:
        for (name,) in connection.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix + "%",)
        ).fetchall():
            connection.execute(f'DROP SCHEMA "{name}" CASCADE')


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL process on this machine."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    total += process_cpu(int(entry.name))
            except OSError:
                continue
    return total


def machine_cpu() -> float:
    """CPU seconds used so far by the whole machine (every process, all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for v in fields[:8]) - int(fields[3]) - int(fields[4])  # minus idle, iowait
    return busy / CLOCK_TICKS


class CpuMeter:
    """CPU used during a phase by the load generator, the service, PostgreSQL, everything."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid
        self.start = self._sample()

    def _sample(self) -> tuple[float, ...]:
        return (time.process_time(), process_cpu(self.server_pid), postgres_cpu(),
                machine_cpu(), time.perf_counter())

    def stop(self) -> dict:
        end = self._sample()
        wall = end[4] - self.start[4]
        share = [round((b - a) / wall, 2) for a, b in zip(self.start[:4], end[:4], strict=True)]
        return {"client_cores": share[0], "server_cores": share[1],
                "postgres_cores": share[2], "machine_cores": share[3]}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    def __init__(self, stubs: list, minter: TokenMinter, tenants: int):
        self.stubs = stubs
        self.stub = stubs[0]
        self.meta = {t: (("authorization", "Bearer " + minter.mint(
            f"t{t}-admin", ["provisioning.write"], f"bench-t{t}")),) for t in range(tenants)}
        self.broker = (("authorization", "Bearer " + minter.mint(
            "service:linkbroker", ["provisioning.entitlements", "service"], "skybridge")),)
        self.feed = (("authorization", "Bearer " + minter.mint(
            "service:feed", ["provisioning.events", "service"], "skybridge")),)
        self.customers: dict[int, str] = {}
        self.subs: dict[int, list[str]] = {t: [] for t in range(tenants)}
        self.terminals: list[tuple[int, str, str]] = []  # tenant, name, state
        self.serial = 0

    async def setup(self) -> None:
        for tenant, meta in self.meta.items():
            customer = (await self.stub.CreateCustomer(pb.CreateCustomerRequest(
                customer=res.Customer(display_name=f"Bench {tenant}", sector=res.SECTOR_PUBLIC,
                                      country="US", contact_email=f"ops@t{tenant}.example.com"),
                request_id=uuid.uuid4().hex), metadata=meta)).customer
            self.customers[tenant] = customer.name
            await self.new_subscription(tenant)

    async def new_subscription(self, tenant: int) -> None:
        meta = self.meta[tenant]
        sub = (await self.stub.CreateSubscription(pb.CreateSubscriptionRequest(
            parent=self.customers[tenant], subscription=res.Subscription(
                plan="plans/enterprise-100", quantity=1000),
            request_id=uuid.uuid4().hex), metadata=meta)).subscription
        await self.stub.ActivateSubscription(pb.ActivateSubscriptionRequest(
            name=sub.name, plan="plans/enterprise-100", quantity=1000,
            request_id=uuid.uuid4().hex), metadata=meta)
        self.subs[tenant].append(sub.name)

    async def one_mutation(self, rng: random.Random) -> int:
        """One logical step; returns the number of mutating RPCs it made."""
        self.stub = rng.choice(self.stubs)
        tenant = rng.randrange(len(self.meta))
        meta = self.meta[tenant]
        roll = rng.random()
        if roll < 0.05:
            await self.new_subscription(tenant)
            return 2
        movable = ([i for i, t in enumerate(self.terminals) if t[0] == tenant and t[2] != "BUSY"]
                   if roll > 0.4 else [])
        if not movable:
            self.serial += 1
            terminal = (await self.stub.CreateTerminal(pb.CreateTerminalRequest(
                parent=self.customers[tenant], terminal=res.Terminal(
                    serial_number=f"UT-BENCH-{self.serial:07d}",
                    subscription=rng.choice(self.subs[tenant]),
                    location=common_pb2.GeodeticPoint(latitude_deg=rng.uniform(-60, 60),
                                                      longitude_deg=rng.uniform(-180, 180))),
                request_id=uuid.uuid4().hex), metadata=meta)).terminal
            self.terminals.append((tenant, terminal.name, "REGISTERED"))
            return 1
        index = rng.choice(movable[-50:])
        _, name, state = self.terminals[index]
        verb, new = {"REGISTERED": ("Provision", "PROVISIONED"),
                     "PROVISIONED": ("Activate", "ACTIVE"),
                     "ACTIVE": ("Suspend", "SUSPENDED"),
                     "SUSPENDED": ("Activate", "ACTIVE")}[state]
        self.terminals[index] = (tenant, name, "BUSY")
        try:
            request = getattr(pb, f"{verb}TerminalRequest")(name=name, request_id=uuid.uuid4().hex)
            await getattr(self.stub, f"{verb}Terminal")(request, metadata=meta)
            self.terminals[index] = (tenant, name, new)
        except grpc.aio.AioRpcError:
            self.terminals[index] = (tenant, name, state)
            raise
        return 1


class Recorder:
    """Latencies (ms per mutating call) and failed steps of a load phase."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0

    async def step(self, step, rng: random.Random, since: float) -> None:
        """Run one step; its latency counts from `since` (perf_counter seconds)."""
        try:
            n = await step(rng)
        except grpc.aio.AioRpcError:
            self.errors += 1
            return
        elapsed = (time.perf_counter() - since) * 1000 / max(n, 1)
        self.latencies.extend([elapsed] * n)


async def timed_workers(concurrency: int, seconds: float, step) -> tuple[list[float], int, float]:
    """`concurrency` closed-loop callers, each starting its next step when the last ended."""
    record = Recorder()
    stop_at = time.perf_counter() + seconds

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < stop_at:
            await record.step(step, rng, time.perf_counter())

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return record.latencies, record.errors, time.perf_counter() - started


async def open_loop(rate: float, seconds: float, step) -> tuple[list[float], int, float]:
    """Calls started at a fixed rate (`rate` steps a second, evenly spaced), whatever the
    service's pace, for `seconds`. A step's latency counts from when it was due, so a
    service that falls behind is charged for the wait (no coordinated omission)."""
    record = Recorder()
    rng = random.Random(7)
    tasks: set = set()
    started = time.perf_counter()
    for k in range(int(rate * seconds)):
        due = started + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(record.step(step, rng, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return record.latencies, record.errors, time.perf_counter() - started


async def wait_for_feed(seen: list[int]) -> int:
    """The number of events in the database, once every follower has received that many
    (or after 30 s)."""
    import psycopg

    deadline = time.perf_counter() + 30.0
    while True:
        with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"),
                             options=f"-csearch_path={PREFIX}provisioning") as connection:
            total = connection.execute("SELECT count(*) FROM events").fetchone()[0]
        if all(n >= total for n in seen) or time.perf_counter() > deadline:
            return total
        await asyncio.sleep(0.2)


def start_service(prefix: str, port: int, keys: Path) -> subprocess.Popen:
    """The service as a subprocess, its output (stdout and stderr) in `keys`/service.log.

    The output goes to a file, not a pipe: a pipe nobody reads fills up after 64 KB and then
    blocks the service on its next log line, which shows as a stalled service."""
    env = {**os.environ, "SKYBRIDGE_DATABASE_URL": PG_URL, "SKYBRIDGE_DB_SCHEMA_PREFIX": prefix,
           "SKYBRIDGE_PROVISIONING_PORT": str(port), "SKYBRIDGE_LOG_LEVEL": "WARNING",
           "SKYBRIDGE_JWT_PRIVATE_KEY": str(keys / "k.pem"),
           "SKYBRIDGE_JWT_PUBLIC_KEY": str(keys / "k.pub.pem"), "SKYBRIDGE_DEV_KEYS": "true"}
    log_path = keys / "service.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "services.provisioning"], cwd=ROOT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if "listening" in log_path.read_text(errors="replace"):
            return server
        if server.poll() is not None:
            break
        time.sleep(0.1)
    server.kill()
    raise SystemExit("the service did not start:\n" + log_path.read_text(errors="replace"))


async def run(args, port: int, keys: Path, server_pid: int) -> dict:
    channels: list = []
    try:
        minter = TokenMinter((keys / "k.pem").read_bytes(), issuer="skybridge",
                             audience="skybridge")
        # One channel (HTTP/2 connection) per --callers-per-channel callers.
        callers = max(args.concurrency, args.check_concurrency)
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                    for _ in range(max(1, callers // args.callers_per_channel))]
        stubs = [provisioning_pb2_grpc.ProvisioningServiceStub(c) for c in channels]
        stub = stubs[0]
        load = Load(stubs, minter, args.tenants)
        await load.setup()
        await timed_workers(args.concurrency, 1.0, load.one_mutation)  # warm-up
        # Feed followers read every event while the mutations run (they run the outbox relay).
        feed_seen = [0] * args.watchers
        feed_cursors: list[list[str]] = [[] for _ in range(args.watchers)]

        async def follow(index: int) -> None:
            stream = stub.WatchEvents(pb.WatchEventsRequest(), metadata=load.feed)
            async for answer in stream:
                feed_seen[index] += 1
                feed_cursors[index].append(answer.event.cursor)

        followers = [asyncio.ensure_future(follow(i)) for i in range(args.watchers)]
        # 1a. capacity: closed loop, `--concurrency` callers as fast as answers come
        meter = CpuMeter(server_pid)
        capacity_lat, capacity_errors, capacity_wall = await timed_workers(
            args.concurrency, args.seconds, load.one_mutation)
        capacity_cpu = meter.stop()
        # 1b. latency at the target rate: open loop, steps started on a fixed schedule
        meter = CpuMeter(server_pid)
        lat, errors, wall = await open_loop(args.mutation_rate, args.seconds, load.one_mutation)
        mutation_cpu = meter.stop()
        total_events = await wait_for_feed(feed_seen)
        for follower in followers:
            follower.cancel()
        feed_ok = all(len(set(c)) == len(c) == total_events for c in feed_cursors)
        active = [(t, n) for t, n, s in load.terminals if s == "ACTIVE"]

        def request_for(rng: random.Random) -> pb.CheckEntitlementRequest:
            tenant, name = rng.choice(active)
            return pb.CheckEntitlementRequest(customer=load.customers[tenant], terminal=name,
                                              bandwidth_mbps=50, target_region="westeurope")

        async def unary_check(rng: random.Random) -> int:
            answer = await rng.choice(stubs).CheckEntitlement(request_for(rng),
                                                              metadata=load.broker)
            assert answer.allowed, answer
            return 1

        # The link broker's way: one EntitlementChecker per channel, shared by its requests.
        checkers = [EntitlementChecker(s, metadata=load.broker) for s in stubs]

        async def broker_check(rng: random.Random) -> int:
            answer = await rng.choice(checkers).check(request_for(rng))
            assert answer.allowed, answer
            return 1

        phases = {}
        for label, step in (("unary", unary_check), ("broker", broker_check)):
            await timed_workers(args.check_concurrency, 1.0, step)  # warm-up
            meter = CpuMeter(server_pid)
            checks_lat, check_errors, check_wall = await timed_workers(
                args.check_concurrency, args.seconds, step)
            phases[label] = (checks_lat, check_errors, check_wall, meter.stop())
        checks_lat, check_errors, check_wall, check_cpu = phases["broker"]
        unary_lat, unary_errors, unary_wall, unary_cpu = phases["unary"]
        calls = sum(c.calls for c in checkers)
        answered = sum(c.checks for c in checkers)
        return {
            "mutation_capacity_per_s": round(len(capacity_lat) / capacity_wall, 1),
            "mutation_capacity_p99_ms": round(percentile(capacity_lat, 0.99), 2),
            "mutation_capacity_errors": capacity_errors,
            "mutation_rate_offered_steps_per_s": args.mutation_rate,
            "mutations_per_s": round(len(lat) / wall, 1),
            "mutation_p50_ms": round(statistics.median(lat), 2),
            "mutation_p99_ms": round(percentile(lat, 0.99), 2),
            "mutation_errors": errors,
            "entitlement_checks_per_s": round(len(checks_lat) / check_wall, 1),
            "entitlement_p50_ms": round(statistics.median(checks_lat), 2),
            "entitlement_p99_ms": round(percentile(checks_lat, 0.99), 2),
            "entitlement_errors": check_errors,
            "entitlement_checks_per_call": round(answered / max(calls, 1), 1),
            "unary_checks_per_s": round(len(unary_lat) / unary_wall, 1),
            "unary_p50_ms": round(statistics.median(unary_lat), 2),
            "unary_p99_ms": round(percentile(unary_lat, 0.99), 2),
            "unary_errors": unary_errors,
            "feed_watchers": args.watchers, "feed_events": total_events,
            "feed_complete_once_each": feed_ok,
            "capacity_cpu": capacity_cpu, "mutation_cpu": mutation_cpu,
            "unary_check_cpu": unary_cpu, "check_cpu": check_cpu,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "terminals": len(load.terminals), "active_terminals": len(active),
            "channels": len(channels), "concurrency": args.concurrency,
            "check_concurrency": args.check_concurrency,
            "seconds": args.seconds, "cpus": os.cpu_count(),
            "targets": {"mutations_per_s": 500, "mutation_p99_ms": 50,
                        "entitlement_checks_per_s": 2000},
        }
    finally:
        for channel in channels:
            await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--check-concurrency", type=int, default=64)
    parser.add_argument("--mutation-rate", type=float, default=500.0,
                        help="steps per second offered in the latency phase (a step is one "
                             "mutating call, or two for a new subscription)")
    parser.add_argument("--tenants", type=int, default=16)
    parser.add_argument("--callers-per-channel", type=int, default=16)
    parser.add_argument("--watchers", type=int, default=1,
                        help="WatchEvents followers during the mutation phase")
    args = parser.parse_args()
    global PREFIX
    prefix = PREFIX = f"bench{uuid.uuid4().hex[:8]}_"
    port = free_port()
    keys = Path(tempfile.mkdtemp(prefix="skybridge-bench-keys-"))
    server = start_service(prefix, port, keys)
    try:
        result = asyncio.run(run(args, port, keys, server.pid))
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        drop_schemas(prefix)
    print(f"mutation capacity:  {result['mutation_capacity_per_s']:8.1f}/s with "
          f"{result['concurrency']} callers (closed loop; p99 "
          f"{result['mutation_capacity_p99_ms']:.2f} ms)  errors "
          f"{result['mutation_capacity_errors']}")
    print(f"mutations at rate:  {result['mutations_per_s']:8.1f}/s  p50 "
          f"{result['mutation_p50_ms']:.2f} ms  p99 {result['mutation_p99_ms']:.2f} ms  "
          f"errors {result['mutation_errors']} (open loop, "
          f"{result['mutation_rate_offered_steps_per_s']:g} steps/s offered)")
    print(f"event feed:         {result['feed_events']} events, each received once by "
          f"{result['feed_watchers']} follower(s): {result['feed_complete_once_each']}")
    print(f"entitlement checks: {result['entitlement_checks_per_s']:8.1f}/s  p50 "
          f"{result['entitlement_p50_ms']:.2f} ms  p99 {result['entitlement_p99_ms']:.2f} ms  "
          f"errors {result['entitlement_errors']} (as the link broker sends them: "
          f"{result['entitlement_checks_per_call']} checks per BatchCheckEntitlements call)")
    print(f"  unary only:       {result['unary_checks_per_s']:8.1f}/s  p50 "
          f"{result['unary_p50_ms']:.2f} ms  p99 {result['unary_p99_ms']:.2f} ms  "
          f"errors {result['unary_errors']} (one CheckEntitlement call per check)")
    for phase in ("capacity", "mutation", "unary_check", "check"):
        cpu = result[f"{phase}_cpu"]
        print(f"{phase + ' CPU (cores):':<25}client {cpu['client_cores']:.2f}  server "
              f"{cpu['server_cores']:.2f}  postgres {cpu['postgres_cores']:.2f}  machine "
              f"{cpu['machine_cores']:.2f} of {os.cpu_count()}")
    print("load average:       " + " ".join(f"{x:.2f}" for x in result["load_average"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
