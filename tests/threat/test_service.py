"""The threat service through a real server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC

import grpc
import numpy as np
import pytest
import sqlalchemy as sa
from skybridge.common.v1 import common_pb2
from skybridge.threat.v1 import threat_pb2

from services.threat.batch import angles_from_los
from services.threat.store import AlertState, ThreatClass, assets
from shared.geodesy import ecef_to_geodetic
from shared.status import details_of
from tests.conftest import bearer
from tests.threat.support import failure, requests_of, start_threat
from tests.waiting import until
from tools.threatsim.ingest import batch_request, chunked

DEFENSE = ("defense",)


@pytest.fixture
async def threat(settings, one_missile):
    running = await start_threat(settings, one_missile)
    yield running
    await running.stop()


def _requests(dets, chunk_s=10.0, **kwargs):
    return [batch_request(part, **kwargs) for part in chunked(dets, chunk_s)]


async def _ingest(stub, minter, requests):
    return await stub.IngestDetections(requests_of(requests), metadata=bearer(minter, *DEFENSE))


async def _all_tracks(stub, minter, **kwargs):
    tracks, token = [], ""
    while True:
        page = await stub.ListTracks(threat_pb2.ListTracksRequest(page_token=token, **kwargs),
                                     metadata=bearer(minter, *DEFENSE))
        tracks += page.tracks
        token = page.next_page_token
        if not token:
            return tracks


async def test_only_the_defense_scope_reaches_the_service(threat, minter):
    customer = bearer(minter, "provisioning.read", "linkbroker.read", tenant="fabrikam")
    stub = threat.stub
    calls = [
        stub.ListSensors(threat_pb2.ListSensorsRequest(), metadata=customer),
        stub.GetTrack(threat_pb2.GetTrackRequest(name="tracks/1"), metadata=customer),
        stub.ListTracks(threat_pb2.ListTracksRequest(), metadata=customer),
        stub.ListAlerts(threat_pb2.ListAlertsRequest(), metadata=customer),
        stub.GetAlert(threat_pb2.GetAlertRequest(name="alerts/1"), metadata=customer),
        stub.ListDefendedAssets(threat_pb2.ListDefendedAssetsRequest(), metadata=customer),
        stub.CreateDefendedAsset(threat_pb2.CreateDefendedAssetRequest(), metadata=customer),
        stub.DeleteDefendedAsset(threat_pb2.DeleteDefendedAssetRequest(name="assets/1"),
                                 metadata=customer),
        stub.IngestDetections(requests_of([]), metadata=customer),
    ]
    for call in calls:
        error = await failure(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert details_of(error).metadata["required_scopes"] == "defense"
    for streaming in (stub.StreamTracks(threat_pb2.StreamTracksRequest(), metadata=customer),
                      stub.WatchAlerts(threat_pb2.WatchAlertsRequest(), metadata=customer)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in streaming:
                pass
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await failure(stub.ListSensors(threat_pb2.ListSensorsRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    sensors = await stub.ListSensors(threat_pb2.ListSensorsRequest(),
                                     metadata=bearer(minter, *DEFENSE))
    assert [s.name for s in sensors.sensors] == [f"sensors/{i}" for i in (1, 2, 3, 4)]
    assert sensors.sensors[0].satellite == "satellites/1"
    assert sensors.sensors[0].los_noise_urad == 20.0


async def test_scenario_through_ingest_tracks_alerts_and_streams(threat, minter, one_missile):
    stub, scen = threat.stub, one_missile
    truth = scen.targets[0]
    lat, lon, _ = ecef_to_geodetic(truth.impact_ecef_m[None])
    defended = await stub.CreateDefendedAsset(threat_pb2.CreateDefendedAssetRequest(
        defended_asset=threat_pb2.DefendedAsset(
            display_name="impact area", radius_m=20e3,
            location=common_pb2.GeodeticPoint(latitude_deg=float(lat[0]),
                                              longitude_deg=float(lon[0]))),
        request_id="asset-1"), metadata=bearer(minter, *DEFENSE))
    again = await stub.CreateDefendedAsset(threat_pb2.CreateDefendedAssetRequest(
        defended_asset=defended.defended_asset, request_id="asset-1"),
        metadata=bearer(minter, *DEFENSE))
    assert again.defended_asset.name == defended.defended_asset.name
    far = await stub.CreateDefendedAsset(threat_pb2.CreateDefendedAssetRequest(
        defended_asset=threat_pb2.DefendedAsset(
            display_name="far away", location=common_pb2.GeodeticPoint(
                latitude_deg=-float(lat[0]), longitude_deg=float(lon[0]) - 120.0))),
        metadata=bearer(minter, *DEFENSE))

    streamed: list[threat_pb2.StreamTracksResponse] = []
    watched: list[threat_pb2.WatchAlertsResponse] = []

    async def follow(call, into):
        try:
            async for message in call:
                into.append(message)
        except asyncio.CancelledError:
            pass
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.CANCELLED

    track_call = stub.StreamTracks(threat_pb2.StreamTracksRequest(),
                                   metadata=bearer(minter, *DEFENSE))
    alert_call = stub.WatchAlerts(threat_pb2.WatchAlertsRequest(),
                                  metadata=bearer(minter, *DEFENSE))
    followers = [asyncio.ensure_future(follow(track_call, streamed)),
                 asyncio.ensure_future(follow(alert_call, watched))]
    # Both streams are subscribed (their mailboxes registered) before anything is ingested,
    # and the track stream's snapshot has arrived: a condition, not a pause.
    engine = threat.engine
    assert await until(lambda: len(engine.track_watchers) == len(engine.alert_watchers) == 1
                       and len(streamed) == 1)

    d = scen.detections
    # up to 600 s: mid-course, the impact is predicted, the asset is threatened
    first = await _ingest(stub, minter, _requests(d.take(d.time < 600)))
    assert first.batches == 60 and first.accepted_detections == int(np.sum(d.time < 600))
    assert not first.dropped and first.frames_processed > 500

    tracks = await _all_tracks(stub, minter, states=[threat_pb2.Track.STATE_CONFIRMED])
    assert len(tracks) == 1
    track = tracks[0]
    got = await stub.GetTrack(threat_pb2.GetTrackRequest(name=track.name),
                              metadata=bearer(minter, *DEFENSE))
    assert got.track == track
    t_est = track.estimate_time.ToDatetime().timestamp() - scen.epoch.timestamp()
    error_m = np.linalg.norm(np.array(track.state_ecef[:3]) - truth.state_at(t_est)[0, :3])
    assert error_m < 500.0
    assert len(track.covariance) == 36 and list(track.model_names) == ["ballistic", "manoeuvre",
                                                                        "boost"]
    assert track.threat_class == threat_pb2.Track.THREAT_CLASS_BALLISTIC
    assert track.class_confidence > 0.5
    assert track.HasField("impact") and track.HasField("launch")

    alerts = await stub.ListAlerts(threat_pb2.ListAlertsRequest(),
                                   metadata=bearer(minter, *DEFENSE))
    assert [a.asset for a in alerts.alerts] == [defended.defended_asset.name]
    alert = alerts.alerts[0]
    assert alert.track == track.name
    assert alert.state in (threat_pb2.Alert.STATE_ACTIVE, threat_pb2.Alert.STATE_UPDATED)
    tti = alert.time_to_impact.ToTimedelta().total_seconds()
    assert 200 < tti < 400  # impact at ~880 s, evaluated at ~598 s
    assert alert.severity == (threat_pb2.Alert.SEVERITY_CRITICAL if tti <= 300
                              else threat_pb2.Alert.SEVERITY_HIGH)
    predicted = alert.evaluation_time.ToDatetime() + alert.time_to_impact.ToTimedelta()
    true_impact = scen.epoch.timestamp() + truth.impact_time_s
    assert abs(predicted.timestamp() - true_impact) < 30.0
    assert far.defended_asset.name not in {a.asset for a in alerts.alerts}

    # the rest: impact, the track ends, the alert is withdrawn
    rest = await _ingest(stub, minter, _requests(d.take(d.time >= 600)))
    assert rest.accepted_detections == int(np.sum(d.time >= 600))
    final = await stub.GetAlert(threat_pb2.GetAlertRequest(name=alert.name),
                                metadata=bearer(minter, *DEFENSE))
    assert final.alert.state == threat_pb2.Alert.STATE_WITHDRAWN
    assert final.alert.withdraw_reason == "TRACK_DROPPED"
    assert final.alert.severity == threat_pb2.Alert.SEVERITY_CRITICAL
    dropped = await stub.GetTrack(threat_pb2.GetTrackRequest(name=track.name),
                                  metadata=bearer(minter, *DEFENSE))
    assert dropped.track.state == threat_pb2.Track.STATE_DROPPED
    open_now = await stub.ListAlerts(threat_pb2.ListAlertsRequest(),
                                     metadata=bearer(minter, *DEFENSE))
    assert not open_now.alerts
    history = await stub.ListAlerts(threat_pb2.ListAlertsRequest(show_withdrawn=True),
                                    metadata=bearer(minter, *DEFENSE))
    assert [a.name for a in history.alerts] == [alert.name]

    # The streams have told the end (the track dropped, the alert withdrawn) before they
    # are closed: waited for, not given a tenth of a second.
    def told_the_end() -> bool:
        return (any(t.name == track.name and t.state == threat_pb2.Track.STATE_DROPPED
                    for m in streamed for t in m.tracks)
                and any(w.alert.name == alert.name
                        and w.alert.state == threat_pb2.Alert.STATE_WITHDRAWN for w in watched))

    assert await until(told_the_end)
    track_call.cancel()
    alert_call.cancel()
    await asyncio.gather(*followers)
    assert streamed[0].snapshot and not streamed[0].tracks
    names = {t.name for m in streamed[1:] for t in m.tracks}
    assert track.name in names
    assert streamed[-1].tracks[-1].state == threat_pb2.Track.STATE_DROPPED
    states = [w.alert.state for w in watched if w.alert.name == alert.name]
    assert states[0] == threat_pb2.Alert.STATE_ACTIVE
    assert states[-1] == threat_pb2.Alert.STATE_WITHDRAWN


async def test_pagination_of_tracks(threat, minter, one_missile):
    d = one_missile.detections
    await _ingest(threat.stub, minter, _requests(d.take(d.time < 300)))
    everything = await _all_tracks(threat.stub, minter,
                                   states=[threat_pb2.Track.STATE_TENTATIVE,
                                           threat_pb2.Track.STATE_CONFIRMED,
                                           threat_pb2.Track.STATE_COASTING,
                                           threat_pb2.Track.STATE_DROPPED])
    paged = await _all_tracks(threat.stub, minter, page_size=1,
                              states=[threat_pb2.Track.STATE_TENTATIVE,
                                      threat_pb2.Track.STATE_CONFIRMED,
                                      threat_pb2.Track.STATE_COASTING,
                                      threat_pb2.Track.STATE_DROPPED])
    assert [t.name for t in paged] == [t.name for t in everything]
    assert len(everything) >= 1
    page = await threat.stub.ListTracks(threat_pb2.ListTracksRequest(page_size=1),
                                        metadata=bearer(minter, *DEFENSE))
    error = await failure(threat.stub.ListTracks(
        threat_pb2.ListTracksRequest(page_token="garbage!"), metadata=bearer(minter, *DEFENSE)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details_of(error).violations] == ["page_token"]
    if page.next_page_token:
        error = await failure(threat.stub.ListTracks(
            threat_pb2.ListTracksRequest(page_token=page.next_page_token,
                                         states=[threat_pb2.Track.STATE_DROPPED]),
            metadata=bearer(minter, *DEFENSE)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = await failure(threat.stub.GetTrack(threat_pb2.GetTrackRequest(name="tracks/999999"),
                                               metadata=bearer(minter, *DEFENSE)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await failure(threat.stub.GetTrack(threat_pb2.GetTrackRequest(name="track/x"),
                                               metadata=bearer(minter, *DEFENSE)))
    assert [v.field for v in details_of(error).violations] == ["name"]


def _state(engine):
    s = engine.tracker.export_state()
    return (s.track_id.tolist(), s.processed_until_s, s.latest_seen_s, s.x.tobytes(),
            engine.tracker.detections_processed)


async def test_bad_batches_are_refused_whole_with_the_field_named(threat, minter, one_missile):
    stub, engine = threat.stub, threat.engine
    d = one_missile.detections
    good = d.take((d.time >= 100) & (d.time < 110))
    await _ingest(stub, minter, _requests(d.take(d.time < 100)))
    before = _state(engine)
    stored = await engine.store.count_batches()

    def bad(mutate, **kwargs):
        request = batch_request(good, **kwargs)
        mutate(request.batch)
        return request

    def set_los(batch, los):
        batch.los_ecef.le_bytes = np.ascontiguousarray(los, "<f8").tobytes()

    nan_los = good.los_unit_ecef.copy()
    nan_los[3] = np.nan
    long_los = good.los_unit_ecef.copy()
    long_los[5] *= 1.01
    cases = {
        "batch.sensor_ids": bad(lambda b: b.sensor_ids.__setitem__(2, 9)),
        "batch.los_ecef": bad(lambda b: set_los(b, nan_los)),
        "batch.noise_rad": bad(lambda b: b.noise_rad.__setattr__(
            "le_bytes", (-good.noise_rad).astype("<f8").tobytes())),
        "batch.time_offsets_s": bad(lambda b: b.base_time.__setattr__("seconds", 4_000_000_000)),
        "batch.intensity": bad(lambda b: b.intensity.__setattr__("le_bytes", b"\x00" * 8)),
        "batch.base_time": bad(lambda b: b.ClearField("base_time")),
        "batch.line_of_sight": bad(lambda b: b.ClearField("los_ecef")),
    }
    cases_long = bad(lambda b: set_los(b, long_los))
    for field, request in [*cases.items(), ("batch.los_ecef", cases_long)]:
        # a good batch first: it is ingested; the bad one ends the call and changes nothing
        error = await failure(_ingest(stub, minter, [request]))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        info = details_of(error)
        assert field in [v.field for v in info.violations], (field, info.violations)
        assert _state(engine) == before, field
    error = await failure(_ingest(stub, minter, [cases_long]))
    text = " ".join(v.description for v in details_of(error).violations)
    assert "rows 5 (1 of" in text and "unit vector" in text
    error = await failure(_ingest(stub, minter, [cases["batch.sensor_ids"]]))
    assert "unknown sensor ids [9]" in details_of(error).violations[0].description
    assert details_of(error).reason == "INVALID_DETECTION_BATCH"

    # too big: refused before decoding, the limit named
    big = threat.engine.settings.max_batch + 1
    request = batch_request(d.take(np.arange(big) % len(d)))
    error = await failure(_ingest(stub, minter, [request]))
    info = details_of(error)
    assert info.reason == "BATCH_TOO_LARGE"
    assert info.violations[0].field == "batch.time_offsets_s"
    assert str(threat.engine.settings.max_batch) in info.violations[0].description
    assert _state(engine) == before
    assert await engine.store.count_batches() == stored

    # a good batch then a bad one in one call: the first is kept, the error says so
    error = await failure(_ingest(stub, minter, [batch_request(good), cases["batch.noise_rad"]]))
    assert details_of(error).metadata["ingested_batches"] == "1"
    assert engine.tracker.latest_seen_s > before[2]


async def test_late_and_duplicate_batches(threat, minter, one_missile):
    stub = threat.stub
    d = one_missile.detections
    first = d.take((d.time >= 0) & (d.time < 60))
    answer = await _ingest(stub, minter, [batch_request(first, request_id="b-1")])
    assert answer.accepted_detections == len(first) and answer.duplicate_batches == 0
    again = await _ingest(stub, minter, [batch_request(first, request_id="b-1")])
    assert again.duplicate_batches == 1 and again.accepted_detections == 0
    # within the re-order window: reversed order inside a batch, a frame 1 s late
    late_ok = d.take(np.flatnonzero((d.time >= 58.5) & (d.time < 70))[::-1])
    answer = await _ingest(stub, minter, [batch_request(late_ok)])
    accepted_late = answer.accepted_detections
    # the 60 s frame was re-sent: it is at or before the processed frame... only if processed
    old = d.take(d.time < 30)
    answer = await _ingest(stub, minter, [batch_request(old)])
    assert answer.accepted_detections == 0
    assert [(x.reason, x.count) for x in answer.dropped] == [("LATE", len(old))]
    assert "re-order window" in answer.dropped[0].example
    assert accepted_late + sum(x.count for x in answer.dropped) > 0


async def test_azimuth_elevation_batches_track_like_ecef(threat, minter, one_missile):
    d = one_missile.detections
    part = d.take(d.time < 200)
    sensor = one_missile.constellation
    pos = part.sensor_position_ecef_m
    vel = (np.stack([sensor.positions_ecef(np.array([t + 0.5]))[0, s]
                     for t, s in zip(part.time, part.sensor_index, strict=True)])
           - np.stack([sensor.positions_ecef(np.array([t - 0.5]))[0, s]
                       for t, s in zip(part.time, part.sensor_index, strict=True)]))
    az, el = angles_from_los(part.los_unit_ecef, pos, vel)
    requests = [batch_request(part.take(sel), azimuth_elevation=(az[sel], el[sel]), packed=True,
                              with_noise=False)
                for sel in [(part.time >= a) & (part.time < a + 20) for a in range(0, 200, 20)]]
    answer = await _ingest(threat.stub, minter, requests)
    assert answer.accepted_detections == len(part)
    tracks = await _all_tracks(threat.stub, minter, states=[threat_pb2.Track.STATE_CONFIRMED])
    assert len(tracks) == 1
    truth = one_missile.targets[0]
    t_est = tracks[0].estimate_time.ToDatetime().timestamp() - one_missile.epoch.timestamp()
    assert np.linalg.norm(np.array(tracks[0].state_ecef[:3])
                          - truth.state_at(t_est)[0, :3]) < 2_000.0


async def test_evaluations_during_a_fast_stream_are_spaced_in_wall_time(settings, minter,
                                                                     one_missile):
    """600 s of data in one call, far faster than real time: with a one-hour gap only the
    first due evaluation runs during the stream, and the end of the call evaluates the
    newest state (the track's impact prediction is there)."""
    from services.threat.settings import ThreatSettings

    d = one_missile.detections
    running = await start_threat(settings, one_missile,
                                 threat_settings=ThreatSettings(evaluation_min_gap_s=3600.0))
    try:
        answer = await _ingest(running.stub, minter, _requests(d.take(d.time < 600)))
        assert answer.batches == 60
        assert running.engine.evaluations == 2
        (track,) = await _all_tracks(running.stub, minter,
                                     states=[threat_pb2.Track.STATE_CONFIRMED])
        assert track.HasField("impact")
        # a second call: due again in data time, still inside the gap, then the end-of-call
        await _ingest(running.stub, minter, _requests(d.take((d.time >= 600) & (d.time < 700))))
        assert running.engine.evaluations == 3
    finally:
        await running.stop()


async def test_restart_resumes_the_live_tracks(settings, minter, one_missile):
    d = one_missile.detections
    running = await start_threat(settings, one_missile)
    try:
        await _ingest(running.stub, minter, _requests(d.take(d.time < 300)))
        before = await _all_tracks(running.stub, minter,
                                   states=[threat_pb2.Track.STATE_CONFIRMED])
        state = running.engine.tracker.export_state()
        buffered = running.engine.tracker.latest_seen_s - running.engine.processed_until_s
    finally:
        await running.stop()
    assert len(before) == 1 and buffered > 0

    running = await start_threat(settings, one_missile)
    try:
        resumed = running.engine.tracker.export_state()
        assert resumed.track_id.tolist() == state.track_id.tolist()
        assert resumed.next_id == state.next_id
        # the re-order buffer was replayed from the stored detections
        assert resumed.latest_seen_s == state.latest_seen_s
        np.testing.assert_allclose(resumed.x, state.x)
        np.testing.assert_allclose(resumed.P, state.P)
        got = await running.stub.GetTrack(threat_pb2.GetTrackRequest(name=before[0].name),
                                          metadata=bearer(minter, *DEFENSE))
        assert got.track.state_ecef == before[0].state_ecef
        await _ingest(running.stub, minter, _requests(d.take((d.time >= 300) & (d.time < 500))))
        after = await _all_tracks(running.stub, minter,
                                  states=[threat_pb2.Track.STATE_CONFIRMED])
        assert [t.name for t in after] == [before[0].name]  # the same track went on
        assert after[0].hit_count > before[0].hit_count
        truth = one_missile.targets[0]
        t_est = after[0].estimate_time.ToDatetime().timestamp() - one_missile.epoch.timestamp()
        assert np.linalg.norm(np.array(after[0].state_ecef[:3])
                              - truth.state_at(t_est)[0, :3]) < 500.0
    finally:
        await running.stop()


async def test_assets_validation_and_deletion(threat, minter):
    stub = threat.stub
    error = await failure(stub.CreateDefendedAsset(threat_pb2.CreateDefendedAssetRequest(
        defended_asset=threat_pb2.DefendedAsset(
            display_name="", radius_m=-1,
            location=common_pb2.GeodeticPoint(latitude_deg=95, longitude_deg=0))),
        metadata=bearer(minter, *DEFENSE)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in details_of(error).violations} == {
        "defended_asset.display_name", "defended_asset.radius_m",
        "defended_asset.location.latitude_deg"}
    names = []
    for i in range(3):
        made = await stub.CreateDefendedAsset(threat_pb2.CreateDefendedAssetRequest(
            defended_asset=threat_pb2.DefendedAsset(
                display_name=f"base {i}",
                location=common_pb2.GeodeticPoint(latitude_deg=10 * i, longitude_deg=5))),
            metadata=bearer(minter, *DEFENSE))
        names.append(made.defended_asset.name)
    page = await stub.ListDefendedAssets(threat_pb2.ListDefendedAssetsRequest(page_size=2),
                                         metadata=bearer(minter, *DEFENSE))
    rest = await stub.ListDefendedAssets(threat_pb2.ListDefendedAssetsRequest(
        page_token=page.next_page_token), metadata=bearer(minter, *DEFENSE))
    assert [a.name for a in [*page.defended_assets, *rest.defended_assets]] == names
    await stub.DeleteDefendedAsset(threat_pb2.DeleteDefendedAssetRequest(name=names[0]),
                                   metadata=bearer(minter, *DEFENSE))
    error = await failure(stub.DeleteDefendedAsset(
        threat_pb2.DeleteDefendedAssetRequest(name=names[0]), metadata=bearer(minter, *DEFENSE)))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_times_are_aware_utc_and_stored_as_naive_utc(threat, minter):
    """The store hands out aware UTC datetimes; the column holds the same instant as naive
    UTC (`shared.columns.UTCDateTime`), and the answer carries that instant."""
    made = await threat.stub.CreateDefendedAsset(threat_pb2.CreateDefendedAssetRequest(
        defended_asset=threat_pb2.DefendedAsset(
            display_name="times", location=common_pb2.GeodeticPoint(latitude_deg=1))),
        metadata=bearer(minter, *DEFENSE))
    answered = made.defended_asset.create_time.ToDatetime(tzinfo=UTC)
    store = threat.engine.store
    [record] = [a for a in await store.list_assets() if a.display_name == "times"]
    assert record.create_time.utcoffset() is not None
    assert record.create_time == answered
    async with store.sessions() as session:
        raw = await session.scalar(sa.select(sa.column("create_time", sa.DateTime()))
                                   .select_from(assets).where(assets.c.id == record.asset_id))
    assert raw.tzinfo is None and raw == answered.replace(tzinfo=None)


def test_stored_states_are_the_wire_enum_numbers():
    """Alert states and threat classes are stored as the numbers of their proto enums."""
    assert {s.name: int(s) for s in AlertState} == {
        n.removeprefix("STATE_"): v for n, v in threat_pb2.Alert.State.items() if v}
    assert {c.name: int(c) for c in ThreatClass} == {
        n.removeprefix("THREAT_CLASS_"): v for n, v in threat_pb2.Track.ThreatClass.items()}
