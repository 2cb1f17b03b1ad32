#!/usr/bin/env node
// Relay benchmark: Postfix's smtp-source → relay → smtp-sink on loopback.
//
// Targets, each for workload A (10 KB × 5000, 20 sessions) and B (1 MB × 200,
// 10 sessions), in one run:
//   direct       smtp-source → smtp-sink, no relay (the baseline)
//   postfix      Debian's Postfix 3.7 as the same relay (private instance)
//   moat         node dist/moatd.js, storage.syncDelayMs 0
//   moat-sync10  the same with storage.syncDelayMs 10 (a slow SD card)
// on a journaled ext4 image loop-mounted for the spool and/or a plain dir on
// /var/tmp. Prints a table and writes bench-results/relay-<timestamp>.json.
//
// Usage: npm run bench:relay -- [--quick] [--fs ext4|plain|both] [--targets a,b] ...
//        (or: npx node scripts/bench-relay.mjs ...; --help for all options)
// Needs root (loop mount, apt-get install postfix, Postfix itself).
import { mkdtempSync, mkdirSync, rmSync, chmodSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { round, summariseRounds } from './bench/stats.mjs';
import { installHandlers, register, isShuttingDown, releaseAll } from './bench/cleanup.mjs';
import { startProcess, startSampler, treeCpuSeconds, freePort, sleep, run } from './bench/proc.mjs';
import { mountExt4, plainDir } from './bench/fs.mjs';
import { ensurePostfixTools, startPostfix, postfixVersion, maillogSummary, SMTP_SOURCE } from './bench/postfix.mjs';
import { startSink } from './bench/sink.mjs';
import { startMoat, moatBuilt } from './bench/moat.mjs';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MOATD = join(repoRoot, 'dist', 'moatd.js');

const USAGE = `usage: node scripts/bench-relay.mjs [options]
  --fs ext4|plain|both     spool file system(s) (default both)
  --quick                  1/10 of the message counts (A: 500, B: 20)
  --targets LIST           comma list of direct,postfix,moat,moat-sync10 (default all)
  --workloads LIST         comma list of A,B (default A,B)
  --reuse                  several messages per connection (smtp-source -d);
                           default: one message per connection, like Internet senders
  --timeout SEC            limit for each smtp-source run (default 600); killed after it
  --stall SEC              after intake, give up waiting for the sink when no message
                           arrived for SEC seconds (default 60)
  --sync-delay MS          storage.syncDelayMs of the moat-sync row (default 10)
  --moat-config FILE       JSON deep-merged into every generated moat config
  --repeat N               run the whole matrix N times; with N > 1 a table of
                           medians follows the per-run table (default 1)
  --out DIR                results dir (default bench-results)
  -h, --help`;

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      fs: { type: 'string', default: 'both' },
      quick: { type: 'boolean', default: false },
      targets: { type: 'string', default: 'direct,postfix,moat,moat-sync10' },
      workloads: { type: 'string', default: 'A,B' },
      reuse: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '600' },
      stall: { type: 'string', default: '60' },
      'sync-delay': { type: 'string', default: '10' },
      'moat-config': { type: 'string' },
      out: { type: 'string', default: 'bench-results' },
      repeat: { type: 'string', default: '1' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const fsKinds = { both: ['ext4', 'plain'], ext4: ['ext4'], plain: ['plain'] }[opts.fs];
const targets = opts.targets.split(',').map((s) => s.trim()).filter(Boolean);
const workloadNames = opts.workloads.split(',').map((s) => s.trim().toUpperCase()).filter(Boolean);
const timeoutS = Number(opts.timeout);
const stallS = Number(opts.stall);
const syncDelay = Number(opts['sync-delay']);
const repeat = Number(opts.repeat);
const bad = [
  !fsKinds && `--fs ${opts.fs}`,
  ...targets.filter((t) => !['direct', 'postfix', 'moat', 'moat-sync10'].includes(t)).map((t) => `target ${t}`),
  ...workloadNames.filter((w) => !['A', 'B'].includes(w)).map((w) => `workload ${w}`),
  !(timeoutS > 0) && '--timeout',
  !(stallS > 0) && '--stall',
  !(syncDelay >= 0) && '--sync-delay',
  !(Number.isInteger(repeat) && repeat >= 1) && '--repeat',
].filter(Boolean);
if (bad.length) {
  console.error(`bad option(s): ${bad.join(', ')}\n${USAGE}`);
  process.exit(2);
}
let moatExtra;
if (opts['moat-config']) moatExtra = JSON.parse(readFileSync(opts['moat-config'], 'utf8'));

const div = opts.quick ? 10 : 1;
const WORKLOADS = {
  A: { name: 'A', label: '10 KB', length: 10240, count: 5000 / div, sessions: 20 },
  B: { name: 'B', label: '1 MB', length: 1048576, count: 200 / div, sessions: 10 },
};
const workloads = workloadNames.map((w) => WORKLOADS[w]);

const log = (m) => console.error(`bench: ${m}`);

function sourceArgs(wl, port) {
  return [
    '-c', // counter of completed DATA commands on stdout
    '-N', // distinct recipients (1user@, 2user@, …): no artificial 100 % cache hits
    ...(opts.reuse ? ['-d'] : []),
    '-s', String(wl.sessions),
    '-m', String(wl.count),
    '-l', String(wl.length),
    '-M', 'client.bench.example.net',
    '-f', 'sender@example.net',
    '-t', 'user@example.com',
    `127.0.0.1:${port}`,
  ];
}

// ------------------------------------------------------------------ rows ---

const results = {
  tool: 'moat scripts/bench-relay.mjs',
  startedAt: new Date().toISOString(),
  host: {
    node: process.version,
    kernel: os.release(),
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
  },
  options: { ...opts, quick: opts.quick, timeoutS, stallS },
  method: {},
  fs: {},
  rows: [],
};
let resultsFile;

function saveResults() {
  if (!resultsFile) return;
  writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n');
}

let currentRound = 1;

function baseRow(target, fsKind, wl) {
  return {
    round: currentRound,
    target,
    fs: fsKind,
    workload: wl.name,
    size: wl.label,
    sessions: wl.sessions,
    planned: wl.count,
    messages: 0,
    delivered: 0,
    intakeS: null,
    e2eS: null,
    intakeMsgsPerS: null,
    e2eMsgsPerS: null,
    e2eMBPerS: null,
    lagS: null,
    peakRssMiB: null,
    peakPssMiB: null,
    cpuS: null,
    cpuMsPerMsg: null,
    vsDirect: null,
    benchCpuS: null,
    load1AtStart: round(os.loadavg()[0], 2),
    status: 'ok',
    note: '',
  };
}

/**
 * One row: fresh sink, fresh relay (started by `startRelay(sinkPort)`, which
 * returns { port, pid, single, stop, diagnose } or null for direct), one
 * smtp-source run, wait until the sink has every message.
 */
async function measure(row, wl, startRelay) {
  const sink = await startSink();
  let relay = null;
  let sampler = null;
  try {
    try {
      relay = await startRelay(sink.port);
    } catch (e) {
      row.status = 'setup failed';
      row.note = e.message;
      log(`${row.target}/${row.fs}/${row.workload}: ${e.message}`);
      return row;
    }
    const port = relay?.port ?? sink.port;
    await run('sync', [], { timeoutMs: 120_000 });
    await sleep(300);
    const sinkBase = sink.count; // the readiness probe counted no message, but be exact
    const cpu0 = relay ? treeCpuSeconds(relay.pid) : 0;
    sampler = relay ? startSampler(relay.pid, { single: relay.single }) : null;

    let sentCounter = 0;
    let partial = '';
    const self0 = process.cpuUsage();
    row.load1AtStart = round(os.loadavg()[0], 2);
    const t0 = performance.now();
    const src = startProcess('smtp-source', SMTP_SOURCE, sourceArgs(wl, port), {
      onStdout: (d) => {
        partial += d;
        const parts = partial.split(/[\r\n]/);
        partial = parts.pop();
        for (let i = parts.length - 1; i >= 0; i--)
          if (/^\d+$/.test(parts[i])) {
            sentCounter = Number(parts[i]);
            break;
          }
      },
    });
    let timedOut = false;
    const killer = setTimeout(() => {
      timedOut = true;
      src.stop(2000);
    }, timeoutS * 1000);
    const ex = await src.exited;
    clearTimeout(killer);
    const tIntake = performance.now();
    const sent = ex.code === 0 && !timedOut ? Math.max(sentCounter, wl.count) : sentCounter;
    row.messages = sent;
    if (isShuttingDown()) {
      row.status = 'interrupted';
      row.note = `stopped by a signal with ${sent}/${wl.count} sent`;
    } else if (timedOut) {
      row.status = 'timed out';
      row.note = `smtp-source killed after ${timeoutS}s with ${sent}/${wl.count} sent`;
    } else if (ex.code !== 0) {
      row.status = 'source error';
      row.note = `smtp-source exit ${ex.code ?? ex.signal}: ${src.stderr.text.trim().split('\n').slice(-2).join(' | ')}`;
    }

    // end to end: until the sink has every message smtp-source got a 250 for
    const hardDeadline = t0 + (timeoutS + stallS) * 1000;
    const complete = await sink.waitFor(sinkBase + sent, () => {
      const now = performance.now();
      return isShuttingDown() || Boolean(relay?.exitInfo) || now > hardDeadline || (now > tIntake && now - Math.max(sink.lastProgressAt, tIntake) > stallS * 1000);
    });
    const tEnd = complete ? sink.reachedAt(sinkBase + sent) : performance.now();
    const cpu1 = relay ? treeCpuSeconds(relay.pid) : 0;
    const rss = sampler?.stop();
    sampler = null;
    const self = process.cpuUsage(self0);
    row.benchCpuS = round((self.user + self.system) / 1e6, 2);
    row.delivered = sink.count - sinkBase;
    if (!complete && row.status === 'ok') {
      row.status = 'incomplete';
      row.note = `sink got ${row.delivered} of ${sent} (no progress for ${stallS}s or deadline)`;
    }
    if (relay?.exitInfo) {
      row.status = 'relay died';
      row.note = `${row.note ? row.note + '; ' : ''}relay exited (${relay.exitInfo.code ?? relay.exitInfo.signal}) ${relay.diagnose?.() ?? ''}`;
    }
    if (row.status !== 'ok' && relay?.diagnose) {
      const d = relay.diagnose();
      if (d) row.note += ` — ${d}`;
    }

    const intakeS = (tIntake - t0) / 1000;
    const e2eS = (Math.max(tEnd, tIntake) - t0) / 1000;
    row.intakeS = round(intakeS, 3);
    row.e2eS = round(e2eS, 3);
    row.lagS = round(e2eS - intakeS, 3);
    row.intakeMsgsPerS = sent ? round(sent / intakeS, 1) : null;
    row.e2eMsgsPerS = row.delivered ? round(row.delivered / e2eS, 1) : null;
    row.e2eMBPerS = row.delivered ? round((row.delivered * wl.length) / 1e6 / e2eS, 1) : null;
    if (relay) {
      row.peakRssMiB = round(rss.peakRssKb / 1024, 1);
      row.peakPssMiB = rss.peakPssKb === null ? null : round(rss.peakPssKb / 1024, 1);
      row.cpuS = round(cpu1 - cpu0, 2);
      row.cpuMsPerMsg = row.delivered ? round(((cpu1 - cpu0) * 1000) / row.delivered, 3) : null;
    }
    return row;
  } finally {
    sampler?.stop();
    await relay?.stop().catch((e) => log(`stopping relay: ${e.message}`));
    await sink.stop();
  }
}

let rowSeq = 0;

async function rowFor(target, fsInfo, wl, tmpRoot) {
  const row = baseRow(target, fsInfo?.kind ?? '-', wl);
  const id = `${String(++rowSeq).padStart(2, '0')}-${target}-${row.fs}-${wl.name}`;
  if (fsInfo?.error) {
    row.status = 'fs setup failed';
    row.note = fsInfo.error;
    return row;
  }
  log(`${id}: ${wl.count} × ${wl.label}, ${wl.sessions} sessions…`);
  if (target === 'direct') return measure(row, wl, async () => null);
  if (target === 'postfix') {
    if (postfixUnavailable) {
      row.status = 'setup failed';
      row.note = postfixUnavailable;
      return row;
    }
    return measure(row, wl, async (sinkPort) => {
      const port = await freePort();
      const pf = await startPostfix({
        confDir: join(tmpRoot, 'conf', id),
        spoolDir: join(fsInfo.dir, id),
        logDir: join(logRoot, id),
        port,
        sinkPort,
        name: `postfix-bench-${rowSeq}`,
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
    });
  }
  // moat, moat-sync10
  if (!moatBuilt(MOATD)) {
    row.status = 'not built';
    row.note = 'dist/moatd.js does not exist (run npx tsup)';
    return row;
  }
  const delay = target === 'moat' ? 0 : syncDelay;
  return measure(row, wl, async (sinkPort) => {
    const port = await freePort();
    const m = await startMoat({
      repoRoot,
      moatd: MOATD,
      confDir: join(tmpRoot, 'conf', id),
      dataDir: join(fsInfo.dir, id),
      port,
      sinkPort,
      syncDelayMs: delay,
      extra: moatExtra,
      name: id,
    });
    let exitInfo = null;
    return {
      port,
      pid: m.pid,
      single: true,
      stop: m.stop,
      get exitInfo() {
        return (exitInfo ??= m.exitInfo);
      },
      diagnose: () => `moatd output: ${m.outputTail() || 'none'}`,
    };
  });
}

// ------------------------------------------------------------------ main ---

let postfixUnavailable = null;
let logRoot;

async function main() {
  installHandlers();
  if (Number(process.versions.node.split('.')[0]) < 24) log(`warning: running on Node ${process.version}; the project pins Node 24 (use npx node)`);
  if (process.getuid?.() !== 0) log('warning: not root; loop mounts, installing and running Postfix will fail');

  await ensurePostfixTools();
  results.host.postfix = await postfixVersion();

  const tmpRoot = mkdtempSync('/var/tmp/moat-bench-');
  chmodSync(tmpRoot, 0o755); // Postfix's mail_owner must traverse it
  register(`temp dir ${tmpRoot}`, async () => rmSync(tmpRoot, { recursive: true, force: true }), () => rmSync(tmpRoot, { recursive: true, force: true }));
  const shm = existsSync('/dev/shm') ? '/dev/shm' : tmpRoot;
  logRoot = mkdtempSync(join(shm, 'moat-bench-logs-'));
  chmodSync(logRoot, 0o755);
  register(`log dir ${logRoot}`, async () => rmSync(logRoot, { recursive: true, force: true }), () => rmSync(logRoot, { recursive: true, force: true }));

  const outDir = resolve(repoRoot, opts.out);
  mkdirSync(outDir, { recursive: true });
  resultsFile = join(outDir, `relay-${results.startedAt.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')}.json`);

  results.method = {
    client: `smtp-source ${sourceArgs({ sessions: 'S', count: 'N', length: 'L' }, 'PORT').join(' ')}`,
    connections: opts.reuse
      ? 'several messages per connection (smtp-source -d), each session sending until the count is reached'
      : 'one message per connection (smtp-source default without -d): connect, HELO, MAIL, RCPT, DATA, QUIT',
    protocol: 'smtp-source speaks HELO (not EHLO) and does not pipeline',
    sink: 'smtp-sink -c -u nobody 127.0.0.1:PORT 1000, a fresh one per row; its running counter "mesg=N" (updated on every final dot) tells when the last message arrived',
    intake: 'from starting smtp-source until it exited (all messages got their reply to the final dot)',
    endToEnd: 'from starting smtp-source until the sink had counted every message that smtp-source got a 250 for',
    MBPerS: 'end-to-end, counting the smtp-source payload (-l bytes) per message, 1 MB = 10^6 bytes',
    peakRss: 'moat: max of VmHWM and VmRSS sampled every 100 ms; Postfix: peak of the sum of VmRSS of all its processes, sampled every 100 ms (counts shared pages once per process), and peakPssMiB: peak of the sum of Pss (smaps_rollup) sampled every 1 s',
    cpu: 'utime+stime of the relay process tree during the row, including reaped children (cutime+cstime), from /proc/PID/stat',
    vsDirect: 'end-to-end msgs/s divided by the direct row of the same workload',
    postfix: 'Postfix from Debian, private instance per row: postfix -c DIR start-fg under a subreaper; queue_directory and data_directory on the spool fs under test; relay_domains = example.com, transport_maps inline:{example.com=relay:[127.0.0.1]:SINK}; maillog_file on /dev/shm',
    moat: `node dist/moatd.js --config FILE, fresh storage.dataDir per row on the spool fs under test; moat-sync10 uses storage.syncDelayMs ${syncDelay}`,
  };

  console.error(`bench: ${opts.quick ? 'QUICK ' : ''}run, ${results.method.connections}`);
  console.error(`bench: results → ${resultsFile}`);

  const rows = results.rows;
  const addRow = (r) => {
    rows.push(r);
    const d = rows.find((x) => x.round === r.round && x.target === 'direct' && x.workload === r.workload && x.status === 'ok');
    if (d && r.e2eMsgsPerS) r.vsDirect = round(r.e2eMsgsPerS / d.e2eMsgsPerS, 3);
    log(`  ${fmtRowShort(r)}`);
    saveResults();
  };
  const load = os.loadavg()[0];
  if (load > 1) log(`warning: load average ${load.toFixed(2)} on ${os.cpus().length} cores: the machine is not quiet, numbers will be noisy`);

  for (currentRound = 1; currentRound <= repeat; currentRound++) {
    if (repeat > 1) log(`round ${currentRound} of ${repeat}`);
    if (targets.includes('direct'))
      for (const wl of workloads) {
        if (isShuttingDown()) return;
        addRow(await rowFor('direct', null, wl, tmpRoot));
      }

    for (const kind of fsKinds) {
      const relayTargets = targets.filter((t) => t !== 'direct');
      if (!relayTargets.length || isShuttingDown()) break;
      let fsInfo;
      try {
        fsInfo = kind === 'ext4' ? await mountExt4(tmpRoot) : await plainDir(tmpRoot);
        results.fs[kind] = fsInfo.describe;
        log(`spool fs ${kind}: ${fsInfo.describe}`);
      } catch (e) {
        log(`spool fs ${kind} failed: ${e.message}`);
        fsInfo = { kind, error: e.message };
        results.fs[kind] = `failed: ${e.message}`;
      }
      for (const target of relayTargets) {
        for (const wl of workloads) {
          if (isShuttingDown()) return;
          addRow(await rowFor(target, fsInfo, wl, tmpRoot));
        }
      }
      await fsInfo.release?.();
    }
  }
  if (repeat > 1) results.summary = summarise(rows);
  results.finishedAt = new Date().toISOString();
  saveResults();
  printTable(rows);
  if (results.summary) printSummary(results.summary);
  console.log(`\nresults written to ${resultsFile}`);
}

// ---------------------------------------------------------------- output ---

/** Medians over rounds of each (target, fs, workload), from the rows that finished ok. */
function summarise(rows) {
  return summariseRounds(rows, (r) => `${r.target}|${r.fs}|${r.workload}`, (g, ok, med) => {
    return {
      target: g[0].target,
      fs: g[0].fs,
      workload: g[0].workload,
      size: g[0].size,
      runs: g.length,
      okRuns: ok.length,
      intakeMsgsPerS: med('intakeMsgsPerS', 1),
      e2eMsgsPerS: med('e2eMsgsPerS', 1),
      e2eMBPerS: med('e2eMBPerS', 1),
      e2eMsgsPerSRange: ok.length ? [Math.min(...ok.map((r) => r.e2eMsgsPerS)), Math.max(...ok.map((r) => r.e2eMsgsPerS))] : null,
      peakRssMiB: med('peakRssMiB', 1),
      peakPssMiB: med('peakPssMiB', 1),
      cpuMsPerMsg: med('cpuMsPerMsg', 3),
      vsDirect: med('vsDirect', 3),
      statuses: [...new Set(g.map((r) => r.status))].join(','),
    };
  });
}

function printSummary(summary) {
  const head = ['target', 'fs', 'wl', 'size', 'ok/runs', 'intake msg/s', 'e2e msg/s', 'e2e range', 'e2e MB/s', 'peak RSS MiB', 'CPU ms/msg', 'vs direct'];
  const body = summary.map((s) => [
    s.target,
    s.fs,
    s.workload,
    s.size,
    `${s.okRuns}/${s.runs}`,
    fmt(s.intakeMsgsPerS, 1),
    fmt(s.e2eMsgsPerS, 1),
    s.e2eMsgsPerSRange ? `${fmt(s.e2eMsgsPerSRange[0], 0)}–${fmt(s.e2eMsgsPerSRange[1], 0)}` : '-',
    fmt(s.e2eMBPerS, 1),
    s.peakPssMiB === null ? fmt(s.peakRssMiB, 1) : `${fmt(s.peakRssMiB, 1)} (${fmt(s.peakPssMiB, 0)})`,
    fmt(s.cpuMsPerMsg, 2),
    s.vsDirect === null ? '-' : `${fmt(s.vsDirect, 2)}×`,
  ]);
  console.log(`\nmedians over ${repeat} rounds (rows that finished ok)\n`);
  printAligned(head, body, new Set([4, 5, 6, 7, 8, 9, 10, 11]));
}

function printAligned(head, body, right) {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => String(b[i]).length)));
  const line = (cells) =>
    cells
      .map((c, i) => (right.has(i) ? String(c).padStart(w[i]) : String(c).padEnd(w[i])))
      .join('  ')
      .trimEnd();
  console.log(line(head));
  console.log(line(w.map((n) => '-'.repeat(n))));
  for (const b of body) console.log(line(b));
}

const fmt = (v, d = 0) => (v === null || v === undefined ? '-' : Number(v).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));

function fmtRowShort(r) {
  if (r.status !== 'ok' && r.intakeS === null) return `${r.target}/${r.fs}/${r.workload}: ${r.status}${r.note ? ` (${r.note})` : ''}`;
  return `${r.target}/${r.fs}/${r.workload}: ${r.messages} msgs, intake ${fmt(r.intakeMsgsPerS, 1)}/s, e2e ${fmt(r.e2eMsgsPerS, 1)}/s, ${fmt(r.e2eMBPerS, 1)} MB/s, RSS ${fmt(r.peakRssMiB, 1)} MiB, CPU ${fmt(r.cpuS, 2)} s${r.status !== 'ok' ? ` — ${r.status}: ${r.note}` : ''}`;
}

function printTable(rows) {
  const head = ['target', 'fs', 'wl', 'size', 'msgs', 'intake msg/s', 'e2e msg/s', 'e2e MB/s', 'lag s', 'peak RSS MiB', 'CPU s', 'CPU ms/msg', 'vs direct', 'load', 'status'];
  const body = rows.map((r) => [
    r.target,
    r.fs,
    r.workload,
    r.size,
    r.messages ? `${r.delivered}/${r.messages}` : '-',
    fmt(r.intakeMsgsPerS, 1),
    fmt(r.e2eMsgsPerS, 1),
    fmt(r.e2eMBPerS, 1),
    fmt(r.lagS, 2),
    r.peakPssMiB === null ? fmt(r.peakRssMiB, 1) : `${fmt(r.peakRssMiB, 1)} (${fmt(r.peakPssMiB, 0)})`,
    fmt(r.cpuS, 2),
    fmt(r.cpuMsPerMsg, 2),
    r.vsDirect === null ? '-' : `${fmt(r.vsDirect, 2)}×`,
    fmt(r.load1AtStart, 1),
    r.status,
  ]);
  const intro = [
    '',
    `relay benchmark${opts.quick ? ' (--quick)' : ''} — ${results.host.cpu}, ${results.host.cores} cores, Node ${process.version}, Postfix ${results.host.postfix}`,
    `client: ${results.method.client}  (${opts.reuse ? 'several messages per connection' : 'one message per connection'})`,
    ...Object.entries(results.fs).map(([k, v]) => `fs ${k}: ${v}`),
    'msgs = delivered to the sink / accepted from smtp-source; e2e = first message sent → last one at the sink; lag = e2e − intake;',
    'MB = 10^6 payload bytes; RSS and CPU are the relay\'s; for Postfix summed over its processes, RSS (PSS in parentheses: shared pages',
    'counted once); load = 1-min load average at the row\'s start (above the core count: other work competed with the benchmark)',
    '',
  ];
  for (const l of intro) console.log(l);
  if (repeat > 1) {
    head.unshift('rnd');
    body.forEach((b, i) => b.unshift(rows[i].round));
  }
  const off = repeat > 1 ? 1 : 0;
  printAligned(head, body, new Set([4, 5, 6, 7, 8, 9, 10, 11, 12, 13].map((i) => i + off)));
  const notes = rows.filter((r) => r.note);
  if (notes.length) {
    console.log('');
    for (const r of notes) console.log(`${repeat > 1 ? `round ${r.round} ` : ''}${r.target}/${r.fs}/${r.workload}: ${r.status}: ${r.note}`);
  }
}

main()
  .then(async () => {
    if (isShuttingDown()) return; // the signal handler cleans up and exits
    await releaseAll();
    process.exit(0);
  })
  .catch(async (e) => {
    if (isShuttingDown()) return;
    console.error(`bench: failed: ${e?.stack ?? e}`);
    saveResults();
    await releaseAll();
    process.exit(1);
  });
