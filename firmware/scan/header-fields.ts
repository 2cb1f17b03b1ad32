/*
 * scan/header-fields.ts: turns a header block (the bytes up to the blank line)
 * into fields, and reads what the scanners need from a part's fields: media
 * type and parameters, disposition, transfer encoding and file name (RFC 2045,
 * RFC 2183, RFC 2231 parameter continuations and charsets, RFC 2047 encoded
 * words, through libmime, the parser of nodemailer's stack).
 *
 * Must never: read past the block it is given, return more fields than the
 * caller's limit, throw on hostile input. Header blocks are bounded by the MIME
 * walker before they reach here. Called by scan/mime.ts.
 */
import libmime from 'libmime';

export type HeaderField = {
  /** Lower-case field name. */
  name: string;
  /** Unfolded value, leading white space removed (UTF-8 decoded; RFC 6532 allows it). */
  value: string;
};

export type Encoding = 'identity' | 'base64' | 'quoted-printable';

export type PartHeaders = {
  /** Lower-case media type, `text/plain` when absent or unparseable (RFC 2045 §5.2). */
  type: string;
  params: Record<string, string>;
  disposition: string | null;
  filename: string | null;
  encoding: Encoding;
};

/**
 * Splits a header block into fields. Continuation lines (starting with white
 * space) are unfolded into the field before them; a line without a colon is
 * ignored. Returns null when the block has more than `maxFields` fields.
 */
export function splitFields(block: Buffer, maxFields: number): HeaderField[] | null {
  const fields: HeaderField[] = [];
  const text = block.toString('utf8');
  let current: HeaderField | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') continue;
    const c = line.charCodeAt(0);
    if (c === 0x20 || c === 0x09) {
      if (current) current.value += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) {
      current = null;
      continue;
    }
    if (fields.length >= maxFields) return null;
    current = { name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1).trim() };
    fields.push(current);
  }
  return fields;
}

function firstValue(fields: readonly HeaderField[], name: string): string | null {
  for (const f of fields) if (f.name === name) return f.value;
  return null;
}

function decodeName(s: string | undefined): string | null {
  if (s === undefined || s === '') return null;
  try {
    // parameters already decoded from RFC 2231 form keep their text; encoded words are decoded here
    return libmime.decodeWords(s);
  } catch {
    return s;
  }
}

/** What the scanners need from a part's header fields. */
export function readPartHeaders(fields: readonly HeaderField[], defaultType = 'text/plain'): PartHeaders {
  let type = defaultType;
  let params: Record<string, string> = {};
  const ct = firstValue(fields, 'content-type');
  if (ct !== null) {
    const parsed = libmime.parseHeaderValue(ct);
    const v = String(parsed.value ?? '').toLowerCase().trim();
    if (/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(v)) {
      type = v;
      params = lowerKeys(parsed.params);
    }
  }
  let disposition: string | null = null;
  let dparams: Record<string, string> = {};
  const cd = firstValue(fields, 'content-disposition');
  if (cd !== null) {
    const parsed = libmime.parseHeaderValue(cd);
    disposition = String(parsed.value ?? '').toLowerCase().trim() || null;
    dparams = lowerKeys(parsed.params);
  }
  const filename = decodeName(dparams.filename) ?? decodeName(params.name);
  const cte = (firstValue(fields, 'content-transfer-encoding') ?? '').toLowerCase().trim();
  const encoding: Encoding = cte === 'base64' ? 'base64' : cte === 'quoted-printable' ? 'quoted-printable' : 'identity';
  return { type, params, disposition, filename, encoding };
}

function lowerKeys(p: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!p) return out;
  for (const [k, v] of Object.entries(p)) if (typeof v === 'string') out[k.toLowerCase()] = v;
  return out;
}
