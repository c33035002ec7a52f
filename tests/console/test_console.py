"""The console in a real browser (Debian's Chromium, WebGL on SwiftShader) against the
whole running suite: the globe renders, the satellites drawn are the catalog, an estimated
link draws its path and re-draws it each slot, and a defense sign-in shows a replayed
scenario's tracks with their impact ellipses and the alert for a defended asset. Every test
fails on any error the browser reports (see conftest.py) and leaves a screenshot in
var/artifacts/console/."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import linkbroker_pb2, linkbroker_pb2_grpc
from skybridge.orbit.v1 import orbit_pb2, orbit_pb2_grpc
from skybridge.provisioning.v1 import provisioning_pb2, provisioning_pb2_grpc, resources_pb2

from tests.console.conftest import ARTIFACTS
from tests.console.imaging import image_stats
from tests.console.replay import replay

TERMINAL = (47.64, -122.13)  # Redmond, WA
REGION = "regions/westus2"


def _stamp(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _instant(iso: str) -> datetime:
    """A JavaScript ISO time (`...Z`) as an aware datetime."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _record(name: str, value) -> None:
    """Keeps a figure the run saw (var/artifacts/console/figures.json)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "figures.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[name] = value
    path.write_text(json.dumps(figures, indent=2) + "\n")


async def _members(group: str, suite) -> list[str]:
    async with grpc.aio.insecure_channel(suite.target("orbit")) as channel:
        page = await orbit_pb2_grpc.OrbitServiceStub(channel).ListSatellites(
            orbit_pb2.ListSatellitesRequest(group=group, page_size=1000),
            metadata=suite.bearer("orbit.read"), timeout=60)
    return [s.name for s in page.satellites]


async def test_the_globe_renders_the_bundled_imagery(watched, browser):
    await watched.sign_in("orbit.read")
    await watched.wait_for("s.globeReady && s.tilesLoaded")
    png = await watched.page.locator("#globe canvas").first.screenshot()
    stats = await image_stats(browser, png)
    # The camera looks at the Earth's centre: the middle of the canvas is lit imagery (a
    # blank or black canvas has neither brightness there nor texture anywhere).
    assert stats["centreMean"] > 60, stats
    assert stats["std"] > 20, stats
    assert stats["colours"] > 200, stats


async def test_the_satellites_drawn_are_the_whole_catalog_and_they_move(watched, suite):
    async with grpc.aio.insecure_channel(suite.target("orbit")) as channel:
        page = await orbit_pb2_grpc.OrbitServiceStub(channel).ListSatellites(
            orbit_pb2.ListSatellitesRequest(page_size=1), metadata=suite.bearer("orbit.read"),
            timeout=60)
    assert page.total_size > 4000  # the seeded constellation and sensors
    await watched.sign_in("orbit.read")
    await watched.wait_for("s.firstMotionMs !== null && s.catalogTotal > 0")
    state = await watched.state()
    assert state["satelliteCount"] == page.total_size
    assert state["catalogTotal"] == page.total_size
    assert await watched.page.inner_text("#satellite-count") == str(page.total_size)
    assert state["propagatedSteps"] >= 2

    # The seeded sensor group's ephemeris as CZML (ExportEphemeris), loaded by Cesium: one
    # entity per satellite, each with a position now.
    page = watched.page
    await page.wait_for_selector("#ephemeris-form select[name=group] option[value='groups/tracking-sensors']",
                                 state="attached")
    await page.select_option("#ephemeris-form select[name=group]", "groups/tracking-sensors")
    await page.fill("#ephemeris-form input[name=minutes]", "30")
    await page.click("#ephemeris-export")
    await watched.wait_for("s.czml.ephemeris !== undefined")
    layer = (await watched.state())["czml"]["ephemeris"]
    members = await _members("groups/tracking-sensors", suite)
    assert sorted(layer["ids"]) == sorted(members)
    assert layer["positioned"] == len(members)
    _record("firstMotionMs", state["firstMotionMs"])
    _record("satellites", state["satelliteCount"])
    _record("timings", state["timings"])


async def test_an_estimated_link_draws_its_path_and_redraws_it_each_slot(watched, suite):
    await watched.sign_in("orbit.read", "links.read")
    await watched.wait_for("s.firstMotionMs !== null && s.regionCount > 0 && s.gatewayCount > 0")
    page = watched.page
    await page.fill("#link-form input[name=latitude]", str(TERMINAL[0]))
    await page.fill("#link-form input[name=longitude]", str(TERMINAL[1]))
    await page.select_option("#link-form select[name=region]", REGION)
    await page.fill("#link-form input[name=minutes]", "3")
    await page.click("#link-submit")
    await watched.wait_for("s.linkPathDrawn && s.linkSlot !== null")
    first = await watched.state()
    assert first["linkRoundTripMs"] > 0
    assert await page.get_attribute("#link", "data-path-drawn") == "true"

    # The slot drawn has the round trip the link broker computes for it over gRPC, asked
    # for the same window.
    slot = _instant(first["linkSlot"])
    async with grpc.aio.insecure_channel(suite.target("linkbroker")) as channel:
        answer = await linkbroker_pb2_grpc.LinkBrokerServiceStub(channel).EstimatePath(
            linkbroker_pb2.EstimatePathRequest(
                location=common_pb2.GeodeticPoint(latitude_deg=TERMINAL[0],
                                                  longitude_deg=TERMINAL[1]),
                region=REGION,
                window=common_pb2.TimeWindow(
                    start_time=_stamp(_instant(first["linkWindow"]["start"])),
                    end_time=_stamp(_instant(first["linkWindow"]["end"])))),
            metadata=suite.bearer("links.read"), timeout=60)
    by_start = {s.start_time.ToDatetime(tzinfo=UTC): s for s in answer.slots}
    assert by_start[slot].routed
    assert abs(by_start[slot].round_trip_ms - first["linkRoundTripMs"]) < 1e-6
    assert await page.inner_text("#link-round-trip") == f"{first['linkRoundTripMs']:.1f}"

    # The same estimate as CZML (ExportPathCzml), loaded by Cesium.
    await page.click("#link-czml")
    await watched.wait_for("s.czml.path !== undefined")
    assert (await watched.state())["czml"]["path"]["entities"] > 0

    # The next 15 s slot comes due: the path is drawn again for it.
    await watched.wait_for(f"s.linkRedraws > {first['linkRedraws']} && s.linkSlot !== "
                           f"{json.dumps(first['linkSlot'])} && s.linkPathDrawn")
    later = await watched.state()
    gap = _instant(later["linkSlot"]) - slot
    assert gap.total_seconds() % 15 == 0 and gap.total_seconds() > 0


async def test_a_defense_sign_in_shows_the_replayed_tracks_with_their_ellipses(watched, suite):
    async with grpc.aio.insecure_channel(suite.target("orbit")) as orbit, \
            grpc.aio.insecure_channel(suite.target("threat")) as threat:
        replayed = await replay(orbit, threat, read_metadata=suite.bearer("orbit.read"),
                                write_metadata=suite.bearer("orbit.write"),
                                defense_metadata=suite.bearer("defense"))
    # What the service holds after the replay (the precondition of what the page shows).
    assert replayed.accepted > 100
    assert replayed.tracks and replayed.with_impact, replayed
    await watched.sign_in("defense")
    await watched.wait_for(f"s.trackCount === {len(replayed.tracks)} && "
                           f"s.ellipseCount === {len(replayed.with_impact)} && s.alertCount > 0")
    rows = await watched.page.locator("#tracks-table tbody tr td:first-child").all_inner_texts()
    assert set(rows) == set(replayed.tracks)
    classes = await watched.page.locator("#tracks-table tbody tr td:nth-child(3)").all_inner_texts()
    assert "BALLISTIC" in classes
    alerts = await watched.page.locator("#alerts-table tbody tr td:nth-child(3)").all_inner_texts()
    assert replayed.asset in alerts

    # The tracks as CZML (ExportTracksCzml), loaded by Cesium: a track, its impact point
    # and its impact ellipse per track with a prediction.
    await watched.page.click("#tracks-czml")
    await watched.wait_for("s.czml.tracks !== undefined")
    ids = set((await watched.state())["czml"]["tracks"]["ids"])
    assert replayed.tracks <= ids
    for name in replayed.with_impact:
        assert {f"{name}/impact", f"{name}/impactEllipse"} <= ids

    # GeoJSON of the tracks and alerts, offered as files.
    async with watched.page.expect_download() as tracks_file:
        await watched.page.click("#tracks-geojson")
    saved = Path(await (await tracks_file.value).path())
    collection = json.loads(await asyncio.to_thread(saved.read_text))
    assert collection["type"] == "FeatureCollection"
    assert {f["properties"]["track"] for f in collection["features"]} >= replayed.tracks


async def test_a_pasted_token_signs_in_and_the_cosell_tables_list_the_tenants_customers(
        watched, suite):
    async with grpc.aio.insecure_channel(suite.target("provisioning")) as channel:
        created = await provisioning_pb2_grpc.ProvisioningServiceStub(channel).CreateCustomer(
            provisioning_pb2.CreateCustomerRequest(
                customer=resources_pb2.Customer(
                    display_name="Fabrikam Maritime", sector=resources_pb2.SECTOR_PRIVATE,
                    country="NO", contact_email="noc@fabrikam.example"),
                request_id="console-customer-1"),
            metadata=suite.bearer("provisioning.write", tenant="fabrikam"), timeout=60)
    token = suite.minter.mint("console-test", ["provisioning.read"], "fabrikam")
    page = watched.page
    await page.goto(suite.url)
    # The sign-in page has asked the gateway whether it mints tokens (its one call).
    await page.wait_for_selector("#signin[data-dev-tokens]")
    await page.fill("#token-form textarea[name=token]", token)
    async with page.expect_navigation():
        await page.click("#token-submit")
    await watched.wait_for("s.scopes.length > 0 && s.customerRows > 0")
    assert (await watched.state())["scopes"] == ["provisioning.read"]
    rows = await page.locator("#customers-table tbody tr td:first-child").all_inner_texts()
    assert rows == [created.customer.name]


async def _active_terminal(suite, tenant: str) -> tuple[str, str, str]:
    """A customer of `tenant` with an active subscription and an ACTIVE terminal at
    TERMINAL (customer, subscription and terminal names)."""
    meta = suite.bearer("provisioning.write", tenant=tenant)
    async with grpc.aio.insecure_channel(suite.target("provisioning")) as channel:
        stub = provisioning_pb2_grpc.ProvisioningServiceStub(channel)
        customer = (await stub.CreateCustomer(provisioning_pb2.CreateCustomerRequest(
            customer=resources_pb2.Customer(display_name="Contoso Shipping",
                                            sector=resources_pb2.SECTOR_PRIVATE, country="US",
                                            contact_email="noc@contoso.example"),
            request_id=f"console-{tenant}-customer"), metadata=meta, timeout=60)).customer
        sub = (await stub.CreateSubscription(provisioning_pb2.CreateSubscriptionRequest(
            parent=customer.name, subscription=resources_pb2.Subscription(
                plan="plans/enterprise-100", quantity=2),
            request_id=f"console-{tenant}-sub"), metadata=meta, timeout=60)).subscription
        sub = (await stub.ActivateSubscription(provisioning_pb2.ActivateSubscriptionRequest(
            name=sub.name, plan="plans/enterprise-100", quantity=2,
            request_id=f"console-{tenant}-activate"), metadata=meta, timeout=60)).subscription
        terminal = (await stub.CreateTerminal(provisioning_pb2.CreateTerminalRequest(
            parent=customer.name, terminal=resources_pb2.Terminal(
                serial_number="UT-CONSOLE-1", subscription=sub.name,
                location=common_pb2.GeodeticPoint(latitude_deg=TERMINAL[0],
                                                  longitude_deg=TERMINAL[1])),
            request_id=f"console-{tenant}-terminal"), metadata=meta, timeout=60)).terminal
        for i, step in enumerate((provisioning_pb2.ProvisionTerminalRequest,
                                  provisioning_pb2.ActivateTerminalRequest)):
            method = getattr(stub, step.DESCRIPTOR.name.removesuffix("Request"))
            terminal = (await method(step(name=terminal.name, request_id=f"console-{tenant}-t{i}"),
                                     metadata=meta, timeout=60)).terminal
    return customer.name, sub.name, terminal.name


async def test_a_requested_link_is_reserved_drawn_and_listed_with_the_customers_terminal(
        watched, suite):
    customer, subscription, terminal = await _active_terminal(suite, "northwind")
    await watched.sign_in("orbit.read", "links.write", "provisioning.read", tenant="northwind")
    await watched.wait_for("s.firstMotionMs !== null && s.regionCount > 0 && s.customerRows > 0")
    page = watched.page
    # The co-sell tables show the customer's subscription and terminal.
    assert terminal in await page.locator("#terminals-table tbody td:first-child").all_inner_texts()
    assert subscription in await page.locator(
        "#subscriptions-table tbody td:first-child").all_inner_texts()

    await page.select_option("#link-form select[name=mode]", "request")
    await page.fill("#link-form input[name=latitude]", str(TERMINAL[0]))
    await page.fill("#link-form input[name=longitude]", str(TERMINAL[1]))
    await page.select_option("#link-form select[name=region]", REGION)
    await page.fill("#link-form input[name=minutes]", "5")
    await page.fill("#link-form input[name=customer]", customer)
    await page.fill("#link-form input[name=terminal]", terminal)
    await page.fill("#link-form input[name=bandwidth]", "20")
    await page.click("#link-submit")
    await watched.wait_for("s.linkPathDrawn && s.linkSlot !== null")
    status = await page.inner_text("#link-status")
    assert status.startswith("requested links/"), status
    link = status.split()[1].rstrip(":")

    # The reservation is the link broker's: it lists the link for the tenant, ACTIVE.
    async with grpc.aio.insecure_channel(suite.target("linkbroker")) as channel:
        links = await linkbroker_pb2_grpc.LinkBrokerServiceStub(channel).ListLinks(
            linkbroker_pb2.ListLinksRequest(customer=customer),
            metadata=suite.bearer("links.read", tenant="northwind"), timeout=60)
    listed = {item.name: item for item in links.links}
    assert link in listed
    assert listed[link].terminal == terminal
    assert listed[link].state == linkbroker_pb2.Link.STATE_ACTIVE
