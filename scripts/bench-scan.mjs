#!/usr/bin/env node
// Scan pipeline benchmark.
//
// Part 0: the signature matcher alone (scripts/bench/signatures.ts): text,
// base64-heavy mail and random data with 1, 1 000 and 10 000 signatures.
//
// Part 1, in this process: MB/s (10^6 bytes/s) of each scan stage alone and of
// the whole chain over a ~96 MB mail-like message (text, HTML, base64 and
// quoted-printable attachments) in 64 KiB chunks, as smtp-server hands them
// on, against a bare pass-through (the chain with no stages) measured in the
// same run. Signature rows use 1, 1 000 and 10 000 random signatures.
//
// Part 2, end to end: peak RSS of `node dist/moatd.js` (full scan chain on)
// while 20 sessions each stream a 50 MB MIME message (Postfix's smtp-source
// -F) to it, relayed to smtp-sink.
//
// Usage: npm run bench:scan -- [--mb N] [--repeat N] [--no-e2e] [--sessions N] [--message-mb N]
// Part 2 needs root only to install Debian's postfix (for smtp-source/smtp-sink) when missing.
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { Chain } from '../firmware/scan/pipeline.ts';
import { GuardStage } from '../firmware/scan/guard.ts';
import { SizeStage } from '../firmware/scan/size.ts';
import { MimeWalker } from '../firmware/scan/mime.ts';
import { AttachmentCheck, DEFAULT_BLOCKED_EXTENSIONS, DEFAULT_BLOCKED_TYPES } from '../firmware/scan/attachments.ts';
import { BodyRules } from '../firmware/scan/body-rules.ts';
import { SignatureScan } from '../firmware/scan/signature-scan.ts';
import { compileSignatures } from '../firmware/scan/signatures/index.ts';
import { absentSignatures, benchSignatures, printRows } from './bench/signatures.ts';
import { ScanService } from '../firmware/scan/build.ts';
import { parseConfig } from '../firmware/config/schema.ts';
import { silentLogger } from '../firmware/log/logger.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const { values: opts } = parseArgs({
  options: {
    mb: { type: 'string', default: '96' },
    repeat: { type: 'string', default: '3' },
    'no-e2e': { type: 'boolean', default: false },
    'only-e2e': { type: 'boolean', default: false },
    sessions: { type: 'string', default: '20' },
    'message-mb': { type: 'string', default: '50' },
  },
});
const TARGET_MB = Number(opts.mb);
const REPEAT = Math.max(1, Number(opts.repeat));
const CHUNK = 64 * 1024;

// ---- the corpus -------------------------------------------------------------

const WORDS = 'the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there been one all we their if has'.split(' ');
function englishText(bytes) {
  const out = [];
  let n = 0;
  let line = '';
  let seed = 12345;
  while (n < bytes) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const w = WORDS[seed % WORDS.length];
    if (line.length + w.length + 1 > 72) {
      out.push(line + '\r\n');
      n += line.length + 2;
      line = '';
    }
    line += (line ? ' ' : '') + w;
  }
  return out.join('');
}

function b64lines(buf) {
  return buf.toString('base64').replace(/.{76}/g, '$&\r\n') + '\r\n';
}

function qp(text) {
  return text.replace(/=/g, '=3D').replace(/é/g, '=C3=A9');
}

/** One mail-like message of about `mb` MB: 10 % text, 10 % HTML, 10 % quoted-printable, 70 % base64 (binary and text-like). */
export function mailLike(mb) {
  const total = mb * 1e6;
  const parts = [];
  const text = englishText(total * 0.1);
  parts.push(`Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n${text}`);
  parts.push(`Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n<html><body>${englishText(total * 0.1).replace(/\r\n/g, '<br>\r\n')}</body></html>\r\n`);
  parts.push(`Content-Type: text/plain; charset=utf-8; name="notes.txt"\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Disposition: attachment; filename="notes.txt"\r\n\r\n${qp(englishText(total * 0.1).replace(/the /g, 'thé ='))}`);
  let left = total * 0.7 * 0.75;
  let i = 0;
  while (left > 0) {
    const size = Math.min(left, 4e6);
    const content = i % 2 ? randomBytes(Math.floor(size)) : Buffer.from(englishText(size));
    parts.push(`Content-Type: application/pdf; name="doc${i}.pdf"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="doc${i}.pdf"\r\n\r\n${b64lines(content)}`);
    left -= size;
    i++;
  }
  const boundary = '----=_moat_bench_boundary_0123456789';
  const head = `From: bench@sender.example\r\nTo: user@example.com\r\nSubject: bench\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n`;
  const body = parts.map((p) => `--${boundary}\r\n${p}`).join('\r\n') + `\r\n--${boundary}--\r\n`;
  return Buffer.from(head + body, 'latin1');
}

function chunksOf(buf) {
  const out = [];
  for (let i = 0; i < buf.length; i += CHUNK) out.push(buf.subarray(i, i + CHUNK));
  return out;
}

// ---- part 1: stages ---------------------------------------------------------

const limits = { maxHeaderBytes: 256 * 1024, maxHeaderFields: 1000, maxPartHeaderBytes: 64 * 1024, maxParts: 1000, maxDepth: 20 };
const attachmentPolicy = { blockedExtensions: DEFAULT_BLOCKED_EXTENSIONS, blockedTypes: DEFAULT_BLOCKED_TYPES };
const bodyRules = Array.from({ length: 10 }, (_, i) => ({ name: `r${i}`, literal: Buffer.from(`no-such-literal-${i}-xyz`), action: 'tag' }));

/** Runs the chunks through a chain of fresh stages; returns MB/s and whether a verdict came. */
function measure(chunks, bytes, makeStages) {
  const times = [];
  let verdict = null;
  for (let r = 0; r < REPEAT; r++) {
    const stages = makeStages();
    let sunk = 0;
    const chain = new Chain(stages, (c) => {
      sunk += c.length;
      return true;
    });
    const t0 = performance.now();
    for (const c of chunks) chain.push(c);
    verdict = chain.end();
    const dt = performance.now() - t0;
    if (!verdict && sunk !== bytes) throw new Error('chain lost bytes');
    times.push(dt);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  return { mbps: bytes / 1e6 / (median / 1e3), verdict };
}

async function stages(msg) {
  const chunks = chunksOf(msg);
  const bytes = msg.length;
  const rows = [];
  const row = (name, make) => {
    const r = measure(chunks, bytes, make);
    if (r.verdict) throw new Error(`${name}: unexpected verdict ${r.verdict.reason}`);
    rows.push({ name, mbps: r.mbps });
    console.log(`  ${name.padEnd(44)} ${r.mbps.toFixed(0).padStart(7)} MB/s`);
  };
  const guardOpts = { bareLineEndings: 'reject', longLines: 'reject' };
  row('pass-through (chain, no stages)', () => []);
  row('guard', () => [new GuardStage(guardOpts)]);
  row('size', () => [new SizeStage(1e12)]);
  row('mime walker (structure + decoding)', () => [new MimeWalker([], limits)]);
  row('mime walker + attachment policy', () => [new MimeWalker([new AttachmentCheck(attachmentPolicy)], limits)]);
  row('body rules x10 (raw + decoded parts)', () => {
    const b = new BodyRules(bodyRules);
    return [b, new MimeWalker([b], limits)];
  });
  const config = (extra) =>
    parseConfig({
      hostname: 'mx.bench.test',
      inbound: { localDomains: ['example.com'], maxMessageSize: 1e12 },
      internal: { servers: [{ host: '127.0.0.1', port: 2222 }] },
      storage: { dataDir: '/nonexistent' },
      scan: extra,
    });
  const service = new ScanService(config({ rules: [{ name: 'subj', header: { field: 'subject', pattern: 'lottery' }, action: 'reject' }] }), silentLogger(), null);
  row('whole chain, no signatures', () => service.stages({ cid: 'bench', ip: '127.0.0.1' }));
  // signatures absent from the data (a match would end the scan early and look faster)
  const sample = [msg.subarray(0, Math.min(msg.length, 16e6))];
  for (const n of [1, 1000, 10000]) {
    const set = { body: await absentSignatures(n, sample), hashes: [], warnings: [] };
    const db = await compileSignatures(set);
    row(`signatures alone, raw + decoded parts (${n})`, () => {
      const sig = new SignatureScan(db);
      return [sig, new MimeWalker([sig], limits)];
    });
    const withSigs = new ScanService(config({}), silentLogger(), db);
    row(`whole chain, ${n} signature${n > 1 ? 's' : ''}`, () => withSigs.stages({ cid: 'bench', ip: '127.0.0.1' }));
  }
  return rows;
}

// ---- part 2: RSS end to end -----------------------------------------------------

async function endToEnd() {
  const { ensurePostfixTools, SMTP_SOURCE } = await import('./bench/postfix.mjs');
  const { startSink } = await import('./bench/sink.mjs');
  const { startMoat } = await import('./bench/moat.mjs');
  const { startSampler, freePort, run } = await import('./bench/proc.mjs');
  const { installHandlers, releaseAll } = await import('./bench/cleanup.mjs');
  installHandlers();
  await ensurePostfixTools();
  const moatd = join(repoRoot, 'dist', 'moatd.js');
  if (!existsSync(moatd)) throw new Error('dist/moatd.js missing: run `npm run build` first');
  const sessions = Number(opts.sessions);
  const messageMb = Number(opts['message-mb']);
  const work = mkdtempSync(join('/var/tmp', 'moat-bench-scan-'));
  try {
    const file = join(work, 'message.eml');
    // smtp-source -F sends the file's lines, each followed by CRLF
    writeFileSync(file, mailLike(messageMb).toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
    const sink = await startSink();
    const port = await freePort();
    const moat = await startMoat({
      repoRoot,
      moatd,
      confDir: join(work, 'conf'),
      dataDir: join(work, 'data'),
      port,
      sinkPort: sink.port,
      syncDelayMs: 0,
      name: 'scan',
      extra: { inbound: { maxMessageSize: (messageMb + 10) * 1e6, maxConnections: sessions + 5 }, storage: { minFreeBytes: 1024 * 1024 } },
    });
    const sampler = startSampler(moat.pid, { intervalMs: 100, single: true });
    const t0 = performance.now();
    await run(SMTP_SOURCE, ['-s', String(sessions), '-m', String(sessions), '-M', 'client.bench.example.net', '-F', file, '-f', 'bench@sender.example', '-t', 'user@example.com', `127.0.0.1:${port}`], { timeoutMs: 900_000 });
    const intake = (performance.now() - t0) / 1e3;
    const deadline = performance.now() + 600_000;
    if (!(await sink.waitFor(sessions, () => performance.now() > deadline)))
      throw new Error(`the sink did not get ${sessions} messages; moatd said: ${moat.outputTail()}`);
    const total = (performance.now() - t0) / 1e3;
    const s = sampler.stop();
    const bytes = readFileSync(file).length * sessions;
    console.log(
      `  ${sessions} sessions x ${messageMb} MB: intake ${(bytes / 1e6 / intake).toFixed(0)} MB/s, relayed in ${total.toFixed(1)} s; moatd peak RSS ${(s.peakRssKb / 1024).toFixed(0)} MiB`,
    );
    await moat.stop();
    return { sessions, messageMb, intakeMBps: bytes / 1e6 / intake, totalSeconds: total, peakRssMiB: s.peakRssKb / 1024 };
  } finally {
    await releaseAll();
    rmSync(work, { recursive: true, force: true });
  }
}

console.log(`bench:scan on node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
let matcher = null;
let rows = null;
if (!opts['only-e2e']) {
  console.log('part 0: the signature matcher alone (scripts/bench/signatures.ts)');
  matcher = await benchSignatures({ mb: Math.min(TARGET_MB, 100) });
  printRows(matcher);
  console.log(`part 1: stages over a ${TARGET_MB} MB mail-like message in 64 KiB chunks, median of ${REPEAT}`);
  rows = await stages(mailLike(TARGET_MB));
}
let e2e = null;
if (!opts['no-e2e']) {
  console.log('part 2: peak RSS of moatd, full chain, concurrent large messages');
  e2e = await endToEnd();
}
const out = join(repoRoot, 'bench-results');
try {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `scan-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ node: process.version, matcher, rows, e2e }, null, 2));
} catch {
  /* results are a convenience */
}
void tmpdir;
