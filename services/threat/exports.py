"""What the threat exports share: a track with its positions over its history, the names
of states and classes as the documents write them, RFC 3339 times, history thinning, the
size limits, the media types and the chunking of a document for a stream.

Times: tracker seconds after the tracker epoch (``epoch_unix``, Unix seconds) become
RFC 3339 UTC strings with microseconds, e.g. ``2025-01-01T00:12:30.250000Z``.
Positions: ECEF (the orbit service's ITRF, WGS84) metres.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from services.threat.store import AlertState, ThreatClass, TrackRecord

__all__ = ["ALERT_STATES", "CHUNK_BYTES", "CZML_MEDIA_TYPE", "DEFAULT_POINTS_PER_TRACK",
           "GEOJSON_MEDIA_TYPE", "MAX_EXPORT_ALERTS", "MAX_EXPORT_TRACKS",
           "MAX_POINTS_PER_TRACK", "SEVERITIES", "TRACK_STATES", "TrackPath", "chunks",
           "class_name", "rfc3339", "thin"]

CZML_MEDIA_TYPE = "application/json"
GEOJSON_MEDIA_TYPE = "application/geo+json"
#: Tracks one export holds at most.
MAX_EXPORT_TRACKS = 500
#: Positions a track at most (and the default when a request says 0).
MAX_POINTS_PER_TRACK = 3_600
DEFAULT_POINTS_PER_TRACK = 300
#: Alerts one export holds at most.
MAX_EXPORT_ALERTS = 1_000
#: Bytes a streamed chunk holds at most.
CHUNK_BYTES = 1 << 20

#: Stored life-cycle code -> the name of `Track.State` (the wire number is code + 1).
TRACK_STATES = ("TENTATIVE", "CONFIRMED", "COASTING", "DROPPED")
#: `Alert.Severity` numbers -> names.
SEVERITIES = {0: "UNSPECIFIED", 1: "LOW", 2: "MEDIUM", 3: "HIGH", 4: "CRITICAL"}
ALERT_STATES = {s.value: s.name for s in AlertState}


@dataclass(frozen=True)
class TrackPath:
    """A track and where it was: ``position_m[i]`` (ECEF m) at tracker second
    ``time_s[i]``, oldest first, the newest being the track's estimate."""

    record: TrackRecord
    time_s: NDArray[np.float64]
    position_m: NDArray[np.float64]


def class_name(value: int) -> str:
    return ThreatClass(int(value)).name


def rfc3339(epoch_unix: float, t_s: float) -> str:
    """Tracker second ``t_s`` as an RFC 3339 UTC time."""
    return datetime.fromtimestamp(epoch_unix + t_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def thin(n: int, at_most: int) -> NDArray[np.int64]:
    """Indices of at most ``at_most`` (>= 2) of ``n`` rows, evenly spread, the first and the
    last kept."""
    if n <= at_most:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, at_most)).astype(np.int64))


def chunks(document: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``document`` in pieces of at most ``size`` bytes (at least one)."""
    for i in range(0, max(len(document), 1), size):
        yield document[i:i + size]
