"""Shared pieces of the fault tests: real service processes (`python -m services.<name>`) on
PostgreSQL, client channels with the suite's retry policy, a write loop that re-sends a call
whose outcome is unknown with the same request_id, and direct reads of a service's schema.

Nothing here waits on a clock: conditions are awaited with `tests.waiting.until`, and every
deadline only ends a hang."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.channels import ChannelFactory
from shared.status import details_of
from tests.conftest import PG_URL
from tests.processes import ROOT, environment, free_port
from tests.waiting import until

DSN = PG_URL.replace("postgresql+psycopg://", "postgresql://")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
#: Only ends a hang; never a verdict on speed.
HANG = 120.0
#: Outcomes of a write that say nothing about whether it happened: re-send it, same request_id.
UNKNOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

POSTGRES_ONLY = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


def _log_files(out: Path, err: Path):
    return open(out, "wb"), open(err, "wb")  # noqa: SIM115 - closed by the caller


@dataclass
class Service:
    """One `python -m services.<name>` process; its output goes to files (a pipe nobody
    reads would block the process once full)."""

    name: str
    port: int
    settings: object
    logs: Path
    extra: dict = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    runs: int = 0
    #: The module run with `python -m` (the service's own unless a test says otherwise).
    module: str = ""

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _files(self) -> tuple[Path, Path]:
        stem = self.logs / f"{self.name}-{self.port}-{self.runs}"
        return stem.with_suffix(".out"), stem.with_suffix(".err")

    async def start(self) -> Service:
        """Launch (again, on the same port after a stop)."""
        assert self.proc is None or self.proc.returncode is not None
        self.runs += 1
        out, err = self._files()
        env = environment(self.settings, **{f"SKYBRIDGE_{self.name.upper()}_PORT": self.port},
                          **self.extra)
        stdout, stderr = _log_files(out, err)
        with stdout, stderr:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module or f"services.{self.name}", cwd=ROOT, env=env,
                stdout=stdout, stderr=stderr)
        return self

    def output(self) -> str:
        out, err = self._files()
        text = ""
        for path in (out, err):
            if path.exists():
                text += path.read_text(errors="replace")[-4000:]
        return text

    async def serving(self) -> None:
        """Wait until the process answers health SERVING (it may still be starting)."""
        async with grpc.aio.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def ready() -> bool:
                if self.proc.returncode is not None:
                    raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n"
                                         f"{self.output()}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    answer = await health.Check(health_pb2.HealthCheckRequest(),
                                                wait_for_ready=True, timeout=5)
                    return answer.status == SERVING
                return False

            assert await until(ready, within=HANG, every=0.05), \
                f"{self.name} never SERVING:\n{self.output()}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    async def wait(self) -> int:
        return await asyncio.wait_for(self.proc.wait(), HANG)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


class Services:
    """Launches service processes for one test and kills whatever is left at the end."""

    def __init__(self, settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.started: list[Service] = []

    async def start(self, name: str, port: int | None = None, **extra) -> Service:
        service = Service(name, port or free_port(), self.settings, self.logs, extra)
        self.started.append(service)
        await service.start()
        await service.serving()
        return service

    async def close(self) -> None:
        for service in self.started:
            if service.proc is not None and service.proc.returncode is None:
                service.proc.kill()
                await service.proc.wait()


def channel_to(settings, service: str, descriptor, target: str) -> grpc.aio.Channel:
    """A channel with the suite's options and retry policy (`shared.channels`), with a call
    deadline cap that only ends a hang."""
    factory = ChannelFactory(replace(settings, call_timeout_seconds=HANG))
    return factory.channel(service, [descriptor], target=target)


def code_of(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str | None]:
    return error.code(), details_of(error).reason


@dataclass
class Outcomes:
    """What the clients saw: every attempt's status (with the ErrorInfo reason) and the
    acknowledged writes."""

    attempts: Counter = field(default_factory=Counter)
    acked: dict = field(default_factory=dict)
    refused: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)
    details: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        return ", ".join(f"{code.name}/{reason}: {n}"
                         for (code, reason), n in sorted(self.attempts.items(),
                                                         key=lambda item: str(item[0])))


async def settle(call, outcomes: Outcomes, *, definitive=()) -> tuple[str, object]:
    """Run `call()` (one attempt) until its outcome is known: re-sent (the same request,
    so the same request_id) while it fails UNAVAILABLE or DEADLINE_EXCEEDED. Returns
    ("ok", answer) or ("refused", error) for a code in `definitive`; anything else is
    recorded as failed."""
    while True:
        try:
            answer = await call()
        except grpc.aio.AioRpcError as error:
            code, reason = code_of(error)
            outcomes.attempts[(code, reason)] += 1
            if code in UNKNOWN:
                outcomes.details[(code.name, reason, error.details())] += 1
                await asyncio.sleep(0.02)  # a breather between re-sends, not a verdict
                continue
            if code in definitive:
                return "refused", error
            outcomes.failed.append((code.name, reason, error.details()))
            return "failed", error
        outcomes.attempts[(grpc.StatusCode.OK, None)] += 1
        return "ok", answer


async def schema_connection(settings, service: str) -> psycopg.AsyncConnection:
    schema = f"{settings.db_schema_prefix}{service}"
    return await psycopg.AsyncConnection.connect(
        DSN, autocommit=True, options=f"-csearch_path={schema}")


async def rows(settings, service: str, sql: str, params=None) -> list[tuple]:
    async with await schema_connection(settings, service) as connection:
        return await (await connection.execute(sql, params)).fetchall()


async def health_statuses(channel: grpc.aio.Channel, into: list, started: asyncio.Event):
    """Follow the health Watch of the whole server, appending (monotonic time, status); set
    `started` on the first answer. Ends when the server ends the stream."""
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(),
                                                     timeout=HANG)
    try:
        async for answer in call:
            into.append((time.monotonic(), answer.status))
            started.set()
    except grpc.aio.AioRpcError as error:
        into.append((time.monotonic(), error.code()))


def pg_cluster_command(action: str) -> list[str]:
    """`pg_ctlcluster` for the cluster the tests use: the one listening on the port of
    `SKYBRIDGE_TEST_PG_URL` (another cluster on the machine is never touched)."""
    port = str(psycopg.conninfo.conninfo_to_dict(DSN).get("port") or 5432)
    listed = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    for version, name, cluster_port, *_ in (line.split() for line in listed if line.strip()):
        if cluster_port == port:
            return ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action]
    raise LookupError(f"no local PostgreSQL cluster listens on port {port}")


async def pg_accepts() -> bool:
    try:
        async with await psycopg.AsyncConnection.connect(DSN, connect_timeout=3) as connection:
            await connection.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


async def run(*command: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), HANG)
    return proc.returncode, out.decode(errors="replace")


async def ensure_pg_running() -> None:
    """Start the cluster if it is down and wait until it accepts connections."""
    if not await pg_accepts():
        await run(*pg_cluster_command("start"))
    assert await until(pg_accepts, within=HANG, every=0.2), "PostgreSQL did not come back"


@dataclass
class Load:
    """`workers` tasks making calls one after the other until `stop`, each call settled
    (`settle`). `call_for(worker, n)` gives the n-th call of a worker as (one attempt, a
    key), or None when that worker is done; `on_ok(key, answer)` records an answer.
    Every attempt's (start, end, code, details) goes to `timeline` (monotonic seconds)."""

    call_for: object
    on_ok: object = None
    on_refused: object = None
    definitive: tuple = ()
    workers: int = 6
    outcomes: Outcomes = field(default_factory=Outcomes)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list = field(default_factory=list)
    timeline: list = field(default_factory=list)
    ok: int = 0

    def start(self) -> Load:
        self.tasks = [asyncio.create_task(self._work(i)) for i in range(self.workers)]
        return self

    async def finish(self) -> Outcomes:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), HANG)
        return self.outcomes

    async def _work(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            made = self.call_for(worker, n)
            n += 1
            if made is None:
                return
            attempt, key = made

            async def timed(attempt=attempt):
                started = time.monotonic()
                try:
                    answer = await attempt()
                except grpc.aio.AioRpcError as error:
                    self.timeline.append((started, time.monotonic(), error.code(),
                                          error.details()))
                    raise
                self.timeline.append((started, time.monotonic(), grpc.StatusCode.OK, ""))
                return answer

            kind, answer = await settle(timed, self.outcomes, definitive=self.definitive)
            if kind == "ok":
                self.ok += 1
                if self.on_ok is not None:
                    self.on_ok(key, answer)
            elif kind == "refused" and self.on_refused is not None:
                self.on_refused(key, answer)

    def in_flight_at(self, moment: float) -> list[tuple]:
        """The attempts that had started and not yet ended at `moment`."""
        return [entry for entry in self.timeline if entry[0] < moment < entry[1]]
