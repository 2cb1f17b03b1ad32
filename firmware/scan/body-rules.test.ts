import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BodyRules, type BodyRule } from './body-rules.ts';

const rules: BodyRule[] = [
  { name: 'macro', literal: Buffer.from('AutoOpen'), action: 'tag' },
  { name: 'bad', literal: Buffer.from('evil-payload-marker'), action: 'reject' },
];

function run(chunks: Buffer[]) {
  const r = new BodyRules(rules);
  for (const c of chunks) r.push(c);
  return { verdict: r.end(), tags: r.tags };
}

test('a literal is found at every split offset and in 1-byte chunks', () => {
  const msg = Buffer.from('Subject: x\r\n\r\nsome text evil-payload-marker more text');
  for (let k = 0; k <= msg.length; k++) assert.equal(run([msg.subarray(0, k), msg.subarray(k)]).verdict?.reason, 'rule bad', `split at ${k}`);
  assert.equal(run([...msg].map((b) => Buffer.from([b]))).verdict?.reason, 'rule bad');
});

test('property: found exactly when the stream contains it, whatever the chunking', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 200 }),
      fc.boolean(),
      fc.nat(200),
      fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 30 }),
      (noise, plant, at, sizes) => {
        const lit = rules[1]!.literal;
        const pos = Math.min(at, noise.length);
        const data = plant ? Buffer.concat([Buffer.from(noise.subarray(0, pos)), lit, Buffer.from(noise.subarray(pos))]) : Buffer.from(noise);
        const chunks: Buffer[] = [];
        for (let i = 0, k = 0; i < data.length; k++) {
          const n = sizes[k % sizes.length]!;
          chunks.push(data.subarray(i, i + n));
          i += n;
        }
        assert.equal(run(chunks).verdict !== null, data.includes(lit));
      },
    ),
    { seed: 11, numRuns: 500 },
  );
});

test('tag rules collect names once and do not refuse', () => {
  const r = run([Buffer.from('AutoOpen and AutoOpen again')]);
  assert.equal(r.verdict, null);
  assert.deepEqual(r.tags, ['macro']);
});
