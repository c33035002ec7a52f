"""What the orbit store hands its callers: frozen records of satellites, element sets,
groups and an import's outcome (the servicer turns them into messages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.orbit.elements import ElementSet

__all__ = ["ImportOutcome", "StoredElementSet", "StoredGroup", "StoredSatellite"]


@dataclass(frozen=True, slots=True)
class StoredElementSet:
    """An element set as stored, with the bookkeeping the API shows."""

    elements: ElementSet
    create_time: datetime
    source_group: str | None


@dataclass(frozen=True, slots=True)
class StoredSatellite:
    catalog_number: int
    object_name: str
    intl_designator: str
    create_time: datetime
    update_time: datetime
    element_set: StoredElementSet | None
    element_set_count: int
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredGroup:
    group_id: str
    display_name: str
    kind: str
    satellite_count: int
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    added: int
    updated: int
    unchanged: int
    version: int
