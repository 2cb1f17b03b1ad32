/*
 * delivery/topology.ts: header fields removed from a message as it streams
 * out of the spool.
 *
 * Outward (topology hiding): the named fields (by default the Received trail
 * and the usual client-address fields, which name internal hosts and
 * addresses). Inward: the fields moat's own checks add (X-Spam-*, X-Moat-Rule),
 * which a sender could forge to fool filters inside, and every
 * Authentication-Results field that names this host as its authserv-id
 * (RFC 8601 §5): moat's own results travel apart from the stored bytes
 * (Envelope.headers) and are kept by `keepFirst`.
 *
 * Only the top-level header is looked at, and it is bounded (inbound refused
 * larger ones); the body passes through untouched, chunk by chunk.
 *
 * Must never: change a byte of the body, keep more than the header block,
 * leave a continuation line of a removed field behind. Called by
 * delivery/outbound.ts (before DKIM signing, so the signature covers what is
 * sent) and delivery/internal.ts.
 */
import { Transform, type TransformCallback } from 'node:stream';

/** Header blocks longer than this pass unchanged (inbound mail never has one; see scan.headers.maxBytes). */
export const HEADER_LIMIT = 16 * 1024 * 1024;

/** Decides on a whole field (its name in lower case, its text with continuation lines); true drops it. */
export type FieldFilter = (name: string, field: string) => boolean;

export type StripOptions = {
  /** Bytes at the start that pass untouched (whole header lines moat added itself). */
  keepFirst?: number;
  /** Drops a field the names do not: decided on its content. */
  drop?: FieldFilter;
};

export class HeaderStripper extends Transform {
  readonly #names: ReadonlySet<string>;
  readonly #keep: number;
  readonly #drop: FieldFilter | undefined;
  #head: Buffer[] = [];
  #headLen = 0;
  #done = false;

  /** names: header field names to drop, any case. */
  constructor(names: readonly string[], opts: StripOptions = {}) {
    super();
    this.#names = new Set(names.map((n) => n.toLowerCase()));
    this.#keep = opts.keepFirst ?? 0;
    this.#drop = opts.drop;
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

  /** The header block without the dropped fields (with their continuation lines); the first keepFirst bytes as they are. */
  #strip(block: Buffer): Buffer {
    const keep = Math.min(this.#keep, block.length);
    const text = block.toString('latin1', keep);
    const fields: string[] = [];
    for (const line of text.split(/(?<=\n)/)) {
      const first = line.charCodeAt(0);
      if ((first === 0x20 || first === 0x09) && fields.length) fields[fields.length - 1] += line;
      else fields.push(line);
    }
    const kept = fields.filter((f) => {
      const colon = f.indexOf(':');
      if (colon <= 0) return true;
      const name = f.slice(0, colon).trim().toLowerCase();
      return !this.#names.has(name) && !this.#drop?.(name, f);
    });
    const rest = Buffer.from(kept.join(''), 'latin1');
    return keep ? Buffer.concat([block.subarray(0, keep), rest]) : rest;
  }
}

/**
 * The authserv-id of an Authentication-Results field (RFC 8601 §2.2: the
 * first token of its value, after comments), lower case; '' when it has none.
 */
export function authservId(field: string): string {
  const colon = field.indexOf(':');
  let v = '';
  let depth = 0;
  for (const c of field.slice(colon + 1)) {
    if (c === '(') depth++;
    else if (c === ')' && depth > 0) depth--;
    else if (depth === 0) v += c;
    if (depth === 0 && c === ';') break;
  }
  return (/^[\s]*([^\s;]+)/.exec(v)?.[1] ?? '').toLowerCase();
}

/** Drops Authentication-Results fields that claim to come from `host` (only moat may write those). */
export function forgedResultsOf(host: string): FieldFilter {
  const id = host.toLowerCase();
  return (name, field) => name === 'authentication-results' && authservId(field) === id;
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
