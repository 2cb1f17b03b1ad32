#!/usr/bin/env node
// Torture run: faults under load against the real daemon (node dist/moatd.js as a child
// process), each scenario counting what the client sent, what got a 250, what arrived at
// the internal server (a real SMTP sink on loopback), duplicates and losses:
//   kill     kill -9 of moatd at random moments (--kills, at least 50) under continuous load
//   outage   every internal server down for --outage seconds under load
//   full     the spool's file system (a small tmpfs) filled up: 452 4.3.1, never a 250
//   clamd    clamd killed (-9) and started again under load: 451 4.7.1 meanwhile (the default)
//   dns      the DNS server gone while SPF is in the chain: 451 4.7.24 meanwhile, no crash
//   soak     --soak seconds of mixed traffic; RSS, open descriptors and the control
//            socket's answer time of moatd sampled, with their slope
//   outbound an internal client (internal.networks) sends to foreign domains, whose MX
//            records (a DNS server on loopback) point at sinks on 127.0.0.x; kill -9 of
//            moatd at random moments (--outbound-kills); every 250 must reach the sink
//            of its recipient's domain
// The client retries every message not answered 250 (each message carries X-Torture-Id),
// so the sink can count duplicates and losses. A loss is a message answered 250 that never
// arrived. Ends with one line `torture: N sent, N accepted, N delivered, N lost, N duplicated`
// and exits 1 on any loss, crash or broken expectation.
//
// It must never reach beyond loopback, and it stops by itself (every phase is bounded).
// It needs root (tmpfs mounts), clamd (scripts/setup.sh) and a build (npm run torture builds).
// Called by: `npm run torture -- [--quick] [--only kill,outage,...]` (--help for options).
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, open, readdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSink, closedPort } from '../test/helpers/sink.ts';
import { RawSmtp } from '../test/helpers/smtp-client.ts';
import { startClamd } from '../test/helpers/clamd.ts';
import { startDns } from '../test/helpers/dns.ts';
import { withTmpfs } from '../test/helpers/tmpfs.ts';
import { ControlClient } from '../firmware/control/client.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MOATD = join(repoRoot, 'dist', 'moatd.js');
const SCENARIOS = ['kill', 'outage', 'full', 'clamd', 'dns', 'soak', 'outbound'];

const USAGE = `usage: npm run torture -- [options]
  --quick          short phases: 50 kills, outage 15 s, soak 60 s
  --only LIST      comma list of ${SCENARIOS.join(',')} (default all)
  --kills N        kill -9 moatd N times (default 100; --quick 50; at least 50)
  --outage SEC     how long every internal server is down (default 120; --quick 15)
  --soak SEC       soak duration (default 1200; --quick 60)
  --outbound-kills N  kill -9 moatd N times in the outbound scenario (default 50; --quick 15)
  --workers N      concurrent client sessions (default 8)
  --seed N         seed of the random kill moments and message sizes (default 1)`;

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    kills: { type: 'string' },
    outage: { type: 'string' },
    soak: { type: 'string' },
    'outbound-kills': { type: 'string' },
    workers: { type: 'string' },
    seed: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  console.log(USAGE);
  process.exit(0);
}
function intOpt(name, def, min) {
  const v = opt[name] === undefined ? def : Number(opt[name]);
  if (!Number.isInteger(v) || v < min) {
    console.error(`torture: --${name} must be an integer of at least ${min}\n${USAGE}`);
    process.exit(2);
  }
  return v;
}
const KILLS = intOpt('kills', opt.quick ? 50 : 100, 50);
const OUTAGE_S = intOpt('outage', opt.quick ? 15 : 120, 1);
const SOAK_S = intOpt('soak', opt.quick ? 60 : 1200, 10);
const OUTBOUND_KILLS = intOpt('outbound-kills', opt.quick ? 15 : 50, 1);
const WORKERS = intOpt('workers', 8, 1);
let seed = intOpt('seed', 1, 0);
const only = opt.only ? opt.only.split(',').map((s) => s.trim()) : SCENARIOS;
for (const s of only) {
  if (!SCENARIOS.includes(s)) {
    console.error(`torture: unknown scenario "${s}"\n${USAGE}`);
    process.exit(2);
  }
}
if (!existsSync(MOATD)) {
  console.error(`torture: ${MOATD} is missing; run npm run torture (it builds first)`);
  process.exit(2);
}

/** mulberry32: a small seeded generator, so a run can be repeated. */
function random() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const between = (a, b) => a + Math.floor(random() * (b - a + 1));
const log = (s) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

// ---------------------------------------------------------------- moatd as a child process

/** moatd children alive, so that an interrupted run does not leave them behind. */
const live = new Set();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    for (const c of live) c.kill('SIGKILL');
    console.error(`torture: interrupted by ${sig}; a tmpfs of the full scenario may still be mounted under ${tmpdir()}/moat-tmpfs-*`);
    process.exit(130);
  });
}

/** Starts node dist/moatd.js; resolves once it logs that it listens. */
async function startMoatd(configPath) {
  const child = spawn(process.execPath, [MOATD, '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  let tail = '';
  let listening = false;
  child.stderr.on('data', (d) => (tail = (tail + d).slice(-4000)));
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL'); // a moatd that never said it listens must not outlive the run
      reject(new Error(`moatd did not start within 30 s: ${tail.slice(-600)}`));
    }, 30_000);
    child.stdout.on('data', (d) => {
      // look before cutting: one chunk may carry the listening line and 4000 characters after it
      const seen = tail + d;
      tail = seen.slice(-4000); // keep draining: a full pipe would stall moatd
      if (!listening && /"ev":"listening"/.test(seen)) {
        listening = true;
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      if (!listening) reject(new Error(`moatd exited with ${code} before listening: ${tail}`));
    });
  });
  return { child, pid: child.pid, exited, tail: () => tail };
}

async function writeConfig(dir, { port, sinkPort, dataDir, extra = {} }) {
  const configPath = join(dir, 'config.json');
  const doc = {
    hostname: 'mx.example.com',
    inbound: { listen: `127.0.0.1:${port}`, localDomains: ['example.com'], ...(extra.inbound ?? {}) },
    internal: { servers: [{ host: '127.0.0.1', port: sinkPort, tls: 'none' }], connectTimeoutMs: 1000, ...(extra.internal ?? {}) },
    queue: { minRetryMs: 200, maxRetryMs: 1000 },
    storage: { dataDir, minFreeBytes: 1024 * 1024, segmentBytes: 4 * 1024 * 1024, ...(extra.storage ?? {}) },
    control: { socket: join(dir, 'control.sock') },
    log: { level: 'info' },
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => !['inbound', 'storage', 'internal'].includes(k))),
  };
  await writeFile(configPath, JSON.stringify(doc, null, 2));
  return { configPath, socket: doc.control.socket };
}

async function status(socket) {
  const c = await ControlClient.connect(socket, 5000);
  try {
    const t0 = performance.now();
    const s = await c.request('status');
    return { ...s, rttMs: performance.now() - t0 };
  } finally {
    c.close();
  }
}

// ---------------------------------------------------------------- the internal server

/** A sink that can go down and come back on the same port; counts arrivals by X-Torture-Id. */
async function internalServer() {
  const port = await closedPort();
  const arrivals = new Map();
  let sink = null;
  let counted = 0;
  const old = [];
  const count = () => {
    for (const s of [...old, sink].filter(Boolean)) {
      while ((s.counted ?? 0) < s.messages.length) {
        const m = s.messages[s.counted ?? 0];
        s.counted = (s.counted ?? 0) + 1;
        counted++;
        const id = /^X-Torture-Id: (\S+)/m.exec(m.body.toString('latin1'))?.[1] ?? '(none)';
        arrivals.set(id, (arrivals.get(id) ?? 0) + 1);
      }
    }
  };
  return {
    port,
    async up() {
      if (!sink) sink = await startSink({ port });
    },
    async down() {
      if (!sink) return;
      count();
      old.push(sink);
      const s = sink;
      sink = null;
      await s.close();
    },
    arrivals() {
      count();
      return arrivals;
    },
    get total() {
      count();
      return counted;
    },
  };
}

// ---------------------------------------------------------------- the client

const SENDERS = ['alice@spf-pass.test', 'bob@spf-pass.test'];
function messageFor(id, size, rcpt) {
  const head = `From: <${SENDERS[0]}>\r\nTo: <${rcpt}>\r\nSubject: torture ${id}\r\nMessage-ID: <${id}@torture.test>\r\nX-Torture-Id: ${id}\r\n\r\n`;
  const line = 'The quick brown fox jumps over the lazy dog 0123456789 torture line\r\n';
  return head + line.repeat(Math.max(1, Math.ceil(size / line.length))) + '.\r\n';
}

/** A reply shortened to its code and enhanced status code ("451 4.7.24"). */
const CODE = /^(\d{3}(?: \d\.\d{1,3}\.\d{1,3})?)[\s\S]*$/;

/** One attempt at one message: the reply to the end of data, or a label of where it broke. */
async function attempt(port, id, size, rcpt = 'user@example.com', onDot = () => undefined) {
  let c;
  try {
    c = await RawSmtp.open(port, '127.0.0.1', '127.0.0.1');
  } catch {
    return 'no connection';
  }
  try {
    const greet = await c.reply(15_000);
    if (!greet.startsWith('220')) return greet.replace(CODE, '$1');
    const ehlo = await c.cmd('EHLO client.torture.test');
    if (!ehlo.startsWith('250')) return ehlo.replace(CODE, '$1');
    const mail = await c.cmd(`MAIL FROM:<${SENDERS[id.length % 2]}>`);
    if (!mail.startsWith('250')) return mail.replace(CODE, '$1');
    const r = await c.cmd(`RCPT TO:<${rcpt}>`);
    if (!r.startsWith('250')) return r.replace(CODE, '$1');
    const d = await c.cmd('DATA');
    if (!d.startsWith('354')) return d.replace(CODE, '$1');
    c.write(messageFor(id, size, rcpt));
    onDot(Date.now());
    const end = await c.reply(30_000);
    c.write('QUIT\r\n');
    return end.replace(CODE, '$1');
  } catch {
    return 'cut off';
  } finally {
    c.destroy();
  }
}

/** Continuous load: WORKERS sessions, each message retried until it is answered 250. */
function startLoad(port, { prefix, size = () => between(500, 20_000), pause = 0, rcpt = () => 'user@example.com' }) {
  const st = { sent: new Set(), accepted: new Set(), attempts: 0, replies: new Map(), retry: [], stopped: false, next: 0, onReply: null };
  const one = async (id) => {
    st.sent.add(id);
    st.attempts++;
    const started = Date.now();
    let dotAt = Infinity;
    const r = await attempt(port, id, size(), rcpt(id), (t) => (dotAt = t));
    st.replies.set(r, (st.replies.get(r) ?? 0) + 1);
    st.onReply?.(r, started, dotAt);
    if (r.startsWith('250')) st.accepted.add(id);
    else {
      st.retry.push(id);
      await sleep(50);
    }
  };
  const worker = async () => {
    while (!st.stopped) {
      const id = st.retry.shift() ?? `${prefix}-${st.next++}`;
      await one(id);
      if (pause) await sleep(pause);
    }
  };
  const workers = Array.from({ length: WORKERS }, worker);
  return Object.assign(st, {
    async stop() {
      st.stopped = true;
      await Promise.all(workers);
    },
    /** After the load: retries what is still unanswered, for at most ms. */
    async drain(ms = 60_000) {
      const until = Date.now() + ms;
      while (st.retry.length && Date.now() < until) {
        const batch = st.retry.splice(0, WORKERS);
        await Promise.all(batch.map(one));
      }
    },
  });
}

/** Waits until every accepted message arrived and moatd's queue is empty (bounded). */
async function settle(load, internal, socket, ms = 120_000) {
  const until = Date.now() + ms;
  for (;;) {
    const arr = internal.arrivals();
    const missing = [...load.accepted].filter((id) => !arr.has(id)).length;
    let queued = -1;
    try {
      queued = (await status(socket)).queue.total;
    } catch {
      /* moatd not answering right now */
    }
    if ((missing === 0 && queued === 0) || Date.now() > until) return;
    await sleep(250);
  }
}

const totals = { sent: 0, accepted: 0, delivered: 0, lost: 0, duplicated: 0 };
const failures = [];

function report(name, load, internal, extra = []) {
  const arr = internal.arrivals();
  const ours = [...arr.entries()].filter(([id]) => load.sent.has(id));
  const delivered = ours.length;
  const duplicated = ours.reduce((n, [, c]) => n + c - 1, 0);
  const lost = [...load.accepted].filter((id) => !arr.has(id));
  const unasked = [...arr.keys()].filter((id) => !load.accepted.has(id) && load.sent.has(id)).length;
  const replies = [...load.replies.entries()].sort((a, b) => b[1] - a[1]).map(([r, n]) => `${n}× ${r}`).join(', ');
  log(`${name}: ${load.sent.size} sent (${load.attempts} attempts), ${load.accepted.size} accepted, ${delivered} delivered, ${lost.length} lost, ${duplicated} duplicated, ${load.retry.length} never accepted, ${unasked} delivered without a 250 seen`);
  log(`${name}: replies ${replies}`);
  for (const e of extra) log(`${name}: ${e}`);
  if (lost.length) {
    failures.push(`${name}: ${lost.length} lost (${lost.slice(0, 10).join(' ')})`);
  }
  totals.sent += load.sent.size;
  totals.accepted += load.accepted.size;
  totals.delivered += delivered;
  totals.lost += lost.length;
  totals.duplicated += duplicated;
}

function expect(name, ok, what) {
  log(`${name}: ${ok ? 'ok' : 'FAILED'}: ${what}`);
  if (!ok) failures.push(`${name}: ${what}`);
}

/** Sets up a folder, the internal server and moatd; runs fn; cleans up. */
async function scenario(name, { extra, dataDir } = {}, fn) {
  const dir = await mkdtemp(join(tmpdir(), `moat-torture-${name}-`));
  const internal = await internalServer();
  await internal.up();
  const port = await closedPort();
  const { configPath, socket } = await writeConfig(dir, { port, sinkPort: internal.port, dataDir: dataDir ?? join(dir, 'data'), extra: typeof extra === 'function' ? await extra() : extra });
  let moat = null;
  const ctx = {
    dir,
    port,
    socket,
    internal,
    async start() {
      moat = await startMoatd(configPath);
      return moat;
    },
    get moat() {
      return moat;
    },
  };
  log(`--- ${name}`);
  try {
    await fn(ctx);
  } catch (e) {
    failures.push(`${name}: ${e.message}`);
    log(`${name}: FAILED: ${e.stack}`);
  } finally {
    if (moat && moat.child.exitCode === null && moat.child.signalCode === null) {
      moat.child.kill('SIGTERM');
      await Promise.race([moat.exited, sleep(10_000).then(() => moat.child.kill('SIGKILL'))]);
    }
    await internal.down();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Fails the scenario if moatd died by itself (not by our kill). */
function watchCrash(name, moat) {
  let expected = false;
  moat.exited.then(({ code, signal }) => {
    if (!expected) failures.push(`${name}: moatd exited by itself (code ${code}, signal ${signal}): ${moat.tail().slice(-600)}`);
  });
  return () => (expected = true);
}

// ---------------------------------------------------------------- scenarios

/** kill -9 of moatd `times` times at random moments under `load`, each followed by a restart; returns the restart times (ms). */
async function killRepeatedly(name, ctx, load, times) {
  const restarts = [];
  while (restarts.length < times) {
    await sleep(between(50, 1500));
    ctx.moat.child.kill('SIGKILL');
    await ctx.moat.exited;
    const t0 = Date.now();
    await ctx.start();
    restarts.push(Date.now() - t0);
    if (restarts.length % 10 === 0) log(`${name}: ${restarts.length} kills, ${load.accepted.size} accepted so far`);
  }
  return restarts;
}

async function killScenario() {
  await scenario('kill', {}, async (ctx) => {
    await ctx.start();
    const load = startLoad(ctx.port, { prefix: 'k' });
    const restarts = await killRepeatedly('kill', ctx, load, KILLS);
    const kills = restarts.length;
    await sleep(1000);
    await load.stop();
    await load.drain();
    await settle(load, ctx.internal, ctx.socket);
    restarts.sort((a, b) => a - b);
    report('kill', load, ctx.internal, [`${kills} kill -9, restart to listening p50 ${restarts[restarts.length >> 1]} ms, max ${restarts.at(-1)} ms`]);
  });
}

async function outageScenario() {
  await scenario('outage', {}, async (ctx) => {
    const stop = watchCrash('outage', await ctx.start());
    const load = startLoad(ctx.port, { prefix: 'o', pause: 20 });
    await sleep(2000);
    await ctx.internal.down();
    log(`outage: internal server down for ${OUTAGE_S} s`);
    await sleep(OUTAGE_S * 1000);
    const queued = (await status(ctx.socket)).queue.total;
    const acceptedDuring = load.accepted.size;
    await ctx.internal.up();
    log(`outage: internal server back; ${queued} queued`);
    await sleep(2000);
    await load.stop();
    await load.drain();
    const t0 = Date.now();
    await settle(load, ctx.internal, ctx.socket, 60_000 + OUTAGE_S * 1000);
    report('outage', load, ctx.internal, [`${acceptedDuring} accepted by the end of the outage, ${queued} queued at the end of the outage, delivered ${Date.now() - t0} ms after the load stopped`]);
    expect('outage', queued > 0, 'mail was accepted and queued while the internal server was down');
    stop();
  });
}

async function fullScenario() {
  await withTmpfs('24m', async (mnt) => {
    await scenario('full', { dataDir: join(mnt, 'data'), extra: { storage: { segmentBytes: 1024 * 1024, minFreeBytes: 1024 * 1024 } } }, async (ctx) => {
      const stop = watchCrash('full', await ctx.start());
      let fullSince = Infinity;
      let okWhileFull = 0;
      const load = startLoad(ctx.port, { prefix: 'f', size: () => between(5000, 60_000) });
      load.onReply = (r, started) => {
        if (r.startsWith('250') && started > fullSince) okWhileFull++;
      };
      await sleep(2000);
      await ctx.internal.down(); // nothing leaves the spool, so nothing frees room behind our back
      const filler = await open(join(mnt, 'filler'), 'w');
      const chunk = Buffer.alloc(256 * 1024, 0x61);
      let filled = 0;
      for (;;) {
        try {
          filled += (await filler.write(chunk)).bytesWritten;
        } catch (e) {
          if (e.code !== 'ENOSPC') throw e;
          break;
        }
      }
      for (let size = 4096; size >= 1; size >>= 1) {
        try {
          for (;;) filled += (await filler.write(Buffer.alloc(size, 0x61))).bytesWritten;
        } catch {
          /* next smaller size */
        }
      }
      await filler.sync().catch(() => undefined);
      fullSince = Date.now();
      log(`full: file system filled (${(filled / 1048576).toFixed(1)} MiB of filler)`);
      const repliesBefore = new Map(load.replies);
      await sleep(5000);
      const during = [...load.replies.entries()].map(([r, n]) => [r, n - (repliesBefore.get(r) ?? 0)]).filter(([, n]) => n > 0);
      log(`full: replies while full: ${during.map(([r, n]) => `${n}× ${r}`).join(', ')}`);
      expect('full', okWhileFull === 0, `no 250 for a message begun while the file system was full (${okWhileFull})`);
      expect('full', during.some(([r]) => r === '452 4.3.1'), 'moatd answered 452 4.3.1 while the file system was full');
      await filler.close();
      await rm(join(mnt, 'filler'));
      fullSince = Infinity;
      await ctx.internal.up();
      const acceptedAtFree = load.accepted.size;
      log('full: room again, internal server back');
      await sleep(4000);
      await load.stop();
      await load.drain();
      await settle(load, ctx.internal, ctx.socket);
      expect('full', load.accepted.size > acceptedAtFree, `normal service once there is room (${load.accepted.size - acceptedAtFree} accepted after)`);
      report('full', load, ctx.internal);
      stop();
    });
  });
}

const NDB = 'Moat.Torture.Sig:0:*:6d6f61742d746f72747572652d7369676e6174757265'; // "moat-torture-signature"

async function clamdScenario() {
  const clamdPort = await closedPort();
  let clamd = await startClamd(NDB, { port: clamdPort });
  try {
    await scenario('clamd', { extra: { scan: { clamd: { address: clamd.tcp, timeoutMs: 5000 } } } }, async (ctx) => {
      const stop = watchCrash('clamd', await ctx.start());
      const load = startLoad(ctx.port, { prefix: 'c', pause: 20 });
      // A 250 needs clamd's "stream: OK", which clamd sends only after the final dot's
      // terminator: a message whose final dot was sent after clamd died must never get one.
      // (A message clamd had answered just before the kill may still get its 250 a moment
      // later, after the spool's flush; those are counted apart, not as a failure.)
      let downSince = Infinity;
      let okAfterDot = 0;
      let okAnsweredBefore = 0;
      load.onReply = (r, _started, dotAt) => {
        if (!r.startsWith('250') || Date.now() < downSince) return;
        if (dotAt > downSince) okAfterDot++;
        else okAnsweredBefore++;
      };
      const rounds = opt.quick ? 2 : 4;
      for (let i = 0; i < rounds; i++) {
        await sleep(3000);
        const killedAt = Date.now();
        process.kill(clamd.pid, 'SIGKILL');
        downSince = killedAt;
        await clamd.stop();
        const before = new Map(load.replies);
        const [okDot0, okBefore0] = [okAfterDot, okAnsweredBefore];
        log(`clamd: killed (round ${i + 1})`);
        await sleep(3000);
        const during = [...load.replies.entries()].map(([r, n]) => [r, n - (before.get(r) ?? 0)]).filter(([, n]) => n > 0);
        log(`clamd: replies while it was down: ${during.map(([r, n]) => `${n}× ${r}`).join(', ')} (250s for a final dot sent before the kill: ${okAnsweredBefore - okBefore0})`);
        expect('clamd', during.some(([r]) => r === '451 4.7.1') && okAfterDot === okDot0, `clamd down: 451 4.7.1 (onFailure tempfail), no 250 for a message whose final dot was sent after the kill (${okAfterDot - okDot0})`);
        downSince = Infinity;
        clamd = await startClamd(NDB, { port: clamdPort });
        log('clamd: started again');
      }
      const acc = load.accepted.size;
      await sleep(3000);
      expect('clamd', load.accepted.size > acc, 'mail accepted again once clamd is back');
      await load.stop();
      await load.drain();
      await settle(load, ctx.internal, ctx.socket);
      report('clamd', load, ctx.internal);
      stop();
    });
  } finally {
    await clamd.stop();
  }
}

const ZONE = { 'spf-pass.test': { TXT: ['v=spf1 ip4:127.0.0.0/8 -all'], ttl: 0 } };

async function dnsScenario() {
  const dnsPort = await closedPort();
  let dns = await startDns(ZONE, { port: dnsPort });
  try {
    const extra = {
      dns: { servers: [dns.server], timeoutMs: 300, maxTtlMs: 0, negativeTtlMs: 0 },
      policy: { chain: { mail: ['spf'] }, checkTimeoutMs: 2000 },
    };
    await scenario('dns', { extra }, async (ctx) => {
      const stop = watchCrash('dns', await ctx.start());
      const load = startLoad(ctx.port, { prefix: 'd', pause: 20 });
      for (let i = 0; i < 2; i++) {
        await sleep(3000);
        await dns.close();
        log(`dns: DNS server gone (round ${i + 1})`);
        await sleep(1000);
        const before = new Map(load.replies);
        await sleep(4000);
        const during = [...load.replies.entries()].map(([r, n]) => [r, n - (before.get(r) ?? 0)]).filter(([, n]) => n > 0);
        log(`dns: replies while it was gone: ${during.map(([r, n]) => `${n}× ${r}`).join(', ')}`);
        expect('dns', during.some(([r]) => r === '451 4.7.24') && !during.some(([r]) => r.startsWith('250')), 'DNS gone: SPF temperror is 451 4.7.24 (the default tempfail), no 250');
        dns = await startDns(ZONE, { port: dnsPort });
        log('dns: DNS server back');
      }
      const acc = load.accepted.size;
      await sleep(3000);
      expect('dns', load.accepted.size > acc, 'mail accepted again once DNS answers');
      await load.stop();
      await load.drain();
      await settle(load, ctx.internal, ctx.socket);
      report('dns', load, ctx.internal);
      stop();
    });
  } finally {
    await dns.close();
  }
}

/** Least-squares slope of ys over xs. */
function slope(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den ? num / den : 0;
}

async function soakScenario() {
  await scenario('soak', {}, async (ctx) => {
    const moat = await ctx.start();
    const stop = watchCrash('soak', moat);
    // mixed traffic: retried messages of mixed sizes, plus sessions that break off, refused
    // recipients and junk, from a second set of sessions
    const load = startLoad(ctx.port, { prefix: 's', size: () => (random() < 0.9 ? between(300, 20_000) : between(100_000, 600_000)), pause: 10 });
    let noise = 0;
    let noiseStop = false;
    const noiseLoop = (async () => {
      while (!noiseStop) {
        const kind = noise++ % 4;
        try {
          // from other addresses than the load's (127.0.0.1): the abuse tracker blocks these
          // addresses for their errors, as it should, and must not block the load with them
          const c = await RawSmtp.open(ctx.port, '127.0.0.1', `127.0.0.${10 + (noise % 240)}`);
          await c.reply();
          if (kind === 0) c.destroy(); // gone after the greeting
          else if (kind === 1) {
            await c.cmd('EHLO noise.torture.test');
            await c.cmd('MAIL FROM:<x@spf-pass.test>');
            await c.cmd('RCPT TO:<someone@elsewhere.test>'); // relay refused
            await c.cmd('QUIT');
            c.destroy();
          } else if (kind === 2) {
            await c.cmd('EHLO noise.torture.test');
            await c.cmd('MAIL FROM:<x@spf-pass.test>');
            await c.cmd('RCPT TO:<user@example.com>');
            await c.cmd('DATA');
            c.write('Subject: half\r\n\r\nhalf a message'); // cut off in the middle of DATA
            await sleep(20);
            c.destroy();
          } else {
            c.write('GARBAGE \x00\xff\r\n'.repeat(5));
            await sleep(20);
            c.destroy();
          }
        } catch {
          /* counted by nothing: the noise is only noise */
        }
        await sleep(50);
      }
    })();
    const samples = [];
    const t0 = Date.now();
    const every = opt.quick ? 2000 : 10_000;
    while (Date.now() - t0 < SOAK_S * 1000) {
      await sleep(every);
      const st = await readFile(`/proc/${moat.pid}/status`, 'utf8');
      const rssKb = Number(/VmRSS:\s+(\d+)/.exec(st)[1]);
      const fds = (await readdir(`/proc/${moat.pid}/fd`)).length;
      const s = await status(ctx.socket);
      // the event-loop delay moatd measured since the previous status (p99 and max of that interval)
      samples.push({ t: (Date.now() - t0) / 60_000, rssMb: rssKb / 1024, fds, loopP99Ms: s.eventLoopDelayMs.p99, loopMaxMs: s.eventLoopDelayMs.max, rttMs: s.rttMs, queued: s.queue.total });
    }
    noiseStop = true;
    await noiseLoop;
    await load.stop();
    await load.drain();
    await settle(load, ctx.internal, ctx.socket);
    const after = samples.filter((s) => s.t >= samples.at(-1).t * 0.25); // after the warm-up quarter
    const xs = after.map((s) => s.t);
    const fmt = (k, unit) => {
      const ys = after.map((s) => s[k]);
      return `${k} ${Math.min(...ys).toFixed(1)}..${Math.max(...ys).toFixed(1)} ${unit}, slope ${slope(xs, ys).toFixed(3)} ${unit}/min`;
    };
    report('soak', load, ctx.internal, [
      `${samples.length} samples over ${(SOAK_S / 60).toFixed(1)} min, ${noise} noise sessions; after the first quarter:`,
      fmt('rssMb', 'MB'),
      fmt('fds', 'fds'),
      `${fmt('loopP99Ms', 'ms')} (moatd's event-loop delay, p99 of each interval)`,
      fmt('loopMaxMs', 'ms'),
      `${fmt('rttMs', 'ms')} (control-socket status answer time)`,
      fmt('queued', 'msgs'),
    ]);
    stop();
  });
}

/**
 * Three foreign domains, each with its own MX sink on a loopback address (one port, as
 * outbound.port is one port for every MX): one MX, two MX of equal preference, and no MX at
 * all (the implicit MX: the domain's own A record).
 */
const OUTBOUND_ZONE = {
  'one.remote.test': { MX: [{ exchange: 'mx.one.remote.test', priority: 10 }] },
  'mx.one.remote.test': { A: ['127.0.0.71'] },
  'two.remote.test': { MX: [{ exchange: 'mx1.two.remote.test', priority: 10 }, { exchange: 'mx2.two.remote.test', priority: 10 }] },
  'mx1.two.remote.test': { A: ['127.0.0.72'] },
  'mx2.two.remote.test': { A: ['127.0.0.73'] },
  'implicit.remote.test': { A: ['127.0.0.74'] },
};
const OUTBOUND_DOMAINS = [
  { domain: 'one.remote.test', hosts: ['127.0.0.71'] },
  { domain: 'two.remote.test', hosts: ['127.0.0.72', '127.0.0.73'] },
  { domain: 'implicit.remote.test', hosts: ['127.0.0.74'] },
];
/** The recipient of message `id` ("b-17"), always the same for one id, so a retry goes to the same domain. */
const outboundRcpt = (id) => `rcpt${id.split('-')[1]}@${OUTBOUND_DOMAINS[Number(id.split('-')[1]) % OUTBOUND_DOMAINS.length].domain}`;

async function outboundScenario() {
  const first = await startSink({ host: '127.0.0.71' });
  const sinks = new Map([['127.0.0.71', first]]);
  for (const host of ['127.0.0.72', '127.0.0.73', '127.0.0.74']) sinks.set(host, await startSink({ host, port: first.port }));
  const dns = await startDns(OUTBOUND_ZONE);
  /** Arrivals by X-Torture-Id at the sink of the recipient's domain; misrouted ones counted apart. */
  let misrouted = [];
  const destinations = {
    arrivals() {
      const arr = new Map();
      misrouted = [];
      for (const [host, sink] of sinks) {
        for (const m of sink.messages) {
          const id = /^X-Torture-Id: (\S+)/m.exec(m.body.toString('latin1'))?.[1] ?? '(none)';
          const want = OUTBOUND_DOMAINS.find((d) => m.to[0]?.endsWith(`@${d.domain}`));
          if (m.to.length !== 1 || m.to[0] !== outboundRcpt(id) || !want?.hosts.includes(host)) {
            misrouted.push(`${id} to ${m.to.join(',')} at ${host}`);
            continue;
          }
          arr.set(id, (arr.get(id) ?? 0) + 1);
        }
      }
      return arr;
    },
  };
  try {
    const extra = {
      internal: { networks: ['127.0.0.1/32'] },
      dns: { servers: [dns.server], timeoutMs: 500 },
      outbound: { port: first.port, connectTimeoutMs: 1000, commandTimeoutMs: 10_000 },
    };
    await scenario('outbound', { extra }, async (ctx) => {
      await ctx.start();
      const load = startLoad(ctx.port, { prefix: 'b', rcpt: outboundRcpt });
      const restarts = await killRepeatedly('outbound', ctx, load, OUTBOUND_KILLS);
      const kills = restarts.length;
      const stop = watchCrash('outbound', ctx.moat);
      await sleep(1000);
      await load.stop();
      await load.drain();
      await settle(load, destinations, ctx.socket);
      restarts.sort((a, b) => a - b);
      const perHost = [...sinks].map(([host, s]) => `${host} ${s.messages.length}`).join(', ');
      report('outbound', load, destinations, [
        `${kills} kill -9, restart to listening p50 ${restarts[restarts.length >> 1]} ms, max ${restarts.at(-1)} ms`,
        `arrivals per MX host: ${perHost}; at the internal server (DSNs): ${ctx.internal.total}`,
      ]);
      expect('outbound', misrouted.length === 0, `every message reached the MX of its recipient's domain, with its own recipient only (${misrouted.length} did not${misrouted.length ? ': ' + misrouted.slice(0, 5).join('; ') : ''})`);
      expect('outbound', ctx.internal.total === 0, `no DSN to the internal sender while every MX was up (${ctx.internal.total})`);
      expect('outbound', sinks.get('127.0.0.72').messages.length > 0 && sinks.get('127.0.0.73').messages.length > 0, 'both MX hosts of equal preference got mail');
      stop();
    });
  } finally {
    for (const s of sinks.values()) await s.close();
    await dns.close();
  }
}

// ---------------------------------------------------------------- main

const RUN = { kill: killScenario, outage: outageScenario, full: fullScenario, clamd: clamdScenario, dns: dnsScenario, soak: soakScenario, outbound: outboundScenario };
const started = Date.now();
for (const name of SCENARIOS.filter((s) => only.includes(s))) await RUN[name]();
log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
for (const f of failures) console.log(`torture: FAILED ${f}`);
console.log(`torture: ${totals.sent} sent, ${totals.accepted} accepted, ${totals.delivered} delivered, ${totals.lost} lost, ${totals.duplicated} duplicated`);
process.exit(totals.lost > 0 || failures.length > 0 ? 1 : 0);
