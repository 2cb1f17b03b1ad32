// The timing sink and probe client of bench-compare (scripts/bench/timing-sink.mjs,
// scripts/bench/probe.mjs): the end of data is found wherever the chunks split it, a
// dot-stuffed line is not an end, pipelined commands are answered in order, an overlong
// command line closes the session, and probes through a real relay (moatd) come back with
// a latency each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
// @ts-expect-error: plain ES module of the benchmark scripts, without types
import { sinkSession, startTimingSink } from '../scripts/bench/timing-sink.mjs';
// @ts-expect-error: plain ES module of the benchmark scripts, without types
import { startProbes, quantile } from '../scripts/bench/probe.mjs';
import { RawSmtp } from './helpers/smtp-client.ts';
import { withRelay } from './helpers/moat.ts';

type Feed = { out: string; close: boolean; error?: string };
type Session = { greeting: string; feed(b: Buffer): Feed };

const FIRST = 'X-Bench-Probe: 7 12.5\r\nSubject: s\r\n\r\nline\r\n..\r\n..dot-stuffed\r\n\r\n.\r\n';
const DIALOGUE = 'EHLO a.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n' + FIRST + 'MAIL FROM:<>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n.\r\nQUIT\r\n';
const EHLO = '250-sink.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 209715200\r\n';
const REPLIES = '220 sink.bench.test ESMTP\r\n' + EHLO + '250 ok\r\n250 ok\r\n354 go ahead\r\n250 2.0.0 Ok: queued\r\n250 ok\r\n250 ok\r\n354 go ahead\r\n250 2.0.0 Ok: queued\r\n221 bye\r\n';

function run(chunks: Buffer[]): { heads: string[]; out: string; close: boolean } {
  const heads: string[] = [];
  const s: Session = sinkSession({ onMessage: (h: Buffer) => heads.push(h.toString('latin1')) });
  let out = '';
  let close = false;
  for (const c of chunks) {
    const r = s.feed(c);
    out += r.out;
    close ||= r.close;
  }
  return { heads, out, close };
}

test('timing sink: the end of data is found at every split of the stream, in 1-byte chunks, and pipelined', () => {
  const all = Buffer.from(DIALOGUE, 'latin1');
  const check = (r: ReturnType<typeof run>, how: string) => {
    assert.deepEqual(r.heads, [FIRST, '.\r\n'], how);
    assert.equal('220 sink.bench.test ESMTP\r\n' + r.out, REPLIES, how);
    assert.ok(r.close, how);
  };
  check(run([all]), 'in one chunk (pipelined)');
  for (let i = 1; i < all.length; i++) check(run([all.subarray(0, i), all.subarray(i)]), `split at ${i}`);
  check(run([...all].map((b) => Buffer.from([b]))), '1-byte chunks');
  for (let i = 1; i + 2 < all.length; i += 7) check(run([all.subarray(0, i), all.subarray(i, i + 2), all.subarray(i + 2)]), `2-byte chunk at ${i}`);
});

test('timing sink: "\\r\\n.\\r" without its "\\n", and ".." at a line start, do not end the data', () => {
  const r = run([Buffer.from('DATA\r\nabc\r\n.\rdef\r\n..\r\n'), Buffer.from('x\r\n.'), Buffer.from('\r\n')]);
  assert.equal(r.heads.length, 1);
  assert.equal(r.heads[0], 'abc\r\n.\rdef\r\n..\r\nx\r\n.\r\n');
});

test('timing sink: a command line over maxLine closes the session with 500, in one chunk or many', () => {
  const s: Session = sinkSession({ maxLine: 100, onMessage: () => undefined });
  const long = s.feed(Buffer.from('EHLO ' + 'x'.repeat(200) + '\r\n'));
  assert.match(long.out, /^500 5\.5\.2 line too long/);
  assert.ok(long.close);
  assert.equal(long.error, 'command line too long');
  const t: Session = sinkSession({ maxLine: 100, onMessage: () => undefined });
  let r: Feed = { out: '', close: false };
  for (let i = 0; i < 20 && !r.close; i++) r = t.feed(Buffer.from('y'.repeat(10)));
  assert.ok(r.close, 'no newline within maxLine: closed');
  assert.match(r.out, /^500 /);
});

test('timing sink and probes over TCP: straight to the sink, and through moatd, every probe answered 250 arrives with its latency', async () => {
  const sink = await startTimingSink();
  try {
    const probes = startProbes(sink.port, { sessions: 2, size: 20_000, pauseMs: 0 });
    await sink.waitFor(10);
    const direct = await probes.stop();
    assert.ok(direct.accepted.size >= 10);
    assert.equal(direct.errors, 0);
    await sink.waitFor(direct.accepted.size);
    assert.equal(sink.count, direct.accepted.size);
    for (const id of direct.accepted) assert.ok(sink.probes.get(id) >= 0, `probe ${id} has a latency`);
    // a raw client's message without a probe header is counted, with no latency
    const c = await RawSmtp.greeted(sink.port);
    await c.cmd('MAIL FROM:<a@example.net>');
    await c.cmd('RCPT TO:<b@example.com>');
    await c.cmd('DATA');
    assert.match(await c.cmd('Subject: plain\r\n\r\nhello\r\n.'), /^250 /);
    c.destroy();
    assert.equal(sink.count, direct.accepted.size + 1);
    assert.equal(sink.probes.size, direct.accepted.size);
  } finally {
    await sink.stop();
  }
  // through the real relay: moatd hands the probes to its internal server (a timing sink)
  const far = await startTimingSink();
  try {
    await withRelay({ internal: { servers: [{ host: '127.0.0.1', port: far.port, tls: 'none' }] } }, async ({ moat }) => {
      const probes = startProbes(moat.port, { sessions: 1, size: 5000, pauseMs: 0 });
      await far.waitFor(5);
      const r = await probes.stop();
      await far.waitFor(r.accepted.size);
      const lat = [...r.accepted].map((id) => far.probes.get(id));
      assert.ok(lat.every((ms) => typeof ms === 'number' && ms > 0), JSON.stringify(lat));
      assert.ok(quantile(lat, 0.5) <= quantile(lat, 0.99));
    });
  } finally {
    await far.stop();
  }
});

test('quantile: nearest rank', () => {
  assert.equal(quantile([], 0.5), null);
  assert.equal(quantile([5], 0.99), 5);
  assert.equal(quantile([4, 1, 3, 2], 0.5), 2);
  assert.equal(quantile(Array.from({ length: 100 }, (_, i) => i + 1), 0.99), 99);
});
