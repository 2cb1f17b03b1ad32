/*
 * scripts/bench/signatures.ts: throughput of the signature scanner
 * (firmware/scan/signatures/) in MB/s (10^6 bytes/s) on ~100 MB of mail-like,
 * text and random data in 64 KiB chunks, with 1, 1 000 and 10 000 random
 * signatures, against a bare pass-through loop (touching every 4 KiB) and one
 * Buffer.indexOf measured in the same run (each figure the median of three
 * runs); and the build time of each database
 * with the longest time the event loop was blocked while it compiled (measured
 * from outside, by a chain of setImmediate callbacks).
 *
 * Run alone: node_modules/.bin/node scripts/bench/signatures.ts [MB]
 * npm run bench:scan calls benchSignatures(). Must never: run in the tests.
 */
import { compileSignatures } from '../../firmware/scan/signatures/compile.ts';
import { EICAR } from '../../firmware/scan/signatures/load.ts';
import type { BodySignature, SignatureDb } from '../../firmware/scan/signatures/types.ts';
import { mailData, randomData, randomSignatures, textData } from './sigdata.ts';

export type Row = { name: string; sigs: number; data: string; mbps: number; buildMs?: number; maxBlockMs?: number; matches?: number };

const CHUNK = 64 * 1024;
const SAMPLE = 16 * 1024 * 1024;

/** Compiles while measuring the longest gap between two turns of the event loop. */
async function timedCompile(body: BodySignature[]): Promise<{ db: SignatureDb; buildMs: number; maxBlockMs: number }> {
  let done = false;
  let last = performance.now();
  let maxBlock = 0;
  const tick = () => {
    const now = performance.now();
    if (now - last > maxBlock) maxBlock = now - last;
    last = now;
    if (!done) setImmediate(tick);
  };
  setImmediate(tick);
  const t0 = performance.now();
  const db = await compileSignatures({ body, hashes: [], warnings: [] });
  const buildMs = performance.now() - t0;
  done = true;
  await new Promise((r) => setImmediate(r));
  return { db, buildMs, maxBlockMs: maxBlock };
}

/**
 * n random signatures none of which occurs in the data (a scan that matched
 * would stop early and look faster): those the scanner finds are replaced.
 */
export async function absentSignatures(n: number, data: Buffer[], kind: 'binary' | 'text' | 'short' = 'binary'): Promise<BodySignature[]> {
  let sigs = randomSignatures(n, 5, kind);
  for (let round = 0; round < 50; round++) {
    const db = await compileSignatures({ body: sigs, hashes: [], warnings: [] });
    const found = new Set<string>();
    for (const d of data) {
      const sc = db.newScanner();
      for (let off = 0; off < d.length; off += CHUNK) {
        const m = sc.push(d, off, Math.min(d.length, off + CHUNK));
        if (m !== null) {
          found.add(m);
          sc.reset();
        }
      }
    }
    if (found.size === 0) return sigs;
    const fresh = randomSignatures(found.size, 1000 + round, kind);
    let k = 0;
    sigs = sigs.map((s) => (found.has(s.name) ? { ...fresh[k++]!, name: s.name } : s));
  }
  throw new Error('could not find signatures absent from the data');
}

/** The median of three timed runs over `total` bytes, after an untimed warm-up (the machine is shared). */
function passes(total: number, data: Buffer, fn: (off: number, end: number) => void): number {
  for (let off = 0; off < Math.min(data.length, 8 << 20); off += CHUNK) fn(off, Math.min(data.length, off + CHUNK));
  const runs = [once(total, data, fn), once(total, data, fn), once(total, data, fn)].sort((a, b) => a - b);
  return runs[1]!;
}

function once(total: number, data: Buffer, fn: (off: number, end: number) => void): number {
  const t0 = performance.now();
  let done = 0;
  while (done < total) {
    for (let off = 0; off < data.length && done < total; off += CHUNK) {
      const end = Math.min(data.length, off + CHUNK);
      fn(off, end);
      done += end - off;
    }
  }
  return done / 1e6 / ((performance.now() - t0) / 1000);
}

export async function benchSignatures(opts: { mb?: number } = {}): Promise<Row[]> {
  const total = (opts.mb ?? 100) * 1e6;
  const sets: Record<string, Buffer> = {
    'mail-like': mailData(SAMPLE),
    text: textData(SAMPLE),
    random: randomData(SAMPLE),
  };
  const rows: Row[] = [];
  const pattern = Buffer.from('not-in-the-data:7f3a9c', 'latin1');
  for (const [name, data] of Object.entries(sets)) {
    let sink = 0;
    rows.push({
      name: 'pass-through (touch every 4 KiB)',
      sigs: 0,
      data: name,
      mbps: passes(total, data, (off, end) => {
        for (let i = off; i < end; i += 4096) sink += data[i]!;
      }),
    });
    rows.push({
      name: 'Buffer.indexOf, one pattern',
      sigs: 1,
      data: name,
      mbps: passes(total, data, (off, end) => {
        sink += data.subarray(off, end).indexOf(pattern);
      }),
    });
    if (sink === 0.5) console.log(sink); // keep the loops from being optimised away
  }
  const runs: Array<[number, 'binary' | 'text' | 'short']> = [[1, 'binary'], [1000, 'binary'], [10000, 'binary'], [1000, 'text'], [1000, 'short']];
  for (const [n, kind] of runs) {
    let body = n === 1 ? [EICAR] : await absentSignatures(n, Object.values(sets), kind === 'short' ? 'binary' : kind);
    // 'short': the 1 000 binary signatures and 10 whose fixed runs are 2-3 bytes long
    if (kind === 'short') body = [...body, ...(await absentSignatures(10, Object.values(sets), 'short'))];
    const { db, buildMs, maxBlockMs } = await timedCompile(body);
    let first = true;
    for (const [name, data] of Object.entries(sets)) {
      if (kind === 'text' && name === 'random') continue;
      const sc = db.newScanner();
      let matches = 0;
      sc.reset();
      const mbps = passes(total, data, (off, end) => {
        if (sc.push(data, off, end) !== null) {
          matches++;
          sc.reset();
        }
      });
      const what = n === 1 ? 'EICAR only' : kind === 'short' ? 'binary + 10 with 2-byte runs' : `${kind} signatures`;
      rows.push({ name: `scanner, ${what}`, sigs: body.length, data: name, mbps, ...(first ? { buildMs, maxBlockMs } : {}), matches });
      first = false;
    }
  }
  return rows;
}

export function printRows(rows: Row[]): void {
  const head = ['matcher', 'sigs', 'data', 'MB/s', 'build ms', 'max block ms', 'matches'];
  const lines = rows.map((r) => [
    r.name,
    String(r.sigs),
    r.data,
    r.mbps.toFixed(0),
    r.buildMs === undefined ? '' : r.buildMs.toFixed(0),
    r.maxBlockMs === undefined ? '' : r.maxBlockMs.toFixed(1),
    r.matches === undefined ? '' : String(r.matches),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (l: string[]) => `| ${l.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  console.log(fmt(head));
  console.log(`|${w.map((x) => '-'.repeat(x + 2)).join('|')}|`);
  for (const l of lines) console.log(fmt(l));
}

if (import.meta.main) {
  const mb = Number(process.argv[2] ?? 100);
  if (!(mb > 0)) throw new Error('usage: signatures.ts [MB]');
  printRows(await benchSignatures({ mb }));
}
