import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogRing } from './ring.ts';
import { createLogger } from './logger.ts';

test('the ring keeps the last lines, bounded by count and by bytes; long lines are cut', () => {
  const r = new LogRing({ maxLines: 3, maxBytes: 1000, maxLineBytes: 10 });
  r.push('a\nb\n');
  r.push('c\nd\n\n');
  assert.deepEqual(r.tail(10), ['b', 'c', 'd']);
  assert.deepEqual(r.tail(1), ['d']);
  assert.deepEqual(r.tail(0), []);
  r.push('x'.repeat(50) + '\n');
  assert.equal(r.tail(1)[0], 'x'.repeat(10) + '…');
  const small = new LogRing({ maxLines: 100, maxBytes: 20, maxLineBytes: 100 });
  for (let i = 0; i < 10; i++) small.push(`line${i}\n`);
  assert.deepEqual(small.tail(100), ['line6', 'line7', 'line8', 'line9']);
});

test('the logger feeds the ring what it writes, secrets already redacted', () => {
  const r = new LogRing();
  const written: string[] = [];
  const log = createLogger('info', { write: (s: string) => void written.push(s) } as never, r);
  log.info({ ev: 'x', password: 'hunter2' }, 'hello');
  log.debug({ ev: 'hidden' }, 'below the level');
  assert.equal(r.size, 1);
  assert.match(r.tail(1)[0]!, /"ev":"x"/);
  assert.ok(!r.tail(1)[0]!.includes('hunter2'));
  assert.equal(written.length, 1);
});
