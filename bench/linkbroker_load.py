"""RequestLink under a steady load against the running suite on PostgreSQL (part ``load`` of
bench/linkbroker.py).

The suite (orbit with the seeded Gen1 constellation, provisioning, linkbroker) runs as three
processes, ``python -m services.<name>`` (one per service, as docker-compose runs them: one
Python process is one core's worth of GIL), on a fresh schema prefix of the PostgreSQL database at
$SKYBRIDGE_TEST_PG_URL (default 127.0.0.1:5432/test). This process creates customers with
active subscriptions and terminals spread around several Azure regions, then sends
``RequestLink`` for one-hour windows (240 slots) starting now, at a fixed rate (open loop:
one call every 1/rate s whatever the answers; a slow answer does not slow the load): a
warm-up (not counted: the broker fetches the constellation blocks and fills its per-slot
routes), then the measured phase. Reported: achieved rate, p50/p99 latency, errors by code,
each service's CPU. Target (issue 5): p99 < 100 ms, 0 errors, at 100/s for 60 s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb
from skybridge.linkbroker.v1 import linkbroker_pb2_grpc
from skybridge.provisioning.v1 import provisioning_pb2 as prov
from skybridge.provisioning.v1 import provisioning_pb2_grpc
from skybridge.provisioning.v1 import resources_pb2 as res

from shared.auth import TokenMinter, ensure_dev_keys

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("SKYBRIDGE_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: Terminals are scattered within ~2 degrees of these regions' published coordinates.
SITES = {"westus2": (47.23, -119.85), "southcentralus": (29.42, -98.49),
         "eastus": (37.37, -79.82), "westeurope": (52.37, 4.90),
         "uksouth": (50.94, -0.80), "japaneast": (35.68, 139.77)}
SERVICES = ("orbit", "provisioning", "linkbroker")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drop_schemas(prefix: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as connection:
        for (name,) in connection.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                (prefix + "%",)).fetchall():
            connection.execute(f'DROP SCHEMA "{name}" CASCADE')


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_service(name: str, prefix: str, ports: dict[str, int], keys: Path
                   ) -> subprocess.Popen:
    """One service in its own process (as docker-compose runs them), on its own port."""
    env = {**os.environ, "SKYBRIDGE_DATABASE_URL": PG_URL, "SKYBRIDGE_DB_SCHEMA_PREFIX": prefix,
           "SKYBRIDGE_LOG_LEVEL": "WARNING",
           "SKYBRIDGE_JWT_PRIVATE_KEY": str(keys / "k.pem"),
           "SKYBRIDGE_JWT_PUBLIC_KEY": str(keys / "k.pub.pem"), "SKYBRIDGE_DEV_KEYS": "false",
           **{f"SKYBRIDGE_{other.upper()}_PORT": str(port) for other, port in ports.items()}}
    process = subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if line.startswith(name) and "listening" in line:
            return process
    raise SystemExit(f"{name} did not start")


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


async def _terminals(stub, minter: TokenMinter, n_customers: int, per_customer: int,
                     rng: random.Random) -> list[tuple[str, str, str, dict]]:
    """(customer, terminal, region, metadata) for active terminals of several tenants."""
    out = []
    for c in range(n_customers):
        tenant = f"tenant-{c}"
        who = (("authorization", "Bearer " + minter.mint(
            f"{tenant}-admin", ("provisioning.write", "links.write"), tenant)),)
        customer = (await stub.CreateCustomer(prov.CreateCustomerRequest(
            customer=res.Customer(display_name=tenant, sector=res.SECTOR_PRIVATE, country="US",
                                  contact_email=f"it@{tenant}.example.com"),
            request_id=uuid.uuid4().hex), metadata=who)).customer
        sub = (await stub.CreateSubscription(prov.CreateSubscriptionRequest(
            parent=customer.name, subscription=res.Subscription(
                plan="plans/enterprise-100", quantity=per_customer),
            request_id=uuid.uuid4().hex), metadata=who)).subscription
        await stub.ActivateSubscription(prov.ActivateSubscriptionRequest(
            name=sub.name, plan="plans/enterprise-100", quantity=per_customer,
            request_id=uuid.uuid4().hex), metadata=who)
        for _ in range(per_customer):
            region = rng.choice(sorted(SITES))
            lat, lon = SITES[region]
            terminal = (await stub.CreateTerminal(prov.CreateTerminalRequest(
                parent=customer.name, terminal=res.Terminal(
                    serial_number=f"UT-{uuid.uuid4().hex[:12].upper()}", subscription=sub.name,
                    location=common_pb2.GeodeticPoint(latitude_deg=lat + rng.uniform(-2, 2),
                                                      longitude_deg=lon + rng.uniform(-2, 2))),
                request_id=uuid.uuid4().hex), metadata=who)).terminal
            for step in ("ProvisionTerminal", "ActivateTerminal"):
                request = getattr(prov, f"{step}Request")(name=terminal.name,
                                                          request_id=uuid.uuid4().hex)
                await getattr(stub, step)(request, metadata=who)
            out.append((customer.name, terminal.name, region, who))
    return out


async def _steady(stubs, terminals, rate: float, seconds: float, mbps: float,
                  rng: random.Random) -> tuple[list[float], collections.Counter, float]:
    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()
    tasks = []

    async def one(stub, customer, terminal, region, who) -> None:
        start = datetime.now(UTC)
        request = pb.RequestLinkRequest(
            customer=customer, terminal=terminal, region=region, bandwidth_mbps=mbps,
            window=common_pb2.TimeWindow(start_time=_ts(start),
                                         end_time=_ts(start + timedelta(hours=1))),
            request_id=uuid.uuid4().hex)
        t0 = time.perf_counter()
        try:
            await stub.RequestLink(request, metadata=who, timeout=30)
            latencies.append(time.perf_counter() - t0)
        except grpc.aio.AioRpcError as error:
            errors[error.code().name] += 1

    t_start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        delay = t_start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        customer, terminal, region, who = rng.choice(terminals)
        tasks.append(asyncio.ensure_future(one(stubs[i % len(stubs)], customer, terminal,
                                               region, who)))
    await asyncio.gather(*tasks)
    return latencies, errors, time.perf_counter() - t_start


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _run(args, ports: dict[str, int], keys: Path, pids: list[int]) -> dict:
    minter = TokenMinter((keys / "k.pem").read_bytes(), issuer="skybridge", audience="skybridge")
    rng = random.Random(7)
    prov_channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports['provisioning']}")
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{ports['linkbroker']}") for _ in range(4)]
    try:
        terminals = await _terminals(provisioning_pb2_grpc.ProvisioningServiceStub(prov_channel),
                                     minter, args.load_customers, args.load_terminals, rng)
        stubs = [linkbroker_pb2_grpc.LinkBrokerServiceStub(c) for c in channels]
        warm = await _steady(stubs, terminals, args.load_rate, args.load_warmup, 1.0, rng)
        cpu0, t0 = [_cpu_seconds(p) for p in pids], time.perf_counter()
        latencies, errors, wall = await _steady(stubs, terminals, args.load_rate,
                                                args.load_seconds, 1.0, rng)
        elapsed = time.perf_counter() - t0
        cpu = {name: round((_cpu_seconds(p) - c0) / elapsed, 2)
               for name, p, c0 in zip(SERVICES, pids, cpu0, strict=True)}
        ms = [x * 1e3 for x in latencies]
        return {
            "load_rate_target": args.load_rate, "load_seconds": args.load_seconds,
            "load_achieved_per_s": round(len(ms) / wall, 1),
            "load_p50_ms": round(statistics.median(ms), 1) if ms else None,
            "load_p99_ms": round(_pct(ms, 0.99), 1) if ms else None,
            "load_max_ms": round(max(ms), 1) if ms else None,
            "load_errors": sum(errors.values()), "load_errors_by_code": dict(errors),
            "load_warmup_errors": sum(warm[1].values()),
            "load_warmup_p99_ms": round(_pct([x * 1e3 for x in warm[0]], 0.99), 1),
            "load_cpu_cores": cpu, "load_terminals": len(terminals),
            "load_slots_per_link": 240,
            "load_targets": {"p99_ms": 100, "errors": 0, "rate_per_s": 100},
        }
    finally:
        for channel in [prov_channel, *channels]:
            await channel.close()


@contextlib.contextmanager
def running_suite(tag: str):
    """SERVICES as processes on a fresh schema prefix, with their own keys; yields (ports,
    keys dir, processes); stops them and drops the schemas at the end."""
    prefix = f"{tag}{uuid.uuid4().hex[:8]}_"
    ports = {name: _free_port() for name in SERVICES}
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp)
        ensure_dev_keys(keys / "k.pem", keys / "k.pub.pem")
        processes: list[subprocess.Popen] = []
        try:
            for name in SERVICES:  # orbit first: the broker's geometry comes from it
                processes.append(_start_service(name, prefix, ports, keys))
            yield ports, keys, processes
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            _drop_schemas(prefix)


def load_part(args, figures: dict) -> None:
    """Part ``load``: RequestLink at a steady rate against the suite on PostgreSQL."""
    with running_suite("lbbench") as (ports, keys, processes):
        result = asyncio.run(_run(args, ports, keys, [p.pid for p in processes]))
    print(f"RequestLink, 1-hour windows at {result['load_rate_target']}/s for "
          f"{result['load_seconds']} s: {result['load_achieved_per_s']}/s, "
          f"p50 {result['load_p50_ms']} ms, p99 {result['load_p99_ms']} ms "
          f"(target < 100), errors {result['load_errors']} {result['load_errors_by_code']}; "
          f"CPU cores by service {result['load_cpu_cores']}")
    figures.update(result)


def add_arguments(parser) -> None:
    parser.add_argument("--load-rate", type=float, default=100.0, help="RequestLink per second")
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--load-warmup", type=float, default=15.0)
    parser.add_argument("--load-customers", type=int, default=8)
    parser.add_argument("--load-terminals", type=int, default=25, help="per customer")
