// Missile warning (token with `defense`): live tracks from StreamTracks coloured by class,
// each converged impact prediction drawn as its 95 % ellipse, the defended assets, and the
// open alerts (WatchAlerts) in a table.
import {
  Cartesian2,
  Cartesian3,
  Cartographic,
  Color,
  ColorMaterialProperty,
  ConstantPositionProperty,
  ConstantProperty,
  Entity,
  PolygonHierarchy,
} from "cesium";
import { timestampDate } from "@bufbuild/protobuf/wkt";

import { allPages, clients } from "../client";
import { byId, el, fillTable, section } from "../dom";
import { ellipseRing, positionSigmaM } from "../ellipse";
import { guarded, isCancel, isDeadline, showError } from "../errors";
import { joinChunks, loadCzmlLayer, saveFile } from "../exports";
import {
  Alert_Severity,
  Alert_State,
  Track_State,
  Track_ThreatClass,
  type Alert,
  type Track,
} from "../gen/skybridge/threat/v1/threat_pb";
import type { Globe } from "../globe";
import { hasScope, type Session } from "../session";
import { state } from "../state";
import { toCartesian } from "./ground";
import { time } from "./contacts";

const CLASS_COLORS: Record<Track_ThreatClass, string> = {
  [Track_ThreatClass.UNSPECIFIED]: "#ffffff",
  [Track_ThreatClass.UNKNOWN]: "#ffe14d",
  [Track_ThreatClass.BALLISTIC]: "#ff3b3b",
  [Track_ThreatClass.HGV]: "#ff4dff",
};

export function defenseSection(session: Session): HTMLElement {
  if (!hasScope(session, "defense")) {
    return section("defense", "Missile warning", el("p", { class: "muted" }, "needs the defense scope"));
  }
  return section("defense", "Missile warning",
    el("p", {}, el("span", { id: "track-count" }, "0"), " live tracks, ",
      el("span", { id: "ellipse-count" }, "0"), " impact ellipses, ",
      el("span", { id: "alert-count" }, "0"), " open alerts ",
      el("span", { id: "defense-status", class: "muted" }, "connecting")),
    el("p", { class: "legend" },
      ...Object.entries({ ballistic: Track_ThreatClass.BALLISTIC, HGV: Track_ThreatClass.HGV,
                          unknown: Track_ThreatClass.UNKNOWN, unclassified: Track_ThreatClass.UNSPECIFIED })
        .flatMap(([label, cls]) => [el("span", { class: "swatch", style: `background:${CLASS_COLORS[cls]}` }),
                                    `${label} `])),
    el("table", { id: "tracks-table", class: "table" }),
    el("p", {},
      el("button", { type: "button", id: "tracks-czml" }, "tracks as CZML onto the globe"), " ",
      el("button", { type: "button", id: "tracks-geojson" }, "tracks GeoJSON"), " ",
      el("button", { type: "button", id: "alerts-geojson" }, "alerts GeoJSON")),
    el("h3", {}, "Alerts"),
    el("table", { id: "alerts-table", class: "table" }));
}

interface Drawn {
  point: Entity;
  ellipse: Entity | null;
}

export function startDefense(globe: Globe, session: Session, signal: AbortSignal): void {
  if (!hasScope(session, "defense")) return;
  const entities = globe.widget.entities;
  const tracks = new Map<string, Track>();
  const drawn = new Map<string, Drawn>();
  const alerts = new Map<string, Alert>();
  const assets: Entity[] = [];
  signal.addEventListener("abort", () => {
    for (const d of drawn.values()) {
      entities.remove(d.point);
      if (d.ellipse) entities.remove(d.ellipse);
    }
    for (const a of assets) entities.remove(a);
  });
  const status = byId("defense-status");
  let looked = false;

  function drawTrack(track: Track): void {
    const color = Color.fromCssColorString(CLASS_COLORS[track.threatClass] ?? "#ffffff");
    const [x, y, z] = track.stateEcef;
    if (x === undefined || y === undefined || z === undefined) return;
    const position = new Cartesian3(x, y, z);
    let d = drawn.get(track.name);
    if (d === undefined) {
      d = { point: entities.add({ name: track.name, position,
        point: { pixelSize: 9, color, outlineColor: Color.BLACK, outlineWidth: 1 },
        label: { text: track.name.replace("tracks/", "T"), font: "11px sans-serif",
                 fillColor: color, pixelOffset: new Cartesian2(10, -10) } }), ellipse: null };
      drawn.set(track.name, d);
    } else {
      d.point.position = new ConstantPositionProperty(position);
      if (d.point.point) d.point.point.color = new ConstantProperty(color);
    }
    const impact = track.impact;
    if (impact?.point && impact.semiMajorM > 0) {
      const ring = ellipseRing({
        latitudeDeg: impact.point.latitudeDeg, longitudeDeg: impact.point.longitudeDeg,
        semiMajorM: impact.semiMajorM, semiMinorM: impact.semiMinorM,
        majorAzimuthDeg: impact.majorAzimuthDeg });
      const hierarchy = new PolygonHierarchy(ring);
      if (d.ellipse === null) {
        d.ellipse = entities.add({ name: `${track.name} impact`,
          position: toCartesian(impact.point, 0),
          polygon: { hierarchy, height: 0, material: color.withAlpha(0.35),
                     outline: true, outlineColor: color },
          // The ellipse can be far smaller than a pixel: the impact point is marked too.
          point: { pixelSize: 8, color: Color.WHITE, outlineColor: color, outlineWidth: 3 },
          label: { text: `${track.name.replace("tracks/", "T")} impact`, font: "11px sans-serif",
                   fillColor: Color.WHITE, pixelOffset: new Cartesian2(10, 10) } });
      } else {
        if (d.ellipse.polygon) {
          d.ellipse.polygon.hierarchy = new ConstantProperty(hierarchy);
          d.ellipse.polygon.material = new ColorMaterialProperty(color.withAlpha(0.35));
        }
        d.ellipse.position = new ConstantPositionProperty(toCartesian(impact.point, 0));
      }
    } else if (d.ellipse !== null) {
      entities.remove(d.ellipse);
      d.ellipse = null;
    }
  }

  function forget(name: string): void {
    const d = drawn.get(name);
    if (d) {
      entities.remove(d.point);
      if (d.ellipse) entities.remove(d.ellipse);
      drawn.delete(name);
    }
    tracks.delete(name);
  }

  function showTracks(): void {
    const ellipses = [...drawn.values()].filter((d) => d.ellipse !== null).length;
    state.trackCount = tracks.size;
    state.ellipseCount = ellipses;
    byId("track-count").textContent = String(tracks.size);
    byId("ellipse-count").textContent = String(ellipses);
    fillTable(byId<HTMLTableElement>("tracks-table"),
      ["track", "state", "class", "conf.", "alt km", "speed m/s", "σ pos m", "impact", "ellipse km", "at"],
      [...tracks.values()].map((t) => {
        const [x = 0, y = 0, z = 0, vx = 0, vy = 0, vz = 0] = t.stateEcef;
        const carto = Cartographic.fromCartesian(new Cartesian3(x, y, z));
        const i = t.impact;
        return [t.name, Track_State[t.state], Track_ThreatClass[t.threatClass], t.classConfidence,
          carto ? carto.height / 1000 : null, Math.hypot(vx, vy, vz), positionSigmaM(t.covariance),
          i?.point ? `${i.point.latitudeDeg.toFixed(2)}, ${i.point.longitudeDeg.toFixed(2)}` : "",
          i?.point ? `${(i.semiMajorM / 1000).toFixed(1)} × ${(i.semiMinorM / 1000).toFixed(1)}` : "",
          i?.time ? time(i.time) : ""];
      }), "no live tracks");
  }

  function showAlerts(): void {
    const open = [...alerts.values()].filter((a) => a.state !== Alert_State.WITHDRAWN);
    state.alertCount = open.length;
    byId("alert-count").textContent = String(open.length);
    fillTable(byId<HTMLTableElement>("alerts-table"),
      ["alert", "track", "asset", "severity", "state", "impact in s", "evaluated"],
      open.map((a) => [a.name, a.track, a.asset, Alert_Severity[a.severity], Alert_State[a.state],
        a.timeToImpact ? Number(a.timeToImpact.seconds) : null,
        a.evaluationTime ? timestampDate(a.evaluationTime).toISOString().slice(11, 19) : ""]),
      "no open alerts");
  }

  /** Turns the camera to the first track shown (once): over its impact point if known. */
  function lookAt(track: Track): void {
    const point = track.impact?.point;
    const [x = 0, y = 0, z = 0] = track.stateEcef;
    const carto = point ? undefined : Cartographic.fromCartesian(new Cartesian3(x, y, z));
    const lat = point?.latitudeDeg ?? (carto ? (carto.latitude * 180) / Math.PI : 0);
    const lon = point?.longitudeDeg ?? (carto ? (carto.longitude * 180) / Math.PI : 0);
    globe.widget.camera.flyTo({ destination: Cartesian3.fromDegrees(lon, lat, 4_000_000), duration: 1.5 });
  }

  async function followTracks(): Promise<void> {
    for await (const step of clients.threat.streamTracks({ includeTentative: false }, { signal })) {
      for (const track of step.tracks) {
        if (track.state === Track_State.DROPPED) {
          forget(track.name);
        } else {
          tracks.set(track.name, track);
          drawTrack(track);
        }
      }
      const first = tracks.values().next();
      if (!looked && !first.done) {
        looked = true;
        lookAt(first.value);
      }
      status.textContent = step.processedTime
        ? `tracker at ${timestampDate(step.processedTime).toISOString().slice(11, 19)}` : "live";
      showTracks();
    }
  }

  async function followAlerts(): Promise<void> {
    for await (const change of clients.threat.watchAlerts({}, { signal })) {
      if (change.alert) alerts.set(change.alert.name, change.alert);
      showAlerts();
    }
  }

  /** A stream that ends or breaks is shown and opened again after a pause. */
  function keep(label: string, follow: () => Promise<void>): void {
    follow().then(() => undefined, (error: unknown) => {
      // A deadline on a long-lived stream is its normal end: open it again quietly.
      if (signal.aborted || isCancel(error) || isDeadline(error)) return;
      showError(label, error);
    }).finally(() => {
      if (!signal.aborted) window.setTimeout(() => keep(label, follow), 5_000);
    });
  }

  byId("tracks-czml").addEventListener("click", () => {
    void guarded("exporting tracks (ExportTracksCzml)", async () => {
      const document = await joinChunks(clients.threat.exportTracksCzml({}, { signal }));
      const layer = await loadCzmlLayer(globe, "tracks", document);
      status.textContent = `tracks as CZML: ${layer.entities} entities`;
    });
  });
  byId("tracks-geojson").addEventListener("click", () => {
    void guarded("exporting tracks (ExportTracksGeoJson)", async () => {
      saveFile(await joinChunks(clients.threat.exportTracksGeoJson({}, { signal })),
               "tracks.geojson", "application/geo+json");
    });
  });
  byId("alerts-geojson").addEventListener("click", () => {
    void guarded("exporting alerts (ExportAlertsGeoJson)", async () => {
      saveFile(await joinChunks(clients.threat.exportAlertsGeoJson({}, { signal })),
               "alerts.geojson", "application/geo+json");
    });
  });
  showTracks();
  showAlerts();
  keep("following tracks (StreamTracks)", followTracks);
  keep("following alerts (WatchAlerts)", followAlerts);
  void guarded("listing defended assets (ListDefendedAssets)", async () => {
    const list = await allPages(async (pageToken) => {
      const page = await clients.threat.listDefendedAssets({ pageSize: 1000, pageToken }, { signal });
      return { items: page.defendedAssets, next: page.nextPageToken };
    }, 10);
    for (const asset of list) {
      const color = Color.fromCssColorString("#00e5ff");
      assets.push(entities.add({ name: asset.displayName, position: toCartesian(asset.location, 0),
        point: { pixelSize: 7, color },
        label: { text: asset.displayName, font: "11px sans-serif", fillColor: color,
                 pixelOffset: new Cartesian2(8, 8) },
        ...(asset.radiusM > 0 ? { ellipse: { semiMajorAxis: asset.radiusM, semiMinorAxis: asset.radiusM,
          height: 0, material: color.withAlpha(0.15), outline: true, outlineColor: color } } : {}) }));
    }
  });
}
