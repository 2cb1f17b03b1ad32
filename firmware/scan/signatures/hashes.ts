/*
 * scan/signatures/hashes.ts: the index of whole-stream digests (.hdb/.hsb),
 * compact enough for hundreds of thousands of entries on a Pi.
 *
 * Per digest kind: the digests packed into one byte array, their sizes in a
 * Float64Array (-1 for `*`), their names, and an open-addressing table keyed
 * by the first four bytes of the digest (digests are uniformly distributed)
 * with linear probing. About 40 bytes per entry plus its name, no object per
 * entry. Built in slices that yield to the event loop.
 *
 * Must never: keep the SignatureSet's objects, or answer a digest of another
 * kind. Called by compile.ts.
 */
import type { HashKind, HashSignature } from './types.ts';

const LEN: Record<HashKind, number> = { md5: 16, sha1: 20, sha256: 32 };

/** Checks a hash signature; throws an error naming it. */
export function checkHash(h: HashSignature): void {
  const bytes = LEN[h.kind];
  if (bytes === undefined) throw new Error(`hash signature ${h.name}: unknown kind ${String(h.kind)}`);
  if (typeof h.digest !== 'string' || h.digest.length !== bytes * 2 || !/^[0-9a-f]+$/.test(h.digest)) {
    throw new Error(`hash signature ${h.name}: ${h.kind} digest must be ${bytes * 2} lowercase hex digits`);
  }
  if (h.size !== '*' && (!Number.isSafeInteger(h.size) || h.size < 0)) throw new Error(`hash signature ${h.name}: bad size ${String(h.size)}`);
}

class KindIndex {
  readonly len: number;
  readonly digests: Uint8Array;
  readonly sizes: Float64Array;
  readonly names: string[] = [];
  readonly table: Int32Array;
  readonly mask: number;
  n = 0;

  constructor(len: number, count: number) {
    this.len = len;
    this.digests = new Uint8Array(count * len);
    this.sizes = new Float64Array(count);
    let size = 16;
    while (size < count * 2) size *= 2;
    this.table = new Int32Array(size); // entry index + 1, 0 = empty
    this.mask = size - 1;
  }

  static slot(d: Uint8Array, at: number): number {
    return (d[at]! | (d[at + 1]! << 8) | (d[at + 2]! << 16) | (d[at + 3]! << 24)) >>> 0;
  }

  add(h: HashSignature): void {
    const i = this.n++;
    this.digests.set(Buffer.from(h.digest, 'hex'), i * this.len);
    this.sizes[i] = h.size === '*' ? -1 : h.size;
    this.names.push(h.name);
    let s = KindIndex.slot(this.digests, i * this.len) & this.mask;
    while (this.table[s] !== 0) s = (s + 1) & this.mask;
    this.table[s] = i + 1;
  }

  lookup(d: Uint8Array, size: number): string | null {
    if (d.length !== this.len) return null;
    let any: string | null = null;
    for (let s = KindIndex.slot(d, 0) & this.mask; this.table[s] !== 0; s = (s + 1) & this.mask) {
      const i = this.table[s]! - 1;
      const o = i * this.len;
      let j = 0;
      while (j < this.len && this.digests[o + j] === d[j]) j++;
      if (j < this.len) continue;
      if (this.sizes[i] === size) return this.names[i]!;
      if (this.sizes[i] === -1 && any === null) any = this.names[i]!;
    }
    return any;
  }
}

export class HashIndex {
  readonly kinds: ReadonlySet<HashKind>;
  readonly count: number;
  readonly #by: Map<HashKind, KindIndex>;

  private constructor(by: Map<HashKind, KindIndex>, count: number) {
    this.#by = by;
    this.kinds = new Set(by.keys());
    this.count = count;
  }

  /** Builds the index, calling pause() now and then so the caller can yield. */
  static async build(hashes: readonly HashSignature[], pause: () => Promise<void>): Promise<HashIndex> {
    const counts = new Map<HashKind, number>();
    for (let i = 0; i < hashes.length; i++) {
      const h = hashes[i]!;
      checkHash(h);
      counts.set(h.kind, (counts.get(h.kind) ?? 0) + 1);
      if ((i & 4095) === 0) await pause();
    }
    const by = new Map<HashKind, KindIndex>();
    for (const [kind, n] of counts) by.set(kind, new KindIndex(LEN[kind], n));
    for (let i = 0; i < hashes.length; i++) {
      const h = hashes[i]!;
      by.get(h.kind)!.add(h);
      if ((i & 1023) === 0) await pause();
    }
    return new HashIndex(by, hashes.length);
  }

  lookup(kind: HashKind, digest: Uint8Array, size: number): string | null {
    return this.#by.get(kind)?.lookup(digest, size) ?? null;
  }
}
