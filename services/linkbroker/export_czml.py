"""A path per 15-second slot as a CZML document (CesiumJS's time-dynamic scene format).

Pure: a plan's slot paths, the places and the satellites' positions in, the document's
bytes out (built with ``czml3``'s models, so what is written is what czml3 reads back).

Packets (ids are stable, so a later document can update these entities):

- ``document``: the preamble; its clock spans the exported slots.
- ``terminal``: the terminal (WGS84 longitude, latitude degrees, height metres). Its
  ``properties`` hold, per routed slot (one interval each, ``[slot start, slot end)``),
  ``roundTripMs``, ``oneWayMs``, ``laserLinks``, ``servingSatellite`` and ``gateway``; its
  description says, per slot, the round trip and the satellites (or that no path exists).
- ``satellites/{n}``: each satellite on the path in some slot. Positions are ITRF metres
  (CZML ``referenceFrame`` ``FIXED``) at the midpoint of every slot where it is on the
  path and of the slots next to those (within the export), interpolated linearly (samples
  15 s apart lie 112 km apart along a LEO orbit; the chord is within 0.25 km of the arc)
  and extrapolated 7.5 s at the ends; available in the slots where it is on the path.
- ``userLinks/{n}`` (terminal to its serving satellite), ``laserLinks/{a}-{b}`` (``a < b``,
  between consecutive hops), ``feederLinks/{n}-{gateway}`` (the downlinking satellite to the
  gateway) and ``fibre/{gateway}`` (gateway to region, along the ground): polylines whose
  two ends reference ``<packet id>#position``, available in the slots that use them.
- ``gateways/{id}`` and ``regions/{name}``: where they stand (height 0 for regions).

Times are UTC; a slot ``k`` covers ``[k * 15 s, (k + 1) * 15 s)`` after the Unix epoch.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from czml3 import Document, Packet
from czml3.enums import ArcTypes, InterpolationAlgorithms
from czml3.properties import (
    Clock,
    Color,
    Label,
    Point,
    Polyline,
    PolylineMaterial,
    Position,
    PositionList,
    SolidColorMaterial,
)
from czml3.types import IntervalValue, TimeInterval, TimeIntervalCollection
from numpy.typing import NDArray

from services.linkbroker.plan import SlotPath
from services.linkbroker.slots import SLOT_SECONDS, slot_start

__all__ = ["CZML_MEDIA_TYPE", "CHUNK_BYTES", "MAX_EXPORT_SLOTS", "Place", "Samples",
           "chunks", "path_czml", "wanted_samples"]

CZML_MEDIA_TYPE = "application/json"
#: Slots one export may hold: 6 hours of slots, plus the one a window that does not start
#: on a slot boundary gains when it is aligned outward (the document stays a few MB).
MAX_EXPORT_SLOTS = 6 * 3600 // SLOT_SECONDS + 1
#: Bytes a streamed chunk holds at most.
CHUNK_BYTES = 1 << 20

_COLOURS = {"terminal": [255, 255, 255, 255], "satellite": [255, 215, 0, 255],
            "user": [0, 200, 255, 255], "laser": [255, 60, 60, 255],
            "feeder": [120, 255, 120, 255], "fibre": [200, 120, 255, 255],
            "gateway": [120, 255, 120, 255], "region": [0, 120, 215, 255]}


@dataclass(frozen=True)
class Place:
    """A fixed point: packet id, display name, WGS84 latitude/longitude degrees, height m."""

    id: str
    name: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0


@dataclass(frozen=True)
class Samples:
    """Satellite positions: row ``i`` is satellite ``catalog_numbers[i]`` at the midpoint
    of slot ``slots[i]``, ``positions_m[i]`` ITRF metres (NaN where propagation failed)."""

    slots: NDArray[np.int64]
    catalog_numbers: NDArray[np.int64]
    positions_m: NDArray[np.float64]


def wanted_samples(paths: Sequence[SlotPath]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The (slot, catalog number) pairs whose positions the document needs: every satellite
    on the path of a slot, at that slot and at the slots next to it within ``paths``.
    Sorted by satellite, then slot; no duplicates."""
    if not paths:
        empty = np.zeros(0, np.int64)
        return empty, empty
    first, end = paths[0].slot, paths[-1].slot + 1
    pairs = np.array([(p.slot, n) for p in paths for n in p.hops], np.int64).reshape(-1, 2)
    around = np.concatenate([pairs + [d, 0] for d in (-1, 0, 1)])
    around = around[(around[:, 0] >= first) & (around[:, 0] < end)]
    unique = np.unique(around[:, ::-1], axis=0)  # (catalog number, slot), sorted
    return unique[:, 1].copy(), unique[:, 0].copy()


def _runs(slots: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted slots as ``[(first, end), ...]`` runs of consecutive slots."""
    runs: list[tuple[int, int]] = []
    for s in sorted(set(slots)):
        if runs and runs[-1][1] == s:
            runs[-1] = (runs[-1][0], s + 1)
        else:
            runs.append((s, s + 1))
    return runs


def _availability(slots: Sequence[int]) -> TimeIntervalCollection:
    return TimeIntervalCollection(values=[TimeInterval(start=slot_start(a), end=slot_start(b))
                                          for a, b in _runs(slots)])


def _line(packet_id: str, name: str, ends: tuple[str, str], slots: Sequence[int],
          colour: str, *, ground: bool = False) -> Packet:
    return Packet(
        id=packet_id, name=name, availability=_availability(slots),
        polyline=Polyline(
            positions=PositionList(references=[f"{ends[0]}#position", f"{ends[1]}#position"]),
            arcType=ArcTypes.GEODESIC if ground else ArcTypes.NONE, width=2.0,
            material=PolylineMaterial(solidColor=SolidColorMaterial(
                color=Color(rgba=_COLOURS[colour])))))


def _place(place: Place, colour: str, **extra: Any) -> Packet:
    return Packet(id=place.id, name=place.name, **extra,
                  position=Position(cartographicDegrees=[place.longitude_deg,
                                                         place.latitude_deg,
                                                         place.altitude_m]),
                  point=Point(pixelSize=8.0, color=Color(rgba=_COLOURS[colour])),
                  label=Label(text=place.name, show=True, scale=0.5))


def _iso(slot: int) -> str:
    """A slot's start as ISO 8601 UTC (slots start on whole seconds)."""
    return slot_start(slot).strftime("%Y-%m-%dT%H:%M:%SZ")


def _per_slot(paths: Sequence[SlotPath], value: Callable[[SlotPath], dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """A custom property: one ``{"interval": ..., <type>: value}`` a routed slot."""
    return [{"interval": f"{_iso(p.slot)}/{_iso(p.slot + 1)}", **value(p)}
            for p in paths if p.routed]


def _description(p: SlotPath) -> str:
    when = _iso(p.slot)
    if not p.routed:
        return f"<p>Slot {p.slot} ({when}): no path.</p>"
    hops = " &rarr; ".join(str(n) for n in p.hops)
    return (f"<p>Slot {p.slot} ({when}): round trip {p.rtt_ms:.3f} ms, one way "
            f"{p.one_way_ms:.3f} ms; satellites {hops}; {p.laser_links} laser link(s); "
            f"gateway {html.escape(p.gateway)}; elevation {p.elevation_deg:.2f}&deg;.</p>")


def path_czml(title: str, paths: Sequence[SlotPath], terminal: Place,
              gateways: dict[str, Place], region: Place, samples: Samples) -> bytes:
    """The CZML document (UTF-8 JSON bytes) of ``paths`` (consecutive slots, at least one).

    ``gateways`` maps each gateway id the paths use to its place (packet id
    ``gateways/{id}``); ``samples`` holds the positions :func:`wanted_samples` asks for
    (a pair it lacks is left out: the satellite is drawn from its other samples).
    """
    first, end = paths[0].slot, paths[-1].slot + 1
    start, stop = slot_start(first), slot_start(end)
    packets = [Packet(id="document", name=title, version="1.0", clock=Clock(
        interval=TimeInterval(start=start, end=stop), currentTime=start,
        multiplier=float(SLOT_SECONDS)))]

    packets.append(_place(
        terminal, "terminal",
        description=TimeIntervalCollection(values=[IntervalValue(
            start=slot_start(p.slot), end=slot_start(p.slot + 1), value=_description(p))
            for p in paths]),
        properties={
            "roundTripMs": _per_slot(paths, lambda p: {"number": p.rtt_ms}),
            "oneWayMs": _per_slot(paths, lambda p: {"number": p.one_way_ms}),
            "laserLinks": _per_slot(paths, lambda p: {"number": p.laser_links}),
            "servingSatellite": _per_slot(paths, lambda p: {"number": p.serving}),
            "gateway": _per_slot(paths, lambda p: {"string": f"gateways/{p.gateway}"}),
        }))

    on_path: dict[int, list[int]] = {}
    user: dict[int, list[int]] = {}
    laser: dict[tuple[int, int], list[int]] = {}
    feeder: dict[tuple[int, str], list[int]] = {}
    fibre: dict[str, list[int]] = {}
    for p in paths:
        if not p.routed:
            continue
        for n in p.hops:
            on_path.setdefault(n, []).append(p.slot)
        user.setdefault(p.serving, []).append(p.slot)
        for a, b in zip(p.hops, p.hops[1:], strict=False):
            laser.setdefault((min(a, b), max(a, b)), []).append(p.slot)
        feeder.setdefault((p.hops[-1], p.gateway), []).append(p.slot)
        fibre.setdefault(p.gateway, []).append(p.slot)

    good: NDArray[np.bool_] = np.asarray(np.isfinite(samples.positions_m).all(axis=1))
    order = np.lexsort((samples.slots, samples.catalog_numbers))
    order = order[good[order]]
    cats = samples.catalog_numbers[order]
    for n in sorted(on_path):
        rows = order[cats == n]
        position = None
        if rows.size:
            t = (samples.slots[rows] + 0.5 - first) * SLOT_SECONDS
            values = np.column_stack([t, samples.positions_m[rows]]).ravel().tolist()
            position = Position(
                epoch=start, cartesian=values, referenceFrame="FIXED",
                interpolationAlgorithm=InterpolationAlgorithms.LINEAR, interpolationDegree=1,
                backwardExtrapolationDuration=SLOT_SECONDS / 2,
                forwardExtrapolationDuration=SLOT_SECONDS / 2)
        packets.append(Packet(
            id=f"satellites/{n}", name=f"Satellite {n}", availability=_availability(on_path[n]),
            position=position, point=Point(pixelSize=6.0, color=Color(rgba=_COLOURS["satellite"])),
            label=Label(text=str(n), show=True, scale=0.4)))

    for n, slots in sorted(user.items()):
        packets.append(_line(f"userLinks/{n}", f"User link to {n}",
                             ("terminal", f"satellites/{n}"), slots, "user"))
    for (a, b), slots in sorted(laser.items()):
        packets.append(_line(f"laserLinks/{a}-{b}", f"Laser link {a}-{b}",
                             (f"satellites/{a}", f"satellites/{b}"), slots, "laser"))
    for (n, g), slots in sorted(feeder.items()):
        packets.append(_line(f"feederLinks/{n}-{g}", f"Feeder link {n} to {g}",
                             (f"satellites/{n}", f"gateways/{g}"), slots, "feeder"))
    for g, slots in sorted(fibre.items()):
        packets.append(_line(f"fibre/{g}", f"Fibre {g} to {region.name}",
                             (f"gateways/{g}", region.id), slots, "fibre", ground=True))
    for g in sorted(fibre):
        packets.append(_place(gateways[g], "gateway"))
    packets.append(_place(region, "region"))
    return Document(packets=packets).model_dump_json(exclude_none=True).encode()


def chunks(document: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``document`` in pieces of at most ``size`` bytes (at least one, even when empty)."""
    for i in range(0, max(len(document), 1), size):
        yield document[i:i + size]
