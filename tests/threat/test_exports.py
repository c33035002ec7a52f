"""The threat exports: tracks as CZML and GeoJSON, alerts as GeoJSON, and the impact
ellipse as a polygon.

GeoJSON is read two ways: by geojson-pydantic, an independent reader, and against a JSON
Schema of RFC 7946's structure written here from the RFC's text (positions of two or three
numbers, longitude then latitude in range; a LineString of two or more positions; a linear
ring closed, of four or more positions; the Feature and FeatureCollection members). The
ellipse polygon's area is pi * a * b * chi2(0.95, 2 dof) of its 1-sigma axes, and it holds
the predicted point. The server tests run a real threat server on SQLite and PostgreSQL
with a simulated missile (tools/threatsim) ingested through IngestDetections.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import grpc
import jsonschema
import numpy as np
import pytest
from czml3 import Document
from geojson_pydantic import FeatureCollection
from skybridge.common.v1 import common_pb2
from skybridge.threat.v1 import threat_pb2

from services.threat import api_exports as threat_api
from services.threat.ellipse import (
    DEFAULT_VERTICES,
    covariance_from_axes,
    ellipse_rings,
    split_at_antimeridian,
)
from services.threat.export_geojson import split_line
from services.threat.predict import CHI2_2DOF_95, predict_impact_points
from shared.geodesy import ecef_to_geodetic
from shared.status import details_of
from tests.conftest import bearer
from tests.threat.support import requests_of, start_threat
from tools.threatsim.ingest import batch_request, chunked

DEFENSE = ("defense",)

# --------------------------------------------------------------------------- RFC 7946 schema

_LON = {"type": "number", "minimum": -180, "maximum": 180}
_LAT = {"type": "number", "minimum": -90, "maximum": 90}
_BBOX = {"type": "array", "items": {"type": "number"}, "minItems": 4}

#: RFC 7946 as a JSON Schema (2020-12), from the RFC's text. `closed` is a keyword added
#: below: a linear ring's first and last positions are equal (3.1.6), which JSON Schema
#: cannot say.
RFC7946 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {
        # 3.1.1: two or more numbers, longitude and latitude first; "SHOULD NOT extend
        # positions beyond three elements".
        "position": {"type": "array", "prefixItems": [_LON, _LAT, {"type": "number"}],
                     "items": False, "minItems": 2, "maxItems": 3},
        "lineCoordinates": {"type": "array", "items": {"$ref": "#/$defs/position"},
                            "minItems": 2},
        # 3.1.6: a closed LineString with four or more positions.
        "linearRing": {"type": "array", "items": {"$ref": "#/$defs/position"},
                       "minItems": 4, "closed": True},
        "polygonCoordinates": {"type": "array", "items": {"$ref": "#/$defs/linearRing"},
                               "minItems": 1},
        "Point": {"type": "object", "required": ["type", "coordinates"],
                  "properties": {"type": {"const": "Point"},
                                 "coordinates": {"$ref": "#/$defs/position"},
                                 "bbox": _BBOX}},
        "LineString": {"type": "object", "required": ["type", "coordinates"],
                       "properties": {"type": {"const": "LineString"},
                                      "coordinates": {"$ref": "#/$defs/lineCoordinates"},
                                      "bbox": _BBOX}},
        "MultiLineString": {"type": "object", "required": ["type", "coordinates"],
                            "properties": {"type": {"const": "MultiLineString"},
                                           "coordinates": {"type": "array", "items": {
                                               "$ref": "#/$defs/lineCoordinates"}},
                                           "bbox": _BBOX}},
        "Polygon": {"type": "object", "required": ["type", "coordinates"],
                    "properties": {"type": {"const": "Polygon"},
                                   "coordinates": {"$ref": "#/$defs/polygonCoordinates"},
                                   "bbox": _BBOX}},
        "MultiPolygon": {"type": "object", "required": ["type", "coordinates"],
                         "properties": {"type": {"const": "MultiPolygon"},
                                        "coordinates": {"type": "array", "items": {
                                            "$ref": "#/$defs/polygonCoordinates"}},
                                        "bbox": _BBOX}},
        "geometry": {"oneOf": [{"$ref": f"#/$defs/{kind}"} for kind in (
            "Point", "LineString", "MultiLineString", "Polygon", "MultiPolygon")]},
        # 3.2: "type": "Feature", a "geometry" member (a geometry or null), a
        # "properties" member (an object or null), an optional "id" (string or number).
        "Feature": {"type": "object", "required": ["type", "geometry", "properties"],
                    "properties": {"type": {"const": "Feature"},
                                   "geometry": {"oneOf": [{"type": "null"},
                                                          {"$ref": "#/$defs/geometry"}]},
                                   "properties": {"type": ["object", "null"]},
                                   "id": {"type": ["string", "number"]},
                                   "bbox": _BBOX}},
    },
    # 3.3: "type": "FeatureCollection" and a "features" array of Features.
    "type": "object", "required": ["type", "features"],
    "properties": {"type": {"const": "FeatureCollection"},
                   "features": {"type": "array", "items": {"$ref": "#/$defs/Feature"}},
                   "bbox": _BBOX},
}


def _closed(validator, closed, instance, schema):
    if closed and isinstance(instance, list) and instance and instance[0] != instance[-1]:
        yield jsonschema.ValidationError(f"ring is not closed: {instance[0]} != {instance[-1]}")


RFC7946Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator,
                                                {"closed": _closed})


def check_geojson(text: bytes) -> dict:
    """The document, after both readers accepted it."""
    document = json.loads(text)
    RFC7946Validator(RFC7946).validate(document)
    FeatureCollection.model_validate_json(text)
    return document


def test_the_schema_refuses_broken_documents():
    """Negative controls: each document breaks one rule and is refused by the schema (and
    by geojson-pydantic where it checks the rule)."""
    ring = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]

    def collection(geometry):
        return {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": geometry, "properties": {}}]}

    good = collection({"type": "Polygon", "coordinates": [ring]})
    RFC7946Validator(RFC7946).validate(good)
    unclosed = collection({"type": "Polygon", "coordinates": [ring[:-1] + [[0.0, 1.0]]]})
    short = collection({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0],
                                                            [0.0, 0.0]]]})
    swapped = collection({"type": "Point", "coordinates": [10.0, 95.0]})
    lonely = collection({"type": "LineString", "coordinates": [[0.0, 0.0]]})
    no_properties = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": None}]}
    for bad in (unclosed, short, swapped, lonely, no_properties):
        with pytest.raises(jsonschema.ValidationError):
            RFC7946Validator(RFC7946).validate(bad)
    for bad in (unclosed, short, lonely):
        with pytest.raises(ValueError):
            FeatureCollection.model_validate(bad)


# --------------------------------------------------------------------------- geometry


def _local_en(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float) -> np.ndarray:
    """East/north metres about (lon0, lat0) on the WGS84 ellipsoid: the radii of curvature
    at lat0 (a local approximation, second order in distance over radius)."""
    a, f = 6_378_137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    s = math.sin(math.radians(lat0))
    n_radius = a / math.sqrt(1 - e2 * s * s)
    m_radius = a * (1 - e2) / (1 - e2 * s * s) ** 1.5
    dlon = (np.asarray(lon) - lon0 + 180.0) % 360.0 - 180.0
    return np.column_stack([np.radians(dlon) * n_radius * math.cos(math.radians(lat0)),
                            np.radians(np.asarray(lat) - lat0) * m_radius])


def shoelace(xy: np.ndarray) -> float:
    """Signed area of a closed ring (positive: counter-clockwise)."""
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def inside(point: np.ndarray, ring: np.ndarray) -> bool:
    """Ray casting: ``point`` strictly inside the closed ``ring``."""
    x, y = point
    crossings = 0
    for (x1, y1), (x2, y2) in zip(ring[:-1], ring[1:], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            crossings += 1
    return crossings % 2 == 1


#: The inscribed polygon's share of the ellipse's area.
_INSCRIBED = DEFAULT_VERTICES / (2 * math.pi) * math.sin(2 * math.pi / DEFAULT_VERTICES)


def test_ellipse_polygon_from_the_prediction_covariance(one_missile):
    """The prediction's own covariance, its stored figures and the polygon agree: the
    covariance rebuilt from the 95 % axes is the prediction's, the ring is closed and
    counter-clockwise, its area is pi * a * b * chi2 (1-sigma axes), it holds the point."""
    truth = one_missile.targets[0]
    x = truth.state_at(np.array([400.0]))
    P = np.diag([300.0, 300.0, 300.0, 3.0, 3.0, 3.0]) ** 2
    P[0, 3] = P[3, 0] = 0.5 * 300.0 * 3.0
    prediction = predict_impact_points(x, P[None])
    assert prediction.valid.all()
    c = prediction.covariance_en_m2
    rebuilt = covariance_from_axes(prediction.ellipse_semi_major_m,
                                   prediction.ellipse_semi_minor_m,
                                   prediction.ellipse_major_azimuth_deg)
    assert rebuilt == pytest.approx(c, rel=1e-6, abs=1e-3)
    lat0, lon0 = float(prediction.lat_deg[0]), float(prediction.lon_deg[0])
    (ring,) = ellipse_rings([lat0], [lon0], c)
    assert (ring[0] == ring[-1]).all() and ring.shape == (DEFAULT_VERTICES + 1, 2)
    en = _local_en(ring[:, 0], ring[:, 1], lon0, lat0)
    sigma = np.sqrt(np.linalg.eigvalsh(c[0]))
    expected = math.pi * sigma[0] * sigma[1] * CHI2_2DOF_95 * _INSCRIBED
    assert shoelace(en) == pytest.approx(expected, rel=2e-3)
    assert shoelace(en) > 0
    assert inside(np.array([lon0, lat0]), ring)
    # The major axis: the farthest vertex lies along the stated azimuth, at the semi-major.
    far = en[np.argmax(np.hypot(en[:, 0], en[:, 1]))]
    assert np.hypot(*far) == pytest.approx(prediction.ellipse_semi_major_m[0], rel=2e-3)
    azimuth = math.degrees(math.atan2(far[0], far[1])) % 180.0
    assert min(abs(azimuth - prediction.ellipse_major_azimuth_deg[0]),
               180 - abs(azimuth - prediction.ellipse_major_azimuth_deg[0])) < 3.0


def test_rings_and_lines_are_cut_at_the_antimeridian():
    c = covariance_from_axes([40e3], [10e3], [90.0])
    (ring,) = ellipse_rings([10.0], [179.9], c)
    assert ring[:, 0].max() > 180.0
    parts = split_at_antimeridian(ring)
    assert len(parts) == 2
    for part in parts:
        assert (part[0] == part[-1]).all() and part.shape[0] >= 4
        assert -180.0 <= part[:, 0].min() and part[:, 0].max() <= 180.0
        assert shoelace(part) > 0
    # The two parts hold the whole area.
    whole = shoelace(_local_en(ring[:, 0], ring[:, 1], 179.9, 10.0))
    cut = sum(shoelace(_local_en(p[:, 0], p[:, 1], 179.9, 10.0)) for p in parts)
    assert cut == pytest.approx(whole, rel=1e-6)
    lines = split_line(np.array([178.0, 179.5, -179.5, -178.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    assert [len(line) for line in lines] == [3, 3]
    assert lines[0][-1] == [180.0, 1.5] and lines[1][0] == [-180.0, 1.5]


# --------------------------------------------------------------------------- the server


async def stream(call) -> tuple[bytes, list]:
    chunks = [c async for c in call]
    assert chunks
    return b"".join(c.data for c in chunks), chunks


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    return caught.value


def fields_of(error) -> set[str]:
    return {v.field for v in details_of(error).violations}


@pytest.fixture
async def threat(settings, one_missile):
    running = await start_threat(settings, one_missile)
    yield running
    await running.stop()


async def test_exports_of_a_tracked_missile(threat, minter, one_missile, monkeypatch):
    stub, who = threat.stub, bearer(minter, *DEFENSE)
    truth = one_missile.targets[0]
    lat, lon, _ = ecef_to_geodetic(truth.impact_ecef_m[None])
    asset = (await stub.CreateDefendedAsset(threat_pb2.CreateDefendedAssetRequest(
        defended_asset=threat_pb2.DefendedAsset(
            display_name="impact area", radius_m=20e3,
            location=common_pb2.GeodeticPoint(latitude_deg=float(lat[0]),
                                              longitude_deg=float(lon[0])))),
        metadata=who)).defended_asset
    d = one_missile.detections
    await stub.IngestDetections(requests_of(
        [batch_request(part) for part in chunked(d.take(d.time < 600), 10.0)]), metadata=who)
    (track,) = (await stub.ListTracks(threat_pb2.ListTracksRequest(
        states=[threat_pb2.Track.STATE_CONFIRMED]), metadata=who)).tracks
    assert track.HasField("impact")

    # GeoJSON: both readers accept it; one track's Point, ground track, impact, ellipse.
    text, chunks = await stream(stub.ExportTracksGeoJson(
        threat_pb2.ExportTracksGeoJsonRequest(max_points_per_track=50), metadata=who))
    assert {c.content_type for c in chunks} == {"application/geo+json"} and chunks[0].tracks == 1
    features = {f["id"]: f for f in check_geojson(text)["features"]}
    name = track.name
    assert set(features) == {name, f"{name}/groundTrack", f"{name}/impact",
                             f"{name}/impactEllipse"}
    point = features[name]
    assert point["geometry"]["type"] == "Point"
    p_lat, p_lon, p_h = ecef_to_geodetic(np.array(track.state_ecef[:3])[None])
    assert point["geometry"]["coordinates"] == pytest.approx(
        [float(p_lon[0]), float(p_lat[0]), float(p_h[0])], abs=1e-6 + 0.1)
    props = point["properties"]
    assert props["threat_class"] == "BALLISTIC" and props["state"] == "CONFIRMED"
    for key in ("estimate_time", "create_time", "last_detection_time"):
        when = datetime.fromisoformat(props[key].replace("Z", "+00:00"))
        assert props[key].endswith("Z") and when.utcoffset().total_seconds() == 0
    assert datetime.fromisoformat(props["estimate_time"].replace("Z", "+00:00")) == \
        track.estimate_time.ToDatetime(tzinfo=UTC)
    line = features[f"{name}/groundTrack"]["geometry"]
    assert line["type"] == "LineString" and 40 <= len(line["coordinates"]) <= 50
    assert line["coordinates"][-1] == pytest.approx(point["geometry"]["coordinates"][:2])
    impact = features[f"{name}/impact"]["geometry"]["coordinates"]
    assert impact == pytest.approx([track.impact.point.longitude_deg,
                                    track.impact.point.latitude_deg], abs=1e-6)
    ellipse = features[f"{name}/impactEllipse"]
    assert ellipse["geometry"]["type"] == "Polygon"
    (ring,) = np.array(ellipse["geometry"]["coordinates"], dtype=object)
    ring = np.array(ring, float)
    en = _local_en(ring[:, 0], ring[:, 1], impact[0], impact[1])
    a, b = track.impact.semi_major_m, track.impact.semi_minor_m
    # pi * a * b * chi2 for the 1-sigma axes is pi times the 95 % semi-axes.
    assert shoelace(en) == pytest.approx(math.pi * a * b * _INSCRIBED, rel=5e-3)
    assert inside(np.array(impact), ring)
    assert ellipse["properties"]["semi_major_m"] == pytest.approx(a, abs=0.1)

    # CZML: parses, round-trips through czml3, the ellipse and impact are there.
    text, chunks = await stream(stub.ExportTracksCzml(
        threat_pb2.ExportTracksCzmlRequest(tracks=[name]), metadata=who))
    assert {c.content_type for c in chunks} == {"application/json"}
    packets = json.loads(text)
    assert json.loads(Document.model_validate_json(text).model_dump_json(
        exclude_none=True)) == packets
    by_id = {p["id"]: p for p in packets}
    assert set(by_id) == {"document", name, f"{name}/impact", f"{name}/impactEllipse"}
    samples = np.array(by_id[name]["position"]["cartesian"]).reshape(-1, 4)
    assert 2 <= samples.shape[0] <= 300 and by_id[name]["position"]["referenceFrame"] == "FIXED"
    assert np.all(np.diff(samples[:, 0]) > 0)
    assert samples[-1, 1:] == pytest.approx(np.array(track.state_ecef[:3]), abs=1e-3)
    assert by_id[name]["point"]["color"]["rgba"] == [230, 30, 30, 255]
    flat = np.array(by_id[f"{name}/impactEllipse"]["polygon"]["positions"]
                    ["cartographicDegrees"]).reshape(-1, 3)
    assert (flat[0] == flat[-1]).all() and flat.shape[0] == DEFAULT_VERTICES + 1

    # Alerts: the asset's Point, the track, the state and times.
    text, chunks = await stream(stub.ExportAlertsGeoJson(
        threat_pb2.ExportAlertsGeoJsonRequest(), metadata=who))
    (alert,) = (await stub.ListAlerts(threat_pb2.ListAlertsRequest(), metadata=who)).alerts
    (feature,) = check_geojson(text)["features"]
    assert chunks[0].alerts == 1 and feature["id"] == alert.name
    assert feature["geometry"] == {"type": "Point", "coordinates": pytest.approx(
        [asset.location.longitude_deg, asset.location.latitude_deg], abs=1e-6)}
    props = feature["properties"]
    assert props["asset"] == asset.name and props["track"] == name
    assert props["state"] == threat_pb2.Alert.State.Name(alert.state).removeprefix("STATE_")
    assert props["asset_display_name"] == "impact area"
    for key in ("impact_time", "evaluation_time", "create_time", "update_time"):
        assert datetime.fromisoformat(props[key].replace("Z", "+00:00")).utcoffset() is not None
    assert datetime.fromisoformat(props["create_time"].replace("Z", "+00:00")) == \
        alert.create_time.ToDatetime(tzinfo=UTC)
    named = await stream(stub.ExportAlertsGeoJson(
        threat_pb2.ExportAlertsGeoJsonRequest(alerts=[alert.name]), metadata=who))
    assert json.loads(named[0])["features"] == [feature]

    # Over the size limits: RESOURCE_EXHAUSTED naming the field and the limit.
    monkeypatch.setattr(threat_api, "MAX_EXPORT_TRACKS", 0)
    error = await refused(stub.ExportTracksGeoJson(threat_pb2.ExportTracksGeoJsonRequest(),
                                                   metadata=who))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    (violation,) = details_of(error).violations
    assert violation.field == "tracks" and "at most 0" in violation.description
    monkeypatch.setattr(threat_api, "MAX_EXPORT_ALERTS", 0)
    error = await refused(stub.ExportAlertsGeoJson(threat_pb2.ExportAlertsGeoJsonRequest(),
                                                   metadata=who))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and fields_of(error) == {"alerts"}


async def test_bad_export_requests_name_the_field(threat, minter):
    stub, who = threat.stub, bearer(minter, *DEFENSE)
    # No tracks yet: empty but valid documents.
    text, _ = await stream(stub.ExportTracksGeoJson(threat_pb2.ExportTracksGeoJsonRequest(),
                                                    metadata=who))
    assert check_geojson(text) == {"type": "FeatureCollection", "features": []}
    text, _ = await stream(stub.ExportTracksCzml(threat_pb2.ExportTracksCzmlRequest(),
                                                 metadata=who))
    Document.model_validate_json(text)
    for method, request in ((stub.ExportTracksCzml, threat_pb2.ExportTracksCzmlRequest),
                            (stub.ExportTracksGeoJson, threat_pb2.ExportTracksGeoJsonRequest)):
        error = await refused(method(request(max_points_per_track=5000), metadata=who))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        (violation,) = details_of(error).violations
        assert violation.field == "max_points_per_track" and "3600" in violation.description
        error = await refused(method(request(max_points_per_track=1), metadata=who))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fields_of(error) == {"max_points_per_track"}
        error = await refused(method(request(tracks=["tracks/1", "track/2"]), metadata=who))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(error) == {
            "tracks[1]"}
        error = await refused(method(request(tracks=["tracks/999"]), metadata=who))
        assert error.code() == grpc.StatusCode.NOT_FOUND and fields_of(error) == {"tracks[0]"}
        error = await refused(method(request(tracks=[f"tracks/{i}" for i in range(1, 502)]),
                                     metadata=who))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert fields_of(error) == {"tracks"}
    error = await refused(stub.ExportAlertsGeoJson(threat_pb2.ExportAlertsGeoJsonRequest(
        alerts=["alerts/7"]), metadata=who))
    assert error.code() == grpc.StatusCode.NOT_FOUND and fields_of(error) == {"alerts[0]"}
    error = await refused(stub.ExportAlertsGeoJson(threat_pb2.ExportAlertsGeoJsonRequest(
        alerts=["alerts/x"]), metadata=who))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(error) == {"alerts[0]"}
    customer = bearer(minter, "links.read", tenant="fabrikam")
    error = await refused(stub.ExportAlertsGeoJson(threat_pb2.ExportAlertsGeoJsonRequest(),
                                                   metadata=customer))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
