"""The whole suite with the gateway in one `python -m services` process, for the browser
tests: free ports, a temporary SQLite database (seeded defaults), its own signing keys and
development tokens on (as `make run` has them).

`python -m tests.console.suite` runs it in the foreground and prints the console's URL, to
look at the console by hand against the same setup the tests use."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.auth import TokenMinter, ensure_dev_keys
from shared.config import Settings
from tests.processes import ROOT, environment, free_port

SERVICES = ("orbit", "provisioning", "linkbroker", "threat", "gateway")
#: Only ends a hang (the orbit service seeds and warms its propagator before it serves).
START_TIMEOUT_S = 240.0


@dataclass
class Suite:
    """A running suite: where each service listens, and a minter for its tokens."""

    ports: dict[str, int]
    minter: TokenMinter
    logs: Path
    proc: asyncio.subprocess.Process | None = None
    announced: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}/"

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def bearer(self, *scopes: str, tenant: str = "contoso") -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.minter.mint('console-test', scopes, tenant)}"),)

    def output(self) -> str:
        text = ""
        for name in ("suite.out", "suite.err"):
            path = self.logs / name
            if path.exists():
                text += path.read_text(errors="replace")[-6000:]
        return text


def suite_settings(folder: Path) -> Settings:
    keys = folder / "keys"
    private, public = keys / "jwt.pem", keys / "jwt.pub.pem"
    ensure_dev_keys(private, public)
    return Settings(database_url=f"sqlite+aiosqlite:///{folder / 'skybridge.db'}",
                    jwt_private_key_path=private, jwt_public_key_path=public)


def _log_files(folder: Path):
    # Files, not pipes: a pipe nobody reads would block the suite once full.
    return open(folder / "suite.out", "wb"), open(folder / "suite.err", "wb")  # noqa: SIM115


async def start_suite(folder: Path, extra: dict[str, str] | None = None) -> Suite:
    """Starts the five services and returns once every one has announced it listens."""
    settings = suite_settings(folder)
    ports = {name: free_port() for name in SERVICES}
    env = environment(
        settings,
        **{f"SKYBRIDGE_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        SKYBRIDGE_SERVICES=",".join(SERVICES),
        SKYBRIDGE_SEED="true",
        # Development tokens need development keys; the keys above already exist, so the
        # supervisor keeps them.
        SKYBRIDGE_DEV_KEYS="true",
        SKYBRIDGE_GATEWAY_DEV_TOKENS="true",
        SKYBRIDGE_LOG_FORMAT="text",
        **(extra or {}))
    suite = Suite(ports, TokenMinter(settings.jwt_private_key_path.read_bytes(),
                                     issuer=settings.jwt_issuer, audience=settings.jwt_audience),
                  folder)
    out, err = _log_files(folder)
    with out, err:
        suite.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services", cwd=ROOT, env=env, stdout=out, stderr=err)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while True:
        lines = (folder / "suite.out").read_text(errors="replace").splitlines()
        suite.announced = [line.split()[0] for line in lines if " listening on " in line]
        if sorted(suite.announced) == sorted(SERVICES):
            return suite
        if suite.proc.returncode is not None or loop.time() > deadline:
            output = suite.output()
            await stop_suite(suite)
            raise RuntimeError(f"the suite did not start (announced {suite.announced}):\n{output}")
        await asyncio.sleep(0.1)


async def stop_suite(suite: Suite) -> int | None:
    """SIGTERM, then SIGKILL if it has not drained in time; the exit code."""
    proc = suite.proc
    if proc is None or proc.returncode is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 60)
    except TimeoutError:
        proc.kill()
        return await proc.wait()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


async def _main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="skybridge-console-") as tmp:
        suite = await start_suite(Path(tmp))
        print(f"console: {suite.url}", flush=True)
        for name in SERVICES:
            print(f"  {name:<13} {suite.target(name)}", flush=True)
        with contextlib.suppress(OSError):
            answer = await asyncio.to_thread(_get, suite.url + "dev/tokens")
            print(f"  dev tokens: {answer}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await stop_suite(suite)


if __name__ == "__main__":
    asyncio.run(_main())
