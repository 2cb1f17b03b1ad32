// The configuration store: durable commits, revisions, rollback, and recovery from damaged files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigStore, nodeFs, type StoreFs, type RevisionFile } from './store.ts';
import { ConfigError, parseConfig, type Config } from './schema.ts';

const STORE = join(import.meta.dirname, 'store.ts');

function doc(domains: string[] = ['example.com'], extra: Record<string, unknown> = {}) {
  return {
    hostname: 'mx.example.com',
    inbound: { listen: '127.0.0.1:2525', localDomains: domains, ...extra },
    internal: { servers: [{ host: '10.0.0.5' }] },
    storage: { dataDir: '/data/moat' },
  };
}

async function fresh(): Promise<{ dir: string; file: string; done: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'moat-store-'));
  return { dir, file: join(dir, 'config.json'), done: () => rm(dir, { recursive: true, force: true }) };
}

/** A store whose running file holds doc() and which has `n` commits (example1.com … examplen.com). */
async function withCommits(file: string, n: number, keep?: number) {
  await writeFile(file, JSON.stringify(doc()));
  const store = await ConfigStore.open(file, { validate: parseConfig, ...(keep ? { keep } : {}) });
  for (let i = 1; i <= n; i++) await store.commit(doc([`example${i}.com`]), { user: 'admin', comment: `c${i}` });
  return store;
}

/** Every file under dir (recursively) with its bytes. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.set(join(e.parentPath, e.name).slice(dir.length), (await readFile(join(e.parentPath, e.name))).toString('base64'));
  }
  return out;
}

/** Wraps node's fs and records every call that changes the disk, with names relative to `root`. */
function recordingFs(root: string, fail?: (op: string, path: string) => boolean): { fs: StoreFs; ops: string[] } {
  const ops: string[] = [];
  const rel = (p: string) => (p === root ? '.' : p.startsWith(root + '/') ? p.slice(root.length + 1) : p);
  const check = (op: string, p: string) => {
    if (fail?.(op, rel(p))) throw Object.assign(new Error(`injected ${op} failure`), { code: 'EIO' });
  };
  const fs: StoreFs = {
    async open(p, flags, mode) {
      const fh = await nodeFs.open(p, flags, mode);
      if (flags !== 'r') ops.push(`create ${rel(p)} ${flags} ${mode?.toString(8)}`);
      return {
        async writeFile(data) {
          check('write', p);
          ops.push(`write ${rel(p)}`);
          await fh.writeFile(data);
        },
        async sync() {
          check('fsync', p);
          ops.push(`fsync ${rel(p)}`);
          await fh.sync();
        },
        close: () => fh.close(),
      };
    },
    async rename(a, b) {
      check('rename', b);
      ops.push(`rename ${rel(a)} -> ${rel(b)}`);
      await nodeFs.rename(a, b);
    },
    async unlink(p) {
      ops.push(`unlink ${rel(p)}`);
      await nodeFs.unlink(p);
    },
    readFile: nodeFs.readFile,
    readdir: nodeFs.readdir,
    async mkdir(p, o) {
      if (!existsSync(p)) ops.push(`mkdir ${rel(p)}`);
      await nodeFs.mkdir(p, o);
    },
  };
  return { fs, ops };
}

test('commit writes a checksummed revision and the running file that moatd reads; reopen loads it', async () => {
  const t = await fresh();
  try {
    const store = await withCommits(t.file, 0);
    assert.deepEqual(store.recovery, { recovered: false });
    assert.equal(store.runningRevision, null);
    const n = await store.commit(doc(['new.example']), { user: 'admin', comment: 'first' });
    assert.equal(n, 1);
    assert.deepEqual(store.config.inbound.localDomains, ['new.example']);
    assert.deepEqual(JSON.parse(await readFile(t.file, 'utf8')), doc(['new.example']));
    assert.equal((await stat(t.file)).mode & 0o777, 0o640, 'the running file: group-readable for moat-panel');
    assert.equal((await stat(join(t.file + '.d', 'rev-000001.json'))).mode & 0o777, 0o600);
    const rev = JSON.parse(await readFile(join(t.file + '.d', 'rev-000001.json'), 'utf8')) as RevisionFile;
    assert.equal(rev.revision, 1);
    assert.equal(rev.user, 'admin');
    assert.equal(rev.comment, 'first');
    assert.match(rev.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(rev.config, doc(['new.example']));
    assert.deepEqual(await readdir(t.dir), ['config.json', 'config.json.d'], 'no temp file left');

    const again = await ConfigStore.open(t.file, { validate: parseConfig });
    assert.deepEqual(again.recovery, { recovered: false });
    assert.equal(again.runningRevision, 1);
    assert.deepEqual(again.config.inbound.localDomains, ['new.example']);
    assert.deepEqual(again.revisions().map((r) => [r.revision, r.user, r.comment, r.ok]), [[1, 'admin', 'first', true]]);
  } finally {
    await t.done();
  }
});

test('each durable write goes unique temp (0600 for a revision, 0640 for the running file) → write → fsync → rename → directory fsync; revision before running file', async () => {
  const t = await fresh();
  try {
    await writeFile(t.file, JSON.stringify(doc()));
    const { fs, ops } = recordingFs(t.dir);
    const store = await ConfigStore.open(t.file, { validate: parseConfig, fs });
    assert.equal(ops.length, 0, 'open of a good file writes nothing');
    await store.commit(doc(['a.example']), { user: 'admin' });
    const tmp = (s: string) => s.replace(/\.tmp-\d+-[0-9a-f]{12}/g, '.tmp-PID-RANDOM');
    assert.deepEqual(ops.map(tmp), [
      'mkdir config.json.d',
      'create config.json.d/rev-000001.json.tmp-PID-RANDOM wx 600',
      'write config.json.d/rev-000001.json.tmp-PID-RANDOM',
      'fsync config.json.d/rev-000001.json.tmp-PID-RANDOM',
      'rename config.json.d/rev-000001.json.tmp-PID-RANDOM -> config.json.d/rev-000001.json',
      'fsync config.json.d',
      'create config.json.tmp-PID-RANDOM wx 640',
      'write config.json.tmp-PID-RANDOM',
      'fsync config.json.tmp-PID-RANDOM',
      'rename config.json.tmp-PID-RANDOM -> config.json',
      'fsync .',
    ]);
    const firstTemp = ops.find((o) => o.startsWith('create config.json.tmp'));
    ops.length = 0;
    await store.commit(doc(['b.example']), { user: 'admin' });
    const secondTemp = ops.find((o) => o.startsWith('create config.json.tmp'));
    assert.ok(firstTemp && secondTemp && firstTemp !== secondTemp, 'never a fixed temp name');
  } finally {
    await t.done();
  }
});

test('real fsync and rename system calls, in order (strace)', async () => {
  assert.equal(spawnSync('strace', ['-V']).status, 0, 'strace is needed (scripts/setup.sh installs it)');
  const t = await fresh();
  try {
    await writeFile(t.file, JSON.stringify(doc()));
    const script = join(t.dir, 'commit.ts');
    await writeFile(
      script,
      `import { ConfigStore } from ${JSON.stringify(STORE)};\n` +
        `const s = await ConfigStore.open(${JSON.stringify(t.file)}, { validate: (d) => d });\n` +
        `await s.commit({ v: 2 }, { user: 'admin' });\n`,
    );
    const trace = join(t.dir, 'trace');
    const r = spawnSync('strace', ['-f', '-o', trace, '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2', process.execPath, script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const lines = (await readFile(trace, 'utf8')).split('\n').filter((l) => /\b(fsync|fdatasync|rename\w*)\(/.test(l) && !l.includes('unfinished'));
    const calls = lines.map((l) => (/\b(fsync|fdatasync)\(/.test(l) ? 'fsync' : /config\.json\.tmp/.test(l) ? 'rename running' : /rev-000001\.json\.tmp/.test(l) ? 'rename revision' : 'other'));
    assert.deepEqual(calls.filter((c) => c !== 'other'), ['fsync', 'rename revision', 'fsync', 'fsync', 'rename running', 'fsync'], lines.join('\n'));
    assert.deepEqual(JSON.parse(await readFile(t.file, 'utf8')), { v: 2 });
  } finally {
    await t.done();
  }
});

test('an invalid commit writes nothing, names the bad path, and leaves memory as it was', async () => {
  const t = await fresh();
  try {
    const store = await withCommits(t.file, 2);
    const before = await snapshot(t.dir);
    const { fs, ops } = recordingFs(t.dir);
    const s2 = await ConfigStore.open(t.file, { validate: parseConfig, fs });
    await assert.rejects(s2.commit(doc(['x.example'], { maxMessageSize: 'big' }), { user: 'admin' }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /inbound\.maxMessageSize: expected a number of bytes, got "big"/);
      return true;
    });
    await assert.rejects(store.commit(doc([]), { user: 'admin' }), /inbound\.localDomains/);
    assert.deepEqual(ops, []);
    assert.deepEqual(await snapshot(t.dir), before, 'files byte-identical');
    assert.deepEqual(store.config.inbound.localDomains, ['example2.com']);
    assert.equal(store.runningRevision, 2);
    assert.equal(store.revisions().length, 2);
  } finally {
    await t.done();
  }
});

test('a failed write leaves the running file, the revisions and memory unchanged, and no temp file', async () => {
  const t = await fresh();
  try {
    await withCommits(t.file, 1);
    const before = await snapshot(t.dir);
    const { fs } = recordingFs(t.dir, (op, p) => op === 'rename' && p === 'config.json');
    const store = await ConfigStore.open<Config>(t.file, { validate: parseConfig, fs });
    await assert.rejects(store.commit(doc(['new.example']), { user: 'admin' }), /injected rename failure/);
    assert.deepEqual(await snapshot(t.dir), before);
    assert.deepEqual(store.config.inbound.localDomains, ['example1.com']);
    assert.deepEqual(store.revisions().map((r) => r.revision), [1]);

    const { fs: fs2 } = recordingFs(t.dir, (op, p) => op === 'fsync' && p.startsWith('config.json.d/rev-'));
    const store2 = await ConfigStore.open<Config>(t.file, { validate: parseConfig, fs: fs2 });
    await assert.rejects(store2.commit(doc(['new.example']), { user: 'admin' }), /injected fsync failure/);
    assert.deepEqual(await snapshot(t.dir), before);
    assert.deepEqual(store2.config.inbound.localDomains, ['example1.com']);
  } finally {
    await t.done();
  }
});

test('keeps only the last `keep` revisions; numbers are never reused', async () => {
  const t = await fresh();
  try {
    const store = await withCommits(t.file, 5, 3);
    assert.deepEqual(await readdir(t.file + '.d'), ['rev-000003.json', 'rev-000004.json', 'rev-000005.json']);
    assert.deepEqual(store.revisions().map((r) => r.revision), [3, 4, 5]);
    assert.equal(await store.commit(doc(['six.example']), { user: 'admin' }), 6);
    const again = await ConfigStore.open(t.file, { validate: parseConfig, keep: 3 });
    assert.deepEqual(again.revisions().map((r) => r.revision), [4, 5, 6]);
    assert.equal(again.runningRevision, 6);
  } finally {
    await t.done();
  }
});

test('rollback by number and by "n back" is a new commit; revisions() and compare() describe them', async () => {
  const t = await fresh();
  try {
    const store = await withCommits(t.file, 3);
    assert.equal(await store.rollback({ back: 1 }, { user: 'ops' }), 4);
    assert.deepEqual(store.config.inbound.localDomains, ['example2.com']);
    assert.deepEqual(JSON.parse(await readFile(t.file, 'utf8')), doc(['example2.com']));
    assert.equal(await store.rollback({ back: 1 }, { user: 'ops' }), 5, 'rollback 1 twice undoes the rollback');
    assert.deepEqual(store.config.inbound.localDomains, ['example3.com']);
    assert.equal(await store.rollback(1, { user: 'ops', comment: 'back to the start' }), 6);
    assert.deepEqual(store.config.inbound.localDomains, ['example1.com']);
    assert.deepEqual(
      store.revisions().map((r) => [r.revision, r.user, r.comment]),
      [
        [1, 'admin', 'c1'],
        [2, 'admin', 'c2'],
        [3, 'admin', 'c3'],
        [4, 'ops', 'rollback to revision 2'],
        [5, 'ops', 'rollback to revision 3'],
        [6, 'ops', 'back to the start'],
      ],
    );
    assert.ok(store.revisions().every((r) => !Number.isNaN(Date.parse(r.time))));
    await assert.rejects(store.rollback(99, { user: 'ops' }), /no revision 99/);
    await assert.rejects(store.rollback({ back: 6 }, { user: 'ops' }), /cannot roll back 6/);

    assert.deepEqual(await store.compare(1, 2), ['~ inbound.localDomains[0]: "example1.com" → "example2.com"']);
    assert.deepEqual(await store.compare(6, 1), []);
    await store.commit({ ...doc(['a.example', 'b.example']), log: { level: 'debug' } }, { user: 'admin' });
    assert.deepEqual(await store.compare(6, 'running'), [
      '~ inbound.localDomains[0]: "example1.com" → "a.example"',
      '+ inbound.localDomains[1]: "b.example"',
      '+ log.level: "debug"',
    ]);
    assert.deepEqual(await store.compare('running', 6), [
      '~ inbound.localDomains[0]: "a.example" → "example1.com"',
      '- inbound.localDomains[1]: "b.example"',
      '- log.level: "debug"',
    ]);
  } finally {
    await t.done();
  }
});

for (const [what, damage] of [
  ['a truncated', (s: string) => s.slice(0, Math.floor(s.length / 2))],
  ['an empty', () => ''],
  ['a garbage', () => '\u0000\u00ff\u0013garbage\n'],
  ['a schema-invalid', () => JSON.stringify(doc(['not a domain']))],
] as const) {
  test(`${what} running file falls back to the newest valid revision, rewritten durably, and reports it`, async () => {
    const t = await fresh();
    try {
      await withCommits(t.file, 2);
      await writeFile(t.file, damage(await readFile(t.file, 'utf8')));
      const { fs, ops } = recordingFs(t.dir);
      const store = await ConfigStore.open<Config>(t.file, { validate: parseConfig, fs });
      assert.equal(store.recovery.recovered, true);
      assert.ok(store.recovery.recovered && store.recovery.revision === 2);
      if (store.recovery.recovered) assert.match(store.recovery.reason, what === 'a schema-invalid' ? /inbound\.localDomains/ : /config\.json: (file is empty|not valid JSON)/);
      assert.deepEqual(store.config.inbound.localDomains, ['example2.com']);
      assert.deepEqual(JSON.parse(await readFile(t.file, 'utf8')), doc(['example2.com']));
      assert.deepEqual(
        ops.map((o) => o.replace(/\.tmp-\d+-[0-9a-f]{12}/g, '.tmp')),
        ['create config.json.tmp wx 640', 'write config.json.tmp', 'fsync config.json.tmp', 'rename config.json.tmp -> config.json', 'fsync .'],
      );
      const again = await ConfigStore.open(t.file, { validate: parseConfig });
      assert.deepEqual(again.recovery, { recovered: false });
    } finally {
      await t.done();
    }
  });
}

test('a missing running file is restored from the newest revision', async () => {
  const t = await fresh();
  try {
    await withCommits(t.file, 1);
    await rm(t.file);
    const store = await ConfigStore.open(t.file, { validate: parseConfig });
    assert.ok(store.recovery.recovered);
    assert.match(store.recovery.reason, /config\.json is missing/);
    assert.deepEqual(JSON.parse(await readFile(t.file, 'utf8')), doc(['example1.com']));
  } finally {
    await t.done();
  }
});

test('a revision with a bad checksum is skipped at recovery, listed as damaged and refused by rollback', async () => {
  const t = await fresh();
  try {
    await withCommits(t.file, 3);
    const rev3 = join(t.file + '.d', 'rev-000003.json');
    // Same JSON shape, one changed value: only the checksum can tell.
    await writeFile(rev3, (await readFile(rev3, 'utf8')).replace('example3.com', 'exampleX.com'));
    await writeFile(t.file, '{"hostname": "mx.exa');
    const store = await ConfigStore.open<Config>(t.file, { validate: parseConfig });
    assert.ok(store.recovery.recovered && store.recovery.revision === 2);
    assert.match(store.recovery.reason, /revision 3: checksum mismatch/);
    assert.deepEqual(store.config.inbound.localDomains, ['example2.com']);
    assert.deepEqual(store.revisions().map((r) => [r.revision, r.ok]), [[1, true], [2, true], [3, false]]);
    await assert.rejects(store.rollback(3, { user: 'admin' }), /revision 3 is damaged: checksum mismatch/);
    await assert.rejects(store.compare(3, 2), /checksum mismatch/);
  } finally {
    await t.done();
  }
});

test('nothing valid anywhere: open throws a clear error and writes nothing', async () => {
  const t = await fresh();
  try {
    await assert.rejects(ConfigStore.open(t.file, { validate: parseConfig }), /no valid configuration: .*config\.json is missing; no revisions in .*config\.json\.d/);
    await withCommits(t.file, 1);
    const rev1 = join(t.file + '.d', 'rev-000001.json');
    await writeFile(rev1, (await readFile(rev1, 'utf8')).slice(0, 40));
    await writeFile(t.file, '');
    const before = await snapshot(t.dir);
    await assert.rejects(ConfigStore.open(t.file, { validate: parseConfig }), /no valid configuration: .*file is empty; no usable revision \(revision 1: not valid JSON/);
    assert.deepEqual(await snapshot(t.dir), before);
  } finally {
    await t.done();
  }
});

test('stale temp files from a crash are removed at open; a live writer\'s are not; a good file is not rewritten', async () => {
  const t = await fresh();
  try {
    await withCommits(t.file, 1);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    const stale = [`config.json.tmp-${dead}-0123456789ab`, '.config.json.tmp', `config.json.d/rev-000002.json.tmp-${dead}-0123456789ab`];
    for (const s of stale) await writeFile(join(t.dir, s), '{"half": ');
    const live = `config.json.tmp-${process.ppid}-0123456789ab`; // the test runner: alive
    await writeFile(join(t.dir, live), '{}');
    await writeFile(join(t.dir, 'unrelated.tmp-1-x'), 'x');
    const running = await readFile(t.file);
    const { fs, ops } = recordingFs(t.dir);
    const store = await ConfigStore.open(t.file, { validate: parseConfig, fs });
    assert.deepEqual(store.recovery, { recovered: false });
    assert.deepEqual(ops.sort(), stale.map((s) => `unlink ${s}`).sort(), 'only the stale temps are touched');
    assert.deepEqual((await readdir(t.dir)).sort(), ['config.json', 'config.json.d', live, 'unrelated.tmp-1-x'].sort());
    assert.deepEqual(await readdir(t.file + '.d'), ['rev-000001.json']);
    assert.deepEqual(await readFile(t.file), running);
  } finally {
    await t.done();
  }
});

test('killed between rename and directory fsync (both files left): the old or the new loads, never a broken one', async () => {
  const t = await fresh();
  try {
    await withCommits(t.file, 2);
    const old = await readFile(t.file, 'utf8');
    const rev2 = await readFile(join(t.file + '.d', 'rev-000002.json'), 'utf8');
    // Case 1: the running file's rename was lost; its complete temp file and the old file are both there.
    const temp = join(t.dir, `config.json.tmp-999999999-0123456789ab`);
    await writeFile(temp, JSON.stringify(doc(['lost.example'])));
    let store = await ConfigStore.open<Config>(t.file, { validate: parseConfig });
    assert.deepEqual(store.recovery, { recovered: false });
    assert.deepEqual(store.config.inbound.localDomains, ['example2.com']);
    assert.equal(existsSync(temp), false);

    // Case 2: the revision was renamed (and kept) but the running file was not replaced.
    const rev3 = { revision: 3, time: new Date().toISOString(), user: 'admin', config: doc(['three.example']) };
    const { createHash } = await import('node:crypto');
    const sha256 = createHash('sha256').update(JSON.stringify([3, rev3.time, 'admin', null, rev3.config])).digest('hex');
    await writeFile(join(t.file + '.d', 'rev-000003.json'), JSON.stringify({ sha256, ...rev3 }));
    await writeFile(join(t.file + '.d', `rev-000003.json.tmp-999999999-0123456789ab`), JSON.stringify({ sha256, ...rev3 }));
    store = await ConfigStore.open<Config>(t.file, { validate: parseConfig });
    assert.deepEqual(store.recovery, { recovered: false });
    assert.equal(await readFile(t.file, 'utf8'), old);
    assert.deepEqual(store.config.inbound.localDomains, ['example2.com'], 'the old configuration');
    assert.equal(store.runningRevision, 2);
    assert.deepEqual(store.revisions().map((r) => [r.revision, r.ok]), [[1, true], [2, true], [3, true]]);
    assert.equal(await store.commit(doc(['four.example']), { user: 'admin' }), 4);
    assert.equal(await readFile(join(t.file + '.d', 'rev-000002.json'), 'utf8'), rev2);
  } finally {
    await t.done();
  }
});

test('SIGKILL at random moments while committing: the store always opens the old or the new configuration', async () => {
  const t = await fresh();
  try {
    await writeFile(t.file, JSON.stringify(doc(['d0.example'])));
    const script = join(t.dir, 'loop.ts');
    await writeFile(
      script,
      `import { ConfigStore } from ${JSON.stringify(STORE)};\n` +
        `import { parseConfig } from ${JSON.stringify(join(import.meta.dirname, 'schema.ts'))};\n` +
        `const s = await ConfigStore.open(${JSON.stringify(t.file)}, { validate: parseConfig, keep: 5 });\n` +
        `process.stdout.write('ready\\n');\n` +
        `const base = ${JSON.stringify(doc())};\n` +
        `for (let i = 1; ; i++) {\n` +
        `  await s.commit({ ...base, inbound: { localDomains: ['p' + process.pid + 'c' + i + '.example'] } }, { user: 'loop' });\n` +
        `  process.stdout.write('c\\n');\n` +
        `}\n`,
    );
    let kills = 0;
    const seen = new Set<string>();
    for (let round = 0; round < 8; round++) {
      const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise((r) => child.once('exit', r));
      // wait for a random number of finished commits (progress, not time: the machine may be slow),
      // then kill at a random moment of the next one
      const target = 1 + Math.floor(Math.random() * 5);
      await new Promise<void>((resolve) => {
        let lines = -1; // the first line is "ready"
        child.stdout.on('data', (d: Buffer) => {
          lines += d.toString().split('\n').length - 1;
          if (lines >= target) resolve();
        });
      });
      await new Promise((r) => setTimeout(r, Math.random() * 4));
      child.kill('SIGKILL');
      await exited;
      kills++;
      const store = await ConfigStore.open<Config>(t.file, { validate: parseConfig, keep: 5 });
      assert.deepEqual(store.recovery, { recovered: false }, 'a kill never breaks the running file');
      assert.match(store.config.inbound.localDomains[0]!, /^(d0|p\d+c\d+)\.example$/);
      seen.add(store.config.inbound.localDomains[0]!);
      assert.ok(store.revisions().every((r) => r.ok));
      assert.deepEqual((await readdir(t.dir)).filter((n) => n.includes('.tmp')), [], 'stale temps cleaned');
    }
    assert.equal(kills, 8);
    // every round finished at least one commit of its own before the kill, so each left its mark
    assert.equal(seen.size, 8, `each round's last finished commit was kept: ${[...seen].join(' ')}`);
    // A kill before the prune leaves extra revisions; the next commit prunes them all.
    const store = await ConfigStore.open<Config>(t.file, { validate: parseConfig, keep: 5 });
    await store.commit(doc(['final.example']), { user: 'admin' });
    assert.equal((await readdir(t.file + '.d')).length, 5);
  } finally {
    await t.done();
  }
});

