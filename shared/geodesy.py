"""WGS84 geodesy: geodetic <-> Earth-fixed Cartesian coordinates and topocentric geometry.

Conventions used throughout this module:

* Cartesian positions are Earth-centred, Earth-fixed (ECEF, i.e. ITRF/WGS84 axes) in
  **metres**, stored in the last axis of an array (``[..., 3]`` = x, y, z).
* Geodetic coordinates are WGS84 latitude and longitude in **degrees** (latitude
  geodetic, longitude east-positive) and height above the ellipsoid in **metres**.
* Every function broadcasts its inputs with ordinary NumPy rules and works in float64;
  none loops in Python over points or times.

Constants:

* WGS84 defining parameters ``a``, ``1/f``, ``GM`` and the nominal angular velocity are
  those of NIMA TR8350.2, *Department of Defense World Geodetic System 1984*, 3rd ed.,
  amendment 2004 (Table 3.1). ``b`` and ``e^2`` are derived from ``a`` and ``f``.
* ``J2`` is the unnormalized second zonal harmonic derived from WGS84
  ``C20 = -0.484166774985e-3`` (TR8350.2 Table 3.3 / EGM96): ``J2 = -sqrt(5) * C20``.
* The speed of light is exact by the definition of the metre (SI; IERS Conventions 2010
  Table 1.1).
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "EARTH_ROTATION_RAD_S",
    "GM_EARTH_M3_S2",
    "J2",
    "MEAN_EARTH_RADIUS_M",
    "SPEED_OF_LIGHT_M_S",
    "WGS84_A_M",
    "WGS84_B_M",
    "WGS84_E2",
    "WGS84_F",
    "ecef_to_geodetic",
    "enu_rotation",
    "geodetic_to_ecef",
    "great_circle_distance_m",
    "look_angles",
    "prime_vertical_radius_m",
    "validate_geodetic",
]

# --- Constants --------------------------------------------------------------------------

#: WGS84 semi-major axis (equatorial radius), metres. NIMA TR8350.2.
WGS84_A_M = 6378137.0
#: WGS84 flattening (dimensionless). NIMA TR8350.2.
WGS84_F = 1.0 / 298.257223563
#: WGS84 semi-minor axis (polar radius), metres: ``a * (1 - f)`` = 6356752.314245... m.
WGS84_B_M = WGS84_A_M * (1.0 - WGS84_F)
#: WGS84 first eccentricity squared: ``f * (2 - f)`` = 0.00669437999014...
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)
#: Nominal mean angular velocity of the Earth, rad/s. NIMA TR8350.2.
EARTH_ROTATION_RAD_S = 7.292115e-5
#: Speed of light in vacuum, m/s (exact; SI / IERS Conventions 2010).
SPEED_OF_LIGHT_M_S = 299_792_458.0
#: Earth's gravitational constant including the atmosphere, m^3/s^2. NIMA TR8350.2.
GM_EARTH_M3_S2 = 3.986004418e14
#: Second zonal harmonic (unnormalized) of the WGS84/EGM96 gravity field, dimensionless.
J2 = 1.08262668e-3
#: IUGG mean Earth radius ``R1 = (2a + b) / 3``, metres; used for great-circle distances.
MEAN_EARTH_RADIUS_M = 6371008.8

#: Default altitude range accepted by :func:`validate_geodetic` for ground points, metres.
#: -500 m covers the lowest land (Dead Sea shore, about -430 m) and the geoid-ellipsoid
#: separation; 100 km is the Karman line, above which a "ground point" makes no sense.
GROUND_MIN_ALT_M = -500.0
GROUND_MAX_ALT_M = 100_000.0

_E4 = WGS84_E2 * WGS84_E2
_A2 = WGS84_A_M * WGS84_A_M


# --- Geodetic <-> ECEF ------------------------------------------------------------------


def prime_vertical_radius_m(lat_deg: ArrayLike) -> NDArray[np.float64]:
    """Radius of curvature in the prime vertical ``N(phi) = a / sqrt(1 - e^2 sin^2 phi)``.

    ``lat_deg`` is geodetic latitude in degrees; the result is in metres.
    """
    s = np.sin(np.radians(lat_deg))
    return WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * s * s)


def geodetic_to_ecef(
    lat_deg: ArrayLike, lon_deg: ArrayLike, alt_m: ArrayLike
) -> NDArray[np.float64]:
    """Convert WGS84 geodetic coordinates to ECEF Cartesian coordinates.

    Parameters are geodetic latitude and east longitude in degrees and height above the
    ellipsoid in metres; they broadcast against each other. Returns an array of shape
    ``broadcast_shape + (3,)`` with ECEF x, y, z in metres.
    """
    phi = np.radians(np.asarray(lat_deg, dtype=np.float64))
    lam = np.radians(np.asarray(lon_deg, dtype=np.float64))
    h = np.asarray(alt_m, dtype=np.float64)
    sin_phi = np.sin(phi)
    cos_phi = np.cos(phi)
    n = WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * sin_phi * sin_phi)
    rho = (n + h) * cos_phi  # distance from the polar axis
    x = rho * np.cos(lam)
    y = rho * np.sin(lam)
    z = (n * (1.0 - WGS84_E2) + h) * sin_phi
    x, y, z = np.broadcast_arrays(x, y, z)
    return np.stack((x, y, z), axis=-1)


def ecef_to_geodetic(
    xyz_m: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Convert ECEF Cartesian coordinates to WGS84 geodetic coordinates.

    ``xyz_m`` has shape ``[..., 3]`` (metres). Returns ``(lat_deg, lon_deg, alt_m)``, each
    of shape ``[...]``: geodetic latitude in degrees [-90, 90], east longitude in degrees
    (-180, 180], height above the ellipsoid in metres.

    Method: the exact closed-form solution of the meridian-plane quartic due to
    H. Vermeille (J. Geodesy 76, 2002; 85, 2011), written here from the equations. It
    needs no iteration, round-trips with :func:`geodetic_to_ecef` to well under a
    millimetre from near the Earth's centre out to beyond GEO, and handles the poles
    (latitude +/-90 on the polar axis). Inside the evolute of the ellipse (within about
    43 km of the centre, where a point has several surface normals and the geodetic
    coordinates are not unique) it returns one valid solution; exactly on the equatorial
    plane there it returns latitude 0 and ``alt = distance_from_axis - a``.
    """
    xyz = np.asarray(xyz_m, dtype=np.float64)
    x = xyz[..., 0]
    y = xyz[..., 1]
    z = xyz[..., 2]
    rho2 = x * x + y * y
    rho = np.sqrt(rho2)
    z2 = z * z

    p = rho2 / _A2
    q = (1.0 - WGS84_E2) * z2 / _A2
    r = (p + q - _E4) / 6.0
    e4pq = _E4 * p * q
    r3_8 = 8.0 * r * r * r
    evolute = r3_8 + e4pq  # > 0 outside the evolute of the meridian ellipse

    with np.errstate(invalid="ignore", divide="ignore"):
        # Outside the evolute: one real root of the resolvent cubic, by Cardano.
        sqrt_evol = np.sqrt(np.maximum(evolute, 0.0))
        sqrt_e4pq = np.sqrt(e4pq)
        u_outside = (
            r
            + 0.5 * np.cbrt((sqrt_evol + sqrt_e4pq) ** 2)
            + 0.5 * np.cbrt((sqrt_evol - sqrt_e4pq) ** 2)
        )
        # Inside the evolute (r < 0): three real roots, r * (1 + 2 cos((theta + 2 pi k) / 3)).
        # k = 1 is the root continuous with the outside solution across evolute == 0;
        # 1 + 2 cos x = sin(3x / 2) / sin(x / 2) avoids cancellation near the plane z = 0.
        theta = 4.0 * np.arctan2(
            sqrt_e4pq, np.sqrt(np.maximum(-evolute, 0.0)) + np.sqrt(np.maximum(-r3_8, 0.0))
        )
        u_inside = -r * np.sin(0.5 * theta) / np.sin(np.pi / 3.0 + theta / 6.0)
        u = np.where(evolute > 0.0, u_outside, u_inside)

        v = np.sqrt(u * u + _E4 * q)
        uv = u + v
        w = WGS84_E2 * (uv - q) / (2.0 * v)
        k = uv / (np.sqrt(w * w + uv) + w)
        d = k * rho / (k + WGS84_E2)
        dz = np.hypot(d, z)
        lat = 2.0 * np.arctan2(z, dz + d)
        alt = (k + WGS84_E2 - 1.0) / k * dz

    # Degenerate case: on (or within a nanometre of) the equatorial plane inside the evolute
    # (rho < a e^2) the formulas lose all precision (0/0 or underflow); latitude 0 with
    # alt = rho - a is exact on the plane and within |z| of exact next to it.
    near_plane_inside = (evolute <= 0.0) & (np.abs(z) < 1e-9)
    degenerate = ((~(np.isfinite(alt) & np.isfinite(lat))) | near_plane_inside) & (
        np.isfinite(rho) & np.isfinite(z))
    if np.any(degenerate):
        lat = np.where(degenerate, 0.0, lat)
        alt = np.where(degenerate, rho - WGS84_A_M, alt)

    # On the polar axis the normal through the pole is exact: latitude +/-90 and
    # alt = |z| - b. The closed form loses it near the centre, where p and q underflow.
    on_axis = rho2 == 0.0
    if np.any(on_axis):
        lat = np.where(on_axis, np.where(z < 0.0, -0.5 * np.pi, 0.5 * np.pi), lat)
        alt = np.where(on_axis, np.abs(z) - WGS84_B_M, alt)

    lon = np.arctan2(y, x)
    return np.degrees(lat), np.degrees(lon), alt


# --- Topocentric geometry ---------------------------------------------------------------


def enu_rotation(lat_deg: ArrayLike, lon_deg: ArrayLike) -> NDArray[np.float64]:
    """Rotation matrix from ECEF to the local East-North-Up frame.

    ``lat_deg``/``lon_deg`` are geodetic degrees and broadcast against each other. Returns
    shape ``broadcast_shape + (3, 3)``: rows are the unit vectors east, north and up
    (the ellipsoid normal) expressed in ECEF, so ``enu = R @ d_ecef``.
    """
    phi = np.radians(np.asarray(lat_deg, dtype=np.float64))
    lam = np.radians(np.asarray(lon_deg, dtype=np.float64))
    phi, lam = np.broadcast_arrays(phi, lam)
    sp, cp = np.sin(phi), np.cos(phi)
    sl, cl = np.sin(lam), np.cos(lam)
    zero = np.zeros_like(phi)
    east = np.stack((-sl, cl, zero), axis=-1)
    north = np.stack((-sp * cl, -sp * sl, cp), axis=-1)
    up = np.stack((cp * cl, cp * sl, sp), axis=-1)
    return np.stack((east, north, up), axis=-2)


def look_angles(
    observer_ecef_m: ArrayLike,
    target_ecef_m: ArrayLike,
    observer_lat_deg: ArrayLike,
    observer_lon_deg: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Azimuth, elevation and slant range from observers to targets.

    ``observer_ecef_m`` and ``target_ecef_m`` are ECEF positions in metres, shape
    ``[..., 3]``; ``observer_lat_deg``/``observer_lon_deg`` are the observers' geodetic
    coordinates in degrees, shaped like ``observer_ecef_m[..., 0]``. Everything broadcasts:
    observers shaped ``(P, 1, 3)`` (lat/lon ``(P, 1)``) and targets ``(1, S, 3)`` give
    ``(P, S)`` results.

    Returns ``(azimuth_deg, elevation_deg, range_m)``: azimuth in [0, 360) measured from
    geodetic north through east, elevation in degrees above the plane normal to the
    ellipsoid normal (geodetic, no refraction), range in metres. A target exactly at the
    zenith gets azimuth 0 and elevation 90.
    """
    obs = np.asarray(observer_ecef_m, dtype=np.float64)
    tgt = np.asarray(target_ecef_m, dtype=np.float64)
    phi = np.radians(np.asarray(observer_lat_deg, dtype=np.float64))
    lam = np.radians(np.asarray(observer_lon_deg, dtype=np.float64))
    sp, cp = np.sin(phi), np.cos(phi)
    sl, cl = np.sin(lam), np.cos(lam)

    dx = tgt[..., 0] - obs[..., 0]
    dy = tgt[..., 1] - obs[..., 1]
    dz = tgt[..., 2] - obs[..., 2]
    # Components along the East, North and Up unit vectors (the rows of enu_rotation),
    # written out so that they broadcast without building (..., 3, 3) matrices.
    radial = cl * dx + sl * dy  # along the observer's meridian, away from the polar axis
    east = cl * dy - sl * dx
    north = cp * dz - sp * radial
    up = cp * radial + sp * dz

    ground = np.hypot(east, north)
    azimuth = np.degrees(np.arctan2(east, north)) % 360.0
    azimuth = np.where(azimuth >= 360.0, 0.0, azimuth)  # -tiny % 360 rounds to 360
    elevation = np.degrees(np.arctan2(up, ground))
    range_m = np.sqrt(dx * dx + dy * dy + dz * dz)
    return azimuth, elevation, range_m


def great_circle_distance_m(
    lat1_deg: ArrayLike, lon1_deg: ArrayLike, lat2_deg: ArrayLike, lon2_deg: ArrayLike
) -> NDArray[np.float64]:
    """Great-circle (surface) distance in metres between two points given in degrees.

    Haversine formula on a sphere of the IUGG mean Earth radius 6371008.8 m (not on the
    ellipsoid: the error against the WGS84 geodesic is up to about 0.5 %, which is fine
    for fibre-route and latency estimates). Inputs broadcast.
    """
    phi1 = np.radians(np.asarray(lat1_deg, dtype=np.float64))
    phi2 = np.radians(np.asarray(lat2_deg, dtype=np.float64))
    dphi = phi2 - phi1
    dlam = np.radians(
        np.asarray(lon2_deg, dtype=np.float64) - np.asarray(lon1_deg, dtype=np.float64)
    )
    hav = np.sin(0.5 * dphi) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(0.5 * dlam) ** 2
    return cast(NDArray[np.float64],
                2.0 * MEAN_EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0))))


# --- Validation -------------------------------------------------------------------------


def validate_geodetic(
    lat_deg: ArrayLike,
    lon_deg: ArrayLike,
    alt_m: ArrayLike,
    *,
    field: str = "location",
    min_alt_m: float = GROUND_MIN_ALT_M,
    max_alt_m: float = GROUND_MAX_ALT_M,
) -> list[tuple[str, str]]:
    """Check a geodetic point (or arrays of points) and list what is wrong with it.

    Returns ``[(field_path, message), ...]``, empty when valid; never raises for bad
    values. Field paths follow ``skybridge.common.v1.GeodeticPoint``:
    ``f"{field}.latitude_deg"``, ``.longitude_deg``, ``.altitude_m``; for array inputs
    the flat index of each offending point is included, e.g. ``location[3].altitude_m``.

    Rules: every value finite; latitude in [-90, 90] degrees; longitude in [-180, 180]
    degrees; altitude in [``min_alt_m``, ``max_alt_m``] metres (defaults -500 m .. 100 km,
    for points on the ground; pass other bounds for airborne or orbital points).
    """
    checks = (
        ("latitude_deg", lat_deg, -90.0, 90.0, "degrees"),
        ("longitude_deg", lon_deg, -180.0, 180.0, "degrees"),
        ("altitude_m", alt_m, min_alt_m, max_alt_m, "metres"),
    )
    violations: list[tuple[str, str]] = []
    for name, value, lo, hi, unit in checks:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            violations.append((f"{field}.{name}", "must be a number"))
            continue
        finite = np.isfinite(arr)
        with np.errstate(invalid="ignore"):
            in_range = (arr >= lo) & (arr <= hi)
        bad = ~(finite & in_range)
        for index in np.flatnonzero(bad):
            path = f"{field}.{name}" if arr.ndim == 0 else f"{field}[{index}].{name}"
            val = float(arr.reshape(-1)[index])
            if not math.isfinite(val):
                message = f"must be finite, got {val}"
            else:
                message = f"must be between {lo:g} and {hi:g} {unit}, got {val:g}"
            violations.append((path, message))
    return violations
