"""Ground gateways and the terrestrial fibre latency model.

A gateway is a ground station with several Ka-band antennas that talk to
satellites; its traffic reaches Azure over terrestrial fibre to a backhaul
region. Gateways are held in a columnar :class:`GatewayTable` (numpy arrays,
one row per gateway) so the router can work on all of them at once.

Default gateways (:func:`default_gateways`) are one per Azure region that a
53-degree shell serves, co-located with the region's published coordinates (a
real gateway sits some kilometres to tens of kilometres away; the fibre model's
fixed term covers that metro segment). "Served" means ``|latitude| <=``
:data:`DEFAULT_GATEWAY_MAX_ABS_LAT_DEG` = 60 deg: a 53 deg, 550 km shell with a
25 deg elevation mask reaches ground latitudes up to about 61.4 deg
(:func:`shell_coverage_latitude_deg`), and coverage is thin near that edge, so
the cut-off keeps a margin. With the packaged catalogue this keeps every region
except ``swedencentral`` (60.67 N).

Fibre latency (:class:`FibreModel`):

* propagation = great-circle distance x route factor / (c / n), with route
  factor 1.5 (terrestrial fibre follows roads, rail and sea cables, not great
  circles; published route-to-geodesic ratios cluster around 1.3-2) and group
  refractive index n = 1.468 (standard single-mode fibre at 1550 nm), i.e.
  about 7.3 us per great-circle km;
* plus a *separate* fixed ground-segment term per direction (default 0.5 ms):
  metro fibre from gateway to the point of presence, router and peering hops
  into the Azure edge. It is reported apart from propagation so budgets can
  show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray

from services.linkbroker.capacity_model import DEFAULT_CAPACITY_MODEL, CapacityModel
from services.linkbroker.regions import RegionTable, load_regions
from shared.geodesy import (
    MEAN_EARTH_RADIUS_M,
    SPEED_OF_LIGHT_M_S,
    geodetic_to_ecef,
    great_circle_distance_m,
)

__all__ = [
    "DEFAULT_GATEWAY_MAX_ABS_LAT_DEG",
    "FIBRE_REFRACTIVE_INDEX",
    "FIBRE_ROUTE_FACTOR",
    "FibreModel",
    "Gateway",
    "GatewayState",
    "GatewayTable",
    "default_gateways",
    "shell_coverage_latitude_deg",
]

#: Ratio of fibre route length to great-circle distance (dimensionless, assumption).
FIBRE_ROUTE_FACTOR = 1.5
#: Group refractive index of single-mode fibre at 1550 nm (dimensionless).
FIBRE_REFRACTIVE_INDEX = 1.468
#: Fixed per-direction ground-segment delay gateway -> Azure edge, ms (assumption).
FIBRE_FIXED_OVERHEAD_MS = 0.5
#: Default gateways are placed at regions with |latitude| at or below this, degrees.
DEFAULT_GATEWAY_MAX_ABS_LAT_DEG = 60.0


class GatewayState(IntEnum):
    """Operational state. Only ``ACTIVE`` gateways take new traffic.

    ``DRAINING`` gateways keep existing reservations but are not offered for new
    paths; ``DRAINED`` gateways carry nothing.
    """

    ACTIVE = 0
    DRAINING = 1
    DRAINED = 2


@dataclass(frozen=True, slots=True)
class FibreModel:
    """Terrestrial fibre delay: propagation along a stretched great circle + fixed term.

    Attributes:
        route_factor: fibre route length / great-circle distance (default 1.5).
        refractive_index: group index of the fibre (default 1.468), so light
            travels at ``c / refractive_index`` (about 204,200 km/s).
        fixed_overhead_ms: per-direction ground-segment delay added once per
            gateway->region leg, kept separate from propagation (default 0.5 ms).
    """

    route_factor: float = FIBRE_ROUTE_FACTOR
    refractive_index: float = FIBRE_REFRACTIVE_INDEX
    fixed_overhead_ms: float = FIBRE_FIXED_OVERHEAD_MS

    def __post_init__(self) -> None:
        if self.route_factor < 1.0:
            raise ValueError("route_factor must be >= 1 (fibre cannot beat the great circle)")
        if self.refractive_index < 1.0:
            raise ValueError("refractive_index must be >= 1")
        if self.fixed_overhead_ms < 0:
            raise ValueError("fixed_overhead_ms must be >= 0")

    @property
    def speed_m_s(self) -> float:
        """Speed of light in the fibre, m/s."""
        return SPEED_OF_LIGHT_M_S / self.refractive_index

    def propagation_ms_for_distance(self, great_circle_m: ArrayLike) -> NDArray[np.float64]:
        """One-way propagation delay (ms) for great-circle distance(s) in metres."""
        d = np.asarray(great_circle_m, dtype=np.float64)
        return d * self.route_factor / self.speed_m_s * 1e3

    def propagation_ms(
        self, lat1_deg: ArrayLike, lon1_deg: ArrayLike, lat2_deg: ArrayLike, lon2_deg: ArrayLike
    ) -> NDArray[np.float64]:
        """One-way fibre propagation (ms) between geodetic points (degrees); broadcasts."""
        return self.propagation_ms_for_distance(
            great_circle_distance_m(lat1_deg, lon1_deg, lat2_deg, lon2_deg)
        )

    def one_way_ms(
        self, lat1_deg: ArrayLike, lon1_deg: ArrayLike, lat2_deg: ArrayLike, lon2_deg: ArrayLike
    ) -> NDArray[np.float64]:
        """Propagation plus the fixed ground-segment term, one way, ms."""
        return self.propagation_ms(lat1_deg, lon1_deg, lat2_deg, lon2_deg) + self.fixed_overhead_ms


@dataclass(frozen=True, slots=True)
class Gateway:
    """One gateway row (see :class:`GatewayTable` for units)."""

    id: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    antennas: int
    capacity_gbps: float
    backhaul_region: str
    state: GatewayState


@dataclass(frozen=True)
class GatewayTable:
    """Columnar gateway table; row ``i`` of every array is gateway ``i``.

    Attributes:
        ids: ``(G,)`` object array of gateway ids.
        latitude_deg, longitude_deg: ``(G,)`` WGS84 geodetic degrees.
        altitude_m: ``(G,)`` height above the WGS84 ellipsoid, metres.
        antennas: ``(G,)`` int64, antennas at the site.
        capacity_gbps: ``(G,)`` total feeder capacity of the site, Gbps.
        backhaul_region: ``(G,)`` object array of Azure region names.
        state: ``(G,)`` int8 :class:`GatewayState` codes.
        ecef_m: ``(G, 3)`` ECEF (ITRF) positions, metres (derived).
    """

    ids: np.ndarray
    latitude_deg: np.ndarray
    longitude_deg: np.ndarray
    altitude_m: np.ndarray
    antennas: np.ndarray
    capacity_gbps: np.ndarray
    backhaul_region: np.ndarray
    state: np.ndarray
    ecef_m: np.ndarray = field(repr=False)

    @classmethod
    def from_gateways(cls, gateways: Sequence[Gateway]) -> GatewayTable:
        """Build the table from rows; validates ids, coordinates and regions."""
        regions = load_regions()
        ids = [g.id for g in gateways]
        if len(set(ids)) != len(ids):
            raise ValueError("gateway ids must be unique")
        for g in gateways:
            if not (-90 <= g.latitude_deg <= 90 and -180 <= g.longitude_deg <= 180):
                raise ValueError(f"gateway {g.id!r} has out-of-range coordinates")
            if g.antennas < 1 or g.capacity_gbps < 0:
                raise ValueError(f"gateway {g.id!r} needs >= 1 antenna and capacity >= 0")
            regions.index_of(g.backhaul_region)  # raises UnknownRegionError
        lat = np.array([g.latitude_deg for g in gateways], dtype=np.float64)
        lon = np.array([g.longitude_deg for g in gateways], dtype=np.float64)
        alt = np.array([g.altitude_m for g in gateways], dtype=np.float64)
        return cls(
            ids=np.array(ids, dtype=object),
            latitude_deg=lat,
            longitude_deg=lon,
            altitude_m=alt,
            antennas=np.array([g.antennas for g in gateways], dtype=np.int64),
            capacity_gbps=np.array([g.capacity_gbps for g in gateways], dtype=np.float64),
            backhaul_region=np.array([g.backhaul_region for g in gateways], dtype=object),
            state=np.array([int(g.state) for g in gateways], dtype=np.int8),
            ecef_m=geodetic_to_ecef(lat, lon, alt).reshape(-1, 3),
        )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def row(self, i: int) -> Gateway:
        """Gateway ``i`` as a :class:`Gateway` record."""
        return Gateway(
            id=str(self.ids[i]),
            latitude_deg=float(self.latitude_deg[i]),
            longitude_deg=float(self.longitude_deg[i]),
            altitude_m=float(self.altitude_m[i]),
            antennas=int(self.antennas[i]),
            capacity_gbps=float(self.capacity_gbps[i]),
            backhaul_region=str(self.backhaul_region[i]),
            state=GatewayState(int(self.state[i])),
        )

    def index_of(self, gateway_id: str) -> int:
        """Row of ``gateway_id``; raises ``KeyError``."""
        hits = np.flatnonzero(self.ids == gateway_id)
        if hits.size == 0:
            raise KeyError(gateway_id)
        return int(hits[0])

    def active_mask(self) -> NDArray[np.bool_]:
        """``(G,)`` True where the gateway takes new traffic."""
        active: NDArray[np.bool_] = self.state == GatewayState.ACTIVE
        return active

    def with_state(self, gateway_id: str, state: GatewayState) -> GatewayTable:
        """A copy with one gateway's state changed."""
        new_state = self.state.copy()
        new_state[self.index_of(gateway_id)] = int(state)
        return GatewayTable(
            ids=self.ids,
            latitude_deg=self.latitude_deg,
            longitude_deg=self.longitude_deg,
            altitude_m=self.altitude_m,
            antennas=self.antennas,
            capacity_gbps=self.capacity_gbps,
            backhaul_region=self.backhaul_region,
            state=new_state,
            ecef_m=self.ecef_m,
        )

    def fibre_ms_to_regions(
        self, regions: RegionTable, model: FibreModel | None = None
    ) -> NDArray[np.float64]:
        """``(G, R)`` one-way fibre delay (ms, propagation + fixed) gateway -> region."""
        m = model or FibreModel()
        return m.one_way_ms(
            self.latitude_deg[:, None],
            self.longitude_deg[:, None],
            regions.latitude_deg[None, :],
            regions.longitude_deg[None, :],
        )


def shell_coverage_latitude_deg(
    inclination_deg: float, altitude_km: float, min_elevation_deg: float
) -> float:
    """Highest ground latitude (deg) that sees a shell's satellites at ``min_elevation``.

    Spherical Earth (mean radius): the Earth central angle from a ground point to
    a satellite seen at elevation ``e`` is ``90 - e - asin(R cos e / (R + h))``;
    the shell reaches latitudes up to its inclination plus that angle.
    """
    r = MEAN_EARTH_RADIUS_M / 1e3
    e = np.radians(min_elevation_deg)
    central = np.pi / 2 - e - np.arcsin(r * np.cos(e) / (r + altitude_km))
    return float(inclination_deg + np.degrees(central))


def default_gateways(
    capacity: CapacityModel = DEFAULT_CAPACITY_MODEL,
    max_abs_latitude_deg: float = DEFAULT_GATEWAY_MAX_ABS_LAT_DEG,
) -> GatewayTable:
    """One active gateway per Azure region with ``|lat| <= max_abs_latitude_deg``.

    Each is placed at its region's published coordinates at 0 m ellipsoidal
    height, named ``gw-<region>``, with ``capacity.gateway_antennas_default``
    antennas and ``capacity.gateway_capacity_gbps()`` of feeder capacity, and
    backhauls to that region.
    """
    regions = load_regions()
    rows = [
        Gateway(
            id=f"gw-{r.name}",
            latitude_deg=r.latitude_deg,
            longitude_deg=r.longitude_deg,
            altitude_m=0.0,
            antennas=capacity.gateway_antennas_default,
            capacity_gbps=capacity.gateway_capacity_gbps(),
            backhaul_region=r.name,
            state=GatewayState.ACTIVE,
        )
        for r in regions.regions
        if abs(r.latitude_deg) <= max_abs_latitude_deg
    ]
    return GatewayTable.from_gateways(rows)
