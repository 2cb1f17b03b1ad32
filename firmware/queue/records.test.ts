import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HEADER_BYTES, IdSource, RecordType, decodeHeader, encodeHeader, formatId, payloadCrc } from './records.ts';

test('a header round-trips and names its payload', () => {
  const parts = [Buffer.from('hello '), Buffer.from('world')];
  const h = encodeHeader(RecordType.chunk, '01A2219971C50003', parts);
  assert.equal(h.length, HEADER_BYTES);
  const d = decodeHeader(h)!;
  assert.deepEqual(d, { type: RecordType.chunk, id: '01A2219971C50003', length: 11, payloadCrc: payloadCrc(Buffer.from('hello world')) });
});

test('any flipped bit in a header makes it invalid', () => {
  const h = encodeHeader(RecordType.commit, '01A2219971C50003', [Buffer.from('x')]);
  for (let byte = 0; byte < HEADER_BYTES; byte++)
    for (let bit = 0; bit < 8; bit++) {
      const c = Buffer.from(h);
      c[byte]! ^= 1 << bit;
      assert.equal(decodeHeader(c), null, `byte ${byte} bit ${bit}`);
    }
  assert.equal(decodeHeader(Buffer.alloc(HEADER_BYTES)), null, 'zeroes are not a header');
  assert.equal(decodeHeader(h.subarray(0, 31)), null, 'a short header is not a header');
});

test('ids sort by time and never repeat, even when the clock steps back', () => {
  let now = 1_800_000_000_000;
  const ids = new IdSource(() => now);
  const a = ids.next();
  const b = ids.next();
  assert.ok(b > a);
  now -= 3_600_000; // the clock steps back an hour (a Pi without a clock, before NTP)
  const c = ids.next();
  assert.ok(c > b, `${c} > ${b}`);
  const restarted = new IdSource(() => now);
  restarted.observe(c);
  assert.ok(restarted.next() > c, 'after a restart, ids found on disk are never handed out again');
  assert.equal(formatId(1, 2), '0000000000010002');
});
