/*
 * scan/signatures/compile.ts: compiles a signature set into an immutable
 * database and scans streams against it chunk by chunk.
 *
 * Algorithm. Every signature is parsed (hex.ts) into fixed parts separated by
 * gaps. Each part is indexed by one window of W fully fixed bytes (its anchor),
 * the window whose blocks are rarest in ordinary mail (rarity.ts). Anchors are
 * found with Wu–Manber: a shift table over blocks of B bytes tells how far the
 * window may jump; where the shift is 0 the anchors whose last block hashes
 * there are compared, and each part using a matching anchor is verified byte
 * by byte with its masks. Two engines at most:
 *  - long: parts with a fixed run of >= 8 bytes; B = 3, blocks hashed to a
 *    table of 2^12..2^18 slots (about 8 per block of the anchors),
 *    W = the shortest such run, at most 16 (a jump of up to W-2 bytes);
 *  - short: parts whose longest fixed run is 2..7 bytes; B = 2, a direct 2^16
 *    table, W = the shortest run (slow if that is 2: every byte is looked at).
 * A range of 256 bytes or more is cut in four quarters whose shift loops run
 * interleaved in one loop (independent table look-ups overlap their memory
 * latency: about 3x faster here than one loop). Before a bucket is searched, a bitmap of
 * (first bytes of the window, last block) pairs of all anchors lets most
 * windows go (text hits the last block of some anchor at 1 position in 4
 * when the signatures are text too).
 * Signatures of one part are decided on the spot. Parts of a signature with
 * gaps are collected per scanned range, sorted by position and fed to a small
 * chain state per part (the earliest end for an open gap `*`/`{n-}`, the
 * merged intervals of allowed next starts for a bounded gap). Intervals that
 * can no longer be reached are let go; a chain keeps at most MAX_INTERVALS
 * and a scanner MAX_LIVE of them, the oldest dropped beyond that: a limit that
 * only hostile input reaches, and where it may cost a gapped match. The
 * first part of a signature whose next gap is open is recorded on the spot
 * (only its earliest end counts); other parts are collected, at most
 * MAX_EVENTS per range, beyond which they are fed in batches whose order
 * across batches is lost (hostile input again: it may cost a gapped match,
 * never invent one).
 *
 * Chunk boundaries: parts are at most MAX_PART (128) bytes long (hex.ts cuts
 * longer ones), so a scanner keeps the last maxLen-1 bytes it saw. Each chunk is
 * scanned on its own for parts lying wholly inside it, and the junction (that
 * tail followed by the chunk's first maxLen-1 bytes, copied into a buffer of the
 * scanner) is scanned for the parts that straddle the boundary and end in the
 * chunk. So a part is reported exactly once, when its last byte arrives, whatever
 * the chunking; large chunks are scanned in views of at most 64 KiB.
 *
 * A scanner owns: the tail and junction buffers (< 256 bytes each), its chain
 * state, and a scratch for collected part occurrences (2 KiB, grown only by
 * input full of partial matches, up to MAX_EVENTS * 8 bytes).
 *
 * Limits: small chunks cost more (each adds a junction scan of up to 2*127
 * bytes; ranges under 256 bytes are not interleaved): with 1 000 signatures
 * 1 KiB chunks ran at ~60 % of the speed of 64 KiB ones here; signatures whose fixed runs are all short
 * (2-3 bytes) make the short engine look at nearly every byte; the chain state
 * of a scanner grows with the number of partially matched signatures (bounded
 * as above), never with the data.
 *
 * Must never: copy, concatenate or keep a chunk, convert data to strings,
 * allocate in proportion to a chunk, or block the event loop for long while
 * compiling (it works in slices of ~SLICE_MS and yields with setImmediate).
 * A database never changes once built: reloading compiles a new one, and
 * scanners of the old one go on working. Called by the scan pipeline.
 */
import { parseHexSignature, SignatureSyntaxError, UnsupportedSignature, longestRun, type Pattern } from './hex.ts';
import { counts, rarestWindow } from './rarity.ts';
import { HashIndex } from './hashes.ts';
import type { BodyScanner, HashKind, SignatureDb, SignatureSet } from './types.ts';

export const SLICE_MS = 4;
export const MAX_INTERVALS = 4096;
export const MAX_LIVE = 1 << 16;
/** Part occurrences of gapped signatures collected per scanned range before they are fed (8 bytes each). */
export const MAX_EVENTS = 1 << 18;
const LONG_MIN = 8;
const LONG_MAX_W = 16;
/** The long engine's table: 2^12..2^18 slots, about 8 per block of the anchors (smaller tables stay in cache). */
const HBITS_MIN = 12;
const HBITS_MAX = 18;
const GOLD = 0x9e3779b1 | 0;
const PIECE = 64 * 1024;
/** Event keys: position * PMUL + part id. */
const PMUL = 1 << 22;
const MAX_PARTS_TOTAL = PMUL - 1;

/** Part kinds. */
const K_ALONE = 0; // a one-part signature found anywhere: a match
const K_ALONE_AT = 1; // a one-part signature with an offset
const K_FIRST = 2;
const K_MID = 3;
const K_LAST = 4;

type Engine = {
  W: number;
  B: 2 | 3;
  /** Right shift of the block hash (long engine). */
  hshift: number;
  shift: Uint8Array;
  /** Table slot -> first index in list of the anchors whose last block is there, or -1. */
  head: Int32Array;
  /** Anchor ids, each bucket ended by -1. */
  list: Int32Array;
  /** W bytes per anchor. */
  anchors: Uint8Array;
  /** Parts per anchor: partList[partStart[a] .. partStart[a+1]). */
  partStart: Int32Array;
  partList: Int32Array;
  /**
   * A bit per (first bytes of the window, last block) pair of the anchors: most
   * windows whose last block is some anchor's (common in text) are let go
   * without looking at the bucket.
   */
  pre: Uint8Array;
  /** Offsets of the 3rd and 4th byte the pair key takes from the window (W may be 2 or 3). */
  p2: number;
  p3: number;
};

const PBITS = 20;
const PSHIFT = 32 - PBITS;
const GOLD2 = 0x85ebca6b | 0;

function preKey(b: Uint8Array, w: number, h: number, p2: number, p3: number): number {
  return Math.imul((b[w]! | (b[w + 1]! << 8) | (b[w + p2]! << 16) | (b[w + p3]! << 24)) ^ Math.imul(h, GOLD), GOLD2) >>> PSHIFT;
}

type Tables = {
  names: string[];
  // per part
  len: Int32Array;
  anchorOff: Int32Array;
  /** Bytes and masks of all parts, packed: part p is at off[p] .. off[p]+len[p]. */
  vals: Uint8Array;
  masks: Uint8Array;
  off: Int32Array;
  sig: Int32Array;
  kind: Uint8Array;
  gapMin: Float64Array; // gap before this part
  gapMax: Float64Array;
  // per signature (variant)
  startLo: Float64Array;
  startHi: Float64Array;
  maxLen: number;
  engines: Engine[];
};

const yieldNow = () => new Promise<void>((r) => setImmediate(r));

function hash3(b: Uint8Array, end: number, hshift: number): number {
  return Math.imul((b[end - 2]! << 16) | (b[end - 1]! << 8) | b[end]!, GOLD) >>> hshift;
}
function hash2(b: Uint8Array, end: number): number {
  return (b[end - 1]! << 8) | b[end]!;
}

type Anchored = { part: number; bytes: Uint8Array };

/** A growable byte array (parts are packed as they are parsed, so no object per part outlives its signature). */
class Bytes {
  a = new Uint8Array(1 << 16);
  n = 0;
  push(src: Uint8Array): number {
    if (this.n + src.length > this.a.length) {
      const b = new Uint8Array(Math.max(this.a.length * 2, this.n + src.length));
      b.set(this.a.subarray(0, this.n));
      this.a = b;
    }
    this.a.set(src, this.n);
    this.n += src.length;
    return this.n - src.length;
  }
}

async function buildEngine(W: number, B: 2 | 3, items: Anchored[], pause: () => Promise<void>): Promise<Engine> {
  let bits = HBITS_MIN;
  while (bits < HBITS_MAX && 1 << bits < items.length * (W - B + 1) * 8) bits++;
  const hshift = 32 - bits;
  const size = B === 3 ? 1 << bits : 1 << 16;
  const hash = B === 3 ? (b: Uint8Array, end: number) => hash3(b, end, hshift) : hash2;
  const ids = new Map<string, number>();
  const anchorBytes: Uint8Array[] = [];
  const partsOf: number[][] = [];
  for (const it of items) {
    const key = Buffer.from(it.bytes.buffer, it.bytes.byteOffset, it.bytes.length).toString('latin1');
    let a = ids.get(key);
    if (a === undefined) {
      a = anchorBytes.length;
      ids.set(key, a);
      anchorBytes.push(it.bytes);
      partsOf.push([]);
    }
    partsOf[a]!.push(it.part);
    if ((partsOf.length & 255) === 0) await pause();
  }
  const shift = new Uint8Array(size).fill(W - B + 1);
  const count = new Int32Array(size);
  const anchors = new Uint8Array(anchorBytes.length * W);
  for (let a = 0; a < anchorBytes.length; a++) {
    const bytes = anchorBytes[a]!;
    anchors.set(bytes, a * W);
    for (let end = B - 1; end < W; end++) {
      const h = hash(bytes, end);
      if (shift[h]! > W - 1 - end) shift[h] = W - 1 - end;
    }
    count[hash(bytes, W - 1)]!++;
    if ((a & 1023) === 0) await pause();
  }
  await pause();
  const head = new Int32Array(size).fill(-1);
  let n = 0;
  for (let h = 0; h < size; h++) {
    if (count[h]! > 0) {
      head[h] = n;
      n += count[h]! + 1;
    }
  }
  await pause();
  const list = new Int32Array(n).fill(-1);
  const fill = new Int32Array(size);
  anchorBytes.forEach((bytes, a) => {
    const h = hash(bytes, W - 1);
    list[head[h]! + fill[h]!++] = a;
  });
  const p2 = Math.min(2, W - 1);
  const p3 = Math.min(3, W - 1);
  const pre = new Uint8Array(1 << (PBITS - 3));
  for (const bytes of anchorBytes) {
    const k = preKey(bytes, 0, hash(bytes, W - 1), p2, p3);
    pre[k >>> 3]! |= 1 << (k & 7);
  }
  const partStart = new Int32Array(anchorBytes.length + 1);
  const partList = new Int32Array(items.length);
  let k = 0;
  partsOf.forEach((ps, a) => {
    partStart[a] = k;
    for (const p of ps) partList[k++] = p;
  });
  partStart[anchorBytes.length] = k;
  return { W, B, hshift, shift, head, list, anchors, partStart, partList, pre, p2, p3 };
}

/** The bytes a part (vals/masks[from..to)) is found by: the rarest w-byte window inside its fixed runs. */
function chooseAnchor(vals: Uint8Array, masks: Uint8Array, from: number, to: number, w: number, B: 2 | 3): number {
  let best = -1;
  let bestScore = Infinity;
  let runStart = -1;
  for (let j = from; j <= to; j++) {
    const fixed = j < to && masks[j] === 0xff;
    if (fixed && runStart < 0) runStart = j;
    if (!fixed && runStart >= 0) {
      if (j - runStart >= w) {
        const r = rarestWindow(vals, runStart, j, w, B);
        if (r.score < bestScore) {
          bestScore = r.score;
          best = r.at;
        }
      }
      runStart = -1;
    }
  }
  return best;
}

class Chain {
  first = -1;
  lo: number[] = [];
  hi: number[] = [];
  head = 0;

  /** Intervals kept. */
  get live(): number {
    return this.lo.length - this.head;
  }

  /**
   * Records that the part ended at `end`, so the next part may start in
   * end+min..end+max. Intervals ending before `floor` can no longer be
   * reached and are let go; when `full` (this chain or the scanner at its
   * limit) the oldest is dropped to make room.
   */
  add(end: number, min: number, max: number, floor: number, full: boolean): void {
    if (max === Infinity) {
      if (this.first < 0 || end < this.first) this.first = end;
      return;
    }
    const lo = end + min;
    const hi = end + max;
    while (this.head < this.lo.length && this.hi[this.head]! < floor) this.head++;
    const n = this.lo.length;
    if (n > this.head && lo <= this.hi[n - 1]! + 1) {
      if (hi > this.hi[n - 1]!) this.hi[n - 1] = hi;
      return;
    }
    if (n > this.head && (full || n - this.head >= MAX_INTERVALS)) this.head++;
    if (this.head > 1024 && this.head * 2 > n) {
      this.lo.splice(0, this.head);
      this.hi.splice(0, this.head);
      this.head = 0;
    }
    this.lo.push(lo);
    this.hi.push(hi);
  }

  /** Whether the next part may start at s (queries come in ascending s). */
  accepts(s: number, min: number, max: number): boolean {
    if (max === Infinity) return this.first >= 0 && s >= this.first + min;
    while (this.head < this.lo.length && this.hi[this.head]! < s) this.head++;
    return this.head < this.lo.length && this.lo[this.head]! <= s;
  }
}

class Scanner implements BodyScanner {
  readonly #t: Tables;
  /** Stream offset of the next byte. */
  #pos = 0;
  readonly #tail: Buffer;
  #tailLen = 0;
  readonly #junc: Buffer;
  #match: string | null = null;
  #chains = new Map<number, Chain>();
  /** Intervals kept by all chains (at most MAX_LIVE). */
  #live = 0;
  #ev = new Float64Array(256);
  #evN = 0;
  // the range being scanned: buffer index -> stream offset is base + index;
  // a part at s counts when s < sMax and s + len > eMin (junction) and it lies in lo..hi
  #base = 0;
  #evBase = 0;
  #sMax = 0;
  #eMin = 0;

  constructor(t: Tables) {
    this.#t = t;
    const T = Math.max(1, t.maxLen - 1);
    this.#tail = Buffer.alloc(T);
    this.#junc = Buffer.alloc(2 * T);
  }

  push(chunk: Buffer, start = 0, end = chunk.length): string | null {
    if (!Buffer.isBuffer(chunk)) throw new TypeError('push: a Buffer is needed');
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end > chunk.length || start > end) {
      throw new RangeError(`push: bad range ${start}..${end} of a ${chunk.length}-byte chunk`);
    }
    if (this.#match !== null || this.#t.engines.length === 0) {
      this.#pos += end - start;
      return this.#match;
    }
    for (let lo = start; lo < end && this.#match === null; lo += PIECE) this.#range(chunk, lo, Math.min(end, lo + PIECE));
    return this.#match;
  }

  end(): string | null {
    return this.#match;
  }

  /** Intervals kept for signatures with bounded gaps (for tests of the limits). */
  get pending(): number {
    return this.#live;
  }

  /** Room for collected part occurrences (for tests of the limits). */
  get scratch(): number {
    return this.#ev.length;
  }

  reset(): void {
    this.#pos = 0;
    this.#tailLen = 0;
    this.#match = null;
    this.#chains.clear();
    this.#live = 0;
    this.#evN = 0;
  }

  #range(buf: Buffer, lo: number, hi: number): void {
    const t = this.#t;
    const n = hi - lo;
    const T = this.#tail.length;
    const tl = this.#tailLen;
    this.#evN = 0;
    this.#evBase = this.#pos - tl;
    const engines = t.engines;
    let found = false;
    if (tl > 0) {
      const take = Math.min(n, T);
      const junc = this.#junc;
      this.#tail.copy(junc, 0, 0, tl);
      buf.copy(junc, tl, lo, lo + take);
      this.#base = this.#pos - tl;
      this.#sMax = tl;
      this.#eMin = tl;
      for (let k = 0; k < engines.length && !found; k++) found = this.#scan(engines[k]!, junc, 0, tl + take);
    }
    this.#base = this.#pos - lo;
    this.#sMax = Infinity;
    this.#eMin = -Infinity;
    for (let k = 0; k < engines.length && !found; k++) found = this.#scan(engines[k]!, buf, lo, hi);
    if (!found && this.#evN > 0) this.#events();
    // the new tail: the last T bytes seen
    if (n >= T) {
      buf.copy(this.#tail, 0, hi - T, hi);
      this.#tailLen = T;
    } else if (tl > 0) {
      const all = tl + n; // the junction holds tail + the whole chunk
      const keep = Math.min(T, all);
      this.#junc.copy(this.#tail, 0, all - keep, all);
      this.#tailLen = keep;
    } else {
      buf.copy(this.#tail, 0, lo, hi);
      this.#tailLen = n;
    }
    this.#pos += n;
  }

  /**
   * Runs one engine over buf[lo..hi); true when a signature matched. Large
   * ranges are cut in four quarters whose shift loops are interleaved in one
   * loop: their table look-ups are independent, so the CPU overlaps their
   * memory latency (about 3x faster here than one loop). Candidates then come
   * out of order, which is fine: parts of gapped signatures are sorted later.
   */
  #scan(e: Engine, buf: Uint8Array, lo: number, hi: number): boolean {
    const W = e.W;
    const sh = e.shift;
    const q = (hi - lo) >> 2;
    let a = lo + W - 1;
    let ea = hi;
    if (q >= 64) {
      ea = lo + q;
      let b = ea;
      const eb = lo + 2 * q;
      let c = eb;
      const ec = lo + 3 * q;
      let d = ec;
      if (e.B === 3) {
        // the pair filter of #bucket, inlined here: text stops at 1 window in 4
        const hs = e.hshift;
        const pre = e.pre;
        const p2 = e.p2;
        const p3 = e.p3;
        while (a < ea && b < eb && c < ec && d < hi) {
          const ha = Math.imul((buf[a - 2]! << 16) | (buf[a - 1]! << 8) | buf[a]!, GOLD) >>> hs;
          const hb = Math.imul((buf[b - 2]! << 16) | (buf[b - 1]! << 8) | buf[b]!, GOLD) >>> hs;
          const hc = Math.imul((buf[c - 2]! << 16) | (buf[c - 1]! << 8) | buf[c]!, GOLD) >>> hs;
          const hd = Math.imul((buf[d - 2]! << 16) | (buf[d - 1]! << 8) | buf[d]!, GOLD) >>> hs;
          const sa = sh[ha]!;
          const sb = sh[hb]!;
          const sc = sh[hc]!;
          const sd = sh[hd]!;
          if (sa !== 0) a += sa;
          else {
            const w = ++a - W;
            const k = Math.imul((buf[w]! | (buf[w + 1]! << 8) | (buf[w + p2]! << 16) | (buf[w + p3]! << 24)) ^ Math.imul(ha, GOLD), GOLD2) >>> PSHIFT;
            if ((pre[k >>> 3]! & (1 << (k & 7))) !== 0 && this.#bucket(e, ha, buf, w, lo, hi)) return true;
          }
          if (sb !== 0) b += sb;
          else {
            const w = ++b - W;
            const k = Math.imul((buf[w]! | (buf[w + 1]! << 8) | (buf[w + p2]! << 16) | (buf[w + p3]! << 24)) ^ Math.imul(hb, GOLD), GOLD2) >>> PSHIFT;
            if ((pre[k >>> 3]! & (1 << (k & 7))) !== 0 && this.#bucket(e, hb, buf, w, lo, hi)) return true;
          }
          if (sc !== 0) c += sc;
          else {
            const w = ++c - W;
            const k = Math.imul((buf[w]! | (buf[w + 1]! << 8) | (buf[w + p2]! << 16) | (buf[w + p3]! << 24)) ^ Math.imul(hc, GOLD), GOLD2) >>> PSHIFT;
            if ((pre[k >>> 3]! & (1 << (k & 7))) !== 0 && this.#bucket(e, hc, buf, w, lo, hi)) return true;
          }
          if (sd !== 0) d += sd;
          else {
            const w = ++d - W;
            const k = Math.imul((buf[w]! | (buf[w + 1]! << 8) | (buf[w + p2]! << 16) | (buf[w + p3]! << 24)) ^ Math.imul(hd, GOLD), GOLD2) >>> PSHIFT;
            if ((pre[k >>> 3]! & (1 << (k & 7))) !== 0 && this.#bucket(e, hd, buf, w, lo, hi)) return true;
          }
        }
      } else {
        while (a < ea && b < eb && c < ec && d < hi) {
          const ha = (buf[a - 1]! << 8) | buf[a]!;
          const hb = (buf[b - 1]! << 8) | buf[b]!;
          const hc = (buf[c - 1]! << 8) | buf[c]!;
          const hd = (buf[d - 1]! << 8) | buf[d]!;
          const sa = sh[ha]!;
          const sb = sh[hb]!;
          const sc = sh[hc]!;
          const sd = sh[hd]!;
          if (sa !== 0) a += sa;
          else if (this.#bucket(e, ha, buf, ++a - W, lo, hi)) return true;
          if (sb !== 0) b += sb;
          else if (this.#bucket(e, hb, buf, ++b - W, lo, hi)) return true;
          if (sc !== 0) c += sc;
          else if (this.#bucket(e, hc, buf, ++c - W, lo, hi)) return true;
          if (sd !== 0) d += sd;
          else if (this.#bucket(e, hd, buf, ++d - W, lo, hi)) return true;
        }
      }
      if (this.#tailScan(e, buf, b, eb, lo, hi) || this.#tailScan(e, buf, c, ec, lo, hi) || this.#tailScan(e, buf, d, hi, lo, hi)) return true;
    }
    return this.#tailScan(e, buf, a, ea, lo, hi);
  }

  /** The plain shift loop: window ends from i up to end (exclusive), verifying within lo..hi. */
  #tailScan(e: Engine, buf: Uint8Array, i: number, end: number, lo: number, hi: number): boolean {
    const W = e.W;
    const sh = e.shift;
    if (e.B === 3) {
      while (i < end) {
        const h = Math.imul((buf[i - 2]! << 16) | (buf[i - 1]! << 8) | buf[i]!, GOLD) >>> e.hshift;
        const s = sh[h]!;
        if (s !== 0) i += s;
        else if (this.#bucket(e, h, buf, ++i - W, lo, hi)) return true;
      }
    } else {
      while (i < end) {
        const h = (buf[i - 1]! << 8) | buf[i]!;
        const s = sh[h]!;
        if (s !== 0) i += s;
        else if (this.#bucket(e, h, buf, ++i - W, lo, hi)) return true;
      }
    }
    return false;
  }

  /** Compares the anchors of the bucket of slot h with buf at w and verifies their parts. */
  #bucket(e: Engine, h: number, buf: Uint8Array, w: number, lo: number, hi: number): boolean {
    const k = preKey(buf, w, h, e.p2, e.p3);
    if ((e.pre[k >>> 3]! & (1 << (k & 7))) === 0) return false;
    const W = e.W;
    let at = e.head[h]!;
    const list = e.list;
    const anchors = e.anchors;
    const t = this.#t;
    for (let a = list[at]!; a >= 0; a = list[++at]!) {
      const ab = a * W;
      let j = 0;
      while (j < W && buf[w + j] === anchors[ab + j]) j++;
      if (j < W) continue;
      for (let q = e.partStart[a]!, qe = e.partStart[a + 1]!; q < qe; q++) {
        const p = e.partList[q]!;
        const s = w - t.anchorOff[p]!;
        const len = t.len[p]!;
        if (s < lo || s + len > hi || s >= this.#sMax || s + len <= this.#eMin) continue;
        const v = t.vals;
        const m = t.masks;
        const o = t.off[p]! - s;
        let k = s;
        const ke = s + len;
        while (k < ke && (buf[k]! & m[o + k]!) === v[o + k]) k++;
        k -= s;
        if (k === len && this.#hit(p, this.#base + s)) return true;
      }
    }
    return false;
  }

  /** A verified part at stream offset s. True when that decides a match. */
  #hit(p: number, s: number): boolean {
    const t = this.#t;
    const kind = t.kind[p]!;
    if (kind === K_ALONE) {
      this.#match = t.names[t.sig[p]!]!;
      return true;
    }
    if (kind === K_ALONE_AT) {
      const g = t.sig[p]!;
      if (s < t.startLo[g]! || s > t.startHi[g]!) return false;
      this.#match = t.names[g]!;
      return true;
    }
    if (kind === K_FIRST && t.gapMax[p + 1] === Infinity) {
      // needs no order: only the earliest end counts
      const g = t.sig[p]!;
      if (s < t.startLo[g]! || s > t.startHi[g]!) return false;
      const c = this.#chain(p);
      const end = s + t.len[p]!;
      if (c.first < 0 || end < c.first) c.first = end;
      return false;
    }
    if (this.#evN === this.#ev.length) {
      if (this.#ev.length >= MAX_EVENTS) {
        // hostile input: feed what we have now (order across batches is lost)
        this.#events();
        if (this.#match !== null) return true;
      } else {
        const bigger = new Float64Array(this.#ev.length * 2);
        bigger.set(this.#ev);
        this.#ev = bigger;
      }
    }
    this.#ev[this.#evN++] = (s - this.#evBase) * PMUL + p;
    return false;
  }

  #chain(p: number): Chain {
    let c = this.#chains.get(p);
    if (!c) {
      c = new Chain();
      this.#chains.set(p, c);
    }
    return c;
  }

  /** Feeds the collected parts of signatures with gaps, in stream order, to their chains. */
  #events(): void {
    const t = this.#t;
    const ev = this.#ev.subarray(0, this.#evN).sort();
    this.#evN = 0;
    for (let i = 0; i < ev.length; i++) {
      const key = ev[i]!;
      const p = key % PMUL;
      const s = this.#evBase + (key - p) / PMUL;
      const kind = t.kind[p]!;
      if (kind === K_FIRST) {
        const g = t.sig[p]!;
        if (s < t.startLo[g]! || s > t.startHi[g]!) continue;
      } else {
        const prev = this.#chains.get(p - 1);
        if (!prev) continue;
        const before = prev.live;
        const ok = prev.accepts(s, t.gapMin[p]!, t.gapMax[p]!);
        this.#live += prev.live - before;
        if (!ok) continue;
        if (kind === K_LAST) {
          this.#match = t.names[t.sig[p]!]!;
          return;
        }
      }
      const c = this.#chain(p);
      const before = c.live;
      c.add(s + t.len[p]!, t.gapMin[p + 1]!, t.gapMax[p + 1]!, s - t.maxLen, this.#live >= MAX_LIVE);
      this.#live += c.live - before;
    }
  }
}

class Db implements SignatureDb {
  readonly bodyCount: number;
  readonly hashCount: number;
  readonly warnings: readonly string[];
  readonly hashKinds: ReadonlySet<HashKind>;
  readonly #t: Tables;
  readonly #hashes: HashIndex;

  constructor(t: Tables, bodyCount: number, hashes: HashIndex, warnings: string[]) {
    this.#t = t;
    this.bodyCount = bodyCount;
    this.hashCount = hashes.count;
    this.warnings = Object.freeze(warnings);
    this.#hashes = hashes;
    this.hashKinds = hashes.kinds;
  }

  newScanner(): BodyScanner {
    return new Scanner(this.#t);
  }

  lookupHash(kind: HashKind, digest: Buffer, size: number): string | null {
    return this.#hashes.lookup(kind, digest, size);
  }
}

/**
 * Compiles a set into a database, in slices of about SLICE_MS that yield to
 * the event loop. Throws on a malformed signature (naming it); signatures this
 * engine cannot use are left out and counted in db.warnings.
 */
export async function compileSignatures(set: SignatureSet): Promise<SignatureDb> {
  let sliceStart = performance.now();
  const pause = async () => {
    if (performance.now() - sliceStart >= SLICE_MS) {
      await yieldNow();
      sliceStart = performance.now();
    }
  };
  counts(); // the traffic model, built once
  await pause();
  const warnings: string[] = [];
  const skipped = new Map<string, { n: number; first: string }>();
  const names: string[] = [];
  // per part, packed as the signatures are parsed
  const vals = new Bytes();
  const masks = new Bytes();
  const off: number[] = [];
  const len: number[] = [];
  const sig: number[] = [];
  const kind: number[] = [];
  const gapMin: number[] = [];
  const gapMax: number[] = [];
  const runs: number[] = [];
  // per pattern
  const startLo: number[] = [];
  const startHi: number[] = [];
  let maxLen = 1;
  let longW = LONG_MAX_W;
  let shortW = LONG_MIN;
  let used = 0;
  const add = (pat: Pattern, name: string) => {
    const g = names.length;
    names.push(name);
    startLo.push(pat.startLo);
    startHi.push(pat.startHi);
    const alone = pat.parts.length === 1;
    const anywhere = pat.startLo === 0 && pat.startHi === Infinity;
    pat.parts.forEach((part, i) => {
      off.push(vals.push(part.vals));
      masks.push(part.masks);
      len.push(part.vals.length);
      sig.push(g);
      kind.push(alone ? (anywhere ? K_ALONE : K_ALONE_AT) : i === 0 ? K_FIRST : i === pat.parts.length - 1 ? K_LAST : K_MID);
      gapMin.push(i > 0 ? pat.gaps[i - 1]!.min : 0);
      gapMax.push(i > 0 ? pat.gaps[i - 1]!.max : 0);
      if (part.vals.length > maxLen) maxLen = part.vals.length;
      const r = longestRun(part.masks);
      runs.push(r);
      if (r >= LONG_MIN) longW = Math.min(longW, r);
      else shortW = Math.min(shortW, r);
    });
    if (off.length > MAX_PARTS_TOTAL) throw new Error(`too many signature parts (more than ${MAX_PARTS_TOTAL})`);
  };
  for (let i = 0; i < set.body.length; i++) {
    const b = set.body[i]!;
    if (typeof b?.name !== 'string' || b.name === '') throw new Error(`body signature #${i + 1} has no name`);
    let pats: Pattern[];
    try {
      pats = parseHexSignature(b.hex, b.offset ?? '*');
    } catch (e) {
      if (e instanceof SignatureSyntaxError) throw new Error(`body signature ${b.name}: ${e.message}`);
      if (!(e instanceof UnsupportedSignature)) throw e;
      const s = skipped.get(e.message);
      if (s) s.n++;
      else skipped.set(e.message, { n: 1, first: b.name });
      continue;
    }
    for (const p of pats) add(p, b.name);
    used++;
    if ((i & 63) === 0) await pause();
  }
  for (const [reason, s] of skipped) warnings.push(`${s.n} body signature(s) left out: ${reason} (first: ${s.first})`);
  const hashes = await HashIndex.build(set.hashes, pause);

  const nParts = off.length;
  const t: Tables = {
    names,
    len: Int32Array.from(len),
    anchorOff: new Int32Array(nParts),
    vals: vals.a.subarray(0, vals.n),
    masks: masks.a.subarray(0, masks.n),
    off: Int32Array.from(off),
    sig: Int32Array.from(sig),
    kind: Uint8Array.from(kind),
    gapMin: Float64Array.from([...gapMin, 0]),
    gapMax: Float64Array.from([...gapMax, 0]),
    startLo: Float64Array.from(startLo),
    startHi: Float64Array.from(startHi),
    maxLen,
    engines: [],
  };
  await pause();
  const long: Anchored[] = [];
  const short: Anchored[] = [];
  for (let p = 0; p < nParts; p++) {
    const isLong = runs[p]! >= LONG_MIN;
    const w = isLong ? longW : shortW;
    const B = isLong ? 3 : 2;
    const o = t.off[p]!;
    const at = chooseAnchor(t.vals, t.masks, o, o + t.len[p]!, w, B);
    t.anchorOff[p] = at - o;
    (isLong ? long : short).push({ part: p, bytes: t.vals.subarray(at, at + w) });
    if ((p & 31) === 0) await pause();
  }
  if (long.length) t.engines.push(await buildEngine(longW, 3, long, pause));
  if (short.length) t.engines.push(await buildEngine(shortW, 2, short, pause));
  return new Db(t, used, hashes, warnings);
}
