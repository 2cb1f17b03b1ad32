/*
 * scan/signatures/hex.ts: parses the hex body signatures of ClamAV's .ndb
 * format into patterns the matcher can compile: a list of fixed-length parts
 * (bytes with per-byte masks) separated by gaps of min..max bytes.
 *
 * Supported: hex bytes, `??` (any byte), nibble wildcards `a?` / `?a`, `*`,
 * `{n}`, `{n-m}`, `{-m}`, `{n-}`, `[n-m]` (a gap, as ClamAV's byte range), and
 * alternations `(aa|bbcc|…)` of plain hex literals (equal length or not): a
 * signature with alternations is expanded into one pattern per combination,
 * at most MAX_VARIANTS of them. Small fixed gaps (`{n}` with n <= INLINE_GAP)
 * stay inside a part as any-bytes; longer parts are cut at MAX_PART bytes into
 * pieces joined by a gap of exactly 0.
 *
 * Two kinds of refusal: SignatureSyntaxError for text that is not a valid
 * signature at all (the loader turns it into an error naming file:line), and
 * UnsupportedSignature for valid ClamAV constructs this engine does not
 * implement (negated alternations `!(…)`, alternations with wildcards, `(B)`
 * `(L)` `(W)` boundaries, leading or trailing gaps, a part without two literal
 * bytes in a row, too many variants or parts); the loader skips those and
 * counts them in a warning.
 *
 * Must never: throw anything else on hostile text, or build unbounded output
 * (input length, numbers, variants and parts are all capped). Called by
 * load.ts (validation while loading) and compile.ts.
 */

export class SignatureSyntaxError extends Error {}
export class UnsupportedSignature extends Error {}

/** A fixed-length piece of a signature: byte j matches when (b & masks[j]) === vals[j]. */
export type Part = { vals: Uint8Array; masks: Uint8Array };

/**
 * A signature (one variant of it): parts[0], then for each i >= 1 a gap of
 * gaps[i-1].min..gaps[i-1].max bytes (max may be Infinity) and parts[i].
 * parts[0] must start at an absolute stream offset in startLo..startHi.
 */
export type Pattern = {
  parts: Part[];
  gaps: Array<{ min: number; max: number }>;
  startLo: number;
  startHi: number;
};

export const MAX_HEX_CHARS = 1 << 16;
export const MAX_NUMBER = 1_000_000_000;
export const MAX_VARIANTS = 64;
export const MAX_PARTS = 256;
export const MAX_PART = 128;
export const INLINE_GAP = 16;
/** The shortest literal run every part needs, to be found by the matcher. */
export const MIN_RUN = 2;

/** A byte test is a number: value | mask << 8 (no object per byte: large sets compile without garbage). */
type Tok = number | { k: 'g'; min: number; max: number } | { k: 'alt'; opts: Uint8Array[] };
const ANY = 0;
const byte = (v: number, m: number) => (v & m) | (m << 8);

const HEX = '0123456789abcdef';

function hexVal(c: string): number {
  return HEX.indexOf(c);
}

function num(s: string, what: string): number {
  if (!/^\d{1,10}$/.test(s)) throw new SignatureSyntaxError(`bad number in ${what}`);
  const n = Number(s);
  if (n > MAX_NUMBER) throw new SignatureSyntaxError(`number too large in ${what}`);
  return n;
}

function parseRange(body: string, open: string, close: string): { min: number; max: number } {
  const what = `${open}${body}${close}`;
  let m: RegExpExecArray | null;
  if (open === '{' && (m = /^(\d+)$/.exec(body))) {
    const n = num(m[1]!, what);
    return { min: n, max: n };
  }
  if ((m = /^(\d+)-(\d+)$/.exec(body))) {
    const a = num(m[1]!, what);
    const b = num(m[2]!, what);
    if (a > b) throw new SignatureSyntaxError(`empty range ${what}`);
    return { min: a, max: b };
  }
  if (open === '{' && (m = /^-(\d+)$/.exec(body))) return { min: 0, max: num(m[1]!, what) };
  if (open === '{' && (m = /^(\d+)-$/.exec(body))) return { min: num(m[1]!, what), max: Infinity };
  throw new SignatureSyntaxError(`malformed gap ${what}`);
}

function tokenize(src: string): Tok[] {
  const s = src.toLowerCase();
  const out: Tok[] = [];
  let p = 0;
  while (p < s.length) {
    const c = s[p]!;
    if (c === '*') {
      out.push({ k: 'g', min: 0, max: Infinity });
      p++;
    } else if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      const q = s.indexOf(close, p + 1);
      if (q < 0) throw new SignatureSyntaxError(`unterminated '${c}' at position ${p}`);
      out.push({ k: 'g', ...parseRange(s.slice(p + 1, q), c, close) });
      p = q + 1;
    } else if (c === '!') {
      if (s[p + 1] !== '(') throw new SignatureSyntaxError(`unexpected '!' at position ${p}`);
      if (s.indexOf(')', p) < 0) throw new SignatureSyntaxError(`unterminated '(' at position ${p + 1}`);
      throw new UnsupportedSignature('negated alternation !(…)');
    } else if (c === '(') {
      const q = s.indexOf(')', p + 1);
      if (q < 0) throw new SignatureSyntaxError(`unterminated '(' at position ${p}`);
      const body = s.slice(p + 1, q);
      if (body === 'b' || body === 'l' || body === 'w') throw new UnsupportedSignature(`boundary (${body.toUpperCase()})`);
      if (body.includes('(')) throw new SignatureSyntaxError(`nested '(' at position ${p}`);
      const opts: Uint8Array[] = [];
      for (const alt of body.split('|')) {
        if (alt === '') throw new SignatureSyntaxError(`empty alternative at position ${p}`);
        if (!/^[0-9a-f?*{}\[\]\-]+$/.test(alt)) throw new SignatureSyntaxError(`unexpected character in alternation at position ${p}`);
        if (!/^[0-9a-f]+$/.test(alt)) throw new UnsupportedSignature('alternation with wildcards');
        if (alt.length % 2) throw new SignatureSyntaxError(`odd number of hex digits in alternation at position ${p}`);
        opts.push(Buffer.from(alt, 'hex'));
      }
      if (opts.length < 2) throw new SignatureSyntaxError(`alternation with one alternative at position ${p}`);
      out.push({ k: 'alt', opts });
      p = q + 1;
    } else {
      const d = s[p + 1];
      if (d === undefined) throw new SignatureSyntaxError(`odd number of hex digits`);
      const hi = hexVal(c);
      const lo = hexVal(d);
      if ((hi < 0 && c !== '?') || (lo < 0 && d !== '?')) {
        const bad = hi < 0 && c !== '?' ? p : p + 1;
        throw new SignatureSyntaxError(`unexpected character ${JSON.stringify(s[bad])} at position ${bad}`);
      }
      if (c === '?' && d === '?') out.push(ANY);
      else if (c === '?') out.push(byte(lo, 0x0f));
      else if (d === '?') out.push(byte(hi << 4, 0xf0));
      else out.push(byte((hi << 4) | lo, 0xff));
      p += 2;
    }
  }
  return out;
}

function expand(toks: Tok[]): Tok[][] {
  let count = 1;
  for (const t of toks) if (typeof t !== 'number' && t.k === 'alt') count *= t.opts.length;
  if (count === 1) return [toks];
  if (count > MAX_VARIANTS) throw new UnsupportedSignature(`more than ${MAX_VARIANTS} alternation combinations`);
  let variants: Tok[][] = [[]];
  for (const t of toks) {
    if (typeof t === 'number' || t.k !== 'alt') {
      for (const v of variants) v.push(t);
      continue;
    }
    const next: Tok[][] = [];
    for (const v of variants) {
      for (const o of t.opts) next.push([...v, ...Array.from(o, (b) => byte(b, 0xff))]);
    }
    variants = next;
  }
  return variants;
}

/** Longest run of fully fixed bytes in masks[from..to). */
export function longestRun(masks: Uint8Array, from = 0, to = masks.length): number {
  let best = 0;
  let run = 0;
  for (let j = from; j < to; j++) {
    run = masks[j] === 0xff ? run + 1 : 0;
    if (run > best) best = run;
  }
  return best;
}

function build(toks: Tok[], startLo: number, startHi: number): Pattern {
  // merge adjacent gaps; turn small fixed gaps between bytes into any-bytes
  const items: Tok[] = [];
  for (const t of toks) {
    const last = items.at(-1);
    if (typeof t !== 'number' && t.k === 'g' && typeof last === 'object' && last.k === 'g') {
      items[items.length - 1] = { k: 'g', min: last.min + t.min, max: last.max + t.max };
    } else items.push(t);
  }
  const isGap = (t: Tok | undefined) => typeof t === 'object' && t.k === 'g';
  if (isGap(items[0]) || isGap(items.at(-1))) throw new UnsupportedSignature('leading or trailing gap');
  const raw: number[][] = [[]];
  const gaps: Array<{ min: number; max: number }> = [];
  for (const t of items) {
    if (typeof t === 'number') raw.at(-1)!.push(t);
    else if (t.k === 'g' && t.min === t.max && t.min <= INLINE_GAP) {
      for (let i = 0; i < t.min; i++) raw.at(-1)!.push(ANY);
    } else if (t.k === 'g') {
      gaps.push({ min: t.min, max: t.max });
      raw.push([]);
    }
  }
  // a part of nothing but any-bytes between two gaps becomes part of the gap
  for (let i = 1; i < raw.length - 1; i++) {
    if (raw[i]!.every((b) => b === ANY)) {
      const k = raw[i]!.length;
      const a = gaps[i - 1]!;
      const b = gaps[i]!;
      gaps.splice(i - 1, 2, { min: a.min + k + b.min, max: a.max + k + b.max });
      raw.splice(i, 1);
      i--;
    }
  }
  // cut long parts into pieces joined by a gap of exactly 0
  const parts: Part[] = [];
  const outGaps: Array<{ min: number; max: number }> = [];
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i]!;
    if (i > 0) outGaps.push(gaps[i - 1]!);
    for (let at = 0; at < r.length; at += MAX_PART) {
      if (at > 0) outGaps.push({ min: 0, max: 0 });
      const n = Math.min(MAX_PART, r.length - at);
      const vals = new Uint8Array(n);
      const masks = new Uint8Array(n);
      for (let j = 0; j < n; j++) {
        const b = r[at + j]!;
        vals[j] = b & 0xff;
        masks[j] = b >> 8;
      }
      parts.push({ vals, masks });
    }
  }
  if (parts.length > MAX_PARTS) throw new UnsupportedSignature(`more than ${MAX_PARTS} parts`);
  for (const p of parts) {
    if (longestRun(p.masks) < MIN_RUN) throw new UnsupportedSignature(`a part without ${MIN_RUN} literal bytes in a row`);
  }
  return { parts, gaps: outGaps, startLo, startHi };
}

/**
 * Parses one hex signature (ndb syntax) into its patterns (one per
 * alternation combination). offset: '*' (anywhere), n (the signature starts at
 * byte n of the stream) or [n, m] (it starts in n..n+m, ClamAV's `n,m`).
 */
export function parseHexSignature(hex: string, offset: '*' | number | readonly [number, number] = '*'): Pattern[] {
  if (typeof hex !== 'string' || hex.length === 0) throw new SignatureSyntaxError('empty signature');
  if (hex.length > MAX_HEX_CHARS) throw new SignatureSyntaxError(`signature longer than ${MAX_HEX_CHARS} characters`);
  let lo = 0;
  let hi = Infinity;
  if (typeof offset === 'number') {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new SignatureSyntaxError(`bad offset ${offset}`);
    lo = hi = offset;
  } else if (Array.isArray(offset)) {
    const [a, b] = offset as readonly [number, number];
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < 0 || b < 0) throw new SignatureSyntaxError(`bad offset ${a},${b}`);
    lo = a;
    hi = a + b;
  } else if (offset !== '*') throw new SignatureSyntaxError(`bad offset ${String(offset)}`);
  return expand(tokenize(hex)).map((t) => build(t, lo, hi));
}
