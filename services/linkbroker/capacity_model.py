"""Capacity and link-geometry assumptions of the link broker.

Every number here is an *assumption* used for planning, labelled with where it
comes from. None of them is a measured property of a specific satellite or
gateway; operators override them (``CapacityModel(...)`` or
:meth:`CapacityModel.replace`) when better figures are known.

Sources of the defaults (public, order-of-magnitude):

* SpaceX has described a first-generation (v1.x) Starlink satellite as carrying
  on the order of 20 Gbps of user throughput, and its optical inter-satellite
  links as running at up to ~100 Gbps per link.
* The FCC authorisation for Starlink's Gen1 system allows user terminals down to
  25 degrees elevation (reduced from the originally filed 40 degrees); the same
  25 degree floor is taken for gateways.
* In a 72x22, 53-degree, 550 km Walker shell the longest +Grid links are the
  in-plane ones (360/22 deg of arc, about 1,980 km); cross-plane links are at
  most about 600 km (at the equator, shrinking towards the turning latitudes).
  5,000 km is taken as the laser range limit: it keeps every +Grid link of such
  a shell, and drops the long links that partially filled planes of a real
  catalogue would otherwise create.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["ASSUMPTIONS", "CapacityModel", "DEFAULT_CAPACITY_MODEL"]


@dataclass(frozen=True, slots=True)
class CapacityModel:
    """Planning capacities (Gbps), elevation masks (deg), ranges (km), overheads (ms).

    Attributes:
        user_beam_capacity_gbps: total user-link (Ku-band) capacity of one
            satellite, shared by every terminal it serves. Assumption: 20 Gbps
            (v1.x-class satellite).
        feeder_link_capacity_gbps_per_satellite: Ka-band gateway-link capacity of
            one satellite towards all the gateways it is connected to.
            Assumption: 20 Gbps (matches the user side so a bent pipe is
            balanced).
        feeder_link_capacity_gbps_per_antenna: capacity of one gateway antenna;
            each antenna tracks one satellite at a time. Assumption: 10 Gbps.
        gateway_antennas_default: antennas at a default gateway site.
            Assumption: 8 (gateway sites are built with several parabolic
            antennas).
        isl_capacity_gbps: one optical inter-satellite link, per direction.
            Assumption: 100 Gbps.
        terminal_min_elevation_deg: user terminals use satellites at or above
            this elevation. Default 25 deg (FCC authorisation).
        gateway_min_elevation_deg: gateways use satellites at or above this
            elevation. Assumption: 25 deg.
        isl_max_range_km: laser links longer than this are dropped in a slot.
            Assumption: 5,000 km (above the ~1,980 km longest +Grid link of a
            72x22 550 km 53 deg shell).
        satellite_processing_ms: switching delay added per satellite the
            packet traverses, per direction. Assumption: 0.1 ms.
        terminal_processing_ms: user-terminal modem/router delay per direction.
            Assumption: 1.0 ms.
        gateway_processing_ms: gateway baseband + point-of-presence core
            network delay per direction. Assumption: 2.0 ms.
        scheduling_rtt_ms: medium-access scheduling on the user link (the
            terminal waits for an uplink grant and a frame boundary), counted
            once per round trip. Assumption: 10 ms, in line with the gap between
            the ~5-10 ms propagation floor and the 20-50 ms round trips that
            public Starlink measurements report.
    """

    user_beam_capacity_gbps: float = 20.0
    feeder_link_capacity_gbps_per_satellite: float = 20.0
    feeder_link_capacity_gbps_per_antenna: float = 10.0
    gateway_antennas_default: int = 8
    isl_capacity_gbps: float = 100.0
    terminal_min_elevation_deg: float = 25.0
    gateway_min_elevation_deg: float = 25.0
    isl_max_range_km: float = 5_000.0
    satellite_processing_ms: float = 0.1
    terminal_processing_ms: float = 1.0
    gateway_processing_ms: float = 2.0
    scheduling_rtt_ms: float = 10.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value < 0:
                raise ValueError(f"{f.name} must be >= 0, got {value}")
        for name in ("terminal_min_elevation_deg", "gateway_min_elevation_deg"):
            if getattr(self, name) >= 90.0:
                raise ValueError(f"{name} must be < 90 deg")
        if self.isl_max_range_km <= 0:
            raise ValueError("isl_max_range_km must be > 0")

    def replace(self, **changes: Any) -> CapacityModel:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def gateway_capacity_gbps(self, antennas: int | None = None) -> float:
        """Feeder capacity of a gateway site with ``antennas`` antennas (Gbps)."""
        n = self.gateway_antennas_default if antennas is None else antennas
        return n * self.feeder_link_capacity_gbps_per_antenna


DEFAULT_CAPACITY_MODEL = CapacityModel()

_LABELS: dict[str, tuple[str, str]] = {
    "user_beam_capacity_gbps": ("Gbps", "assumption: v1.x-class satellite user capacity"),
    "feeder_link_capacity_gbps_per_satellite": ("Gbps", "assumption: balanced bent pipe"),
    "feeder_link_capacity_gbps_per_antenna": ("Gbps", "assumption"),
    "gateway_antennas_default": ("antennas", "assumption"),
    "isl_capacity_gbps": ("Gbps", "public: SpaceX laser links up to ~100 Gbps"),
    "terminal_min_elevation_deg": ("deg", "public: FCC Gen1 authorisation"),
    "gateway_min_elevation_deg": ("deg", "assumption: same floor as terminals"),
    "isl_max_range_km": ("km", "assumption: margin over +Grid cross-plane span"),
    "satellite_processing_ms": ("ms", "assumption, per satellite per direction"),
    "terminal_processing_ms": ("ms", "assumption, per direction"),
    "gateway_processing_ms": ("ms", "assumption, per direction"),
    "scheduling_rtt_ms": ("ms", "assumption, once per round trip"),
}

#: Field name -> (default value, unit, label), for reports and APIs.
ASSUMPTIONS: dict[str, tuple[float, str, str]] = {
    name: (getattr(DEFAULT_CAPACITY_MODEL, name), unit, label)
    for name, (unit, label) in _LABELS.items()
}
