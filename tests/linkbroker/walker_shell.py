"""Tiny circular Walker-delta shell for link-broker tests and the routing benchmark.

Keplerian two-body motion on circular orbits (no J2), Earth rotation as a plain
rotation about z at the WGS84 rate from a zero angle at ``t = 0``. Good enough
to produce realistic *geometry* for routing; not an orbit model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.geodesy import EARTH_ROTATION_RAD_S, GM_EARTH_M3_S2, WGS84_A_M


@dataclass(frozen=True)
class WalkerShell:
    """Walker delta i:T/P/F at ``altitude_km``; satellite k = plane * S + slot."""

    inclination_deg: float = 53.0
    n_planes: int = 72
    sats_per_plane: int = 22
    phasing: int = 5
    altitude_km: float = 550.0

    @property
    def n(self) -> int:
        return self.n_planes * self.sats_per_plane

    @property
    def plane(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_planes), self.sats_per_plane)

    @property
    def slot(self) -> np.ndarray:
        return np.tile(np.arange(self.sats_per_plane), self.n_planes)

    @property
    def radius_m(self) -> float:
        return WGS84_A_M + self.altitude_km * 1e3

    def _angles(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        n_rad_s = np.sqrt(GM_EARTH_M3_S2 / self.radius_m**3)
        raan = np.radians(360.0 * self.plane / self.n_planes)
        u0 = np.radians(
            360.0 * self.slot / self.sats_per_plane + 360.0 * self.phasing * self.plane / self.n
        )
        return raan, u0 + n_rad_s * t_s

    def arg_lat_deg(self, t_s: float = 0.0) -> np.ndarray:
        return np.degrees(self._angles(t_s)[1]) % 360.0

    def eci_state(self, t_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Inertial position (km) and velocity (km/s), (N, 3)."""
        raan, u = self._angles(t_s)
        i = np.radians(self.inclination_deg)
        cu, su, co, so = np.cos(u), np.sin(u), np.cos(raan), np.sin(raan)
        r = self.radius_m / 1e3
        pos = r * np.stack((cu * co - su * np.cos(i) * so, cu * so + su * np.cos(i) * co, su * np.sin(i)), 1)
        v = r * np.sqrt(GM_EARTH_M3_S2 / self.radius_m**3)
        vel = v * np.stack((-su * co - cu * np.cos(i) * so, -su * so + cu * np.cos(i) * co, cu * np.sin(i)), 1)
        return pos, vel

    def ecef_km(self, t_s: float = 0.0) -> np.ndarray:
        """Earth-fixed positions (km), (N, 3)."""
        pos, _ = self.eci_state(t_s)
        th = EARTH_ROTATION_RAD_S * t_s
        c, s = np.cos(th), np.sin(th)
        return np.stack((c * pos[:, 0] + s * pos[:, 1], -s * pos[:, 0] + c * pos[:, 1], pos[:, 2]), 1)
