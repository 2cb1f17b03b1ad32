// The built programs with the configuration store: moatd falls back to the newest valid revision when
// its file is damaged and reports the fault; `moat ctl` (dist/moat-ctl.js) speaks the control socket;
// moat-panel (dist/moat-panel.js, serialport kept outside the bundle) answers on a pseudo-terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSink } from './helpers/sink.ts';
import { rcptReply } from './helpers/smtp-client.ts';
import { baseDocument } from './helpers/control.ts';
import { ptyPair, Terminal } from './helpers/pty.ts';

const DIST = join(import.meta.dirname, '..', 'dist');
for (const f of ['moatd.js', 'moat-ctl.js', 'moat-panel.js'])
  if (!existsSync(join(DIST, f))) throw new Error(`${join(DIST, f)} is missing: run npm test (it builds first) or npm run build`);

async function runMoatd(configPath: string): Promise<{ child: ChildProcess; port: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [join(DIST, 'moatd.js'), '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /"ev":"listening"[^\n]*"port":(\d+)/.exec(out);
      if (m && out.includes('"ev":"control-listening"')) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`moatd exited with ${code}: ${err}`)));
  });
  return {
    child,
    port,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function ctl(configPath: string, args: string[], stdin?: string): Promise<{ code: number; out: string; err: string }> {
  const child = spawn(process.execPath, [join(DIST, 'moat-ctl.js'), '--config', configPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  child.stdin!.end(stdin ?? '');
  return new Promise((r) => child.once('exit', (code) => r({ code: code ?? -1, out, err })));
}

const rcpt = rcptReply;

test('moatd keeps revisions, falls back from a damaged file and says so; moat ctl commits a change', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-store-e2e-'));
  const sink = await startSink();
  const configPath = join(dir, 'config.json');
  await writeFile(configPath, JSON.stringify(baseDocument(dir, sink.port)));
  try {
    let d = await runMoatd(configPath);
    assert.deepEqual(await readdir(join(dir, 'config.json.d')), ['rev-000001.json'], 'the first start records revision 1');
    let r = await ctl(configPath, ['show', 'status']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /health\s+ok \(no faults\)/);
    assert.match(r.out, /config\s+revision 1/);
    // a script on standard input: configuration mode, set, commit
    r = await ctl(configPath, ['-'], 'configure\nset inbound.localDomains example.com example.net\nshow | compare\ncommit\n');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /\+ inbound\.localDomains\[1\]: "example\.net"/);
    assert.match(r.out, /commit complete: revision 2/);
    assert.match(await rcpt(d.port, 'bob@example.net'), /^250/);
    r = await ctl(configPath, ['show', 'interfaces']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /configured\s+eth0: DHCP/);
    assert.match(r.out, /system\s+lo\s+127\.0\.0\.1\/8/);
    r = await ctl(configPath, ['sh', 'rev']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^ 0  rev 2 \(running\)  \S+  shell-\S+\n 1  rev 1  \S+  moatd  initial revision\n$/);
    r = await ctl(configPath, ['show', 'log', '5']);
    assert.equal(r.out.trim().split('\n').length, 5);
    r = await ctl(configPath, ['queue', 'delete', '0123456789ABCDEF']);
    assert.equal(r.code, 1);
    assert.match(r.err, /delete 0123456789ABCDEF without delivering it\? \(refused: add --yes\)/);
    r = await ctl(configPath, ['no', 'such', 'thing']);
    assert.equal(r.code, 1);
    assert.match(r.err, /unknown command "no"/);
    r = await ctl(configPath, ['raw', 'config.revisions']);
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).running, 2);
    await d.stop();

    // torn file: half of it
    const good = await readFile(configPath, 'utf8');
    await writeFile(configPath, good.slice(0, good.length >> 1));
    d = await runMoatd(configPath);
    r = await ctl(configPath, ['raw', 'status']);
    const s = JSON.parse(r.out);
    assert.equal(s.health, 'fault');
    assert.equal(s.faults[0].code, 'config-recovered');
    assert.match(s.faults[0].message, /not valid JSON \(torn or damaged\).*revision 2 restored/);
    assert.deepEqual(s.localDomains, ['example.com', 'example.net'], 'the newest valid revision runs');
    assert.equal(await readFile(configPath, 'utf8'), good, 'the file was restored');
    await d.stop();

    // garbage
    await writeFile(configPath, Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x7b]));
    d = await runMoatd(configPath);
    r = await ctl(configPath, ['show', 'status']);
    assert.match(r.out, /FAULT config-recovered/);
    await d.stop();
  } finally {
    await sink.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('moat-panel, as built, opens its console on a pseudo-terminal and answers', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-panel-e2e-'));
  const configPath = join(dir, 'config.json');
  await writeFile(configPath, JSON.stringify(baseDocument(dir, 25)));
  const pty = await ptyPair(dir);
  const child = spawn(process.execPath, [join(DIST, 'moat-panel.js'), '--config', configPath, '--device', pty.a, '--dev'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  const t = await Terminal.open(pty.b);
  try {
    // the panel opens its end when it has started: knock until it answers
    for (let i = 0; ; i++) {
      await t.send('\r');
      try {
        await t.expect(/moat mx\.example\.com serial console[\s\S]*login: $/, 250);
        break;
      } catch (e) {
        if (i === 100 || child.exitCode !== null) throw e;
      }
    }
    await t.send('nobody\r');
    await t.expect(/Password: $/);
    await t.send('x\r');
    await t.expect(/Login incorrect/);
  } finally {
    await t.close();
    child.kill('SIGTERM');
    await exited;
    await pty.close();
    await rm(dir, { recursive: true, force: true });
  }
});
