"""Tracks as a CZML document (CesiumJS), built with ``czml3``'s models.

Pure: track paths in, UTF-8 JSON bytes out. Packets:

- ``document``: the preamble; its clock runs from the oldest history point to the newest
  estimate or predicted impact.
- ``tracks/{id}``: the track's positions over its history, ECEF (ITRF) metres, CZML
  ``referenceFrame`` ``FIXED``, time-tagged in seconds after the first point, interpolated
  linearly (history points are frames a second or more apart); available from its first to
  its last point. A point and a trailing path coloured by class (unclassified grey, unknown
  yellow, ballistic red, hypersonic glide orange), a label, and ``properties``
  ``threatClass``, ``state``, ``classConfidence``, ``track``.
- ``tracks/{id}/impact``: the predicted impact point (longitude, latitude degrees, height
  0), when a prediction converged; and ``tracks/{id}/impactEllipse``: its 95 % ellipse
  (:mod:`services.threat.ellipse`) as a polygon on the ground, with ``properties``
  ``impactTime`` and the ellipse's figures.

Times are UTC.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from czml3 import Document, Packet
from czml3.enums import InterpolationAlgorithms
from czml3.properties import (
    Clock,
    Color,
    Label,
    Material,
    Path,
    Point,
    Polygon,
    PolylineMaterial,
    Position,
    PositionList,
    SolidColorMaterial,
)
from czml3.types import TimeInterval, TimeIntervalCollection

from services.threat.ellipse import covariance_from_axes, ellipse_rings
from services.threat.exports import TRACK_STATES, TrackPath, class_name, rfc3339

__all__ = ["CLASS_COLOURS", "tracks_czml"]

#: RGBA by class name.
CLASS_COLOURS = {"UNSPECIFIED": [160, 160, 160, 255], "UNKNOWN": [255, 215, 0, 255],
                 "BALLISTIC": [230, 30, 30, 255], "HGV": [255, 130, 0, 255]}


def _when(epoch_unix: float, t_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_unix + t_s, UTC)


def _solid(rgba: list[int]) -> SolidColorMaterial:
    return SolidColorMaterial(color=Color(rgba=rgba))


def tracks_czml(tracks: Sequence[TrackPath], epoch_unix: float, title: str = "tracks"
                ) -> bytes:
    """The CZML document of ``tracks`` (see the module)."""
    times = [float(t.time_s[0]) for t in tracks if t.time_s.size]
    ends = [float(t.time_s[-1]) for t in tracks if t.time_s.size]
    ends += [t.record.impact.time_s for t in tracks if t.record.impact is not None]
    preamble = Packet(id="document", name=title, version="1.0")
    if times:
        start, stop = _when(epoch_unix, min(times)), _when(epoch_unix, max(ends))
        if stop <= start:
            stop = start + timedelta(seconds=1)
        preamble = Packet(id="document", name=title, version="1.0", clock=Clock(
            interval=TimeInterval(start=start, end=stop), currentTime=start,
            multiplier=1.0))
    packets = [preamble]

    with_impact = [t for t in tracks if t.record.impact is not None]
    rings = np.zeros((0, 0, 2))
    if with_impact:
        grounds = [t.record.impact for t in with_impact if t.record.impact is not None]
        rings = ellipse_rings([g.lat_deg for g in grounds], [g.lon_deg for g in grounds],
                              covariance_from_axes([g.semi_major_m for g in grounds],
                                                   [g.semi_minor_m for g in grounds],
                                                   [g.major_azimuth_deg for g in grounds]))
    ring_of = {t.record.track_id: rings[j] for j, t in enumerate(with_impact)}

    for t in tracks:
        r = t.record
        name = f"tracks/{r.track_id}"
        klass, state = class_name(r.threat_class), TRACK_STATES[r.state]
        colour = CLASS_COLOURS[klass]
        first = _when(epoch_unix, float(t.time_s[0]))
        if t.time_s.size >= 2:
            offsets = t.time_s - t.time_s[0]
            position = Position(epoch=first, referenceFrame="FIXED",
                                cartesian=np.column_stack([offsets, t.position_m]).ravel()
                                .tolist(),
                                interpolationAlgorithm=InterpolationAlgorithms.LINEAR,
                                interpolationDegree=1)
            availability: TimeIntervalCollection | None = TimeIntervalCollection(values=[
                TimeInterval(start=first, end=_when(epoch_unix, float(t.time_s[-1])))])
        else:
            position = Position(referenceFrame="FIXED",
                                cartesian=t.position_m[-1].tolist())
            availability = None
        description = (f"<p>{html.escape(name)}: {klass} ({r.class_confidence:.2f}), "
                       f"{state}; estimate {rfc3339(epoch_unix, r.estimate_s)}; "
                       f"{r.hits} hits since {rfc3339(epoch_unix, r.created_s)}.</p>")
        packets.append(Packet(
            id=name, name=name, availability=availability, position=position,
            description=description,
            point=Point(pixelSize=9.0, color=Color(rgba=colour)),
            path=Path(width=2.0, leadTime=0.0, trailTime=3600.0,
                      material=PolylineMaterial(solidColor=_solid(colour))),
            label=Label(text=f"{r.track_id} {klass}", show=True, scale=0.5),
            properties={"track": name, "threatClass": klass, "state": state,
                        "classConfidence": float(r.class_confidence)}))
        g = r.impact
        if g is None:
            continue
        when = rfc3339(epoch_unix, g.time_s)
        figures = {"track": name, "impactTime": when, "timeSigmaS": g.time_sigma_s,
                   "semiMajorM": g.semi_major_m, "semiMinorM": g.semi_minor_m,
                   "majorAzimuthDeg": g.major_azimuth_deg, "confidence": 0.95}
        packets.append(Packet(
            id=f"{name}/impact", name=f"{name} predicted impact",
            position=Position(cartographicDegrees=[g.lon_deg, g.lat_deg, 0.0]),
            description=f"<p>Predicted impact of {html.escape(name)} at {when} "
                        f"(1-sigma {g.time_sigma_s:.1f} s).</p>",
            point=Point(pixelSize=7.0, color=Color(rgba=colour)), properties=figures))
        ring = ring_of[r.track_id]
        flat = np.column_stack([ring, np.zeros(ring.shape[0])]).ravel().tolist()
        packets.append(Packet(
            id=f"{name}/impactEllipse", name=f"{name} 95% impact ellipse",
            description=f"<p>95% impact ellipse of {html.escape(name)}: "
                        f"{g.semi_major_m:.0f} m by {g.semi_minor_m:.0f} m, major axis at "
                        f"{g.major_azimuth_deg:.1f}&deg;.</p>",
            polygon=Polygon(positions=PositionList(cartographicDegrees=flat),
                            material=Material(solidColor=_solid([*colour[:3], 90])),
                            outline=True, outlineColor=Color(rgba=colour), height=0.0),
            properties=figures))
    return Document(packets=packets).model_dump_json(exclude_none=True).encode()
