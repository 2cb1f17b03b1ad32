// The digest index: every entry found by kind, digest and size; `*` as a
// fallback; nothing for other kinds, sizes or digests; malformed entries refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { HashIndex } from './hashes.ts';
import type { HashSignature } from './types.ts';

const none = async () => {};
const md5 = (s: string) => createHash('md5').update(s).digest('hex');

test('20 000 digests: each found by its size, `*` only as a fallback, the first name of a duplicate wins', async () => {
  const hs: HashSignature[] = [];
  for (let i = 0; i < 20_000; i++) hs.push({ name: `H${i}`, kind: 'md5', digest: md5(String(i)), size: i });
  for (let i = 0; i < 20_000; i += 7) hs.push({ name: `Any${i}`, kind: 'md5', digest: md5(String(i)), size: '*' });
  hs.push({ name: 'Dup', kind: 'md5', digest: md5('5'), size: 5 });
  hs.push({ name: 'Sha', kind: 'sha256', digest: createHash('sha256').update('5').digest('hex'), size: 1 });
  const idx = await HashIndex.build(hs, none);
  assert.equal(idx.count, hs.length);
  assert.deepEqual([...idx.kinds].sort(), ['md5', 'sha256']);
  for (let i = 0; i < 20_000; i++) {
    const d = Buffer.from(md5(String(i)), 'hex');
    assert.equal(idx.lookup('md5', d, i), `H${i}`);
    assert.equal(idx.lookup('md5', d, i + 1), i % 7 === 0 ? `Any${i}` : null);
    assert.equal(idx.lookup('sha1', d, i), null);
  }
  assert.equal(idx.lookup('md5', Buffer.from(md5('x'), 'hex'), 0), null);
  assert.equal(idx.lookup('md5', Buffer.alloc(3), 0), null, 'a digest of the wrong length');
  assert.equal(idx.lookup('sha256', createHash('sha256').update('5').digest(), 1), 'Sha');
});

test('malformed hash signatures are refused, naming them', async () => {
  const bad: Array<[HashSignature, RegExp]> = [
    [{ name: 'A', kind: 'md5', digest: 'abc', size: 1 }, /hash signature A: md5 digest must be 32 lowercase hex/],
    [{ name: 'B', kind: 'sha1', digest: md5('x'), size: 1 }, /hash signature B: sha1 digest must be 40/],
    [{ name: 'C', kind: 'md5', digest: md5('x').toUpperCase(), size: 1 }, /hash signature C/],
    [{ name: 'D', kind: 'md5', digest: md5('x'), size: -1 }, /hash signature D: bad size/],
    [{ name: 'E', kind: 'crc' as 'md5', digest: md5('x'), size: 1 }, /hash signature E: unknown kind/],
  ];
  for (const [h, re] of bad) await assert.rejects(HashIndex.build([h], none), re);
});
