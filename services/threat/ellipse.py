"""Impact error ellipses as polygons on the ground (vectorised over ``K`` ellipses).

Frame: the local east/north tangent plane at each predicted point (WGS84), metres: ``e``
toward increasing longitude, ``n`` toward increasing latitude; a ``(K, 2, 2)`` covariance
is ``[[var_e, cov_en], [cov_en, var_n]]`` in m^2, as
:func:`services.threat.predict.predict_impact_points` gives it (``covariance_en_m2``).

The 95 % ellipse is ``{d : d^T C^-1 d <= s}`` with ``s`` the chi-square quantile for 2
degrees of freedom (:data:`~services.threat.predict.CHI2_2DOF_95`, 5.991): semi-axes
``sqrt(s * lambda)`` along the eigenvectors of ``C``, area ``pi * s * sqrt(det C)``. Its
boundary is ``sqrt(s) * A @ [cos t, sin t]`` with ``A = V sqrt(Lambda)``, ``det V = +1``,
so increasing ``t`` runs counter-clockwise seen from above (east to north), which is the
exterior-ring order RFC 7946 asks for. Points are placed on the tangent plane (ECEF
``p0 + e E + n N``) and converted to geodetic longitude and latitude; for ellipses of
hundreds of km the plane departs from the ellipsoid by metres. Longitudes are unwrapped
around the centre, so a ring that crosses the antimeridian has longitudes beyond +-180;
:func:`split_at_antimeridian` cuts it there. Ellipses that contain a pole are not handled.

:func:`covariance_from_axes` gives back the covariance from the stored figures (95 %
semi-axes and the major axis's azimuth, clockwise from north), which is what a stored
prediction keeps.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from services.threat.predict import CHI2_2DOF_95
from shared.geodesy import ecef_to_geodetic, enu_rotation, geodetic_to_ecef

__all__ = ["DEFAULT_VERTICES", "covariance_from_axes", "ellipse_offsets_en", "ellipse_rings",
           "split_at_antimeridian"]

#: Vertices of a ring (the closing point not counted): the inscribed polygon's area is
#: ``n/(2 pi) sin(2 pi/n)`` of the ellipse's, 0.9987 for 72.
DEFAULT_VERTICES = 72

Array = NDArray[np.float64]


def covariance_from_axes(semi_major_m: ArrayLike, semi_minor_m: ArrayLike,
                         major_azimuth_deg: ArrayLike, scale: float = CHI2_2DOF_95) -> Array:
    """``(K, 2, 2)`` east/north covariance (m^2) of ellipses whose ``scale`` (chi-square)
    semi-axes are ``semi_major_m``, ``semi_minor_m`` (m) with the major axis at
    ``major_azimuth_deg`` clockwise from north."""
    a = np.atleast_1d(np.asarray(semi_major_m, float))
    b = np.atleast_1d(np.asarray(semi_minor_m, float))
    az = np.radians(np.atleast_1d(np.asarray(major_azimuth_deg, float)))
    major = np.stack([np.sin(az), np.cos(az)], axis=-1)  # (K, 2) east, north
    minor = np.stack([np.cos(az), -np.sin(az)], axis=-1)
    cov: Array = (np.einsum("k,ki,kj->kij", a * a / scale, major, major)
                  + np.einsum("k,ki,kj->kij", b * b / scale, minor, minor))
    return cov


def ellipse_offsets_en(covariance_en_m2: ArrayLike, scale: float = CHI2_2DOF_95,
                       vertices: int = DEFAULT_VERTICES) -> Array:
    """``(K, vertices + 1, 2)`` east/north offsets (m) of each ellipse's boundary from its
    centre, counter-clockwise, the last point equal to the first."""
    c = np.asarray(covariance_en_m2, float).reshape(-1, 2, 2)
    c = 0.5 * (c + np.swapaxes(c, 1, 2))
    lam, v = np.linalg.eigh(c)  # ascending, orthonormal columns
    v[np.linalg.det(v) < 0, :, 0] *= -1.0  # a rotation: the boundary keeps its sense
    a = v * np.sqrt(np.maximum(lam, 0.0) * scale)[:, None, :]  # (K, 2, 2): columns scaled
    t = 2 * np.pi * np.arange(vertices + 1) / vertices
    t[-1] = 0.0  # closed exactly
    unit = np.stack([np.cos(t), np.sin(t)])  # (2, V+1)
    offsets: Array = np.einsum("kij,jv->kvi", a, unit)
    return offsets


def ellipse_rings(latitude_deg: ArrayLike, longitude_deg: ArrayLike,
                  covariance_en_m2: ArrayLike, scale: float = CHI2_2DOF_95,
                  vertices: int = DEFAULT_VERTICES) -> Array:
    """``(K, vertices + 1, 2)`` closed counter-clockwise rings ``[longitude, latitude]``
    (degrees, WGS84) of the ``scale`` ellipses about the given centres (height 0).
    Longitudes are continuous around each centre (see the module: may pass +-180)."""
    lat = np.atleast_1d(np.asarray(latitude_deg, float))
    lon = np.atleast_1d(np.asarray(longitude_deg, float))
    d = ellipse_offsets_en(covariance_en_m2, scale, vertices)  # (K, V+1, 2)
    p0 = np.asarray(geodetic_to_ecef(lat, lon, np.zeros_like(lat)), float).reshape(-1, 3)
    en = enu_rotation(lat, lon)[:, :2, :]  # (K, 2, 3): rows east, north in ECEF
    p = p0[:, None, :] + np.einsum("kvi,kij->kvj", d, en)
    plat, plon, _ = ecef_to_geodetic(p.reshape(-1, 3))
    plat = np.asarray(plat, float).reshape(p.shape[:2])
    plon = np.asarray(plon, float).reshape(p.shape[:2])
    plon = lon[:, None] + (plon - lon[:, None] + 180.0) % 360.0 - 180.0
    rings = np.stack([plon, plat], axis=-1)
    rings[:, -1] = rings[:, 0]
    return rings


def _clip(ring: Array, limit: float, keep_below: bool) -> Array:
    """The convex ``ring`` (closed, ``[lon, lat]``) clipped to ``lon <= limit`` (or
    ``>= limit``): Sutherland-Hodgman against one vertical line; closed, may be empty."""
    sign = 1.0 if keep_below else -1.0
    inside = sign * (limit - ring[:, 0]) >= 0
    out: list[Array] = []
    for i in range(ring.shape[0] - 1):
        a, b = ring[i], ring[i + 1]
        if inside[i]:
            out.append(a)
        if inside[i] != inside[i + 1]:
            f = (limit - a[0]) / (b[0] - a[0])
            out.append(np.array([limit, a[1] + f * (b[1] - a[1])]))
    if len(out) < 3:
        return np.zeros((0, 2))
    return np.vstack([*out, out[0]])


def split_at_antimeridian(ring: Array) -> list[Array]:
    """A closed ring with continuous longitudes as rings within [-180, 180]: itself when
    it stays inside, else its parts east and west of the antimeridian (each closed and in
    the ring's order, RFC 7946, 3.1.9). For convex rings (ellipses)."""
    if ring[:, 0].max() <= 180.0 and ring[:, 0].min() >= -180.0:
        return [ring]
    limit = 180.0 if ring[:, 0].max() > 180.0 else -180.0
    near = _clip(ring, limit, keep_below=limit > 0)
    far = _clip(ring, limit, keep_below=limit < 0)
    if far.size:
        far = far - [np.sign(limit) * 360.0, 0.0]
    return [part for part in (near, far) if part.size]
