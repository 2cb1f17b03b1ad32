#!/usr/bin/env node
// moat side by side with Postfix, in one run, on loopback: Postfix's smtp-source sends the
// bulk load (one message per connection, like Internet senders) to
//   direct   the internal server itself (no relay: the baseline)
//   postfix  Debian's Postfix 3.7 as the same DMZ relay (relay_domains example.com, the
//            internal server as its transport, no local delivery; private instance)
//   moat     node dist/moatd.js (localDomains example.com, the same internal server)
// with the scan chain off and on (moat: its signatures and clamd; Postfix: clamav-milter
// asking the same clamd, which has a tiny database of its own), for 10 KB and 1 MB
// messages, both relays spooling to a journaled ext4 image (the appliance's data
// partition's file system) loop-mounted for the run.
//
// The internal server is a timing sink in this process (scripts/bench/timing-sink.mjs);
// beside smtp-source a probe client (scripts/bench/probe.mjs) sends messages of the same
// size that carry the time of their DATA command, and the sink notes their arrival: the
// per-message latency (client's DATA → final dot at the internal server) under load.
// Prints a table and writes bench-results/compare-<timestamp>.json.
//
// Usage: npm run bench:compare -- [--quick] [--repeat N] [--scan off,on] ... (--help)
// Needs root (loop mount; installs Debian's postfix and clamav-milter when missing).
// Must never: reach beyond loopback, or leave a relay, clamd or mount behind (cleanup.mjs).
import { mkdtempSync, mkdirSync, chmodSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { round, summariseRounds } from './bench/stats.mjs';
import { installHandlers, register, isShuttingDown, releaseAll } from './bench/cleanup.mjs';
import { startProcess, startSampler, treeCpuSeconds, freePort, sleep, run } from './bench/proc.mjs';
import { mountExt4 } from './bench/fs.mjs';
import { ensurePostfixTools, startPostfix, postfixVersion, maillogSummary, SMTP_SOURCE } from './bench/postfix.mjs';
import { startMoat, moatBuilt } from './bench/moat.mjs';
import { startTimingSink } from './bench/timing-sink.mjs';
import { startProbes, quantile } from './bench/probe.mjs';
import { ensureClamavMilter, startClamavMilter } from './bench/clamav-milter.mjs';
import { startClamd } from '../test/helpers/clamd.ts';
import { RawSmtp } from '../test/helpers/smtp-client.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MOATD = join(repoRoot, 'dist', 'moatd.js');

const USAGE = `usage: npm run bench:compare -- [options]
  --quick             1/10 of the message counts (10 KB: 500, 1 MB: 20)
  --workloads LIST    comma list of A (10 KB × 5000, 20 sessions), B (1 MB × 200, 10 sessions)
  --targets LIST      comma list of direct,postfix,moat (default all)
  --scan LIST         comma list of off,on (default off,on)
  --repeat N          run everything N times; medians follow (default 1)
  --probe-sessions N  probe client sessions beside smtp-source (default 1)
  --timeout SEC       limit of each smtp-source run (default 600)
  --stall SEC         give up waiting for the sink after SEC s without an arrival (default 60)
  --out DIR           results directory (default bench-results)
  -h, --help`;

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      workloads: { type: 'string', default: 'A,B' },
      targets: { type: 'string', default: 'direct,postfix,moat' },
      scan: { type: 'string', default: 'off,on' },
      repeat: { type: 'string', default: '1' },
      'probe-sessions': { type: 'string', default: '1' },
      timeout: { type: 'string', default: '600' },
      stall: { type: 'string', default: '60' },
      out: { type: 'string', default: 'bench-results' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  console.error(`bench-compare: ${e.message}\n${USAGE}`);
  process.exit(2);
}
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
const workloadNames = list(opts.workloads).map((w) => w.toUpperCase());
const targets = list(opts.targets);
const scans = list(opts.scan);
const repeat = Number(opts.repeat);
const probeSessions = Number(opts['probe-sessions']);
const timeoutS = Number(opts.timeout);
const stallS = Number(opts.stall);
const bad = [
  ...workloadNames.filter((w) => !['A', 'B'].includes(w)).map((w) => `workload "${w}"`),
  ...targets.filter((t) => !['direct', 'postfix', 'moat'].includes(t)).map((t) => `target "${t}"`),
  ...scans.filter((s) => !['off', 'on'].includes(s)).map((s) => `scan "${s}"`),
  !workloadNames.length && '--workloads is empty',
  !targets.length && '--targets is empty',
  !scans.length && '--scan is empty',
  !(Number.isInteger(repeat) && repeat >= 1) && '--repeat must be an integer of at least 1',
  !(Number.isInteger(probeSessions) && probeSessions >= 1 && probeSessions <= 16) && '--probe-sessions must be an integer from 1 to 16',
  !(timeoutS > 0) && '--timeout must be a positive number',
  !(stallS > 0) && '--stall must be a positive number',
].filter(Boolean);
if (bad.length) {
  console.error(`bench-compare: bad option(s): ${bad.join(', ')}\n${USAGE}`);
  process.exit(2);
}

const div = opts.quick ? 10 : 1;
const WORKLOADS = {
  A: { name: 'A', label: '10 KB', length: 10240, count: 5000 / div, sessions: 20, probePauseMs: 20 },
  B: { name: 'B', label: '1 MB', length: 1048576, count: 200 / div, sessions: 10, probePauseMs: 50 },
};
const workloads = workloadNames.map((w) => WORKLOADS[w]);
const log = (m) => console.error(`bench-compare: ${m}`);

/** The reply to the end of data of a message that carries the first signature of tinyNdb(). */
async function infectedReply(port) {
  const sig = Buffer.from(tinyNdb().split('\n')[0].split(':')[3], 'hex');
  let c;
  try {
    c = await RawSmtp.greeted(port, 'check.bench.example.net');
    await c.cmd('MAIL FROM:<check@example.net>');
    await c.cmd('RCPT TO:<user@example.com>');
    await c.cmd('DATA');
    c.write(Buffer.concat([Buffer.from('Subject: infected\r\n\r\nbefore '), sig, Buffer.from(' after\r\n.\r\n')]));
    return (await c.reply(60_000)).split('\r\n').at(-1);
  } catch (e) {
    return `no reply: ${e.message}`;
  } finally {
    c?.destroy();
  }
}

/** The tiny signature database: the same file for moat's signature stage and for clamd. */
function tinyNdb(n = 50) {
  let s = 7;
  const hex = () => {
    let h = '';
    for (let i = 0; i < 24; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      h += (0x61 + ((s >>> 16) % 26)).toString(16); // a-z: nothing the SMTP guard would refuse
    }
    return h;
  };
  return Array.from({ length: n }, (_, i) => `Moat.Bench.Sig${i}:0:*:${hex()}`).join('\n') + '\n';
}

const results = {
  tool: 'moat scripts/bench-compare.mjs',
  startedAt: new Date().toISOString(),
  host: {
    node: process.version,
    kernel: os.release(),
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    load1AtStart: round(os.loadavg()[0], 2),
  },
  options: { ...opts, timeoutS, stallS },
  method: {},
  rows: [],
};
let resultsFile;
const save = () => resultsFile && writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n');

function sourceArgs(wl, port) {
  return ['-c', '-N', '-s', String(wl.sessions), '-m', String(wl.count), '-l', String(wl.length), '-M', 'client.bench.example.net', '-f', 'sender@example.net', '-t', 'user@example.com', `127.0.0.1:${port}`];
}

/**
 * One row: a fresh timing sink, the relay from startRelay(sinkPort) (null for direct),
 * smtp-source and the probes at once, then wait until the sink has every message that
 * got a 250. `helpers` are pids (clamd, clamav-milter) whose CPU is counted apart.
 */
async function measure(row, wl, startRelay, helpers = []) {
  const sink = await startTimingSink();
  let relay = null;
  let sampler = null;
  try {
    try {
      relay = await startRelay(sink.port);
    } catch (e) {
      row.status = 'setup failed';
      row.note = e.message;
      return row;
    }
    const port = relay?.port ?? sink.port;
    if (row.scan === 'on') {
      // the scan chain is really on: a message with a signature of the database is refused
      row.scanCheck = await infectedReply(port);
      if (!/^5\d\d/.test(row.scanCheck)) {
        row.status = 'scan not on';
        row.note = `a message with a signature got "${row.scanCheck}"`;
        return row;
      }
    }
    await run('sync', [], { timeoutMs: 120_000 });
    await sleep(300);
    const base = sink.count;
    const cpu0 = relay ? treeCpuSeconds(relay.pid) : 0;
    const helperCpu0 = helpers.reduce((a, pid) => a + treeCpuSeconds(pid), 0);
    sampler = relay ? startSampler(relay.pid, { single: relay.single }) : null;
    const self0 = process.cpuUsage();
    row.load1AtStart = round(os.loadavg()[0], 2);
    let sent = 0;
    let partial = '';
    const t0 = performance.now();
    const src = startProcess('smtp-source', SMTP_SOURCE, sourceArgs(wl, port), {
      onStdout: (d) => {
        partial += d;
        const parts = partial.split(/[\r\n]/);
        partial = parts.pop();
        for (let i = parts.length - 1; i >= 0; i--)
          if (/^\d+$/.test(parts[i])) {
            sent = Number(parts[i]);
            break;
          }
      },
    });
    const probes = startProbes(port, { sessions: probeSessions, size: wl.length, pauseMs: wl.probePauseMs });
    let timedOut = false;
    const killer = setTimeout(() => {
      timedOut = true;
      src.stop(2000);
    }, timeoutS * 1000);
    const ex = await src.exited;
    clearTimeout(killer);
    const pr = await probes.stop();
    const tIntake = performance.now();
    const bulk = ex.code === 0 && !timedOut ? Math.max(sent, wl.count) : sent;
    const expected = bulk + pr.accepted.size;
    if (isShuttingDown()) row.status = 'interrupted';
    else if (timedOut) row.status = 'timed out';
    else if (ex.code !== 0) {
      row.status = 'source error';
      row.note = `smtp-source exit ${ex.code ?? ex.signal}: ${src.stderr.text.trim().split('\n').slice(-2).join(' | ')}`;
    }
    const deadline = t0 + (timeoutS + stallS) * 1000;
    const complete = await sink.waitFor(base + expected, () => {
      const now = performance.now();
      return isShuttingDown() || Boolean(relay?.exitInfo) || now > deadline || now - Math.max(sink.lastProgressAt, tIntake) > stallS * 1000;
    });
    const tEnd = complete ? sink.reachedAt(base + expected) : performance.now();
    const cpu1 = relay ? treeCpuSeconds(relay.pid) : 0;
    const helperCpu1 = helpers.reduce((a, pid) => a + treeCpuSeconds(pid), 0);
    const rss = sampler?.stop();
    sampler = null;
    const self = process.cpuUsage(self0);
    row.benchCpuS = round((self.user + self.system) / 1e6, 2);
    row.messages = expected;
    row.probes = pr.accepted.size;
    row.probesRefused = Object.fromEntries(pr.refused);
    row.delivered = sink.count - base;
    if (!complete && row.status === 'ok') {
      row.status = 'incomplete';
      row.note = `sink got ${row.delivered} of ${expected}`;
    }
    if (relay?.exitInfo) {
      row.status = 'relay died';
      row.note = `relay exited (${relay.exitInfo.code ?? relay.exitInfo.signal})`;
    }
    if (row.status !== 'ok' && relay?.diagnose) row.note += ` — ${relay.diagnose()}`;
    const e2eS = (Math.max(tEnd, tIntake) - t0) / 1000;
    row.e2eS = round(e2eS, 3);
    row.msgsPerS = row.delivered ? round(row.delivered / e2eS, 1) : null;
    row.MBPerS = row.delivered ? round((row.delivered * wl.length) / 1e6 / e2eS, 1) : null;
    const lat = [...pr.accepted].map((id) => sink.probes.get(id)).filter((x) => typeof x === 'number');
    row.latencySamples = lat.length;
    row.p50Ms = round(quantile(lat, 0.5), 1);
    row.p99Ms = round(quantile(lat, 0.99), 1);
    if (relay) {
      row.peakRssMiB = round(rss.peakRssKb / 1024, 1);
      row.peakPssMiB = rss.peakPssKb === null ? null : round(rss.peakPssKb / 1024, 1);
      row.cpuMsPerMsg = row.delivered ? round(((cpu1 - cpu0) * 1000) / row.delivered, 3) : null;
      row.scanCpuMsPerMsg = helpers.length && row.delivered ? round(((helperCpu1 - helperCpu0) * 1000) / row.delivered, 3) : null;
    }
    return row;
  } finally {
    sampler?.stop();
    await relay?.stop().catch((e) => log(`stopping relay: ${e.message}`));
    await sink.stop();
  }
}

let currentRound = 1;
let rowSeq = 0;
const baseRow = (target, scan, wl) => ({
  round: currentRound,
  target,
  scan,
  workload: wl.name,
  size: wl.label,
  sessions: wl.sessions,
  messages: 0,
  delivered: 0,
  probes: 0,
  e2eS: null,
  msgsPerS: null,
  MBPerS: null,
  p50Ms: null,
  p99Ms: null,
  latencySamples: 0,
  cpuMsPerMsg: null,
  scanCpuMsPerMsg: null,
  peakRssMiB: null,
  peakPssMiB: null,
  benchCpuS: null,
  load1AtStart: null,
  status: 'ok',
  note: '',
});

async function main() {
  installHandlers();
  if (process.getuid?.() !== 0) log('warning: not root; the loop mount and Postfix will fail');
  if (targets.some((t) => t !== 'direct') && !moatBuilt(MOATD) && targets.includes('moat')) throw new Error(`${MOATD} is missing: npm run bench:compare builds it`);
  await ensurePostfixTools();
  results.host.postfix = await postfixVersion();
  let milterUnavailable = null;
  if (scans.includes('on') && targets.includes('postfix')) {
    try {
      await ensureClamavMilter();
    } catch (e) {
      milterUnavailable = e.message;
      log(`clamav-milter unavailable, Postfix gets no scan row: ${e.message}`);
    }
  }

  const tmpRoot = mkdtempSync('/var/tmp/moat-compare-');
  chmodSync(tmpRoot, 0o755);
  register(`temp dir ${tmpRoot}`, async () => rmSync(tmpRoot, { recursive: true, force: true }), () => rmSync(tmpRoot, { recursive: true, force: true }));
  const logRoot = join(tmpRoot, 'logs');
  mkdirSync(logRoot, { recursive: true });
  chmodSync(logRoot, 0o755);
  const outDir = resolve(repoRoot, opts.out);
  mkdirSync(outDir, { recursive: true });
  resultsFile = join(outDir, `compare-${results.startedAt.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')}.json`);

  // the scanners, shared by every scan row: one clamd, one clamav-milter
  let clamd = null;
  let milter = null;
  const ndb = join(tmpRoot, 'bench.ndb');
  writeFileSync(ndb, tinyNdb());
  if (scans.includes('on')) {
    clamd = await startClamd(tinyNdb());
    register('clamd', () => clamd.stop());
    if (!milterUnavailable && targets.includes('postfix')) {
      try {
        milter = await startClamavMilter({ dir: join(tmpRoot, 'milter'), clamdTcp: clamd.tcp });
      } catch (e) {
        milterUnavailable = e.message;
        log(`clamav-milter did not start, Postfix gets no scan row: ${e.message}`);
      }
    }
  }

  const fsInfo = await mountExt4(tmpRoot);
  results.fs = fsInfo.describe;
  results.method = {
    client: `smtp-source ${sourceArgs({ sessions: 'S', count: 'N', length: 'L' }, 'PORT').join(' ')} (HELO, no pipelining, one message per connection), plus ${probeSessions} probe session(s) of scripts/bench/probe.mjs sending messages of the same size one per connection, with a pause of 20 ms (10 KB) or 50 ms (1 MB) between them`,
    sink: 'scripts/bench/timing-sink.mjs in the benchmark process: answers every command with success (PIPELINING advertised, as smtp-sink), notes the arrival of each final dot',
    msgsPerS: 'every message delivered (smtp-source and probes) divided by the time from starting smtp-source until the sink had the last message that got a 250',
    MBPerS: 'delivered messages × the workload size (10 240 or 1 048 576 bytes), 1 MB = 10^6 bytes, over the same time',
    latency: 'per probe message: from just before the probe client sends DATA to the arrival of its final dot at the sink (one clock, one process), under the bulk load; p50/p99 by nearest rank',
    cpu: 'utime+stime of the relay process tree (Postfix: master and every worker, reaped ones included) per delivered message; scan CPU: clamd (and for Postfix clamav-milter) apart',
    memory: 'moat: peak VmHWM/VmRSS of moatd; Postfix: peak of the summed VmRSS of its processes sampled every 100 ms (PSS in parentheses: shared pages counted once)',
    spool: fsInfo.describe,
    postfix: 'Debian Postfix, private instance per row: relay_domains = example.com, transport_maps inline:{example.com=relay:[127.0.0.1]:SINK}, mydestination empty, local delivery disabled, queue on the ext4 image; scan on: smtpd_milters = clamav-milter (OnInfected Reject, OnFail Defer, AddHeader No) asking the shared clamd',
    moat: 'node dist/moatd.js, localDomains example.com, recipients any, the sink as its internal server, spool on the ext4 image; scan off: no signatures (EICAR off), no clamd — the guard, size, header and MIME stages and the attachment policy always run; scan on: 50 .ndb signatures plus EICAR, and clamd (the shared one, INSTREAM over TCP)',
    clamd: 'Debian clamd 1.4, foreground, MaxThreads 4, a database of the 50 signatures only (no download)',
  };
  log(`${opts.quick ? 'QUICK ' : ''}run → ${resultsFile}`);
  const load = os.loadavg()[0];
  if (load > 1) log(`warning: load average ${load.toFixed(2)} on ${os.cpus().length} cores: the machine is not quiet, numbers will be noisy`);

  const add = (r) => {
    results.rows.push(r);
    log(`  ${r.target}/${r.scan}/${r.size}: ${r.delivered}/${r.messages} msgs, ${fmt(r.msgsPerS, 1)}/s, ${fmt(r.MBPerS, 1)} MB/s, p50 ${fmt(r.p50Ms, 1)} ms, p99 ${fmt(r.p99Ms, 1)} ms, CPU ${fmt(r.cpuMsPerMsg, 2)} ms/msg, RSS ${fmt(r.peakRssMiB, 1)} MiB${r.status !== 'ok' ? ` — ${r.status}: ${r.note}` : ''}`);
    save();
  };

  for (currentRound = 1; currentRound <= repeat; currentRound++) {
    if (repeat > 1) log(`round ${currentRound} of ${repeat}`);
    for (const wl of workloads) {
      if (targets.includes('direct')) {
        if (isShuttingDown()) return;
        log(`direct ${wl.label}…`);
        add(await measure(baseRow('direct', '-', wl), wl, async () => null));
      }
      for (const scan of scans) {
        for (const target of targets.filter((t) => t !== 'direct')) {
          if (isShuttingDown()) return;
          const id = `${String(++rowSeq).padStart(2, '0')}-${target}-${scan}-${wl.name}`;
          const row = baseRow(target, scan, wl);
          log(`${id}: ${wl.count} × ${wl.label}, ${wl.sessions} sessions…`);
          if (target === 'postfix') {
            if (scan === 'on' && !milter) {
              row.status = 'no scan';
              row.note = `Postfix has no scan row: ${milterUnavailable ?? 'clamav-milter not started'}`;
              add(row);
              continue;
            }
            add(
              await measure(
                row,
                wl,
                async (sinkPort) => {
                  const port = await freePort();
                  const pf = await startPostfix({
                    confDir: join(tmpRoot, 'conf', id),
                    spoolDir: join(fsInfo.dir, id),
                    logDir: join(logRoot, id),
                    port,
                    sinkPort,
                    name: `postfix-compare-${rowSeq}`,
                    extraMainCf: scan === 'on' ? `smtpd_milters = ${milter.milter}\nnon_smtpd_milters =\nmilter_default_action = tempfail\nmilter_protocol = 6\n` : '',
                  });
                  return {
                    port,
                    pid: pf.pid,
                    single: false,
                    stop: pf.stop,
                    diagnose: () => {
                      const s = maillogSummary(pf.readLog());
                      return `maillog: ${s.sent} sent, ${s.deferred} deferred, ${s.bounced} bounced${s.problems.length ? '; ' + s.problems.join(' | ') : ''}`;
                    },
                  };
                },
                scan === 'on' ? [clamd.pid, milter.pid] : [],
              ),
            );
          } else {
            add(
              await measure(
                row,
                wl,
                async (sinkPort) => {
                  const port = await freePort();
                  const m = await startMoat({
                    repoRoot,
                    moatd: MOATD,
                    confDir: join(tmpRoot, 'conf', id),
                    dataDir: join(fsInfo.dir, id),
                    port,
                    sinkPort,
                    syncDelayMs: 0,
                    extra: scan === 'on' ? { scan: { signatures: { files: [ndb], eicar: true }, clamd: { address: clamd.tcp, timeoutMs: 60_000 } } } : { scan: { signatures: { eicar: false } } },
                    name: id,
                  });
                  return { port, pid: m.pid, single: true, stop: m.stop, get exitInfo() { return m.exitInfo; }, diagnose: () => `moatd output: ${m.outputTail() || 'none'}` };
                },
                scan === 'on' ? [clamd.pid] : [],
              ),
            );
          }
        }
      }
    }
  }
  await fsInfo.release();
  if (repeat > 1) results.summary = summarise(results.rows);
  results.finishedAt = new Date().toISOString();
  save();
  printTable(results.summary ?? results.rows);
  console.log(`\nresults written to ${resultsFile}`);
}

/** Medians over the rounds of each (target, scan, workload), from the rows that finished ok. */
function summarise(rows) {
  return summariseRounds(rows, (r) => `${r.workload}|${r.scan}|${r.target}`, (g, ok, med) => {
    return {
      ...g[0],
      round: 'median',
      runs: g.length,
      okRuns: ok.length,
      messages: med('messages', 0),
      delivered: med('delivered', 0),
      msgsPerS: med('msgsPerS', 1),
      MBPerS: med('MBPerS', 1),
      p50Ms: med('p50Ms', 1),
      p99Ms: med('p99Ms', 1),
      latencySamples: med('latencySamples', 0),
      cpuMsPerMsg: med('cpuMsPerMsg', 3),
      scanCpuMsPerMsg: med('scanCpuMsPerMsg', 3),
      peakRssMiB: med('peakRssMiB', 1),
      peakPssMiB: med('peakPssMiB', 1),
      load1AtStart: med('load1AtStart', 2),
      status: ok.length === g.length ? 'ok' : [...new Set(g.map((r) => r.status))].join(','),
      note: g.map((r) => r.note).filter(Boolean).join('; '),
    };
  });
}

const fmt = (v, d = 0) => (v === null || v === undefined ? '-' : Number(v).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));

function printTable(rows) {
  const vsPostfix = (r) => {
    if (r.target !== 'moat' || !r.msgsPerS) return '-';
    const p = rows.find((x) => x.target === 'postfix' && x.workload === r.workload && x.scan === r.scan && x.round === r.round && x.msgsPerS);
    return p ? `${fmt(r.msgsPerS / p.msgsPerS, 2)}×` : '-';
  };
  const head = ['size', 'target', 'scan', 'msgs', 'msg/s', 'MB/s', 'p50 ms', 'p99 ms', 'CPU ms/msg', 'scan CPU ms/msg', 'peak RSS MiB', 'vs Postfix', 'load', 'status'];
  const body = rows.map((r) => [
    r.size,
    r.target,
    r.scan,
    r.messages ? `${r.delivered}/${r.messages}` : '-',
    fmt(r.msgsPerS, 1),
    fmt(r.MBPerS, 1),
    fmt(r.p50Ms, 1),
    fmt(r.p99Ms, 1),
    fmt(r.cpuMsPerMsg, 2),
    fmt(r.scanCpuMsPerMsg, 2),
    r.peakPssMiB === null || r.peakPssMiB === undefined ? fmt(r.peakRssMiB, 1) : `${fmt(r.peakRssMiB, 1)} (${fmt(r.peakPssMiB, 0)})`,
    vsPostfix(r),
    fmt(r.load1AtStart, 1),
    r.status,
  ]);
  console.log(`\nmoat vs Postfix${opts.quick ? ' (--quick)' : ''}${repeat > 1 ? `, medians of ${repeat} rounds` : ''} — ${results.host.cpu}, ${results.host.cores} cores, ${results.host.memGiB} GiB, Node ${process.version}, Postfix ${results.host.postfix}`);
  console.log(`spool: ${results.fs}`);
  console.log('msgs = delivered/accepted (smtp-source + probes); latency = probe DATA → final dot at the internal server, under load;');
  console.log('CPU = the relay\'s processes; scan CPU = clamd (+ clamav-milter for Postfix); RSS of the relay (Postfix: summed, PSS in parentheses)\n');
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => String(b[i]).length)));
  const right = new Set([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const line = (cells) => cells.map((c, i) => (right.has(i) ? String(c).padStart(w[i]) : String(c).padEnd(w[i]))).join('  ').trimEnd();
  console.log(line(head));
  console.log(line(w.map((n) => '-'.repeat(n))));
  for (const b of body) console.log(line(b));
  console.log('\nmarkdown:\n');
  console.log(`| ${head.slice(0, 12).join(' | ')} |`);
  console.log(`|${head.slice(0, 12).map((_, i) => (right.has(i) ? '---:' : '---')).join('|')}|`);
  for (const b of body) console.log(`| ${b.slice(0, 12).join(' | ')} |`);
  const notes = rows.filter((r) => r.note);
  if (notes.length) console.log('');
  for (const r of notes) console.log(`${r.target}/${r.scan}/${r.size}: ${r.status}: ${r.note}`);
}

main()
  .then(async () => {
    if (isShuttingDown()) return;
    await releaseAll();
    process.exit(results.rows.some((r) => !['ok', 'no scan'].includes(r.status)) ? 1 : 0);
  })
  .catch(async (e) => {
    if (isShuttingDown()) return;
    console.error(`bench-compare: failed: ${e?.stack ?? e}`);
    save();
    await releaseAll();
    process.exit(1);
  });
