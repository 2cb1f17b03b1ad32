// The built moatd under a stand-in for systemd: NOTIFY_SOCKET is a unix datagram socket received by
// socat; moatd sends READY=1 once and WATCHDOG=1 again and again (WATCHDOG_USEC/2), through
// systemd-notify; with WATCHDOG_PID naming another process it sends READY=1 only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { startStoredMoat } from './helpers/control.ts';
import { startSink } from './helpers/sink.ts';

const DIST = join(import.meta.dirname, '..', 'dist');

async function until(f: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`gave up waiting for ${what}`);
}

async function run(env: Record<string, string>, check: (received: () => Promise<string>) => Promise<void>) {
  if (!existsSync(join(DIST, 'moatd.js'))) throw new Error('dist/moatd.js is missing: run npm test (it builds first) or npm run build');
  const sink = await startSink();
  const m = await startStoredMoat(sink.port, { keep: true });
  await m.stop();
  const dir = await mkdtemp(join(tmpdir(), 'moat-notify-'));
  const sock = join(dir, 'notify.sock');
  const out = join(dir, 'received');
  const socat = spawn('socat', ['-u', `UNIX-RECV:${sock}`, `CREATE:${out}`], { stdio: 'ignore' });
  let moatd: ChildProcess | null = null;
  try {
    await until(async () => existsSync(sock), 'the notify socket');
    moatd = spawn(process.execPath, [join(DIST, 'moatd.js'), '--config', m.configPath], { stdio: 'ignore', env: { ...process.env, NOTIFY_SOCKET: sock, ...env } });
    await check(() => readFile(out, 'utf8').catch(() => ''));
  } finally {
    if (moatd) {
      const exited = new Promise((r) => moatd!.once('exit', r));
      moatd.kill('SIGTERM');
      await exited;
    }
    socat.kill('SIGTERM');
    await sink.close();
    await rm(dir, { recursive: true, force: true });
    await rm(m.dir, { recursive: true, force: true });
  }
}

test('moatd says READY=1 and feeds the watchdog every WATCHDOG_USEC/2', async () => {
  await run({ WATCHDOG_USEC: '200000' }, async (received) => {
    await until(async () => ((await received()).match(/WATCHDOG=1/g) ?? []).length >= 3, 'three WATCHDOG=1');
    const r = await received();
    assert.equal(r.match(/READY=1/g)?.length, 1);
    assert.ok(r.startsWith('READY=1'), r);
  });
});

test('a watchdog meant for another process (WATCHDOG_PID) is not fed; READY=1 is still sent', async () => {
  await run({ WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' }, async (received) => {
    await until(async () => (await received()).includes('READY=1'), 'READY=1');
    // three watchdog periods later, still nothing but READY=1
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(await received(), 'READY=1');
  });
});
