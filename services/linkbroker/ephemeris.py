"""Constellation geometry from the orbit service: one :class:`~.constellation.Block` per call.

Positions: ``Propagate`` in ITRF at the midpoint of every slot of the block (one stream).
Laser links: the orbital planes are recovered at the block's first slot from TEME states
(``Propagate`` in TEME with velocities, one instant) with
:func:`~services.linkbroker.planes.assign_planes`, then paired into +Grid candidates with
:func:`~services.linkbroker.topology.plus_grid_pairs`; each slot keeps the pairs its
geometry allows (range, Earth grazing).
"""

from __future__ import annotations

import numpy as np

from services.linkbroker.constellation import Block
from services.linkbroker.planes import assign_planes, orbit_geometry
from services.linkbroker.slots import SLOT_SECONDS, slot_midpoint
from services.linkbroker.topology import plus_grid_pairs
from shared.clients.orbit import propagate

__all__ = ["OrbitConstellationSource", "block_from_states"]


def block_from_states(first_slot: int, catalog_numbers, positions_itrf_km, ok,
                      r_teme_km, v_teme_km_s, catalog_version: int) -> Block:
    """A block from ``(T, N, 3)`` ITRF positions (km) and TEME states at its first slot."""
    pos_m = np.ascontiguousarray(positions_itrf_km, dtype=np.float64) * 1e3
    good = ok[0] & np.isfinite(r_teme_km).all(axis=1) & np.isfinite(v_teme_km_s).all(axis=1)
    inc, raan, u, alt = orbit_geometry(np.where(good[:, None], r_teme_km, 1.0),
                                       np.where(good[:, None], v_teme_km_s, 1.0))
    assignment = assign_planes(inc, raan, u, alt)
    pairs, kind = plus_grid_pairs(assignment.plane, assignment.slot, shell=assignment.shell,
                                  arg_lat_deg=assignment.arg_lat_deg)
    usable = good[pairs[:, 0]] & good[pairs[:, 1]]
    return Block(first_slot=first_slot, catalog_numbers=np.asarray(catalog_numbers, np.int64),
                 positions_m=pos_m, ok=np.asarray(ok, bool), pairs=pairs[usable],
                 kind=kind[usable], catalog_version=catalog_version)


class OrbitConstellationSource:
    """Fetches blocks of slots from the orbit service (an ``OrbitServiceStub``)."""

    def __init__(self, stub, group: str, run_cpu):
        self.stub = stub
        self.group = group
        self.run_cpu = run_cpu

    async def catalog_version(self, when) -> int:
        """The orbit catalog's version now (one instant, one small Propagate)."""
        one = await propagate(self.stub, group=self.group, start=when, step_s=SLOT_SECONDS,
                              count=1, frame="teme")
        return int(one.catalog_version)

    async def block(self, first_slot: int, n_slots: int) -> Block:
        start = slot_midpoint(first_slot)
        while True:
            itrf = await propagate(self.stub, group=self.group, start=start,
                                   step_s=SLOT_SECONDS, count=n_slots, frame="itrf")
            teme = await propagate(self.stub, group=self.group, start=start,
                                   step_s=SLOT_SECONDS, count=1, frame="teme",
                                   include_velocity=True)
            # An import between the two calls: ask again for one consistent catalog.
            if itrf.catalog_version == teme.catalog_version:
                break
        return await self.run_cpu(
            block_from_states, first_slot, itrf.catalog_numbers, itrf.positions, itrf.ok,
            teme.positions[0], teme.velocities[0], int(itrf.catalog_version))
