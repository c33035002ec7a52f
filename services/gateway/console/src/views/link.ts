// A terminal's link: estimate a path (EstimatePath) or request one (RequestLink), then draw
// the current 15 s slot's path as polylines (terminal -> serving satellite -> laser hops ->
// downlinking satellite -> gateway -> fibre to the Azure region), re-drawn when the slot
// changes, with its round trip.
import {
  Cartesian3,
  Color,
  EllipsoidGeodesic,
  Cartographic,
  Material,
  PolylineCollection,
} from "cesium";
import { timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";

import { clients } from "../client";
import { byId, el, field, fillTable, input, section, select } from "../dom";
import { guarded, showError } from "../errors";
import { joinChunks, loadCzmlLayer } from "../exports";
import type { PathSlot } from "../gen/skybridge/linkbroker/v1/linkbroker_pb";
import type { Globe } from "../globe";
import { hasScope, type Session } from "../session";
import { state } from "../state";
import type { Constellation } from "./constellation";
import { toCartesian, type Ground } from "./ground";

const SLOT_MS = 15_000;

export function linkSection(session: Session): HTMLElement {
  const canRead = hasScope(session, "links.read", "links.write", "linkbroker.operator");
  const canWrite = hasScope(session, "links.write", "linkbroker.operator");
  const form = el("form", { id: "link-form", class: "form" },
    field("mode", select("mode", [["estimate", "estimate a path (EstimatePath)"],
      ...(canWrite ? [["request", "request a link (RequestLink)"] as [string, string]] : [])])),
    field("latitude °", input("latitude", "47.64", { type: "number", step: "any", min: "-90", max: "90" })),
    field("longitude °", input("longitude", "-122.13", { type: "number", step: "any", min: "-180", max: "180" })),
    field("altitude m", input("altitude", "0", { type: "number", step: "any" })),
    field("region", select("region", [["regions/westus2", "regions/westus2"]])),
    field("window min", input("minutes", "10", { type: "number", min: "1", max: "1440" })),
    field("customer", input("customer", "", { placeholder: "customers/… (request)" })),
    field("terminal", input("terminal", "", { placeholder: "customers/…/terminals/… (request)" })),
    field("Mbit/s", input("bandwidth", "50", { type: "number", step: "any", min: "0" })),
    el("button", { type: "submit", id: "link-submit" }, "plan"));
  return section("link", "Terminal link",
    canRead ? form : el("p", { class: "muted" }, "needs links.read"),
    el("p", {}, "slot ", el("span", { id: "link-slot" }, "–"), ", round trip ",
      el("span", { id: "link-round-trip" }, "–"), " ms (median ",
      el("span", { id: "link-median" }, "–"), " ms, routed ",
      el("span", { id: "link-routed" }, "–"), ")"),
    el("p", { id: "link-status", class: "muted" }, ""),
    canRead ? el("button", { type: "button", id: "link-czml", disabled: "" },
                 "load the estimated path as CZML (ExportPathCzml)") : null,
    el("table", { id: "link-slots", class: "table" }));
}

interface Plan {
  terminal: Cartesian3;
  region: string;
  slots: PathSlot[];
}

export function startLink(globe: Globe, session: Session, constellation: Constellation | null,
                          ground: Ground, signal: AbortSignal): void {
  if (!hasScope(session, "links.read", "links.write", "linkbroker.operator")) return;
  const lines = globe.widget.scene.primitives.add(new PolylineCollection()) as PolylineCollection;
  signal.addEventListener("abort", () => globe.widget.scene.primitives.remove(lines));
  const form = byId<HTMLFormElement>("link-form");
  const status = byId("link-status");
  let plan: Plan | null = null;
  let lastEstimate: { location: { latitudeDeg: number; longitudeDeg: number; altitudeM: number };
                      region: string; window: { startTime: Timestamp; endTime: Timestamp } } | null = null;
  const czmlButton = byId<HTMLButtonElement>("link-czml");
  czmlButton.addEventListener("click", () => {
    if (lastEstimate === null) return;
    const request = lastEstimate;
    void guarded("exporting the path (ExportPathCzml)", async () => {
      const document = await joinChunks(clients.linkbroker.exportPathCzml(
        { source: { case: "estimate", value: request } }, { signal }));
      const layer = await loadCzmlLayer(globe, "path", document);
      status.textContent = `path as CZML: ${layer.entities} entities`;
    });
  });
  let drawnSlot = -1;
  let lastDraw = 0;

  void ground.loaded.then(() => {
    const regions = [...ground.regions.keys()].sort();
    if (!regions.length) return;
    const chooser = form.elements.namedItem("region") as HTMLSelectElement;
    chooser.replaceChildren(...regions.map((name) => el("option", { value: name },
      `${name} (${ground.regions.get(name)?.displayName ?? ""})`)));
    chooser.value = regions.includes("regions/westus2") ? "regions/westus2" : regions[0]!;
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void guarded("planning the link", () => submit(new FormData(form)));
  });

  async function submit(data: FormData): Promise<void> {
    const latitudeDeg = Number(data.get("latitude"));
    const longitudeDeg = Number(data.get("longitude"));
    const altitudeM = Number(data.get("altitude"));
    const minutes = Number(data.get("minutes"));
    const region = String(data.get("region") ?? "");
    if (![latitudeDeg, longitudeDeg, altitudeM, minutes].every(Number.isFinite)) {
      throw new Error("latitude, longitude, altitude and the window must be numbers");
    }
    const now = Date.now();
    const window = { startTime: timestampFromMs(now), endTime: timestampFromMs(now + minutes * 60_000) };
    state.linkWindow = { start: new Date(now).toISOString(),
                         end: new Date(now + minutes * 60_000).toISOString() };
    const location = { latitudeDeg, longitudeDeg, altitudeM };
    status.textContent = "planning…";
    let slots: PathSlot[];
    if (data.get("mode") === "request") {
      const answer = await clients.linkbroker.requestLink({
        customer: String(data.get("customer") ?? ""),
        terminal: String(data.get("terminal") ?? ""),
        region, bandwidthMbps: Number(data.get("bandwidth")), window,
        requestId: crypto.randomUUID(), includeSlots: true,
      }, { signal });
      slots = answer.link?.slots ?? [];
      status.textContent = `requested ${answer.link?.name ?? ""}: median round trip ` +
        `${answer.link?.medianRoundTripMs.toFixed(1) ?? "–"} ms, ${answer.link?.handovers ?? 0} handovers`;
      setText("link-median", answer.link?.medianRoundTripMs.toFixed(1));
      setText("link-routed", `${slots.filter((s) => s.routed).length}/${slots.length} slots`);
    } else {
      const answer = await clients.linkbroker.estimatePath({ location, region, window }, { signal });
      lastEstimate = { location, region, window };
      czmlButton.disabled = false;
      slots = answer.slots;
      status.textContent = `estimated ${slots.length} slots`;
      setText("link-median", answer.medianRoundTripMs.toFixed(1));
      setText("link-routed", `${(answer.routedFraction * 100).toFixed(0)} %`);
    }
    fillTable(byId<HTMLTableElement>("link-slots"),
      ["slot", "routed", "serving", "hops", "gateway", "lasers", "RTT ms", "elev °"],
      slots.map((s) => [s.startTime ? timestampDate(s.startTime).toISOString().slice(11, 19) : "",
        s.routed ? "yes" : "no", s.servingSatellite, s.hops.join(" → "), s.gateway,
        s.laserLinks, s.roundTripMs, s.elevationDeg]));
    plan = { terminal: toCartesian(location), region, slots };
    drawnSlot = -1;
    draw(Date.now());
    globe.widget.camera.flyTo({ destination: Cartesian3.fromDegrees(longitudeDeg, latitudeDeg - 20, 7_000_000),
                                orientation: { heading: 0, pitch: -Math.PI / 3, roll: 0 }, duration: 1.5 });
  }

  function currentSlot(nowMs: number): number {
    if (plan === null) return -1;
    return plan.slots.findIndex((s) => {
      const start = s.startTime ? timestampDate(s.startTime).getTime() : NaN;
      return start <= nowMs && nowMs < start + SLOT_MS;
    });
  }

  function draw(nowMs: number): void {
    if (plan === null) return;
    lastDraw = nowMs;
    const index = currentSlot(nowMs);
    const slot = plan.slots[index];
    lines.removeAll();
    if (slot === undefined || !slot.routed) {
      setText("link-slot", slot === undefined ? "outside the window" : "not routed");
      setText("link-round-trip", "–");
      return;
    }
    const satellites = slot.hops.map((n) => constellation?.positionOf(n));
    const gateway = ground.gateways.get(slot.gateway);
    const region = ground.regions.get(plan.region.startsWith("regions/") ? plan.region
                                      : `regions/${plan.region}`);
    const chain: (Cartesian3 | undefined)[] = [plan.terminal, ...satellites,
      gateway ? toCartesian(gateway.location) : undefined];
    let segments = 0;
    for (let i = 0; i + 1 < chain.length; i++) {
      const a = chain[i];
      const b = chain[i + 1];
      if (a === undefined || b === undefined) continue;
      const color = i === 0 ? Color.LIME : i === chain.length - 2 ? Color.ORANGE : Color.RED;
      lines.add({ positions: [a, b], width: 2, material: Material.fromType("Color", { color }) });
      segments++;
    }
    if (gateway && region) {
      lines.add({ positions: fibre(gateway.location, region.location), width: 2,
                  material: Material.fromType("Color", { color: Color.DEEPSKYBLUE }) });
      segments++;
    }
    if (satellites.some((p) => p === undefined)) {
      status.textContent = "satellite positions unavailable (needs orbit.read): path drawn in part";
    }
    if (index !== drawnSlot) {
      drawnSlot = index;
      state.linkRedraws++;
    }
    state.linkPathDrawn = segments > 0 && satellites[0] !== undefined;
    state.linkSlot = slot.startTime ? timestampDate(slot.startTime).toISOString() : null;
    state.linkRoundTripMs = slot.roundTripMs;
    byId("link").dataset["pathDrawn"] = String(state.linkPathDrawn);
    setText("link-slot", state.linkSlot?.slice(11, 19) ?? "–");
    setText("link-round-trip", slot.roundTripMs.toFixed(1));
  }

  // The satellites move: the path follows them each second, and changes with each slot.
  const remove = globe.widget.scene.preRender.addEventListener(() => {
    const now = Date.now();
    if (plan === null) return;
    if (now - lastDraw >= 1000 || currentSlot(now) !== drawnSlot) {
      try {
        draw(now);
      } catch (error) {
        plan = null;
        showError("drawing the link", error);
      }
    }
  });
  signal.addEventListener("abort", () => remove());
}

/** The fibre leg as a ground-hugging curve (10 km up, so the globe does not hide it). */
function fibre(from: { latitudeDeg: number; longitudeDeg: number } | undefined,
               to: { latitudeDeg: number; longitudeDeg: number } | undefined): Cartesian3[] {
  const a = Cartographic.fromDegrees(from?.longitudeDeg ?? 0, from?.latitudeDeg ?? 0);
  const b = Cartographic.fromDegrees(to?.longitudeDeg ?? 0, to?.latitudeDeg ?? 0);
  if (Math.abs(a.latitude - b.latitude) + Math.abs(a.longitude - b.longitude) < 1e-9) {
    return [Cartesian3.fromRadians(a.longitude, a.latitude, 10_000),
            Cartesian3.fromRadians(b.longitude, b.latitude, 10_000)];
  }
  const geodesic = new EllipsoidGeodesic(a, b);
  const out: Cartesian3[] = [];
  for (let i = 0; i <= 32; i++) {
    const c = geodesic.interpolateUsingFraction(i / 32);
    out.push(Cartesian3.fromRadians(c.longitude, c.latitude, 10_000));
  }
  return out;
}

function setText(id: string, text: string | undefined): void {
  byId(id).textContent = text ?? "–";
}

