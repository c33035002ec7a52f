"""Orbit service end to end against python-sgp4, and VisibleSatellites for 10,000 points.

    .venv/bin/python bench/orbit.py [--steps 1440] [--repeat 3] [--tle PATH]
                                    [--visibility-only] [--visibility-repeat 5]

1. Starts the orbit service as a subprocess (`python -m services.orbit`, SQLite in a
   temporary folder, no seeding), so that its peak resident memory (VmHWM from
   /proc/<pid>/status) is its own.
2. Imports ../shared/data/starlink-2026-05-12.tle through ImportElementSets.
3. Times Propagate for the whole catalog over `--steps` one-minute steps in ITRF, through
   gRPC into numpy arrays in this process (shared.clients.orbit.propagate), against
   python-sgp4's SatrecArray (TEME only, one process, the same element sets and instants,
   in 60-step chunks like the service), both in this run, after one untimed run of the
   service request. Best of `--repeat`.
4. Times VisibleSatellites for 10,000 random ground points (uniform on the sphere, 0..2 km
   altitude) against the full catalog at two elevation masks, best of
   `--visibility-repeat` (5); the figures also give the median of those calls.
   `--visibility-only` skips step 3 (the Propagate figures are then absent).

Targets: service >= 8x python-sgp4 (states per second); VisibleSatellites < 100 ms.
Skips cleanly (exit 0, a JSON line with "skipped") when the data file is absent.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, where bench/platform.py would
# hide the standard library's `platform` module: take the folder off before anything imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import asyncio
import json
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from sgp4.api import SatrecArray  # noqa: E402
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "starlink-2026-05-12.tle"
TARGET_RATIO = 8.0
TARGET_VISIBILITY_MS = 100.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


async def start_service(tmp: Path, port: int):
    from shared.auth import ensure_dev_keys

    private, public = tmp / "jwt.pem", tmp / "jwt.pub.pem"
    ensure_dev_keys(private, public)
    env = dict(os.environ,
               SKYBRIDGE_ORBIT_PORT=str(port),
               SKYBRIDGE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
               SKYBRIDGE_SEED="false",
               SKYBRIDGE_JWT_PRIVATE_KEY=str(private),
               SKYBRIDGE_JWT_PUBLIC_KEY=str(public),
               SKYBRIDGE_DEV_KEYS="false",
               SKYBRIDGE_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.orbit", cwd=str(ROOT), env=env,
        stdout=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(proc.stdout.readline(), 120)  # "orbit listening on ..."
    if b"listening" not in line:
        raise RuntimeError(f"orbit service did not start: {line!r}")
    return proc, private


async def run(args) -> dict:
    from services.orbit.kernel import CatalogPropagator
    from services.orbit.tle import parse_tle
    from shared.auth import TokenMinter
    from shared.clients import orbit as orbit_client

    text = args.text
    sets, _ = parse_tle(text)
    n = len(sets)
    steps = args.steps
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        port = free_port()
        proc, private = await start_service(tmp, port)
        try:
            minter = TokenMinter(private.read_bytes(), issuer="skybridge", audience="skybridge")
            write = (("authorization",
                      f"Bearer {minter.mint('bench', ['orbit.write', 'orbit.read'], 'bench')}"),)
            options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as ch:
                stub = orbit_pb2_grpc.OrbitServiceStub(ch)
                t0 = time.perf_counter()
                answer = await stub.ImportElementSets(
                    orbit_pb2.ImportElementSetsRequest(text=text, group_id="starlink"),
                    metadata=write)
                t_import = time.perf_counter() - t0
                print(f"import: {answer.added_count} added, {answer.rejected_count} rejected "
                      f"in {t_import:.2f} s; service RSS {vm_rss_mb(proc.pid):.0f} MB")
                start_dt = max(s.epoch for s in sets).replace(microsecond=0) + timedelta(
                    hours=1)
                propagation: dict = {}
                if not args.visibility_only:
                    request = orbit_client.propagate_request(
                        all=True, start=start_dt, step_s=60.0, count=steps, frame="itrf")
                    # warm-up, the same request once untimed: the catalog snapshot and the
                    # propagator for this version are built, and both processes have touched
                    # memory for a catalog-day once (on this VM the first touch of fresh
                    # memory costs up to 1 s for 358 MB; later ones about 0.06 s)
                    await orbit_client.propagate(stub, request, metadata=write)
                    t_service = float("inf")
                    result = None
                    for _ in range(args.repeat):
                        result = None
                        t0 = time.perf_counter()
                        result = await orbit_client.propagate(stub, request, metadata=write)
                        t_service = min(t_service, time.perf_counter() - t0)
                    assert result is not None and result.positions.shape == (steps, n, 3)
                    flagged = int(np.count_nonzero(result.error_codes))
                    print(f"service Propagate ITRF {n} sats x {steps} steps: {t_service:.2f} s, "
                          f"{flagged} flagged states; service peak RSS {vm_hwm_mb(proc.pid):.0f} MB")

                    # python-sgp4 reference, same instants (TEME only), 60-step chunks
                    sat_array = SatrecArray([s.to_satrec() for s in sets])
                    jd = np.array([], float)
                    jd0 = orbit_client._timestamp(start_dt)
                    from shared.wire import timestamp_to_jd

                    j0, f0 = timestamp_to_jd(jd0)
                    jd, fr = CatalogPropagator.grid_jd(j0, f0, 60.0, 0, steps)
                    t_ref = float("inf")
                    for _ in range(args.repeat):
                        t0 = time.perf_counter()
                        for i in range(0, steps, 60):
                            sat_array.sgp4(jd[i:i + 60], fr[i:i + 60])
                        t_ref = min(t_ref, time.perf_counter() - t0)
                    del result
                    states = n * steps
                    service_rate, ref_rate = states / t_service, states / t_ref
                    ratio = service_rate / ref_rate
                    print(f"python-sgp4 SatrecArray TEME: {t_ref:.2f} s")
                    print(f"states/s: service {service_rate / 1e6:.2f} M, python-sgp4 "
                          f"{ref_rate / 1e6:.2f} M, ratio {ratio:.2f}x (target {TARGET_RATIO:g}x)")
                    propagation = {
                        "states": states,
                        "service_states_per_s": round(service_rate),
                        "python_sgp4_states_per_s": round(ref_rate),
                        "ratio": round(ratio, 2),
                        "target_ratio": TARGET_RATIO,
                        "service_seconds": round(t_service, 3),
                        "python_sgp4_seconds": round(t_ref, 3),
                    }

                # VisibleSatellites: 10,000 points, full catalog
                rng = np.random.default_rng(1)
                p = 10_000
                lat = np.degrees(np.arcsin(rng.uniform(-1, 1, p)))
                lon = rng.uniform(-180, 180, p)
                alt = rng.uniform(0, 2000, p)
                vis_ms = {}
                vis_median_ms = {}
                vis_pairs = {}
                for min_el in (25.0, 10.0):
                    times = []
                    for _ in range(args.visibility_repeat):
                        t0 = time.perf_counter()
                        vis = await orbit_client.visible_satellites(
                            stub, lat, lon, alt, start_dt, min_el, metadata=write)
                        times.append(time.perf_counter() - t0)
                    best = min(times)
                    vis_ms[min_el] = best * 1e3
                    vis_median_ms[min_el] = float(np.median(times)) * 1e3
                    vis_pairs[min_el] = int(vis.catalog_numbers.size)
                    print(f"VisibleSatellites {p} points x {n} sats, min el {min_el:g} deg: "
                          f"{best * 1e3:.1f} ms end to end (median "
                          f"{vis_median_ms[min_el]:.1f}), {vis_pairs[min_el]} pairs "
                          f"(target < {TARGET_VISIBILITY_MS:g} ms)")
                peak = vm_hwm_mb(proc.pid)
                print(f"service peak RSS (VmHWM): {peak:.0f} MB")
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    return {
        "satellites": n,
        "steps": steps,
        **propagation,
        "service_peak_rss_mb": round(peak, 1),
        "import_seconds": round(t_import, 2),
        "visible_satellites_ms": {f"min_el_{k:g}": round(v, 1) for k, v in vis_ms.items()},
        "visible_satellites_median_ms": {f"min_el_{k:g}": round(v, 1)
                                         for k, v in vis_median_ms.items()},
        "visible_pairs": {f"min_el_{k:g}": v for k, v in vis_pairs.items()},
        "target_visibility_ms": TARGET_VISIBILITY_MS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1440)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tle", default=str(DATA))
    parser.add_argument("--visibility-only", action="store_true",
                        help="skip the Propagate comparison with python-sgp4")
    parser.add_argument("--visibility-repeat", type=int, default=5,
                        help="VisibleSatellites calls per elevation mask (best is reported)")
    args = parser.parse_args()
    if not Path(args.tle).exists():
        print(f"{args.tle} is absent; skipping")
        print(json.dumps({"skipped": f"{args.tle} absent"}))
        return 0
    args.text = Path(args.tle).read_text()
    figures = asyncio.run(run(args))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
