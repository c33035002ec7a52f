"""Latency budget of a terminal -> satellite(s) -> gateway -> Azure region path.

All delays are in milliseconds. A path's *one-way* delay is the sum of

* propagation: uplink (terminal -> serving satellite slant range / c), ISL
  (sum of laser-link lengths / c), downlink (last satellite -> gateway slant
  range / c) and terrestrial fibre (gateway -> region, see
  :class:`services.linkbroker.gateways.FibreModel`);
* per-direction processing: terminal modem, every satellite traversed,
  gateway baseband + core network, and the fibre model's fixed ground-segment
  term.

The round trip adds the medium-access scheduling delay once:

    RTT = 2 x one_way + scheduling_rtt

Overheads come from :class:`services.linkbroker.capacity_model.CapacityModel`
(documented assumptions there). The propagation part can never beat the
physical floor of :func:`physical_floor_rtt_ms` (4 x altitude / c: straight up
and down, twice); at 550 km that is 7.34 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from services.linkbroker.capacity_model import DEFAULT_CAPACITY_MODEL, CapacityModel
from shared.geodesy import SPEED_OF_LIGHT_M_S

__all__ = [
    "LatencyBudget",
    "latency_budget",
    "metres_to_ms",
    "physical_floor_rtt_ms",
]


def metres_to_ms(distance_m: ArrayLike) -> NDArray[np.float64]:
    """Vacuum propagation delay (ms) over ``distance_m`` metres."""
    return np.asarray(distance_m, dtype=np.float64) / SPEED_OF_LIGHT_M_S * 1e3


def physical_floor_rtt_ms(altitude_km: float) -> float:
    """Lowest possible RTT (ms) via a satellite at ``altitude_km``: 4 x altitude / c.

    Terminal and gateway both directly beneath the satellite; no processing.
    """
    return float(4.0 * altitude_km * 1e3 / SPEED_OF_LIGHT_M_S * 1e3)


@dataclass(frozen=True)
class LatencyBudget:
    """Per-path latency components (arrays of one shape, ms).

    Attributes:
        uplink_ms, isl_ms, downlink_ms, fibre_ms: one-way propagation legs.
        processing_ms: one-way processing (terminal + satellites + gateway +
            fibre fixed ground-segment term).
        scheduling_rtt_ms: once-per-round-trip scheduling delay.
    """

    uplink_ms: NDArray[np.float64]
    isl_ms: NDArray[np.float64]
    downlink_ms: NDArray[np.float64]
    fibre_ms: NDArray[np.float64]
    processing_ms: NDArray[np.float64]
    scheduling_rtt_ms: NDArray[np.float64]

    @property
    def propagation_ms(self) -> NDArray[np.float64]:
        """One-way propagation (space + fibre), ms."""
        return self.uplink_ms + self.isl_ms + self.downlink_ms + self.fibre_ms

    @property
    def one_way_ms(self) -> NDArray[np.float64]:
        """One-way delay: propagation + per-direction processing, ms."""
        return self.propagation_ms + self.processing_ms

    @property
    def rtt_ms(self) -> NDArray[np.float64]:
        """Round trip: ``2 * one_way + scheduling``, ms."""
        return 2.0 * self.one_way_ms + self.scheduling_rtt_ms

    def as_dict(self, i: int | None = None) -> dict[str, float]:
        """Components (and totals) as plain floats, for one path ``i`` or a scalar budget."""
        def pick(a: NDArray[np.float64]) -> float:
            return float(np.asarray(a).reshape(-1)[0 if i is None else i])

        return {
            "uplink_ms": pick(self.uplink_ms),
            "isl_ms": pick(self.isl_ms),
            "downlink_ms": pick(self.downlink_ms),
            "fibre_ms": pick(self.fibre_ms),
            "processing_ms": pick(self.processing_ms),
            "scheduling_rtt_ms": pick(self.scheduling_rtt_ms),
            "one_way_ms": pick(self.one_way_ms),
            "rtt_ms": pick(self.rtt_ms),
        }


def latency_budget(
    uplink_ms: ArrayLike,
    isl_ms: ArrayLike,
    downlink_ms: ArrayLike,
    fibre_propagation_ms: ArrayLike,
    satellites_traversed: ArrayLike,
    *,
    capacity: CapacityModel = DEFAULT_CAPACITY_MODEL,
    fibre_fixed_ms: float = 0.5,
) -> LatencyBudget:
    """Assemble a :class:`LatencyBudget` from propagation legs (all broadcast).

    ``satellites_traversed`` is the number of satellites on the path (1 for a
    bent pipe, ISL hops + 1 otherwise); each adds
    ``capacity.satellite_processing_ms`` per direction. ``fibre_fixed_ms`` is the
    fibre model's fixed ground-segment term (per direction).
    """
    up, isl, down, fibre, nsat = np.broadcast_arrays(
        np.asarray(uplink_ms, dtype=np.float64),
        np.asarray(isl_ms, dtype=np.float64),
        np.asarray(downlink_ms, dtype=np.float64),
        np.asarray(fibre_propagation_ms, dtype=np.float64),
        np.asarray(satellites_traversed, dtype=np.float64),
    )
    processing = (
        capacity.terminal_processing_ms
        + nsat * capacity.satellite_processing_ms
        + capacity.gateway_processing_ms
        + fibre_fixed_ms
    )
    return LatencyBudget(
        uplink_ms=up,
        isl_ms=isl,
        downlink_ms=down,
        fibre_ms=fibre,
        processing_ms=np.asarray(processing, dtype=np.float64),
        scheduling_rtt_ms=np.full(up.shape, capacity.scheduling_rtt_ms),
    )
