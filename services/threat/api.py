"""The ThreatService servicer: proto <-> domain translation and validation only.

Access: every method needs the `defense` scope (`@requires("defense")`); any other token,
such as a co-sell customer's, gets PERMISSION_DENIED from the auth interceptor before the
method runs.

Limits: page_size as every list of the suite (`shared.paging`: 0 is 100, at most 1,000); at most `SKYBRIDGE_THREAT_MAX_BATCH` (50,000)
detections a batch message; request ids at most 128 characters; asset radius 0 to 500 km.

Idempotency (`shared.idempotency`): a `request_id` is optional and belongs to the caller's
tenant. CreateDefendedAsset retried with it answers the first answer (even after the asset
was deleted); an ingested batch retried with it is skipped and counted as a duplicate; the
same request_id with another body is INVALID_ARGUMENT REQUEST_ID_REUSED (for a batch, the
stream ends with it, the earlier batches ingested).
"""

from __future__ import annotations

import zlib

import numpy as np
from google.protobuf import timestamp_pb2
from skybridge.common.v1 import common_pb2
from skybridge.threat.v1 import threat_pb2, threat_pb2_grpc

from services.threat.api_exports import DEFENSE, ExportRpcs
from services.threat.batch import RawBatch
from services.threat.engine import ThreatEngine
from services.threat.names import resource_id
from services.threat.settings import ThreatSettings
from services.threat.store import (
    AlertRecord,
    AssetRecord,
    Ground,
    Store,
    TrackRecord,
    decode_page_token,
    encode_page_token,
)
from shared.auth import requires
from shared.errors import DomainError, InvalidArgument, NotFound, Violations
from shared.idempotency import Key, fingerprint, key_tenant, request_id_problem
from shared.paging import page_size
from shared.wire import (
    datetime_to_timestamp,
    from_double_array,
    seconds_to_duration,
    unix_to_timestamp,
)

MAX_ASSET_RADIUS_M = 500e3


# --------------------------------------------------------------------------- conversions


def _timestamp(epoch_unix: float, t_s: float) -> timestamp_pb2.Timestamp:
    """Tracker seconds ``t_s`` after the epoch (Unix seconds ``epoch_unix``) as a Timestamp."""
    return unix_to_timestamp(epoch_unix + t_s)


def _ground(epoch_unix: float, g: Ground | None) -> threat_pb2.GroundPrediction | None:
    if g is None:
        return None
    return threat_pb2.GroundPrediction(
        point=common_pb2.GeodeticPoint(latitude_deg=g.lat_deg, longitude_deg=g.lon_deg),
        time=_timestamp(epoch_unix, g.time_s), time_sigma_s=g.time_sigma_s,
        semi_major_m=g.semi_major_m, semi_minor_m=g.semi_minor_m,
        major_azimuth_deg=g.major_azimuth_deg)


def track_message(r: TrackRecord, epoch_unix: float, model_names) -> threat_pb2.Track:
    message = threat_pb2.Track(
        name=f"tracks/{r.track_id}", state=r.state + 1, threat_class=r.threat_class,
        class_confidence=r.class_confidence, estimate_time=_timestamp(epoch_unix, r.estimate_s),
        state_ecef=r.x.tolist(), covariance=r.P.ravel().tolist(), model_names=model_names,
        model_probabilities=r.mu.tolist(), hit_count=r.hits,
        create_time=_timestamp(epoch_unix, r.created_s),
        last_detection_time=_timestamp(epoch_unix, r.last_hit_s),
        impact=_ground(epoch_unix, r.impact), launch=_ground(epoch_unix, r.launch))
    message.etag = f"{zlib.crc32(message.SerializeToString(deterministic=True)):08x}"
    return message


def alert_message(a: AlertRecord, epoch_unix: float) -> threat_pb2.Alert:
    tti = max(a.time_to_impact_s, 0.0)
    return threat_pb2.Alert(
        name=f"alerts/{a.alert_id}", track=f"tracks/{a.track_id}", asset=f"assets/{a.asset_id}",
        state=a.state, severity=a.severity,
        time_to_impact=seconds_to_duration(tti),
        impact=_ground(epoch_unix, a.impact),
        evaluation_time=_timestamp(epoch_unix, a.evaluation_s),
        create_time=datetime_to_timestamp(a.create_time), update_time=datetime_to_timestamp(a.update_time),
        withdraw_reason=a.withdraw_reason)


def asset_message(a: AssetRecord) -> threat_pb2.DefendedAsset:
    return threat_pb2.DefendedAsset(
        name=f"assets/{a.asset_id}", display_name=a.display_name,
        location=common_pb2.GeodeticPoint(latitude_deg=a.lat_deg, longitude_deg=a.lon_deg),
        radius_m=a.radius_m, create_time=datetime_to_timestamp(a.create_time))


def _page_size(value: int) -> int:
    return page_size(value)


def _request_id(value: str, field: str = "request_id") -> str | None:
    problem = request_id_problem(value, required=False)
    if problem:
        raise InvalidArgument(f"{field} {problem}", violations=[(field, problem)])
    return value or None


def _key(request_id: str | None, method: str, payload: bytes) -> Key | None:
    """The call's idempotency key, None without a request_id. The key is the caller's
    tenant's (`shared.idempotency`); `payload` is what the call acts on, so a retry with
    another body is REQUEST_ID_REUSED (and one differing only in fields the server
    ignores, such as an asset's output-only create_time, is a retry)."""
    if request_id is None:
        return None
    return Key(key_tenant(), request_id, method, fingerprint(method, payload))


def _column(check: Violations, message, field: str, n: int | None, width: int = 1,
            optional: bool = False) -> np.ndarray | None:
    """A DoubleArray as numpy ``(n,)`` or ``(n, width)``; None when optional and empty."""
    if message.WhichOneof("values") is None:
        if not optional:
            check.add(field, "is required")
        return None
    try:
        values = from_double_array(message)
    except ValueError as error:
        check.add(field, str(error))
        return None
    if optional and values.size == 0:
        return None
    if not message.shape and width > 1:
        if values.size % width:
            check.add(field, f"{values.size} values do not fill rows of {width}; "
                             f"expected shape [N, {width}]")
            return None
        values = values.reshape(-1, width)
    expected_rank = 1 if width == 1 else 2
    if values.ndim != expected_rank or (width > 1 and values.shape[1] != width):
        check.add(field, f"shape {list(values.shape)} does not match "
                         f"{'[N]' if width == 1 else f'[N, {width}]'}")
        return None
    if n is not None and values.shape[0] != n:
        check.add(field, f"has {values.shape[0]} rows; time_offsets_s has {n}")
        return None
    return values


def decode_batch(request: threat_pb2.IngestDetectionsRequest, settings: ThreatSettings,
                 epoch_unix: float) -> RawBatch:
    """Decode one batch message into numpy columns (no per-detection Python work)."""
    check = Violations()
    if not request.HasField("batch"):
        check.add("batch", "is required")
        check.raise_if_any("the detection batch is invalid")
    b = request.batch
    check.check(b.HasField("base_time"), "batch.base_time", "is required")
    offsets_message = b.time_offsets_s
    kind = offsets_message.WhichOneof("values")
    count = (len(offsets_message.packed.values) if kind == "packed"
             else len(offsets_message.le_bytes) // 8)
    if count > settings.max_batch:
        check.add("batch.time_offsets_s",
                  f"{count} detections; a batch holds at most {settings.max_batch}")
        check.raise_if_any("the detection batch is too large", reason="BATCH_TOO_LARGE")
    offsets = _column(check, offsets_message, "batch.time_offsets_s", None)
    n = None if offsets is None else offsets.shape[0]
    sensor_ids = np.asarray(b.sensor_ids, np.int64)
    if n is not None and sensor_ids.shape[0] != n:
        check.add("batch.sensor_ids", f"has {sensor_ids.shape[0]} values; "
                                      f"time_offsets_s has {n}")
    los = azimuth = elevation = None
    which = b.WhichOneof("line_of_sight")
    if which == "los_ecef":
        los = _column(check, b.los_ecef, "batch.los_ecef", n, width=3)
    elif which == "los_sensor_frame":
        azimuth = _column(check, b.los_sensor_frame.azimuth_rad,
                          "batch.los_sensor_frame.azimuth_rad", n)
        elevation = _column(check, b.los_sensor_frame.elevation_rad,
                            "batch.los_sensor_frame.elevation_rad", n)
    else:
        check.add("batch.line_of_sight", "one of los_ecef or los_sensor_frame is required")
    noise = _column(check, b.noise_rad, "batch.noise_rad", n, optional=True)
    intensity = _column(check, b.intensity, "batch.intensity", n, optional=True)
    check.raise_if_any("the detection batch is invalid")
    base = b.base_time.seconds + b.base_time.nanos * 1e-9 - epoch_unix
    return RawBatch(base + offsets, sensor_ids, los, azimuth, elevation, noise, intensity)


# --------------------------------------------------------------------------- servicer


class ThreatServicer(ExportRpcs, threat_pb2_grpc.ThreatServiceServicer):
    def __init__(self, engine: ThreatEngine, store: Store, settings: ThreatSettings) -> None:
        self.engine = engine
        self.store = store
        self.settings = settings
        self.epoch_unix = settings.epoch.timestamp()

    def _track(self, record: TrackRecord) -> threat_pb2.Track:
        return track_message(record, self.epoch_unix, self.engine.model_names)

    @requires(DEFENSE)
    async def ListSensors(self, request, context):
        model = self.settings.sensor_model
        numbers = await self.engine.ephemeris.catalog_numbers()
        return threat_pb2.ListSensorsResponse(sensors=[
            threat_pb2.Sensor(
                name=f"sensors/{sensor_id}", satellite=f"satellites/{catalog_number}",
                los_noise_urad=model.los_noise_urad, frame_rate_hz=model.frame_rate_hz,
                field_of_regard_half_angle_deg=model.field_of_regard_half_angle_deg,
                detection_probability=model.detection_probability,
                false_alarms_per_frame=model.false_alarms_per_frame)
            for sensor_id, catalog_number in enumerate(numbers, start=1)
        ])

    @requires(DEFENSE)
    async def IngestDetections(self, request_iterator, context):
        batches = duplicates = accepted = frames = 0
        dropped: dict[str, list] = {}
        try:
            async for request in request_iterator:
                batches += 1
                try:
                    raw = decode_batch(request, self.settings, self.epoch_unix)
                    key = _key(_request_id(request.request_id), "IngestDetections",
                               request.batch.SerializeToString(deterministic=True))
                    outcome = await self.engine.ingest(raw, key)
                except DomainError as error:
                    error.message = (f"batch {batches - 1} of this call: {error.message} "
                                     f"({batches - 1} earlier batches were ingested)")
                    error.args = (error.message,)
                    error.metadata["batch_index"] = str(batches - 1)
                    error.metadata["ingested_batches"] = str(batches - 1)
                    raise
                duplicates += outcome.duplicate
                accepted += outcome.accepted
                frames += outcome.frames
                for reason, (count, example) in outcome.dropped.items():
                    entry = dropped.setdefault(reason, [0, example])
                    entry[0] += count
        finally:
            await self.engine.settle()
        return threat_pb2.IngestDetectionsResponse(
            batches=batches, duplicate_batches=duplicates, accepted_detections=accepted,
            dropped=[threat_pb2.DroppedDetections(reason=r, count=c, example=e)
                     for r, (c, e) in dropped.items()],
            frames_processed=frames,
            processed_time=(_timestamp(self.epoch_unix, self.engine.processed_until_s)
                            if np.isfinite(self.engine.processed_until_s) else None))

    @requires(DEFENSE)
    async def GetTrack(self, request, context):
        track_id = resource_id(request.name, "tracks")
        record = await self.store.get_track(track_id)
        if record is None:
            raise NotFound(f"{request.name} does not exist", reason="TRACK_NOT_FOUND")
        return threat_pb2.GetTrackResponse(track=self._track(record))

    @requires(DEFENSE)
    async def ListTracks(self, request, context):
        size = _page_size(request.page_size)
        states = sorted(set(request.states))
        if any(s == threat_pb2.Track.STATE_UNSPECIFIED for s in states):
            raise InvalidArgument("states may not hold STATE_UNSPECIFIED",
                                  violations=[("states", "STATE_UNSPECIFIED is not a state")])
        stored = [s - 1 for s in states] or [0, 1, 2]
        fingerprint = "tracks:" + ",".join(map(str, stored))
        after = decode_page_token(request.page_token, fingerprint)
        records = await self.store.list_tracks(stored, after, size + 1)
        token = (encode_page_token(records[size - 1].track_id, fingerprint)
                 if len(records) > size else "")
        return threat_pb2.ListTracksResponse(
            tracks=[self._track(r) for r in records[:size]], next_page_token=token)

    @requires(DEFENSE)
    async def StreamTracks(self, request, context):
        include_tentative = request.include_tentative
        with self.engine.track_subscription(include_tentative) as (box, snapshot, processed):
            yield threat_pb2.StreamTracksResponse(
                tracks=[self._track(r) for r in snapshot], snapshot=True,
                processed_time=(_timestamp(self.epoch_unix, processed)
                                if np.isfinite(processed) else None))
            while True:
                items = await box.take()
                processed = items.pop("processed_s", self.engine.processed_until_s)
                records = [r for r in items.values() if include_tentative or r.state != 0]
                if records:
                    yield threat_pb2.StreamTracksResponse(
                        tracks=[self._track(r) for r in sorted(records,
                                                               key=lambda r: r.track_id)],
                        processed_time=_timestamp(self.epoch_unix, processed))

    @requires(DEFENSE)
    async def CreateDefendedAsset(self, request, context):
        check = Violations()
        request_id = _request_id(request.request_id)
        if check.require(request.HasField("defended_asset") or None, "defended_asset"):
            a = request.defended_asset
            check.check(1 <= len(a.display_name.strip()) <= 200, "defended_asset.display_name",
                        "must be 1 to 200 characters")
            if check.require(a.HasField("location") or None, "defended_asset.location"):
                lat, lon = a.location.latitude_deg, a.location.longitude_deg
                check.check(np.isfinite(lat) and -90 <= lat <= 90,
                            "defended_asset.location.latitude_deg", "must be -90 to 90")
                check.check(np.isfinite(lon) and -180 <= lon <= 180,
                            "defended_asset.location.longitude_deg", "must be -180 to 180")
            check.check(np.isfinite(a.radius_m) and 0 <= a.radius_m <= MAX_ASSET_RADIUS_M,
                        "defended_asset.radius_m",
                        f"must be between 0 and {MAX_ASSET_RADIUS_M:g} metres")
        check.raise_if_any("the defended asset is invalid")
        a = request.defended_asset
        asset = (a.display_name.strip(), a.location.latitude_deg, a.location.longitude_deg,
                 a.radius_m)
        key = _key(request_id, "CreateDefendedAsset", repr(asset).encode())
        answer = await self.engine.create_asset(
            *asset, key, lambda record: threat_pb2.CreateDefendedAssetResponse(
                defended_asset=asset_message(record)).SerializeToString(deterministic=True))
        return threat_pb2.CreateDefendedAssetResponse.FromString(answer)

    @requires(DEFENSE)
    async def ListDefendedAssets(self, request, context):
        size = _page_size(request.page_size)
        after = decode_page_token(request.page_token, "assets")
        records = await self.store.list_assets(after, size + 1)
        token = (encode_page_token(records[size - 1].asset_id, "assets")
                 if len(records) > size else "")
        return threat_pb2.ListDefendedAssetsResponse(
            defended_assets=[asset_message(r) for r in records[:size]], next_page_token=token)

    @requires(DEFENSE)
    async def DeleteDefendedAsset(self, request, context):
        asset_id = resource_id(request.name, "assets")
        if not await self.engine.delete_asset(asset_id):
            raise NotFound(f"{request.name} does not exist", reason="ASSET_NOT_FOUND")
        return threat_pb2.DeleteDefendedAssetResponse()

    @requires(DEFENSE)
    async def GetAlert(self, request, context):
        alert_id = resource_id(request.name, "alerts")
        record = await self.store.get_alert(alert_id)
        if record is None:
            raise NotFound(f"{request.name} does not exist", reason="ALERT_NOT_FOUND")
        return threat_pb2.GetAlertResponse(alert=alert_message(record, self.epoch_unix))

    @requires(DEFENSE)
    async def ListAlerts(self, request, context):
        size = _page_size(request.page_size)
        fingerprint = f"alerts:{int(request.show_withdrawn)}"
        after = decode_page_token(request.page_token, fingerprint)
        records = await self.store.list_alerts(request.show_withdrawn, after, size + 1)
        token = (encode_page_token(records[size - 1].alert_id, fingerprint)
                 if len(records) > size else "")
        return threat_pb2.ListAlertsResponse(
            alerts=[alert_message(r, self.epoch_unix) for r in records[:size]],
            next_page_token=token)

    @requires(DEFENSE)
    async def WatchAlerts(self, request, context):
        with self.engine.alert_subscription() as (box, open_alerts):
            for alert in open_alerts:
                yield threat_pb2.WatchAlertsResponse(alert=alert_message(alert, self.epoch_unix),
                                                     snapshot=True)
            while True:
                items = await box.take()
                for alert_id in sorted(items):
                    yield threat_pb2.WatchAlertsResponse(
                        alert=alert_message(items[alert_id], self.epoch_unix))
