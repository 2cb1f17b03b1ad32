#!/usr/bin/env node
// Console benchmark: keystroke echo latency of the serial console while moatd relays mail.
//
//   npm run bench:console [-- --keys N] [-- --sessions S] [-- --size BYTES]
//
// moatd (dist/moatd.js) relays to a sink (Postfix's smtp-sink, or a Node sink when it is missing);
// moat-panel (dist/moat-panel.js) runs its console on one end of a socat pseudo-terminal pair; this
// script is the terminal on the other end (serialport), logs in, and types one key at a time,
// measuring from the write of the key to the arrival of its echo. It does so idle, then while
// Postfix's smtp-source (or a Node load generator when it is missing) keeps moatd busy. It also
// times `show status` (a round trip through moatd's control socket) in both phases.
// Prints p50/p99/max per phase and the relay rate during the loaded phase. Run as root (the
// smtp-sink drops to nobody); nothing is kept.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SerialPort } from 'serialport';
import { installHandlers, register } from './bench/cleanup.mjs';
import { startMoat } from './bench/moat.mjs';
import { startProcess, freePort, waitForPort, sleep } from './bench/proc.mjs';
import { SMTP_SINK, SMTP_SOURCE } from './bench/postfix.mjs';
import { startSink as startPostfixSink } from './bench/sink.mjs';

const { values: opts } = parseArgs({
  options: { keys: { type: 'string', default: '400' }, sessions: { type: 'string', default: '20' }, size: { type: 'string', default: '10240' } },
});
const KEYS = Number(opts.keys);
const SESSIONS = Number(opts.sessions);
const SIZE = Number(opts.size);
const repoRoot = join(import.meta.dirname, '..');
const moatd = join(repoRoot, 'dist', 'moatd.js');
const panelJs = join(repoRoot, 'dist', 'moat-panel.js');
for (const f of [moatd, panelJs]) if (!existsSync(f)) throw new Error(`${f} is missing: npm run build`);
installHandlers();

const root = mkdtempSync(join(tmpdir(), 'moat-bench-console-'));
register('temp dir', async () => rmSync(root, { recursive: true, force: true }), () => rmSync(root, { recursive: true, force: true }));

// --- the internal server
let sink;
if (existsSync(SMTP_SINK)) sink = await startPostfixSink();
else {
  const port = await freePort();
  const code = `const {SMTPServer}=require('smtp-server');let n=0;const s=new SMTPServer({disableReverseLookup:true,authOptional:true,hideSTARTTLS:true,logger:false,onData(st,se,cb){st.resume();st.on('end',()=>{n++;process.stdout.write('mesg='+n+'\\r');cb()})}});s.listen(${port},'127.0.0.1')`;
  const proc = startProcess('node sink', process.execPath, ['-e', code], { cwd: repoRoot, onStdout: (d) => (sink.count = Number(/mesg=(\d+)\r$/.exec(d)?.[1] ?? sink.count)) });
  sink = { port, count: 0, proc };
  await waitForPort(port, { alive: () => !proc.exitInfo });
}

// --- moatd
const smtpPort = await freePort();
const dataDir = join(root, 'data');
const m = await startMoat({ repoRoot, moatd, confDir: join(root, 'conf'), dataDir, port: smtpPort, sinkPort: sink.port, syncDelayMs: 0, name: 'console-bench' });
const configPath = join(root, 'conf', 'moat.json');

// --- the pseudo-terminal pair and moat-panel
const ttyA = join(root, 'tty-panel');
const ttyB = join(root, 'tty-term');
const socat = startProcess('socat', 'socat', [`pty,raw,echo=0,link=${ttyA}`, `pty,raw,echo=0,link=${ttyB}`]);
for (let i = 0; i < 200 && !(existsSync(ttyA) && existsSync(ttyB)); i++) await sleep(25);
const panel = startProcess('moat-panel', process.execPath, [panelJs, '--config', configPath, '--device', ttyA, '--dev'], { cwd: repoRoot });
void socat;

const port = new SerialPort({ path: ttyB, baudRate: 115200, autoOpen: false });
await new Promise((res, rej) => port.open((e) => (e ? rej(e) : res())));
register('terminal', () => new Promise((r) => (port.isOpen ? port.close(() => r()) : r())));
let out = '';
let waiter = null;
port.on('data', (d) => {
  out += d.toString('latin1');
  if (waiter && waiter.test(out)) waiter.resolve();
});
const until = (re, ms = 20_000) =>
  new Promise((resolve, reject) => {
    if (re.test(out)) return resolve();
    const t = setTimeout(() => reject(new Error(`no ${re} in ${ms} ms; got ${JSON.stringify(out.slice(-300))}`)), ms);
    waiter = { test: (s) => re.test(s), resolve: () => (clearTimeout(t), (waiter = null), resolve()) };
  });
const send = (s) => new Promise((r) => port.write(s, () => port.drain(() => r())));

for (let i = 0; i < 100; i++) {
  await send('\r');
  try {
    await until(/login: $/, 300);
    break;
  } catch {
    if (panel.exitInfo) throw new Error(`moat-panel exited: ${panel.stderr.text}`);
  }
}
const PROMPT = /admin@mx> $/;
await send('admin\r');
await until(/Password: $/);
await send('moat\r');
await until(/New password: $/);
await send('bench-password\r');
await until(/Retype new password: $/);
await send('bench-password\r');
await until(PROMPT);

async function keystrokes(n) {
  const ms = [];
  for (let i = 0; i < n; i++) {
    if (i % 60 === 59) {
      out = '';
      await send('\x15'); // Ctrl-U: a fresh line now and then
      await until(PROMPT);
    }
    const ch = String.fromCharCode(97 + (i % 26));
    out = '';
    const t0 = performance.now();
    await send(ch);
    await until(new RegExp(ch + '$'));
    ms.push(performance.now() - t0);
    await sleep(5);
  }
  out = '';
  await send('\x15');
  await until(PROMPT);
  return ms;
}
async function statusRoundTrips(n) {
  const ms = [];
  for (let i = 0; i < n; i++) {
    out = '';
    const t0 = performance.now();
    await send('show status\r');
    await until(/config\s+revision[^\n]*\n[\s\S]*admin@mx> $/);
    ms.push(performance.now() - t0);
  }
  return ms;
}
const pct = (a, p) => {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const row = (name, a) => `${name.padEnd(34)} n=${String(a.length).padEnd(5)} p50 ${pct(a, 50).toFixed(2).padStart(7)} ms   p99 ${pct(a, 99).toFixed(2).padStart(7)} ms   max ${Math.max(...a).toFixed(2).padStart(7)} ms`;

const idleKeys = await keystrokes(KEYS);
const idleStatus = await statusRoundTrips(20);

// --- load: as many messages as it takes to outlast the measurement
const before = sink.count;
let load;
let loadName;
if (existsSync(SMTP_SOURCE)) {
  loadName = `smtp-source -s ${SESSIONS} -l ${SIZE}`;
  load = startProcess('smtp-source', SMTP_SOURCE, ['-s', String(SESSIONS), '-m', '1000000', '-l', String(SIZE), '-M', 'client.bench.example.net', '-f', 'sender@example.net', '-t', 'user@example.com', `127.0.0.1:${smtpPort}`]);
} else {
  loadName = `node load generator, ${SESSIONS} sessions, ${SIZE} bytes`;
  const code = `const net=require('net');const body='Subject: x\\r\\n\\r\\n'+('y'.repeat(76)+'\\r\\n').repeat(Math.ceil(${SIZE}/78))+'.\\r\\n';function go(){const s=net.connect(${smtpPort},'127.0.0.1');let st=0,b='';s.on('data',d=>{b+=d;if(!/\\r\\n$/.test(b))return;const l=b;b='';const steps=['EHLO c.example.net\\r\\n','MAIL FROM:<a@example.net>\\r\\n','RCPT TO:<u@example.com>\\r\\n','DATA\\r\\n',body,'QUIT\\r\\n'];if(/^250-/m.test(l)&&!/^250 /m.test(l))return;if(st<steps.length)s.write(steps[st++]);});s.on('close',go);s.on('error',()=>{})}for(let i=0;i<${SESSIONS};i++)go();`;
  load = startProcess('node load', process.execPath, ['-e', code]);
}
await sleep(1000); // let the load reach its pace
const t0 = performance.now();
const c0 = sink.count;
const loadKeys = await keystrokes(KEYS);
const loadStatus = await statusRoundTrips(20);
const elapsed = (performance.now() - t0) / 1000;
const relayed = sink.count - c0;
await load.stop(2000);

const lines = [
  `console keystroke echo over a socat pty (115200 8N1), moat-panel ↔ moatd ${process.version}`,
  row('idle: keystroke echo', idleKeys),
  row('idle: show status (via moatd)', idleStatus),
  row(`under load: keystroke echo`, loadKeys),
  row(`under load: show status (via moatd)`, loadStatus),
  `load: ${loadName}; moatd relayed ${relayed} messages to the sink in ${elapsed.toFixed(1)} s (${(relayed / elapsed).toFixed(0)} msgs/s) while measuring; ${sink.count - before} in all`,
  `target: a keystroke answered within 50 ms under load: p99 ${pct(loadKeys, 99).toFixed(1)} ms → ${pct(loadKeys, 99) < 50 ? 'met' : 'NOT met'}`,
];
console.log(lines.join('\n'));
writeFileSync(join(root, 'result.txt'), lines.join('\n'));
await m.stop?.();
process.kill(process.pid, 'SIGTERM'); // releases everything registered (processes, terminal, temp dir)
