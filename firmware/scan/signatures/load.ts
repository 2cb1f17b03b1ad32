/*
 * scan/signatures/load.ts: reads ClamAV signature files into a SignatureSet,
 * and holds the built-in EICAR test signature.
 *
 * Formats (by file extension):
 *  - .ndb  Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]
 *          Target types 0 (any), 4 (mail) and 7 (ASCII text) are kept; they are
 *          matched against every scanned stream as is (moat does not apply
 *          ClamAV's text normalisation for type 7). Other target types (PE, OLE2,
 *          HTML, graphics, ELF, …) are skipped. Offsets `*`, `n` and `n,m` are
 *          kept; EP+n, EOF-n, Sx+n, SL+n, SEx and VI need a file-format parser and
 *          are skipped. See hex.ts for the hex syntax that is supported.
 *  - .hdb  MD5:Size:Name[:MinFL]
 *  - .hsb  Hash:Size:Name[:MinFL] with a SHA-1 or SHA-256 (or MD5) hash, by length.
 *          Size is a byte count or `*` (any size).
 * Empty lines and lines starting with `#` are ignored; a CR before the LF is
 * allowed. Any malformed line fails the whole load with an error naming
 * file:line; a valid signature that this engine cannot use is skipped and
 * counted in set.warnings (one line per file and reason, with the first place).
 *
 * Must never: accept a file it half understood, read an unbounded file or line
 * (MAX_FILE, MAX_LINE), or block the event loop for long (it yields between
 * slices of lines). Called by the scan pipeline at start-up and on reload.
 */
import { readFile, stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseHexSignature, SignatureSyntaxError, UnsupportedSignature, MAX_NUMBER } from './hex.ts';
import type { BodySignature, HashSignature, SignatureSet } from './types.ts';

export const MAX_FILE = 512 * 1024 * 1024;
export const MAX_LINE = 128 * 1024;
export const MAX_NAME = 256;
const SLICE_MS = 4;

const EICAR_TEXT = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
/** The 68-byte EICAR anti-virus test string. */
export const EICAR_BYTES: Buffer = Buffer.from(EICAR_TEXT, 'latin1');

export const EICAR: BodySignature = Object.freeze({ name: 'Eicar-Test-Signature', hex: EICAR_BYTES.toString('hex'), offset: '*' as const });

/** A body signature matching these exact bytes anywhere (for content rules' body literals). */
export function literalSignature(name: string, bytes: Buffer): BodySignature {
  if (!name) throw new Error('literalSignature: a name is needed');
  if (!Buffer.isBuffer(bytes) || bytes.length < 2) throw new Error(`literalSignature ${name}: a body literal needs at least 2 bytes`);
  if (bytes.length * 2 > 65536) throw new Error(`literalSignature ${name}: a body literal may have at most 32768 bytes`);
  return { name, hex: bytes.toString('hex'), offset: '*' };
}

export class SignatureFileError extends Error {
  readonly file: string;
  readonly line: number;
  constructor(file: string, line: number, message: string) {
    super(line > 0 ? `${file}:${line}: ${message}` : `${file}: ${message}`);
    this.file = file;
    this.line = line;
  }
}

type Skips = Map<string, { n: number; line: number }>;

function skip(skips: Skips, reason: string, line: number): void {
  const s = skips.get(reason);
  if (s) s.n++;
  else skips.set(reason, { n: 1, line });
}

function checkName(name: string | undefined): string {
  if (!name) throw new Error('empty signature name');
  if (name.length > MAX_NAME) throw new Error(`signature name longer than ${MAX_NAME} characters`);
  if (!/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(name)) throw new Error('signature name with control characters, spaces at its ends or non-ASCII');
  return name;
}

function checkInt(s: string | undefined, what: string): number {
  if (s === undefined || !/^\d{1,10}$/.test(s) || Number(s) > MAX_NUMBER) throw new Error(`bad ${what} ${JSON.stringify(s)}`);
  return Number(s);
}

const OTHER_OFFSET = /^(EP[+-]\d+|EOF-\d+|S\d+[+-]\d+|SL[+-]\d+|SE\d+|VI)(,\d+)?$/;

function ndbLine(line: string, out: BodySignature[], skips: Skips, no: number): void {
  const f = line.split(':');
  if (f.length < 4 || f.length > 6) throw new Error(`expected Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]], got ${f.length} fields`);
  const name = checkName(f[0]);
  const type = checkInt(f[1], 'target type');
  const off = f[2]!;
  if (f[4] !== undefined) checkInt(f[4], 'MinFL');
  if (f[5] !== undefined) checkInt(f[5], 'MaxFL');
  let offset: BodySignature['offset'];
  let m: RegExpExecArray | null;
  if (off === '*') offset = '*';
  else if (/^\d+$/.test(off)) offset = checkInt(off, 'offset');
  else if ((m = /^(\d+),(\d+)$/.exec(off))) offset = [checkInt(m[1], 'offset'), checkInt(m[2], 'offset range')];
  else if ((m = OTHER_OFFSET.exec(off))) {
    // still check the signature itself, so a broken line is an error either way
    try {
      parseHexSignature(f[3]!);
    } catch (e) {
      if (e instanceof SignatureSyntaxError) throw e;
    }
    skip(skips, `offset ${m[1]!.replace(/\d+/g, 'n')} (needs a file-format parser)`, no);
    return;
  } else throw new Error(`bad offset ${JSON.stringify(off)}`);
  const hex = f[3]!;
  try {
    parseHexSignature(hex, offset);
  } catch (e) {
    if (e instanceof UnsupportedSignature) {
      skip(skips, e.message, no);
      return;
    }
    throw e;
  }
  if (type !== 0 && type !== 4 && type !== 7) {
    skip(skips, `target type ${type} (only 0, 4 and 7 are scanned)`, no);
    return;
  }
  out.push({ name: flat(name), hex: flat(hex), offset });
}

const KIND_BY_LENGTH: Record<number, HashSignature['kind']> = { 32: 'md5', 40: 'sha1', 64: 'sha256' };

/**
 * A string of its own: a substring of the line would keep the whole line
 * alive, and with 300 000 hash lines that tripled the garbage collector's
 * pauses while loading (longest event-loop block ~100 ms -> ~30 ms).
 */
function flat(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}

function hashLine(line: string, hsb: boolean, out: HashSignature[]): void {
  const f = line.split(':');
  if (f.length < 3 || f.length > 4) throw new Error(`expected Hash:Size:Name[:MinFL], got ${f.length} fields`);
  const digest = f[0]!.toLowerCase();
  const kind = KIND_BY_LENGTH[digest.length];
  if (!/^[0-9a-f]+$/.test(digest) || !kind || (!hsb && kind !== 'md5')) {
    throw new Error(hsb ? 'hash must be 32, 40 or 64 hex digits (MD5, SHA-1, SHA-256)' : 'hash must be 32 hex digits (MD5)');
  }
  const sz = f[1]!;
  let size: number | '*';
  if (sz === '*') size = '*';
  else if (/^\d{1,15}$/.test(sz)) size = Number(sz);
  else throw new Error(`bad size ${JSON.stringify(sz)}`);
  const name = checkName(f[2]);
  if (f[3] !== undefined) checkInt(f[3], 'MinFL');
  out.push({ name: flat(name), kind, digest: flat(digest), size });
}

/**
 * Loads signature files by extension (.ndb, .hdb, .hsb). The set always
 * starts with the built-in EICAR signature.
 */
export async function loadSignatureFiles(paths: string[]): Promise<SignatureSet> {
  const set: SignatureSet = { body: [EICAR], hashes: [], warnings: [] };
  let sliceStart = performance.now();
  for (const file of paths) {
    const ext = extname(file).toLowerCase();
    if (ext !== '.ndb' && ext !== '.hdb' && ext !== '.hsb') {
      throw new SignatureFileError(file, 0, `unknown signature file type ${JSON.stringify(ext)} (expected .ndb, .hdb or .hsb)`);
    }
    let data: Buffer;
    try {
      const st = await stat(file);
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > MAX_FILE) throw new Error(`larger than ${MAX_FILE} bytes`);
      data = await readFile(file);
    } catch (e) {
      throw new SignatureFileError(file, 0, `cannot read: ${(e as Error).message}`);
    }
    const skips: Skips = new Map();
    let no = 0;
    let bytes = 0;
    for (let at = 0; at < data.length; ) {
      no++;
      let nl = data.indexOf(10, at);
      if (nl < 0) nl = data.length;
      let end = nl;
      if (end > at && data[end - 1] === 13) end--;
      if (end - at > MAX_LINE) throw new SignatureFileError(file, no, `line longer than ${MAX_LINE} bytes`);
      for (let i = at; i < end; i++) {
        const c = data[i]!;
        if (c < 0x20 || c > 0x7e) throw new SignatureFileError(file, no, `byte 0x${c.toString(16).padStart(2, '0')} in column ${i - at + 1} (signature files are printable ASCII)`);
      }
      const line = data.toString('latin1', at, end);
      bytes += nl + 1 - at;
      at = nl + 1;
      if (line === '' || line.startsWith('#')) continue;
      try {
        if (ext === '.ndb') ndbLine(line, set.body, skips, no);
        else hashLine(line, ext === '.hsb', set.hashes);
      } catch (e) {
        throw new SignatureFileError(file, no, (e as Error).message);
      }
      if (((no & 255) === 0 || bytes > 1 << 20) && performance.now() - sliceStart >= SLICE_MS) {
        await new Promise<void>((r) => setImmediate(r));
        sliceStart = performance.now();
        bytes = 0;
      }
    }
    for (const [reason, s] of skips) set.warnings.push(`${file}: ${s.n} signature(s) skipped: ${reason} (first at ${file}:${s.line})`);
  }
  return set;
}
