"""What the link broker's geometry costs in memory (part ``memory`` of bench/linkbroker.py).

``memory``: one one-hour block (240 slots) of the seeded Gen1 constellation (4,408
satellites), propagated in-process with the orbit service's kernel and planned for one
terminal, as the broker keeps it now (float32 positions, the stacked k-d tree, the slot
graphs, one region's trees, the terminal's paths: the cache's own count) against the
layout it replaced, measured in the same run: float64 positions and a whole ``SlotRouter``
per slot (with its sky grid). Printed as a ratio.

``estimate``: the worst ``EstimatePath`` the limits allow (a 24 h window starting
at the longest lead, 7 days ahead) against the running suite on PostgreSQL (orbit,
provisioning, linkbroker as processes, see bench/linkbroker_load.py); the broker's RSS
before, after, and its peak (VmHWM), with the budget it runs under.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb
from skybridge.linkbroker.v1 import linkbroker_pb2_grpc

from bench.linkbroker_load import _ts, running_suite
from services.linkbroker.capacity_model import DEFAULT_CAPACITY_MODEL
from services.linkbroker.constellation import Constellation
from services.linkbroker.ephemeris import block_from_states
from services.linkbroker.gateways import default_gateways
from services.linkbroker.routing import SlotRouter
from services.linkbroker.settings import BrokerSettings
from services.linkbroker.slots import slot_index, slot_midpoint
from services.linkbroker.topology import isl_topology
from services.orbit import walker
from services.orbit.kernel import CatalogPropagator
from shared.auth import TokenMinter
from shared.frames import julian_date, teme_to_itrf

SLOTS = 240
TERMINAL = (47.23, -119.85, 0.0, "westus2")


def _arrays_bytes(obj, seen: set[int]) -> int:
    """Bytes of the numpy arrays (and sparse matrices) reachable from ``obj``."""
    import scipy.sparse as sp

    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes if obj.base is None or id(obj.base) not in seen else 0
    if sp.issparse(obj):
        return sum(a.nbytes for a in (obj.data, obj.indices, obj.indptr))
    if isinstance(obj, list | tuple):
        return sum(_arrays_bytes(x, seen) for x in obj)
    if isinstance(obj, dict):
        return sum(_arrays_bytes(x, seen) for x in obj.values())
    fields = getattr(obj, "__dict__", None)
    if fields is None and hasattr(obj, "__dataclass_fields__"):
        fields = {name: getattr(obj, name) for name in obj.__dataclass_fields__}
    return sum(_arrays_bytes(x, seen) for x in (fields or {}).values())


def memory_part(args, figures: dict) -> None:
    """Part ``memory``: one block's bytes against the layout it replaced."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    propagator = CatalogPropagator(walker.preset("starlink_gen1", now, 90000))
    first = slot_index(now) // SLOTS * SLOTS
    times = np.array([np.datetime64(slot_midpoint(first + k).replace(tzinfo=None))
                      for k in range(SLOTS)], dtype="datetime64[us]")
    jd, fr = julian_date(times)
    result = propagator.propagate_jd(jd, fr, with_velocity=True)
    itrf_km = teme_to_itrf(result.position_km, result.jd, result.fr)
    ok = result.error == 0
    block = block_from_states(first, propagator.catalog_numbers, itrf_km, ok,
                              result.position_km[0], result.velocity_km_s[0], 1)
    capacity = DEFAULT_CAPACITY_MODEL
    ours = Constellation(default_gateways(capacity), capacity, budget_bytes=2**36)
    ours.add_block(block)
    lat, lon, alt, region = TERMINAL
    t0 = time.perf_counter()
    ours.plan(lat, lon, alt, first, first + SLOTS, region)
    plan_s = time.perf_counter() - t0
    ours_bytes = ours.cache.total_bytes

    # The replaced layout: float64 positions (and the same k-d tree), a whole router per
    # slot with its sky grid, the same trees and paths.
    tree = block.stacked_tree()
    tree_bytes = tree.data.nbytes + tree.indices.nbytes + tree.size * 72
    routers = 0
    for k in range(SLOTS):
        pos_km = np.where(ok[k][:, None], itrf_km[k], 0.0)
        isl = isl_topology(pos_km, block.pairs, block.kind,
                           max_range_km=capacity.isl_max_range_km)
        router = SlotRouter(pos_km, isl, ours.gateways, ours.regions, capacity=capacity,
                            fibre=ours.fibre, satellite_available=ok[k])
        routers += _arrays_bytes(router, set())
    derived = sum(size for key, size in ours.cache.sizes().items()
                  if key[0] in ("trees", "paths"))
    reference = itrf_km.nbytes + ok.nbytes + tree_bytes + routers + derived
    figures.update(
        memory_block_sats=int(block.catalog_numbers.size), memory_block_slots=SLOTS,
        memory_block_mb=round(ours_bytes / 2**20, 1),
        memory_block_reference_mb=round(reference / 2**20, 1),
        memory_block_ratio=round(reference / ours_bytes, 2),
        memory_block_plan_s=round(plan_s, 2))
    print(f"geometry of one hour ({SLOTS} slots, {block.catalog_numbers.size} satellites, one "
          f"terminal planned): {ours_bytes / 2**20:.0f} MiB, the replaced layout "
          f"{reference / 2**20:.0f} MiB: {reference / ours_bytes:.1f}x less")


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise LookupError(field)


async def _estimate(port: int, keys: Path, start: datetime, hours: float) -> tuple[float, int]:
    minter = TokenMinter((keys / "k.pem").read_bytes(), issuer="skybridge", audience="skybridge")
    who = (("authorization", "Bearer " + minter.mint("bench", ("links.read",), "tenant-0")),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = linkbroker_pb2_grpc.LinkBrokerServiceStub(channel)
        request = pb.EstimatePathRequest(
            location=common_pb2.GeodeticPoint(latitude_deg=TERMINAL[0],
                                              longitude_deg=TERMINAL[1]),
            region=TERMINAL[3], window=common_pb2.TimeWindow(
                start_time=_ts(start), end_time=_ts(start + timedelta(hours=hours))))
        t0 = time.perf_counter()
        answer = await stub.EstimatePath(request, metadata=who, timeout=1800)
        return time.perf_counter() - t0, len(answer.slots)


def estimate_part(args, figures: dict) -> None:
    """Part ``estimate``: the broker's RSS after the worst-case EstimatePath."""
    limits = BrokerSettings.from_env()
    with running_suite("lbmem") as (ports, keys, processes):
        broker = processes[-1].pid
        before = _rss_mb(broker)
        start = datetime.now(UTC) + timedelta(days=limits.max_lead_days, minutes=-5)
        seconds, slots = asyncio.run(_estimate(ports["linkbroker"], keys, start,
                                               limits.max_window_hours))
        after, peak = _rss_mb(broker), _rss_mb(broker, "VmHWM")
    figures.update(
        memory_estimate_window_h=limits.max_window_hours,
        memory_estimate_lead_days=limits.max_lead_days, memory_estimate_slots=slots,
        memory_estimate_s=round(seconds, 1),
        memory_budget_mb=limits.geometry_budget_mb,
        memory_broker_rss_before_mb=round(before), memory_broker_rss_after_mb=round(after),
        memory_broker_rss_peak_mb=round(peak))
    print(f"EstimatePath, {limits.max_window_hours:g} h window {limits.max_lead_days:g} days "
          f"ahead ({slots} slots) in {seconds:.0f} s: broker RSS {before:.0f} -> {after:.0f} "
          f"MiB (peak {peak:.0f}), geometry budget {limits.geometry_budget_mb:g} MiB")
