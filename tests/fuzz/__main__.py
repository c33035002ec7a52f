"""The long contract fuzz run (`make fuzz`):

    python -m tests.fuzz --calls 100000 --seed 1 --backend sqlite
    python -m tests.fuzz --calls 100000 --seed 1 --backend postgres   # SKYBRIDGE_TEST_PG_URL

Starts the four services in this process on a fresh store (a temporary SQLite file, or
fresh PostgreSQL schemas that are dropped afterwards), sends the calls, and prints the
totals by status code and by service, the violations grouped by class and method with one
example each (`--examples` for more), and as its last line one JSON object with the
totals. Exits 1 when there is any violation, 2 when the run could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from shared.auth import TokenMinter, ensure_dev_keys
from shared.config import Settings
from tests.fuzz.harness import Fuzzer
from tests.fuzz.pool import Pool
from tests.fuzz.suite import FuzzSuite


class Unavailable(Exception):
    """The backend asked for cannot be reached."""


def settings_for(backend: str, directory: Path) -> tuple[Settings, str | None]:
    """Settings on a fresh store, and the PostgreSQL schema prefix to drop afterwards."""
    from tests.conftest import PG_URL, postgres_unavailable

    private, public = directory / "keys" / "jwt.pem", directory / "keys" / "jwt.pub.pem"
    ensure_dev_keys(private, public)
    base = Settings(jwt_private_key_path=private, jwt_public_key_path=public, dev_keys=False,
                    grace_seconds=5.0, log_format="text")
    if backend == "sqlite":
        return replace(base, database_url=f"sqlite+aiosqlite:///{directory / 'fuzz.db'}"), None
    reason = postgres_unavailable()
    if reason is not None:
        raise Unavailable(f"--backend postgres: {reason}")
    prefix = f"fz{uuid.uuid4().hex[:10]}_"
    return replace(base, database_url=PG_URL, db_schema_prefix=prefix), prefix


async def run(args) -> int:
    with tempfile.TemporaryDirectory(prefix="skybridge-fuzz-") as directory:
        settings, prefix = settings_for(args.backend, Path(directory))
        minter = TokenMinter(settings.jwt_private_key_path.read_bytes(),
                             issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        suite = FuzzSuite(settings, minter)
        started = time.perf_counter()
        try:
            await suite.start()
            pool = Pool()
            failed = await suite.warm_up(pool)
            print(f"started the suite and warmed up in {time.perf_counter() - started:.1f} s "
                  f"({len(pool)} names known)", flush=True)
            for line in failed:
                print(f"warm-up step failed: {line}", flush=True)
            fuzzer = Fuzzer(suite.targets, minter, seed=args.seed, backend=args.backend,
                            concurrency=args.concurrency, deadline=args.deadline,
                            quiet_steps=suite.quiet_steps, pool=pool)
            await fuzzer.open()
            every = max(1, args.calls // 20)

            def progress(index: int) -> None:
                if (index + 1) % every == 0:
                    report = fuzzer.report
                    print(f"  {report.calls:>7} calls, {len(report.violations)} violations, "
                          f"{time.perf_counter() - started:.0f} s", flush=True)

            try:
                report = await fuzzer.run(args.calls, progress)
            finally:
                await fuzzer.close()
        finally:
            await suite.close()
            if prefix is not None:
                from tests.conftest import drop_schemas

                drop_schemas(prefix)
    if args.samples:
        print(report.render_methods())
    print(report.render(examples=args.examples))
    print(report.json_line(), flush=True)
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--deadline", type=float, default=15.0, help="seconds a call may take")
    parser.add_argument("--examples", type=int, default=1, help="examples per violation group")
    parser.add_argument("--samples", action="store_true",
                        help="also print, per method, the answers by mode and a sample of each")
    args = parser.parse_args(argv)
    # the servers' own logs go to the fuzzer's collector only (it reports them)
    logging.basicConfig(level=logging.ERROR, handlers=[logging.NullHandler()])
    try:
        return asyncio.run(run(args))
    except Unavailable as error:
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
