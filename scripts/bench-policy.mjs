#!/usr/bin/env node
// Policy benchmark: what the anti-abuse chain costs moatd per connection and per
// message, with every DNS answer cached, against the chain switched off, in one run.
//
//   off      every policy.chain list empty
//   default  the default chains (no DNS; the data chain reads each message back for GTUBE)
//   on       connect: blocks, connection-limits, dnsbl (2 zones) · helo: helo ·
//         mail: sender-domains, anti-spoofing, spf, message-rate · rcpt: harvest ·
//         data: authentication (DKIM + DMARC of a signed message), gtube, spam-score
//
// Workloads, each from 20 source addresses (127.0.0.2 … 127.0.0.21), 10 at a time:
//   conn  connect, banner, EHLO, QUIT
//   msg   one 10 KB DKIM-signed message (MAIL, RCPT, DATA), 10 per connection
// A warm-up pass fills moat's DNS cache first; the measured pass must ask the DNS
// server nothing (checked). moatd runs as its own process (dist/moatd.js); its CPU
// time comes from /proc. The DNS server (dns2) and the internal server
// (smtp-server) run in this process. Prints a table and writes
// bench-results/policy-<timestamp>.json.
//
// Usage: npm run bench:policy -- [--quick] [--repeat N]
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { generateKeyPairSync } from 'node:crypto';
import { dkimSign } from 'mailauth';
import { installHandlers, releaseAll } from './bench/cleanup.mjs';
import { freePort, treeCpuSeconds } from './bench/proc.mjs';
import { startMoat, moatBuilt } from './bench/moat.mjs';
import { startSink } from '../test/helpers/sink.ts';
import { startDns } from '../test/helpers/dns.ts';
import { RawSmtp } from '../test/helpers/smtp-client.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MOATD = join(repoRoot, 'dist', 'moatd.js');

const { values: opts } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, repeat: { type: 'string', default: '1' }, out: { type: 'string', default: 'bench-results' } },
});
const scale = opts.quick ? 0.25 : 1;
const CONNS = Math.round(2000 * scale);
const MSGS = Math.round(1000 * scale);
const PER_CONN = 10;
const PARALLEL = 10;
const SOURCES = Array.from({ length: 20 }, (_, i) => `127.0.0.${i + 2}`);

if (!moatBuilt(MOATD)) {
  console.error('dist/moatd.js is missing: npm run build first (npm run bench:policy builds)');
  process.exit(2);
}
installHandlers();

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const zone = {
  'sender.test': { TXT: ['v=spf1 ip4:127.0.0.0/8 -all'] },
  'sel._domainkey.sender.test': { TXT: [`v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`] },
  '_dmarc.sender.test': { TXT: ['v=DMARC1; p=reject'] },
};
const body = Array.from({ length: 130 }, (_, i) => `line ${i} of a message of about ten kilobytes, plain text, nothing special here.`).join('\r\n');
const plain = `From: <news@sender.test>\r\nTo: <user@example.com>\r\nSubject: bench\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <b@sender.test>\r\n\r\n${body}\r\n`;
const sig = await dkimSign(plain, { signatureData: [{ signingDomain: 'sender.test', selector: 'sel', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }) }] });
const MESSAGE = sig.signatures + plain + '.\r\n';

const CHAIN_OFF = { connect: [], helo: [], mail: [], rcpt: [], data: [] };
const CHAIN_ON = {
  connect: ['blocks', 'connection-limits', 'dnsbl'],
  helo: ['helo'],
  mail: ['sender-domains', 'anti-spoofing', 'spf', 'message-rate'],
  rcpt: ['harvest'],
  data: ['authentication', 'gtube', 'spam-score'],
};

async function pool(n, parallel, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (let i = next++; i < n; i = next++) await fn(i);
    }),
  );
}

async function expect(c, line, code) {
  const r = line === null ? await c.reply() : await c.cmd(line);
  if (!r.startsWith(String(code))) throw new Error(`${line ?? 'greeting'}: expected ${code}, got ${r}`);
}

async function connOnce(port, i) {
  const c = await RawSmtp.open(port, '127.0.0.1', SOURCES[i % SOURCES.length]);
  try {
    await expect(c, null, 220);
    await expect(c, 'EHLO client.sender.test', 250);
    await expect(c, 'QUIT', 221);
  } finally {
    c.destroy();
  }
}

async function messages(port, i, count) {
  const c = await RawSmtp.open(port, '127.0.0.1', SOURCES[i % SOURCES.length]);
  try {
    await expect(c, null, 220);
    await expect(c, 'EHLO client.sender.test', 250);
    for (let k = 0; k < count; k++) {
      await expect(c, 'MAIL FROM:<bounce@sender.test>', 250);
      await expect(c, 'RCPT TO:<user@example.com>', 250);
      await expect(c, 'DATA', 354);
      c.write(MESSAGE);
      await expect(c, null, 250);
    }
    await expect(c, 'QUIT', 221);
  } finally {
    c.destroy();
  }
}

async function measure(moat, fn) {
  const cpu0 = treeCpuSeconds(moat.pid);
  const t0 = performance.now();
  await fn();
  const wall = (performance.now() - t0) / 1000;
  return { wall, cpu: treeCpuSeconds(moat.pid) - cpu0 };
}

async function runMode(mode, dns, sink, tmp) {
  const port = await freePort();
  const dataDir = join(tmp, `${mode}-data`);
  const policy =
    mode === 'on'
      ? {
          chain: CHAIN_ON,
          connections: { perIp: 1000 },
          dnsbl: { zones: [{ zone: 'bl.bench.test', weight: 1 }, { zone: 'wl.bench.test', weight: -1 }] },
        }
      : mode === 'default'
        ? { connections: { perIp: 1000 } }
        : { chain: CHAIN_OFF };
  const moat = await startMoat({
    repoRoot,
    moatd: MOATD,
    confDir: join(tmp, `${mode}-conf`),
    dataDir,
    port,
    sinkPort: sink.port,
    syncDelayMs: 0,
    name: mode,
    extra: { dns: { servers: [dns.server], timeoutMs: 2000 }, policy, inbound: { maxConnections: 1000 } },
  });
  try {
    // warm-up: every source address and every record once, so the measured pass runs on cached answers
    await pool(SOURCES.length, PARALLEL, (i) => messages(port, i, 1));
    const asked = dns.asked.length;
    const conn = await measure(moat, () => pool(CONNS, PARALLEL, (i) => connOnce(port, i)));
    const msg = await measure(moat, () => pool(MSGS / PER_CONN, PARALLEL, (i) => messages(port, i, PER_CONN)));
    const uncached = dns.asked.length - asked;
    return {
      mode,
      conn: { n: CONNS, ...conn, perSec: CONNS / conn.wall, cpuUs: (conn.cpu / CONNS) * 1e6 },
      msg: { n: MSGS, ...msg, perSec: MSGS / msg.wall, cpuUs: (msg.cpu / MSGS) * 1e6 },
      dnsQueriesWhileMeasuring: uncached,
    };
  } finally {
    await moat.stop();
  }
}

const tmp = mkdtempSync(join(tmpdir(), 'moat-bench-policy-'));
const dns = await startDns(zone);
const sink = await startSink();
const results = [];
try {
  for (let r = 0; r < Number(opts.repeat); r++) for (const mode of ['off', 'default', 'on']) results.push(await runMode(mode, dns, sink, tmp));
} finally {
  await sink.close();
  await dns.close();
  await releaseAll();
  rmSync(tmp, { recursive: true, force: true });
}

const f = (x, d = 0) => x.toFixed(d).padStart(8);
console.log(`\npolicy chain cost (moatd CPU per operation, cached DNS; ${CONNS} connections, ${MSGS} messages of ${MESSAGE.length} bytes, ${PARALLEL} at a time)`);
console.log('mode    | conn/s   | CPU µs/conn | msg/s    | CPU µs/msg | DNS queries while measuring');
for (const x of results) console.log(`${x.mode.padEnd(7)} | ${f(x.conn.perSec)} | ${f(x.conn.cpuUs)}    | ${f(x.msg.perSec)} | ${f(x.msg.cpuUs)}   | ${x.dnsQueriesWhileMeasuring}`);
const med = (mode, k) => {
  const v = results.filter((x) => x.mode === mode).map((x) => x[k].cpuUs).sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)];
};
for (const mode of ['default', 'on'])
  console.log(`${mode} chain cost: ${(med(mode, 'conn') - med('off', 'conn')).toFixed(0)} µs CPU per connection, ${(med(mode, 'msg') - med('off', 'msg')).toFixed(0)} µs CPU per message`);
mkdirSync(opts.out, { recursive: true });
const file = join(opts.out, `policy-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), connections: CONNS, messages: MSGS, messageBytes: MESSAGE.length, results }, null, 2) + '\n');
console.log(`written ${file}`);
