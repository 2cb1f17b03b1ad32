import { test } from 'node:test';
import assert from 'node:assert/strict';
import { orderServers } from './internal.ts';

function seq(values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

test('servers are tried by priority, lowest first, whatever the weights', () => {
  const s = [
    { name: 'c', priority: 30, weight: 100 },
    { name: 'a', priority: 10, weight: 1 },
    { name: 'b', priority: 20, weight: 1000 },
  ];
  assert.deepEqual(orderServers(s, seq([0.99])).map((x) => x.name), ['a', 'b', 'c']);
});

test('among equal priorities the first pick follows the weights', () => {
  const s = [
    { name: 'big', priority: 10, weight: 3 },
    { name: 'small', priority: 10, weight: 1 },
    { name: 'backup', priority: 20, weight: 1 },
  ];
  // total weight 4: draws below 3 pick "big", from 3 on "small"
  assert.deepEqual(orderServers(s, seq([0.5, 0])).map((x) => x.name), ['big', 'small', 'backup']);
  assert.deepEqual(orderServers(s, seq([0.8, 0])).map((x) => x.name), ['small', 'big', 'backup']);
  let big = 0;
  let r = 1;
  const lcg = () => ((r = (r * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 4000; i++) if (orderServers(s, lcg)[0]!.name === 'big') big++;
  assert.ok(big > 2800 && big < 3200, `big first ${big} of 4000 times (expected about 3000)`);
});
