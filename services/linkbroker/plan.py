"""A link's plan: one path per 15-second slot, the resources it holds, and its wire form.

Resources are named by short keys, the rows of the capacity ledger:

* ``u:<catalog number>``: the user beam of the serving satellite,
* ``i:<a>-<b>`` (``a < b``, catalog numbers): a laser link, counted once for both
  directions (the capacity is per direction and traffic is symmetric),
* ``f:<catalog number>``: the feeder (Ka-band) link of the satellite that downlinks,
* ``g:<gateway id>``: the gateway site.

Latencies are ms, elevations degrees; an unrouted slot has ``serving == -1`` and NaNs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.linkbroker.capacity_model import CapacityModel
from services.linkbroker.gateways import GatewayTable

__all__ = ["LEDGER_BUCKET_SLOTS", "LinkPlan", "SlotPath", "bucket_of", "capacity_lookup"]

#: The ledger counts capacity per minute (4 slots): a resource a path uses in any slot of a
#: minute holds the bandwidth for the whole minute. Conservative (never oversubscribes,
#: may refuse up to 45 s early) and 4 times fewer rows per link; paths keep their serving
#: satellite for minutes (hysteresis), so the overcount is small.
LEDGER_BUCKET_SLOTS = 4


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def bucket_of(slot: int) -> int:
    """First slot of the ledger bucket holding ``slot``."""
    return slot - slot % LEDGER_BUCKET_SLOTS


@dataclass(frozen=True, slots=True)
class SlotPath:
    """The path of one slot (catalog numbers, gateway id, latencies)."""

    slot: int
    serving: int
    hops: tuple[int, ...]
    gateway: str
    one_way_ms: float
    rtt_ms: float
    elevation_deg: float
    #: Derived once (paths are shared by every request from the same place): the ledger
    #: keys and the stored form.
    keys: tuple[str, ...] = field(init=False, repr=False, compare=False)
    stored: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Stored to 0.1 us / 0.0001 deg; rounded here so a fresh plan equals a stored one.
        for name in ("one_way_ms", "rtt_ms", "elevation_deg"):
            value = getattr(self, name)
            if not math.isnan(value):
                object.__setattr__(self, name, round(value, 4))
        keys: tuple[str, ...] = ()
        if self.serving >= 0:
            keys = (f"u:{self.serving}",
                    *(f"i:{min(a, b)}-{max(a, b)}"
                      for a, b in zip(self.hops, self.hops[1:], strict=False)),
                    f"f:{self.hops[-1]}", f"g:{self.gateway}")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "stored", json.dumps(
            [list(self.hops), self.gateway, _num(self.one_way_ms), _num(self.rtt_ms),
             _num(self.elevation_deg)], separators=(",", ":")))

    @classmethod
    def unrouted(cls, slot: int) -> SlotPath:
        nan = float("nan")
        return cls(slot, -1, (), "", nan, nan, nan)

    @property
    def routed(self) -> bool:
        return self.serving >= 0

    @property
    def laser_links(self) -> int:
        return max(len(self.hops) - 1, 0)

    def resources(self) -> list[str]:
        """Ledger keys this slot's path holds (none when unrouted)."""
        return list(self.keys)


@dataclass(frozen=True)
class LinkPlan:
    """Paths of consecutive slots ``first_slot .. end_slot - 1``."""

    paths: tuple[SlotPath, ...]

    @classmethod
    def from_paths(cls, paths: Sequence[SlotPath]) -> LinkPlan:
        slots = [p.slot for p in paths]
        if not slots or slots != list(range(slots[0], slots[0] + len(slots))):
            raise ValueError("a plan needs one or more consecutive slots")
        return cls(tuple(paths))

    @property
    def first_slot(self) -> int:
        return self.paths[0].slot

    @property
    def end_slot(self) -> int:
        return self.paths[-1].slot + 1

    def path_at(self, slot: int) -> SlotPath:
        return self.paths[slot - self.first_slot]

    def unrouted_slots(self) -> list[int]:
        return [p.slot for p in self.paths if not p.routed]

    @property
    def routed_fraction(self) -> float:
        return sum(p.routed for p in self.paths) / len(self.paths)

    def rtt_stats(self) -> tuple[float, float]:
        """(median, max) round trip over routed slots, ms (NaN when none)."""
        rtt = np.array([p.rtt_ms for p in self.paths if p.routed])
        if rtt.size == 0:
            return math.nan, math.nan
        return float(np.median(rtt)), float(rtt.max())

    @property
    def handovers(self) -> int:
        """Times the serving satellite changes between consecutive routed slots."""
        routed = [p.serving for p in self.paths if p.routed]
        return sum(a != b for a, b in zip(routed, routed[1:], strict=False))

    def changes(self) -> list[SlotPath]:
        """The first slot and every slot whose serving satellite or gateway differs from
        the slot before it (what a watcher is told as it comes due)."""
        out, before = [], None
        for p in self.paths:
            key = (p.serving, p.gateway)
            if key != before:
                out.append(p)
                before = key
        return out

    def ledger_rows(self, capacity_of: Callable[[str], float], *, from_slot: int | None = None
                    ) -> tuple[list[int], list[str], list[float]]:
        """(bucket first slots, resource keys, capacities in Mbit/s) of every routed slot at
        or after ``from_slot``, one row per (bucket, key), sorted so that concurrent writers
        lock rows in one order."""
        rows = sorted({(bucket_of(p.slot), key) for p in self.paths
                       if p.routed and (from_slot is None or p.slot >= from_slot)
                       for key in p.keys})
        return ([s for s, _ in rows], [k for _, k in rows], [capacity_of(k) for _, k in rows])

    def resources_in_bucket(self, bucket_slot: int) -> set[str]:
        """Resources held in the ledger bucket that starts at ``bucket_slot``."""
        return {key for s in range(bucket_slot, bucket_slot + LEDGER_BUCKET_SLOTS)
                if self.first_slot <= s < self.end_slot for key in self.path_at(s).resources()}

    # -- storage ----------------------------------------------------------------------

    def encode(self) -> bytes:
        """Compact JSON, one ``[hops, gateway, one_way, rtt, elevation]`` per slot (a
        240-slot plan is a few kB), assembled from each path's stored form."""
        return (f'{{"v":2,"s0":{self.first_slot},"p":['
                + ",".join(p.stored for p in self.paths) + "]}").encode()

    @classmethod
    def decode(cls, data: bytes) -> LinkPlan:
        d = json.loads(data)
        nan = float("nan")

        def val(x: float | None) -> float:
            return nan if x is None else float(x)

        paths = [SlotPath(d["s0"] + i, h[0] if h else -1, tuple(h), g, val(ow), val(rt), val(el))
                 for i, (h, g, ow, rt, el) in enumerate(d["p"])]
        return cls(tuple(paths))

    def splice(self, other: LinkPlan) -> LinkPlan:
        """This plan with the slots of ``other`` (a sub-window) replaced."""
        paths = list(self.paths)
        for p in other.paths:
            paths[p.slot - self.first_slot] = p
        return LinkPlan(tuple(paths))


def capacity_lookup(capacity: CapacityModel, gateways: GatewayTable) -> Callable[[str], float]:
    """Capacity (Mbit/s) of a ledger key under ``capacity`` and the gateway table."""
    gw = {str(i): float(c) * 1e3 for i, c in zip(gateways.ids.tolist(),
                                                 gateways.capacity_gbps.tolist(), strict=True)}
    per_kind = {"u": capacity.user_beam_capacity_gbps * 1e3,
                "f": capacity.feeder_link_capacity_gbps_per_satellite * 1e3,
                "i": capacity.isl_capacity_gbps * 1e3}

    def capacity_of(key: str) -> float:
        kind = key[0]
        if kind == "g":
            return gw.get(key[2:], 0.0)
        return per_kind[kind]

    return capacity_of
