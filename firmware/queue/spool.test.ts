import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, truncate, appendFile, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { Spool, SpoolError, type Envelope } from './spool.ts';
import { silentLogger } from '../log/logger.ts';
import { withTmpfs } from '../../test/helpers/tmpfs.ts';

const env = (to: string[] = ['a@example.com']): Envelope => ({
  from: 'sender@example.net',
  to,
  arrivedAt: 1_700_000_000_000,
  client: { address: '192.0.2.1', helo: 'client.example.net', tls: false },
});

async function openSpool(dataDir: string, extra: Partial<Parameters<typeof Spool.open>[0]> = {}) {
  return Spool.open({ dataDir, segmentBytes: 1024 * 1024, minFreeBytes: 0, syncDelayMs: 0, log: silentLogger(), ...extra });
}

async function store(spool: Spool, body: string | Buffer[], to?: string[]) {
  const inc = spool.begin();
  for (const part of typeof body === 'string' ? [Buffer.from(body)] : body) inc.write([part]);
  return inc.commit(env(to));
}

test('a committed message is recovered byte for byte after reopening', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  const s1 = await openSpool(dir);
  const parts = [Buffer.from('Subject: x\r\n\r\n'), Buffer.alloc(200_000, 'a'), Buffer.from('\r\nend\r\n')];
  const m = await store(s1, parts, ['a@example.com', 'b@example.com']);
  assert.match(m.id, /^[0-9A-F]{16}$/);
  await s1.close();
  const s2 = await openSpool(dir);
  const got = s2.messages.get(m.id);
  assert.ok(got, 'message recovered');
  assert.deepEqual(got.envelope.to, ['a@example.com', 'b@example.com']);
  assert.equal(got.size, 200_000 + 14 + 7);
  const back = Buffer.from(await text(s2.reader(got)));
  assert.ok(back.equals(Buffer.concat(parts)), `read back ${back.length} bytes, stored ${got.size}`);
  await s2.close();
  await rm(dir, { recursive: true });
});

test('header fields added after the check are read before the stored bytes, also after reopening', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  const s1 = await openSpool(dir);
  const inc = s1.begin();
  inc.write([Buffer.from('Subject: x\r\n\r\nbody\r\n')]);
  const m = await inc.commit({ ...env(), headers: 'X-Moat-Tag: rule\r\n' });
  assert.equal(m.size, 20, 'size counts the stored bytes only');
  assert.equal(await text(s1.reader(m)), 'X-Moat-Tag: rule\r\nSubject: x\r\n\r\nbody\r\n');
  await s1.close();
  const s2 = await openSpool(dir);
  const got = s2.messages.get(m.id)!;
  assert.equal(await text(s2.reader(got)), 'X-Moat-Tag: rule\r\nSubject: x\r\n\r\nbody\r\n');
  await s2.close();
  await rm(dir, { recursive: true });
});

test('commit waits for a flush; concurrent commits share flushes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  const s = await openSpool(dir, { syncDelayMs: 20 });
  const before = s.device.flushes;
  const all = await Promise.all(Array.from({ length: 20 }, (_, i) => store(s, `message ${i}\r\n`)));
  const flushes = s.device.flushes - before;
  assert.equal(new Set(all.map((m) => m.id)).size, 20, 'ids are unique');
  assert.ok(flushes >= 1 && flushes < 20, `20 concurrent commits used ${flushes} flushes`);
  await s.close();
  await rm(dir, { recursive: true });
});

test('an uncommitted or aborted message is not recovered', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  const s1 = await openSpool(dir);
  const kept = await store(s1, 'kept\r\n');
  const a = s1.begin();
  a.write([Buffer.from('aborted body')]);
  a.abort();
  const b = s1.begin();
  b.write([Buffer.from('never committed')]);
  await s1.close();
  const s2 = await openSpool(dir);
  assert.deepEqual([...s2.messages.keys()], [kept.id]);
  await s2.close();
  await rm(dir, { recursive: true });
});

test('a torn tail and garbage in the middle of a segment lose only what they cover', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  const s1 = await openSpool(dir);
  const m1 = await store(s1, 'first\r\n');
  await s1.close();
  const seg = (await readdir(join(dir, 'spool'))).filter((n) => n.startsWith('seg-')).sort().at(-1)!;
  const segPath = join(dir, 'spool', seg);
  // garbage after the first message, then a second message, then a torn record
  await appendFile(segPath, Buffer.from('\x00\x00garbage MOAT not a header\x00'));
  const s2 = await openSpool(dir);
  const m2 = await store(s2, 'second\r\n');
  await s2.close();
  const seg2 = (await readdir(join(dir, 'spool'))).filter((n) => n.startsWith('seg-')).sort().at(-1)!;
  const size = (await stat(join(dir, 'spool', seg2))).size;
  await truncate(join(dir, 'spool', seg2), size - 5); // tears m2's commit record
  const s3 = await openSpool(dir);
  assert.ok(s3.messages.has(m1.id), 'message before the garbage survives');
  assert.ok(!s3.messages.has(m2.id), 'a message whose commit record is torn was never acknowledged, so it may go');
  assert.equal(await text(s3.reader(s3.messages.get(m1.id)!)), 'first\r\n');
  await s3.close();
  await rm(dir, { recursive: true });
});

test('delivery state survives a restart and finished segments are deleted', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  const s1 = await openSpool(dir, { segmentBytes: 1024 * 1024 });
  const msgs = [];
  for (let i = 0; i < 12; i++) msgs.push(await store(s1, [Buffer.alloc(200_000, 0x41 + i)], ['a@example.com', 'b@example.com']));
  const segFiles = async () => (await readdir(join(dir, 'spool'))).filter((n) => n.startsWith('seg-')).map((n) => Number(n.slice(4, 12))).sort((a, b) => a - b);
  assert.ok((await segFiles()).length >= 3, `12 × 200 KB spread over several segments`);
  const keep = new Set([...msgs[0]!.segments, ...msgs[11]!.segments]);
  s1.update(msgs[0]!, { rcpts: [[0, 'delivered']] });
  for (const m of msgs.slice(1, 11)) s1.update(m, { rcpts: [[0, 'delivered'], [1, 'failed', '550 no']] });
  s1.update(msgs[11]!, { attempts: 3, next: 12345 });
  await s1.close();
  const s2 = await openSpool(dir);
  assert.deepEqual([...s2.messages.keys()].sort(), [msgs[0]!.id, msgs[11]!.id].sort());
  assert.deepEqual(s2.messages.get(msgs[0]!.id)!.rcpts.map((r) => r.status), ['delivered', 'pending']);
  assert.equal(s2.messages.get(msgs[11]!.id)!.attempts, 3);
  assert.equal(s2.messages.get(msgs[11]!.id)!.nextAttemptAt, 12345);
  const after = await segFiles();
  assert.deepEqual(after.slice(0, -1), [...keep].sort((a, b) => a - b), 'only segments holding queued mail are left, plus the new head');
  await s2.close();
  // a second restart must still find both (their commit records' segments were kept)
  const s2b = await openSpool(dir);
  assert.deepEqual([...s2b.messages.keys()].sort(), [msgs[0]!.id, msgs[11]!.id].sort());
  await s2b.close();
  const s2c = await openSpool(dir);
  s2c.update(s2c.messages.get(msgs[0]!.id)!, { rcpts: [[1, 'delivered']] });
  s2c.update(s2c.messages.get(msgs[11]!.id)!, { done: true });
  await s2c.close();
  const s3 = await openSpool(dir);
  assert.equal(s3.messages.size, 0);
  const left = (await readdir(join(dir, 'spool'))).filter((n) => n.startsWith('seg-'));
  assert.equal(left.length, 1, `only the fresh head segment is left: ${left}`);
  await s3.close();
  await rm(dir, { recursive: true });
});

test('a damaged state log does not lose queued mail', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  const s1 = await openSpool(dir);
  const m = await store(s1, 'x\r\n');
  await s1.close();
  await writeFile(join(dir, 'spool', 'state.log'), Buffer.from('not a record at all'));
  const s2 = await openSpool(dir);
  assert.ok(s2.messages.has(m.id));
  await s2.close();
  await rm(dir, { recursive: true });
});

test('a full file system fails the commit with a "full" error, and service resumes when space returns', async () => {
  await withTmpfs('2m', async (mnt) => {
    const s = await openSpool(mnt, { segmentBytes: 64 * 1024 * 1024 });
    await writeFile(join(mnt, 'filler'), Buffer.alloc(1024 * 1024));
    const inc = s.begin();
    for (let i = 0; i < 40; i++) inc.write([Buffer.alloc(64 * 1024, 0x42)]);
    await assert.rejects(inc.commit(env()), (e: unknown) => e instanceof SpoolError && e.code === 'full');
    await rm(join(mnt, 'filler'));
    const ok = await store(s, 'after space returned\r\n');
    await s.close();
    const s2 = await openSpool(mnt);
    assert.deepEqual([...s2.messages.keys()], [ok.id]);
    assert.equal(await text(s2.reader(s2.messages.get(ok.id)!)), 'after space returned\r\n');
    await s2.close();
  });
});

test('commit resolves only after a flush that began after the message was written', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  const s = await openSpool(dir);
  const events: string[] = [];
  const orig = s.device.datasync.bind(s.device);
  s.device.datasync = async (fh) => {
    events.push('flush-start');
    await orig(fh);
    events.push('flush-end');
  };
  const inc = s.begin();
  inc.write([Buffer.from('x\r\n')]);
  const p = inc.commit(env()).then(() => events.push('committed'));
  events.push('commit-called');
  await p;
  const called = events.indexOf('commit-called');
  const start = events.indexOf('flush-start', called);
  assert.ok(start > called, `a flush started after the commit call: ${events}`);
  assert.ok(events.indexOf('flush-end', start) < events.indexOf('committed'), `and ended before the commit resolved: ${events}`);
  await s.close();
  await rm(dir, { recursive: true });
});

test('long-deferred mail is moved out of sparse segments, which are then deleted; a restart finds it once', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  let clock = 1_000_000;
  const opts = { segmentBytes: 1024 * 1024, now: () => clock, relocateAfterMs: 60_000, relocateIntervalMs: 3_600_000 };
  const s1 = await openSpool(dir, opts);
  const stuck = await store(s1, [Buffer.from('Subject: stuck\r\n\r\n'), Buffer.alloc(50_000, 0x53)], ['a@example.com', 'b@example.com']);
  s1.update(stuck, { rcpts: [[0, 'delivered']], attempts: 2, next: 99 });
  const others = [];
  for (let i = 0; i < 12; i++) others.push(await store(s1, [Buffer.alloc(200_000, 0x61 + i)]));
  for (const m of others) s1.update(m, { done: true });
  const stuckSegs = [...stuck.segments];
  const segPath = (n: number) => join(dir, 'spool', `seg-${String(n).padStart(8, '0')}.log`);
  const exists = async (p: string) => stat(p).then(() => true, () => false);
  assert.ok(await exists(segPath(stuckSegs[0]!)), 'the stuck message pins its segment');
  assert.equal(await s1.relocateSparse(), 0, 'not before relocateAfterMs');
  clock += 120_000;
  assert.equal(await s1.relocateSparse(), 1);
  assert.ok(![...stuck.segments].some((f) => stuckSegs.includes(f)), 'moved to other segments');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(await exists(segPath(stuckSegs[0]!)), false, 'the sparse segment is gone');
  const body = Buffer.from(await text(s1.reader(stuck)));
  assert.ok(body.equals(Buffer.concat([Buffer.from('Subject: stuck\r\n\r\n'), Buffer.alloc(50_000, 0x53)])));
  await s1.close();
  const s2 = await openSpool(dir, opts);
  assert.deepEqual([...s2.messages.keys()], [stuck.id], 'recovered once, under its own id');
  const m = s2.messages.get(stuck.id)!;
  assert.deepEqual(m.rcpts.map((r) => r.status), ['delivered', 'pending'], 'delivery state kept');
  assert.equal(m.attempts, 2);
  assert.equal((await text(s2.reader(m))).length, 50_000 + 18);
  await s2.close();
  await rm(dir, { recursive: true });
});

test('a segment is not deleted while a delivery still reads from it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  const s = await openSpool(dir, { segmentBytes: 1024 * 1024 });
  const m = await store(s, [Buffer.alloc(600_000, 0x41)]);
  for (let i = 0; i < 3; i++) s.update(await store(s, [Buffer.alloc(300_000, 0x42)]), { done: true }); // rotates past m's segment
  const it = s.reader(m)[Symbol.asyncIterator]();
  const first = (await it.next()).value as Buffer;
  s.update(m, { done: true });
  await new Promise((res) => setTimeout(res, 50));
  let rest = 0;
  for (let n = await it.next(); !n.done; n = await it.next()) rest += (n.value as Buffer).length;
  assert.equal(first.length + rest, 600_000, 'the reader finished');
  await new Promise((res) => setTimeout(res, 50));
  const segs = (await readdir(join(dir, 'spool'))).filter((f) => f.startsWith('seg-'));
  assert.ok(!segs.includes(`seg-${String([...m.segments][0]).padStart(8, '0')}.log`), 'and then the segment went');
  await s.close();
  await rm(dir, { recursive: true });
});

test('a sent delay warning is remembered across a restart (the sender is never warned twice)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-spool-'));
  const s1 = await openSpool(dir);
  const m = await store(s1, 'Subject: x\r\n\r\nbody\r\n');
  const other = await store(s1, 'Subject: y\r\n\r\nbody\r\n');
  s1.update(m, { attempts: 1, next: 5, warned: true });
  s1.update(other, { attempts: 1, next: 5 });
  await s1.syncState();
  await s1.close();
  const s2 = await openSpool(dir);
  assert.equal(s2.messages.get(m.id)!.warned, true);
  assert.equal(s2.messages.get(other.id)!.warned, undefined);
  await s2.close();
  await rm(dir, { recursive: true });
});
