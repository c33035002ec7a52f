// Satellite positions from orbit's Propagate stream, interpolated in time.
//
// Propagate answers in chunks of T instants; the console asks for FRAME_ITRF (Earth-fixed,
// km, the frame Cesium's globe is drawn in: ITRF and Cesium's fixed frame differ by polar
// motion only, metres) and STATE_LAYOUT_TIME_COMPONENT_SATELLITE, so `positions` is a
// (T, 3, N) row-major float64 array: the x of every satellite, then every y, then every z.
// Times are UNIX seconds (UTC). Between two samples a position is interpolated linearly;
// at the 10 s step the console asks for, the chord of a LEO orbit (7.6 km/s, radius
// 6,900 km) lies at most 76^2 / (8 * 6,900) = 0.1 km inside the arc, far below a pixel.
import type { DoubleArray } from "./gen/skybridge/common/v1/common_pb";

const LITTLE_ENDIAN = new Uint8Array(new Float64Array([1]).buffer)[7] === 0x3f;

/** The values of a DoubleArray as float64 (`le_bytes` or `packed`), checked against its shape. */
export function float64s(array: DoubleArray | undefined): Float64Array {
  if (array === undefined) return new Float64Array(0);
  const expected = array.shape.reduce((a, b) => a * b, 1);
  let values: Float64Array;
  if (array.values.case === "leBytes") {
    const bytes = array.values.value;
    if (bytes.byteLength % 8 !== 0) {
      throw new Error(`a DoubleArray's le_bytes is ${bytes.byteLength} bytes, not a multiple of 8`);
    }
    if (LITTLE_ENDIAN) {
      // A Float64Array view needs an 8-byte aligned offset; copy when the parser's is not.
      values = bytes.byteOffset % 8 === 0
        ? new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8)
        : new Float64Array(bytes.slice().buffer);
    } else {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      values = new Float64Array(bytes.byteLength / 8);
      for (let i = 0; i < values.length; i++) values[i] = view.getFloat64(i * 8, true);
    }
  } else if (array.values.case === "packed") {
    values = Float64Array.from(array.values.value.values);
  } else {
    values = new Float64Array(0);
  }
  if (array.shape.length && values.length !== expected) {
    throw new Error(`a DoubleArray holds ${values.length} values for shape [${array.shape}]`);
  }
  return values;
}

interface Sample {
  /** UNIX seconds. */
  t: number;
  /** ITRF metres, component-major: x[0..N), y[0..N), z[0..N). */
  xyz: Float64Array;
}

/** Time-ordered position samples of one set of satellites (the columns of a stream). */
export class Ephemeris {
  readonly catalogNumbers: number[];
  readonly index: Map<number, number>;
  private samples: Sample[] = [];

  constructor(catalogNumbers: number[]) {
    this.catalogNumbers = catalogNumbers;
    this.index = new Map(catalogNumbers.map((n, i) => [n, i]));
  }

  get size(): number {
    return this.catalogNumbers.length;
  }

  /** Seconds of the last sample (or -Infinity). */
  get lastTime(): number {
    const last = this.samples[this.samples.length - 1];
    return last === undefined ? -Infinity : last.t;
  }

  get sampleCount(): number {
    return this.samples.length;
  }

  /**
   * Adds one Propagate chunk: `times` (T) UNIX seconds, `positions` (T, 3, N) km.
   * Samples at or before the last one already held are skipped (windows overlap by one).
   */
  addChunk(times: Float64Array, positionsKm: Float64Array): void {
    const n = this.size;
    if (positionsKm.length !== times.length * 3 * n) {
      throw new Error(`a Propagate chunk holds ${positionsKm.length} values, not ` +
                      `${times.length} x 3 x ${n}`);
    }
    for (let k = 0; k < times.length; k++) {
      const t = times[k]!;
      if (t <= this.lastTime) continue;
      const xyz = new Float64Array(3 * n);
      const slab = positionsKm.subarray(k * 3 * n, (k + 1) * 3 * n);
      for (let i = 0; i < xyz.length; i++) xyz[i] = slab[i]! * 1000;
      this.samples.push({ t, xyz });
    }
  }

  /** Drops samples no longer needed to interpolate at `t` or later. */
  forgetBefore(t: number): void {
    let keep = 0;
    while (keep + 1 < this.samples.length && this.samples[keep + 1]!.t <= t) keep++;
    if (keep > 0) this.samples.splice(0, keep);
  }

  /**
   * Writes the positions at `t` (UNIX seconds) into `out` (component-major metres, 3N);
   * false when `t` lies outside the samples held. NaN (a failed propagation) stays NaN.
   */
  positionsAt(t: number, out: Float64Array): boolean {
    const s = this.samples;
    if (s.length < 2 || t < s[0]!.t || t > s[s.length - 1]!.t) return false;
    let hi = 1;
    while (s[hi]!.t < t) hi++;
    const a = s[hi - 1]!;
    const b = s[hi]!;
    const f = (t - a.t) / (b.t - a.t);
    const ax = a.xyz;
    const bx = b.xyz;
    for (let i = 0; i < out.length; i++) out[i] = ax[i]! + (bx[i]! - ax[i]!) * f;
    return true;
  }
}
