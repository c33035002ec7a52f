// What the console shows, as numbers a test (or a person at the devtools) can read:
// `window.skybridgeConsole`. Each view writes its own fields; nothing here is read back.

export interface ConsoleState {
  /** Satellites drawn on the globe (one point each). */
  satelliteCount: number;
  /** The catalog's size as ListSatellites reported it (`total_size`). */
  catalogTotal: number;
  /** ms from navigation start to the first frame in which the satellites moved. */
  firstMotionMs: number | null;
  /** Propagate samples received (time steps). */
  propagatedSteps: number;
  /** Gateways, Azure regions and ground stations drawn. */
  gatewayCount: number;
  regionCount: number;
  groundStationCount: number;
  /** Live threat tracks drawn. */
  trackCount: number;
  /** Predicted impact ellipses drawn. */
  ellipseCount: number;
  /** Open alerts listed. */
  alertCount: number;
  /** True once a link's path (a routed slot) is drawn as polylines. */
  linkPathDrawn: boolean;
  /** The slot whose path is drawn (ISO time) and its round trip. */
  linkSlot: string | null;
  linkRoundTripMs: number | null;
  /** The window (ISO times) the last path was planned for. */
  linkWindow: { start: string; end: string } | null;
  /** Times the drawn path was re-drawn for a new slot. */
  linkRedraws: number;
  /** Rows in the contacts and co-sell tables. */
  contactRows: number;
  customerRows: number;
  /** Messages shown in the error banner, oldest first. */
  errors: string[];
  /** The scopes of the signed-in token (empty when signed out). */
  scopes: string[];
  /** CZML layers loaded onto the globe, by key (`ephemeris`, `path`, `tracks`). */
  czml: Record<string, { entities: number; positioned: number; ids: string[] }>;
  /** Files the console offered for download (exports). */
  downloads: { fileName: string; mediaType: string; bytes: number }[];
  /** Milestones, ms from navigation start: the script ran, the first Propagate chunk arrived,
   * the last catalog page arrived. */
  timings: Record<string, number>;
  /** True once the globe has rendered a frame. */
  globeReady: boolean;
  /** True while every imagery tile the view needs is loaded (false while loading). */
  tilesLoaded: boolean;
}

export const state: ConsoleState = {
  satelliteCount: 0,
  catalogTotal: 0,
  firstMotionMs: null,
  propagatedSteps: 0,
  gatewayCount: 0,
  regionCount: 0,
  groundStationCount: 0,
  trackCount: 0,
  ellipseCount: 0,
  alertCount: 0,
  linkPathDrawn: false,
  linkSlot: null,
  linkRoundTripMs: null,
  linkWindow: null,
  linkRedraws: 0,
  contactRows: 0,
  customerRows: 0,
  errors: [],
  scopes: [],
  globeReady: false,
  tilesLoaded: false,
  czml: {},
  downloads: [],
  timings: {},
};

/** Records a milestone (ms since navigation start) once. */
export function mark(name: string): void {
  state.timings[name] ??= Math.round(performance.now());
}

declare global {
  interface Window {
    skybridgeConsole: ConsoleState;
  }
}

window.skybridgeConsole = state;
