"""How soon the console shows a 10,000-satellite catalog moving, in headless Chromium.

`python -m tests.console.motion [--satellites 10000] [--runs 3]` starts the whole suite
with the gateway (as the browser tests do), tops the seeded catalog up to the number asked
with GenerateConstellation, opens the built console signed in with `orbit.read` (the token
put in sessionStorage before the page loads, so sign-in is not timed), and reads
`window.skybridgeConsole.firstMotionMs`: ms from navigation start to the first frame in
which the satellites moved. One JSON object per run, then a last line with the median.

A measurement, not a test: nothing asserts on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

import grpc
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc

from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS, DIST, VIEWPORT
from tests.console.suite import start_suite, stop_suite


def shells_for(count: int) -> list[orbit_pb2.WalkerShell]:
    """Walker shells (one satellite a plane, at most 1,000 planes a shell) adding `count`."""
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


async def top_up(suite, satellites: int) -> int:
    async with grpc.aio.insecure_channel(suite.target("orbit")) as channel:
        stub = orbit_pb2_grpc.OrbitServiceStub(channel)
        read = suite.bearer("orbit.read")
        total = (await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(page_size=1),
                                           metadata=read, timeout=60)).total_size
        if total < satellites:
            await stub.GenerateConstellation(orbit_pb2.GenerateConstellationRequest(
                shells=shells_for(satellites - total), group_id="motion-fill",
                display_name="Filler for the motion measurement", request_id="motion-fill"),
                metadata=suite.bearer("orbit.write"), timeout=120)
        return (await stub.ListSatellites(orbit_pb2.ListSatellitesRequest(page_size=1),
                                          metadata=read, timeout=60)).total_size


async def measure(satellites: int, runs: int) -> None:
    from playwright.async_api import async_playwright

    if not (DIST / "index.html").exists():
        raise SystemExit(f"build the console first ({DIST} is missing)")
    with tempfile.TemporaryDirectory(prefix="skybridge-motion-") as tmp:
        suite = await start_suite(Path(tmp))
        try:
            total = await top_up(suite, satellites)
            token = suite.minter.mint("motion", ["orbit.read"], "contoso")
            seen = []
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
                for run in range(runs):
                    context = await browser.new_context(viewport=VIEWPORT)
                    await context.add_init_script(
                        f"sessionStorage.setItem('skybridge.token', {json.dumps(token)})")
                    page = await context.new_page()
                    await page.goto(suite.url)
                    await page.wait_for_function(
                        "window.skybridgeConsole && (window.skybridgeConsole.firstMotionMs "
                        "!== null || window.skybridgeConsole.errors.length > 0)", timeout=120_000)
                    state = json.loads(await page.evaluate(
                        "JSON.stringify(window.skybridgeConsole)"))
                    await context.close()
                    print(json.dumps({"run": run, "catalog": total,
                                      "satellites": state["satelliteCount"],
                                      "firstMotionMs": state["firstMotionMs"],
                                      "timings": state["timings"], "errors": state["errors"]}),
                          flush=True)
                    if state["firstMotionMs"] is not None:
                        seen.append(state["firstMotionMs"])
                await browser.close()
            print(json.dumps({"catalog": total, "runs": runs,
                              "firstMotionMs_median": statistics.median(seen) if seen else None,
                              "firstMotionMs_max": max(seen) if seen else None}))
        finally:
            await stop_suite(suite)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--satellites", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(measure(args.satellites, args.runs))


if __name__ == "__main__":
    main()
