"""An immutable in-memory view of the catalog at one version (pure, no SQL).

The service loads the newest element set of every satellite once per catalog version
(and ``as_of`` choice), keeps it here, and resolves each request's satellite selection to
column indices with one ``searchsorted``; propagators are then built (and cached) per
selection from these element sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from services.orbit.elements import ElementSet

__all__ = ["CatalogSnapshot", "GroupKind"]


class GroupKind(StrEnum):
    """What a group of satellites is (the stored spelling)."""

    CONSTELLATION = "constellation"
    SENSORS = "sensors"
    IMPORT = "import"


@dataclass(frozen=True)
class CatalogSnapshot:
    """Element sets of one catalog version, sorted by catalog number."""

    version: int
    as_of_us: int | None
    element_sets: tuple[ElementSet, ...]
    catalog_numbers: np.ndarray = field(init=False)
    epoch_jd: np.ndarray = field(init=False)
    epoch_fr: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        numbers = np.array([e.catalog_number for e in self.element_sets], dtype=np.int64)
        if numbers.size > 1 and not np.all(numbers[1:] > numbers[:-1]):
            raise ValueError("element sets must be sorted by catalog number, one per satellite")
        object.__setattr__(self, "catalog_numbers", numbers)
        object.__setattr__(self, "epoch_jd",
                           np.array([e.epoch_jd for e in self.element_sets], dtype=np.float64))
        object.__setattr__(self, "epoch_fr",
                           np.array([e.epoch_fr for e in self.element_sets], dtype=np.float64))

    @property
    def size(self) -> int:
        return len(self.element_sets)

    def indices(self, numbers: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Column indices of ``numbers`` (in the given order) and the positions (into
        ``numbers``) of those not in the snapshot."""
        wanted = np.asarray(numbers, dtype=np.int64).reshape(-1)
        if self.catalog_numbers.size == 0:
            return np.zeros(0, np.int64), np.arange(wanted.size)
        pos = np.searchsorted(self.catalog_numbers, wanted)
        pos_clipped = np.minimum(pos, self.catalog_numbers.size - 1)
        found = self.catalog_numbers[pos_clipped] == wanted
        return pos_clipped[found], np.flatnonzero(~found)

    def subset(self, idx: np.ndarray) -> list[ElementSet]:
        return [self.element_sets[i] for i in np.asarray(idx).tolist()]

    def epoch_offset_days(self, idx: np.ndarray, jd: np.ndarray, fr: np.ndarray
                          ) -> tuple[float, int]:
        """Largest ``|t - epoch|`` in days over the satellites ``idx`` and the instants
        ``jd + fr``, and the catalog number where it occurs."""
        if idx.size == 0 or np.size(jd) == 0:
            return 0.0, -1
        t = np.asarray(jd, dtype=np.float64) + np.asarray(fr, dtype=np.float64)
        t_lo, t_hi = float(t.min()), float(t.max())
        epochs = self.epoch_jd[idx] + self.epoch_fr[idx]
        offsets = np.maximum(np.abs(t_hi - epochs), np.abs(epochs - t_lo))
        k = int(np.argmax(offsets))
        return float(offsets[k]), int(self.catalog_numbers[idx[k]])
