// The front panel's LEDs against a fake LED class tree (/sys/class/leds/NAME/…) in a temporary
// folder, driven by a real moatd over its control socket: lamp test, start-up, all well, an internal
// server down, a queue backlog, a spool that cannot be written, a damaged configuration, moatd
// killed. The simulator shows the same states.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { ControlClient } from '../firmware/control/client.ts';
import { LED_NAMES, SysfsLeds, type LedRole } from '../firmware/panel/leds.ts';
import { FrontPanel } from '../firmware/panel/front-panel.ts';
import { SimulatorLeds, renderPanel } from '../firmware/panel/simulator.ts';
import { startStoredMoat, baseDocument } from './helpers/control.ts';
import { closedPort, startSink } from './helpers/sink.ts';
import { startDns } from './helpers/dns.ts';
import { withTmpfs } from './helpers/tmpfs.ts';

const DIST = join(import.meta.dirname, '..', 'dist');
const zone = { 'example.com': { MX: [{ exchange: 'mx.example.com', priority: 10 }] } };

/** A fake LED class tree: one folder per LED with the files the kernel makes. */
async function fakeLeds(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'moat-leds-'));
  for (const name of Object.values(LED_NAMES)) {
    await mkdir(join(root, name));
    for (const f of ['trigger', 'brightness', 'delay_on', 'delay_off']) await writeFile(join(root, name, f), '');
  }
  return root;
}

type Led = { trigger: string; brightness: string; delay_on: string; delay_off: string };
async function led(root: string, role: LedRole): Promise<Led> {
  const r = async (f: string) => (await readFile(join(root, LED_NAMES[role], f), 'utf8')).trim();
  return { trigger: await r('trigger'), brightness: await r('brightness'), delay_on: await r('delay_on'), delay_off: await r('delay_off') };
}

/** What the status and fault LEDs show, in short: "default-on", "none", "timer 100/100". */
async function shown(root: string): Promise<string> {
  const one = async (role: LedRole) => {
    const l = await led(root, role);
    if (l.trigger === 'timer') return `timer ${l.delay_on}/${l.delay_off}`;
    if (l.trigger === 'none') return `none ${l.brightness}`;
    return l.trigger;
  };
  return `status=${await one('status')} fault=${await one('fault')}`;
}

/** Polls until f() equals want; the last value is in the error (the panel acts on its own timers). */
async function waitFor(f: () => Promise<string>, want: string, withinMs = 5000): Promise<number> {
  const start = Date.now();
  let last = '';
  while (Date.now() - start < withinMs) {
    last = await f();
    if (last === want) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`expected ${want} within ${withinMs} ms, still ${last}`);
}

const OK = 'status=default-on fault=none 0';
const BOOTING = 'status=timer 100/100 fault=none 0';
const DEGRADED = 'status=timer 1000/1000 fault=none 0';
const FAULT = 'status=none 0 fault=default-on';

function panelFor(root: string, socket: string, o: { lampTestMs?: number } = {}) {
  return new FrontPanel({ leds: new SysfsLeds(root), connect: (t) => ControlClient.connect(socket, t), pollMs: 100, faultAfterMs: 1000, lampTestMs: o.lampTestMs ?? 50 });
}

test('start-up: lamp test, booting while moatd is not there yet, then steady green; FAULT is dark', async () => {
  const root = await fakeLeds();
  const dns = await startDns(zone);
  const sink = await startSink();
  const dir = await mkdtemp(join(tmpdir(), 'moat-panel-'));
  const panel = panelFor(root, join(dir, 'control.sock'), { lampTestMs: 300 });
  const started = panel.start();
  await waitFor(async () => `${await shown(root)} activity=${(await led(root, 'activity')).trigger}`, 'status=default-on fault=default-on activity=default-on');
  await started;
  assert.equal(await shown(root), BOOTING);
  assert.equal((await led(root, 'activity')).brightness, '0');
  const m = await startStoredMoat(sink.port, { dir, extra: { dns: { servers: [dns.server] } } }).catch(async () => {
    await writeFile(join(dir, 'config.json'), JSON.stringify(baseDocument(dir, sink.port, { dns: { servers: [dns.server] } })));
    return startStoredMoat(sink.port, { dir, keep: true });
  });
  try {
    await m.daemon.monitor.check();
    await waitFor(() => shown(root), OK);
  } finally {
    await panel.close();
    await m.stop();
    await sink.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('all well, an internal server down, a queue backlog, the spool unwritable, a raised configuration fault; ACTIVITY flashes per transaction', async () => {
  const root = await fakeLeds();
  const dns = await startDns(zone);
  const sink = await startSink();
  await withTmpfs('8m', async (mnt) => {
    const m = await startStoredMoat(sink.port, { extra: { dns: { servers: [dns.server] }, storage: { dataDir: mnt, minFreeBytes: 1024 * 1024 }, health: { queueMessages: 2, lowFreeBytes: 2 * 1024 * 1024 } } });
    const panel = panelFor(root, m.socket);
    try {
      await panel.start();
      await m.daemon.monitor.check();
      await waitFor(() => shown(root), OK);

      // three transactions: three flashes, and the ACTIVITY LED ends dark
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: m.daemon.port, secure: false, ignoreTLS: true, name: 'client.example.net' });
      for (let i = 0; i < 3; i++) await t.sendMail({ from: 'a@example.net', to: 'b@example.com', subject: 'x', text: 'hello' });
      t.close();
      await waitFor(async () => String(panel.flashes), '3');
      await waitFor(async () => JSON.stringify(await led(root, 'activity')), JSON.stringify({ trigger: 'none', brightness: '0', delay_on: '', delay_off: '' }));

      // internal server down
      await sink.close();
      await m.daemon.monitor.check();
      await waitFor(() => shown(root), DEGRADED);
      assert.equal(panel.lastStatus!.reasons[0]!.code, 'internal-unreachable');

      // a queue backlog: two messages wait for the server that is down
      const t2 = nodemailer.createTransport({ host: '127.0.0.1', port: m.daemon.port, secure: false, ignoreTLS: true, name: 'client.example.net' });
      for (let i = 0; i < 2; i++) await t2.sendMail({ from: 'a@example.net', to: 'b@example.com', subject: 'x', text: 'queued' });
      t2.close();
      await waitFor(async () => (panel.lastStatus!.reasons.map((r) => r.code).sort().join(',')), 'internal-unreachable,queue-backlog');
      assert.equal(await shown(root), DEGRADED);

      // the spool's partition filled to the last block: nothing can be written
      await writeFile(join(mnt, 'filler'), Buffer.alloc(8 * 1024 * 1024)).catch((e) => assert.equal(e.code, 'ENOSPC'));
      await m.daemon.monitor.check();
      await waitFor(() => shown(root), FAULT);
      await rm(join(mnt, 'filler'));
      await m.daemon.monitor.check();
      await waitFor(() => shown(root), DEGRADED);

      // a fault raised by a part (as daemon.ts does when a configuration cannot be applied)
      m.daemon.health.raise('network-files', 'cannot write the network settings: EACCES');
      await waitFor(() => shown(root), FAULT);
      m.daemon.health.clear('network-files');
      await waitFor(() => shown(root), DEGRADED);
    } finally {
      await panel.close();
      await m.stop();
    }
  }).finally(async () => {
    await sink.close();
    await dns.close();
  });
});

test('the built moatd: a damaged configuration file is a FAULT; moatd killed is a FAULT within 5 s', async () => {
  for (const f of ['moatd.js']) if (!existsSync(join(DIST, f))) throw new Error(`${join(DIST, f)} is missing: run npm test (it builds first) or npm run build`);
  const root = await fakeLeds();
  const dns = await startDns(zone);
  const sink = await startSink();
  const m = await startStoredMoat(sink.port, { extra: { dns: { servers: [dns.server] } }, keep: true });
  await m.stop();
  const run = () => {
    const child = spawn(process.execPath, [join(DIST, 'moatd.js'), '--config', m.configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise((r) => child.once('exit', r));
    return { child, exited };
  };
  try {
    // all well, then SIGKILL
    let d = run();
    let panel = panelFor(root, m.socket);
    await panel.start();
    await waitFor(() => shown(root), OK, 10_000);
    d.child.kill('SIGKILL');
    await d.exited;
    await waitFor(() => shown(root), FAULT, 10_000);
    await panel.close();

    // a torn configuration file: moatd starts from the last good revision and reports the fault
    await writeFile(m.configPath, '{"hostname": "mx.exa');
    d = run();
    panel = panelFor(root, m.socket);
    await panel.start();
    await waitFor(async () => panel.lastStatus?.reasons.map((r) => r.code).join(',') ?? '', 'config-recovered', 10_000);
    await waitFor(() => shown(root), FAULT);
    await panel.close();
    d.child.kill('SIGTERM');
    await d.exited;
  } finally {
    await sink.close();
    await dns.close();
    await rm(m.dir, { recursive: true, force: true });
  }
});

test('the simulator shows the same states, renders a console line and writes its state file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-sim-'));
  const dns = await startDns(zone);
  const sink = await startSink();
  const lines: string[] = [];
  const file = join(dir, 'panel.json');
  const m = await startStoredMoat(sink.port, { extra: { dns: { servers: [dns.server] } } });
  const sim = new SimulatorLeds({ file, render: (l) => lines.push(l) });
  const panel = new FrontPanel({ leds: sim, connect: (t) => ControlClient.connect(m.socket, t), pollMs: 100, faultAfterMs: 1000, lampTestMs: 50 });
  const stateFile = async () => {
    const s = JSON.parse(await readFile(file, 'utf8'));
    return `status=${JSON.stringify(s['moat:green:status'])} fault=${JSON.stringify(s['moat:red:fault'])}`;
  };
  try {
    await panel.start();
    assert.equal(lines[0], '[moat] STATUS ● steady   FAULT ○ off   ACTIVITY ○ off');
    assert.ok(lines.includes('[moat] STATUS ● steady   FAULT ● steady   ACTIVITY ● steady'), 'the lamp test lights every LED');
    await m.daemon.monitor.check();
    await waitFor(stateFile, 'status={"mode":"on"} fault={"mode":"off"}');
    await sink.close();
    await m.daemon.monitor.check();
    await waitFor(stateFile, 'status={"mode":"blink","onMs":1000,"offMs":1000} fault={"mode":"off"}');
    assert.equal(lines.at(-1), '[moat] STATUS ◐ blink 1000/1000 ms   FAULT ○ off   ACTIVITY ○ off');
    await m.stop();
    await waitFor(stateFile, 'status={"mode":"off"} fault={"mode":"on"}');
    assert.equal(renderPanel(sim.state), '[moat] STATUS ○ off   FAULT ● steady   ACTIVITY ○ off');
  } finally {
    await panel.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a missing LED is a clear error naming the LED and the root', async () => {
  const root = await mkdtemp(join(tmpdir(), 'moat-leds-'));
  const leds = new SysfsLeds(root);
  await assert.rejects(leds.set('status', { mode: 'on' }), /LED moat:green:status: cannot write trigger under .*moat-leds-.*: ENOENT/);
  const warnings: string[] = [];
  const closed = await closedPort();
  const panel = new FrontPanel({ leds, connect: (t) => ControlClient.connect(join(root, `none-${closed}.sock`), t), pollMs: 100, faultAfterMs: 500, lampTestMs: 10, warn: (w) => warnings.push(w) });
  await panel.start();
  await panel.close();
  assert.match(warnings[0]!, /LED moat:green:status: cannot write trigger/);
  await rm(root, { recursive: true, force: true });
});
