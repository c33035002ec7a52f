"""The gateway's cost: one unary call through the gateway (Connect over HTTP/1.1) against
the same call straight to gRPC, in the same run; then the console loading the catalog in
headless Chromium.

    .venv/bin/python bench/gateway.py [--calls 2000] [--seconds 4] [--rounds 3]
                                      [--concurrency 16] [--satellites 10000]

The four services run in one supervisor process and the gateway in another (as in
docker-compose), on SQLite in a temporary folder; the load comes from this process. The
catalog is the seeded one topped up to `--satellites` with generated shells whose epoch is
now (the console shows the present, and orbit propagates within 30 days of an epoch, so an
old snapshot would not do). The call is orbit's GetSatellite (a store read through the
whole interceptor stack), one satellite after another.

- latency: calls one at a time, direct and through the gateway alternating in each round;
  the gateway's added median (and 99th percentile) in milliseconds. Target: <= 2 ms.
- throughput: `--concurrency` calls in flight for `--seconds`, direct, through the gateway
  with binary protobuf and with JSON, in alternating order each round; the ratio is the
  median of the rounds' ratios. Target: >= 0.5 of direct.
- console: Debian's Chromium (headless, SwiftShader WebGL) opens the console signed in with
  `orbit.read` (the token put in sessionStorage first, so sign-in is not timed) and waits
  until it has drawn the whole catalog and seen it move: the console's own time from
  navigation start to the first frame that moved, median and worst of `--console-runs`
  fresh pages. Target: <= 5 s. Skipped (and said so) when Chromium or the built console
  is missing.

The last line printed is one JSON object.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, where bench/platform.py would
# hide the standard library's `platform` module: take the folder off before anything imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from connectrpc.client import ConnectClient  # noqa: E402
from google.protobuf import timestamp_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc  # noqa: E402

from services.gateway.procedures import procedures  # noqa: E402
from shared.auth import TokenMinter, ensure_dev_keys  # noqa: E402

TARGET_ADDED_MEDIAN_MS = 2.0
TARGET_THROUGHPUT_RATIO = 0.5
TARGET_CONSOLE_SECONDS = 5.0
GET_SATELLITE = {p.info.name: p.info for p in procedures()}["GetSatellite"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Suite:
    """The four services in one process and the gateway in another, on loopback."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = {name: free_port() for name in
                      ("orbit", "provisioning", "linkbroker", "threat", "gateway")}
        keys = folder / "keys"
        ensure_dev_keys(keys / "jwt.pem", keys / "jwt.pub.pem")
        self.minter = TokenMinter((keys / "jwt.pem").read_bytes(), issuer="skybridge",
                                  audience="skybridge")
        self.env = dict(os.environ)
        self.env.update({f"SKYBRIDGE_{name.upper()}_PORT": str(port)
                         for name, port in self.ports.items()})
        self.env.update({
            "SKYBRIDGE_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'skybridge.db'}",
            "SKYBRIDGE_JWT_PRIVATE_KEY": str(keys / "jwt.pem"),
            "SKYBRIDGE_JWT_PUBLIC_KEY": str(keys / "jwt.pub.pem"),
            "SKYBRIDGE_DEV_KEYS": "true", "SKYBRIDGE_GATEWAY_DEV_TOKENS": "true",
            "SKYBRIDGE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
            "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
        })
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for services, log in (("orbit,provisioning,linkbroker,threat", "services.log"),
                              ("gateway", "gateway.log")):
            env = dict(self.env, SKYBRIDGE_SERVICES=services)
            with open(self.folder / log, "wb") as out:
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "services"], cwd=ROOT, env=env, stdout=out,
                    stderr=subprocess.STDOUT))

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    @property
    def orbit(self) -> str:
        return f"127.0.0.1:{self.ports['orbit']}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def _gateway_serving(self) -> bool:
        try:
            with urllib.request.urlopen(self.gateway + "/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    async def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        for name in ("orbit", "provisioning", "linkbroker", "threat"):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{self.ports[name]}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                while True:
                    try:
                        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                        if answer.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name} did not start; see {self.folder}")
                    await asyncio.sleep(0.5)
        while True:
            if await asyncio.to_thread(self._gateway_serving):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start; see {self.folder}")
            await asyncio.sleep(0.5)


def _timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def filler_shells(count: int) -> list[orbit_pb2.WalkerShell]:
    """Walker shells adding `count` satellites (one a plane, at most 1,000 planes a shell,
    each shell 15 km above the last)."""
    shells = []
    altitude = 560.0
    while count > 0:
        planes = min(count, 1000)
        shells.append(orbit_pb2.WalkerShell(
            planes=planes, satellites_per_plane=1, phasing=1 if planes > 1 else 0,
            altitude_km=altitude, inclination_deg=53.0, name_prefix=f"FILL{int(altitude)}"))
        count -= planes
        altitude += 15.0
    return shells


async def load_catalog(suite: Suite, satellites: int) -> tuple[int, list[str]]:
    """Tops the seeded catalog up to `satellites` with generated shells whose epoch is now
    (the console propagates the present, within 30 days of every epoch); returns the total
    and some satellite names to read."""
    write = (("authorization", f"Bearer {suite.minter.mint('bench', ['orbit.write'], 'b')}"),)
    read = (("authorization", f"Bearer {suite.minter.mint('bench', ['orbit.read'], 'b')}"),)
    async with grpc.aio.insecure_channel(suite.orbit) as channel:
        stub = orbit_pb2_grpc.OrbitServiceStub(channel)
        total = (await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(page_size=1),
                                           metadata=read)).total_size
        if total < satellites:
            await stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
                shells=filler_shells(satellites - total), group_id="bench-fill",
                epoch_time=_timestamp(datetime.now(UTC))), metadata=write, timeout=300)
        page = await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(page_size=500),
                                         metadata=read)
    return page.total_size, [s.name for s in page.satellites]


async def latency(suite: Suite, names: list[str], calls: int) -> tuple[list[float], list[float]]:
    """Per-call seconds, one call at a time: (direct, through the gateway)."""
    token = suite.minter.mint("bench", ["orbit.read"], "b")
    metadata = (("authorization", f"Bearer {token}"),)
    headers = {"authorization": f"Bearer {token}"}
    direct: list[float] = []
    via: list[float] = []
    async with grpc.aio.insecure_channel(suite.orbit) as channel, \
            ConnectClient(suite.gateway, send_compression=None,
                          accept_compression=()) as client:
        stub = orbit_pb2_grpc.OrbitServiceStub(channel)
        for i in range(calls):
            request = orbit_pb2.GetSatelliteRequest(name=names[i % len(names)])
            started = time.perf_counter()
            await stub.GetSatellite(request, metadata=metadata)
            direct.append(time.perf_counter() - started)
            started = time.perf_counter()
            await client.execute_unary(request=request, method=GET_SATELLITE, headers=headers)
            via.append(time.perf_counter() - started)
    return direct[calls // 10:], via[calls // 10:]  # without the warm-up


async def throughput(suite: Suite, names: list[str], how: str, seconds: float,
                     concurrency: int) -> float:
    """Calls per second with `concurrency` calls in flight: how = grpc | binary | json."""
    token = suite.minter.mint("bench", ["orbit.read"], "b")
    metadata = (("authorization", f"Bearer {token}"),)
    headers = {"authorization": f"Bearer {token}"}
    done = 0
    async with grpc.aio.insecure_channel(suite.orbit) as channel, \
            ConnectClient(suite.gateway, proto_json=how == "json", send_compression=None,
                          accept_compression=()) as client:
        stub = orbit_pb2_grpc.OrbitServiceStub(channel)

        async def one(i: int) -> None:
            request = orbit_pb2.GetSatelliteRequest(name=names[i % len(names)])
            if how == "grpc":
                await stub.GetSatellite(request, metadata=metadata)
            else:
                await client.execute_unary(request=request, method=GET_SATELLITE,
                                           headers=headers)

        async def loop(worker: int, stop_at: float) -> None:
            nonlocal done
            i = worker
            while time.perf_counter() < stop_at:
                await one(i)
                i += concurrency
                done += 1

        await asyncio.gather(*(loop(w, time.perf_counter() + 0.5) for w in range(concurrency)))
        done = 0
        started = time.perf_counter()
        await asyncio.gather(*(loop(w, started + seconds) for w in range(concurrency)))
        return done / (time.perf_counter() - started)


def console_load(suite: Suite, runs: int, hang_s: float = 120.0) -> dict[str, object]:
    """Milliseconds from navigation to the first frame in which the catalog moved (the
    console's own `window.skybridgeConsole.firstMotionMs`), over `runs` fresh pages."""
    from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS, DIST, VIEWPORT

    if not CHROMIUM.exists() or not (DIST / "index.html").exists():
        return {"skipped": f"no {CHROMIUM} or no built console (make console)"}
    from playwright.sync_api import sync_playwright

    token = suite.minter.mint("bench", ["orbit.read"], "b")
    seen: list[float] = []
    drawn: list[int] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                context = browser.new_context(viewport=VIEWPORT)
                context.add_init_script(
                    f"sessionStorage.setItem('skybridge.token', {json.dumps(token)})")
                page = context.new_page()
                page.goto(suite.gateway + "/")
                page.wait_for_function(
                    "window.skybridgeConsole && (window.skybridgeConsole.firstMotionMs "
                    "!== null || window.skybridgeConsole.errors.length > 0)",
                    timeout=hang_s * 1000)
                state = json.loads(page.evaluate("JSON.stringify(window.skybridgeConsole)"))
                context.close()
                errors += [str(e) for e in state["errors"]]
                if state["firstMotionMs"] is not None:
                    seen.append(float(state["firstMotionMs"]))
                    drawn.append(int(state["satelliteCount"]))
        finally:
            browser.close()
    return {"runs": runs, "first_motion_ms_median": statistics.median(seen) if seen else None,
            "first_motion_ms_max": max(seen) if seen else None,
            "satellites_drawn": max(drawn) if drawn else 0, "errors": errors[:5]}


async def run(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    suite = Suite(folder)
    suite.start()
    try:
        await suite.wait_ready()
        catalog, names = await load_catalog(suite, args.satellites)
        print(f"catalog: {catalog} satellites")
        added_median: list[float] = []
        added_p99: list[float] = []
        medians: list[tuple[float, float]] = []
        for _ in range(args.rounds):
            direct, via = await latency(suite, names, args.calls)
            d50, v50 = statistics.median(direct) * 1e3, statistics.median(via) * 1e3
            d99 = statistics.quantiles(direct, n=100)[98] * 1e3
            v99 = statistics.quantiles(via, n=100)[98] * 1e3
            medians.append((d50, v50))
            added_median.append(v50 - d50)
            added_p99.append(v99 - d99)
            print(f"latency: direct median {d50:.3f} ms, gateway {v50:.3f} ms "
                  f"(+{v50 - d50:.3f} ms; p99 +{v99 - d99:.3f} ms)")
        ratios: dict[str, list[float]] = {"binary": [], "json": []}
        rates: dict[str, list[float]] = {"grpc": [], "binary": [], "json": []}
        for round_ in range(args.rounds):
            order = ["grpc", "binary", "json"] if round_ % 2 == 0 else ["json", "binary", "grpc"]
            measured = {how: await throughput(suite, names, how, args.seconds, args.concurrency)
                        for how in order}
            for how, rate in measured.items():
                rates[how].append(rate)
            for how in ("binary", "json"):
                ratios[how].append(measured[how] / measured["grpc"])
            print(f"throughput: direct {measured['grpc']:,.0f}/s, gateway binary "
                  f"{measured['binary']:,.0f}/s ({measured['binary'] / measured['grpc']:.2f}x), "
                  f"JSON {measured['json']:,.0f}/s ({measured['json'] / measured['grpc']:.2f}x)")
        console = ({"skipped": "--skip-console"} if args.skip_console else
                   await asyncio.to_thread(console_load, suite, args.console_runs))
        print(f"console: {console}")
    finally:
        suite.stop()
    result: dict[str, object] = {
        "bench": "gateway", "catalog": catalog, "calls_per_round": args.calls,
        "concurrency": args.concurrency,
        "direct_median_ms": round(statistics.median(m[0] for m in medians), 3),
        "gateway_median_ms": round(statistics.median(m[1] for m in medians), 3),
        "added_median_ms": round(statistics.median(added_median), 3),
        "added_p99_ms": round(statistics.median(added_p99), 3),
        "direct_calls_per_s": round(statistics.median(rates["grpc"])),
        "gateway_binary_calls_per_s": round(statistics.median(rates["binary"])),
        "gateway_json_calls_per_s": round(statistics.median(rates["json"])),
        "throughput_ratio_binary": round(statistics.median(ratios["binary"]), 3),
        "throughput_ratio_json": round(statistics.median(ratios["json"]), 3),
        "console": console,
    }
    first = console.get("first_motion_ms_max")
    added = statistics.median(added_median)
    ratio = min(statistics.median(ratios["binary"]), statistics.median(ratios["json"]))
    result["targets_met"] = {
        "added_median_ms<=2": added <= TARGET_ADDED_MEDIAN_MS,
        "throughput_ratio>=0.5": ratio >= TARGET_THROUGHPUT_RATIO,
        "console_first_motion<=5s": (None if not isinstance(first, int | float)
                                     else first <= TARGET_CONSOLE_SECONDS * 1000),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--satellites", type=int, default=10_000)
    parser.add_argument("--console-runs", type=int, default=3)
    parser.add_argument("--skip-console", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="skybridge-bench-gateway-"))
    try:
        result = asyncio.run(run(args, folder))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
