"""Blocks of geometry: the ITRF positions of every satellite over ``T`` consecutive slots
(one Propagate call to the orbit service), the +Grid laser-link candidates, and the k-d tree
over the block's stacked positions (see :mod:`services.linkbroker.constellation` for how
planning uses them and what float32 positions cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

__all__ = ["Block", "GeometryUnloaded", "POSITION_DTYPE", "SLOT_OFFSET_M"]

#: Shift between consecutive slots in the stacked k-d tree, m (>> any slant range).
SLOT_OFFSET_M = 1.0e8

#: Bytes of a k-d tree node (scipy's ckdtreenode), beside its data and index arrays.
_KD_NODE_BYTES = 72
#: How blocks store positions (see the module's docstring for what float32 costs).
POSITION_DTYPE = np.float32


class GeometryUnloaded(KeyError):
    """A slot's block is not loaded (any more): load the window again and plan again."""


@dataclass
class Block:
    """Positions of the whole constellation over ``T`` consecutive slots.

    Attributes:
        first_slot: index of the first slot.
        catalog_numbers: ``(N,)`` int64.
        positions_m: ``(T, N, 3)`` ITRF metres at each slot's midpoint (float32).
        ok: ``(T, N)`` True where propagation succeeded.
        pairs, kind: +Grid laser-link candidates (rows of ``catalog_numbers``).
        catalog_version: the orbit catalog version the positions come from.
    """

    first_slot: int
    catalog_numbers: NDArray[np.int64]
    positions_m: NDArray[np.float32]
    ok: NDArray[np.bool_]
    pairs: NDArray[np.int64]
    kind: NDArray[np.int8]
    catalog_version: int
    _tree: cKDTree | None = field(default=None, repr=False)
    _radius_m: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.positions_m = np.ascontiguousarray(self.positions_m, dtype=POSITION_DTYPE)
        self.stacked_tree()  # built once, now: the block's size is then fixed

    @property
    def nbytes(self) -> int:
        """Bytes held: positions, masks, link candidates and the stacked k-d tree."""
        tree = self.stacked_tree()
        arrays = (self.catalog_numbers, self.positions_m, self.ok, self.pairs, self.kind,
                  tree.data, tree.indices)
        return sum(a.nbytes for a in arrays) + tree.size * _KD_NODE_BYTES

    def positions_at(self, k: int) -> NDArray[np.float64]:
        """``(N, 3)`` float64 ITRF metres at the block's slot ``k``."""
        return self.positions_m[k].astype(np.float64)

    @property
    def n_slots(self) -> int:
        return int(self.positions_m.shape[0])

    @property
    def end_slot(self) -> int:
        return self.first_slot + self.n_slots

    def stacked_tree(self) -> cKDTree:
        """k-d tree over all slots' positions, slot ``k`` shifted by ``k * SLOT_OFFSET_M``."""
        if self._tree is None:
            t, n = self.ok.shape
            pts = np.where(self.ok[..., None], self.positions_m.astype(np.float64), np.nan)
            pts[..., 0] += (np.arange(t) * SLOT_OFFSET_M)[:, None]
            pts = pts.reshape(-1, 3)
            # Failed satellites go far away (NaN is not allowed in a tree).
            pts[~np.isfinite(pts).all(axis=1)] = -1.0e12
            self._tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)
            good = self.positions_m[self.ok].astype(np.float64)
            self._radius_m = float(np.max(np.linalg.norm(good, axis=1))) if good.size else 0.0
        return self._tree

    def satellite_radius_m(self) -> float:
        self.stacked_tree()
        return self._radius_m
