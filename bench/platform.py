"""Unary calls per second through the full interceptor stack against a bare grpc.aio server.

    .venv/bin/python bench/platform.py [--seconds 3] [--rounds 6] [--concurrency 32]

Both servers run in this process, on loopback; the load comes from a separate client process
(so the client does not steal the server's event loop), which measures one server at a time,
bare and full back to back in each round (in alternating order); the ratio reported is the
median of the rounds' ratios. The full stack is
the probe service with OpenTelemetry (every span kept by an in-memory exporter behind a batch
processor, as in production), lifecycle, errors and auth (a real Ed25519 token verified and
cached). Spans are kept in memory for the round they belong to and cleared between rounds.
Target: full >= 0.7 x bare. The last line printed is one JSON object.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, where this file's name would
# hide the standard library's `platform` module: take the folder off before anything imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc  # noqa: E402

TARGET_RATIO = 0.7


class BareProbe(probe_pb2_grpc.ProbeServiceServicer):
    """The probe's Echo without the stack: the same response, with the subject and tenant
    the full stack reads from the token, so that only the stack differs."""

    async def Echo(self, request, context):
        return probe_pb2.EchoResponse(message=request.message, subject="bench", tenant="bench")


async def client(port: int, token: str, seconds: float, concurrency: int) -> float:
    """Calls per second completed by `concurrency` loops of Echo for `seconds`."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = probe_pb2_grpc.ProbeServiceStub(channel)
        request = probe_pb2.EchoRequest(message="ping")
        for _ in range(200):  # warm up the connection and the server's caches
            await stub.Echo(request, metadata=metadata)
        done = 0
        stop_at = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await stub.Echo(request, metadata=metadata)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


async def measure(port: int, token: str, args) -> tuple[float, float]:
    """(calls per wall-clock second, calls per second of this process's CPU time).

    Only the servers run in this process, so the second figure is the server's own cost per
    call: it does not flatter the full stack when the client is the bottleneck, and other
    load on the machine does not move it much.
    """
    cpu_before = time.process_time()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", str(port), "--token", token or "-",
        "--seconds", str(args.seconds), "--concurrency", str(args.concurrency),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"client failed with exit code {proc.returncode}")
    cpu = time.process_time() - cpu_before
    rate = float(out.decode().strip().splitlines()[-1])
    calls = rate * args.seconds
    return rate, calls / cpu if cpu > 0 else float("nan")


async def run(args) -> dict:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared.auth import TokenMinter, ensure_dev_keys
    from shared.config import Settings
    from tests.probe.server import build

    workdir = Path(tempfile.mkdtemp(prefix="skybridge-bench-"))
    private, public = workdir / "jwt.pem", workdir / "jwt.pub.pem"
    ensure_dev_keys(private, public)
    settings = replace(Settings(), jwt_private_key_path=private, jwt_public_key_path=public,
                       dev_keys=False,
                       database_url=f"sqlite+aiosqlite:///{workdir / 'skybridge.db'}")
    exporter = InMemorySpanExporter()
    full = await build(settings, span_processors=[BatchSpanProcessor(exporter)])
    await full.server.start()
    await full.server.become_ready()
    token = TokenMinter(private.read_bytes(), issuer=settings.jwt_issuer,
                        audience=settings.jwt_audience).mint("bench", ["probe.read"], "bench")

    bare = grpc.aio.server()
    probe_pb2_grpc.add_ProbeServiceServicer_to_server(BareProbe(), bare)
    bare_port = bare.add_insecure_port("127.0.0.1:0")
    await bare.start()

    bare_rates, full_rates, bare_cpu, full_cpu = [], [], [], []
    spans = 0

    async def measure_bare() -> None:
        rate, per_cpu = await measure(bare_port, "", args)
        bare_rates.append(rate)
        bare_cpu.append(per_cpu)

    async def measure_full() -> None:
        nonlocal spans
        # Each round keeps only its own spans: an exporter that retained every span of the
        # run would measure the garbage collector walking an ever-growing heap.
        spans += len(exporter.get_finished_spans())
        exporter.clear()
        rate, per_cpu = await measure(full.server.port, token, args)
        full_rates.append(rate)
        full_cpu.append(per_cpu)

    try:
        for round_number in range(args.rounds):
            # The order alternates, so that neither server always runs on a warmer machine.
            first, second = ((measure_bare, measure_full) if round_number % 2 == 0
                             else (measure_full, measure_bare))
            await first()
            await second()
            print(f"round {round_number + 1}: bare {bare_rates[-1]:7.0f} calls/s "
                  f"({bare_cpu[-1]:7.0f} per server CPU-s)   full stack {full_rates[-1]:7.0f} "
                  f"calls/s ({full_cpu[-1]:7.0f} per server CPU-s)   ratio "
                  f"{full_rates[-1] / bare_rates[-1]:.3f}", flush=True)
    finally:
        await bare.stop(0)
        await full.server.drain(0)
    spans += len(exporter.get_finished_spans())
    bare_rate, full_rate = statistics.median(bare_rates), statistics.median(full_rates)
    bare_per_cpu, full_per_cpu = statistics.median(bare_cpu), statistics.median(full_cpu)
    # Each round's two runs are seconds apart, so their ratio cancels the slow drifts of a
    # shared two-core machine (other load, frequency) that a ratio of medians keeps.
    wall_ratio = statistics.median(f / b for f, b in zip(full_rates, bare_rates, strict=True))
    cpu_ratio = statistics.median(f / b for f, b in zip(full_cpu, bare_cpu, strict=True))
    ratio = min(wall_ratio, cpu_ratio)  # the stricter of the two
    return {
        "benchmark": "platform",
        "bare_calls_per_s": round(bare_rate),
        "full_stack_calls_per_s": round(full_rate),
        "wall_ratio": round(wall_ratio, 3),
        "bare_calls_per_server_cpu_s": round(bare_per_cpu),
        "full_stack_calls_per_server_cpu_s": round(full_per_cpu),
        "cpu_ratio": round(cpu_ratio, 3),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "spans_exported": spans,
        "concurrency": args.concurrency,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token", default="-", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        token = "" if args.token == "-" else args.token
        print(asyncio.run(client(args.client, token, args.seconds, args.concurrency)))
        return
    result = asyncio.run(run(args))
    print(f"bare grpc.aio: {result['bare_calls_per_s']} calls/s; full stack: "
          f"{result['full_stack_calls_per_s']} calls/s; wall-clock ratio {result['wall_ratio']}, "
          f"server-CPU ratio {result['cpu_ratio']}; ratio (the lower) {result['ratio']} "
          f"(target >= {TARGET_RATIO})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
