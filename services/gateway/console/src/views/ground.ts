// The ground segment on the globe: the link broker's gateways and Azure regions
// (ListGateways, ListRegions) and the ground stations (GroundStationService), with labels.
import {
  Cartesian2,
  Cartesian3,
  Color,
  LabelCollection,
  LabelStyle,
  NearFarScalar,
  PointPrimitiveCollection,
  VerticalOrigin,
} from "cesium";

import { allPages, clients } from "../client";
import { byId, el, section } from "../dom";
import { guarded } from "../errors";
import type { GeodeticPoint } from "../gen/skybridge/common/v1/common_pb";
import type { Gateway, Region } from "../gen/skybridge/linkbroker/v1/linkbroker_pb";
import type { Globe } from "../globe";
import { hasScope, type Session } from "../session";
import { state } from "../state";

export function groundSection(): HTMLElement {
  return section("ground", "Ground segment",
    el("p", {}, el("span", { id: "gateway-count" }, "0"), " gateways, ",
      el("span", { id: "region-count" }, "0"), " Azure regions, ",
      el("span", { id: "ground-station-count" }, "0"), " ground stations ",
      el("span", { id: "ground-status", class: "muted" }, "")),
    el("p", { class: "legend" },
      el("span", { class: "swatch gateway" }), "gateway ",
      el("span", { class: "swatch region" }), "Azure region ",
      el("span", { class: "swatch station" }), "ground station"));
}

/** Locations by resource name, for drawing paths. */
export interface Ground {
  gateways: Map<string, Gateway>;
  regions: Map<string, Region>;
  /** Resolves once the lists are loaded (or failed: the error is shown). */
  loaded: Promise<void>;
}

/** A geodetic point (degrees, metres) as ECEF metres; `altitudeM` overrides its height. */
export function toCartesian(point: Pick<GeodeticPoint, "latitudeDeg" | "longitudeDeg" | "altitudeM">
                            | undefined, altitudeM?: number): Cartesian3 {
  return Cartesian3.fromDegrees(point?.longitudeDeg ?? 0, point?.latitudeDeg ?? 0,
                                altitudeM ?? point?.altitudeM ?? 0);
}

export function startGround(globe: Globe, session: Session, signal: AbortSignal): Ground {
  const points = globe.widget.scene.primitives.add(
    new PointPrimitiveCollection()) as PointPrimitiveCollection;
  const labels = globe.widget.scene.primitives.add(new LabelCollection()) as LabelCollection;
  signal.addEventListener("abort", () => {
    globe.widget.scene.primitives.remove(points);
    globe.widget.scene.primitives.remove(labels);
  });
  const ground: Ground = { gateways: new Map(), regions: new Map(), loaded: Promise.resolve() };

  function mark(point: GeodeticPoint | undefined, color: Color, size: number, text: string): void {
    const position = toCartesian(point, 0);
    points.add({ position, color, pixelSize: size, outlineColor: Color.BLACK, outlineWidth: 1 });
    labels.add({
      position, text, font: "11px sans-serif", fillColor: color, outlineColor: Color.BLACK,
      outlineWidth: 2, style: LabelStyle.FILL_AND_OUTLINE, verticalOrigin: VerticalOrigin.BOTTOM,
      pixelOffset: new Cartesian2(0, -6),
      translucencyByDistance: new NearFarScalar(5e6, 1.0, 2.5e7, 0.0),
    });
  }

  const tasks: Promise<void>[] = [];
  if (hasScope(session, "links.read", "links.write", "linkbroker.operator")) {
    tasks.push(guarded("listing Azure regions (ListRegions)", async () => {
      const answer = await clients.linkbroker.listRegions({}, { signal });
      for (const region of answer.regions) {
        ground.regions.set(region.name, region);
        mark(region.location, Color.fromCssColorString("#4aa3ff"), 7, region.displayName);
      }
      state.regionCount = answer.regions.length;
      byId("region-count").textContent = String(answer.regions.length);
    }));
    tasks.push(guarded("listing gateways (ListGateways)", async () => {
      const gateways = await allPages(async (pageToken) => {
        const page = await clients.linkbroker.listGateways({ pageSize: 1000, pageToken }, { signal });
        return { items: page.gateways, next: page.nextPageToken };
      });
      for (const gateway of gateways) {
        ground.gateways.set(gateway.name, gateway);
        mark(gateway.location, Color.fromCssColorString("#ffb347"), 6,
             gateway.displayName || gateway.name);
      }
      state.gatewayCount = gateways.length;
      byId("gateway-count").textContent = String(gateways.length);
    }));
  }
  if (hasScope(session, "contacts.read", "contacts.write", "linkbroker.operator")) {
    tasks.push(guarded("listing ground stations (ListGroundStations)", async () => {
      const stations = await allPages(async (pageToken) => {
        const page = await clients.contacts.listGroundStations({ pageSize: 1000, pageToken },
                                                               { signal });
        return { items: page.groundStations, next: page.nextPageToken };
      });
      for (const station of stations) {
        mark(station.location, Color.fromCssColorString("#7dff9a"), 6,
             station.displayName || station.name);
      }
      state.groundStationCount = stations.length;
      byId("ground-station-count").textContent = String(stations.length);
    }));
  }
  if (!tasks.length) {
    byId("ground-status").textContent = "(needs links.read or contacts.read)";
  }
  ground.loaded = Promise.all(tasks).then(() => undefined);
  return ground;
}
