"""Walker-delta constellation shells as SGP4 element sets.

A Walker-delta shell ``i: T/P/F`` has ``P`` planes with ascending nodes spread evenly
over 360 deg (plus ``raan_offset_deg``), ``S = T/P`` satellites evenly spaced in each
plane, and satellite ``s`` of plane ``p`` at mean anomaly
``360 * s / S + 360 * F * p / T`` deg (argument of perigee 0, near-circular).

Altitude convention: ``altitude_km`` is the SGP4 *Brouwer mean* semi-major axis
(``Satrec.a`` after initialisation, the "un-Kozai'd" value) minus the WGS72 equatorial
radius 6378.135 km.  The published (Kozai) mean motion is solved for so that SGP4's own
initialisation recovers exactly that semi-major axis; the time-averaged geocentric
radius then matches the altitude to within a few km (J2 short-period terms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sgp4.earth_gravity import wgs72

from services.orbit.elements import ElementSet

__all__ = [
    "PRESETS",
    "WalkerShell",
    "kozai_mean_motion_for_altitude",
    "preset",
    "walker_delta",
    "walker_shells",
]

_R_EARTH_KM = wgs72.radiusearthkm  # 6378.135
_KE = wgs72.xke  # sqrt(GM / R^3) in 1/min (earth radii^1.5 per minute)
_J2 = wgs72.j2


@dataclass(frozen=True, slots=True)
class WalkerShell:
    """One Walker-delta shell: ``planes`` x ``sats_per_plane``, phasing ``phasing`` (F)."""

    planes: int
    sats_per_plane: int
    phasing: int
    altitude_km: float
    inclination_deg: float
    raan_offset_deg: float = 0.0
    eccentricity: float = 1e-4
    name: str = "SHELL"

    @property
    def total(self) -> int:
        return self.planes * self.sats_per_plane


#: Named constellations as data: each maps to the shells it is made of.
#: Starlink Gen1 per the FCC modification (2021): the filing gives altitude,
#: inclination, planes and satellites per plane; the phasing factors are ours.
PRESETS: dict[str, tuple[WalkerShell, ...]] = {
    "starlink_gen1": (
        WalkerShell(72, 22, 17, 550.0, 53.0, name="STARLINK-G1S1"),
        WalkerShell(72, 22, 17, 540.0, 53.2, raan_offset_deg=2.5, name="STARLINK-G1S2"),
        WalkerShell(36, 20, 11, 570.0, 70.0, name="STARLINK-G1S3"),
        WalkerShell(6, 58, 1, 560.0, 97.6, name="STARLINK-G1S4"),
        WalkerShell(4, 43, 1, 560.0, 97.6, raan_offset_deg=30.0, name="STARLINK-G1S5"),
    ),
    "tracking_sensors": (WalkerShell(2, 2, 1, 1000.0, 81.0, name="TRACKER"),),
}


def kozai_mean_motion_for_altitude(
    altitude_km: np.ndarray | float,
    inclination_deg: np.ndarray | float,
    eccentricity: np.ndarray | float = 1e-4,
) -> np.ndarray:
    """Kozai mean motion (rev/day) whose SGP4 Brouwer mean semi-major axis is
    ``6378.135 km + altitude_km`` (WGS72).  Vectorised; inverts SGP4's ``initl``."""
    a_er = (_R_EARTH_KM + np.asarray(altitude_km, dtype=float)) / _R_EARTH_KM
    n_brouwer = _KE / a_er**1.5  # rad/min
    cosi = np.cos(np.radians(np.asarray(inclination_deg, dtype=float)))
    e2 = np.asarray(eccentricity, dtype=float) ** 2
    d1 = 0.75 * _J2 * (3.0 * cosi * cosi - 1.0) / (np.sqrt(1.0 - e2) * (1.0 - e2))
    n_kozai = n_brouwer
    for _ in range(30):  # fixed point n_k = n_b (1 + del(n_k)); contracts by ~1e-3
        ak = (_KE / n_kozai) ** (2.0 / 3.0)
        delta = d1 / (ak * ak)
        adel = ak * (1.0 - delta * delta - delta * (1.0 / 3.0 + 134.0 * delta * delta / 81.0))
        delta = d1 / (adel * adel)
        n_kozai = n_brouwer * (1.0 + delta)
    rev_day: np.ndarray = n_kozai * 1440.0 / (2.0 * math.pi)
    return rev_day


def walker_delta(
    shell: WalkerShell,
    epoch: datetime,
    first_catalog_number: int,
    *,
    name_prefix: str | None = None,
) -> list[ElementSet]:
    """Element sets of one shell, plane-major (catalog numbers consecutive)."""
    if shell.planes <= 0 or shell.sats_per_plane <= 0:
        raise ValueError("planes and sats_per_plane must be positive")
    if not 0 <= shell.phasing < shell.planes:
        raise ValueError("phasing F must be in [0, planes)")
    total = shell.total
    p = np.repeat(np.arange(shell.planes), shell.sats_per_plane)
    s = np.tile(np.arange(shell.sats_per_plane), shell.planes)
    raan = (shell.raan_offset_deg + 360.0 * p / shell.planes) % 360.0
    anomaly = (360.0 * s / shell.sats_per_plane + 360.0 * shell.phasing * p / total) % 360.0
    n = float(
        kozai_mean_motion_for_altitude(shell.altitude_km, shell.inclination_deg, shell.eccentricity)
    )
    prefix = name_prefix or shell.name
    return [
        ElementSet(
            catalog_number=first_catalog_number + k,
            mean_motion_rev_day=n,
            eccentricity=shell.eccentricity,
            inclination_deg=shell.inclination_deg,
            raan_deg=float(raan[k]),
            arg_perigee_deg=0.0,
            mean_anomaly_deg=float(anomaly[k]),
            epoch=epoch,
            name=f"{prefix}-{p[k]:02d}-{s[k]:02d}",
            element_set_number=1,
        )
        for k in range(total)
    ]


def walker_shells(
    shells: Sequence[WalkerShell], epoch: datetime, first_catalog_number: int
) -> list[ElementSet]:
    """Concatenate several shells with consecutive catalog numbers."""
    out: list[ElementSet] = []
    for shell in shells:
        out.extend(walker_delta(shell, epoch, first_catalog_number + len(out)))
    return out


def preset(name: str, epoch: datetime, first_catalog_number: int) -> list[ElementSet]:
    """Element sets of a named preset from :data:`PRESETS`."""
    try:
        shells = PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None
    return walker_shells(shells, epoch, first_catalog_number)
