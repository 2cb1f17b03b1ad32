/*
 * scan/signatures/types.ts: the shapes shared by the signature loaders, the
 * compiler and the scan pipeline that consumes them. Types only, no code.
 */

/**
 * A body signature: hex in ClamAV .ndb syntax. offset: '*' anywhere (the
 * default), n = the signature starts at byte n of the scanned stream,
 * [n, m] = it starts anywhere in n..n+m (ClamAV's `n,m`).
 */
export type BodySignature = { name: string; hex: string; offset?: '*' | number | readonly [number, number] };

/** A digest of a whole scanned stream (an attachment); digest is lowercase hex. */
export type HashSignature = { name: string; kind: 'md5' | 'sha1' | 'sha256'; digest: string; size: number | '*' };

export type SignatureSet = { body: BodySignature[]; hashes: HashSignature[]; warnings: string[] };

export type HashKind = 'md5' | 'sha1' | 'sha256';

export interface BodyScanner {
  /**
   * Scans chunk[start..end) as the next bytes of the stream. Returns the name
   * of the first signature matched so far (sticky), else null.
   */
  push(chunk: Buffer, start?: number, end?: number): string | null;
  /** At the end of the stream: the answer (every signature is decided as soon as its last byte is seen). */
  end(): string | null;
  /** Starts a new stream (offsets count from 0 again). */
  reset(): void;
}

export interface SignatureDb {
  /** Body signatures in use (those left out are counted in warnings). */
  readonly bodyCount: number;
  readonly hashCount: number;
  /** Signatures of the set that this engine could not use, counted per reason. */
  readonly warnings: readonly string[];
  /** One per scanned stream (a MIME part or the raw message). */
  newScanner(): BodyScanner;
  /** The name of the hash signature for this digest and stream size, or null. */
  lookupHash(kind: HashKind, digest: Buffer, size: number): string | null;
  /** Which digests the pipeline needs to compute at all. */
  readonly hashKinds: ReadonlySet<HashKind>;
}
