// The button through a FIFO fed with real 24-byte input_event records: a short press prints status
// and address; a long press opens the factory reset's confirm window on the LEDs (fake LED class
// tree), a second press cancels it, and a window left alone resets to the factory configuration.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../firmware/config/schema.ts';
import { ControlClient } from '../firmware/control/client.ts';
import { EV_KEY, InputEventParser, inputEvent } from '../firmware/panel/button.ts';
import { FrontPanel } from '../firmware/panel/front-panel.ts';
import { LED_NAMES, SysfsLeds } from '../firmware/panel/leds.ts';
import { startButton } from '../firmware/panel/start.ts';
import { baseDocument, startStoredMoat } from './helpers/control.ts';
import { startSink } from './helpers/sink.ts';
import { startDns } from './helpers/dns.ts';

const EV_SYN = 0;
const KEY_RESTART = 0x198;

async function waitFor(f: () => Promise<string> | string, want: string | RegExp, withinMs = 5000): Promise<void> {
  const start = Date.now();
  let last = '';
  while (Date.now() - start < withinMs) {
    last = await f();
    if (typeof want === 'string' ? last === want : want.test(last)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`expected ${want} within ${withinMs} ms, still ${last}`);
}

test('input_event records are parsed split at every offset; other event types are passed as such', () => {
  const bytes = Buffer.concat([inputEvent(1_700_000_000_250, EV_KEY, KEY_RESTART, 1), inputEvent(1_700_000_000_250, EV_SYN, 0, 0), inputEvent(1_700_000_010_500, EV_KEY, KEY_RESTART, 0)]);
  assert.equal(bytes.length, 72);
  const want = [
    { timeMs: 1_700_000_000_250, type: EV_KEY, code: KEY_RESTART, value: 1 },
    { timeMs: 1_700_000_000_250, type: EV_SYN, code: 0, value: 0 },
    { timeMs: 1_700_000_010_500, type: EV_KEY, code: KEY_RESTART, value: 0 },
  ];
  for (let cut = 0; cut <= bytes.length; cut++) {
    const p = new InputEventParser();
    assert.deepEqual([...p.push(bytes.subarray(0, cut)), ...p.push(bytes.subarray(cut))], want, `cut at ${cut}`);
  }
  const p = new InputEventParser();
  const one: unknown[] = [];
  for (let i = 0; i < bytes.length; i++) one.push(...p.push(bytes.subarray(i, i + 1)));
  assert.deepEqual(one, want);
  // a trailing partial record is held, not guessed at
  assert.deepEqual(new InputEventParser().push(bytes.subarray(0, 23)), []);
});

test('short press: status and address on the console; long press: confirm window on the LEDs, cancelled by a second press, else the factory reset', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-button-'));
  const root = join(dir, 'leds');
  for (const name of Object.values(LED_NAMES)) {
    await mkdir(join(root, name), { recursive: true });
    for (const f of ['trigger', 'brightness', 'delay_on', 'delay_off']) await writeFile(join(root, name, f), '');
  }
  const fifo = join(dir, 'event0');
  execFileSync('mkfifo', [fifo]);
  const dns = await startDns({ 'example.com': { MX: [{ exchange: 'mx.example.com', priority: 10 }] } });
  const sink = await startSink();
  const m = await startStoredMoat(sink.port, {
    extra: { dns: { servers: [dns.server] } },
    daemon: { factory: baseDocument(dir, sink.port, { hostname: 'factory.example.com', dns: { servers: [dns.server] } }) },
  });
  const config = parseConfig({ ...baseDocument(m.dir, sink.port), panel: { board: 'pi4', ledsRoot: root, buttonDevice: fifo } });
  const front = new FrontPanel({ leds: new SysfsLeds(root), connect: (t) => ControlClient.connect(m.socket, t), pollMs: 100, faultAfterMs: 2000, lampTestMs: 10 });
  const printed: string[] = [];
  const b = startButton(config, { front, print: (l) => printed.push(l), addresses: () => ['192.0.2.7'], windowMs: 400 })!;
  const feed = createWriteStream(fifo);
  const t0 = 1_700_000_000_000;
  const press = (at: number, heldMs: number) => {
    feed.write(Buffer.concat([inputEvent(t0 + at, EV_KEY, KEY_RESTART, 1), inputEvent(t0 + at, EV_SYN, 0, 0)]));
    feed.write(Buffer.concat([inputEvent(t0 + at + heldMs, EV_KEY, KEY_RESTART, 0), inputEvent(t0 + at + heldMs, EV_SYN, 0, 0)]));
  };
  const leds = async () => {
    const r = (n: string, f: string) => readFile(join(root, n, f), 'utf8').then((s) => s.trim());
    const s = LED_NAMES.status;
    const f = LED_NAMES.fault;
    return `status=${await r(s, 'trigger')} fault=${await r(f, 'trigger')} ${await r(f, 'delay_on')}/${await r(f, 'delay_off')}`;
  };
  try {
    await front.start();
    await m.daemon.monitor.check();
    await waitFor(() => front.lastStatus?.state ?? '', 'ok');

    press(1000, 200);
    await waitFor(() => printed.join('\n'), /^button: mx\.example\.com ok; address 192\.0\.2\.7; smtp 127\.0\.0\.1:\d+$/);

    // long press (10.5 s by the kernel's timestamps): the confirm window shows FAULT blinking fast
    printed.length = 0;
    press(5000, 10_500);
    await waitFor(() => printed.join('\n'), 'button: factory reset in 0.4 s: press the button again to cancel');
    await waitFor(leds, 'status=none fault=timer 100/100');
    press(16_000, 150);
    await waitFor(() => printed.at(-1) ?? '', 'button: factory reset cancelled');
    await waitFor(leds, /^status=default-on fault=none/);
    assert.equal(m.store.config.hostname, 'mx.example.com', 'a cancelled reset changes nothing');

    // long press again, and the window passes: the factory configuration runs
    press(20_000, 11_000);
    await waitFor(() => printed.at(-1) ?? '', 'button: factory reset done: the factory configuration is running');
    assert.equal(m.store.config.hostname, 'factory.example.com');
    assert.equal(m.daemon.config.hostname, 'factory.example.com');
    await waitFor(leds, /^status=(default-on|timer) fault=none/);
  } finally {
    feed.end();
    await b.close();
    await front.close();
    await m.stop();
    await sink.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  }
});
