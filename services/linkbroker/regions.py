"""Azure region catalogue for the link broker.

The data file ``data/azure_regions.json`` carries the public physical Azure
regions with the coordinates Azure publishes in its region metadata
(``az account list-locations``): WGS84 geodetic latitude/longitude in decimal
degrees, east and north positive. These are the coordinates Azure uses for a
region as a whole, not the street address of any datacenter.

The catalogue is read once and cached; :class:`RegionTable` offers columnar
numpy views (for vectorized fibre-latency computations) next to per-region
records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "AzureRegion",
    "RegionTable",
    "UnknownRegionError",
    "is_valid_region_name",
    "load_regions",
    "normalize_region_name",
    "require_region",
]

_DATA_PATH = Path(__file__).resolve().parent / "data" / "azure_regions.json"

#: Azure programmatic region names: lowercase ASCII letters and digits only.
_REGION_NAME_RE = re.compile(r"^[a-z][a-z0-9]{1,39}$")


class UnknownRegionError(ValueError):
    """Raised when a region name is malformed or not in the catalogue."""


@dataclass(frozen=True, slots=True)
class AzureRegion:
    """One Azure region.

    Attributes:
        name: programmatic name, e.g. ``"eastus"``.
        display_name: e.g. ``"East US"``.
        latitude_deg: WGS84 geodetic latitude, degrees north.
        longitude_deg: WGS84 longitude, degrees east.
        geography: Azure geography, e.g. ``"United States"``.
        geography_group: Azure geography group, e.g. ``"US"``, ``"Europe"``.
        physical_location: Azure's physical-location label, e.g. ``"Virginia"``.
        paired_region: the name Azure gives as the region pair, or ``None``
            for regions Azure does not pair.
    """

    name: str
    display_name: str
    latitude_deg: float
    longitude_deg: float
    geography: str
    geography_group: str
    physical_location: str
    paired_region: str | None


@dataclass(frozen=True)
class RegionTable:
    """All regions, in file order, with columnar arrays.

    Attributes:
        regions: tuple of :class:`AzureRegion`.
        names: ``(R,)`` array of region names (``str`` objects).
        latitude_deg, longitude_deg: ``(R,)`` float64 arrays, WGS84 degrees.
        unlisted_pairs: names that appear as a pair of a listed region but are
            not themselves carried (restricted-access regions), with the reason.
    """

    regions: tuple[AzureRegion, ...]
    names: np.ndarray
    latitude_deg: np.ndarray
    longitude_deg: np.ndarray
    unlisted_pairs: dict[str, str]
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.regions)

    def index_of(self, name: str) -> int:
        """Row index of ``name`` (normalized); raises :class:`UnknownRegionError`."""
        key = normalize_region_name(name)
        try:
            return self._index[key]
        except KeyError:
            raise UnknownRegionError(f"unknown Azure region {name!r}") from None

    def indices_of(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Row indices (``(K,)`` int64) for a sequence of names."""
        return np.fromiter((self.index_of(n) for n in names), dtype=np.int64, count=len(names))

    def get(self, name: str) -> AzureRegion:
        """The region called ``name``; raises :class:`UnknownRegionError`."""
        return self.regions[self.index_of(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and is_valid_region_name(name) and (
            normalize_region_name(name) in self._index
        )

    def select(self, mask: np.ndarray) -> RegionTable:
        """A new table with the rows where boolean ``mask`` is true."""
        keep = np.flatnonzero(np.asarray(mask, dtype=bool))
        return _make_table([self.regions[i] for i in keep], self.unlisted_pairs)


def _make_table(regions: list[AzureRegion], unlisted: dict[str, str]) -> RegionTable:
    index = {r.name: i for i, r in enumerate(regions)}
    if len(index) != len(regions):
        raise ValueError("duplicate region names in catalogue")
    return RegionTable(
        regions=tuple(regions),
        names=np.array([r.name for r in regions], dtype=object),
        latitude_deg=np.array([r.latitude_deg for r in regions], dtype=np.float64),
        longitude_deg=np.array([r.longitude_deg for r in regions], dtype=np.float64),
        unlisted_pairs=dict(unlisted),
        _index=index,
    )


def normalize_region_name(name: str) -> str:
    """Map a display or programmatic name to the programmatic form.

    ``"East US 2"``, ``"east-us-2"`` and ``"EastUS2"`` all become ``"eastus2"``.
    Raises :class:`UnknownRegionError` if the result is not a well-formed name.
    """
    if not isinstance(name, str):
        raise UnknownRegionError(f"region name must be a string, got {type(name).__name__}")
    key = re.sub(r"[\s_\-]+", "", name.strip().lower())
    if not _REGION_NAME_RE.fullmatch(key):
        raise UnknownRegionError(f"malformed Azure region name {name!r}")
    return key


def is_valid_region_name(name: str) -> bool:
    """True if ``name`` normalizes to a well-formed programmatic region name."""
    try:
        normalize_region_name(name)
    except UnknownRegionError:
        return False
    return True


def _parse(doc: dict[str, Any]) -> RegionTable:
    regions = []
    for row in doc["regions"]:
        lat = float(row["latitude"])
        lon = float(row["longitude"])
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ValueError(f"region {row['name']!r} has out-of-range coordinates")
        regions.append(
            AzureRegion(
                name=row["name"],
                display_name=row["display_name"],
                latitude_deg=lat,
                longitude_deg=lon,
                geography=row["geography"],
                geography_group=row["geography_group"],
                physical_location=row["physical_location"],
                paired_region=row.get("paired_region"),
            )
        )
    return _make_table(regions, doc.get("unlisted_pairs", {}))


@lru_cache(maxsize=1)
def load_regions() -> RegionTable:
    """Load (once) and return the packaged Azure region catalogue."""
    return _parse(json.loads(_DATA_PATH.read_text(encoding="utf-8")))


def require_region(name: str) -> AzureRegion:
    """Validate ``name`` against the catalogue and return the region.

    Raises :class:`UnknownRegionError` with a message naming the input if the
    name is malformed or not a known region.
    """
    return load_regions().get(name)
