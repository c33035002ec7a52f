"""Idempotency of the threat service's mutating calls under retries and races, through a
real server on loopback on SQLite and PostgreSQL: the contract every service keeps
(`shared.idempotency`): the first answer for a retry, one effect for 64 identical calls,
REQUEST_ID_REUSED for the same request_id with another body (CreateDefendedAsset used to
return the old asset silently), and keys that belong to the caller's tenant."""

from __future__ import annotations

import pytest
from skybridge.common.v1 import common_pb2
from skybridge.threat.v1 import threat_pb2

from tests.conftest import bearer
from tests.idempotency import RACERS, assert_reused, race
from tests.threat.support import requests_of, start_threat
from tools.threatsim.ingest import batch_request


@pytest.fixture
async def threat(settings, one_missile):
    running = await start_threat(settings, one_missile)
    yield running
    await running.stop()


def defense(minter, tenant="contoso"):
    return bearer(minter, "defense", tenant=tenant, subject=f"{tenant}-watch")


def asset_request(request_id: str, name="harbour", lat=10.0, radius_m=5e3):
    return threat_pb2.CreateDefendedAssetRequest(
        defended_asset=threat_pb2.DefendedAsset(
            display_name=name, radius_m=radius_m,
            location=common_pb2.GeodeticPoint(latitude_deg=lat, longitude_deg=20.0)),
        request_id=request_id)


async def test_create_defended_asset_retried_raced_and_reused(threat, minter):
    stub, store = threat.stub, threat.engine.store
    who = defense(minter)
    first = await stub.CreateDefendedAsset(asset_request("asset-a"), metadata=who)
    assert await stub.CreateDefendedAsset(asset_request("asset-a"), metadata=who) == first
    answers = await race(lambda: stub.CreateDefendedAsset(asset_request("asset-b"),
                                                          metadata=who))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert answers[0].defended_asset.name != first.defended_asset.name
    assert len(await store.list_assets()) == 2
    # Another body under a used key: refused, nothing stored.
    await assert_reused(stub.CreateDefendedAsset(asset_request("asset-a", name="airfield"),
                                                 metadata=who))
    await assert_reused(stub.CreateDefendedAsset(asset_request("asset-b", radius_m=6e3),
                                                 metadata=who))
    assert len(await store.list_assets()) == 2
    # The replay survives the asset's deletion: it is the first answer.
    await stub.DeleteDefendedAsset(threat_pb2.DeleteDefendedAssetRequest(
        name=first.defended_asset.name), metadata=who)
    assert await stub.CreateDefendedAsset(asset_request("asset-a"), metadata=who) == first


async def test_defended_asset_keys_belong_to_the_callers_tenant(threat, minter):
    stub, store = threat.stub, threat.engine.store
    ours, theirs = defense(minter, "contoso"), defense(minter, "fabrikam")
    mine = await stub.CreateDefendedAsset(asset_request("asset-1"), metadata=ours)
    # fabrikam's asset-1 is fabrikam's own key: not a replay of contoso's answer, and not
    # REQUEST_ID_REUSED for a different body either.
    other = await stub.CreateDefendedAsset(asset_request("asset-1", name="depot"),
                                           metadata=theirs)
    assert other.defended_asset.name != mine.defended_asset.name
    assert other.defended_asset.display_name == "depot"
    answers = await race(lambda: stub.CreateDefendedAsset(asset_request("asset-1",
                                                                        name="depot"),
                                                          metadata=theirs))
    assert {a.SerializeToString(deterministic=True) for a in answers} == {
        other.SerializeToString(deterministic=True)}
    assert await stub.CreateDefendedAsset(asset_request("asset-1"), metadata=ours) == mine
    await assert_reused(stub.CreateDefendedAsset(asset_request("asset-1"), metadata=theirs))
    assert len(await store.list_assets()) == 2


async def test_detection_batches_retried_raced_and_reused(threat, minter, one_missile):
    stub, store = threat.stub, threat.engine.store
    who = defense(minter)
    d = one_missile.detections
    first = d.take((d.time >= 0) & (d.time < 20))
    second = d.take((d.time >= 20) & (d.time < 40))
    third = d.take((d.time >= 40) & (d.time < 60))
    assert len(first) and len(second) and len(third)
    # Identical streams at once, each carrying the one batch: it is ingested once.
    n = RACERS // 4
    batch = batch_request(first, request_id="b-1")
    answers = await race(lambda: stub.IngestDetections(requests_of([batch]), metadata=who),
                         n=n)
    assert sum(a.accepted_detections for a in answers) == len(first)
    assert sorted(a.duplicate_batches for a in answers) == [0] + [1] * (n - 1)
    assert await store.count_batches() == 1
    again = await stub.IngestDetections(requests_of([batch]), metadata=who)
    assert (again.duplicate_batches, again.accepted_detections) == (1, 0)
    # The same request_id for other detections: the stream ends INVALID_ARGUMENT.
    await assert_reused(stub.IngestDetections(
        requests_of([batch_request(second, request_id="b-1")]), metadata=who))
    assert await store.count_batches() == 1
    # Another tenant's b-1 is its own key.
    theirs = await stub.IngestDetections(requests_of([batch_request(second,
                                                                    request_id="b-1")]),
                                         metadata=defense(minter, "fabrikam"))
    assert (theirs.duplicate_batches, theirs.accepted_detections) == (0, len(second))
    # A batch whose detections all came too late is still the key's first answer.
    late = await stub.IngestDetections(requests_of([batch_request(first, request_id="b-2")]),
                                       metadata=who)
    assert late.accepted_detections == 0 and late.dropped
    await assert_reused(stub.IngestDetections(
        requests_of([batch_request(third, request_id="b-2")]), metadata=who))
    assert await store.count_batches() == 2
