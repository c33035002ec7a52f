"""Fixtures of the browser tests: the whole suite with the gateway (one process, free ports,
a temporary SQLite database), Debian's Chromium driven by Playwright (never a downloaded
browser), and a page that records every error the browser reports.

The console must already be built (`cd services/gateway/console && npm ci && npm run
build`); nothing here builds it. Without /usr/bin/chromium or the built console the tests
skip with the reason, unless `SKYBRIDGE_REQUIRE_CONSOLE=1` (CI), which makes that a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.console.replay import SENSOR_GROUP_ID
from tests.console.suite import Suite, start_suite, stop_suite
from tests.processes import ROOT

CHROMIUM = Path(os.environ.get("SKYBRIDGE_CHROMIUM", "/usr/bin/chromium"))
DIST = ROOT / "services" / "gateway" / "console" / "dist"
ARTIFACTS = ROOT / "var" / "artifacts" / "console"
REQUIRE = os.environ.get("SKYBRIDGE_REQUIRE_CONSOLE", "") == "1"
#: Headless with WebGL on SwiftShader (software GL through ANGLE): `--disable-gpu` alone
#: would leave Cesium without WebGL. No sandbox (the tests run as root), and none of the
#: browser's own background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
]
VIEWPORT = {"width": 1280, "height": 800}
#: Only ends a hang: a loaded 2-core machine renders SwiftShader frames slowly.
HANG_MS = 90_000


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if not (DIST / "index.html").exists():
        return (f"the console is not built ({DIST}/index.html is missing: "
                "cd services/gateway/console && npm ci && npm run build)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (make install)"
    return None


@pytest.fixture(scope="session")
def console_ready() -> None:
    reason = _missing()
    if reason is not None:
        if REQUIRE:
            pytest.fail(f"SKYBRIDGE_REQUIRE_CONSOLE=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
async def suite(console_ready, tmp_path_factory):
    """orbit, provisioning, linkbroker, threat and the gateway, seeded, on free ports. The
    threat service reads its sensors from the group the defense test imports (see
    replay.py)."""
    folder = tmp_path_factory.mktemp("console-suite")
    running = await start_suite(folder, {
        "SKYBRIDGE_THREAT_SENSOR_GROUP": f"groups/{SENSOR_GROUP_ID}",
        # A cold link broker plans its first path slowly on a loaded 2-core machine; the
        # cap on unary calls (10 s by default) only ends hangs here.
        "SKYBRIDGE_CALL_TIMEOUT_SECONDS": "120",
    })
    yield running
    code = await stop_suite(running)
    assert code == 0, f"the suite exited {code}:\n{running.output()}"


@pytest.fixture(scope="session")
async def browser(console_ready):
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@dataclass
class Watched:
    """A page and every problem the browser reported on it."""

    page: object
    suite: Suite
    problems: list[str] = field(default_factory=list)

    async def state(self) -> dict:
        return json.loads(await self.page.evaluate("JSON.stringify(window.skybridgeConsole)"))

    async def wait_for(self, expression: str) -> None:
        """Waits until `expression` (JS, over `s = window.skybridgeConsole`) holds, failing
        at once on a problem; the timeout only ends a hang."""
        await self.page.wait_for_function(
            f"(() => {{ const s = window.skybridgeConsole; "
            f"return s !== undefined && (s.errors.length > 0 || ({expression})); }})()",
            timeout=HANG_MS, polling=100)
        state = await self.state()
        assert not state["errors"], f"the console shows errors: {state['errors']}"
        assert not self.problems, self.problems

    async def sign_in(self, *scopes: str, tenant: str = "contoso") -> None:
        """Signs in through the page: the development-token form with these scopes."""
        page = self.page
        await page.goto(self.suite.url)
        await page.wait_for_selector("#dev-form:not([hidden])", timeout=HANG_MS)
        for box in await page.query_selector_all("#dev-scopes input[type=checkbox]"):
            wanted = await box.get_attribute("value") in scopes
            if wanted != await box.is_checked():
                await box.click()
        await page.fill("#dev-form input[name=tenant]", tenant)
        async with page.expect_navigation(timeout=HANG_MS):
            await page.click("#dev-submit")
        await page.wait_for_function(
            "window.skybridgeConsole && window.skybridgeConsole.scopes.length > 0",
            timeout=HANG_MS)
        assert sorted((await self.state())["scopes"]) == sorted(scopes)


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::")[-1])


@pytest.fixture
async def watched(browser, suite, request):
    from playwright.async_api import Error as PlaywrightError

    """A fresh browser context and page; at the end a screenshot goes to
    var/artifacts/console/, and any browser error (console.error, an uncaught exception, a
    failed request, an HTTP error answer, a request to anywhere but the gateway) fails the
    test."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    seen = Watched(page, suite)
    origin = suite.url.rstrip("/")

    def on_console(message) -> None:
        if message.type == "error":
            seen.problems.append(f"console.error: {message.text}")

    # A navigation (signing in reloads the page) aborts what the page it leaves still had
    # in flight (a Cesium worker script, a tile): the browser's doing, not a failure of
    # the console or the gateway. Such aborts land while the navigation is under way: from
    # its request to the new document's DOMContentLoaded.
    navigating = {"now": False}

    def on_request(req) -> None:
        if req.is_navigation_request() and req.frame == page.main_frame:
            navigating["now"] = True
        if not (req.url.startswith(origin) or req.url.startswith(("data:", "blob:"))):
            seen.problems.append(f"request outside the gateway: {req.url}")

    def on_loaded(_page) -> None:
        navigating["now"] = False

    def on_request_failed(req) -> None:
        if navigating["now"] and req.failure == "net::ERR_ABORTED":
            return
        seen.problems.append(f"request failed: {req.url} ({req.failure})")

    def on_response(response) -> None:
        if response.status >= 400:
            seen.problems.append(f"HTTP {response.status}: {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.problems.append(f"uncaught: {error}"))
    page.on("requestfailed", on_request_failed)
    page.on("domcontentloaded", on_loaded)
    page.on("request", on_request)
    page.on("response", on_response)
    try:
        yield seen
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            # The picture shows the globe once its imagery tiles are in (a short wait).
            with contextlib.suppress(PlaywrightError):
                await page.wait_for_function(
                    "!window.skybridgeConsole || window.skybridgeConsole.tilesLoaded",
                    timeout=15_000)
            await page.screenshot(path=str(ARTIFACTS / f"{_artifact_name(request.node.nodeid)}.png"))
        finally:
            # What the browser said while the test ran; closing aborts the open streams,
            # which the browser reports as failed requests of its own making.
            problems = list(seen.problems)
            await context.close()
    assert not problems, "the browser reported:\n" + "\n".join(problems)
