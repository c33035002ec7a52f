"""Tracks and alerts as GeoJSON (RFC 7946) FeatureCollections.

Pure: track paths, alerts and assets in, UTF-8 JSON bytes out. Positions are
``[longitude, latitude]`` degrees (WGS84), with the height in metres above the ellipsoid
as a third element where a height is known (the track's position); rounded to 1e-7
degrees (about 1 cm) and 0.1 m. Times are RFC 3339 UTC strings.

Per track (every Feature's ``properties`` carry ``kind``, ``track`` and the track's
``state``, ``threat_class``, ``class_confidence``, ``estimate_time``, ``create_time``,
``last_detection_time`` and ``hit_count``), Features with ids ``tracks/{id}`` plus:

- ``kind: "track"`` (id ``tracks/{id}``): a Point at the current estimate, with height,
  ``speed_mps``;
- ``kind: "ground_track"`` (``.../groundTrack``): a LineString of the sub-track points of
  its history (two points or more), cut into a MultiLineString where it crosses the
  antimeridian (RFC 7946, 3.1.9);
- ``kind: "impact"`` (``.../impact``): a Point at the predicted impact, with
  ``impact_time``, ``time_sigma_s``, ``semi_major_m``, ``semi_minor_m``,
  ``major_azimuth_deg`` and ``confidence`` (0.95);
- ``kind: "impact_ellipse"`` (``.../impactEllipse``): the 95 % ellipse
  (:mod:`services.threat.ellipse`) as a Polygon whose exterior ring is closed and
  counter-clockwise, or a MultiPolygon of its two parts when it crosses the antimeridian.

Per alert, one Feature (id ``alerts/{id}``, ``kind: "alert"``): a Point at the defended
asset (null geometry when the asset was removed since), with the asset, its display name
and radius, the track, the alert's state, severity, time to impact, predicted impact
point and time, and its evaluation, create and update times (and withdraw reason).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.threat.ellipse import covariance_from_axes, ellipse_rings, split_at_antimeridian
from services.threat.exports import (
    ALERT_STATES,
    SEVERITIES,
    TRACK_STATES,
    TrackPath,
    class_name,
    rfc3339,
)
from services.threat.store import AlertRecord, AssetRecord
from shared.geodesy import ecef_to_geodetic

__all__ = ["alerts_geojson", "split_line", "tracks_geojson"]

Json = dict[str, Any]


def _num(x: float, digits: int) -> float | None:
    """A property's number, rounded; None (JSON null) when not finite."""
    x = float(x)
    return round(x, digits) if np.isfinite(x) else None


def _deg(x: float) -> float:
    return round(float(x), 7)


def _pos(lon: float, lat: float, height: float | None = None) -> list[float]:
    lon = float(lon)
    if lon > 180.0 or lon < -180.0:
        lon = (lon + 180.0) % 360.0 - 180.0
    if height is None:
        return [_deg(lon), _deg(lat)]
    return [_deg(lon), _deg(lat), round(float(height), 1)]


def split_line(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> list[list[list[float]]]:
    """A polyline ``[lon, lat]`` (degrees in [-180, 180]) as one or more lines, cut where
    a step crosses the antimeridian (a step is taken the short way round): the crossing
    point ends one line and starts the next on the other side."""
    d = (np.diff(lon) + 180.0) % 360.0 - 180.0
    ahead = lon[:-1] + d
    crossing = np.flatnonzero((ahead > 180.0) | (ahead < -180.0))
    lines: list[list[list[float]]] = []
    begin = 0
    current: list[list[float]] = []
    for i in crossing.tolist():
        current += [_pos(x, y) for x, y in zip(lon[begin:i + 1], lat[begin:i + 1],
                                               strict=True)]
        edge = 180.0 if ahead[i] > 180.0 else -180.0
        f = (edge - lon[i]) / d[i]
        at = lat[i] + f * (lat[i + 1] - lat[i])
        lines.append([*current, [edge, _deg(at)]])
        current = [[-edge, _deg(at)]]
        begin = i + 1
    current += [_pos(x, y) for x, y in zip(lon[begin:], lat[begin:], strict=True)]
    lines.append(current)
    return lines


def _line_geometry(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Json:
    lines = split_line(lon, lat)
    if len(lines) == 1:
        return {"type": "LineString", "coordinates": lines[0]}
    return {"type": "MultiLineString", "coordinates": lines}


def _ellipse_geometry(ring: NDArray[np.float64]) -> Json:
    parts = [[[_pos(x, y) for x, y in part]] for part in split_at_antimeridian(ring)]
    for (coords,) in parts:
        coords[-1] = list(coords[0])  # closed exactly after rounding
    if len(parts) == 1:
        return {"type": "Polygon", "coordinates": parts[0]}
    return {"type": "MultiPolygon", "coordinates": parts}


def _feature(feature_id: str, geometry: Json | None, properties: Json) -> Json:
    return {"type": "Feature", "id": feature_id, "geometry": geometry,
            "properties": properties}


def tracks_geojson(tracks: Sequence[TrackPath], epoch_unix: float) -> bytes:
    """The FeatureCollection of ``tracks`` (see the module)."""
    sizes = [t.time_s.size for t in tracks]
    if tracks:
        points = np.concatenate([t.position_m for t in tracks]).reshape(-1, 3)
        lat_all, lon_all, h_all = (np.asarray(v, float).reshape(-1)
                                   for v in ecef_to_geodetic(points))
    else:
        lat_all = lon_all = h_all = np.zeros(0)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    with_impact = [i for i, t in enumerate(tracks) if t.record.impact is not None]
    rings: NDArray[np.float64] = np.zeros((0, 0, 2))
    if with_impact:
        grounds = [tracks[i].record.impact for i in with_impact]
        cov = covariance_from_axes([g.semi_major_m for g in grounds if g],
                                   [g.semi_minor_m for g in grounds if g],
                                   [g.major_azimuth_deg for g in grounds if g])
        rings = ellipse_rings([g.lat_deg for g in grounds if g],
                              [g.lon_deg for g in grounds if g], cov)
    ring_of = {i: rings[j] for j, i in enumerate(with_impact)}

    features: list[Json] = []
    for i, t in enumerate(tracks):
        r = t.record
        name = f"tracks/{r.track_id}"
        common: Json = {
            "track": name, "state": TRACK_STATES[r.state],
            "threat_class": class_name(r.threat_class),
            "class_confidence": _num(float(r.class_confidence), 4),
            "estimate_time": rfc3339(epoch_unix, r.estimate_s),
            "create_time": rfc3339(epoch_unix, r.created_s),
            "last_detection_time": rfc3339(epoch_unix, r.last_hit_s),
            "hit_count": int(r.hits)}
        lat, lon, h = (a[bounds[i]:bounds[i + 1]] for a in (lat_all, lon_all, h_all))
        speed = float(np.linalg.norm(r.x[3:6]))
        features.append(_feature(name, {"type": "Point",
                                        "coordinates": _pos(lon[-1], lat[-1], h[-1])},
                                 {"kind": "track", **common,
                                  "speed_mps": _num(speed, 1)}))
        if lat.size >= 2:
            features.append(_feature(f"{name}/groundTrack", _line_geometry(lon, lat),
                                     {"kind": "ground_track", **common,
                                      "start_time": rfc3339(epoch_unix, float(t.time_s[0])),
                                      "end_time": rfc3339(epoch_unix, float(t.time_s[-1]))}))
        g = r.impact
        if g is not None:
            impact: Json = {
                "impact_time": rfc3339(epoch_unix, g.time_s),
                "time_sigma_s": _num(g.time_sigma_s, 3),
                "semi_major_m": _num(g.semi_major_m, 1),
                "semi_minor_m": _num(g.semi_minor_m, 1),
                "major_azimuth_deg": _num(g.major_azimuth_deg, 3), "confidence": 0.95}
            features.append(_feature(f"{name}/impact", {
                "type": "Point", "coordinates": _pos(g.lon_deg, g.lat_deg)},
                {"kind": "impact", **common, **impact}))
            features.append(_feature(f"{name}/impactEllipse", _ellipse_geometry(ring_of[i]),
                                     {"kind": "impact_ellipse", **common, **impact}))
    return _dump({"type": "FeatureCollection", "features": features})


def alerts_geojson(alerts: Sequence[AlertRecord], assets: Mapping[int, AssetRecord],
                   epoch_unix: float) -> bytes:
    """The FeatureCollection of ``alerts``; ``assets`` by id (see the module)."""
    features: list[Json] = []
    for a in alerts:
        asset = assets.get(a.asset_id)
        g = a.impact
        properties: Json = {
            "kind": "alert", "alert": f"alerts/{a.alert_id}", "asset": f"assets/{a.asset_id}",
            "asset_display_name": asset.display_name if asset else None,
            "asset_radius_m": asset.radius_m if asset else None,
            "track": f"tracks/{a.track_id}", "state": ALERT_STATES[int(a.state)],
            "severity": SEVERITIES.get(int(a.severity), "UNSPECIFIED"),
            "time_to_impact_s": _num(max(a.time_to_impact_s, 0.0), 3),
            "impact_point": _pos(g.lon_deg, g.lat_deg),
            "impact_time": rfc3339(epoch_unix, g.time_s),
            "impact_semi_major_m": _num(g.semi_major_m, 1),
            "impact_semi_minor_m": _num(g.semi_minor_m, 1),
            "impact_major_azimuth_deg": _num(g.major_azimuth_deg, 3),
            "evaluation_time": rfc3339(epoch_unix, a.evaluation_s),
            "create_time": _wall(a.create_time), "update_time": _wall(a.update_time),
            "withdraw_reason": a.withdraw_reason or None}
        geometry = ({"type": "Point", "coordinates": _pos(asset.lon_deg, asset.lat_deg)}
                    if asset else None)
        features.append(_feature(f"alerts/{a.alert_id}", geometry, properties))
    return _dump({"type": "FeatureCollection", "features": features})


def _wall(when: datetime) -> str:
    """An aware datetime as RFC 3339 UTC."""
    return str(when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def _dump(document: Json) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
