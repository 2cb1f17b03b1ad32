/*
 * scan/signature-scan.ts: moat's own signature scanner as a scan stage.
 *
 * The compiled signature database (scan/signatures/) is run over the raw
 * message as it streams (headers, text parts, anything the MIME walker cannot
 * decode) and, as a MIME walker listener, over the decoded content of every
 * base64 and quoted-printable part, each part a stream of its own (so `.ndb`
 * offsets count from the start of the attachment). Whole-attachment digests
 * for `.hdb`/`.hsb` signatures are computed only for the kinds the database
 * holds, as each part's decoded bytes pass, and looked up at the part's end.
 * A match refuses the message with 550 5.7.1 naming the signature.
 *
 * Must never: keep or copy a chunk (the scanners carry their own bounded
 * state; the hashes see each byte once). Built per message by scan/build.ts.
 */
import { createHash, type Hash } from 'node:crypto';
import type { MimeListener, PartInfo } from './mime.ts';
import type { Stage, Verdict } from './pipeline.ts';
import type { BodyScanner, HashKind, SignatureDb } from './signatures/index.ts';

export const signatureFoundText = (name: string) => `5.7.1 Message content rejected: ${name} found`;

/** Signature names as they go into a reply or the log. */
function clean(name: string): string {
  return name.replace(/[^\x21-\x7e]/g, '?').slice(0, 120);
}

export class SignatureScan implements Stage, MimeListener {
  readonly name = 'signatures';
  readonly #db: SignatureDb;
  readonly #raw: BodyScanner;
  #decoded: BodyScanner | null = null;
  #inDecoded = false;
  #hashes: Array<[HashKind, Hash]> | null = null;
  #partBytes = 0;
  #verdict: Verdict | null = null;

  constructor(db: SignatureDb) {
    this.#db = db;
    this.#raw = db.newScanner();
  }

  get verdict(): Verdict | null {
    return this.#verdict;
  }

  #found(name: string | null, where: string): Verdict | null {
    if (name && !this.#verdict) {
      const n = clean(name);
      this.#verdict = { stage: this.name, code: 550, text: signatureFoundText(n), reason: `signature ${n} (${where})` };
    }
    return this.#verdict;
  }

  // the raw stream (Stage)
  push(chunk: Buffer): void {
    this.#found(this.#raw.push(chunk), 'message');
  }

  end(): Verdict | null {
    return this.#found(this.#raw.end(), 'message');
  }

  // decoded parts (MimeListener)
  partStart(p: PartInfo): Verdict | null {
    this.#inDecoded = p.encoding !== 'identity';
    if (this.#inDecoded) {
      if (this.#decoded) this.#decoded.reset();
      else this.#decoded = this.#db.newScanner();
    }
    const kinds = this.#db.hashKinds;
    this.#hashes = kinds.size ? [...kinds].map((k) => [k, createHash(k)]) : null;
    this.#partBytes = 0;
    return null;
  }

  partData(_p: PartInfo, data: Uint8Array, start: number, end: number): Verdict | null {
    const buf = data as Buffer;
    if (this.#hashes) {
      const view = start === 0 && end === buf.length ? buf : buf.subarray(start, end);
      for (const [, h] of this.#hashes) h.update(view);
      this.#partBytes += end - start;
    }
    if (this.#inDecoded) return this.#found(this.#decoded!.push(buf, start, end), `part ${_p.index}`);
    return null;
  }

  partEnd(p: PartInfo): Verdict | null {
    if (this.#inDecoded && this.#found(this.#decoded!.end(), `part ${p.index}`)) return this.#verdict;
    this.#inDecoded = false;
    const hashes = this.#hashes;
    this.#hashes = null;
    if (hashes) {
      for (const [kind, h] of hashes) {
        const name = this.#db.lookupHash(kind, h.digest(), this.#partBytes);
        if (name) return this.#found(name, `part ${p.index} ${kind}`);
      }
    }
    return null;
  }
}
