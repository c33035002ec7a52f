// The suite's exports in the console: a streamed document (orbit's ExportEphemeris, the link
// broker's ExportPathCzml, threat's ExportTracksCzml / ExportTracksGeoJson /
// ExportAlertsGeoJson answer consecutive `data` chunks) joined and either loaded into the
// globe as a CzmlDataSource (one layer per key, replaced when loaded again) or saved as a
// file. The document is held whole in memory: the console asks only for bounded selections.
import { CzmlDataSource, JulianDate } from "cesium";

import { el } from "./dom";
import type { Globe } from "./globe";
import { state } from "./state";

/** At most this many bytes of one document (a larger one is refused, not loaded). */
export const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024;

export interface CzmlLayer {
  /** Entities Cesium made from the document's packets. */
  entities: number;
  /** Of them, those with a position at the globe's current time. */
  positioned: number;
  /** Their ids (the first 200). */
  ids: string[];
}

/** Joins the `data` of a stream of chunks. */
export async function joinChunks(chunks: AsyncIterable<{ data: Uint8Array }>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    size += chunk.data.byteLength;
    if (size > MAX_DOCUMENT_BYTES) {
      throw new Error(`the document is larger than ${MAX_DOCUMENT_BYTES} bytes: narrow the export`);
    }
    parts.push(chunk.data);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

const layers = new Map<string, CzmlDataSource>();

/** Loads a CZML document (bytes of a JSON array of packets) as the layer `key`. */
export async function loadCzmlLayer(globe: Globe, key: string, document: Uint8Array): Promise<CzmlLayer> {
  const packets: unknown = JSON.parse(new TextDecoder().decode(document));
  if (!Array.isArray(packets)) throw new Error("the CZML document is not a JSON array of packets");
  const source = await CzmlDataSource.load(packets);
  const previous = layers.get(key);
  if (previous) await globe.widget.dataSources.remove(previous, true);
  await globe.widget.dataSources.add(source);
  layers.set(key, source);
  const now = JulianDate.now();
  const entities = source.entities.values;
  const layer: CzmlLayer = {
    entities: entities.length,
    positioned: entities.filter((e) => e.position?.getValue(now) !== undefined).length,
    ids: entities.slice(0, 200).map((e) => e.id),
  };
  state.czml[key] = layer;
  return layer;
}

/** Offers `document` as a file download (an object URL, revoked after the click). */
export function saveFile(document: Uint8Array, fileName: string, mediaType: string): void {
  const url = URL.createObjectURL(new Blob([document as BlobPart], { type: mediaType }));
  const link = el("a", { href: url, download: fileName, hidden: "" });
  window.document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
  state.downloads.push({ fileName, mediaType, bytes: document.byteLength });
}
