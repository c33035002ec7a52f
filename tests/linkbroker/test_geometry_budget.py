"""The broker's geometry stays under its memory budget, whatever the window or the callers.

The geometry is real: one Gen1 shell (72 x 22 at 550 km) propagated with SGP4 (heyoka) and
rotated to ITRF in-process, 20-slot blocks, as the orbit service would send them; the
broker plans with it as in production. Budgets are set in blocks' own sizes, so the tests
do not depend on how big a block happens to be.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest

from services.linkbroker import blocks as blocks_module
from services.linkbroker.broker import LinkBroker
from services.linkbroker.capacity_model import DEFAULT_CAPACITY_MODEL
from services.linkbroker.ephemeris import block_from_states
from services.linkbroker.geometry_cache import ByteBudgetCache
from services.linkbroker.settings import BrokerSettings
from services.linkbroker.slots import slot_index, slot_midpoint, slot_start
from services.orbit import walker
from services.orbit.kernel import CatalogPropagator
from shared.frames import julian_date, teme_to_itrf

BLOCK = 20
EPOCH = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
FIRST = slot_index(EPOCH) // BLOCK * BLOCK
SEATTLE = (47.6, -122.3, 50.0, "westus2")


@pytest.fixture(scope="module")
def propagator():
    shell = walker.PRESETS["starlink_gen1"][0]
    return CatalogPropagator(walker.walker_shells((shell,), EPOCH, 90000))


class SgpSource:
    """Blocks as ``OrbitConstellationSource`` gives them, from an in-process propagator;
    records, each time it is asked for a block, how much geometry the broker holds."""

    def __init__(self, propagator, catalog_version: int = 1):
        self.propagator = propagator
        self.catalog_version = catalog_version
        self.broker: LinkBroker | None = None
        self.seen: list[tuple[int, int]] = []  # (bytes cached, blocks loaded) at each load

    async def block(self, first_slot: int, n_slots: int):
        cache = self.broker.constellation.cache
        self.seen.append((cache.total_bytes, len(self.broker.constellation.blocks)))
        await asyncio.sleep(0)  # other plans run here, as they would during a fetch
        return await asyncio.to_thread(self._block, first_slot, n_slots)

    def _block(self, first_slot: int, n_slots: int):
        times = np.array([np.datetime64(slot_midpoint(first_slot + k).replace(tzinfo=None))
                          for k in range(n_slots)], dtype="datetime64[us]")
        jd, fr = julian_date(times)
        result = self.propagator.propagate_jd(jd, fr, with_velocity=True)
        itrf = teme_to_itrf(result.position_km, result.jd, result.fr)
        return block_from_states(first_slot, self.propagator.catalog_numbers, itrf,
                                 result.error == 0, result.position_km[0],
                                 result.velocity_km_s[0], self.catalog_version)


async def run_cpu(function, *args):
    return await asyncio.to_thread(function, *args)


def broker_with(propagator, budget_bytes: float) -> LinkBroker:
    source = SgpSource(propagator)
    settings = BrokerSettings(block_slots=BLOCK, geometry_budget_mb=budget_bytes / 2**20)
    broker = LinkBroker(None, settings, DEFAULT_CAPACITY_MODEL, source, run_cpu,
                        clock=lambda: slot_start(FIRST).timestamp() + 1.0)
    source.broker = broker
    return broker


@pytest.fixture(scope="module")
def block_bytes(propagator) -> int:
    """What one block of this geometry holds, with its graphs, trees and paths."""
    broker = broker_with(propagator, 2**34)
    plan = asyncio.run(broker.plan(*SEATTLE[:3], FIRST, FIRST + BLOCK, SEATTLE[3]))
    assert len(plan.paths) == BLOCK
    return broker.constellation.cache.total_bytes


async def test_a_window_longer_than_the_budget_is_planned_block_by_block(propagator,
                                                                          block_bytes):
    """Six blocks through a budget of 1.5: the same plan as with room for all, never
    more geometry held than the budget, and what was evicted was evicted."""
    lat, lon, alt, region = SEATTLE
    roomy = broker_with(propagator, 2**34)
    tight = broker_with(propagator, 1.5 * block_bytes)
    end = FIRST + 6 * BLOCK
    expected = await roomy.plan(lat, lon, alt, FIRST, end, region)
    got = await tight.plan(lat, lon, alt, FIRST, end, region)
    assert got.paths == expected.paths
    assert len(got.paths) == 6 * BLOCK and not got.unrouted_slots()
    cache = tight.constellation.cache
    assert len(tight.source.seen) == 6
    assert all(held <= cache.budget_bytes for held, _ in tight.source.seen)
    assert cache.total_bytes <= cache.budget_bytes
    assert cache.evictions > 0 and len(tight.constellation.blocks) == 1
    assert len(roomy.constellation.blocks) == 6


async def test_many_callers_wait_for_room_instead_of_growing_the_geometry(propagator,
                                                                          block_bytes):
    """Eight plans at once, each over a different block, through a budget of 2.5 blocks:
    all answer as a roomy broker does, and geometry never exceeds the budget (a block to
    load waits while the blocks held fill it)."""
    lat, lon, alt, region = SEATTLE
    tight = broker_with(propagator, 2.5 * block_bytes)
    roomy = broker_with(propagator, 2**34)
    windows = [(FIRST + i * BLOCK, FIRST + (i + 1) * BLOCK) for i in range(8)]
    got = await asyncio.gather(*(tight.plan(lat, lon, alt, a, b, region) for a, b in windows))
    for (a, b), plan in zip(windows, got, strict=True):
        assert plan.paths == (await roomy.plan(lat, lon, alt, a, b, region)).paths
    cache = tight.constellation.cache
    assert len(tight.source.seen) == 8
    assert max(held for held, _ in tight.source.seen) <= cache.budget_bytes
    assert max(blocks for _, blocks in tight.source.seen) <= 2
    assert cache.total_bytes <= cache.budget_bytes


async def test_float32_positions_choose_the_same_paths_as_float64(propagator, monkeypatch):
    """Positions are kept in float32 (half the bytes): over two blocks from three places
    the paths are the ones float64 positions give, and the round trips agree to the
    0.1 µs plans are rounded to (measured: equal, or one rounding step apart)."""
    places = [SEATTLE, (-33.9, 151.2, 20.0, "australiaeast"), (52.4, 4.9, 0.0, "westeurope")]
    single = broker_with(propagator, 2**34)
    monkeypatch.setattr(blocks_module, "POSITION_DTYPE", np.float64)
    double = broker_with(propagator, 2**34)
    plans64 = [await double.plan(lat, lon, alt, FIRST, FIRST + 2 * BLOCK, region)
               for lat, lon, alt, region in places]
    assert double.constellation.blocks[FIRST].positions_m.dtype == np.float64
    monkeypatch.undo()
    plans32 = [await single.plan(lat, lon, alt, FIRST, FIRST + 2 * BLOCK, region)
               for lat, lon, alt, region in places]
    assert single.constellation.blocks[FIRST].positions_m.dtype == np.float32
    for p32, p64 in zip(plans32, plans64, strict=True):
        assert [(p.hops, p.gateway) for p in p32.paths] == \
            [(p.hops, p.gateway) for p in p64.paths]
        rtt32 = np.array([p.rtt_ms for p in p32.paths])
        rtt64 = np.array([p.rtt_ms for p in p64.paths])
        assert np.all(np.isfinite(rtt64)) and np.max(np.abs(rtt32 - rtt64)) <= 1.5e-4


def test_the_cache_evicts_least_recently_used_first_with_what_derives_from_it():
    discarded = []
    cache = ByteBudgetCache(100, on_discard=lambda key, value: discarded.append(key))
    cache.put("a", "A", 40)
    cache.put("a/1", "A1", 10, owner="a")
    cache.put("b", "B", 40)
    assert cache.get("a") == "A" and cache.get("a/1") == "A1"  # b is the least recent
    cache.put("c", "C", 30)  # 120 bytes: b goes
    assert "b" not in cache and cache.total_bytes == 80 and cache.evictions == 1
    cache.discard("a")  # its derived entry goes with it
    assert "a/1" not in cache and cache.total_bytes == 30
    assert not cache.put("d/1", "D1", 5, owner="d")  # nothing derives from a missing entry
    assert discarded == ["b", "a/1", "a"]
    with pytest.raises(ValueError):
        ByteBudgetCache(0)


def test_a_pinned_entry_outlives_the_budget_until_unpinned():
    cache = ByteBudgetCache(100)
    cache.pin("a")  # before it is stored: a block being loaded
    cache.put("a", "A", 80)
    cache.put("a/1", "A1", 10, owner="a")
    assert not cache.put("b", "B", 60)  # 150: all but the pinned entry goes, b too
    assert list(cache.keys()) == ["a"] and cache.total_bytes == 80 and cache.evictions == 2
    cache.pin("a")  # two holders
    cache.unpin("a")
    assert cache.pinned("a")
    cache.unpin("a")
    assert not cache.pinned("a") and list(cache.keys()) == ["a"]  # within the budget
    cache.put("d", "D", 90)  # 170: now a can go
    assert list(cache.keys()) == ["d"] and cache.total_bytes == 90
