/*
 * scan/mime.ts: the MIME walker, a scan stage that follows the structure of a
 * message while it streams past.
 *
 * It parses the message header once (field count and size limited), follows
 * multipart boundaries across chunks and through nested multiparts and
 * message/rfc822 parts, reads each part's header (type, disposition, file name,
 * transfer encoding) and hands the content of every leaf part to its listeners
 * (attachment policy, hashes, signatures): identity-encoded content as views of
 * the chunk itself, base64 and quoted-printable content decoded into one scratch
 * buffer shared by all walkers (valid only during the call).
 *
 * Across chunk boundaries it carries only small state: an unfinished header
 * block (bounded), and the bytes of a line that may still turn out to be a
 * boundary delimiter (at most CANDIDATE_MAX bytes plus its line break).
 * Boundaries are recognised as RFC 2046 §5.1.1 defines them: at the start of a
 * line, "--" + boundary, optionally "--", then only white space.
 *
 * Must never: copy or keep a chunk (only headers and candidate lines are
 * copied, both bounded), grow without bound on hostile structure (parts, depth
 * and header sizes are capped and exceeding them refuses the message), throw
 * on hostile input. Built per message by scan/build.ts.
 */
import type { Stage, Verdict } from './pipeline.ts';
import { splitFields, readPartHeaders, type HeaderField, type Encoding } from './header-fields.ts';
import { Base64Decoder, QuotedPrintableDecoder } from './decode.ts';
import { tagHeader } from './rules.ts';

export type { HeaderField } from './header-fields.ts';

export type PartInfo = {
  /** 0 for the message itself when it is not multipart; parts are numbered in order of appearance. */
  readonly index: number;
  /** Nesting depth: 0 for the top-level message. */
  readonly depth: number;
  readonly type: string;
  readonly params: Readonly<Record<string, string>>;
  readonly disposition: string | null;
  readonly filename: string | null;
  readonly encoding: Encoding;
  readonly headers: readonly HeaderField[];
};

/** Something that looks at the message's structure and content; any call may refuse. */
export interface MimeListener {
  readonly name: string;
  /** The top-level message header, once. */
  headers?(fields: readonly HeaderField[]): Verdict | null;
  /** A leaf part begins (also a non-multipart message's body). */
  partStart?(part: PartInfo): Verdict | null;
  /** Decoded content of the current leaf part; `data` is valid only during the call. */
  partData?(part: PartInfo, data: Uint8Array, start: number, end: number): Verdict | null;
  /** The current leaf part ended. */
  partEnd?(part: PartInfo): Verdict | null;
  /** Names of tag rules that matched, for the X-Moat-Rule header. */
  readonly tags?: readonly string[];
}

export type MimeLimits = {
  /** Bytes of the top-level header block. */
  maxHeaderBytes: number;
  /** Fields of the top-level header block. */
  maxHeaderFields: number;
  /** Bytes of a part's header block. */
  maxPartHeaderBytes: number;
  /** Parts in the whole message, multipart containers included. */
  maxParts: number;
  /** Nesting depth of multiparts and attached messages. */
  maxDepth: number;
};

export const headerTooBigText = '5.3.4 Message header exceeds fixed limits';
export const mimeTooComplexText = '5.6.0 Message structure exceeds fixed limits (parts, nesting or part headers)';

const LF = 0x0a;
const CR = 0x0d;
const DASH = 0x2d;
const NL_DASH_DASH = Buffer.from('\n--');
/** Longest line still considered as a boundary delimiter: "--" + 70 + "--" + padding. */
const CANDIDATE_MAX = 256;
/** RFC 2046 allows 70; a little slack for sloppy senders, but never more than a candidate can hold. */
const BOUNDARY_MAX = 200;
const DECODE_SLICE = 60_000;
/** The decoders' output; shared, because every listener consumes it synchronously. */
const SCRATCH = Buffer.allocUnsafe(DECODE_SLICE + 16);

type Level = { boundary: Buffer; digest: boolean; /** Depth of its parts. */ depth: number };

/** Where the walker is: reading a header block, or a body. */
const Mode = { header: 0, body: 1 } as const;

export class MimeWalker implements Stage {
  readonly name = 'mime';
  readonly #listeners: readonly MimeListener[];
  readonly #limits: MimeLimits;
  #verdict: Verdict | null = null;

  #mode: number = Mode.header;
  /** Levels of open multiparts, outermost first. */
  readonly #stack: Level[] = [];
  #depth = 0;
  #parts = 0;

  /** Header block being read. */
  #hdr: Buffer = Buffer.allocUnsafe(1024);
  #hdrLen = 0;
  #lineStart = 0;
  #top = true;
  /** Default type of the part whose header is being read (message/rfc822 inside multipart/digest). */
  #defaultType = 'text/plain';

  /** The leaf part whose body is streaming, or null (preamble, epilogue, multipart body). */
  #part: PartInfo | null = null;
  #b64: Base64Decoder | null = null;
  #qp: QuotedPrintableDecoder | null = null;

  /** Bytes held back because they may belong to a boundary delimiter line. */
  readonly #held = Buffer.allocUnsafe(CANDIDATE_MAX + 2);
  #heldLen = 0;
  /** 0: nothing held; 1: a CR held; 2: a line break held (line start); 3: a candidate line held. */
  #hold = 0;
  /** In state 3, where the candidate's "--" starts within #held. */
  #candAt = 0;

  constructor(listeners: readonly MimeListener[], limits: MimeLimits) {
    this.#listeners = listeners;
    this.#limits = limits;
  }

  get verdict(): Verdict | null {
    return this.#verdict;
  }

  /** The X-Moat-Rule header naming the tag rules that matched, if any. */
  headers(): string {
    const names = new Set<string>();
    for (const l of this.#listeners) for (const t of l.tags ?? []) names.add(t);
    return tagHeader([...names]);
  }

  push(chunk: Buffer): void {
    let p = 0;
    const end = chunk.length;
    while (p < end && !this.#verdict) {
      p = this.#mode === Mode.header ? this.#header(chunk, p) : this.#body(chunk, p);
    }
  }

  end(): Verdict | null {
    if (this.#verdict) return this.#verdict;
    if (this.#mode === Mode.header) {
      // a header block without a blank line after it: it still counts
      this.#headerDone();
      if (this.#verdict) return this.#verdict;
    }
    if (this.#mode === Mode.body) {
      if (this.#hold === 3) {
        // the last line, without a line break: it may still be a delimiter
        const lv = this.#classify(this.#held, this.#candAt, this.#heldLen);
        if (lv) this.#boundary(lv.level, lv.close);
        else this.#releaseHeld();
      } else this.#releaseHeld();
    }
    this.#endPart();
    return this.#verdict;
  }

  // ---- header blocks ------------------------------------------------------

  /** Reads header lines from chunk[p..]; returns where it stopped. */
  #header(chunk: Buffer, p: number): number {
    const end = chunk.length;
    while (p < end) {
      const nl = chunk.indexOf(LF, p);
      const stop = nl < 0 ? end : nl + 1;
      if (!this.#append(chunk, p, stop)) return end;
      p = stop;
      if (nl < 0) return end;
      // a complete line: [#lineStart, #hdrLen)
      const ls = this.#lineStart;
      const len = this.#hdrLen - ls;
      const blank = len === 1 || (len === 2 && this.#hdr[ls] === CR);
      if (blank) {
        this.#hdrLen = ls;
        this.#headerDone();
        return p;
      }
      if (this.#stack.length && this.#hdr[ls] === DASH && len <= CANDIDATE_MAX) {
        const lv = this.#classify(this.#hdr, ls, this.#hdrLen - 1);
        if (lv) {
          // a delimiter where a part header was expected: the part has no body
          this.#hdrLen = ls;
          this.#headerDone();
          if (!this.#verdict) this.#boundary(lv.level, lv.close);
          return p;
        }
      }
      this.#lineStart = this.#hdrLen;
    }
    return p;
  }

  #append(chunk: Buffer, from: number, to: number): boolean {
    const n = to - from;
    const limit = this.#top ? this.#limits.maxHeaderBytes : this.#limits.maxPartHeaderBytes;
    if (this.#hdrLen + n > limit) {
      this.#refuse(
        this.#top ? 552 : 550,
        this.#top ? headerTooBigText : mimeTooComplexText,
        this.#top ? `header over ${limit} bytes` : `part header over ${limit} bytes`,
      );
      return false;
    }
    if (this.#hdrLen + n > this.#hdr.length) {
      const grown = Buffer.allocUnsafe(Math.min(limit, Math.max(this.#hdr.length * 2, this.#hdrLen + n)));
      this.#hdr.copy(grown, 0, 0, this.#hdrLen);
      this.#hdr = grown;
    }
    chunk.copy(this.#hdr, this.#hdrLen, from, to);
    this.#hdrLen += n;
    return true;
  }

  #headerDone(): void {
    const top = this.#top;
    const maxFields = this.#limits.maxHeaderFields;
    const fields = splitFields(this.#hdr.subarray(0, this.#hdrLen), maxFields);
    this.#hdrLen = 0;
    this.#lineStart = 0;
    if (this.#hdr.length > 4096) this.#hdr = Buffer.allocUnsafe(1024);
    if (!fields) {
      this.#refuse(552, headerTooBigText, `header over ${maxFields} fields`);
      return;
    }
    this.#top = false;
    if (top) for (const l of this.#listeners) if (l.headers && this.#check(l.headers(fields))) return;
    const h = readPartHeaders(fields, this.#defaultType);
    this.#defaultType = 'text/plain';
    this.#mode = Mode.body;
    this.#hold = 2; // the body starts at a line start: it may open with a delimiter
    this.#heldLen = 0;
    const boundary = h.params.boundary;
    if (h.type.startsWith('multipart/') && boundary && boundary.length <= BOUNDARY_MAX) {
      if (!this.#enter()) return;
      this.#stack.push({ boundary: Buffer.from(boundary, 'latin1'), digest: h.type === 'multipart/digest', depth: this.#depth });
      return; // the preamble follows; it is not a part
    }
    if (h.type === 'message/rfc822' && h.encoding === 'identity') {
      if (!this.#enter()) return;
      this.#mode = Mode.header; // the attached message's own header follows
      this.#hold = 0;
      this.#top = false;
      return;
    }
    const part: PartInfo = {
      index: this.#parts,
      depth: this.#depth,
      type: h.type,
      params: h.params,
      disposition: h.disposition,
      filename: h.filename,
      encoding: h.encoding,
      headers: fields,
    };
    this.#part = part;
    this.#b64 = h.encoding === 'base64' ? new Base64Decoder() : null;
    this.#qp = h.encoding === 'quoted-printable' ? new QuotedPrintableDecoder() : null;
    for (const l of this.#listeners) if (l.partStart && this.#check(l.partStart(part))) return;
  }

  /** One level deeper; false (and a refusal) past the limits. */
  #enter(): boolean {
    this.#depth++;
    if (this.#depth > this.#limits.maxDepth) {
      this.#refuse(550, mimeTooComplexText, `nesting deeper than ${this.#limits.maxDepth}`);
      return false;
    }
    return true;
  }

  // ---- bodies -------------------------------------------------------------

  /** Streams body bytes from chunk[p..] to the current part, watching for delimiters; returns where it stopped. */
  #body(chunk: Buffer, p: number): number {
    const end = chunk.length;
    if (this.#stack.length === 0) {
      // no multipart around: everything to the end belongs to this part
      this.#releaseHeld();
      this.#data(chunk, p, end);
      return end;
    }
    let i = p;
    // first settle what earlier chunks left undecided
    while (this.#hold !== 0 && i < end) {
      if (this.#hold === 1) {
        if (chunk[i] === LF) {
          this.#held[this.#heldLen++] = LF;
          this.#hold = 2;
          i++;
        } else this.#releaseHeld();
      } else if (this.#hold === 2) {
        if (chunk[i] === DASH) {
          this.#candAt = this.#heldLen;
          this.#hold = 3;
        } else this.#releaseHeld();
      } else {
        const r = this.#continueCandidate(chunk, i);
        if (r < 0) return end; // still undecided, all of it held
        i = r;
        if (this.#verdict || this.#mode !== Mode.body) return i;
      }
    }
    if (i === end) return end;
    const from = i; // start of bytes not yet handed on
    let search = i;
    for (;;) {
      const q = chunk.indexOf(NL_DASH_DASH, search);
      if (q < 0) break;
      const cand = q + 1;
      const lbStart = q > from && chunk[q - 1] === CR ? q - 1 : q;
      const e = chunk.indexOf(LF, cand);
      if (e < 0) {
        if (end - cand <= CANDIDATE_MAX) {
          // the chunk ends inside what may be a delimiter line: hold it
          this.#data(chunk, from, lbStart);
          this.#holdBytes(chunk, lbStart, end, cand - lbStart);
          return end;
        }
        break;
      }
      const lv = e - cand <= CANDIDATE_MAX ? this.#classify(chunk, cand, e) : null;
      if (!lv) {
        search = cand;
        continue;
      }
      this.#data(chunk, from, lbStart);
      if (!this.#verdict) this.#boundary(lv.level, lv.close);
      return e + 1;
    }
    // the tail: a line break, or a line break and one dash, may start a delimiter in the next chunk
    const last = chunk[end - 1]!;
    if (last === LF) {
      const keep = end - 1 > from && chunk[end - 2] === CR ? end - 2 : end - 1;
      this.#data(chunk, from, keep);
      this.#holdBytes(chunk, keep, end, -1);
      this.#hold = 2;
      return end;
    }
    if (last === CR) {
      this.#data(chunk, from, end - 1);
      this.#holdBytes(chunk, end - 1, end, -1);
      this.#hold = 1;
      return end;
    }
    if (last === DASH && end - 2 >= from && chunk[end - 2] === LF) {
      const keep = end - 3 >= from && chunk[end - 3] === CR ? end - 3 : end - 2;
      this.#data(chunk, from, keep);
      this.#holdBytes(chunk, keep, end, end - 1 - keep);
      return end;
    }
    this.#data(chunk, from, end);
    return end;
  }

  /** Copies chunk[from, to) into the held bytes; candAt >= 0 marks where a candidate line starts. */
  #holdBytes(chunk: Buffer, from: number, to: number, candAt: number): void {
    chunk.copy(this.#held, 0, from, to);
    this.#heldLen = to - from;
    if (candAt >= 0) {
      this.#candAt = candAt;
      this.#hold = 3;
    }
  }

  /**
   * A candidate line is held: takes bytes of it from chunk[i..] up to its line
   * feed and decides. Returns where the body continues, or -1 when the chunk
   * ended before the line did.
   */
  #continueCandidate(chunk: Buffer, i: number): number {
    const end = chunk.length;
    const room = this.#candAt + CANDIDATE_MAX - this.#heldLen;
    const e = chunk.indexOf(LF, i);
    const lineEnd = e < 0 ? end : e;
    if (lineEnd - i > room) {
      // too long to be a delimiter: it is data
      this.#releaseHeld();
      return i;
    }
    chunk.copy(this.#held, this.#heldLen, i, lineEnd);
    this.#heldLen += lineEnd - i;
    // an early mismatch: the first two bytes must be "--"
    const got = this.#heldLen - this.#candAt;
    if (got >= 2 && this.#held[this.#candAt + 1] !== DASH) {
      this.#heldLen -= lineEnd - i;
      this.#releaseHeld();
      return i;
    }
    if (e < 0) return -1;
    const lv = this.#classify(this.#held, this.#candAt, this.#heldLen);
    if (!lv) {
      // not a delimiter: the held line break and the line so far are data; the line feed starts the next search
      this.#heldLen -= lineEnd - i;
      if (e === i && this.#heldLen > 0 && this.#held[this.#heldLen - 1] === CR) {
        // the line's CR ended the last chunk and its LF starts this one: keep the CR, it may belong to a delimiter
        this.#heldLen--;
        this.#releaseHeld();
        this.#held[0] = CR;
        this.#heldLen = 1;
        this.#hold = 1;
        return i;
      }
      this.#releaseHeld();
      return i;
    }
    this.#heldLen = 0;
    this.#hold = 0;
    this.#boundary(lv.level, lv.close);
    return e + 1;
  }

  /** Hands held bytes on as data of the current part. */
  #releaseHeld(): void {
    if (this.#heldLen) this.#data(this.#held, 0, this.#heldLen);
    this.#heldLen = 0;
    this.#hold = 0;
  }

  /**
   * Is line[s, e) (without its line feed) a delimiter of an open multipart?
   * The innermost level that matches wins.
   */
  #classify(line: Buffer, s: number, e: number): { level: number; close: boolean } | null {
    if (e - s < 2 || line[s] !== DASH || line[s + 1] !== DASH) return null;
    // strip CR and transport padding
    while (e > s && (line[e - 1] === CR || line[e - 1] === 0x20 || line[e - 1] === 0x09)) e--;
    for (let k = this.#stack.length - 1; k >= 0; k--) {
      const b = this.#stack[k]!.boundary;
      const after = s + 2 + b.length;
      if (after > e) continue;
      if (line.compare(b, 0, b.length, s + 2, after) !== 0) continue;
      if (after === e) return { level: k, close: false };
      if (after + 2 === e && line[after] === DASH && line[after + 1] === DASH) return { level: k, close: true };
    }
    return null;
  }

  /** A delimiter of stack level `level` was seen. */
  #boundary(level: number, close: boolean): void {
    this.#endPart();
    if (this.#verdict) return;
    // inner levels that were never closed, and attached messages, end here
    this.#stack.length = level + 1;
    this.#depth = this.#stack[level]!.depth;
    this.#heldLen = 0;
    this.#hold = 0;
    if (close) {
      this.#stack.pop();
      this.#depth--;
      // the epilogue belongs to the enclosing body
      this.#mode = Mode.body; // the epilogue: not a part
      this.#hold = 2;
      return;
    }
    if (++this.#parts > this.#limits.maxParts) {
      this.#refuse(550, mimeTooComplexText, `more than ${this.#limits.maxParts} parts`);
      return;
    }
    this.#mode = Mode.header;
    this.#defaultType = this.#stack[level]!.digest ? 'message/rfc822' : 'text/plain';
  }

  #endPart(): void {
    const part = this.#part;
    if (!part) return;
    let n = 0;
    if (this.#b64) n = this.#b64.end(SCRATCH);
    else if (this.#qp) n = this.#qp.end(SCRATCH);
    if (n) this.#emit(part, SCRATCH, 0, n);
    this.#part = null;
    this.#b64 = null;
    this.#qp = null;
    if (this.#verdict) return;
    for (const l of this.#listeners) if (l.partEnd && this.#check(l.partEnd(part))) return;
  }

  /** Content bytes src[from, to) of the current part, if any: decoded when the part is encoded. */
  #data(src: Buffer, from: number, to: number): void {
    const part = this.#part;
    if (!part || to <= from || this.#verdict) return;
    const dec = this.#b64 ?? this.#qp;
    if (!dec) {
      this.#emit(part, src, from, to);
      return;
    }
    for (let s = from; s < to && !this.#verdict; s += DECODE_SLICE) {
      const n = dec.decode(src, s, Math.min(to, s + DECODE_SLICE), SCRATCH);
      if (n) this.#emit(part, SCRATCH, 0, n);
    }
  }

  #emit(part: PartInfo, data: Uint8Array, start: number, end: number): void {
    for (const l of this.#listeners) if (l.partData && this.#check(l.partData(part, data, start, end))) return;
  }

  #check(v: Verdict | null): boolean {
    if (v && !this.#verdict) this.#verdict = v;
    return v !== null;
  }

  #refuse(code: number, text: string, reason: string): void {
    if (!this.#verdict) this.#verdict = { stage: this.name, code, text, reason };
  }
}
