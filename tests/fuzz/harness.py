"""The contract-driven fuzzer: sends generated calls to running servers and checks every
answer against the suite's error contract.

For every answer:

- the code is never INTERNAL or UNKNOWN;
- every error carries a `google.rpc.ErrorInfo` (and a `grpc-status-details-bin` that matches
  the call's code);
- every INVALID_ARGUMENT carries a `BadRequest` with at least one field violation;
- a refused call to a mutating method (one not declared `idempotency_level =
  NO_SIDE_EFFECTS`) changed nothing in any store (see `StoreProbe` and `Fuzzer._mutate`);

and at the end every server's health (the whole server and each of its services) is SERVING.

Tokens: each call carries a real token with the scopes the server says the method accepts
(`kit.server.interceptor.auth.scopes`), all of them or one, for an operator, a partner or a
customer tenant, so calls get past auth; a few carry none or a forged one.

Determinism: call `i` is generated from `random.Random(f"{seed}/{i}")` and the method
schedule from the seed. Background work is not left to chance: the targets' background
loops are stopped or driven by `quiet_steps` (run before a mutating call is measured), and
tasks the services spawn (re-planning, alert evaluation) are awaited before the store is read
on either side of the call; mutating calls run alone (unary reads share a lock; server streams,
which are all declared NO_SIDE_EFFECTS, need none). What the run cannot fix are the names the
servers generate (uuids), which the pool hands to later calls, and the order of concurrent
answers into the pool: with `concurrency=1` only the server-generated names differ between
two runs of one seed. No verdict depends on timing: a call over its deadline is counted
(DEADLINE_EXCEEDED) but is not a violation, and the store is not compared for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from shared.auth import TokenMinter
from tests.fuzz.generate import MODES, Case, Generator, Method, methods_of
from tests.fuzz.pool import Pool

log = logging.getLogger("skybridge.fuzz")

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024)]
#: Tables that hold only bookkeeping of the migrations or of stopped background loops.
BOOKKEEPING_TABLES = frozenset(("alembic_version", "feed_cursors"))
#: Messages read from a server stream before it is cancelled.
STREAM_MESSAGES = 3
OK = grpc.StatusCode.OK
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- the targets -------------------------------------------------------------------------

@dataclass
class Target:
    """One running server (a `ServiceKit`) and a channel to it."""

    name: str
    kit: object
    channel: grpc.aio.Channel | None = None
    methods: list[Method] = field(default_factory=list)

    @property
    def scopes(self) -> dict[str, frozenset[str] | None]:
        return self.kit.server.interceptor.auth.scopes

    async def open(self) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.kit.server.port}",
                                                 options=CHANNEL_OPTIONS)
        pool = descriptor_pool.Default()
        # every service the server registered (a server may hold several)
        self.methods = methods_of(pool.FindServiceByName(name)
                                  for name in self.kit.server.service_names)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()


# --- the store ---------------------------------------------------------------------------

class StoreProbe:
    """Reads one service's store (SQLite file or PostgreSQL schema) from its own connection.

    `token()` is cheap and changes whenever a transaction committed a change (SQLite's
    `PRAGMA data_version`; on PostgreSQL each table's row count and newest `xmin`, which
    every insert and update renews); `tables()` is a digest of every row of every table,
    computed only when the token moved, to tell a real change from a commit that changed
    nothing.
    """

    def __init__(self, name: str, location, exclude=BOOKKEEPING_TABLES) -> None:
        self.name = name
        self.location = location
        self.exclude = exclude
        self._cached: tuple[object, dict[str, tuple[int, str]]] | None = None
        self._tables: list[str] | None = None
        self._token_sql: str | None = None
        if location.is_sqlite:
            from sqlalchemy.engine import make_url

            path = make_url(location.url).database
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                           isolation_level=None, check_same_thread=False)
            self._sqlite.execute("PRAGMA busy_timeout=10000")
            self._pg = None
        else:
            import psycopg

            dsn = location.url.replace("postgresql+psycopg://", "postgresql://")
            self._pg = psycopg.connect(dsn, autocommit=True,
                                       application_name=f"skybridge:{location.schema}:fuzz"[:63])
            self._sqlite = None

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            self._pg.close()

    def _table_names(self) -> list[str]:
        # the schema is fixed once the migrations ran (the servers are up before a probe)
        if self._tables is None:
            self._tables = self._read_table_names()
        return self._tables

    def _read_table_names(self) -> list[str]:
        if self._sqlite is not None:
            rows = self._sqlite.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
        else:
            rows = self._pg.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_type = 'BASE TABLE' ORDER BY table_name",
                (self.location.schema,)).fetchall()
        return [r[0] for r in rows if r[0] not in self.exclude]

    def token(self) -> object:
        if self._sqlite is not None:
            return self._sqlite.execute("PRAGMA data_version").fetchone()[0]
        if self._token_sql is None:
            schema = self.location.schema
            self._token_sql = " UNION ALL ".join(
                f'SELECT \'{t}\', count(*), max(xmin::text::bigint) FROM "{schema}"."{t}"'
                for t in self._table_names())
        if not self._token_sql:
            return ()
        return tuple(self._pg.execute(self._token_sql).fetchall())

    def tables(self) -> dict[str, tuple[int, str]]:
        """table -> (row count, digest of its rows)."""
        out = {}
        for table in self._table_names():
            if self._sqlite is not None:
                rows = self._sqlite.execute(f'SELECT * FROM "{table}"').fetchall()
                digest = hashlib.sha256()
                for text in sorted(repr(r) for r in rows):
                    digest.update(text.encode())
                    digest.update(b"\n")
                out[table] = (len(rows), digest.hexdigest())
            else:
                count, digest = self._pg.execute(
                    f'SELECT count(*), md5(coalesce(string_agg(md5(t::text), \',\' '
                    f'ORDER BY md5(t::text)), \'\')) FROM "{self.location.schema}"."{table}" t'
                ).fetchone()
                out[table] = (count, digest)
        return out

    def cluster_mark(self) -> int | None:
        """PostgreSQL: the next transaction id of the whole cluster. A transaction gets an id
        when it first writes, so while this stays put nothing anywhere wrote (committed or
        not) and no store needs reading. None on SQLite."""
        if self._pg is None:
            return None
        return self._pg.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
                                ).fetchone()[0]

    def state(self) -> tuple[object, dict[str, tuple[int, str]]]:
        """(token, tables), the tables digested again only when the token moved."""
        token = self.token()
        if self._cached is None or self._cached[0] != token:
            self._cached = (token, self.tables())
        return self._cached


# --- answers and violations ----------------------------------------------------------------

@dataclass
class Answer:
    code: grpc.StatusCode
    message: str = ""
    reason: str | None = None
    domain: str | None = None
    violations: tuple[str, ...] = ()
    trace_id: str | None = None
    responses: list = field(default_factory=list)
    status_problem: str | None = None   # grpc-status-details-bin missing pieces or mismatched
    stream_open: bool = False           # a server stream we cancelled after reading

    @classmethod
    def of_error(cls, error: grpc.aio.AioRpcError, responses=()) -> Answer:
        answer = cls(error.code(), error.details() or "", responses=list(responses))
        try:
            status = rpc_status.from_call(error)
        except ValueError as problem:  # code in the details differs from the call's
            answer.status_problem = str(problem)
            return answer
        if status is None:
            return answer
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                answer.reason, answer.domain = info.reason, info.domain
                answer.trace_id = info.metadata.get("trace_id")
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                answer.violations += tuple(f"{v.field}: {v.description}"
                                           for v in bad.field_violations)
        if status.code != code_pb2.Code.Value(answer.code.name):
            answer.status_problem = f"status code {status.code} in the details"
        return answer

    def text(self, limit: int = 400) -> str:
        parts = [self.code.name]
        if self.reason:
            parts.append(f"reason={self.reason}")
        if self.message:
            parts.append(repr(self.message[:200]))
        if self.violations:
            parts.append("violations=[" + "; ".join(v[:100] for v in self.violations[:3]) + "]")
        if self.status_problem:
            parts.append(f"status details: {self.status_problem}")
        text = " ".join(parts)
        return text if len(text) <= limit else text[:limit] + "..."


#: Violation classes, in the order the report lists them.
CLASSES = ("INTERNAL", "UNKNOWN", "error without ErrorInfo",
           "INVALID_ARGUMENT without BadRequest", "store changed on refusal",
           "status details do not match the call", "not SERVING at the end")


@dataclass
class Violation:
    klass: str
    method: str              # /pkg.Service/Method, or the service for health
    case: str                # the request, abridged
    answer: str
    principal: str = ""
    server_error: str = ""   # the exception the server logged for this call, if any
    extra: str = ""          # what changed in the store
    index: int | None = None  # the call's number in the run (its generator is seed/index)

    @property
    def cause(self) -> str:
        """What the violations of one bug share: the server's exception type and where it
        was raised, the tables a refusal wrote, or the start of the answer."""
        if self.extra:
            return ", ".join(sorted({c.split(" rows")[0] for c in self.extra.split("; ")}))
        if self.server_error:
            kind = self.server_error.split(": ", 1)[0]
            where = self.server_error.rfind(" at ")
            return kind + (self.server_error[where:] if where >= 0 else "")
        return self.answer[:90]

    def render(self) -> str:
        number = f" (call {self.index})" if self.index is not None else ""
        lines = [f"  [{self.klass}] {self.method}{number}",
                 f"    request:  {self.case}",
                 f"    answer:   {self.answer}"]
        if self.principal:
            lines.append(f"    caller:   {self.principal}")
        if self.server_error:
            lines.append(f"    server:   {self.server_error}")
        if self.extra:
            lines.append(f"    store:    {self.extra}")
        return "\n".join(lines)


@dataclass
class Report:
    seed: int
    backend: str = ""
    calls: int = 0
    by_code: Counter = field(default_factory=Counter)
    by_service: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_mode: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    methods_called: set = field(default_factory=set)
    by_method: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    #: method -> seconds its calls took in all (store checks included)
    method_seconds: Counter = field(default_factory=Counter)
    #: (method, mode, code) -> the first (request, answer) seen, for `--samples`
    samples: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    store_checks: int = 0
    serving_at_end: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0
    server_errors_outside_calls: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: where the time went: store reads, quiescing, waiting for the lock
    timings: Counter = field(default_factory=Counter)
    #: calls the generator failed to build (bugs of the fuzzer, not of the servers)
    fuzzer_errors: list[str] = field(default_factory=list)
    #: calls over the client's deadline (not violations: a verdict never rests on timing)
    slow: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def count(self, klass: str) -> int:
        return sum(1 for v in self.violations if v.klass == klass)

    @property
    def failed(self) -> bool:
        return bool(self.violations or self.fuzzer_errors)

    def totals(self) -> dict:
        return {
            "calls": self.calls,
            "by_code": dict(sorted(self.by_code.items())),
            "internal": self.by_code.get("INTERNAL", 0),
            "unknown": self.by_code.get("UNKNOWN", 0),
            "errors_without_errorinfo": self.count("error without ErrorInfo"),
            "invalid_argument_without_badrequest": self.count(
                "INVALID_ARGUMENT without BadRequest"),
            "status_details_mismatch": self.count("status details do not match the call"),
            "serving_at_end": dict(self.serving_at_end),
            "store_checks": self.store_checks,
            "store_changes_on_refusal": self.count("store changed on refusal"),
            "deadline_exceeded": self.by_code.get("DEADLINE_EXCEEDED", 0),
            "violations": len(self.violations),
            "fuzzer_errors": len(self.fuzzer_errors),
            "seed": self.seed,
            "backend": self.backend,
            "seconds": round(self.seconds, 1),
        }

    def classes(self) -> dict[str, tuple[int, int, Counter]]:
        """class -> (answers, methods, causes): the server's exception where it logged one,
        else the answer's reason or the start of its message."""
        out: dict[str, tuple[int, set, Counter]] = {}
        for v in self.violations:
            count, methods, causes = out.get(v.klass, (0, set(), Counter()))
            causes[v.cause] += 1
            methods.add(v.method)
            out[v.klass] = (count + 1, methods, causes)
        order = {k: i for i, k in enumerate(CLASSES)}
        return {k: (n, len(m), c) for k, (n, m, c) in
                sorted(out.items(), key=lambda kv: order.get(kv[0], 99))}

    def grouped(self) -> dict[tuple[str, str], list[Violation]]:
        """Violations by (class, method), classes in `CLASSES` order."""
        groups: dict[tuple[str, str], list[Violation]] = defaultdict(list)
        for v in self.violations:
            groups[(v.klass, v.method)].append(v)
        order = {k: i for i, k in enumerate(CLASSES)}
        return dict(sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])))

    def render(self, examples: int = 1) -> str:
        out = [f"contract fuzz: {self.calls} calls, seed {self.seed}, {self.backend}, "
               f"{self.seconds:.1f} s, {len(self.methods_called)} methods, "
               f"{self.store_checks} store checks"]
        out.append("by code:    " + ", ".join(f"{k} {v}" for k, v in self.by_code.most_common()))
        out.append("by mode:    " + ", ".join(f"{k} {self.by_mode[k]}" for k in MODES))
        out.append("by kind:    " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_kind.items())))
        out.append("by service:")
        for service, codes in sorted(self.by_service.items()):
            total = sum(codes.values())
            out.append(f"  {service:<28} {total:>7}  " + ", ".join(
                f"{k} {v}" for k, v in codes.most_common()))
        out.append("serving at the end: " + ", ".join(
            f"{k} {'yes' if v else 'NO'}" for k, v in self.serving_at_end.items()))
        out.append("time spent: " + ", ".join(f"{k} {v:.1f} s"
                                               for k, v in self.timings.most_common()))
        for note in self.notes:
            out.append(f"note: {note}")
        if self.slow:
            out.append(f"calls over the deadline (not violations): "
                       f"{sum(len(v) for v in self.slow.values())}")
            for path, cases in sorted(self.slow.items()):
                out.append(f"  {path} x{len(cases)}: {cases[0]}")
        if self.fuzzer_errors:
            out.append(f"fuzzer errors (calls not sent): {len(self.fuzzer_errors)}")
            for line, n in Counter(e.split(": ", 1)[1] for e in self.fuzzer_errors
                                   ).most_common(5):
                out.append(f"  {n} x {line}")
        groups = self.grouped()
        out.append(f"violations: {len(self.violations)} in {len(groups)} groups")
        for klass, (count, methods, causes) in self.classes().items():
            out.append(f"  {klass}: {count} answers from {methods} methods; causes: "
                       + "; ".join(f"{c} (x{n})" for c, n in causes.most_common(6)))
        for (klass, method), items in groups.items():
            out.append(f"- {klass} x{len(items)}: {method}")
            for v in items[:examples]:
                out.append(v.render())
        if self.server_errors_outside_calls:
            out.append(f"server errors logged outside calls: "
                       f"{len(self.server_errors_outside_calls)}")
            for line in Counter(self.server_errors_outside_calls).most_common(10):
                out.append(f"  {line[1]} x {line[0]}")
        return "\n".join(out)

    def render_methods(self) -> str:
        """Per method: answers by mode and code, and a sample of each."""
        out = []
        for path, counts in sorted(self.by_method.items()):
            out.append(f"{path} ({self.method_seconds[path]:.1f} s): "
                       + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
            for (p, mode, code), (request, answer) in sorted(self.samples.items()):
                if p == path and mode in ("random", "hostile"):
                    out.append(f"    {mode}/{code}: {request}\n      -> {answer}")
        return "\n".join(out)

    def json_line(self) -> str:
        return json.dumps(self.totals(), sort_keys=False)


# --- server logs -------------------------------------------------------------------------

class ServerErrors(logging.Handler):
    """Collects the exceptions servers log, by the trace id of the call that raised them
    (the INTERNAL answer carries the same trace id in its ErrorInfo)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.by_trace: dict[str, str] = {}
        self.untraced: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        from shared.telemetry import current_trace_id

        text = record.getMessage()[:200]
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            frames = traceback.extract_tb(record.exc_info[2])
            where = ""
            for frame in reversed(frames):  # the innermost frame of the project's own code
                if frame.filename.startswith(_ROOT) and f"{os.sep}.venv{os.sep}" not in \
                        frame.filename:
                    where = (f" at {os.path.relpath(frame.filename)}:{frame.lineno} "
                             f"in {frame.name}")
                    break
            first_line = (str(error).splitlines() or [""])[0]
            text = f"{type(error).__name__}: {first_line[:200]}{where}"
        trace_id = current_trace_id()
        if trace_id:
            self.by_trace[trace_id] = text
            if len(self.by_trace) > 10_000:
                self.by_trace.pop(next(iter(self.by_trace)))
        else:
            self.untraced.append(f"{record.name}: {text}")


# --- concurrency ---------------------------------------------------------------------------

class SharedExclusive:
    """Many readers or one writer."""

    def __init__(self) -> None:
        self._readers = 0
        self._writer = False
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def shared(self):
        async with self._changed:
            await self._changed.wait_for(lambda: not self._writer)
            self._readers += 1
        try:
            yield
        finally:
            async with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self):
        async with self._changed:
            await self._changed.wait_for(lambda: not self._writer and self._readers == 0)
            self._writer = True
        try:
            yield
        finally:
            async with self._changed:
                self._writer = False
                self._changed.notify_all()


# --- principals --------------------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    tenant: str
    subject: str

    def __str__(self) -> str:
        return f"{self.subject}@{self.tenant}"


#: Who calls: an operator of the suite's own tenant, customers, and a co-sell partner.
PRINCIPALS = (Principal("skybridge", "ops"), Principal("contoso", "contoso-admin"),
              Principal("fabrikam", "fabrikam-admin"), Principal("microsoft", "partner-ms"))
PRINCIPAL_WEIGHTS = (4, 3, 2, 1.5)


# --- the fuzzer --------------------------------------------------------------------------

class Fuzzer:
    def __init__(self, targets: Sequence[Target], minter: TokenMinter, *, seed: int,
                 deadline: float = 15.0, first_message_s: float = 0.5,
                 next_message_s: float = 0.2, concurrency: int = 4,
                 quiet_steps: Sequence[Callable[[], Awaitable]] = (),
                 store_names: Sequence[str] | None = None, backend: str = "",
                 quiesce_timeout: float = 60.0, pool: Pool | None = None) -> None:
        self.targets = list(targets)
        self.minter = minter
        self.seed = seed
        self.deadline = deadline
        self.first_message_s = first_message_s
        self.next_message_s = next_message_s
        self.concurrency = concurrency
        self.quiet_steps = list(quiet_steps)
        self.quiesce_timeout = quiesce_timeout
        self.pool = pool if pool is not None else Pool()
        self.generator = Generator(self.pool)
        self.report = Report(seed=seed, backend=backend)
        self.lock = SharedExclusive()
        self.errors = ServerErrors()
        self._tokens: dict[tuple, str] = {}
        self._callables: dict[str, object] = {}
        self._blocking_channels: dict[str, grpc.Channel] = {}
        self._threads = ThreadPoolExecutor(max(2, concurrency), thread_name_prefix="fuzz")
        self._baseline: set[asyncio.Task] = set()
        self._last: tuple[int | None, dict] | None = None
        self._steps_mark: object = None
        self.methods: list[tuple[Target, Method]] = []
        self.probes: list[StoreProbe] = []
        names = set(store_names) if store_names is not None else None
        for target in self.targets:
            location = getattr(target.kit, "location", None)
            if location is not None and (names is None or target.name in names):
                self.probes.append(StoreProbe(target.name, location))

    # --- set-up ---------------------------------------------------------------------------

    async def open(self) -> None:
        for target in self.targets:
            if target.channel is None:
                await target.open()
            self.methods += [(target, m) for m in target.methods]
        logging.getLogger().addHandler(self.errors)
        self._baseline = set(asyncio.all_tasks())

    async def close(self) -> None:
        logging.getLogger().removeHandler(self.errors)
        for channel in self._blocking_channels.values():
            channel.close()
        self._threads.shutdown(wait=False, cancel_futures=True)
        for probe in self.probes:
            probe.close()
        for target in self.targets:
            await target.close()

    def token_for(self, target: Target, method: Method, principal: Principal,
                  rng: random.Random) -> tuple[tuple[str, str], ...] | None:
        """Metadata with a real token holding the scopes `method` accepts (all of them, or
        one); sometimes none at all, or a forged one."""
        roll = rng.random()
        if roll < 0.015:
            return None
        if roll < 0.03:
            return (("authorization", "Bearer not.a.jwt"),)
        accepted = target.scopes.get(method.path)
        if accepted is None:
            scopes = ("fuzz.none",)  # the method declared nothing: refused by default
        elif not accepted:
            scopes = ()
        elif rng.random() < 0.6:
            scopes = tuple(sorted(accepted))
        else:
            scopes = (rng.choice(sorted(accepted)),)
        key = (principal, scopes)
        if key not in self._tokens:
            self._tokens[key] = self.minter.mint(principal.subject, scopes or ("fuzz.none",),
                                                 principal.tenant, ttl_seconds=6 * 3600)
        return (("authorization", f"Bearer {self._tokens[key]}"),)

    # --- schedule -------------------------------------------------------------------------

    def planned(self, index: int) -> tuple[Target, Method, str | None]:
        """Call `index`: every method once per round, in an order drawn from the seed; in
        the first four rounds each method gets each mode once."""
        n = len(self.methods)
        round_, slot = divmod(index, n)
        order = list(range(n))
        random.Random(f"{self.seed}/round/{round_}").shuffle(order)
        position = order[slot]
        target, method = self.methods[position]
        mode = MODES[(round_ + position) % len(MODES)] if round_ < len(MODES) else None
        return target, method, mode

    # --- calls ----------------------------------------------------------------------------

    def _callable(self, target: Target, method: Method):
        key = method.path
        if key not in self._callables:
            deserialize = GetMessageClass(method.output).FromString
            factory = getattr(target.channel, method.kind)
            self._callables[key] = factory(method.path, request_serializer=lambda body: body,
                                           response_deserializer=deserialize)
        return self._callables[key]

    async def send(self, target: Target, case: Case, metadata) -> Answer:
        method = case.method
        if method.client_streaming:
            return await self._send_blocking(target, case, metadata)
        invoke = self._callable(target, method)
        request = case.body
        try:
            if not method.server_streaming:
                response = await invoke(request, metadata=metadata, timeout=self.deadline)
                return Answer(OK, responses=[response])
            call = invoke(request, metadata=metadata, timeout=self.deadline)
            return await self._read_stream(call)
        except grpc.aio.AioRpcError as error:
            return Answer.of_error(error)

    async def _send_blocking(self, target: Target, case: Case, metadata) -> Answer:
        """A call with a request stream, through grpcio's blocking client in a thread.

        grpc.aio's client reports `INTERNAL "Internal error from Core"` instead of the
        server's status when the server ends the call while the client still writes its
        stream (grpc/grpc#36066: a failed write overwrites the status), which a refusal
        before the whole stream is read always risks; the blocking client reports the
        server's status."""
        method = case.method
        channel = self._blocking_channels.get(target.name)
        if channel is None:
            channel = grpc.insecure_channel(f"127.0.0.1:{target.kit.server.port}",
                                            options=CHANNEL_OPTIONS)
            self._blocking_channels[target.name] = channel
        invoke = getattr(channel, method.kind)(
            method.path, request_serializer=lambda body: body,
            response_deserializer=GetMessageClass(method.output).FromString)
        bodies = list(case.bodies)
        calls: list = []
        stopped = threading.Event()

        def blocking() -> Answer:
            responses: list = []
            try:
                if not method.server_streaming:
                    return Answer(OK, responses=[invoke(iter(bodies), metadata=metadata,
                                                        timeout=self.deadline)])
                call = invoke(iter(bodies), metadata=metadata, timeout=self.deadline)
                calls.append(call)
                for response in call:
                    responses.append(response)
                    if len(responses) >= STREAM_MESSAGES:
                        stopped.set()
                        call.cancel()
                        break
                return Answer(OK, responses=responses, stream_open=stopped.is_set())
            except grpc.RpcError as error:
                if stopped.is_set() and error.code() is grpc.StatusCode.CANCELLED:
                    return Answer(OK, responses=responses, stream_open=True)
                return Answer.of_error(error, responses)

        future = asyncio.get_running_loop().run_in_executor(self._threads, blocking)
        if not method.server_streaming:
            return await future
        window = self.first_message_s + self.next_message_s * (STREAM_MESSAGES - 1)
        try:
            return await asyncio.wait_for(asyncio.shield(future), window)
        except TimeoutError:
            stopped.set()
            for call in calls:
                call.cancel()
            return await future

    async def _read_stream(self, call) -> Answer:
        responses = []
        try:
            for i in range(STREAM_MESSAGES):
                wait = self.first_message_s if i == 0 else self.next_message_s
                try:
                    message = await asyncio.wait_for(call.read(), wait)
                except TimeoutError:
                    return Answer(OK, responses=responses, stream_open=True)
                if message is grpc.aio.EOF:
                    code = await call.code()
                    if code is OK:
                        return Answer(OK, responses=responses)
                    error = grpc.aio.AioRpcError(code, await call.initial_metadata(),
                                                 await call.trailing_metadata(),
                                                 await call.details())
                    return Answer.of_error(error, responses)
                responses.append(message)
            return Answer(OK, responses=responses, stream_open=True)
        except grpc.aio.AioRpcError as error:
            return Answer.of_error(error, responses)
        finally:
            call.cancel()

    # --- quiet and store ------------------------------------------------------------------

    def _service_tasks(self) -> list[asyncio.Task]:
        """Tasks the services spawned (re-planning, evaluations...) and still run: those
        whose coroutine is service code and which did not exist when the fuzzer opened."""
        out = []
        for task in asyncio.all_tasks():
            if task.done() or task in self._baseline:
                continue
            code = getattr(task.get_coro(), "cr_code", None)
            if code is not None and f"{os.sep}services{os.sep}" in code.co_filename:
                out.append(task)
        return out

    async def quiesce(self, steps: bool) -> None:
        """Let the services' own work finish (and, with `steps`, run their background steps
        once), so that what the store holds depends on the calls alone."""
        if steps and self.quiet_steps:
            # the steps only have work after something wrote: skip them while no store moved
            mark = self._stores_mark()
            if mark is None or mark != self._steps_mark:
                for step in self.quiet_steps:
                    await step()
                self._steps_mark = self._stores_mark()
        for _ in range(20):
            pending = self._service_tasks()
            if not pending:
                return
            _, still = await asyncio.wait(pending, timeout=self.quiesce_timeout)
            if still:
                names = sorted({t.get_coro().__qualname__ for t in still})
                self.report.notes.append(f"tasks still running after "
                                         f"{self.quiesce_timeout:.0f} s, left alone: {names}")
                self._baseline |= still

    def _stores_mark(self) -> object:
        """Changes whenever any store may have changed (cheap); None without probes."""
        if not self.probes:
            return None
        mark = self._mark()
        if mark is not None:
            return mark
        return tuple(probe.token() for probe in self.probes)

    def _mark(self) -> int | None:
        return self.probes[0].cluster_mark() if self.probes else None

    def _snapshot(self) -> tuple[int | None, dict[str, tuple[object, dict]]]:
        mark = self._mark()
        if mark is not None and self._last is not None and self._last[0] == mark:
            return self._last
        self._last = (mark, {probe.name: probe.state() for probe in self.probes})
        return self._last

    def _changes(self, snapshot: tuple[int | None, dict[str, tuple[object, dict]]]
                 ) -> list[str]:
        mark, before = snapshot
        if mark is not None and self._mark() == mark:
            return []
        changed = []
        for probe in self.probes:
            old_token, old_tables = before[probe.name]
            if probe.token() == old_token:
                continue
            _, new_tables = probe.state()
            for table in sorted(set(old_tables) | set(new_tables)):
                old = old_tables.get(table, (0, ""))
                new = new_tables.get(table, (0, ""))
                if old != new:
                    changed.append(f"{probe.name}.{table} rows {old[0]} -> {new[0]}")
        return changed

    # --- one call -------------------------------------------------------------------------

    async def one(self, index: int) -> None:
        target, method, mode = self.planned(index)
        rng = random.Random(f"{self.seed}/{index}")
        principal = rng.choices(PRINCIPALS, weights=PRINCIPAL_WEIGHTS)[0]
        metadata = self.token_for(target, method, principal, rng)
        try:
            case = self.generator.case(method, rng, mode, tenant=principal.tenant)
        except Exception as error:  # noqa: BLE001 - a generator bug must not end the run
            where = traceback.extract_tb(error.__traceback__)[-1]
            self.report.fuzzer_errors.append(
                f"call {index} {method.path}: {type(error).__name__}: {str(error)[:150]} "
                f"(tests/fuzz/{os.path.basename(where.filename)}:{where.lineno})")
            return
        started = time.perf_counter()
        who = str(principal) if metadata else "no token"
        if metadata and metadata[0][1] == "Bearer not.a.jwt":
            who = "forged token"
        if method.mutating:
            answer, changes, checked = await self._mutate(target, case, metadata)
        elif method.server_streaming:
            answer, changes, checked = await self.send(target, case, metadata), [], False
        else:
            async with self.lock.shared():
                answer = await self.send(target, case, metadata)
            changes, checked = [], False
        self.report.method_seconds[method.path] += time.perf_counter() - started
        self.record(target, case, answer, who, changes, checked, principal.tenant, index)

    async def _mutate(self, target: Target, case: Case, metadata):
        timings = self.report.timings
        waited = time.perf_counter()
        async with self.lock.exclusive():
            started = time.perf_counter()
            timings["lock wait"] += started - waited
            await self.quiesce(steps=True)
            quiet = time.perf_counter()
            timings["quiesce"] += quiet - started
            before = self._snapshot()
            sent = time.perf_counter()
            timings["store"] += sent - quiet
            answer = await self.send(target, case, metadata)
            checked = (answer.code not in (OK, grpc.StatusCode.DEADLINE_EXCEEDED,
                                           grpc.StatusCode.CANCELLED)
                       and len(case.bodies) == 1)
            if not checked:
                return answer, [], False
            answered = time.perf_counter()
            await self.quiesce(steps=False)
            quiet = time.perf_counter()
            timings["quiesce"] += quiet - answered
            changes = self._changes(before)
            timings["store"] += time.perf_counter() - quiet
            return answer, changes, True

    def record(self, target: Target, case: Case, answer: Answer, who: str,
               changes: list[str], checked: bool, tenant: str | None = None,
               index: int | None = None) -> None:
        method = case.method
        report = self.report
        code = answer.code.name
        report.calls += 1
        report.by_code[code] += 1
        report.by_service[method.short_service][code] += 1
        report.by_mode[case.mode] += 1
        report.by_kind[method.kind] += 1
        report.methods_called.add(method.path)
        report.by_method[method.path][f"{case.mode}:{code}"] += 1
        report.samples.setdefault((method.path, case.mode, code),
                                  (case.summary(300), answer.text(300)))
        if checked:
            report.store_checks += 1
        if answer.code is grpc.StatusCode.DEADLINE_EXCEEDED and len(
                report.slow[method.path]) < 3:
            report.slow[method.path].append(case.summary(300))
        if answer.code is OK:
            for response in answer.responses:
                self.pool.harvest(response, tenant, method.path)
            return

        def violation(klass: str, extra: str = "") -> None:
            server = self.errors.by_trace.get(answer.trace_id or "", "")
            report.violations.append(Violation(klass, method.path, case.summary(),
                                               answer.text(), who, server, extra, index))

        if answer.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            violation(code)
        client_side = (answer.code is grpc.StatusCode.DEADLINE_EXCEEDED
                       and answer.reason is None)
        if answer.status_problem:
            violation("status details do not match the call")
        elif answer.reason is None and not client_side:
            violation("error without ErrorInfo")
        if answer.code is grpc.StatusCode.INVALID_ARGUMENT and not answer.violations:
            violation("INVALID_ARGUMENT without BadRequest")
        if changes:
            violation("store changed on refusal", "; ".join(changes[:6]))

    # --- the run --------------------------------------------------------------------------

    async def run(self, calls: int, progress: Callable[[int], None] | None = None) -> Report:
        started = time.perf_counter()
        counter = iter(range(calls))

        async def worker() -> None:
            for index in counter:
                await self.one(index)
                if progress is not None:
                    progress(index)

        workers = [asyncio.create_task(worker(), name=f"fuzz-worker-{i}")
                   for i in range(max(1, self.concurrency))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
        await self.quiesce(steps=False)
        await self.check_health()
        self.report.server_errors_outside_calls = list(self.errors.untraced)
        self.report.seconds = time.perf_counter() - started
        return self.report

    async def check_health(self) -> None:
        for target in self.targets:
            stub = health_pb2_grpc.HealthStub(target.channel)
            serving = True
            for name in ("", *target.kit.server.service_names):
                try:
                    answer = await stub.Check(health_pb2.HealthCheckRequest(service=name),
                                              timeout=10)
                    ok = answer.status == health_pb2.HealthCheckResponse.SERVING
                except grpc.aio.AioRpcError as error:
                    ok, answer = False, error.code().name
                if not ok:
                    serving = False
                    self.report.violations.append(Violation(
                        "not SERVING at the end", f"{target.name} health {name or '(server)'}",
                        "grpc.health.v1.Health/Check", str(answer).strip()))
            self.report.serving_at_end[target.name] = serving
