// A 250 means the message is on disk: kill -9 moatd at once, start it again, and it is delivered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { startSink, closedPort } from './helpers/sink.ts';
import { RawSmtp } from './helpers/smtp-client.ts';

const MOATD = join(import.meta.dirname, '..', 'dist', 'moatd.js'); // npm test builds it before the tests run
if (!existsSync(MOATD)) throw new Error(`${MOATD} is missing: run npm test (it builds first) or npm run build`);

async function runMoatd(configPath: string): Promise<{ child: ChildProcess; port: number; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [MOATD, '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`moatd did not start: ${err}`)), 15_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /"ev":"listening"[^\n]*"port":(\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`moatd exited with ${code}: ${err}`)));
  });
  return { child, port, exited };
}

/** Writes a daemon configuration into dataDir and returns its path. */
async function writeConfig(dataDir: string, serverPort: number, extra: Record<string, unknown> = {}): Promise<string> {
  const configPath = join(dataDir, 'config.json');
  await writeFile(
    configPath,
    JSON.stringify({
      hostname: 'mx.example.com',
      inbound: { listen: '127.0.0.1:0', localDomains: ['example.com'] },
      internal: { servers: [{ host: '127.0.0.1', port: serverPort, tls: 'none' }], connectTimeoutMs: 1000 },
      storage: { dataDir, minFreeBytes: 1048576 },
      control: { socket: join(dataDir, 'control.sock') },
      ...extra,
    }),
  );
  return configPath;
}

async function sendOne(port: number, n: number): Promise<string | null> {
  let c: RawSmtp;
  try {
    c = await RawSmtp.open(port);
  } catch {
    return null;
  }
  try {
    await c.reply();
    await c.cmd('EHLO crash.test');
    await c.cmd('MAIL FROM:<a@sender.example>');
    await c.cmd('RCPT TO:<bob@example.com>');
    await c.cmd('DATA');
    c.write(`Subject: crash ${n}\r\nX-N: ${n}\r\n\r\n${'body line\r\n'.repeat(200)}.\r\n`);
    const r = await c.reply();
    c.destroy();
    return r.startsWith('250 ') ? `crash ${n}` : null;
  } catch {
    c.destroy();
    return null;
  }
}

test('kill -9 right after 250s: every acknowledged message is delivered after restart', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'moat-crash-'));
  const port = await closedPort();
  const configPath = await writeConfig(dataDir, port, { queue: { minRetryMs: 100, maxRetryMs: 500 }, log: { level: 'info' } });
  const acked = new Set<string>();
  try {
    for (let round = 0; round < 3; round++) {
      const { child, port: smtpPort, exited } = await runMoatd(configPath);
      let n = round * 1000;
      let killed = false;
      // 10 senders in a loop; kill -9 once 15 messages of this round were acknowledged
      let thisRound = 0;
      const senders = Array.from({ length: 10 }, async () => {
        while (!killed) {
          const subj = await sendOne(smtpPort, n++);
          if (subj && !killed) {
            acked.add(subj);
            if (++thisRound >= 15) {
              killed = true;
              child.kill('SIGKILL');
            }
          } else if (subj) acked.add(subj); // answered 250 before the kill landed
        }
      });
      await Promise.all(senders);
      await exited;
    }
    const sink = await startSink({ port });
    const { child, exited } = await runMoatd(configPath);
    try {
      const subjects = () => new Set(sink.messages.map((m) => /Subject: (crash \d+)/.exec(m.body.toString())![1]!));
      for (let i = 0; i < 300 && [...acked].some((s) => !subjects().has(s)); i++) await new Promise((r) => setTimeout(r, 100));
      const got = subjects();
      const lost = [...acked].filter((s) => !got.has(s));
      assert.deepEqual(lost, [], `${acked.size} acknowledged, ${lost.length} lost`);
      for (const m of sink.messages) assert.match(m.body.toString(), /\r\n\r\n(body line\r\n){200}$/, 'bodies complete');
    } finally {
      child.kill('SIGTERM');
      await exited;
      await sink.close();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('moatd refuses a broken configuration with a message naming the setting', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-cfg-'));
  const p = join(dir, 'config.json');
  await writeFile(p, JSON.stringify({ hostname: 'mx.example.com', inbound: { localDomains: ['example.com'], maxMessageSize: 'big' }, internal: { servers: [] }, storage: { dataDir: dir } }));
  const child = spawn(process.execPath, [MOATD, '--config', p], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const code = await new Promise((r) => child.once('exit', r));
  assert.equal(code, 2);
  assert.match(err, /inbound\.maxMessageSize: expected a number of bytes, got "big"/);
  assert.match(err, /internal\.servers: name at least one internal server/);
  await writeFile(p, '{ not json');
  const child2 = spawn(process.execPath, [MOATD, '--config', p], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err2 = '';
  child2.stderr!.on('data', (d) => (err2 += d));
  assert.equal(await new Promise((r) => child2.once('exit', r)), 2);
  assert.match(err2, /cannot read configuration/);
  await rm(dir, { recursive: true, force: true });
});

test('the daemon starts with its larger file-I/O thread pool (set before first use)', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'moat-pool-'));
  const configPath = await writeConfig(dataDir, 9);
  const saved = process.env.UV_THREADPOOL_SIZE;
  delete process.env.UV_THREADPOOL_SIZE;
  try {
    const { child, exited } = await runMoatd(configPath);
    const { readdirSync } = await import('node:fs');
    const threads = readdirSync(`/proc/${child.pid}/task`).length;
    child.kill('SIGTERM');
    await exited;
    assert.ok(threads >= 16 + 1, `moatd runs ${threads} threads; a pool of 16 needs at least 17`);
  } finally {
    if (saved !== undefined) process.env.UV_THREADPOOL_SIZE = saved;
    await rm(dataDir, { recursive: true, force: true });
  }
});
