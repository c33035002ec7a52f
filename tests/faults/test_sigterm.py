"""SIGTERM under load, for each service with its usual streams open.

One process (the victim) gets SIGTERM while retrying clients call it and its server streams
are open. The drain must go: health NOT_SERVING first (seen on a health Watch), open server
streams end UNAVAILABLE with ErrorInfo reason DRAINING, in-flight unary calls finish (the
only UNAVAILABLE a unary attempt may see is a refusal, which the client re-sends), no call
fails once the client has re-sent it to the second process (or the restarted one), and the
process exits 0. The shutdown time (SIGTERM -> exit) is measured and printed, and written
to `shutdown.json` under the test's tmp dir and to `shutdown-seconds.json` in the run's tmp
dir; it is reported, not asserted.

Client failures are asserted too: every attempt is OK or UNAVAILABLE, and none fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import pytest
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import linkbroker_pb2 as link_pb
from skybridge.linkbroker.v1 import linkbroker_pb2_grpc
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc
from skybridge.provisioning.v1 import provisioning_pb2 as prov_pb
from skybridge.provisioning.v1 import resources_pb2 as prov_res
from skybridge.threat.v1 import threat_pb2, threat_pb2_grpc

from shared.clients import orbit as orbit_client
from shared.interceptors import Lifecycle
from tests.conftest import bearer
from tests.faults.harness import (
    HANG,
    NOT_SERVING,
    POSTGRES_ONLY,
    Load,
    channel_to,
    code_of,
    health_statuses,
)
from tests.faults.provisioning_load import (
    check_store,
    customer_token,
    feed_token,
    seed_customer,
    stub_for,
    terminal_writers,
)
from tests.linkbroker.suite import window
from tests.waiting import until

#: Calls answered before SIGTERM, and again after the victim exited.
BATCH = 30
ORBIT_SERVICE = orbit_pb2.DESCRIPTOR.services_by_name["OrbitService"]
LINK_SERVICE = link_pb.DESCRIPTOR.services_by_name["LinkBrokerService"]
THREAT_SERVICE = threat_pb2.DESCRIPTOR.services_by_name["ThreatService"]
#: The grace is far longer than any drain should take: a drain that waits it out shows.
GRACE = "30"


@dataclass
class Followed:
    """A server stream read to its end: the first message (when one is expected) proves
    it open; once `go` is set it is read on until it ends."""

    name: str
    call: object
    expect_first: bool
    #: The ends the drain may give it. A stream that has had no message yet is retried by
    #: the channel's retry policy on UNAVAILABLE (it is NO_SIDE_EFFECTS), so the DRAINING
    #: end is replaced by the retry's (no process to take it: UNAVAILABLE, no ErrorInfo).
    ends: tuple = ((grpc.StatusCode.UNAVAILABLE, "DRAINING"),)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    end: tuple | None = None
    details: str = ""
    ended_at: float = 0.0
    #: Messages read after SIGTERM (what was on the way, then nothing once it drains).
    after_signal: int = 0
    task: asyncio.Task | None = None

    def start(self, go: asyncio.Event) -> Followed:
        self.task = asyncio.create_task(self._follow(go))
        return self

    async def _follow(self, go: asyncio.Event) -> None:
        try:
            if self.expect_first:
                first = await self.call.read()
                assert first is not grpc.aio.EOF, f"{self.name} ended before its first message"
            self.opened.set()
            await go.wait()
            while await self.call.read() is not grpc.aio.EOF:
                self.after_signal += 1
            self.end = (grpc.StatusCode.OK, None)
        except grpc.aio.AioRpcError as error:
            self.end = code_of(error)
            self.details = error.details()
        self.ended_at = time.monotonic()


def record_shutdown(tmp_path, service: str, seconds: float) -> None:
    """Add the figure to `shutdown-seconds.json` in the run's tmp dir (one per service)."""
    summary = tmp_path.parent / "shutdown-seconds.json"
    figures = json.loads(summary.read_text()) if summary.exists() else {}
    figures[service] = round(seconds, 3)
    summary.write_text(json.dumps(figures, indent=2))
    print(f"shutdown figures: {summary}")


def pair_target(*services) -> str:
    """One channel target over several processes (pick_first moves on when one goes)."""
    return "ipv4:" + ",".join(service.target for service in services)


async def drill(name: str, victim, direct: grpc.aio.Channel, streams: list[Followed],
                load: Load, tmp_path, restart=None, clients_strict: bool = True) -> dict:
    """SIGTERM `victim` under `load` with `streams` open on `direct`; checks the drain and
    returns the figures. `restart` (optional) starts the process again once it exited.

    `clients_strict` (the default): also assert that no client call failed (every attempt
    OK or UNAVAILABLE) and that every unary attempt in flight at SIGTERM ended OK (or was
    refused). This found calls that reached the server as the drain began failing
    CANCELLED at its stop (grpc cancels what it accepted but did not hand over yet): the
    suite's channels now watch health and the drain waits `SKYBRIDGE_DRAIN_DELAY_SECONDS`
    after NOT_SERVING. Off, such calls are only recorded in the figures
    (`attempts_neither_ok_nor_unavailable`, `in_flight_outcomes`)."""
    health: list = []
    watching = asyncio.Event()
    watcher = asyncio.create_task(health_statuses(direct, health, watching))
    go = asyncio.Event()
    for stream in streams:
        stream.start(go)
    try:
        assert await until(watching.is_set, within=HANG)
        for stream in streams:
            assert await until(lambda s=stream: s.opened.is_set() or s.end, within=HANG)
            assert stream.end is None, (stream.name, stream.end, stream.details)
        load.start()
        assert await until(lambda: load.ok >= BATCH, within=HANG)
        signalled = time.monotonic()
        victim.terminate()
        go.set()
        code = await victim.wait()
        seconds = time.monotonic() - signalled
        if restart is not None:
            await restart()
        at_exit = load.ok
        assert await until(lambda: load.ok >= at_exit + BATCH, within=HANG)
        outcomes = await load.finish()
        await asyncio.wait_for(asyncio.gather(*(s.task for s in streams)), HANG)
        await asyncio.wait_for(watcher, HANG)
    finally:
        go.set()
        for stream in streams:
            stream.call.cancel()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    print(f"\nshutdown {name}: {seconds:.2f} s")
    in_flight = load.in_flight_at(signalled)
    odd = [(round(start - signalled, 4), round(end - signalled, 4), status.name, details)
           for start, end, status, details in load.timeline
           if status not in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE)]
    figures = {
        "service": name, "shutdown_seconds": round(seconds, 3), "exit_code": code,
        "calls_ok": load.ok, "calls_ok_at_exit": at_exit, "attempts": outcomes.summary(),
        "in_flight_at_sigterm": len(in_flight),
        "in_flight_outcomes": sorted({f"{c.name}: {d}" for _, _, c, d in in_flight}),
        "unavailable_details": sorted({f"{c}/{r}: {d}" for c, r, d in outcomes.details}),
        # (start, end) seconds after SIGTERM, code, details
        "attempts_neither_ok_nor_unavailable": odd,
        "streams": {s.name: f"{s.end[0].name}/{s.end[1]}: {s.details}" for s in streams},
        "stream_messages_after_sigterm": {s.name: s.after_signal for s in streams},
    }
    (tmp_path / "shutdown.json").write_text(json.dumps(figures, indent=2))
    record_shutdown(tmp_path, name, seconds)
    print(f"sigterm {name}: {json.dumps(figures)}")
    assert code == 0, victim.output()
    after = [(moment, status) for moment, status in health if moment > signalled]
    assert after and after[0][1] == NOT_SERVING, (health, signalled)
    turned = after[0][0]
    for stream in streams:
        assert stream.end in stream.ends, (stream.name, stream.end, stream.details)
        assert turned <= stream.ended_at, f"{stream.name} ended before health turned"
    if clients_strict:
        assert outcomes.failed == [], outcomes.failed
        assert {code for code, _ in outcomes.attempts} <= {grpc.StatusCode.OK,
                                                           grpc.StatusCode.UNAVAILABLE}, \
            outcomes.summary()
        # A unary attempt in flight when the drain began finishes; a later one may be
        # refused (UNAVAILABLE, re-sent by the client).
        for _, _, status, details in in_flight:
            assert status == grpc.StatusCode.OK or details == Lifecycle.DRAINING, \
                (status, details)
    return figures


async def sigterm_provisioning(services, settings, minter, tmp_path, *, clients_strict=True,
                               feed_open: int = 0):
    """Two replicas on one schema; writers register terminals through both addresses
    (with `feed_open` WatchEvents streams open on the victim); afterwards no acknowledged
    write is lost and no create that failed CANCELLED was applied."""
    extra = {"SKYBRIDGE_GRACE_SECONDS": GRACE}
    victim = await services.start("provisioning", **extra)
    other = await services.start("provisioning", **extra)
    channel, stub = stub_for(settings, pair_target(victim, other))
    direct, direct_stub = stub_for(settings, victim.target)
    try:
        meta = customer_token(minter)
        customer, subscriptions = await seed_customer(direct_stub, meta, (1000,) * 4)
        streams = [Followed(f"WatchEvents-{i}", direct_stub.WatchEvents(
            prov_pb.WatchEventsRequest(), metadata=feed_token(minter), timeout=HANG),
            True) for i in range(feed_open)]
        load = terminal_writers(stub, meta, customer, subscriptions,
                                also_refused=() if clients_strict else (
                                    grpc.StatusCode.CANCELLED,))
        figures = await drill("provisioning", victim, direct, streams, load, tmp_path,
                              clients_strict=clients_strict)
        figures.update(await check_store(settings, stub, minter, customer, load.outcomes))
        (tmp_path / "shutdown.json").write_text(json.dumps(figures, indent=2))
    finally:
        await channel.close()
        await direct.close()
    return figures


@POSTGRES_ONLY
async def test_sigterm_provisioning(services, settings, minter, tmp_path):
    """Provisioning drains under write load."""
    await sigterm_provisioning(services, settings, minter, tmp_path)


@POSTGRES_ONLY
async def test_sigterm_provisioning_with_watch_events_streams_open(services, settings,
                                                                   minter, tmp_path):
    """20 WatchEvents streams open on the victim while writers commit events: each ends
    UNAVAILABLE DRAINING, and none holds the drain. (A feed loop that waited with
    asyncio.wait_for lost the drain's cancel when it landed as a commit woke it, Python
    3.11, and the drain sat out its whole grace: see shared.wakeup.woken.)"""
    await sigterm_provisioning(services, settings, minter, tmp_path, feed_open=20)


def orbit_reads(stub, meta) -> Load:
    def call_for(worker: int, n: int):
        if n % 2:
            return (lambda: stub.GetGroup(orbit_pb2.GetGroupRequest(
                name="groups/starlink-gen1"), metadata=meta, wait_for_ready=True)), n
        return (lambda: stub.ListSatellites(orbit_pb2.ListSatellitesRequest(page_size=100),
                                            metadata=meta, wait_for_ready=True)), n
    return Load(call_for, workers=4)


async def sigterm_orbit(services, settings, minter, tmp_path, *, clients_strict=True):
    """Two replicas on one (seeded) catalog; readers call both while a large Propagate
    stream (Gen1, one chunk per step) is open on the victim."""
    extra = {"SKYBRIDGE_GRACE_SECONDS": GRACE}
    victim = await services.start("orbit", **extra)
    other = await services.start("orbit", **extra)
    meta = bearer(minter, "orbit.read", tenant="skybridge", subject="reader")
    channel = channel_to(settings, "orbit", ORBIT_SERVICE, pair_target(victim, other))
    direct = channel_to(settings, "orbit", ORBIT_SERVICE, victim.target)
    try:
        request = orbit_client.propagate_request(
            group="groups/starlink-gen1", start=datetime.now(UTC), step_s=60.0, count=4000,
            chunk_steps=1)
        propagate = Followed("Propagate", orbit_pb2_grpc.OrbitServiceStub(direct).Propagate(
            request, metadata=meta, timeout=HANG), True)
        load = orbit_reads(orbit_pb2_grpc.OrbitServiceStub(channel), meta)
        return await drill("orbit", victim, direct, [propagate], load, tmp_path,
                           clients_strict=clients_strict)
    finally:
        await channel.close()
        await direct.close()


@POSTGRES_ONLY
async def test_sigterm_orbit(services, settings, minter, tmp_path):
    await sigterm_orbit(services, settings, minter, tmp_path)


def threat_reads(stub, meta) -> Load:
    def call_for(worker: int, n: int):
        if n % 2:
            return (lambda: stub.ListSensors(threat_pb2.ListSensorsRequest(), metadata=meta,
                                             wait_for_ready=True)), n
        return (lambda: stub.ListTracks(threat_pb2.ListTracksRequest(), metadata=meta,
                                        wait_for_ready=True)), n
    return Load(call_for, workers=4)


async def sigterm_threat(services, settings, minter, tmp_path, *, clients_strict=True):
    """Threat keeps its tracks in one process, so the clients ride out the restart of the
    same process on the same port; StreamTracks and WatchAlerts are open on it."""
    orbit = await services.start("orbit")
    extra = {"SKYBRIDGE_GRACE_SECONDS": GRACE, "SKYBRIDGE_ORBIT_PORT": orbit.port}
    victim = await services.start("threat", **extra)
    meta = bearer(minter, "defense", tenant="skybridge", subject="watch-officer")
    channel = channel_to(settings, "threat", THREAT_SERVICE, victim.target)
    direct = channel_to(settings, "threat", THREAT_SERVICE, victim.target)
    try:
        direct_stub = threat_pb2_grpc.ThreatServiceStub(direct)
        alerts = Followed("WatchAlerts", direct_stub.WatchAlerts(
            threat_pb2.WatchAlertsRequest(), metadata=meta, timeout=HANG), False,
            ends=((grpc.StatusCode.UNAVAILABLE, "DRAINING"), (grpc.StatusCode.UNAVAILABLE, None)))
        tracks = Followed("StreamTracks", direct_stub.StreamTracks(
            threat_pb2.StreamTracksRequest(), metadata=meta, timeout=HANG), True)
        load = threat_reads(threat_pb2_grpc.ThreatServiceStub(channel), meta)

        async def restart():
            await victim.start()

        return await drill("threat", victim, direct, [alerts, tracks], load, tmp_path,
                           restart=restart, clients_strict=clients_strict)
    finally:
        await channel.close()
        await direct.close()


@POSTGRES_ONLY
async def test_sigterm_threat(services, settings, minter, tmp_path):
    await sigterm_threat(services, settings, minter, tmp_path)


def linkbroker_reads(stub, meta, link: str) -> Load:
    def call_for(worker: int, n: int):
        if n % 2:
            return (lambda: stub.GetLink(link_pb.GetLinkRequest(name=link), metadata=meta,
                                         wait_for_ready=True)), n
        return (lambda: stub.ListRegions(link_pb.ListRegionsRequest(), metadata=meta,
                                         wait_for_ready=True)), n
    return Load(call_for, workers=4)


async def sigterm_linkbroker(services, settings, minter, tmp_path, *, clients_strict=True):
    """Two link brokers (with orbit and provisioning processes); readers call both while a
    WatchLink stream on a link of an active terminal is open on the victim."""
    orbit = await services.start("orbit")
    provisioning = await services.start("provisioning")
    extra = {"SKYBRIDGE_GRACE_SECONDS": GRACE, "SKYBRIDGE_ORBIT_PORT": orbit.port,
             "SKYBRIDGE_PROVISIONING_PORT": provisioning.port,
             "SKYBRIDGE_LINKBROKER_BLOCK_SLOTS": "60"}
    victim = await services.start("linkbroker", **extra)
    other = await services.start("linkbroker", **extra)
    meta = bearer(minter, "provisioning.write", "links.write", tenant="contoso",
                  subject="contoso-admin")
    channel = channel_to(settings, "linkbroker", LINK_SERVICE, pair_target(victim, other))
    direct = channel_to(settings, "linkbroker", LINK_SERVICE, victim.target)
    prov_channel, prov_stub = stub_for(settings, provisioning.target)
    try:
        customer, terminal = await active_terminal(prov_stub, meta)
        direct_stub = linkbroker_pb2_grpc.LinkBrokerServiceStub(direct)
        link = (await direct_stub.RequestLink(link_pb.RequestLinkRequest(
            customer=customer, terminal=terminal, region="westus2", bandwidth_mbps=10.0,
            window=window(10), request_id="fault-link-1"), metadata=meta,
            timeout=HANG)).link
        watch = Followed("WatchLink", direct_stub.WatchLink(
            link_pb.WatchLinkRequest(name=link.name), metadata=meta, timeout=HANG), True)
        load = linkbroker_reads(linkbroker_pb2_grpc.LinkBrokerServiceStub(channel), meta,
                                link.name)
        return await drill("linkbroker", victim, direct, [watch], load, tmp_path,
                           clients_strict=clients_strict)
    finally:
        await channel.close()
        await direct.close()
        await prov_channel.close()


@POSTGRES_ONLY
async def test_sigterm_linkbroker(services, settings, minter, tmp_path):
    await sigterm_linkbroker(services, settings, minter, tmp_path)


async def active_terminal(stub, meta, tag: str = "1") -> tuple[str, str]:
    """A customer with an active subscription and an ACTIVE terminal near Quincy, WA."""
    customer, (subscription,) = await seed_customer(stub, meta, (5,))
    terminal = (await stub.CreateTerminal(prov_pb.CreateTerminalRequest(
        parent=customer, terminal=prov_res.Terminal(
            serial_number=f"UT-LINK-{tag}", subscription=subscription,
            location=common_pb2.GeodeticPoint(latitude_deg=47.23, longitude_deg=-119.85)),
        request_id=f"fault-terminal-{tag}"), metadata=meta)).terminal
    terminal = (await stub.ProvisionTerminal(prov_pb.ProvisionTerminalRequest(
        name=terminal.name, request_id=f"fault-provision-{tag}"), metadata=meta)).terminal
    terminal = (await stub.ActivateTerminal(prov_pb.ActivateTerminalRequest(
        name=terminal.name, request_id=f"fault-activate-{tag}"), metadata=meta)).terminal
    return customer, terminal.name


pytestmark = pytest.mark.timeout(600)
