// Child processes, ports and /proc sampling for the relay benchmark.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, openSync, readSync, closeSync } from 'node:fs';
import net from 'node:net';
import { register, isShuttingDown } from './cleanup.mjs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const CLK_TCK = 100; // USER_HZ; 100 on every Linux architecture we run on

/** Keeps the last `max` characters of a stream. */
class Tail {
  constructor(max = 16_384) {
    this.max = max;
    this.text = '';
  }
  push(s) {
    this.text += s;
    if (this.text.length > this.max) this.text = this.text.slice(-this.max);
  }
}

function killGroup(pid, sig) {
  try {
    process.kill(-pid, sig);
    return true;
  } catch {
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * Spawns a process in its own process group (so a terminal's Ctrl-C reaches
 * only us, and we stop children in order), registered for cleanup.
 * Returns { child, pid, exited: Promise<{code, signal}>, stdout: Tail,
 * stderr: Tail, stop(graceMs) }.
 */
export function startProcess(name, cmd, args, opts = {}) {
  if (isShuttingDown()) throw new Error(`not starting ${name}: shutting down`);
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const stdout = new Tail(opts.tail);
  const stderr = new Tail(opts.tail);
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    stdout.push(d);
    opts.onStdout?.(d);
  });
  child.stderr.on('data', (d) => {
    stderr.push(d);
    opts.onStderr?.(d);
  });
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.on('error', (e) => {
      exitInfo = { code: null, signal: null, error: e };
      resolve(exitInfo);
    });
    child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  const pid = child.pid;
  let grace = 5000;
  const stopNow = async () => {
    if (exitInfo || pid === undefined) return;
    killGroup(pid, 'SIGTERM');
    const r = await Promise.race([exited, sleep(grace).then(() => null)]);
    killGroup(pid, 'SIGKILL'); // the leader is gone or ignored us: nothing of its group may linger
    if (!r) await Promise.race([exited, sleep(3000)]);
  };
  const handle = register(`${name} (pid ${pid})`, stopNow, () => {
    if (!exitInfo && pid !== undefined) killGroup(pid, 'SIGKILL');
  });
  exited.then(() => {
    if (pid !== undefined) killGroup(pid, 'SIGKILL');
    handle.forget();
  });
  return {
    name,
    child,
    pid,
    exited,
    stdout,
    stderr,
    get exitInfo() {
      return exitInfo;
    },
    /** SIGTERM to the process group, SIGKILL after graceMs; resolves once it exited. */
    stop: async (graceMs) => {
      if (graceMs !== undefined) grace = graceMs;
      await handle.done();
      return exitInfo;
    },
  };
}

/**
 * Runs a command to completion with a time limit. Resolves to
 * { code, signal, timedOut, stdout, stderr, error }.
 */
export async function run(cmd, args, { timeoutMs = 120_000, input, env, cwd, cleanup = false } = {}) {
  const child = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  child.stdin.on('error', () => {});
  child.stdin.end(input ?? '');
  let timedOut = false;
  // Commands that are part of a cleanup (umount, postfix stop) are left to
  // finish within their own time limit; others are killed on Ctrl-C.
  const handle = cleanup
    ? { forget() {} }
    : register(`${cmd} ${args.join(' ')}`.slice(0, 80), async () => killGroup(child.pid, 'SIGKILL'), () => killGroup(child.pid, 'SIGKILL'));
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid, 'SIGTERM');
    setTimeout(() => killGroup(child.pid, 'SIGKILL'), 3000).unref();
  }, timeoutMs);
  const r = await new Promise((resolve) => {
    child.on('error', (error) => resolve({ code: null, signal: null, error }));
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  clearTimeout(timer);
  handle.forget();
  return { ...r, timedOut, stdout, stderr };
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves true once host:port accepts a TCP connection, false at the deadline or if `alive()` turns false. */
export async function waitForPort(port, { timeoutMs = 30_000, host = '127.0.0.1', alive = () => true, ready = () => false } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (ready()) return true;
    if (!alive()) return false;
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host, port });
      const done = (v) => {
        s.destroy();
        resolve(v);
      };
      s.setTimeout(1000, () => done(false));
      s.on('connect', () => done(true));
      s.on('error', () => done(false));
    });
    if (ok) return true;
    await sleep(50);
  }
  return false;
}

// ---------------------------------------------------------------- /proc ---

function readStat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // comm may contain spaces and parentheses: split after the last ')'
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // rest[0] = state (field 3), rest[1] = ppid (4), utime = field 14 → rest[11]
    return {
      pid,
      state: rest[0],
      ppid: Number(rest[1]),
      utime: Number(rest[11]),
      stime: Number(rest[12]),
      cutime: Number(rest[13]),
      cstime: Number(rest[14]),
    };
  } catch {
    return null;
  }
}

function readStatusKb(pid, key) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'latin1');
    const m = s.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** All live processes in the tree rooted at `root` (root included), with their stat. */
export function processTree(root) {
  const all = [];
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const st = readStat(Number(name));
    if (st) all.push(st);
  }
  const byParent = new Map();
  for (const st of all) {
    if (!byParent.has(st.ppid)) byParent.set(st.ppid, []);
    byParent.get(st.ppid).push(st);
  }
  const rootSt = all.find((s) => s.pid === root);
  if (!rootSt) return [];
  const out = [rootSt];
  for (let i = 0; i < out.length; i++) for (const ch of byParent.get(out[i].pid) ?? []) out.push(ch);
  return out;
}

/**
 * CPU seconds used so far by the tree rooted at `root`: every live member's
 * own time plus the time of the children it has already reaped (cutime/cstime),
 * so short-lived workers (Postfix's smtpd/cleanup/smtp) are counted once.
 */
export function treeCpuSeconds(root, tree = processTree(root)) {
  let ticks = 0;
  for (const st of tree) ticks += st.utime + st.stime + st.cutime + st.cstime;
  return ticks / CLK_TCK;
}

const PAGE_KB = 4; // x86-64 and arm64 with 4 KiB pages; see statmRssKb()
let pageKb = null;

/** Resident set size in kB via a kept-open /proc/PID/statm (one pread per sample). */
class RssReader {
  constructor() {
    this.fds = new Map();
    this.buf = Buffer.alloc(256);
    if (pageKb === null) {
      pageKb = PAGE_KB;
      try {
        // VmRSS (kB) / statm resident (pages) of ourselves gives the page size
        const rssKb = readStatusKb(process.pid, 'VmRSS');
        const pages = Number(readFileSync('/proc/self/statm', 'latin1').split(' ')[1]);
        const k = Math.round(rssKb / pages);
        if ([4, 16, 64].includes(k)) pageKb = k;
      } catch {
        /* keep 4 */
      }
    }
  }
  read(pid) {
    let fd = this.fds.get(pid);
    try {
      if (fd === undefined) {
        fd = openSync(`/proc/${pid}/statm`, 'r');
        this.fds.set(pid, fd);
      }
      const n = readSync(fd, this.buf, 0, this.buf.length, 0);
      const f = this.buf.toString('latin1', 0, n).split(' ');
      return Number(f[1]) * pageKb;
    } catch {
      this.drop(pid);
      return 0;
    }
  }
  /** Close the fds of processes not in `pids`. */
  keep(pids) {
    const set = new Set(pids);
    for (const pid of [...this.fds.keys()]) if (!set.has(pid)) this.drop(pid);
  }
  drop(pid) {
    const fd = this.fds.get(pid);
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        /* already closed */
      }
      this.fds.delete(pid);
    }
  }
  close() {
    for (const pid of [...this.fds.keys()]) this.drop(pid);
  }
}

function readPssKb(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1').match(/^Pss:\s+(\d+) kB/m);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Samples the tree rooted at `root` every `intervalMs`: peak of the summed
 * VmRSS (shared pages counted in every process), and for a multi-process tree
 * also the peak of the summed Pss (shared pages split between the processes
 * that map them; every `pssEvery` ticks, as smaps_rollup is costlier).
 * `single` samples only the root and folds in its VmHWM (lifetime peak).
 * stop() returns { peakRssKb, peakPssKb, rootHwmKb, samples }.
 */
export function startSampler(root, { intervalMs = 100, single = false, pssEvery = 10 } = {}) {
  let peakRssKb = 0;
  let peakPssKb = 0;
  let samples = 0;
  // Walking all of /proc for the tree is the costly part: do it every 5th
  // tick, and read only the known members in between (a worker that was
  // born since is picked up within 500 ms).
  let members = [root];
  const rss = new RssReader();
  const tick = (withPss) => {
    let sum = 0;
    let pss = 0;
    if (!single && (samples % 5 === 0 || withPss)) {
      members = processTree(root).filter((st) => st.state !== 'Z').map((st) => st.pid);
      rss.keep(members);
    }
    for (const pid of members) {
      sum += rss.read(pid);
      if (withPss) pss += readPssKb(pid);
    }
    if (sum > peakRssKb) peakRssKb = sum;
    if (pss > peakPssKb) peakPssKb = pss;
    samples++;
  };
  tick(!single);
  const timer = setInterval(() => tick(!single && samples % pssEvery === 0), intervalMs);
  return {
    stop() {
      tick(!single);
      clearInterval(timer);
      rss.close();
      const rootHwmKb = readStatusKb(root, 'VmHWM');
      return { peakRssKb: Math.max(peakRssKb, single ? rootHwmKb : 0), peakPssKb: single ? null : peakPssKb, rootHwmKb, samples };
    },
  };
}

/** Sends `sig` to every process of the tree rooted at `root` (best effort). */
export function killTree(root, sig = 'SIGKILL') {
  for (const st of processTree(root).reverse()) {
    try {
      process.kill(st.pid, sig);
    } catch {
      /* gone */
    }
  }
}
