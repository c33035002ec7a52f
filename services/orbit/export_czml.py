"""CZML (Cesium's JSON scene format) for satellite ephemerides, through ``czml3``'s models:
arrays in, text out.

Pure (no grpc, no SQL, no propagation). A document is one JSON array: the document packet
(:func:`document_packet`: name, version and a clock over the window) and one packet per
satellite (:func:`satellite_packets`: id, name, availability, sampled positions, a point
and a label). The array is written in pieces so that it can be streamed: ``"["``, the
document packet, then ``","`` before each satellite packet, and ``"]"`` at the end
(:data:`OPEN`, :data:`SEPARATOR`, :data:`CLOSE`).

Positions are Cartesian metres in the frame the caller names (the orbit service writes
ITRF, which is Cesium's ``FIXED``), sampled as ``[t, x, y, z, t, x, y, z, ...]`` with ``t``
in seconds since the packet's ``epoch`` (the window start); Cesium interpolates them with
Lagrange polynomials of :data:`INTERPOLATION_DEGREE` (lower for short tracks). Metres are
rounded to the millimetre and times to the microsecond, which keeps the text short and
loses nothing SGP4 knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from czml3 import Packet
from czml3.enums import (
    ClockRanges,
    ClockSteps,
    HorizontalOrigins,
    InterpolationAlgorithms,
    LabelStyles,
    ReferenceFrames,
    VerticalOrigins,
)
from czml3.properties import Clock, Color, Label, Point, Position
from czml3.types import Cartesian2Value, TimeInterval

__all__ = [
    "CLOSE",
    "CZML_VERSION",
    "OPEN",
    "SEPARATOR",
    "CzmlObject",
    "document_packet",
    "satellite_packets",
]

CZML_VERSION = "1.0"
OPEN, SEPARATOR, CLOSE = "[", ",", "]"
INTERPOLATION_DEGREE = 5
#: Simulated seconds per wall-clock second when the document opens.
CLOCK_MULTIPLIER = 60.0
_POINT_RGBA = [255, 214, 0, 255]
_LABEL_RGBA = [230, 230, 230, 255]


#: Every satellite's point, and its label but for the text (built and validated once).
_POINT = Point(pixelSize=5.0, color=Color(rgba=_POINT_RGBA),
               outlineColor=Color(rgba=[0, 0, 0, 255]), outlineWidth=1.0)
_LABEL = Label(text="", font="11px sans-serif", style=LabelStyles.FILL,
               fillColor=Color(rgba=_LABEL_RGBA), horizontalOrigin=HorizontalOrigins.LEFT,
               verticalOrigin=VerticalOrigins.CENTER, pixelOffset=Cartesian2Value(values=[8, 0]))


@dataclass(frozen=True, slots=True)
class CzmlObject:
    """A satellite's packet identity: ``id`` (unique in the document) and ``name``."""

    id: str
    name: str


def document_packet(name: str, start: datetime, end: datetime) -> str:
    """The document (preamble) packet: ``name``, CZML version and a clock over
    ``[start, end]`` (aware UTC datetimes), starting at ``start`` and looping."""
    packet = Packet(id="document", name=name, version=CZML_VERSION, clock=Clock(
        interval=TimeInterval(start=start, end=end), currentTime=start,
        multiplier=CLOCK_MULTIPLIER, range=ClockRanges.LOOP_STOP,
        step=ClockSteps.SYSTEM_CLOCK_MULTIPLIER))
    return packet.dumps()


def satellite_packets(objects: Sequence[CzmlObject], epoch: datetime, offsets_s: np.ndarray,
                      position_m: np.ndarray, valid: np.ndarray, *,
                      reference_frame: ReferenceFrames = ReferenceFrames.FIXED
                      ) -> tuple[list[str], list[int]]:
    """The packets (JSON text, one per object with at least one valid sample) and the
    indices (into ``objects``) of those left out because no sample was valid.

    ``offsets_s`` is ``(T,)`` seconds since ``epoch`` (an aware UTC datetime), increasing;
    ``position_m`` is ``(N, T, 3)`` metres in ``reference_frame``; ``valid`` is ``(N, T)``
    bool (invalid samples are left out, and ``availability`` spans the first to the last
    valid one)."""
    n, t = valid.shape
    if position_m.shape != (n, t, 3) or len(objects) != n or np.size(offsets_s) != t:
        raise ValueError("position_m must be (N, T, 3), valid (N, T), one object per row "
                         "and one offset per column")
    # [t, x, y, z] rows for every sample at once; each packet takes its valid rows
    rows = np.empty((n, t, 4))
    rows[:, :, 0] = np.round(np.asarray(offsets_s, dtype=np.float64), 6)
    with np.errstate(invalid="ignore"):
        rows[:, :, 1:] = np.round(position_m, 3)
    packets: list[str] = []
    omitted: list[int] = []
    for i, obj in enumerate(objects):
        keep = np.flatnonzero(valid[i])
        if keep.size == 0:
            omitted.append(i)
            continue
        first, last = (epoch + timedelta(seconds=float(offsets_s[keep[j]])) for j in (0, -1))
        interpolation: dict[str, Any] = {} if keep.size < 2 else {
            "interpolationAlgorithm": InterpolationAlgorithms.LAGRANGE,
            "interpolationDegree": min(INTERPOLATION_DEGREE, int(keep.size) - 1)}
        position = Position(epoch=epoch, cartesian=rows[i, keep].ravel().tolist(),
                            referenceFrame=reference_frame, **interpolation)
        packet = Packet(
            id=obj.id, name=obj.name,
            availability=TimeInterval(start=first, end=last),
            position=position, point=_POINT,
            label=_LABEL.model_copy(update={"text": obj.name}))  # validated once, below
        packets.append(packet.dumps())
    return packets, omitted
