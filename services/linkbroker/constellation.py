"""The constellation as the broker plans with it: blocks of slots, one routing graph a slot.

A :class:`Block` holds the ITRF positions of every satellite at the midpoint of each of
``T`` consecutive 15-second slots (one Propagate call to the orbit service), and the +Grid
laser-link candidates recovered from the orbital planes at the block's first slot.
:class:`Constellation` keeps blocks and, per slot, a
:class:`~services.linkbroker.routing.SlotRouter` (built once, shared by every request that
touches the slot) and, per (block, region), the shortest-path tree from that region's node
to every satellite, filled slot by slot as requests need them. Planning one terminal over a
window then costs a k-d tree query and a few gathers, not a routing computation; and a
terminal's paths over a whole block are kept too (terminals ask again and again: a second
request from the same place costs a lookup).

All of it lives in one :class:`~services.linkbroker.geometry_cache.ByteBudgetCache` under a
byte budget: least recently used first, a block's graphs, trees and paths go with it, and
a block a plan holds (:meth:`Constellation.hold`) is never evicted. Measured for the 4,408
satellites of Gen1 and 240-slot blocks: a block is 65 MB (positions 12.7 MB in float32,
its k-d tree 51 MB), a slot's routing graph 0.27 MB (66 MB a block; the rest of its
router, the 2.1 MB sky grid above all, is not kept), a region's trees 8.6 MB.

Positions are float32: at most 0.25 m off per coordinate at 7,000 km from the Earth's
centre (float32 spacing there is 0.5 m), under 3 ns of one-way latency a hop; the
arithmetic on them is float64.

Terminal visibility over a whole block is one k-d tree over the block's stacked positions:
slot ``k``'s satellites are shifted by ``k * SLOT_OFFSET_M`` along x, so one query of the
terminal shifted the same way, per slot, returns that slot's satellites only (the shift is
far larger than any slant range), and the point index ``k * N + s`` names slot and
satellite at once.

Units: positions metres (ITRF), latencies ms, elevations degrees. Thread-safe: caches are
filled under a lock; the numeric work runs outside it (in the service's CPU pool).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import dijkstra

from services.linkbroker.blocks import SLOT_OFFSET_M, Block, GeometryUnloaded
from services.linkbroker.capacity_model import CapacityModel
from services.linkbroker.gateways import FibreModel, GatewayTable
from services.linkbroker.geometry_cache import ByteBudgetCache
from services.linkbroker.latency import latency_budget
from services.linkbroker.plan import LinkPlan, SlotPath
from services.linkbroker.regions import RegionTable, load_regions
from services.linkbroker.routing import SlotRouter, max_slant_range_m
from services.linkbroker.topology import isl_topology
from shared.geodesy import SPEED_OF_LIGHT_M_S, enu_rotation, geodetic_to_ecef

__all__ = ["Block", "Constellation", "Exclusions", "GeometryUnloaded", "SLOT_OFFSET_M"]

_MS_PER_M = 1e3 / SPEED_OF_LIGHT_M_S
_NO_NODE = -9999

#: A terminal keeps its serving satellite while that satellite's path is within this many
#: ms (one way) of the best one (an assumption: fewer handovers for a negligible cost).
HANDOVER_HYSTERESIS_MS = 1.0

#: Per slot, resource keys that must not be used (full), e.g. ``{"u:44713", "g:gw-eastus"}``.
Exclusions = dict[int, frozenset[str]]

#: Bytes a cached slot path costs (the object, its hop tuple, keys and stored form; by
#: ``sys.getsizeof`` for Gen1 paths of about 10 hops).
SLOT_PATH_BYTES = 1_600
DEFAULT_BUDGET_BYTES = 1024 * 2**20


@dataclass
class _RegionTrees:
    """Shortest-path trees from one region node, per slot of one block (filled lazily)."""

    dist_ms: NDArray[np.float32]  # (T, N): region -> satellite graph distance, ms
    pred: NDArray[np.int32]  # (T, N + G + R) predecessors
    filled: NDArray[np.bool_]  # (T,)

    @property
    def nbytes(self) -> int:
        return self.dist_ms.nbytes + self.pred.nbytes + self.filled.nbytes


class Constellation:
    """Blocks, per-slot routers and per-(block, region) trees; plans terminals.

    Args:
        gateways: the gateway table (drained gateways carry no path).
        capacity: elevation masks, overheads and capacities.
        regions: Azure regions (default: the packaged catalogue).
        fibre: the fibre model.
        budget_bytes: the geometry's memory budget (blocks and all derived from them;
            see the module's docstring for sizes). Blocks held by plans are kept beyond it.
    """

    def __init__(self, gateways: GatewayTable, capacity: CapacityModel, *,
                 regions: RegionTable | None = None, fibre: FibreModel | None = None,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.capacity = capacity
        self.regions = regions or load_regions()
        self.fibre = fibre or FibreModel()
        self.gateways = gateways
        #: first slot -> block, for every block in the cache (kept in step by `_discarded`).
        self.blocks: dict[int, Block] = {}
        self.cache = ByteBudgetCache(budget_bytes, on_discard=self._discarded)
        self._lock = threading.Lock()

    # -- cache management -----------------------------------------------------------

    def _discarded(self, key, value) -> None:
        if key[0] == "block" and self.blocks.get(key[1]) is value:
            del self.blocks[key[1]]

    def add_block(self, block: Block) -> None:
        """Keep `block` (evicting the least recently used geometry over the budget)."""
        with self._lock:
            self.cache.discard(("block", block.first_slot))
            self.blocks[block.first_slot] = block
            self.cache.put(("block", block.first_slot), block, block.nbytes)

    def hold(self, first_slot: int) -> None:
        """Keep the block starting at `first_slot` (loaded or still to load) from eviction
        until :meth:`release`; dropping blocks on purpose (:meth:`drop_blocks`) still
        drops it."""
        with self._lock:
            self.cache.pin(("block", first_slot))
            self.cache.get(("block", first_slot))  # the most recently used now

    def release(self, first_slot: int) -> None:
        with self._lock:
            self.cache.unpin(("block", first_slot))

    def drop_blocks(self, keep: Iterable[int] = ()) -> None:
        """Forget every block not in ``keep`` (first slots), with its routers and trees."""
        keep = set(keep)
        with self._lock:
            for first in [f for f in self.blocks if f not in keep]:
                self.cache.discard(("block", first))

    def set_gateways(self, gateways: GatewayTable) -> None:
        """New gateway table (added, drained, restored): every router and tree is rebuilt."""
        with self._lock:
            self.gateways = gateways
            self.cache.discard_where(lambda key: key[0] != "block")

    def block_of(self, slot: int) -> Block:
        """The loaded block holding `slot`; :class:`GeometryUnloaded` when none does (a
        catalog change or the block's age dropped it while a plan was running)."""
        with self._lock:  # planning threads read while the event loop adds and drops
            blocks = list(self.blocks.values())
        for block in blocks:
            if block.first_slot <= slot < block.end_slot:
                return block
        raise GeometryUnloaded(slot)

    def graph(self, slot: int) -> sp.csr_matrix:
        """The slot's routing graph (a :class:`SlotRouter`'s, cached without the rest of
        the router: nodes are satellites, then gateways, then regions)."""
        block = self.block_of(slot)
        with self._lock:
            graph = self.cache.get(("graph", slot))
            if graph is not None:
                return graph
            gateways = self.gateways
        graph = self._build_router(block, slot - block.first_slot, gateways).graph
        with self._lock:
            if gateways is self.gateways:
                self.cache.put(("graph", slot), graph,
                               graph.data.nbytes + graph.indices.nbytes + graph.indptr.nbytes,
                               owner=("block", block.first_slot))
        return graph

    def _build_router(self, block: Block, k: int, gateways: GatewayTable,
                      exclude: frozenset[str] = frozenset()) -> SlotRouter:
        ok = block.ok[k]
        pos_km = np.where(ok[:, None], block.positions_at(k), 0.0) / 1e3
        isl = isl_topology(pos_km, block.pairs, block.kind,
                           max_range_km=self.capacity.isl_max_range_km)
        masks = _exclusion_masks(exclude, block.catalog_numbers, isl.pairs, gateways) \
            if exclude else {}
        return SlotRouter(pos_km, isl, gateways, self.regions, capacity=self.capacity,
                          fibre=self.fibre, satellite_available=ok, **masks)

    def _region_trees(self, block: Block, region: int, ks: NDArray[np.int64]) -> _RegionTrees:
        key = ("trees", block.first_slot, region)
        with self._lock:
            trees = self.cache.get(key)
            if trees is None:
                n = block.catalog_numbers.size
                nodes = n + len(self.gateways) + len(self.regions)
                trees = _RegionTrees(np.full((block.n_slots, n), np.inf, np.float32),
                                     np.full((block.n_slots, nodes), _NO_NODE, np.int32),
                                     np.zeros(block.n_slots, bool))
                self.cache.put(key, trees, trees.nbytes, owner=("block", block.first_slot))
        n = block.catalog_numbers.size
        for k in ks[~trees.filled[ks]]:
            graph = self.graph(block.first_slot + int(k))
            dist, pred = dijkstra(graph, directed=True,
                                  indices=graph.shape[0] - len(self.regions) + region,
                                  return_predecessors=True)
            trees.dist_ms[k] = dist[:n]
            trees.pred[k] = pred
            trees.filled[k] = True
        return trees

    # -- planning ---------------------------------------------------------------------

    def plan(self, latitude_deg: float, longitude_deg: float, altitude_m: float,
             first_slot: int, end_slot: int, region: str,
             exclusions: Exclusions | None = None) -> LinkPlan:
        """Lowest-latency path per slot ``first_slot <= s < end_slot`` to ``region``.

        Every slot must lie in a loaded block (``KeyError`` otherwise). Slots named in
        ``exclusions`` are planned on a graph without the excluded resources.
        """
        region_row = self.regions.index_of(region)
        ecef = geodetic_to_ecef(latitude_deg, longitude_deg, altitude_m).reshape(3)
        up = enu_rotation(np.array([latitude_deg]), np.array([longitude_deg]))[0, 2, :]
        sin_mask = np.sin(np.radians(self.capacity.terminal_min_elevation_deg))
        paths: list[SlotPath] = []
        slot = first_slot
        while slot < end_slot:
            block = self.block_of(slot)
            stop = min(end_slot, block.end_slot)
            key = ("paths", round(latitude_deg, 7), round(longitude_deg, 7),
                   round(altitude_m, 2), region_row, block.first_slot)
            with self._lock:
                block_paths = self.cache.get(key)
            if block_paths is None:
                gateways = self.gateways
                block_paths = self._plan_in_block(block, ecef, up, sin_mask, block.first_slot,
                                                  block.end_slot, region_row)
                with self._lock:
                    if gateways is self.gateways:
                        self.cache.put(key, block_paths, len(block_paths) * SLOT_PATH_BYTES,
                                       owner=("block", block.first_slot))
            paths += block_paths[slot - block.first_slot: stop - block.first_slot]
            slot = stop
        if exclusions:
            for i, path in enumerate(paths):
                excluded = exclusions.get(path.slot)
                if excluded:
                    paths[i] = self._plan_slot_excluding(path.slot, latitude_deg, longitude_deg,
                                                         altitude_m, ecef, up, region_row,
                                                         excluded)
        return LinkPlan.from_paths(paths)

    def _plan_in_block(self, block: Block, ecef, up, sin_mask, first: int, stop: int,
                       region: int) -> list[SlotPath]:
        n = block.catalog_numbers.size
        ks = np.arange(first - block.first_slot, stop - block.first_slot)
        tree = block.stacked_tree()
        r_ground = float(np.linalg.norm(ecef))
        radius = max_slant_range_m(r_ground, block.satellite_radius_m(),
                                   max(self.capacity.terminal_min_elevation_deg - 0.5, 0.0))
        queries = np.repeat(ecef[None, :], ks.size, axis=0)
        queries[:, 0] += ks * SLOT_OFFSET_M
        hits = tree.query_ball_point(queries, radius, return_sorted=False)
        lengths = np.fromiter((len(h) for h in hits), np.int64, ks.size)
        idx = np.fromiter((i for h in hits for i in h), np.int64, int(lengths.sum()))
        k, sat = np.divmod(idx, n)
        d = block.positions_m[k, sat] - ecef
        rng = np.linalg.norm(d, axis=1)
        sin_el = (d @ up) / np.maximum(rng, 1.0)
        keep = (sin_el >= sin_mask) & block.ok[k, sat]
        k, sat, rng, sin_el = k[keep], sat[keep], rng[keep], sin_el[keep]
        trees = self._region_trees(block, region, ks)
        cost = rng * _MS_PER_M + trees.dist_ms[k, sat]
        finite = np.isfinite(cost)
        k, sat, rng, sin_el, cost = k[finite], sat[finite], rng[finite], sin_el[finite], cost[finite]
        order = np.lexsort((cost, k))
        best_k, first_of = np.unique(k[order], return_index=True)
        chosen = order[first_of]
        by_k = dict(zip(best_k.tolist(), chosen.tolist(), strict=True))
        candidate = {(a, b): i for i, (a, b) in enumerate(zip(k.tolist(), sat.tolist(),
                                                              strict=True))}
        routed_k, hop_lists, gws, ups, sins = [], [], [], [], []
        previous = -1
        for kk in ks.tolist():
            c = by_k.get(kk)
            if c is None:
                previous = -1
                continue
            # Hysteresis: keep the serving satellite while it stays within
            # HANDOVER_HYSTERESIS_MS of the best one.
            kept = candidate.get((kk, previous))
            if kept is not None and cost[kept] <= cost[c] + HANDOVER_HYSTERESIS_MS:
                c = kept
            previous = int(sat[c])
            node = int(sat[c])
            pred = trees.pred[kk]
            hops = [node]
            while True:
                node = int(pred[node])
                if node < 0 or node >= n:
                    break
                hops.append(node)
            routed_k.append(kk)
            hop_lists.append(hops)
            gws.append(node - n)
            ups.append(rng[c])
            sins.append(sin_el[c])
        routed = dict(zip(routed_k, self._slot_paths(
            block, routed_k, hop_lists, gws, region, np.array(ups), np.array(sins)),
            strict=True))
        return [routed.get(kk) or SlotPath.unrouted(block.first_slot + kk)
                for kk in ks.tolist()]

    def _slot_paths(self, block: Block, ks: list[int], hop_lists: list[list[int]],
                    gateways: list[int], region: int, uplink_m: NDArray[np.float64],
                    sin_el: NDArray[np.float64]) -> list[SlotPath]:
        """Latency of chosen paths, from geometry (penalties never enter it); vectorized
        over slots."""
        if not ks:
            return []
        counts = np.array([len(h) for h in hop_lists])
        flat = np.fromiter((h for hops in hop_lists for h in hops), np.int64, int(counts.sum()))
        k_flat = np.repeat(np.array(ks), counts)
        hop_pos = block.positions_m[k_flat, flat].astype(np.float64)
        seg = np.zeros(flat.size)
        seg[1:] = np.linalg.norm(np.diff(hop_pos, axis=0), axis=1)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        seg[starts] = 0.0  # the first hop of each slot starts a new path
        isl_m = np.add.reduceat(seg, starts)
        last = starts + counts - 1
        gw = np.array(gateways)
        down_m = np.linalg.norm(hop_pos[last] - self.gateways.ecef_m[gw], axis=1)
        fibre = self.fibre.propagation_ms(self.gateways.latitude_deg[gw],
                                          self.gateways.longitude_deg[gw],
                                          self.regions.latitude_deg[region],
                                          self.regions.longitude_deg[region])
        budget = latency_budget(uplink_m * _MS_PER_M, isl_m * _MS_PER_M, down_m * _MS_PER_M,
                                fibre, counts, capacity=self.capacity,
                                fibre_fixed_ms=self.fibre.fixed_overhead_ms)
        elevation = np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0)))
        cats = block.catalog_numbers
        ids = self.gateways.ids
        return [SlotPath(slot=block.first_slot + k, serving=int(cats[hops[0]]),
                         hops=tuple(int(cats[h]) for h in hops), gateway=str(ids[g]),
                         one_way_ms=float(ow), rtt_ms=float(rt), elevation_deg=float(el))
                for k, hops, g, ow, rt, el in zip(ks, hop_lists, gateways,
                                                  budget.one_way_ms.tolist(),
                                                  budget.rtt_ms.tolist(), elevation.tolist(),
                                                  strict=True)]

    def _plan_slot_excluding(self, slot: int, lat: float, lon: float, alt: float, ecef, up,
                             region: int, excluded: frozenset[str]) -> SlotPath:
        """One slot on a graph built without the excluded resources (not cached)."""
        block = self.block_of(slot)
        k = slot - block.first_slot
        router = self._build_router(block, k, self.gateways, excluded)
        plan = router.route(lat, lon, alt, target_regions=np.array([region]))
        if not plan.routed[0]:
            return SlotPath.unrouted(slot)
        hops = plan.hops(0)
        d = block.positions_m[k, hops[0]] - ecef
        rng = float(np.linalg.norm(d))
        return self._slot_paths(block, [k], [hops], [int(plan.gateway[0])], region,
                                np.array([rng]), np.array([float(d @ up) / rng]))[0]


def _exclusion_masks(exclude: frozenset[str], catalog_numbers: NDArray[np.int64],
                     isl_pairs: NDArray[np.int64], gateways: GatewayTable) -> dict:
    """SlotRouter availability masks from ledger resource keys (see :mod:`.plan`)."""
    row_of = {int(c): i for i, c in enumerate(catalog_numbers.tolist())}
    n = catalog_numbers.size
    user = np.ones(n, bool)
    feeder = np.ones(n, bool)
    gw = np.ones(len(gateways), bool)
    isl = np.ones(len(isl_pairs), bool)
    bad_links = set()
    for key in exclude:
        kind, _, ident = key.partition(":")
        if kind == "u" and int(ident) in row_of:
            user[row_of[int(ident)]] = False
        elif kind == "f" and int(ident) in row_of:
            feeder[row_of[int(ident)]] = False
        elif kind == "g":
            gw &= gateways.ids != ident
        elif kind == "i":
            a, b = (int(x) for x in ident.split("-"))
            if a in row_of and b in row_of:
                bad_links.add(frozenset((row_of[a], row_of[b])))
    if bad_links:
        isl = np.array([frozenset((int(a), int(b))) not in bad_links
                        for a, b in isl_pairs.tolist()], bool)
    return {"user_beam_available": user, "feeder_available": feeder,
            "gateway_available": gw, "isl_available": isl}
