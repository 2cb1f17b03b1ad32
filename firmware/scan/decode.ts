/*
 * scan/decode.ts: streaming base64 and quoted-printable decoders for the MIME
 * walker (scan/mime.ts).
 *
 * Each decoder takes a byte range of a chunk and writes the decoded bytes into
 * a caller's output buffer, carrying only a few bytes of state (an unfinished
 * base64 quantum, an unfinished "=XX" escape) from one call to the next.
 *
 * Base64 has two paths that give the same bytes. The usual body (lines of one
 * width, a multiple of 4, each ending in CRLF, nothing but the alphabet) goes
 * through Node's own decoder (simdutf, several GB/s), after two byte reads per
 * line have found the line ends; the result is accepted only when exactly 3
 * bytes came out for every 4 characters that are not a line end, which is
 * true only when every one of them was in the alphabet (Node skips anything
 * else and stops at "="), and when the range holds no "-" or "_" (which Node
 * would decode as base64url). Anything else (junk, padding, white space,
 * ragged lines, a quantum carried from the previous range) goes through the
 * byte loop: four characters at a time through a 64 K pair table (two loads
 * per quantum, about 750 MB/s), one at a time where it must.
 *
 * Must never: read outside [start, end), write more than maxOutput(len) bytes,
 * throw on hostile input (invalid characters are skipped, as RFC 2045 §6.8
 * tells a decoder to). Called by scan/mime.ts for each encoded part.
 */

const B64 = new Int8Array(256).fill(-1);
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
for (let i = 0; i < 64; i++) B64[ALPHABET.charCodeAt(i)] = i;
/** Two base64 characters (c1 << 8 | c2) → their 12 bits, or -1 when either is not in the alphabet. */
const PAIR = new Int32Array(65536).fill(-1);
for (let x = 0; x < 64; x++)
  for (let y = 0; y < 64; y++) PAIR[(ALPHABET.charCodeAt(x) << 8) | ALPHABET.charCodeAt(y)] = (x << 6) | y;

/** Input bytes decoded by Node's decoder since start (for tests and benchmarks). */
export const nativeStats = { bytes: 0 };

/** Ranges shorter than this are not worth a string for Node's decoder. */
const NATIVE_MIN = 1024;
const CR_ = 0x0d;
const LF_ = 0x0a;

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export class Base64Decoder {
  #acc = 0;
  #n = 0;
  readonly #native: boolean;

  /** native: false keeps to the byte loop (tests compare the two paths). */
  constructor(opts: { native?: boolean } = {}) {
    this.#native = opts.native ?? true;
  }

  /** Upper bound of the output for `len` input bytes. */
  static maxOutput(len: number): number {
    return Math.ceil((len + 3) / 4) * 3;
  }

  /** Decodes src[start, end) into out from offset 0; returns the number of bytes written. */
  decode(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
    if (!this.#native || end - start < NATIVE_MIN) return this.#bytes(src, start, end, out, 0);
    let i = start;
    let o = 0;
    if (this.#n !== 0) {
      // a quantum carried over: the rest of its line byte by byte (a whole line of a width
      // that is a multiple of 4 ends on a quantum boundary)
      const lf = src.indexOf(LF_, start);
      if (lf < 0 || lf >= end) return this.#bytes(src, start, end, out, 0);
      o = this.#bytes(src, start, lf + 1, out, 0);
      i = lf + 1;
      if (this.#n !== 0) return this.#bytes(src, i, end, out, o);
    }
    const r = nativeLines(src, i, end, out, o);
    if (r) {
      i = r.next;
      o += r.written;
    }
    return this.#bytes(src, i, end, out, o);
  }

  /** The byte loop: decodes src[start, end) into out from offset o; returns the new offset. */
  #bytes(src: Uint8Array, start: number, end: number, out: Uint8Array, o: number): number {
    let i = start;
    let acc = this.#acc;
    let n = this.#n;
    while (i < end) {
      if (n === 0) {
        // fast path: whole quanta of alphabet characters
        while (i + 4 <= end) {
          const h = PAIR[(src[i]! << 8) | src[i + 1]!]!;
          const l = PAIR[(src[i + 2]! << 8) | src[i + 3]!]!;
          if ((h | l) < 0) break;
          const v = (h << 12) | l;
          out[o] = v >>> 16;
          out[o + 1] = (v >>> 8) & 255;
          out[o + 2] = v & 255;
          i += 4;
          o += 3;
        }
        if (i >= end) break;
      }
      const c = src[i++]!;
      const v = B64[c]!;
      if (v < 0) {
        if (c === 0x3d) {
          // '=': padding ends a quantum; what it holds so far is flushed. Data
          // after it is decoded too (some clients do), so nothing hides there.
          o += this.#flush(acc, n, out, o);
          acc = 0;
          n = 0;
          continue;
        }
        continue; // line breaks, white space and junk are skipped
      }
      acc = (acc << 6) | v;
      if (++n === 4) {
        out[o] = (acc >>> 16) & 255;
        out[o + 1] = (acc >>> 8) & 255;
        out[o + 2] = acc & 255;
        o += 3;
        acc = 0;
        n = 0;
      }
    }
    this.#acc = acc;
    this.#n = n;
    return o;
  }

  /** At the end of the part: flushes an unpadded final quantum; returns the bytes written. */
  end(out: Uint8Array): number {
    const w = this.#flush(this.#acc, this.#n, out, 0);
    this.#acc = 0;
    this.#n = 0;
    return w;
  }

  #flush(acc: number, n: number, out: Uint8Array, o: number): number {
    if (n === 2) {
      out[o] = (acc >>> 4) & 255;
      return 1;
    }
    if (n === 3) {
      out[o] = (acc >>> 10) & 255;
      out[o + 1] = (acc >>> 2) & 255;
      return 2;
    }
    return 0;
  }
}

/**
 * Node's decoder over the longest run of whole lines from `start`: the text up
 * to the first CRLF (a line begun in the previous range; its length must be a
 * multiple of 4, so no quantum is split), then lines of the width of the
 * second line. Returns where the run ended and the bytes written at out[at],
 * or null when the run is not plain base64 (the caller then decodes it byte
 * by byte, overwriting whatever this wrote).
 */
function nativeLines(src: Uint8Array, start: number, end: number, out: Uint8Array, at: number): { next: number; written: number } | null {
  const first = src.indexOf(LF_, start);
  if (first < 0 || first >= end || first === start || src[first - 1] !== CR_) return null;
  const head = first - 1 - start;
  if (head % 4 !== 0) return null;
  const second = src.indexOf(LF_, first + 1);
  if (second < 0 || second >= end || src[second - 1] !== CR_) return null;
  const width = second - first - 2;
  if (width <= 0 || width % 4 !== 0) return null;
  const step = width + 2;
  let lf = second;
  let lines = 2;
  while (lf + step < end && src[lf + step] === LF_ && src[lf + step - 1] === CR_) {
    lf += step;
    lines++;
  }
  const next = lf + 1;
  const chars = next - start - 2 * lines;
  if (chars < NATIVE_MIN / 2) return null;
  const s = asBuffer(src);
  const run = s.subarray(start, next);
  if (run.indexOf(0x2d) >= 0 || run.indexOf(0x5f) >= 0) return null; // "-" and "_": base64url to Node, junk to MIME
  const written = asBuffer(out).write(s.toString('latin1', start, next), at, 'base64');
  if (written * 4 !== chars * 3) return null;
  nativeStats.bytes += next - start;
  return { next, written };
}

const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[0x41 + i] = 10 + i;
  HEX[0x61 + i] = 10 + i;
}
const EQ = 0x3d;
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const TAB = 0x09;

/**
 * Quoted-printable (RFC 2045 §6.7): "=XX" escapes, "=" at the end of a line is
 * a soft line break; malformed escapes pass through literally (rule (1) of the
 * RFC's robustness note). Trailing white space of a line is kept: scanners
 * lose nothing by seeing it.
 */
export class QuotedPrintableDecoder {
  /** 0: data; 1: after "="; 2: after "=X"; 3: after "=" + CR (soft break). */
  #state = 0;
  #first = 0;

  static maxOutput(len: number): number {
    return len + 3;
  }

  decode(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
    let o = 0;
    let i = start;
    let state = this.#state;
    let first = this.#first;
    while (i < end) {
      if (state === 0) {
        const e = src.indexOf(EQ, i);
        const stop = e < 0 || e >= end ? end : e;
        // copy the literal run
        for (let k = i; k < stop; k++) out[o++] = src[k]!;
        i = stop;
        if (i < end) {
          i++;
          state = 1;
        }
        continue;
      }
      const c = src[i]!;
      if (state === 1) {
        if (HEX[c]! >= 0) {
          first = c;
          state = 2;
          i++;
        } else if (c === CR) {
          state = 3;
          i++;
        } else if (c === LF) {
          state = 0; // soft break with a bare LF
          i++;
        } else if (c === SP || c === TAB) {
          i++; // "=" followed by padding before the line break: still a soft break
        } else {
          out[o++] = EQ;
          state = 0;
        }
      } else if (state === 2) {
        if (HEX[c]! >= 0) {
          out[o++] = (HEX[first]! << 4) | HEX[c]!;
          i++;
        } else {
          out[o++] = EQ;
          out[o++] = first;
        }
        state = 0;
      } else {
        // state 3: "=" CR, expect LF
        if (c === LF) i++;
        state = 0;
      }
    }
    this.#state = state;
    this.#first = first;
    return o;
  }

  end(out: Uint8Array): number {
    let o = 0;
    if (this.#state === 1) out[o++] = EQ;
    else if (this.#state === 2) {
      out[o++] = EQ;
      out[o++] = this.#first;
    }
    this.#state = 0;
    return o;
  }
}
