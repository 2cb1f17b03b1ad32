/*
 * delivery/topology.ts: topology hiding for mail leaving for the Internet.
 *
 * Removes the named header fields (by default the Received trail and the
 * usual client-address fields, which name internal hosts and addresses) from
 * the top-level header of a message as it streams out of the spool. Only the
 * header is looked at, and it is bounded (inbound refused larger ones); the
 * body passes through untouched, chunk by chunk.
 *
 * Must never: change a byte of the body, keep more than the header block,
 * leave a continuation line of a removed field behind. Called by
 * delivery/outbound.ts (before DKIM signing, so the signature covers what is
 * sent).
 */
import { Transform, type TransformCallback } from 'node:stream';

/** Header blocks longer than this pass unchanged (inbound mail never has one; see scan.headers.maxBytes). */
export const HEADER_LIMIT = 16 * 1024 * 1024;

export class HeaderStripper extends Transform {
  readonly #names: ReadonlySet<string>;
  #head: Buffer[] = [];
  #headLen = 0;
  #done = false;

  /** names: header field names to drop, any case. */
  constructor(names: readonly string[]) {
    super();
    this.#names = new Set(names.map((n) => n.toLowerCase()));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#done) return cb(null, chunk);
    this.#head.push(chunk);
    this.#headLen += chunk.length;
    // the header only, and bounded; a header that ends in its first chunk (the usual case) is not copied
    const all = this.#head.length === 1 ? this.#head[0]! : Buffer.concat(this.#head, this.#headLen);
    const end = findHeaderEnd(all);
    if (end < 0 && this.#headLen < HEADER_LIMIT) {
      this.#head = [all];
      return cb();
    }
    this.#done = true;
    this.#head = [];
    if (end < 0) return cb(null, all);
    this.push(this.#strip(all.subarray(0, end)));
    cb(null, all.subarray(end));
  }

  override _flush(cb: TransformCallback): void {
    if (!this.#done && this.#headLen) {
      const all = this.#head.length === 1 ? this.#head[0]! : Buffer.concat(this.#head, this.#headLen);
      this.#head = [];
      return cb(null, this.#strip(all));
    }
    cb();
  }

  /** The header block without the named fields (with their continuation lines). */
  #strip(block: Buffer): Buffer {
    const text = block.toString('latin1');
    const lines = text.split(/(?<=\n)/);
    const kept: string[] = [];
    let dropping = false;
    for (const line of lines) {
      const first = line.charCodeAt(0);
      if (first === 0x20 || first === 0x09) {
        if (!dropping) kept.push(line);
        continue;
      }
      const colon = line.indexOf(':');
      dropping = colon > 0 && this.#names.has(line.slice(0, colon).trim().toLowerCase());
      if (!dropping) kept.push(line);
    }
    return Buffer.from(kept.join(''), 'latin1');
  }
}

/** Index just past the header block (after its line breaks, before the blank line), or -1. */
function findHeaderEnd(b: Buffer): number {
  if (b[0] === 0x0d && b[1] === 0x0a) return 0;
  if (b[0] === 0x0a) return 0;
  const crlf = b.indexOf('\r\n\r\n');
  const lf = b.indexOf('\n\n');
  if (crlf < 0 && lf < 0) return -1;
  if (crlf >= 0 && (lf < 0 || crlf + 1 <= lf)) return crlf + 2;
  return lf + 1;
}
