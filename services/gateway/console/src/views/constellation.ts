// The constellation moving in real time: the catalog paged with ListSatellites, positions
// from Propagate (whole catalog, ITRF km, (T, 3, N) layout, 10 s steps), interpolated each
// frame and drawn as one PointPrimitiveCollection.
import { Cartesian3, Color, PointPrimitiveCollection, type PointPrimitive } from "cesium";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";

import { allPages, clients } from "../client";
import { byId, el, field, input, section, select } from "../dom";
import { joinChunks, loadCzmlLayer, saveFile } from "../exports";
import { Ephemeris, float64s } from "../ephemeris";
import { guarded, isCancel, showError } from "../errors";
import {
  ExportEphemerisRequest_Format,
  Frame,
  StateLayout,
} from "../gen/skybridge/orbit/v1/orbit_pb";
import type { Globe } from "../globe";
import { mark, state } from "../state";

/** Seconds between samples, samples per window, and how early the next window is asked.
 * The first window holds just two samples around now (240 kB for 10,000 satellites), so
 * the points move as soon as it lands; the next, full windows follow in the background. */
const STEP_S = 10;
const FIRST_WINDOW_STEPS = 2;
const WINDOW_STEPS = 31;
const REFILL_LEAD_S = 90;
/** Instants per stream chunk: small, so the first chunk (and so motion) arrives at once. */
const CHUNK_STEPS = 2;

export function constellationSection(): HTMLElement {
  return section("constellation", "Constellation",
    el("p", {},
      el("span", { id: "satellite-count" }, "0"), " satellites drawn; catalog: ",
      el("span", { id: "catalog-total" }, "…"), "; ",
      el("span", { id: "constellation-status" }, "loading")),
    el("form", { id: "ephemeris-form", class: "form" },
      field("group", select("group", [])),
      field("minutes", input("minutes", "60", { type: "number", min: "1", max: "1440" })),
      field("step s", input("step", "60", { type: "number", min: "1", max: "3600" })),
      field("format", select("format", [["czml", "CZML onto the globe"], ["oem", "CCSDS OEM file"],
                                        ["czml-file", "CZML file"]])),
      el("button", { type: "submit", id: "ephemeris-export" }, "export the group's ephemeris"),
      el("span", { id: "ephemeris-status", class: "muted" }, "")));
}

/** The ephemeris export form: ListGroups fills the choice; ExportEphemeris answers. */
export function startEphemerisExport(globe: Globe, signal: AbortSignal): void {
  const form = byId<HTMLFormElement>("ephemeris-form");
  const status = byId("ephemeris-status");
  void guarded("listing groups (ListGroups)", async () => {
    const groups = await allPages(async (pageToken) => {
      const page = await clients.orbit.listGroups({ pageSize: 1000, pageToken }, { signal });
      return { items: page.groups, next: page.nextPageToken };
    }, 10);
    (form.elements.namedItem("group") as HTMLSelectElement).replaceChildren(
      ...groups.map((g) => el("option", { value: g.name },
        `${g.displayName || g.name} (${g.satelliteCount})`)));
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    void guarded("exporting the ephemeris (ExportEphemeris)", async () => {
      const format = String(data.get("format"));
      const now = Date.now();
      status.textContent = "exporting…";
      let name = "ephemeris";
      let media = "application/json";
      const document = await joinChunks((async function* () {
        for await (const chunk of clients.orbit.exportEphemeris({
          selection: { group: String(data.get("group") ?? "") },
          window: { startTime: timestampFromMs(now),
                    endTime: timestampFromMs(now + Number(data.get("minutes")) * 60_000) },
          step: { seconds: BigInt(Math.max(1, Math.round(Number(data.get("step"))))), nanos: 0 },
          format: format === "oem" ? ExportEphemerisRequest_Format.OEM : ExportEphemerisRequest_Format.CZML,
        }, { signal })) {
          if (chunk.fileName) name = chunk.fileName;
          if (chunk.mediaType) media = chunk.mediaType;
          yield chunk;
        }
      })());
      if (format === "czml") {
        const layer = await loadCzmlLayer(globe, "ephemeris", document);
        status.textContent = `${layer.entities} CZML entities loaded`;
      } else {
        saveFile(document, name, media);
        status.textContent = `${name}: ${document.byteLength} bytes`;
      }
    });
  });
}

/** Live satellite positions, for other views (a link's path) to draw against. */
export interface Constellation {
  /** The satellite's current position (ITRF metres), or undefined when not drawn. */
  positionOf(catalogNumber: number): Cartesian3 | undefined;
}

/**
 * The catalog's positions, fetched window after window. Started before the globe is built,
 * so the first Propagate call is on the wire while Cesium initialises.
 */
export class ConstellationFeed {
  ephemeris: Ephemeris | null = null;
  /** Called when the columns (the satellites) change: the view rebuilds its points. */
  onColumns: (ephemeris: Ephemeris) => void = () => undefined;
  private fetching = false;

  constructor(private readonly signal: AbortSignal) {}

  /** Lists the catalog (ListSatellites, every page) to show its size. */
  listCatalog(): void {
    void guarded("listing the catalog (ListSatellites)", async () => {
      let total = 0;
      const satellites = await allPages(async (pageToken) => {
        const page = await clients.orbit.listSatellites({ pageSize: 1000, pageToken },
                                                        { signal: this.signal });
        total = page.totalSize;
        byId("catalog-total").textContent = `${total} (listed ${page.satellites.length}…)`;
        return { items: page.satellites, next: page.nextPageToken };
      });
      state.catalogTotal = total;
      mark("catalogListed");
      byId("catalog-total").textContent = `${total} satellites (${satellites.length} listed)`;
    });
  }

  /** Asks for the next window when the samples held run out within REFILL_LEAD_S. */
  refill(nowS: number): void {
    if (this.fetching || this.signal.aborted) return;
    const last = this.ephemeris?.lastTime ?? -Infinity;
    if (last - nowS > REFILL_LEAD_S) return;
    // A new window starts at the last sample held (or just before now at first).
    const start = Number.isFinite(last) && last > nowS - STEP_S ? last : Math.floor(nowS) - 1;
    const status = byId("constellation-status");
    this.fetchWindow(start, this.ephemeris === null ? FIRST_WINDOW_STEPS : WINDOW_STEPS).catch(
      (error: unknown) => {
        if (isCancel(error) || this.signal.aborted) return;
        showError("propagating the catalog (Propagate)", error);
        status.textContent = "stopped: see the error above";
        // Try again in a while rather than hammering the service.
        this.fetching = true;
        window.setTimeout(() => { this.fetching = false; }, 15_000);
      });
  }

  /** One Propagate stream from `startS` (UNIX seconds), `count` instants. */
  private async fetchWindow(startS: number, count: number): Promise<void> {
    this.fetching = true;
    try {
      const stream = clients.orbit.propagate({
        selection: { all: true },
        times: { case: "grid", value: {
          startTime: timestampFromMs(startS * 1000),
          step: { seconds: BigInt(STEP_S), nanos: 0 },
          count,
        } },
        frame: Frame.ITRF,
        layout: StateLayout.TIME_COMPONENT_SATELLITE,
        chunkSteps: CHUNK_STEPS,
      }, { signal: this.signal });
      let columns: Ephemeris | null = null;
      for await (const chunk of stream) {
        if (columns === null) {
          if (!chunk.catalogNumbers.length) throw new Error("Propagate's first chunk has no header");
          columns = sameColumns(this.ephemeris, chunk.catalogNumbers) ? this.ephemeris!
            : new Ephemeris([...chunk.catalogNumbers]);
          if (columns !== this.ephemeris) {
            this.ephemeris = columns;
            this.onColumns(columns);
          }
        }
        mark("firstChunk");
        columns.addChunk(float64s(chunk.times), float64s(chunk.positions));
        state.propagatedSteps += chunk.times?.shape[0] ?? 0;
      }
      byId("constellation-status").textContent = "moving in real time";
    } finally {
      this.fetching = false;
    }
  }
}

export function startConstellation(globe: Globe, feed: ConstellationFeed,
                                   signal: AbortSignal): Constellation {
  const points = globe.widget.scene.primitives.add(
    new PointPrimitiveCollection()) as PointPrimitiveCollection;
  signal.addEventListener("abort", () => globe.widget.scene.primitives.remove(points));
  let drawn: PointPrimitive[] = [];
  let current = new Float64Array(0);
  let previous = new Float64Array(0);
  const scratch = new Cartesian3();

  function rebuildPoints(n: number): void {
    points.removeAll();
    drawn = [];
    const color = Color.fromCssColorString("#9fe3ff");
    for (let i = 0; i < n; i++) {
      drawn.push(points.add({ position: Cartesian3.ZERO, pixelSize: 2, color, show: false }));
    }
    current = new Float64Array(3 * n);
    previous = new Float64Array(3 * n).fill(NaN);
    state.satelliteCount = n;
    byId("satellite-count").textContent = String(n);
  }
  feed.onColumns = (ephemeris) => rebuildPoints(ephemeris.size);
  if (feed.ephemeris !== null) rebuildPoints(feed.ephemeris.size);

  const removeListener = globe.widget.scene.preRender.addEventListener(() => {
    const nowS = Date.now() / 1000;
    feed.refill(nowS);
    const ephemeris = feed.ephemeris;
    if (ephemeris === null || !ephemeris.positionsAt(nowS, current)) return;
    const n = ephemeris.size;
    let moved = false;
    for (let i = 0; i < n; i++) {
      const x = current[i]!;
      const y = current[n + i]!;
      const z = current[2 * n + i]!;
      const point = drawn[i]!;
      if (Number.isNaN(x)) {
        point.show = false;
        continue;
      }
      if (x !== previous[i] || y !== previous[n + i] || z !== previous[2 * n + i]) {
        if (!Number.isNaN(previous[i]!)) moved = true;
        point.position = Cartesian3.fromElements(x, y, z, scratch);
        point.show = true;
      }
    }
    [previous, current] = [current, previous];
    if (moved && state.firstMotionMs === null) {
      state.firstMotionMs = Math.round(performance.now());
      byId("constellation").dataset["firstMotionMs"] = String(state.firstMotionMs);
    }
    ephemeris.forgetBefore(nowS - 2 * STEP_S);
  });
  signal.addEventListener("abort", () => removeListener());

  return {
    positionOf(catalogNumber: number): Cartesian3 | undefined {
      const ephemeris = feed.ephemeris;
      const i = ephemeris?.index.get(catalogNumber);
      if (i === undefined || ephemeris === null) return undefined;
      const n = ephemeris.size;
      // `previous` holds the positions drawn in the last frame (swapped above).
      const x = previous[i]!;
      if (Number.isNaN(x)) return undefined;
      return new Cartesian3(x, previous[n + i]!, previous[2 * n + i]!);
    },
  };
}

function sameColumns(ephemeris: Ephemeris | null, numbers: number[]): boolean {
  if (ephemeris === null || ephemeris.size !== numbers.length) return false;
  return numbers.every((n, i) => ephemeris.catalogNumbers[i] === n);
}
