"""Threat's export RPCs (a mixin of `ThreatServicer`): tracks as CZML and GeoJSON, alerts as
GeoJSON, each streamed in chunks of at most 1 MiB, within the limits in
`services/threat/exports.py` (RESOURCE_EXHAUSTED `EXPORT_TOO_LARGE` naming the field and
the limit beyond them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skybridge.threat.v1 import threat_pb2

from services.threat.export_czml import tracks_czml
from services.threat.export_geojson import alerts_geojson, tracks_geojson
from services.threat.exports import (
    CZML_MEDIA_TYPE,
    DEFAULT_POINTS_PER_TRACK,
    GEOJSON_MEDIA_TYPE,
    MAX_EXPORT_ALERTS,
    MAX_EXPORT_TRACKS,
    MAX_POINTS_PER_TRACK,
    TrackPath,
    chunks,
)
from services.threat.names import resource_id
from shared.auth import requires
from shared.errors import InvalidArgument, NotFound, ResourceExhausted

if TYPE_CHECKING:
    from services.threat.engine import ThreatEngine

#: The scope every threat RPC needs.
DEFENSE = "defense"


class ExportRpcs:
    engine: ThreatEngine
    epoch_unix: float

    async def _export_tracks(self, request) -> list[TrackPath]:
        """The tracks an export request selects, with their histories; the limits and
        errors of ExportTracksCzml and ExportTracksGeoJson."""
        points = request.max_points_per_track
        if points < 0 or points == 1:
            raise InvalidArgument("max_points_per_track must be 0 (the default) or 2 or more",
                                  violations=[("max_points_per_track",
                                               "must be 0 (300) or from 2 to "
                                               f"{MAX_POINTS_PER_TRACK}")])
        if points > MAX_POINTS_PER_TRACK:
            raise ResourceExhausted(
                f"max_points_per_track is {points}; at most {MAX_POINTS_PER_TRACK}",
                reason="EXPORT_TOO_LARGE", metadata={"limit": MAX_POINTS_PER_TRACK},
                violations=[("max_points_per_track",
                             f"at most {MAX_POINTS_PER_TRACK} points a track")])
        if request.tracks:
            if len(request.tracks) > MAX_EXPORT_TRACKS:
                raise self._too_many("tracks", len(request.tracks), MAX_EXPORT_TRACKS,
                                     "names")
            ids = [resource_id(name, "tracks", f"tracks[{i}]")
                   for i, name in enumerate(request.tracks)]
        else:
            ids = self.engine.live_track_ids(request.include_tentative)
            if len(ids) > MAX_EXPORT_TRACKS:
                raise self._too_many("tracks", len(ids), MAX_EXPORT_TRACKS, "live tracks")
        paths = await self.engine.track_paths(ids, points or DEFAULT_POINTS_PER_TRACK)
        missing = [i for i, p in enumerate(paths) if p is None]
        if missing:
            raise NotFound(f"{request.tracks[missing[0]]} does not exist",
                           reason="TRACK_NOT_FOUND",
                           violations=[(f"tracks[{i}]", "no such track") for i in missing])
        return [p for p in paths if p is not None]

    @staticmethod
    def _too_many(field: str, count: int, limit: int, what: str) -> ResourceExhausted:
        return ResourceExhausted(
            f"{count} {what}; an export holds at most {limit}", reason="EXPORT_TOO_LARGE",
            metadata={"limit": limit},
            violations=[(field, f"{count} {what}; at most {limit} an export: name fewer")])

    @requires(DEFENSE)
    async def ExportTracksCzml(self, request, context):
        tracks = await self._export_tracks(request)
        document = await self.engine.run_cpu(tracks_czml, tracks, self.epoch_unix)
        for chunk in chunks(document):
            yield threat_pb2.ExportTracksCzmlResponse(content_type=CZML_MEDIA_TYPE,
                                                      data=chunk, tracks=len(tracks))

    @requires(DEFENSE)
    async def ExportTracksGeoJson(self, request, context):
        tracks = await self._export_tracks(request)
        document = await self.engine.run_cpu(tracks_geojson, tracks, self.epoch_unix)
        for chunk in chunks(document):
            yield threat_pb2.ExportTracksGeoJsonResponse(content_type=GEOJSON_MEDIA_TYPE,
                                                         data=chunk, tracks=len(tracks))

    @requires(DEFENSE)
    async def ExportAlertsGeoJson(self, request, context):
        ids = None
        if request.alerts:
            if len(request.alerts) > MAX_EXPORT_ALERTS:
                raise self._too_many("alerts", len(request.alerts), MAX_EXPORT_ALERTS, "names")
            ids = [resource_id(name, "alerts", f"alerts[{i}]")
                   for i, name in enumerate(request.alerts)]
        alerts, assets = await self.engine.alerts_for_export(ids, request.show_withdrawn,
                                                             MAX_EXPORT_ALERTS)
        if ids is None and len(alerts) > MAX_EXPORT_ALERTS:
            raise self._too_many("alerts", len(alerts), MAX_EXPORT_ALERTS,
                                 "or more alerts match")
        missing = [i for i, a in enumerate(alerts) if a is None]
        if missing:
            raise NotFound(f"{request.alerts[missing[0]]} does not exist",
                           reason="ALERT_NOT_FOUND",
                           violations=[(f"alerts[{i}]", "no such alert") for i in missing])
        found = [a for a in alerts if a is not None]
        document = await self.engine.run_cpu(alerts_geojson, found, assets, self.epoch_unix)
        for chunk in chunks(document):
            yield threat_pb2.ExportAlertsGeoJsonResponse(content_type=GEOJSON_MEDIA_TYPE,
                                                         data=chunk, alerts=len(found))
