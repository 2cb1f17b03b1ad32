#!/usr/bin/env node
// Outbound benchmark: 5 000 messages from the internal network to 50 destination
// domains, delivered by MX to SMTP sinks on loopback.
//
// A DNS server on loopback (dns2, in this process) answers MX for d0.bench-out.test …
// d49.bench-out.test, each pointing at its own host mx.dN.bench-out.test on its own
// loopback address (127.0.1.1 … 127.0.1.50), where one smtp-server sink per domain
// listens (all on one port: outbound.port). moatd runs as its own process
// (dist/moatd.js) with internal.networks = 127.0.0.1; messages of about 2 KB are
// injected from 127.0.0.1 over 10 sessions at once, one recipient each, the domains
// taken in turn. The run ends when every message has reached its sink.
//
// Reports messages/s (first injection to last arrival), the injection rate alone,
// connections opened at the sinks (connection reuse must keep them far below the
// number of messages), the most sessions open at one sink, moatd's peak RSS and its
// CPU time per message (from /proc). Writes bench-results/outbound-<timestamp>.json.
//
// Usage: npm run bench:outbound -- [--quick] [--messages N] [--domains N] [--idle-ms MS]
// (--idle-ms 0 turns connection reuse off, for comparison)
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { installHandlers, releaseAll } from './bench/cleanup.mjs';
import { freePort, treeCpuSeconds, startSampler } from './bench/proc.mjs';
import { startMoat, moatBuilt } from './bench/moat.mjs';
import { startSink } from '../test/helpers/sink.ts';
import { startDns } from '../test/helpers/dns.ts';
import { RawSmtp } from '../test/helpers/smtp-client.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MOATD = join(repoRoot, 'dist', 'moatd.js');

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    messages: { type: 'string' },
    domains: { type: 'string', default: '50' },
    'idle-ms': { type: 'string', default: '10000' },
    out: { type: 'string', default: 'bench-results' },
  },
});
const MESSAGES = Number(opts.messages ?? (opts.quick ? 1000 : 5000));
const DOMAINS = Number(opts.domains);
const PARALLEL = 10;
const IDLE_MS = Number(opts['idle-ms']);
if (!Number.isInteger(IDLE_MS) || IDLE_MS < 0 || IDLE_MS > 300_000) {
  console.error('bench-outbound: --idle-ms must be 0 … 300000 (outbound.idleConnectionMs; 0: no reuse)');
  process.exit(2);
}
if (!Number.isInteger(MESSAGES) || MESSAGES < 1 || !Number.isInteger(DOMAINS) || DOMAINS < 1 || DOMAINS > 250) {
  console.error('bench-outbound: --messages must be a positive integer and --domains 1 … 250');
  process.exit(2);
}
if (!moatBuilt(MOATD)) {
  console.error('dist/moatd.js is missing: npm run build first (npm run bench:outbound builds)');
  process.exit(2);
}
installHandlers();

const domain = (i) => `d${i}.bench-out.test`;
const address = (i) => `127.0.1.${i + 1}`;
const zone = {};
for (let i = 0; i < DOMAINS; i++) {
  zone[domain(i)] = { MX: [{ exchange: `mx.${domain(i)}`, priority: 10 }] };
  zone[`mx.${domain(i)}`] = { A: [address(i)] };
}
const text = Array.from({ length: 25 }, (_, i) => `line ${i} of an outbound message of about two kilobytes, nothing special here.`).join('\r\n');
const message = (n) => `From: <alice@example.com>\r\nTo: <user${n}@${domain(n % DOMAINS)}>\r\nSubject: bench ${n}\r\nMessage-ID: <${n}@example.com>\r\n\r\n${text}\r\n.\r\n`;

async function expect(c, line, code) {
  const r = line === null ? await c.reply(60_000) : await c.cmd(line);
  if (!r.startsWith(String(code))) throw new Error(`${line ?? 'greeting'}: expected ${code}, got ${r}`);
}

async function inject(port) {
  let next = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      const c = await RawSmtp.open(port, '127.0.0.1', '127.0.0.1');
      try {
        await expect(c, null, 220);
        await expect(c, 'EHLO app.corp.example', 250);
        for (let n = next++; n < MESSAGES; n = next++) {
          await expect(c, 'MAIL FROM:<alice@example.com>', 250);
          await expect(c, `RCPT TO:<user${n}@${domain(n % DOMAINS)}>`, 250);
          await expect(c, 'DATA', 354);
          c.write(message(n));
          await expect(c, null, 250);
        }
        await expect(c, 'QUIT', 221);
      } finally {
        c.destroy();
      }
    }),
  );
}

const tmp = mkdtempSync(join(tmpdir(), 'moat-bench-outbound-'));
const dns = await startDns(zone);
const internal = await startSink();
const sinks = [await startSink({ host: address(0) })];
for (let i = 1; i < DOMAINS; i++) sinks.push(await startSink({ host: address(i), port: sinks[0].port }));
let result;
try {
  const port = await freePort();
  const moat = await startMoat({
    repoRoot,
    moatd: MOATD,
    confDir: join(tmp, 'conf'),
    dataDir: join(tmp, 'data'),
    port,
    sinkPort: internal.port,
    syncDelayMs: 0,
    name: 'outbound',
    extra: {
      internal: { networks: ['127.0.0.1/32'] },
      dns: { servers: [dns.server], timeoutMs: 2000 },
      outbound: { port: sinks[0].port, idleConnectionMs: IDLE_MS },
    },
  });
  try {
    const sampler = startSampler(moat.pid, { single: true });
    const cpu0 = treeCpuSeconds(moat.pid);
    const t0 = performance.now();
    await inject(port);
    const injected = (performance.now() - t0) / 1000;
    const arrived = () => sinks.reduce((a, s) => a + s.messages.length, 0);
    for (let last = -1, since = performance.now(); arrived() < MESSAGES; ) {
      await new Promise((r) => setTimeout(r, 20));
      const n = arrived();
      if (n !== last) [last, since] = [n, performance.now()];
      else if (performance.now() - since > 60_000) throw new Error(`only ${n} of ${MESSAGES} messages arrived; nothing more for 60 s`);
    }
    const wall = (performance.now() - t0) / 1000;
    const cpu = treeCpuSeconds(moat.pid) - cpu0;
    const mem = sampler.stop();
    const perDomain = sinks.map((s) => s.messages.length);
    result = {
      date: new Date().toISOString(),
      messages: MESSAGES,
      domains: DOMAINS,
      messageBytes: message(0).length - 3,
      parallelInjectors: PARALLEL,
      idleConnectionMs: IDLE_MS,
      seconds: wall,
      messagesPerSecond: MESSAGES / wall,
      injectionPerSecond: MESSAGES / injected,
      connectionsAtSinks: sinks.reduce((a, s) => a + s.connections, 0),
      mostSessionsAtOneSink: Math.max(...sinks.map((s) => s.peakSessions)),
      messagesPerDomain: { min: Math.min(...perDomain), max: Math.max(...perDomain) },
      moatdPeakRssMb: mem.peakRssKb / 1024,
      moatdCpuMsPerMessage: (cpu * 1000) / MESSAGES,
      dsnsToInternal: internal.messages.length,
    };
  } finally {
    await moat.stop();
  }
} finally {
  for (const s of sinks) await s.close();
  await internal.close();
  await dns.close();
  await releaseAll();
  rmSync(tmp, { recursive: true, force: true });
}

console.log(`\noutbound: ${result.messages} messages of ${result.messageBytes} bytes to ${result.domains} domains (MX on loopback), ${PARALLEL} injecting sessions, idle connections kept ${IDLE_MS} ms`);
console.log(`  ${result.messagesPerSecond.toFixed(0)} messages/s end to end (${result.seconds.toFixed(1)} s); injection alone ${result.injectionPerSecond.toFixed(0)}/s`);
console.log(`  connections opened at the sinks: ${result.connectionsAtSinks} (most sessions at one sink at once: ${result.mostSessionsAtOneSink})`);
console.log(`  moatd: peak RSS ${result.moatdPeakRssMb.toFixed(0)} MB, CPU ${result.moatdCpuMsPerMessage.toFixed(2)} ms per message`);
if (result.dsnsToInternal) console.log(`  DSNs to the internal server: ${result.dsnsToInternal} (something failed)`);
mkdirSync(opts.out, { recursive: true });
const file = join(opts.out, `outbound-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
console.log(`written ${file}`);
